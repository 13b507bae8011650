//! Reviewed snapshots of a suite, in insta's file format (`---` header, then the content),
//! so `cargo insta review` can accept a pending `.snap.new` as it does for the project's
//! own snapshots. Pure: the caller reads and writes the files.

/// The file for `suite`'s snapshot of `content`.
pub fn file_text(suite: &str, content: &str) -> String {
    let mut body = content.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    format!("---\nsource: cargo xtask suite\nexpression: {suite}\n---\n{body}")
}

/// The content of a snapshot file (everything after the header).
pub fn content(file: &str) -> String {
    let mut parts = file.splitn(3, "---\n");
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(_header), Some(rest)) => rest.to_string(),
        _ => file.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    Same,
    /// No reviewed snapshot yet.
    Missing,
    /// A unified diff, reviewed → now.
    Changed(String),
}

pub fn compare(stored: Option<&str>, actual: &str) -> Compared {
    let Some(stored) = stored else { return Compared::Missing };
    let old = content(stored);
    let new = content(&file_text("", actual));
    if old == new {
        return Compared::Same;
    }
    let diff = similar::TextDiff::from_lines(&old, &new);
    Compared::Changed(diff.unified_diff().context_radius(2).header("reviewed", "now").to_string())
}
