//! `webhook-bootstrap`: the repo's fail-closed admission webhooks (from the charts the
//! catalogue knows: Kyverno, Gatekeeper, cert-manager, linkerd, …) during the bootstrap.
//! The bootstrap must converge with them; each one's pods are then taken down in the middle
//! of the bootstrap for two minutes and restored, and it must still converge; a webhook
//! that refuses its own new pods never comes back, which is reported as the deadlock it is,
//! with its chain. Runs the simulator (pure, virtual time).

use super::{Check, Status, SuiteName, SuiteResult, Table};
use crate::catalogue::{Catalogue, FailurePolicy};
use crate::error::Result;
use crate::loaded::Loaded;
use crate::model::RepoModel;
use crate::sim::fault::{Fault, format_duration};
use crate::sim::report::SimReport;
use crate::sim::{SimConfig, Simulator};

/// How long each webhook's pods stay down.
pub const DOWN_MS: u64 = 120_000;

/// Who serves a webhook: a catalogue chart's HelmRelease, or pods the repo applies itself
/// (index into the simulator's repo webhooks).
#[derive(Clone, Copy)]
enum Served {
    Release(usize),
    Repo(usize),
}

struct Hook {
    served: Served,
    name: String,
    policy: FailurePolicy,
    intercepts: String,
    /// The namespace of the pods that serve it.
    ns: String,
}

impl Hook {
    /// It refuses its own new pods (the simulator's reading of its configuration).
    fn self_blocks(&self, sim: &Simulator) -> bool {
        match self.served {
            Served::Release(j) => sim.self_blocks(j, &self.name),
            Served::Repo(r) => sim.repo_self_blocks(&sim.repo_hooks()[r]),
        }
    }
}

fn hooks(model: &RepoModel, cat: &Catalogue) -> Vec<Hook> {
    let mut out = vec![];
    for (j, h) in model.helm_releases.iter().enumerate() {
        for w in cat.chart(&h.spec.chart).map(|c| c.webhooks.as_slice()).unwrap_or_default() {
            if let Some(policy) = w.effective_policy(&h.spec.values) {
                let g: Vec<&str> = w.intercepts.groups.iter().map(|g| if g.is_empty() { "core" } else { g }).collect();
                let ns =
                    h.spec.raw.pointer("/spec/targetNamespace").and_then(|v| v.as_str()).unwrap_or(&h.spec.namespace);
                out.push(Hook {
                    served: Served::Release(j),
                    name: w.name.clone(),
                    policy,
                    intercepts: format!("{} in {}", w.intercepts.kinds.join(","), g.join(",")),
                    ns: ns.to_string(),
                });
            }
        }
    }
    for (w, h) in crate::sim::repo_webhooks::find(model).into_iter().enumerate() {
        out.push(Hook {
            served: Served::Repo(w),
            intercepts: h.describe(),
            ns: h.service.0.clone(),
            name: h.name,
            policy: FailurePolicy::Fail,
        });
    }
    out
}

/// The repo's fail-closed webhooks by name, and whether each refuses its own new pods:
/// what a real cluster's live check takes down.
pub fn fail_closed(loaded: &Loaded) -> Result<Vec<(String, bool)>> {
    let sim = Simulator::of(loaded, SimConfig::default())?;
    Ok(hooks(&loaded.model, &loaded.catalogue)
        .into_iter()
        .filter(|h| h.policy == FailurePolicy::Fail)
        .map(|h| (h.name.clone(), h.self_blocks(&sim)))
        .collect())
}

fn outcome(r: &SimReport) -> std::result::Result<String, String> {
    if let Some(d) = &r.deadlock {
        return Err(format!("deadlock: {}", d.explanation));
    }
    if !r.converged {
        let stuck: Vec<String> =
            r.stuck.iter().take(3).map(|s| format!("{} {} {}: {}", s.kind, s.name, s.because, s.message)).collect();
        return Err(format!("did not converge: {}", stuck.join("; ")));
    }
    Ok(format!("converged at {:.0}s", r.total_seconds))
}

pub fn run(loaded: &Loaded, sim: &SimConfig) -> Result<SuiteResult> {
    let (model, cat) = (&loaded.model, &loaded.catalogue);
    let hooks = hooks(model, cat);
    let mut table = Table::new(&["webhook", "served by", "failurePolicy", "intercepts", "pods down", "outcome"]);
    let mut checks = vec![];
    // Kept: what a webhook's configuration implies (`self_blocks`) is read from it.
    let mut undisturbed = Simulator::of(loaded, sim.clone())?;
    undisturbed.run();
    let baseline = undisturbed.report();
    if hooks.is_empty() {
        checks.push(Check::new(
            "webhooks",
            "the repo's admission webhooks",
            Status::Skip,
            "the repository installs no admission webhook that the catalogue knows (docs/catalogue.md adds charts) nor a fail-closed one of its own"
                .into(),
        ));
        return Ok(SuiteResult { suite: SuiteName::WebhookBootstrap, checks, table, snapshot: None });
    }
    let base = outcome(&baseline);
    checks.push(match &base {
        Ok(m) => Check::new("bootstrap", "the bootstrap converges with every webhook", Status::Pass, m.clone()),
        Err(m) => Check::new("bootstrap", "the bootstrap converges with every webhook", Status::Fail, m.clone()),
    });
    let mut snapshot = String::new();
    for w in &hooks {
        // Who serves it, and when it first does in the undisturbed bootstrap.
        let (hid, ready_kind, ready_name) = match w.served {
            Served::Release(j) => {
                let h = &model.helm_releases[j].spec;
                let id = format!("{}/{}", h.namespace, h.name);
                (id.clone(), "HelmRelease", id)
            }
            Served::Repo(r) => {
                let k = undisturbed.repo_hooks()[r].backends[0].0;
                let id = crate::graph::display_k(model, k);
                (format!("Kustomization {id}"), "Kustomization", id)
            }
        };
        let policy = match w.policy {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        };
        snapshot.push_str(&format!("{}  {hid}  {policy}  {}\n", w.name, w.intercepts));
        let id = format!("down:{}", w.name);
        let title = format!("converges when the pods of {} go down and come back", w.name);
        if w.policy == FailurePolicy::Ignore {
            table.row(vec![
                w.name.clone(),
                hid,
                policy.into(),
                w.intercepts.clone(),
                "-".into(),
                "fail-open: requests pass while it is down".into(),
            ]);
            continue;
        }
        if base.is_err() {
            // Taking pods down proves nothing about a bootstrap that does not converge.
            checks.push(Check::new(
                &id,
                &title,
                Status::Skip,
                "the bootstrap does not converge even with every webhook serving (see `bootstrap`)".into(),
            ));
            table.row(vec![w.name.clone(), hid, policy.into(), w.intercepts.clone(), "-".into(), "-".into()]);
            continue;
        }
        let Some(ready) = baseline
            .ready_order
            .iter()
            .find(|r| r.kind == ready_kind && r.name == ready_name)
            .map(|r| (r.at_seconds * 1000.0) as u64)
        else {
            checks.push(Check::new(
                &id,
                &title,
                Status::Skip,
                format!("{ready_kind} {ready_name} is never Ready in the bootstrap itself"),
            ));
            table.row(vec![w.name.clone(), hid, policy.into(), w.intercepts.clone(), "-".into(), "never Ready".into()]);
            continue;
        };
        // In the middle of what is left of the bootstrap once it serves.
        let end = (baseline.total_seconds * 1000.0) as u64;
        let from = (ready + end.saturating_sub(ready) / 2).max(ready + 1000) / 1000 * 1000;
        let to = from + DOWN_MS;
        let ns = &w.ns;
        let self_blocks = w.self_blocks(&undisturbed);
        let static_deadlock = || {
            format!(
                "deadlock: webhook {} (failurePolicy Fail) intercepts Pods in its own namespace {ns}, which it does not exempt: whenever its pods are replaced (restart, node loss, upgrade), the replacements go through the webhook itself, which has no endpoint, so they are refused and it never serves again",
                w.name
            )
        };
        // The simulator stops at convergence: a webhook Ready at the very end has nothing
        // left to disturb.
        if from >= end {
            let (status, msg) = if self_blocks {
                (Status::Fail, static_deadlock())
            } else {
                (
                    Status::Skip,
                    format!(
                        "{ready_kind} {ready_name} is Ready at {:.0}s, the end of the bootstrap: nothing is left to disturb",
                        ready as f64 / 1000.0
                    ),
                )
            };
            table.row(vec![w.name.clone(), hid, policy.into(), w.intercepts.clone(), "-".into(), status.word().into()]);
            checks.push(Check::new(&id, &title, status, msg));
            continue;
        }
        let mut faulted = sim.clone();
        faulted.faults.push(Fault::WebhookDown { name: w.name.clone(), from, to });
        let mut s = Simulator::of(loaded, faulted)?;
        s.run();
        let r = s.report();
        let window = format!("{}-{}", format_duration(from), format_duration(to));
        // The verdict is the faulted run's; a self-blocking webhook is also named as such
        // when nothing after its outage happened to need it.
        let result = match outcome(&r) {
            Err(why) if self_blocks => Err(format!(
                "webhook {} intercepts Pods in its own namespace {ns}, which it does not exempt: its pods went down at {} and their replacements were refused by the webhook itself: {why}",
                w.name,
                format_duration(from)
            )),
            Err(why) => Err(format!("its pods went down at {}: {why}", format_duration(from))),
            Ok(_) if self_blocks => Err(static_deadlock()),
            Ok(m) => {
                let lost = r.total_seconds - baseline.total_seconds;
                let failed = r.failures.len();
                Ok(format!(
                    "{m} ({lost:+.0}s against the undisturbed bootstrap, {failed} failed reconcile(s) on the way)"
                ))
            }
        };
        let (status, msg) = match result {
            Ok(m) => (Status::Pass, m),
            Err(m) => (Status::Fail, m),
        };
        table.row(vec![
            w.name.clone(),
            hid,
            policy.into(),
            w.intercepts.clone(),
            window,
            if status == Status::Pass { "recovers".into() } else { "DEADLOCK / stuck".into() },
        ]);
        checks.push(Check::new(&id, &title, status, msg));
    }
    Ok(SuiteResult { suite: SuiteName::WebhookBootstrap, checks, table, snapshot: Some(snapshot) })
}
