//! `bootstrap-order`: the layers became Ready in dependency order on the cluster (the e2e
//! run's assertions), everything within the timeout and without a failed reconcile, the
//! layer order is the reviewed one, and a second bootstrap of the same commit would change
//! nothing. Pure.

use super::{Check, Status, SuiteName, SuiteResult, Table};
use crate::e2e::report::E2eReport;
use crate::graph::{Graph, display_k};
use crate::model::RepoModel;
use std::collections::BTreeMap;

/// The reviewed form of the layer order: each layer's Kustomizations and the HelmReleases
/// they apply. No times, so it only changes when the graph does.
pub fn layers_snapshot(model: &RepoModel, graph: &Graph) -> String {
    let mut out = String::new();
    for (n, layer) in graph.layers.iter().enumerate() {
        out.push_str(&format!("layer {n}\n"));
        let mut names: Vec<(String, usize)> = layer.iter().map(|&i| (display_k(model, i), i)).collect();
        names.sort();
        for (name, i) in names {
            let mut hrs: Vec<String> = model
                .helm_releases
                .iter()
                .filter(|h| h.owner == i)
                .map(|h| format!("{}/{}", h.spec.namespace, h.spec.name))
                .collect();
            hrs.sort();
            if hrs.is_empty() {
                out.push_str(&format!("  {name}\n"));
            } else {
                out.push_str(&format!("  {name}  (HelmRelease {})\n", hrs.join(", ")));
            }
        }
    }
    if !graph.cycles.is_empty() {
        out.push_str("not layered (in or behind a dependsOn cycle)\n");
        let mut rest: Vec<String> = (0..model.kustomizations.len())
            .filter(|&i| i != model.entry && graph.layer_of[i].is_none())
            .map(|i| display_k(model, i))
            .collect();
        rest.sort();
        for r in rest {
            out.push_str(&format!("  {r}\n"));
        }
    }
    out
}

type Id = (String, String, String, String);

fn id_of(o: &crate::object::Object) -> Id {
    (o.group().to_string(), o.kind().to_string(), crate::flux::namespace_of(o), o.name().to_string())
}

/// What a second bootstrap of the same commit would change: objects rendered differently
/// the second time, objects two Kustomizations apply with different content (each
/// reconcile re-applies its own), and replica counts an autoscaler owns.
pub fn idempotency(first: &RepoModel, second: Option<&RepoModel>) -> Vec<String> {
    let mut out = vec![];
    if let Some(second) = second {
        let render = |m: &RepoModel| -> BTreeMap<(String, Id), String> {
            m.kustomizations
                .iter()
                .flat_map(|k| {
                    let kid = format!("{}/{}", k.spec.namespace, k.spec.name);
                    k.objects.iter().map(move |o| ((kid.clone(), id_of(o)), o.value.to_string()))
                })
                .collect()
        };
        let (a, b) = (render(first), render(second));
        for (key, v) in &a {
            match b.get(key) {
                Some(w) if w == v => {}
                Some(_) => out.push(format!(
                    "{} {}/{} (Kustomization {}) renders differently the second time: a second bootstrap re-applies it with a diff",
                    key.1.1, key.1.2, key.1.3, key.0
                )),
                None => out.push(format!(
                    "{} {}/{} (Kustomization {}) is not rendered the second time: a second bootstrap prunes it",
                    key.1.1, key.1.2, key.1.3, key.0
                )),
            }
        }
        for key in b.keys().filter(|k| !a.contains_key(*k)) {
            out.push(format!(
                "{} {}/{} (Kustomization {}) appears only in the second render",
                key.1.1, key.1.2, key.1.3, key.0
            ));
        }
    }
    // Two owners with different content overwrite each other on every reconcile.
    let mut owners: BTreeMap<Id, Vec<(usize, String)>> = BTreeMap::new();
    for (i, k) in first.kustomizations.iter().enumerate() {
        for o in &k.objects {
            let mut v = o.value.clone();
            if let Some(m) = v.pointer_mut("/metadata/labels").and_then(|l| l.as_object_mut()) {
                // Flux's own ownership labels differ by design.
                m.retain(|k, _| !k.starts_with("kustomize.toolkit.fluxcd.io/"));
            }
            owners.entry(id_of(o)).or_default().push((i, v.to_string()));
        }
    }
    for ((_, kind, ns, name), list) in &owners {
        if list.len() > 1 && list.iter().any(|(_, v)| v != &list[0].1) {
            let who: Vec<String> = list.iter().map(|(i, _)| display_k(first, *i)).collect();
            out.push(format!(
                "{kind} {ns}/{name} is applied with different content by {}: every reconcile of one undoes the other",
                who.join(" and ")
            ));
        }
    }
    // spec.replicas in a manifest that a HorizontalPodAutoscaler scales: Flux resets the
    // count on each reconcile (the drift HPA then undoes).
    for k in &first.kustomizations {
        for hpa in k.objects.iter().filter(|o| o.kind() == "HorizontalPodAutoscaler" && o.group() == "autoscaling") {
            let target = hpa.value.pointer("/spec/scaleTargetRef");
            let (tk, tn) = (
                target.and_then(|t| t.get("kind")).and_then(|v| v.as_str()).unwrap_or(""),
                target.and_then(|t| t.get("name")).and_then(|v| v.as_str()).unwrap_or(""),
            );
            let ns = crate::flux::namespace_of(hpa);
            for o in first.kustomizations.iter().flat_map(|k| &k.objects) {
                if o.kind() == tk
                    && o.name() == tn
                    && crate::flux::namespace_of(o) == ns
                    && o.value.pointer("/spec/replicas").is_some()
                {
                    out.push(format!(
                        "{tk} {ns}/{tn} ({}) sets spec.replicas, which HorizontalPodAutoscaler {ns}/{} ({}) owns: every reconcile resets the count",
                        o.origin,
                        hpa.name(),
                        hpa.origin
                    ));
                }
            }
        }
    }
    out
}

fn secs(t: Option<f64>) -> String {
    t.map(|v| format!("{v:.0}s")).unwrap_or_else(|| "-".into())
}

pub fn run(model: &RepoModel, graph: &Graph, e2e: &E2eReport, second: Option<&RepoModel>) -> SuiteResult {
    let of = |kinds: &[&str]| -> Vec<String> {
        e2e.violations.iter().filter(|v| kinds.contains(&v.kind.as_str())).map(|v| v.message.clone()).collect()
    };
    let hrs = model.helm_releases.len();
    let ks = e2e.kustomizations.len();
    let mut checks = vec![Check::from_problems(
        "plan",
        "plan finds no error",
        &e2e.preflight.iter().map(|f| format!("{}:{}: [{}] {}", f.file, f.line, f.rule, f.message)).collect::<Vec<_>>(),
        "no error finding".into(),
    )];
    checks.push(Check::from_problems(
        "ready-order",
        "every layer Ready strictly after its dependencies",
        &of(&["cycle", "deadlock", "order", "order-tie"]),
        format!("{ks} Kustomizations and {hrs} HelmReleases on {}", e2e.provider),
    ));
    checks.push(Check::from_problems(
        "all-ready",
        "everything Ready within the timeout, nothing Stalled",
        &of(&["timeout", "stalled"]),
        format!("Ready after {:.0} {}", e2e.duration_seconds, e2e.time_unit),
    ));
    let mended = e2e.warnings.len();
    checks.push(Check::from_problems(
        "no-failed-reconcile",
        "no reconcile failed on the way",
        &of(&["failed"]),
        if mended > 0 {
            format!("{mended} failure(s) mended by a retry, allowed by --allow-retries")
        } else {
            "none failed".into()
        },
    ));
    if e2e.violations.iter().any(|v| v.kind == "layers") {
        checks.push(Check::from_problems(
            "layers",
            "the layer order of --layers-snapshot",
            &of(&["layers"]),
            String::new(),
        ));
    }
    let idem = idempotency(model, second);
    checks.push(if second.is_none() && idem.is_empty() {
        Check::new(
            "idempotent",
            "a second bootstrap of the same commit changes nothing",
            Status::Pass,
            "no two owners, no autoscaled replicas (the second render was not taken)".into(),
        )
    } else {
        Check::from_problems(
            "idempotent",
            "a second bootstrap of the same commit changes nothing",
            &idem,
            "rendered twice: identical; no object applied with different content by two Kustomizations; no autoscaled replica count in a manifest".into(),
        )
    });
    let mut table = Table::new(&["layer", "Kustomization", "Ready", "deps Ready", "predicted"]);
    let mut rows = e2e.kustomizations.clone();
    rows.sort_by(|a, b| a.layer.cmp(&b.layer).then_with(|| a.name.cmp(&b.name)));
    for r in rows {
        let p = e2e.predicted_vs_observed.iter().find(|p| p.name == r.name).and_then(|p| p.predicted_seconds);
        table.row(vec![
            r.layer.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            r.name.clone(),
            secs(r.ready_at_seconds),
            secs(r.dependencies_ready_at_seconds),
            secs(p),
        ]);
    }
    SuiteResult { suite: SuiteName::BootstrapOrder, checks, table, snapshot: Some(layers_snapshot(model, graph)) }
}
