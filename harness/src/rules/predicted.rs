//! What the simulation of the same model shows failing, as findings: `plan` and
//! `simulate` are two views of one model, so a reconcile the simulator sees failing is an
//! error of `plan` too, even where no static rule names its cause. A failure another
//! error finding already explains (same Kustomization) adds nothing.
//!
//! `webhook-race`: an apply or install refused by a fail-closed webhook that was
//! registered but not serving yet. `input-race`: a substituteFrom or valuesFrom read
//! before its producer applied it. `predicted-failure`: any other failed reconcile.
//! `predicted-stall`: not Ready when the simulation ends (a deadlock named as such).

use crate::findings::{Finding, Severity};
use crate::model::RepoModel;
use crate::sim::report::SimReport;
use std::collections::{HashMap, HashSet};

pub fn findings(
    model: &RepoModel,
    graph: &crate::graph::Graph,
    report: &SimReport,
    existing: &[Finding],
) -> Vec<Finding> {
    let mut out: Vec<Finding> = vec![];
    // Looked up by name once per failure or stuck object: indexed, not scanned.
    let by_id: HashMap<String, usize> = model
        .kustomizations
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("{}/{}", k.spec.namespace, k.spec.name), i))
        .collect();
    let hr_by_id: HashMap<String, usize> = model
        .helm_releases
        .iter()
        .enumerate()
        .map(|(j, h)| (format!("{}/{}", h.spec.namespace, h.spec.name), j))
        .collect();
    let by_display: HashMap<String, usize> =
        (0..model.kustomizations.len()).map(|i| (crate::graph::display_k(model, i), i)).collect();
    // Kustomizations an error finding is about, kept up to date as findings are added.
    let mut explained: HashSet<String> =
        existing.iter().filter(|e| e.severity == Severity::Error).filter_map(|e| e.kustomization.clone()).collect();
    // A dependsOn cycle is one cause for everything in it (its finding names the loop).
    explained.extend(crate::graph::cycle_members(&graph.cycles));
    for f in &report.failures {
        let (k, loc, what) = match f.kind.as_str() {
            "Kustomization" => {
                let Some(&i) = by_id.get(&f.name) else {
                    continue;
                };
                (i, model.kustomizations[i].spec.origin.clone(), format!("Kustomization {}", f.name))
            }
            "HelmRelease" => {
                let Some(&j) = hr_by_id.get(&f.name) else {
                    continue;
                };
                let h = &model.helm_releases[j];
                (h.owner, h.spec.origin.clone(), format!("HelmRelease {}", f.name))
            }
            _ => continue,
        };
        let kid = format!("{}/{}", model.kustomizations[k].spec.namespace, model.kustomizations[k].spec.name);
        if explained.contains(&kid) {
            continue;
        }
        let cost = match f.ready_at_seconds {
            Some(r) => format!("Ready only at {:.0}s ({:.0}s lost)", r, r - f.at_seconds),
            None => "never Ready".into(),
        };
        let webhook = f.message.find("failed calling webhook \"").map(|i| {
            let rest = &f.message[i + "failed calling webhook \"".len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        });
        let input = f.message.starts_with("substitute from '") || f.message.starts_with("could not resolve ");
        let finding = match webhook {
            None if input => Finding::new(
                "input-race",
                Severity::Error,
                &loc,
                format!("{what} reads an input before it exists in the simulated bootstrap (at {:.0}s; {cost}): {}", f.at_seconds, f.message),
            )
            .fix(format!("make {kid} depend on the Kustomization that applies it")),
            Some(w) => Finding::new(
                "webhook-race",
                Severity::Error,
                &loc,
                format!(
                    "{what} is refused by webhook {w}, registered but not serving yet, in the simulated bootstrap (at {:.0}s; {cost}): {}",
                    f.at_seconds, f.message
                ),
            )
            .fix(format!(
                "make {kid} depend (with wait: true upstream) on the Kustomization that installs {w}'s chart, or make the webhook fail-open for the bootstrap"
            )),
            None => Finding::new(
                "predicted-failure",
                Severity::Error,
                &loc,
                format!("{what} fails in the simulated bootstrap (at {:.0}s; {cost}): {}: {}", f.at_seconds, f.reason, f.message),
            ),
        };
        explained.insert(kid.clone());
        out.push(finding.for_kustomization(&kid));
    }
    // Not Ready at the end, and no error says why: a stall the rules did not name.
    if !report.converged {
        for s in &report.stuck {
            // Stuck entries name Kustomizations as plan does (`name` in flux-system).
            let Some(&i) = by_display.get(&s.name).filter(|_| s.kind == "Kustomization") else {
                continue;
            };
            let kid = format!("{}/{}", model.kustomizations[i].spec.namespace, model.kustomizations[i].spec.name);
            // One finding per cause: not when an error already names it, or names what it
            // waits on, or when the deadlock it is part of was reported already.
            let waits_on = s
                .because
                .split("Kustomization ")
                .skip(1)
                .map(|rest| rest.split(|c: char| c.is_whitespace() || ",;:()".contains(c)).next().unwrap_or(rest));
            if explained.contains(&kid) || waits_on.into_iter().any(|w| explained.contains(w)) {
                continue;
            }
            let deadlock = report.deadlock.as_ref().filter(|d| d.cycle.iter().any(|c| c.ends_with(&format!(" {kid}"))));
            if deadlock.is_some() && out.iter().any(|f| f.rule == "predicted-stall" && f.message.contains("deadlock")) {
                continue;
            }
            let msg = match deadlock {
                Some(d) => format!(
                    "Kustomization {kid} never becomes Ready in the simulated bootstrap: deadlock: {}",
                    d.explanation
                ),
                None => format!(
                    "Kustomization {kid} never becomes Ready in the simulated bootstrap: {} {}; {}",
                    s.reason, s.message, s.because
                ),
            };
            explained.insert(kid.clone());
            out.push(
                Finding::new("predicted-stall", Severity::Error, &model.kustomizations[i].spec.origin, msg)
                    .for_kustomization(&kid),
            );
        }
    }
    out
}
