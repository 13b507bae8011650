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
