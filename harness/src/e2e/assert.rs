//! What a bootstrap must show: every Kustomization (and HelmRelease with dependsOn) Ready
//! strictly after its dependencies, everything Ready within the timeout, the layer order
//! the reviewed snapshot says, nothing Stalled, no failed reconcile on the way (a failure
//! that a retry mended still cost a `retryInterval` on a real cluster), and a cycle named
//! as a cycle. Pure: works on recorded observations.

use crate::graph::Graph;
use crate::model::RepoModel;
use serde::Serialize;
use std::collections::BTreeMap;

/// One condition change seen on the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub at_seconds: f64,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `Ready` or `Stalled`.
    pub condition: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// `source` (the entry's GitRepository left the harness's server), `cycle`, `deadlock`,
    /// `failed`, `order`, `order-tie`, `stalled`, `timeout` or `layers`,
    /// listed in that order (the cause before its effects).
    pub kind: String,
    pub objects: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KRow {
    pub name: String,
    pub layer: Option<usize>,
    pub ready_at_seconds: Option<f64>,
    pub dependencies_ready_at_seconds: Option<f64>,
}

fn first_ready(obs: &[Observation]) -> BTreeMap<(String, String, String), f64> {
    let mut m = BTreeMap::new();
    for o in obs.iter().filter(|o| o.condition == "Ready" && o.status == "True") {
        m.entry((o.kind.clone(), o.namespace.clone(), o.name.clone())).or_insert(o.at_seconds);
    }
    m
}

fn last_state(obs: &[Observation], kind: &str, ns: &str, name: &str) -> String {
    obs.iter()
        .rev()
        .find(|o| o.kind == kind && o.namespace == ns && o.name == name && o.condition == "Ready")
        .map(|o| format!("{} {}: {}", o.status, o.reason, o.message))
        .unwrap_or_else(|| "never reported a Ready condition".into())
}

/// What the run is held to.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    pub timeout_seconds: f64,
    pub layers: Option<&'a Vec<Vec<String>>>,
    /// `--allow-retries`: a failed reconcile that a retry mended is a warning, not a violation.
    pub allow_retries: bool,
    /// A deadlock the cluster itself explains (the sim provider knows its cycle of waiting).
    pub deadlock: Option<String>,
}

/// One violation (or warning) per object that failed before it was Ready, or never was:
/// the first failure, how many times it failed, and the time lost to it. The same
/// classification as `simulate`'s failures.
fn failures(obs: &[Observation]) -> Vec<Violation> {
    let names: Vec<String> = obs.iter().map(|o| format!("{}/{}", o.namespace, o.name)).collect();
    let rows = obs.iter().zip(&names).filter(|(o, _)| o.condition == "Ready").map(|(o, n)| {
        (o.at_seconds, o.kind.as_str(), n.as_str(), o.status.as_str(), o.reason.as_str(), o.message.as_str())
    });
    crate::sim::report::failures(rows)
        .into_iter()
        .map(|f| {
            let outcome = match f.ready_at_seconds {
                Some(t) => format!("became Ready only at {t:.0}s: {:.0}s lost", t - f.at_seconds),
                None => "never became Ready".to_string(),
            };
            let times = if f.attempts > 1 { format!(" ({} failed attempts)", f.attempts) } else { String::new() };
            Violation {
                kind: "failed".into(),
                objects: vec![format!("{} {}", f.kind, f.name)],
                message: format!(
                    "{} {} failed at {:.0}s{times} and {outcome}: {}: {}",
                    f.kind, f.name, f.at_seconds, f.reason, f.message
                ),
            }
        })
        .collect()
}

fn rank(kind: &str) -> usize {
    ["source", "cycle", "deadlock", "failed", "order", "order-tie", "stalled", "timeout", "layers"]
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// The rows of the report, the violations (causes first) and the warnings.
pub fn check(
    model: &RepoModel,
    graph: &Graph,
    obs: &[Observation],
    expect: &Expect<'_>,
) -> (Vec<KRow>, Vec<Violation>, Vec<Violation>) {
    let timeout_seconds = expect.timeout_seconds;
    let ready = first_ready(obs);
    let k_at = |i: usize| {
        let k = &model.kustomizations[i].spec;
        ready.get(&("Kustomization".into(), k.namespace.clone(), k.name.clone())).copied()
    };
    let mut rows = vec![];
    let mut violations = vec![];
    for i in 0..model.kustomizations.len() {
        if i == model.entry {
            continue;
        }
        let k = &model.kustomizations[i].spec;
        let name = crate::graph::display_k(model, i);
        let at = k_at(i);
        let deps: Vec<(usize, Option<f64>)> = graph.deps[i].iter().map(|&d| (d, k_at(d))).collect();
        let deps_at = if deps.iter().all(|(_, t)| t.is_some()) {
            deps.iter().filter_map(|(_, t)| *t).fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
        } else {
            None
        };
        if let Some(t) = at {
            for (d, dt) in &deps {
                match dt {
                    Some(dt) if *dt < t => {}
                    // Flux requeues a dependent 30 s after it found a dependency not
                    // Ready, so a tie is no proof that the order was kept.
                    Some(dt) if *dt == t => violations.push(Violation {
                        kind: "order-tie".into(),
                        objects: vec![name.clone(), crate::graph::display_k(model, *d)],
                        message: format!(
                            "Kustomization {name} became Ready at {t:.3}s, the same time as its dependency {}: the order cannot be told apart",
                            crate::graph::display_k(model, *d)
                        ),
                    }),
                    other => violations.push(Violation {
                        kind: "order".into(),
                        objects: vec![name.clone(), crate::graph::display_k(model, *d)],
                        message: format!(
                            "Kustomization {name} became Ready at {t:.0}s, before its dependency {} ({})",
                            crate::graph::display_k(model, *d),
                            other.map(|x| format!("Ready at {x:.0}s")).unwrap_or_else(|| "never Ready".into())
                        ),
                    }),
                }
            }
        }
        match at {
            Some(t) if t <= timeout_seconds => {}
            _ => violations.push(Violation {
                kind: "timeout".into(),
                objects: vec![name.clone()],
                message: format!(
                    "Kustomization {name} was not Ready within {timeout_seconds:.0}s (last: {}){}",
                    last_state(obs, "Kustomization", &k.namespace, &k.name),
                    if graph.layer_of[i].is_none() && !graph.cycles.is_empty() {
                        ": it is in or behind the dependsOn cycle above"
                    } else {
                        ""
                    }
                ),
            }),
        }
        rows.push(KRow {
            name,
            layer: graph.layer_of[i],
            ready_at_seconds: at,
            dependencies_ready_at_seconds: deps_at,
        });
    }
    for (j, h) in model.helm_releases.iter().enumerate() {
        let key = ("HelmRelease".to_string(), h.spec.namespace.clone(), h.spec.name.clone());
        let hid = format!("{}/{}", h.spec.namespace, h.spec.name);
        let at = ready.get(&key).copied();
        if let Some(t) = at {
            for &d in &graph.hr_deps[j] {
                let dh = &model.helm_releases[d].spec;
                let dt = ready.get(&("HelmRelease".to_string(), dh.namespace.clone(), dh.name.clone())).copied();
                if dt.is_none_or(|dt| dt >= t) {
                    violations.push(Violation {
                        kind: "order".into(),
                        objects: vec![hid.clone(), format!("{}/{}", dh.namespace, dh.name)],
                        message: format!(
                            "HelmRelease {hid} became Ready at {t:.0}s, before its dependency {}/{}",
                            dh.namespace, dh.name
                        ),
                    });
                }
            }
        }
        if at.is_none_or(|t| t > timeout_seconds) {
            violations.push(Violation {
                kind: "timeout".into(),
                objects: vec![hid.clone()],
                message: format!(
                    "HelmRelease {hid} was not Ready within {timeout_seconds:.0}s (last: {})",
                    last_state(obs, "HelmRelease", &h.spec.namespace, &h.spec.name)
                ),
            });
        }
    }
    for o in obs.iter().filter(|o| o.condition == "Stalled" && o.status == "True") {
        let id = format!("{} {}/{}", o.kind, o.namespace, o.name);
        if !violations.iter().any(|v| v.kind == "stalled" && v.objects == vec![id.clone()]) {
            violations.push(Violation {
                kind: "stalled".into(),
                objects: vec![id.clone()],
                message: format!("{id} went Stalled at {:.0}s: {}: {}", o.at_seconds, o.reason, o.message),
            });
        }
    }
    // The cause first: a cycle leaves its members and everything behind them waiting on
    // DependencyNotReady forever, and Flux itself never says "cycle".
    for c in &graph.cycles {
        violations.push(Violation {
            kind: "cycle".into(),
            objects: vec![],
            message: format!(
                "dependsOn cycle: {}; nothing in it, nor anything that depends on it, can become Ready (Flux reports only DependencyNotReady)",
                c.join(" ")
            ),
        });
    }
    if let Some(d) = &expect.deadlock {
        violations.push(Violation { kind: "deadlock".into(), objects: vec![], message: d.clone() });
    }
    let mut warnings = vec![];
    for mut f in failures(obs) {
        // Name a Kustomization as the report's rows do, so JUnit files it under its test case.
        if let Some(id) = f.objects[0].strip_prefix("Kustomization ")
            && let Some(i) = (0..model.kustomizations.len()).find(|&i| {
                let k = &model.kustomizations[i].spec;
                format!("{}/{}", k.namespace, k.name) == id
            })
        {
            f.objects[0] = crate::graph::display_k(model, i);
        }
        if expect.allow_retries && f.message.contains("became Ready only at") {
            warnings.push(f);
        } else {
            violations.push(f);
        }
    }
    if let Some(expected) = expect.layers {
        let planned: Vec<Vec<String>> =
            graph.layers.iter().map(|l| l.iter().map(|&i| crate::graph::display_k(model, i)).collect()).collect();
        if &planned != expected {
            violations.push(Violation {
                kind: "layers".into(),
                objects: vec![],
                message: format!("the layer order changed from the reviewed snapshot: expected {expected:?}, the repo now gives {planned:?}; review the new order and write it to the snapshot file"),
            });
        }
    }
    violations.sort_by_key(|v| rank(&v.kind));
    (rows, violations, warnings)
}

/// One row per HelmRelease (`namespace/name`), in the layer of the Kustomization that
/// applies it: when it became Ready, and when its own dependsOn were all Ready.
pub fn helm_rows(model: &RepoModel, graph: &Graph, obs: &[Observation]) -> Vec<KRow> {
    let ready = first_ready(obs);
    let at = |j: usize| {
        let h = &model.helm_releases[j].spec;
        ready.get(&("HelmRelease".to_string(), h.namespace.clone(), h.name.clone())).copied()
    };
    (0..model.helm_releases.len())
        .map(|j| {
            let h = &model.helm_releases[j];
            let deps: Vec<Option<f64>> = graph.hr_deps[j].iter().map(|&d| at(d)).collect();
            KRow {
                name: format!("{}/{}", h.spec.namespace, h.spec.name),
                layer: graph.layer_of[h.owner],
                ready_at_seconds: at(j),
                dependencies_ready_at_seconds: if deps.iter().all(Option::is_some) {
                    deps.into_iter().flatten().fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
                } else {
                    None
                },
            }
        })
        .collect()
}
