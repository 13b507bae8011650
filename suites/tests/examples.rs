//! The bundled examples: their layers and dependency graph are reviewed snapshots, and
//! they load with no error finding. A change to the model that moves a layer shows up
//! here as a diff to review.

mod common;

use harness::commands::{PlanRequest, RendererChoice, plan};
use harness::model::Entry;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn graph_view(example: &str, cluster: &str) -> Value {
    let p = plan(&PlanRequest {
        repo: common::example(example),
        entry: Some(Entry::Cluster(cluster.into())),
        sources: vec![],
        renderer: RendererChoice::Native,
    })
    .unwrap_or_else(|e| panic!("{example}/{cluster}: {e}"));
    assert_eq!(p.errors(), 0, "{example}/{cluster} has error findings: {:#?}", p.findings);
    let ks: Vec<Value> = p
        .kustomizations
        .iter()
        .map(|k| {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for o in &k.objects {
                *kinds.entry(o.kind.as_str()).or_default() += 1;
            }
            json!({"name": k.name, "layer": k.layer, "path": k.path, "dependsOn": k.depends_on, "objects": kinds})
        })
        .collect();
    let hrs: Vec<Value> = p
        .helm_releases
        .iter()
        .map(|h| json!({"name": format!("{}/{}", h.namespace, h.name), "kustomization": h.kustomization, "chart": h.chart, "dependsOn": h.depends_on}))
        .collect();
    json!({
        "entry": p.entry,
        "entryPath": p.entry_path,
        "layers": p.layers,
        "criticalPath": p.critical_path,
        "kustomizations": ks,
        "helmReleases": hrs,
        "findings": p.findings.iter().map(|f| format!("{} {}:{} [{}] {}", f.severity.as_str(), f.file, f.line, f.rule, f.message)).collect::<Vec<_>>(),
    })
}

#[test]
fn netcorp_staging_graph() {
    insta::assert_json_snapshot!(graph_view("netcorp-infra", "staging"));
}

#[test]
fn envs_staging_graph() {
    insta::assert_json_snapshot!(graph_view("envs-infra", "staging"));
}

#[test]
fn netcorp_clusters_share_one_layer_order() {
    // The three environments differ by values, never by ordering.
    let layers = |c: &str| graph_view("netcorp-infra", c)["layers"].clone();
    assert_eq!(layers("production"), layers("staging"));
    assert_eq!(layers("local-kube"), layers("staging"));
}

/// Reorders a copy of a repo: the documents of every multi-document file reversed (or
/// rotated by one), and every kustomization's `resources:` list reversed.
fn permuted(src: &std::path::Path, rotate: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(src, tmp.path());
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if name == "kustomization.yaml" {
                let mut v: serde_json::Value = harness::yaml::parse_one(&name, &text).unwrap().value;
                if let Some(r) = v.get_mut("resources").and_then(|r| r.as_array_mut()) {
                    r.reverse();
                }
                std::fs::write(&p, harness::yaml::to_yaml(&v)).unwrap();
                continue;
            }
            let mut docs: Vec<&str> =
                text.split("\n---").filter(|d| !d.trim().trim_start_matches("---").trim().is_empty()).collect();
            if docs.len() < 2 {
                continue;
            }
            if rotate {
                docs.rotate_left(1);
            } else {
                docs.reverse();
            }
            let body: Vec<String> =
                docs.iter().map(|d| d.trim_start_matches("---").trim_matches('\n').to_string()).collect();
            std::fs::write(&p, body.join("\n---\n") + "\n").unwrap();
        }
    }
    tmp
}

/// What a verdict is, without the line numbers that reordering moves.
fn verdicts(repo: &std::path::Path, cluster: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let p = plan(&PlanRequest {
        repo: repo.into(),
        entry: Some(Entry::Cluster(cluster.into())),
        sources: vec![],
        renderer: RendererChoice::Native,
    })
    .unwrap();
    let mut f: Vec<String> = p
        .findings
        .iter()
        .map(|f| format!("{} {} {:?} {}", f.severity.as_str(), f.rule, f.kustomization, f.file))
        .collect();
    f.sort();
    let mut layers = p.layers.clone();
    for l in &mut layers {
        l.sort();
    }
    (f, layers)
}

#[test]
fn no_verdict_depends_on_the_order_of_documents_or_resources() {
    for (ex, cluster) in [("netcorp-infra", "staging"), ("envs-infra", "staging")] {
        let original = verdicts(&common::example(ex), cluster);
        for rotate in [false, true] {
            let tmp = permuted(&common::example(ex), rotate);
            assert_eq!(
                verdicts(tmp.path(), cluster),
                original,
                "{ex}, documents {}",
                if rotate { "rotated" } else { "reversed" }
            );
        }
    }
    // The Gatekeeper race of the fail-closed variant is found in any order too.
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("netcorp-infra"), tmp.path());
    let hr = tmp.path().join("namespaces/gatekeeper-system/helm-release.yaml");
    std::fs::write(&hr, std::fs::read_to_string(&hr).unwrap().replace("Policy: Ignore", "Policy: Fail")).unwrap();
    let racy = verdicts(tmp.path(), "staging");
    assert!(racy.0.iter().any(|f| f.starts_with("error webhook-race")), "{:?}", racy.0);
    for rotate in [false, true] {
        let p = permuted(tmp.path(), rotate);
        let errors = |v: &(Vec<String>, Vec<Vec<String>>)| v.0.iter().filter(|f| f.starts_with("error")).count();
        assert_eq!(errors(&verdicts(p.path(), "staging")), errors(&racy), "rotate={rotate}");
    }
}
