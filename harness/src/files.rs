//! The repo as the pure logic sees it: a tree of UTF-8 files addressed by repo-relative
//! paths. Pure modules (renderer, model) read only through [`Files`]; `disk` implements it
//! over the real file system and [`MemFiles`] in memory for tests.

use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

pub trait Files: Sync {
    /// The text of a file. Errors name the path.
    fn read(&self, path: &str) -> Result<String>;
    /// What is at `path`, following symlinks; `None` when nothing is.
    fn kind(&self, path: &str) -> Option<EntryKind>;
    /// The names in a directory, sorted.
    fn list(&self, path: &str) -> Result<Vec<(String, EntryKind)>>;
    /// An identity for a directory that is the same however it was reached (through
    /// symlinks or not), used to detect symlink loops.
    fn identity(&self, path: &str) -> String {
        path.to_string()
    }
    /// The directory on disk, for renderers that run a program on it.
    fn disk_root(&self) -> Option<&std::path::Path> {
        None
    }
}

/// Joins a relative reference onto a repo-relative directory and folds `.` and `..`.
/// Absolute references and references that climb out of the repo are errors: Flux builds
/// inside the source artifact and cannot see anything outside it.
pub fn join(dir: &str, reference: &str) -> std::result::Result<String, String> {
    if reference.starts_with('/') {
        return Err(format!("'{reference}' is an absolute path; Flux only reads paths inside the repository"));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("'{reference}' (from '{}') leaves the repository root", display_dir(dir)));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `.` for the root, else the path itself: the way users write directories.
pub fn display_dir(dir: &str) -> &str {
    if dir.is_empty() { "." } else { dir }
}

pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

pub fn file_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// An in-memory tree: tests, generated repos, and a git revision read without writing it
/// out. Directories are kept as a set so lookups do not scan every file.
#[derive(Debug, Default, Clone)]
pub struct MemFiles {
    files: BTreeMap<String, String>,
    dirs: std::collections::BTreeSet<String>,
}

impl MemFiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.insert(path, text);
        self
    }

    /// Every file and its content.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &String)> {
        self.files.iter()
    }

    pub fn insert(&mut self, path: &str, text: &str) {
        let path = path.trim_start_matches("./").to_string();
        let mut dir = parent(&path);
        loop {
            if !self.dirs.insert(dir.to_string()) || dir.is_empty() {
                break;
            }
            dir = parent(dir);
        }
        self.dirs.insert(String::new());
        self.files.insert(path, text.to_string());
    }
}

impl Files for MemFiles {
    fn read(&self, path: &str) -> Result<String> {
        self.files.get(path).cloned().ok_or_else(|| Error::in_file(ErrorKind::MissingPath, path, "no such file"))
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        if self.files.contains_key(path) {
            Some(EntryKind::File)
        } else if self.dirs.contains(path) {
            Some(EntryKind::Dir)
        } else {
            None
        }
    }

    fn list(&self, path: &str) -> Result<Vec<(String, EntryKind)>> {
        if !self.dirs.contains(path) {
            return Err(Error::in_file(ErrorKind::MissingPath, path, "no such directory"));
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let direct = |k: &String| {
            k.strip_prefix(&prefix).filter(|rest| !rest.is_empty() && !rest.contains('/')).map(str::to_string)
        };
        let mut out: BTreeMap<String, EntryKind> = BTreeMap::new();
        for k in self.files.range(prefix.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&prefix)) {
            if let Some(name) = direct(k) {
                out.insert(name, EntryKind::File);
            }
        }
        for d in self.dirs.range(prefix.clone()..).take_while(|k| k.starts_with(&prefix)) {
            if let Some(name) = direct(d) {
                out.insert(name, EntryKind::Dir);
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// Visits every file below the root, `(path, name)`, down to `max_depth` directories;
/// hidden directories and build outputs (`node_modules`, `target`) are skipped. For the
/// scans that look for a kind of file wherever it sits (helmfiles, bootstrap secrets).
pub fn walk(files: &dyn Files, max_depth: usize, mut visit: impl FnMut(&str, &str)) {
    let mut stack = vec![(String::new(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = files.list(&dir) else { continue };
        for (name, kind) in entries {
            if name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            match kind {
                EntryKind::Dir if depth < max_depth => stack.push((path, depth + 1)),
                EntryKind::File => visit(&path, &name),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_folds_dots_and_refuses_to_leave_the_repo() {
        assert_eq!(join("a/b", "../c/./d.yaml").unwrap(), "a/c/d.yaml");
        assert_eq!(join("", "./clusters/staging").unwrap(), "clusters/staging");
        assert!(join("a", "../../x").unwrap_err().contains("leaves the repository root"));
        assert!(join("a", "/etc/passwd").unwrap_err().contains("absolute"));
    }

    #[test]
    fn mem_files_lists_dirs_and_files() {
        let fs = MemFiles::new().with("a/b.yaml", "x").with("a/c/d.yaml", "y");
        assert_eq!(fs.list("a").unwrap(), vec![("b.yaml".into(), EntryKind::File), ("c".into(), EntryKind::Dir)]);
        assert_eq!(fs.kind("a/c"), Some(EntryKind::Dir));
        assert_eq!(fs.kind("nope"), None);
    }
}
