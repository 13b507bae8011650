//! `cargo xtask suite`: runs the named suites on a provider. `bootstrap-order` is the e2e
//! bootstrap itself (the same run as `cargo xtask e2e`); `webhook-bootstrap` and
//! `cni-chaining` play their faults on the simulator that drives the sim cluster;
//! `namespace-isolation` is computed from the repo's policies. Each suite's snapshot is
//! compared with the reviewed one under the repo's `.flux-harness/snapshots/`.

use super::run::{E2eRequest, Progress, Provider};
use crate::error::{Error, ErrorKind, Result};
use crate::suite::report::SuiteReport;
use crate::suite::snapshot::{self, Compared};
use crate::suite::{Check, Status, SuiteName, SuiteResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SuiteRequest {
    pub e2e: E2eRequest,
    /// Empty: all four.
    pub suites: Vec<SuiteName>,
    /// Where the reviewed snapshots are (default: `<repo>/.flux-harness/snapshots/<entry>`).
    pub snapshots: Option<PathBuf>,
    /// Write the snapshots instead of comparing (the change is then reviewed in git).
    pub update_snapshots: bool,
    /// `--rerun-failed`: only these suites, and in each only these check ids.
    pub only: Option<BTreeMap<SuiteName, Vec<String>>>,
}

/// The default snapshot directory of an entry (`clusters/staging` → `clusters-staging`).
pub fn snapshot_dir(repo: &Path, entry_path: &str) -> PathBuf {
    let key: String = entry_path
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    repo.join(".flux-harness").join("snapshots").join(if key.is_empty() { "root".into() } else { key })
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}

/// Compares (or writes) one suite's snapshot and adds the check saying so.
fn snapshot_check(result: &mut SuiteResult, dir: &Path, update: bool) -> Result<()> {
    let Some(content) = result.snapshot.clone() else { return Ok(()) };
    let path = dir.join(format!("{}.snap", result.suite.id()));
    let pending = dir.join(format!("{}.snap.new", result.suite.id()));
    let text = snapshot::file_text(result.suite.id(), &content);
    let stored = match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&path, e)),
    };
    let title = "the reviewed snapshot";
    let write = |p: &Path| -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        std::fs::write(p, &text).map_err(|e| io(p, e))
    };
    let check = match (snapshot::compare(stored.as_deref(), &content), update) {
        (Compared::Same, _) => {
            let _ = std::fs::remove_file(&pending);
            Check::new("snapshot", title, Status::Pass, format!("matches {}", path.display()))
        }
        (_, true) => {
            write(&path)?;
            let _ = std::fs::remove_file(&pending);
            Check::new(
                "snapshot",
                title,
                Status::Pass,
                format!("written to {} (--update-snapshots): review it in git", path.display()),
            )
        }
        (Compared::Missing, false) => {
            write(&pending)?;
            Check::new(
                "snapshot",
                title,
                Status::Fail,
                format!(
                    "no reviewed snapshot at {}: wrote {}; review it and rename it to .snap, or rerun with --update-snapshots",
                    path.display(),
                    pending.display()
                ),
            )
        }
        (Compared::Changed(diff), false) => {
            write(&pending)?;
            Check::new(
                "snapshot",
                title,
                Status::Fail,
                format!("differs from {} (new version in {}):\n{}", path.display(), pending.display(), diff.trim_end()),
            )
        }
    };
    result.checks.push(check);
    Ok(())
}

/// On a real cluster: the checks made on the cluster itself, or a skip saying why there
/// are none (the suite's checks above are then the simulator's or the policies').
fn on_cluster(result: &mut SuiteResult, provider: Provider, live: Option<Vec<Check>>, missing: &str) {
    if provider == Provider::Sim {
        return;
    }
    match live {
        Some(checks) => result.checks.extend(checks),
        None => result.checks.push(Check::new(
            "live",
            "checked on the cluster itself",
            Status::Skip,
            format!("on {}, {missing}: the checks above are the simulator's", provider.name()),
        )),
    }
}

/// What the suites check on a real cluster once it has bootstrapped.
fn live_checks(
    req: &E2eRequest,
    loaded: &crate::loaded::Loaded,
    wanted: &[SuiteName],
    prov: &dyn super::provider::ClusterProvider,
) -> BTreeMap<SuiteName, Vec<Check>> {
    let (model, cat) = (&loaded.model, &loaded.catalogue);
    let mut out = BTreeMap::new();
    if req.provider == Provider::Existing {
        // Taking pods down, restarting Cilium and starting probe pods change a cluster the
        // harness did not create: not done there.
        for s in wanted.iter().filter(|s| **s != SuiteName::BootstrapOrder) {
            out.insert(
                *s,
                vec![Check::new(
                    "live",
                    "checked on the cluster itself",
                    Status::Skip,
                    "not on a cluster the harness did not create: the live checks take pods down, restart Cilium or start probe pods, and the harness changes nothing it was not asked to; run them on kind or k3d".into(),
                )],
            );
        }
        return out;
    }
    let cni = |role| {
        model
            .helm_releases
            .iter()
            .any(|h| cat.chart(&h.spec.chart).and_then(|c| c.cni.as_ref()).is_some_and(|c| c.role == role))
    };
    if wanted.contains(&SuiteName::CniChaining) {
        // Without a chained CNI the suite has nothing to check, on the cluster either.
        let cilium = model.helm_releases.iter().any(|h| h.spec.chart == "cilium");
        let checks =
            if cni(crate::catalogue::CniRole::Chained) { super::live::cni_checks(prov, cilium) } else { vec![] };
        out.insert(SuiteName::CniChaining, checks);
    }
    if wanted.contains(&SuiteName::WebhookBootstrap) {
        let checks = match crate::suite::webhook::fail_closed(loaded) {
            Ok(hooks) => {
                let hooks: Vec<super::live::LiveHook> =
                    hooks.into_iter().map(|(name, self_blocks)| super::live::LiveHook { name, self_blocks }).collect();
                let ks: Vec<(String, String)> = model
                    .kustomizations
                    .iter()
                    .filter(|k| !k.spec.suspend)
                    .map(|k| (k.spec.namespace.clone(), k.spec.name.clone()))
                    .collect();
                super::live::webhook_checks(prov, &hooks, &ks, super::live::WEBHOOK_DOWN, &req.run_id)
            }
            Err(e) => vec![Check::new("live", "checked on the cluster itself", Status::Fail, e.to_string())],
        };
        out.insert(SuiteName::WebhookBootstrap, checks);
    }
    if wanted.contains(&SuiteName::NamespaceIsolation) {
        use crate::suite::isolation;
        let cfg = &loaded.config.isolation;
        let eps = isolation::endpoints(model, cfg, &isolation::environments(model, cfg));
        let expected = isolation::reachable(model, &eps, "TCP", 8080);
        let labels: Vec<String> = eps.iter().map(|e| e.label.clone()).collect();
        let namespaces: Vec<String> = eps.iter().map(|e| e.namespace.clone()).collect();
        out.insert(SuiteName::NamespaceIsolation, vec![super::live::probe(prov, &labels, &namespaces, &expected)]);
    }
    out
}

pub async fn run(req: &SuiteRequest, progress: Progress<'_>) -> Result<SuiteReport> {
    let loaded = super::run::load(&req.e2e)?;
    let (model, graph, config) = (&loaded.model, &loaded.graph, &loaded.config);
    let mut wanted: Vec<SuiteName> = if req.suites.is_empty() { SuiteName::ALL.to_vec() } else { req.suites.clone() };
    if let Some(only) = &req.only {
        wanted.retain(|s| only.contains_key(s));
    }
    let sim = crate::sim::SimConfig { cni_preinstalled: true, seed: req.e2e.seed, ..Default::default() };
    let dir = req.snapshots.clone().unwrap_or_else(|| snapshot_dir(&req.e2e.plan.repo, &model.entry_path));
    let mut results = vec![];
    let mut e2e = None;
    let provider = req.e2e.provider;
    // On a real cluster the live checks need it bootstrapped: the bootstrap runs whenever
    // one of their suites is asked for, and they run before it is torn down.
    let live_wanted = provider != Provider::Sim && wanted.iter().any(|s| *s != SuiteName::BootstrapOrder);
    let mut live: Option<BTreeMap<SuiteName, Vec<Check>>> = None;
    let mut bootstrap = None;
    if wanted.contains(&SuiteName::BootstrapOrder) || live_wanted {
        progress("suite bootstrap-order: bootstrapping the cluster");
        let mut collect =
            |prov: &dyn super::provider::ClusterProvider| live = Some(live_checks(&req.e2e, &loaded, &wanted, prov));
        let collect: super::run::Live = &mut collect;
        bootstrap = Some(super::run::run_loaded_then(&req.e2e, &loaded, progress, Some(collect)).await?);
    }
    let live_missing = if bootstrap.as_ref().is_some_and(|b| !b.passed) {
        "the bootstrap did not pass, so nothing was checked on the cluster"
    } else {
        "this check is not made on the cluster"
    };
    for suite in wanted {
        progress(&format!("suite {}", suite.id()));
        let on_live = live.as_mut().and_then(|l| l.remove(&suite));
        let mut result = match suite {
            SuiteName::BootstrapOrder => {
                let report = bootstrap.take().expect("run above");
                // The same commit, loaded again: what a second bootstrap would apply.
                let second = crate::commands::load(&req.e2e.plan)?;
                let r = crate::suite::order::run(model, graph, &report, Some(&second.model));
                e2e = Some(report);
                r
            }
            SuiteName::WebhookBootstrap => {
                let mut r = crate::suite::webhook::run(&loaded, &sim)?;
                on_cluster(&mut r, provider, on_live, live_missing);
                r
            }
            SuiteName::CniChaining => {
                let mut r = crate::suite::cni::run(&loaded, &sim)?;
                on_cluster(&mut r, provider, on_live, live_missing);
                r
            }
            SuiteName::NamespaceIsolation => {
                let mut r = crate::suite::isolation::run(model, &config.isolation);
                on_cluster(&mut r, provider, on_live, live_missing);
                r
            }
        };
        snapshot_check(&mut result, &dir, req.update_snapshots)?;
        if let Some(ids) = req.only.as_ref().and_then(|o| o.get(&suite)) {
            result.keep_rerun(ids);
        }
        results.push(result);
    }
    let passed = results.iter().all(|r| r.passed());
    Ok(SuiteReport {
        provider: req.e2e.provider.name().into(),
        repo: req.e2e.plan.repo.display().to_string(),
        entry: model.entry_path.clone(),
        entry_namespace: model.kustomizations[model.entry].spec.namespace.clone(),
        passed,
        suites: results,
        e2e,
        artifacts: vec![],
    })
}

/// Reads the last report for `--rerun-failed`: the failed checks by suite.
pub fn failed_in(report_json: &Path) -> Result<BTreeMap<SuiteName, Vec<String>>> {
    let text = std::fs::read_to_string(report_json).map_err(|e| {
        Error::in_file(
            ErrorKind::MissingPath,
            &report_json.display().to_string(),
            format!("--rerun-failed needs the last suite report: {e}"),
        )
    })?;
    let report: SuiteReport = serde_json::from_str(&text).map_err(|e| {
        Error::in_file(ErrorKind::BadObject, &report_json.display().to_string(), format!("not a suite report: {e}"))
    })?;
    Ok(report.failed())
}

/// Writes suite-report.json, suite-junit.xml, suite-summary.md and timeline.html into
/// `dir`, and lists them in the report. The e2e report behind them carries no secret value.
pub fn write_artifacts(report: &mut SuiteReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut names = vec!["suite-report.json", "suite-junit.xml", "suite-summary.md"];
    if report.e2e.is_some() {
        names.push("timeline.html");
    }
    report.artifacts = names.iter().map(|n| dir.join(n).display().to_string()).collect();
    for name in names {
        let text = match name {
            "suite-report.json" => report.to_json(),
            "suite-junit.xml" => report.to_junit(),
            "suite-summary.md" => report.to_markdown(),
            _ => match &report.e2e {
                Some(e) => crate::suite::html::timeline(
                    e,
                    &format!("Bootstrap of {} ({})", report.entry, report.provider),
                    &report.entry_namespace,
                ),
                None => continue,
            },
        };
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    Ok(())
}
