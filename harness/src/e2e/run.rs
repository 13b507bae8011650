//! `cargo xtask e2e`: bootstrap the repo on a cluster, watch every Kustomization and
//! HelmRelease with kube-rs, check the assertions, write diagnostics on failure, clean up.
//! Providers: `sim` (the simulated cluster, in-process), `kind`, `k3d`, `existing` (the
//! bootstrap plan, executed through `exec`).

use super::assert::{self, Observation};
use super::cluster::Cluster;
pub use super::cluster::{plan_for, provider};
pub use super::execute::execute;
pub use super::plan::Provider;
use super::report::{E2eReport, Predicted};
use crate::commands::PlanRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::loaded::Loaded;
use crate::model::RepoModel;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct E2eRequest {
    pub plan: PlanRequest,
    pub provider: Provider,
    pub context: Option<String>,
    pub keep: bool,
    /// Seconds (virtual seconds on the sim provider).
    pub timeout_seconds: f64,
    pub age_key: Option<PathBuf>,
    /// On sim: the decryption Secrets are taken as present and right (no key, nothing
    /// decrypted); refused on kind/k3d, which cannot be given a Secret the harness lacks.
    pub assume_decryption: bool,
    pub artifacts: PathBuf,
    /// Virtual seconds per real second on the sim provider.
    pub speed: f64,
    pub seed: u64,
    /// A reviewed layer snapshot (JSON list of lists of names) to compare against.
    pub layers_snapshot: Option<PathBuf>,
    /// Names the cluster and the run branch (`flux-harness-<run_id>`).
    pub run_id: String,
    /// A failed reconcile that a retry mended is a warning instead of a violation.
    pub allow_retries: bool,
    /// `--install-cni` / `--install-flux`: what the harness may install on a cluster it did
    /// not create (kind and k3d always get both).
    pub install_cni: bool,
    pub install_flux: bool,
}

/// What the run needs from outside: a way to report progress.
pub type Progress<'a> = &'a dyn Fn(&str);

/// A kind the client addresses by name (Flux's, whose plurals are known).
pub(super) fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// How the watcher dates what it sees: by the condition's own `lastTransitionTime`, as
/// seconds after `anchor_ms` (Unix ms; on sim, virtual time 0), so the times do not depend
/// on when the event reached the watcher. `fallback` dates a condition without a readable
/// time from the watcher's own clock (elapsed since the first event).
pub struct Clock<'a> {
    pub anchor_ms: i64,
    pub fallback: &'a (dyn Fn(Duration) -> f64 + Sync),
}

impl Clock<'_> {
    fn at(&self, condition: &serde_json::Value, elapsed: Duration) -> f64 {
        match condition["lastTransitionTime"].as_str().and_then(crate::apiserver::tls::parse_rfc3339) {
            Some(ms) => (ms - self.anchor_ms) as f64 / 1000.0,
            None => (self.fallback)(elapsed),
        }
    }
}

pub(super) fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Records every change of the Ready and Stalled conditions of Kustomizations and
/// HelmReleases until all those of the model are Ready, or the deadline.
pub async fn watch(
    client: kube::Client,
    model: &RepoModel,
    deadline: Duration,
    clock: &Clock<'_>,
    started: &(dyn Fn() + Sync),
) -> Vec<Observation> {
    let mut start = Instant::now();
    let ks: Api<DynamicObject> =
        Api::all_with(client.clone(), &ar("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"));
    let hrs: Api<DynamicObject> =
        Api::all_with(client, &ar("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"));
    let tag = |kind: &'static str| move |o: DynamicObject| (kind, o);
    let stream = futures::stream::select(
        watcher(ks, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .filter_map(|r| async move { r.ok() })
            .map(tag("Kustomization")),
        watcher(hrs, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .filter_map(|r| async move { r.ok() })
            .map(tag("HelmRelease")),
    );
    futures::pin_mut!(stream);
    let mut want: BTreeSet<(String, String, String)> = model
        .kustomizations
        .iter()
        .filter(|k| !k.spec.suspend)
        .map(|k| ("Kustomization".to_string(), k.spec.namespace.clone(), k.spec.name.clone()))
        .chain(
            model
                .helm_releases
                .iter()
                .map(|h| ("HelmRelease".to_string(), h.spec.namespace.clone(), h.spec.name.clone())),
        )
        .collect();
    // (kind, namespace, name, condition) -> (status, reason, message) last recorded.
    type CondKey = (String, String, String, String);
    let mut last: BTreeMap<CondKey, (String, String, String)> = BTreeMap::new();
    let mut out = vec![];
    // Both watches have listed once the first object arrives (the entry Kustomization
    // exists from the start): the clock starts there.
    let mut first = true;
    while !want.is_empty() {
        let left = deadline.saturating_sub(start.elapsed());
        let Ok(Some((kind, o))) = tokio::time::timeout(left, stream.next()).await else { break };
        if first {
            first = false;
            started();
            start = Instant::now();
        }
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        for c in o.data["status"]["conditions"].as_array().into_iter().flatten() {
            let ctype = c["type"].as_str().unwrap_or("");
            if ctype != "Ready" && ctype != "Stalled" {
                continue;
            }
            let state = (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            );
            let key = (kind.to_string(), ns.clone(), name.clone(), ctype.to_string());
            if last.get(&key) == Some(&state) {
                continue;
            }
            last.insert(key, state.clone());
            out.push(Observation {
                at_seconds: clock.at(c, start.elapsed()),
                kind: kind.into(),
                namespace: ns.clone(),
                name: name.clone(),
                condition: ctype.into(),
                status: state.0.clone(),
                reason: state.1,
                message: state.2,
            });
            if ctype == "Ready" && state.0 == "True" {
                want.remove(&(kind.to_string(), ns.clone(), name.clone()));
            }
        }
    }
    out
}

/// Values of the repo's Secrets (SOPS ciphertext, and the plaintext the cluster decrypts
/// it to when the run has the key: controller logs and events may quote it): they must
/// never reach an artifact.
fn secret_values(loaded: &Loaded) -> Vec<String> {
    let mut out = vec![];
    let secrets = loaded
        .model
        .kustomizations
        .iter()
        .flat_map(|k| &k.objects)
        .filter(|o| o.kind() == "Secret" && o.group().is_empty());
    for o in secrets {
        let mut values = vec![o.value.clone()];
        if let crate::config::Decryption::Keys(keys) = &loaded.config.decryption
            && crate::sops::is_encrypted(&o.value)
            && let Ok(clear) = crate::sops::decrypt(&o.value, keys)
        {
            values.push(clear);
        }
        for (value, field) in values.iter().flat_map(|v| ["data", "stringData"].map(|f| (v, f))) {
            for v in value.get(field).and_then(|d| d.as_object()).into_iter().flat_map(|m| m.values()) {
                let s = crate::kustomize::transform::scalar_string(v);
                if s.len() >= 4 {
                    out.push(s.clone());
                    if field == "data"
                        && let Some(dec) =
                            crate::kustomize::generate::base64_decode(&s).and_then(|b| String::from_utf8(b).ok())
                        && dec.len() >= 4
                    {
                        out.push(dec);
                    }
                }
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn write_artifact(dir: &Path, name: &str, content: &str, secrets: &[String]) -> Result<()> {
    let mut text = content.to_string();
    for s in secrets {
        text = text.replace(s.as_str(), "<redacted>");
    }
    std::fs::write(dir.join(name), text)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dir.join(name).display())))
}

/// Diagnostics for a failed run: the status of every Flux object, the chains that explain
/// what is stuck, the timeline. Secret values never appear.
async fn diagnostics(
    dir: &Path,
    client: &kube::Client,
    loaded: &Loaded,
    obs: &[Observation],
    chains: &str,
    extra: &[(&str, String)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
    let secrets = secret_values(loaded);
    let mut status = serde_json::Map::new();
    for (g, v, k, p) in [
        ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"),
        ("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"),
        ("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
        ("source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories"),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar(g, v, k, p));
        let items: Vec<serde_json::Value> = match api.list(&ListParams::default()).await {
            Ok(l) => l.items.into_iter().map(|o| serde_json::json!({"namespace": o.metadata.namespace, "name": o.metadata.name, "status": o.data["status"]})).collect(),
            Err(e) => vec![serde_json::json!({"error": e.to_string()})],
        };
        status.insert(k.to_string(), serde_json::Value::Array(items));
    }
    write_artifact(dir, "status.json", &serde_json::to_string_pretty(&status).unwrap_or_default(), &secrets)?;
    write_artifact(dir, "stuck.txt", chains, &secrets)?;
    write_artifact(dir, "timeline.json", &serde_json::to_string_pretty(obs).unwrap_or_default(), &secrets)?;
    for (name, content) in extra {
        write_artifact(dir, name, content, &secrets)?;
    }
    Ok(())
}

fn load_snapshot(path: &Option<PathBuf>) -> Result<Option<Vec<Vec<String>>>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|e| {
        Error::in_file(ErrorKind::MissingPath, &p.display().to_string(), format!("cannot read the layer snapshot: {e}"))
    })?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::in_file(
            ErrorKind::BadObject,
            &p.display().to_string(),
            format!("the layer snapshot is not a JSON list of lists of names: {e}"),
        )
    })
}

fn predicted(
    loaded: &Loaded,
    sim: crate::sim::SimConfig,
    rows: &[assert::KRow],
    hr_rows: &[assert::KRow],
) -> Vec<Predicted> {
    let Ok(p) = crate::sim::simulate(loaded, sim) else { return vec![] };
    let at =
        |kind: &str, name: &str| p.ready_order.iter().find(|x| x.kind == kind && x.name == name).map(|x| x.at_seconds);
    let ks = rows.iter().map(|r| Predicted {
        kind: "Kustomization".into(),
        name: r.name.clone(),
        predicted_seconds: at("Kustomization", &r.name),
        observed_seconds: r.ready_at_seconds,
    });
    let hs = hr_rows.iter().map(|r| Predicted {
        kind: "HelmRelease".into(),
        name: r.name.clone(),
        predicted_seconds: at("HelmRelease", &r.name),
        observed_seconds: r.ready_at_seconds,
    });
    ks.chain(hs).collect()
}

/// Runs the e2e. `Err` is a setup error (exit 2); a report that did not pass is exit 1.
/// `plan` runs first: its error findings head the report, since they are most often the
/// cause of what the cluster then shows.
pub async fn run(req: &E2eRequest, progress: Progress<'_>) -> Result<E2eReport> {
    run_loaded(req, &load(req)?, progress).await
}

/// The repo as this run's cluster sees it: loaded once, with what it decrypts with.
pub fn load(req: &E2eRequest) -> Result<Loaded> {
    let mut loaded = crate::commands::load(&req.plan)?;
    super::secrets::apply(req, &mut loaded.config)?;
    Ok(loaded)
}

/// Checks run on a real cluster once its bootstrap passed, before it is torn down.
pub type Live<'a> = &'a mut (dyn FnMut(&dyn super::provider::ClusterProvider) + Send);

/// [`run`] of a repo already loaded (from `req.plan`).
pub async fn run_loaded(req: &E2eRequest, loaded: &Loaded, progress: Progress<'_>) -> Result<E2eReport> {
    run_loaded_then(req, loaded, progress, None).await
}

/// [`run_loaded`], then `live` on the cluster (real providers, when the bootstrap passed).
pub async fn run_loaded_then(
    req: &E2eRequest,
    loaded: &Loaded,
    progress: Progress<'_>,
    live: Option<Live<'_>>,
) -> Result<E2eReport> {
    let expected = load_snapshot(&req.layers_snapshot)?;
    let preflight: Vec<crate::findings::Finding> = crate::commands::analyse(loaded)
        .findings
        .into_iter()
        .filter(|f| f.severity == crate::findings::Severity::Error)
        .collect();
    if !preflight.is_empty() {
        progress(&format!(
            "plan found {} error finding(s); running the bootstrap to show their effect",
            preflight.len()
        ));
    }
    let mut report = run_on_cluster(req, loaded, expected, progress, live).await?;
    report.preflight = preflight;
    Ok(report)
}

fn expectations<'a>(
    req: &E2eRequest,
    layers: Option<&'a Vec<Vec<String>>>,
    deadlock: Option<String>,
) -> assert::Expect<'a> {
    assert::Expect { timeout_seconds: req.timeout_seconds, layers, allow_retries: req.allow_retries, deadlock }
}

/// One run path for every provider: the cluster prepared up to the entry, the working
/// tree served, the entry applied, every Kustomization and HelmRelease watched, the
/// verdicts, diagnostics when it failed, and the cluster torn down (also when this future
/// is dropped: Ctrl-C, SIGTERM).
async fn run_on_cluster(
    req: &E2eRequest,
    loaded: &Loaded,
    expected: Option<Vec<Vec<String>>>,
    progress: Progress<'_>,
    live: Option<Live<'_>>,
) -> Result<E2eReport> {
    let mut cluster = Cluster::prepare(req, &loaded.model, progress).await?;
    let (bind, host) = cluster.git_address()?;
    let served = super::served::serve(req, &loaded.model, bind, &host, progress).await?;
    cluster.bootstrap(req, &loaded.model, &served, progress).await?;
    let client = cluster.client(req).await?;
    let watched = cluster.loaded(loaded);
    let (model, graph) = (&watched.model, &watched.graph);
    progress("watching Kustomizations and HelmReleases");
    let speed = cluster.speed(req);
    let fallback = move |d: Duration| d.as_secs_f64() * speed;
    let clock = Clock { anchor_ms: cluster.anchor_ms(), fallback: &fallback };
    let obs = watch(client.clone(), model, cluster.deadline(req), &clock, &|| cluster.start_clock()).await;
    let sim_report = cluster.sim_report();
    let deadlock =
        sim_report.as_ref().and_then(|r| r.deadlock.as_ref()).map(|d| format!("deadlock: {}", d.explanation));
    let (rows, mut violations, warnings) =
        assert::check(model, graph, &obs, &expectations(req, expected.as_ref(), deadlock));
    if let Some(v) = super::served::source_check(&client, model, &served).await {
        violations.insert(0, v);
    }
    let passed = violations.is_empty();
    let mut artifacts = None;
    if !passed {
        progress("collecting diagnostics");
        let chains = match &sim_report {
            Some(r) => {
                r.stuck
                    .iter()
                    .map(|s| {
                        format!("{} {}: {} {}\n    {} {}\n", s.kind, s.name, s.reason, s.message, s.name, s.because)
                    })
                    .collect::<String>()
                    + &r.deadlock.as_ref().map(|d| format!("DEADLOCK: {}\n", d.explanation)).unwrap_or_default()
            }
            None => violations.iter().map(|v| format!("[{}] {}\n", v.kind, v.message)).collect(),
        };
        let extra = cluster.extra_diagnostics();
        let extra: Vec<(&str, String)> = extra.iter().map(|(f, c)| (f.as_str(), c.clone())).collect();
        diagnostics(&req.artifacts, &client, watched, &obs, &chains, &extra).await?;
        artifacts = Some(req.artifacts.display().to_string());
    }
    if let (true, Some(live), Some(prov)) = (passed, live, cluster.provider()) {
        progress("checking the cluster itself (live suite checks)");
        // Commands that may take minutes: off the async workers where there are several.
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| live(prov)),
            _ => live(prov),
        }
    }
    if req.keep {
        for said in cluster.kept(req) {
            progress(&said);
        }
    }
    let revision = served.revision();
    let rewritten = served.rewritten.clone();
    drop(served);
    let sim_predicted = crate::sim::SimConfig { cni_preinstalled: true, seed: req.seed, ..Default::default() };
    let hr_rows = assert::helm_rows(model, graph, &obs);
    let predicted_vs_observed = predicted(watched, sim_predicted, &rows, &hr_rows);
    cluster.teardown();
    Ok(E2eReport {
        provider: req.provider.name().into(),
        passed,
        duration_seconds: obs.iter().map(|o| o.at_seconds).fold(0.0, f64::max),
        kustomizations: rows,
        helm_releases: hr_rows,
        violations,
        warnings,
        preflight: vec![],
        rewritten,
        revision: Some(revision),
        artifacts,
        predicted_vs_observed,
        timeline: obs,
        time_unit: if req.provider == Provider::Sim { "virtual seconds" } else { "seconds" }.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the run's key, the plaintext the cluster holds is redacted too, not only the
    /// ciphertext in the repo.
    #[test]
    fn decrypted_values_are_redacted_when_the_run_has_the_key() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/netcorp-infra");
        let req = PlanRequest {
            repo,
            entry: Some(crate::model::Entry::Cluster("staging".into())),
            sources: vec![],
            renderer: crate::commands::RendererChoice::Native,
        };
        let loaded = crate::commands::load(&req).unwrap();
        assert!(matches!(loaded.config.decryption, crate::config::Decryption::Keys(_)), "the example names its key");
        let values = secret_values(&loaded);
        let grafana = loaded
            .model
            .kustomizations
            .iter()
            .flat_map(|k| &k.objects)
            .find(|o| o.kind() == "Secret" && o.name() == "grafana-admin")
            .unwrap();
        let crate::config::Decryption::Keys(keys) = &loaded.config.decryption else { unreachable!() };
        let clear = crate::sops::decrypt(&grafana.value, keys).unwrap();
        let password = clear["stringData"]["admin-password"].as_str().unwrap().to_string();
        assert!(values.contains(&password), "the decrypted password is among the redacted values");
        let mut assumed = loaded;
        assumed.config.decryption = crate::config::Decryption::Assumed;
        assert!(!secret_values(&assumed).contains(&password), "without the key only ciphertext is known");
    }
}
