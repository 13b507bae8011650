//! Bootstrap helmfiles: many teams install the CNI, CRDs and a few core charts with
//! helmfile when the cluster is created, before Flux. The charts a helmfile releases tell
//! which CRD groups exist before any Kustomization runs, and whether a CNI already runs.
//! Pure: reads through [`Files`].
//!
//! A helmfile is recognised by what it holds (a top-level `releases:` list and no
//! `apiVersion`/`kind`), wherever it sits and whatever it is called
//! (`bootstrap/helmfile/crds.yaml`, `helmfile.d/00-crds.yaml`, `helmfile.yaml.gotmpl`).
//! A release without `chart:` (its chart set by a template, as in onedr0p/home-ops) is
//! resolved through `chart_of`: the repo's HelmRelease of the same name and namespace,
//! whose values the helmfile then uses too (they decide, e.g., whether cert-manager's
//! chart installs its CRDs).

use crate::catalogue::Catalogue;
use crate::files::Files;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helmfile {
    pub path: String,
    /// Its releases as (name, namespace).
    pub releases: Vec<(String, Option<String>)>,
    /// Only the CRDs of its charts reach the cluster (`helmfile template --include-crds |
    /// kubectl apply`, the common bootstrap split): told by a name holding `crd`.
    pub crds_only: bool,
    pub charts: Vec<String>,
    /// CRD groups the catalogue knows these charts install.
    pub groups: Vec<String>,
}

fn yaml_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".gotmpl")
}

/// A helmfile, by content: `releases:` at the top level, and not a Kubernetes manifest.
fn is_helmfile(text: &str) -> bool {
    let top = |key: &str| text.lines().any(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')));
    top("releases") && !top("apiVersion") && !top("kind")
}

/// The releases of a helmfile as (name, namespace, chart), read from its text (helmfiles
/// are often Go templates, so they are not parsed as YAML).
fn releases(text: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out: Vec<(String, Option<String>, Option<String>)> = vec![];
    let mut in_releases = false;
    let mut item_indent = None;
    let value = |l: &str, key: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        t.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.split('#').next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .filter(|v| !v.is_empty())
    };
    for l in text.lines() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        if indent == 0 {
            in_releases = l.starts_with("releases:");
            item_indent = None;
            continue;
        }
        if !in_releases {
            continue;
        }
        let t = l.trim_start();
        if t.starts_with("- ") && item_indent.is_none_or(|i| indent == i) {
            item_indent = Some(indent);
            out.push((String::new(), None, None));
        }
        // Only the release's own keys: two columns past its dash.
        if item_indent.is_some_and(|i| indent == i || indent == i + 2)
            && let Some(r) = out.last_mut()
        {
            if let Some(v) = value(l, "name") {
                r.0 = v;
            } else if let Some(v) = value(l, "namespace") {
                r.1 = Some(v);
            } else if let Some(v) = value(l, "chart") {
                r.2 = Some(v);
            }
        }
    }
    out.retain(|r| !r.0.is_empty());
    out
}

/// The chart and values of the repo's HelmRelease for a release (name, namespace).
pub type ReleaseOf<'a> = dyn Fn(&str, Option<&str>) -> Option<(String, serde_json::Value)> + 'a;

/// Finds helmfiles (depth 6, hidden directories skipped) and the CRD groups they install.
/// `skip`: files known to be Kubernetes manifests (Flux rendered them), not read again.
pub fn detect(
    files: &dyn Files,
    cat: &Catalogue,
    release_of: &ReleaseOf,
    skip: &std::collections::HashSet<&str>,
) -> Vec<Helmfile> {
    let mut out = vec![];
    crate::files::walk(files, 6, |path, name| {
        if !yaml_like(name) || skip.contains(path) {
            return;
        }
        let Ok(text) = files.read(path) else { return };
        if !is_helmfile(&text) {
            return;
        }
        let found = releases(&text);
        let named: Vec<(String, Option<String>)> = found.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
        let resolved: Vec<(String, serde_json::Value)> = found
            .into_iter()
            .map(|(name, ns, chart)| {
                let repo = release_of(&name, ns.as_deref());
                let values = repo.as_ref().map(|r| r.1.clone()).unwrap_or(serde_json::Value::Null);
                // A template expression is no chart name: resolve the release.
                let chart = match chart.filter(|c| !c.contains("{{")) {
                    Some(c) => c.rsplit('/').next().unwrap_or(&c).split(':').next().unwrap_or("").to_string(),
                    None => repo.map(|r| r.0).unwrap_or(name),
                };
                (chart, values)
            })
            .collect();
        let charts: Vec<String> = resolved.iter().map(|r| r.0.clone()).collect();
        let mut groups: Vec<String> = resolved
            .iter()
            .filter_map(|(c, v)| cat.chart(c).map(|c| (c, v)))
            .flat_map(|(c, v)| c.crds.iter().filter(|g| g.enabled(v)).map(|g| g.group.clone()))
            .collect();
        groups.sort();
        groups.dedup();
        if !charts.is_empty() {
            let crds_only = name.to_ascii_lowercase().contains("crd");
            out.push(Helmfile { path: path.to_string(), releases: named, crds_only, charts, groups });
        }
    });
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_with_and_without_charts() {
        let text = "---\nhelmDefaults:\n  wait: true\nreleases:\n  - name: cilium\n    namespace: kube-system\n    hooks:\n      - name: not-a-release\n        events: [postsync]\n  - name: cert-manager\n    chart: oci://quay.io/jetstack/charts/cert-manager\n    version: v1.21.1\n  - chart: '{{ .Values.x }}'\n    name: templated\n";
        assert!(is_helmfile(text));
        assert_eq!(
            releases(text),
            vec![
                ("cilium".to_string(), Some("kube-system".to_string()), None),
                ("cert-manager".into(), None, Some("oci://quay.io/jetstack/charts/cert-manager".into())),
                ("templated".into(), None, Some("{{ .Values.x }}".into())),
            ]
        );
        assert!(!is_helmfile("apiVersion: v1\nkind: ConfigMap\nreleases: x\n"), "a manifest is no helmfile");
        assert!(!is_helmfile("bases:\n  - default.yaml\n"));
    }
}
