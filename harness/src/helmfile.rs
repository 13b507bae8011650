//! Bootstrap helmfiles: some teams install CRDs (and sometimes the CNI) with helmfile when
//! the cluster is created, before Flux. The charts a helmfile releases tell which CRD
//! groups exist before any Kustomization runs. Pure: reads through [`Files`].

use crate::catalogue::Catalogue;
use crate::files::{EntryKind, Files};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helmfile {
    pub path: String,
    pub charts: Vec<String>,
    /// CRD groups the catalogue knows these charts install.
    pub groups: Vec<String>,
}

fn is_helmfile(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("helmfile")
        && (n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".yaml.gotmpl") || n.ends_with(".gotmpl"))
}

/// Finds helmfiles (depth 5, hidden directories skipped) and the CRD groups they install.
pub fn detect(files: &dyn Files, cat: &Catalogue) -> Vec<Helmfile> {
    let chart_re = regex::Regex::new(r"(?m)^\s*-?\s*chart:\s*['\x22]?([^\s'\x22#]+)").unwrap();
    let mut out = vec![];
    let mut stack = vec![(String::new(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = files.list(&dir) else { continue };
        for (name, kind) in entries {
            if name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            match kind {
                EntryKind::Dir if depth < 5 => stack.push((path, depth + 1)),
                EntryKind::File if is_helmfile(&name) => {
                    let Ok(text) = files.read(&path) else { continue };
                    // Text, not YAML: helmfiles are often Go templates.
                    let charts: Vec<String> = chart_re
                        .captures_iter(&text)
                        .map(|c| c[1].rsplit('/').next().unwrap_or(&c[1]).to_string())
                        .collect();
                    let mut groups: Vec<String> = charts
                        .iter()
                        .filter_map(|c| cat.chart(c))
                        .flat_map(|c| c.crds.iter().filter(|g| g.enabled_default).map(|g| g.group.clone()))
                        .collect();
                    groups.sort();
                    groups.dedup();
                    if !charts.is_empty() {
                        out.push(Helmfile { path, charts, groups });
                    }
                }
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
