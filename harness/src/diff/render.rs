//! The bootstrap diff for people: text for a terminal, Markdown for a pull-request comment.

use super::{BootstrapDiff, Changes, FieldChange, ObjectId, SideInfo};
use crate::findings::{Finding, Severity};
use std::fmt::Write;

/// The first line of the Markdown comment: the workflow finds its own comment by it and
/// updates it instead of adding one per push.
pub const MARKER: &str = "<!-- flux-harness-diff -->";

/// GitHub refuses comments over 65,536 characters; leave room for the workflow's footer.
pub const COMMENT_LIMIT: usize = 60_000;

fn side(s: &SideInfo) -> String {
    match &s.commit {
        Some(c) => format!("{} ({})", s.revision, &c[..c.len().min(12)]),
        None => s.revision.clone(),
    }
}

fn secs(t: Option<f64>) -> String {
    t.map(|t| format!("{t:.0} s")).unwrap_or_else(|| "never".into())
}

fn delta(b: Option<f64>, h: Option<f64>) -> String {
    match (b, h) {
        (Some(b), Some(h)) if (h - b).abs() < 1.0 => "unchanged".into(),
        (Some(b), Some(h)) => format!("{:+.0} s", h - b),
        _ => String::new(),
    }
}

fn layer(l: Option<usize>) -> String {
    l.map(|l| format!("layer {l}")).unwrap_or_else(|| "no layer".into())
}

fn object(id: &ObjectId) -> String {
    match &id.namespace {
        Some(ns) => format!("{} {ns}/{}", id.kind, id.name),
        None => format!("{} {}", id.kind, id.name),
    }
}

fn field(f: &FieldChange) -> String {
    format!("{}: {} → {}", f.path, f.base.as_deref().unwrap_or("(absent)"), f.head.as_deref().unwrap_or("(absent)"))
}

fn finding(f: &Finding) -> String {
    format!("{} {}:{} [{}] {}", f.severity.as_str(), f.file, f.line, f.rule, f.message)
}

/// Why the exit code is what it is, in one line.
pub fn verdict(d: &BootstrapDiff) -> String {
    let errors = d.findings.new.iter().filter(|f| f.severity == Severity::Error).count();
    let mut why = vec![];
    if errors > 0 {
        why.push(format!("{errors} new error finding{}", if errors == 1 { "" } else { "s" }));
    }
    if !d.loops.new.is_empty() {
        why.push(format!("{} new cycle or deadlock", d.loops.new.len()));
    }
    if why.is_empty() {
        let pre = d.findings.pre_existing_errors.len();
        if pre > 0 {
            format!("no new problem ({pre} error findings were there before the change)")
        } else {
            "no new problem".into()
        }
    } else {
        format!("head introduces {}", why.join(" and "))
    }
}

fn text_changes(out: &mut String, title: &str, c: &Changes) {
    if c.added.is_empty() && c.removed.is_empty() && c.changed.is_empty() {
        return;
    }
    let _ =
        writeln!(out, "\n{title}: {} added, {} removed, {} changed", c.added.len(), c.removed.len(), c.changed.len());
    for (mark, list) in [("+", &c.added), ("-", &c.removed), ("~", &c.changed)] {
        for x in list {
            let _ = writeln!(out, "  {mark} {}  {}:{}", x.name, x.file, x.line);
            for f in &x.fields {
                let _ = writeln!(out, "      {}", field(f));
            }
        }
    }
}

pub fn to_text(d: &BootstrapDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Bootstrap diff: base {} → head {}", side(&d.base), side(&d.head));
    if d.unchanged {
        let _ = writeln!(out, "no bootstrap change");
    }
    text_changes(&mut out, "Kustomizations", &d.kustomizations);
    text_changes(&mut out, "HelmReleases", &d.helm_releases);
    let e = &d.depends_on;
    if !e.added.is_empty() || !e.removed.is_empty() {
        let _ = writeln!(out, "\ndependsOn edges: {} added, {} removed", e.added.len(), e.removed.len());
        for (mark, list) in [("+", &e.added), ("-", &e.removed)] {
            for x in list {
                let _ = writeln!(out, "  {mark} {} {} -> {}", x.kind, x.from, x.to);
            }
        }
    }
    if !d.layer_moves.is_empty() {
        let _ = writeln!(out, "\nLayer moves");
        for m in &d.layer_moves {
            let _ = writeln!(out, "  {}: {} → {}", m.name, layer(m.base), layer(m.head));
        }
    }
    if d.critical_path.base != d.critical_path.head {
        let _ = writeln!(out, "\nCritical path");
        for (label, p) in [("base", &d.critical_path.base), ("head", &d.critical_path.head)] {
            let _ = writeln!(out, "  {label} ({} layers): {}", p.len(), p.join(" -> "));
        }
    }
    let p = &d.predicted;
    if !p.objects.is_empty() || !super::same_time(p.total.base, p.total.head) {
        let _ = writeln!(out, "\nPredicted time to Ready (simulation, virtual seconds)");
        let line = |what: String, b: Option<f64>, h: Option<f64>| {
            format!("  {what}: {} → {} {}", secs(b), secs(h), delta(b, h)).trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line("whole bootstrap".into(), p.total.base, p.total.head));
        for o in &p.objects {
            let _ = writeln!(out, "{}", line(format!("{} {}", o.kind, o.name), o.base, o.head));
        }
    }
    let f = &d.findings;
    if !f.new.is_empty() || !f.fixed.is_empty() || !f.pre_existing_errors.is_empty() {
        let _ = writeln!(
            out,
            "\nFindings: {} new, {} fixed, {} error findings there before",
            f.new.len(),
            f.fixed.len(),
            f.pre_existing_errors.len()
        );
        for (label, list) in [("new  ", &f.new), ("fixed", &f.fixed), ("before", &f.pre_existing_errors)] {
            for x in list {
                let _ = writeln!(out, "  {label} {}", finding(x));
            }
        }
    }
    for (label, list) in [("new", &d.loops.new), ("fixed", &d.loops.fixed)] {
        for c in list {
            let _ = writeln!(out, "\nCycle or deadlock {label}: {}", c.join(" -> "));
        }
    }
    if !d.rendered.is_empty() {
        let _ = writeln!(out, "\nRendered objects");
        for r in &d.rendered {
            let _ = writeln!(
                out,
                "  {}: {} added, {} removed, {} changed",
                r.kustomization,
                r.added.len(),
                r.removed.len(),
                r.changed.len()
            );
            for id in &r.added {
                let _ = writeln!(out, "    + {}", object(id));
            }
            for id in &r.removed {
                let _ = writeln!(out, "    - {}", object(id));
            }
            for c in &r.changed {
                let _ = writeln!(out, "    ~ {}", object(&c.id));
                for f in &c.fields {
                    let _ = writeln!(out, "        {}", field(f));
                }
            }
        }
    }
    let _ = writeln!(out, "\n{}", verdict(d));
    out
}

/// Escapes a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown table of at most `max` rows, saying how many were left out.
fn table(out: &mut String, head: &[&str], rows: Vec<Vec<String>>, max: usize) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}|", head.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    let n = rows.len();
    for r in rows.into_iter().take(max) {
        let _ = writeln!(out, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
    }
    if n > max {
        let _ = writeln!(out, "\n… and {} more (see the full report, `diff.json`).", n - max);
    }
    out.push('\n');
}

fn markdown_rows(d: &BootstrapDiff, out: &mut String, max: usize) {
    let mut flux = vec![];
    for (kind, c) in [("Kustomization", &d.kustomizations), ("HelmRelease", &d.helm_releases)] {
        for (what, list) in [("added", &c.added), ("removed", &c.removed), ("changed", &c.changed)] {
            for x in list {
                let fields: Vec<String> = x.fields.iter().map(field).collect();
                flux.push(vec![
                    kind.into(),
                    format!("`{}`", x.name),
                    what.into(),
                    format!("`{}:{}`", x.file, x.line),
                    fields.join("<br>"),
                ]);
            }
        }
    }
    if !flux.is_empty() {
        let _ = writeln!(out, "### Flux objects\n");
        table(out, &["kind", "name", "change", "file", "fields"], flux, max);
    }
    let mut edges = vec![];
    for (what, list) in [("added", &d.depends_on.added), ("removed", &d.depends_on.removed)] {
        for e in list {
            edges.push(vec![what.into(), e.kind.clone(), format!("`{}`", e.from), format!("`{}`", e.to)]);
        }
    }
    if !edges.is_empty() {
        let _ = writeln!(out, "### dependsOn edges\n");
        table(out, &["change", "kind", "dependent", "depends on"], edges, max);
    }
    if !d.layer_moves.is_empty() || d.critical_path.base != d.critical_path.head {
        let _ = writeln!(out, "### Layers\n");
        let rows = d.layer_moves.iter().map(|m| vec![format!("`{}`", m.name), layer(m.base), layer(m.head)]).collect();
        table(out, &["Kustomization", "base", "head"], rows, max);
        if d.critical_path.base != d.critical_path.head {
            let _ = writeln!(out, "Critical path, base: {}  ", d.critical_path.base.join(" → "));
            let _ = writeln!(out, "Critical path, head: {}\n", d.critical_path.head.join(" → "));
        }
    }
    let p = &d.predicted;
    if !p.objects.is_empty() || !super::same_time(p.total.base, p.total.head) {
        let _ = writeln!(out, "### Predicted time to Ready (simulation)\n");
        let mut rows = vec![vec![
            "**whole bootstrap**".into(),
            secs(p.total.base),
            secs(p.total.head),
            delta(p.total.base, p.total.head),
        ]];
        rows.extend(
            p.objects
                .iter()
                .map(|o| vec![format!("{} `{}`", o.kind, o.name), secs(o.base), secs(o.head), delta(o.base, o.head)]),
        );
        table(out, &["object", "base", "head", "change"], rows, max);
    }
    let f = &d.findings;
    let mut rows = vec![];
    for (what, list) in [("new", &f.new), ("fixed", &f.fixed), ("there before", &f.pre_existing_errors)] {
        for x in list {
            rows.push(vec![
                what.into(),
                x.severity.as_str().into(),
                format!("`{}`", x.rule),
                format!("`{}:{}`", x.file, x.line),
                x.message.clone(),
            ]);
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(out, "### Findings\n");
        table(out, &["", "severity", "rule", "file", "message"], rows, max);
    }
    let mut rows = vec![];
    for (what, list) in [("new", &d.loops.new), ("fixed", &d.loops.fixed)] {
        rows.extend(list.iter().map(|c| vec![what.to_string(), c.join(" → ")]));
    }
    if !rows.is_empty() {
        let _ = writeln!(out, "### Cycles and deadlocks\n");
        table(out, &["", "chain"], rows, max);
    }
    let mut rows = vec![];
    for r in &d.rendered {
        for (what, list) in [("added", &r.added), ("removed", &r.removed)] {
            rows.extend(
                list.iter().map(|id| vec![format!("`{}`", r.kustomization), what.into(), object(id), String::new()]),
            );
        }
        for c in &r.changed {
            let fields: Vec<String> = c.fields.iter().map(field).collect();
            rows.push(vec![format!("`{}`", r.kustomization), "changed".into(), object(&c.id), fields.join("<br>")]);
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(out, "### Rendered objects\n");
        table(out, &["Kustomization", "change", "object", "fields"], rows, max);
    }
}

/// Markdown for a pull-request comment, within `limit` characters (at most
/// [`COMMENT_LIMIT`] for a comment of its own): long tables are cut, saying so, until it
/// fits.
pub fn to_markdown(d: &BootstrapDiff, limit: usize) -> String {
    for max in [usize::MAX, 50, 15, 5, 1] {
        let mut out = String::new();
        let _ = writeln!(out, "{MARKER}\n## Bootstrap diff\n");
        let _ = writeln!(out, "base `{}` → head `{}`\n", side(&d.base), side(&d.head));
        let icon = if d.exit_code() == 0 { "✅" } else { "❌" };
        let _ = writeln!(out, "{icon} **{}**\n", verdict(d));
        if d.unchanged {
            let _ = writeln!(out, "No bootstrap change.");
            return out;
        }
        markdown_rows(d, &mut out, max);
        if out.len() <= limit {
            return out;
        }
    }
    let mut out = format!("{MARKER}\n## Bootstrap diff\n\n{}\n\n", verdict(d));
    out.push_str("The diff is too large for a comment: see the full report, `diff.json`.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{ObjectId, RenderedChange};

    #[test]
    fn a_diff_too_large_for_a_comment_is_cut_and_says_so() {
        let added = (0..5000)
            .map(|i| ObjectId { kind: "ConfigMap".into(), namespace: Some("apps".into()), name: format!("cm-{i:05}") })
            .collect();
        let d = BootstrapDiff {
            rendered: vec![RenderedChange { kustomization: "apps".into(), added, removed: vec![], changed: vec![] }],
            ..Default::default()
        };
        let full = to_text(&d);
        assert!(full.contains("cm-04999"), "the text report is complete");
        let md = to_markdown(&d, COMMENT_LIMIT);
        assert!(md.len() <= COMMENT_LIMIT, "{} characters", md.len());
        assert!(to_markdown(&d, 5_000).len() <= 5_000, "a smaller budget is kept too");
        assert!(md.starts_with(MARKER));
        assert!(md.contains("cm-00000") && !md.contains("cm-04999"), "cut, not dropped");
        assert!(md.contains("more (see the full report, `diff.json`)"), "says what was cut");
    }
}
