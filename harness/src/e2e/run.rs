//! `cargo xtask e2e`: bootstrap the repo on a cluster, watch every Kustomization and
//! HelmRelease with kube-rs, check the assertions, write diagnostics on failure, clean up.
//! Providers: `sim` (the simulated cluster, in-process), `kind`, `k3d`, `existing` (the
//! bootstrap plan, executed through `exec`).

use super::assert::{self, Observation};
pub use super::execute::execute;
use super::execute::{Cleanup, cleanup_commands, execute_step_async};
use super::plan::{self, ProviderKind, Step};
use super::provider::{ClusterProvider, Existing, K3d, Kind};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Sim,
    Real(ProviderKind),
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Sim => "sim",
            Provider::Real(ProviderKind::Kind) => "kind",
            Provider::Real(ProviderKind::K3d) => "k3d",
            Provider::Real(ProviderKind::Existing) => "existing",
        }
    }
}

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

fn kube_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("Kubernetes API: {e}"))
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
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

fn wall_ms() -> i64 {
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

/// Values of the repo's Secrets (and SOPS ciphertext): they must never reach an artifact.
fn secret_values(model: &RepoModel) -> Vec<String> {
    let mut out = vec![];
    for o in
        model.kustomizations.iter().flat_map(|k| &k.objects).filter(|o| o.kind() == "Secret" && o.group().is_empty())
    {
        for field in ["data", "stringData"] {
            for v in o.value.get(field).and_then(|d| d.as_object()).into_iter().flat_map(|m| m.values()) {
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
    model: &RepoModel,
    obs: &[Observation],
    chains: &str,
    extra: &[(&str, String)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
    let secrets = secret_values(model);
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

/// [`run`] of a repo already loaded (from `req.plan`).
pub async fn run_loaded(req: &E2eRequest, loaded: &Loaded, progress: Progress<'_>) -> Result<E2eReport> {
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
    let mut report = match req.provider {
        Provider::Sim => run_sim(req, &loaded.model, expected, progress).await,
        Provider::Real(kind) => run_real(req, kind, loaded, expected, progress).await,
    }?;
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

async fn run_sim(
    req: &E2eRequest,
    tree: &RepoModel,
    expected: Option<Vec<Vec<String>>>,
    progress: Progress<'_>,
) -> Result<E2eReport> {
    // The path a real cluster takes: the working tree served by the harness's git server,
    // fetched back over HTTP, and the model built from what was fetched.
    let served =
        super::served::serve(req, tree, "127.0.0.1:0".parse().expect("an address"), "127.0.0.1", progress).await?;
    progress("source-controller (simulated): fetching the served branch");
    let mut fetched = super::served::fetch(req, &served).await?;
    super::secrets::apply(req, &mut fetched.config)?;
    // As on a real cluster, the CNI runs before Flux starts.
    let sim = crate::sim::SimConfig {
        cni_preinstalled: true,
        seed: req.seed,
        revision: served.revision(),
        self_url: served.url.clone(),
        unfetchable: super::served::unfetchable(&fetched.model, &served.url),
        ..Default::default()
    };
    progress("starting the simulated cluster (HTTPS on 127.0.0.1)");
    let cluster = crate::apiserver::driver::start_paused(fetched, sim.clone(), req.speed, 0, true).await?;
    let loaded = cluster.loaded();
    let (model, graph) = (&loaded.model, &loaded.graph);
    let kc = kube::config::Kubeconfig::from_yaml(&cluster.server.kubeconfig()).map_err(kube_error)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(kube_error)?,
    )
    .map_err(kube_error)?;
    let speed = req.speed;
    progress("watching Kustomizations and HelmReleases");
    let real_deadline = Duration::from_secs_f64(req.timeout_seconds / speed) + Duration::from_millis(500);
    let fallback = move |d: Duration| d.as_secs_f64() * speed;
    let clock = Clock { anchor_ms: cluster.anchor_ms() as i64, fallback: &fallback };
    let obs = watch(client.clone(), model, real_deadline, &clock, &|| cluster.resume()).await;
    let sim_report = cluster.report();
    let deadlock = sim_report.deadlock.as_ref().map(|d| format!("deadlock: {}", d.explanation));
    let (rows, mut violations, warnings) =
        assert::check(model, graph, &obs, &expectations(req, expected.as_ref(), deadlock));
    if let Some(v) = super::served::source_check(&client, model, &served).await {
        violations.insert(0, v);
    }
    let passed = violations.is_empty();
    let duration = obs.iter().map(|o| o.at_seconds).fold(0.0, f64::max);
    let mut artifacts = None;
    if !passed {
        let chains = sim_report
            .stuck
            .iter()
            .map(|s| format!("{} {}: {} {}\n    {} {}\n", s.kind, s.name, s.reason, s.message, s.name, s.because))
            .collect::<String>()
            + &sim_report.deadlock.map(|d| format!("DEADLOCK: {}\n", d.explanation)).unwrap_or_default();
        let notes = "the sim provider has no controller logs, events or node CNI configs: status.json, stuck.txt and timeline.json come from the simulated cluster\n".to_string();
        diagnostics(&req.artifacts, &client, model, &obs, &chains, &[("README.txt", notes)]).await?;
        artifacts = Some(req.artifacts.display().to_string());
    }
    drop(cluster);
    let hr_rows = assert::helm_rows(model, graph, &obs);
    let predicted_vs_observed = predicted(loaded, sim, &rows, &hr_rows);
    Ok(E2eReport {
        provider: "sim".into(),
        passed,
        duration_seconds: duration,
        kustomizations: rows,
        helm_releases: hr_rows,
        violations,
        warnings,
        preflight: vec![],
        rewritten: served.rewritten.clone(),
        revision: Some(served.revision()),
        artifacts,
        predicted_vs_observed,
        timeline: obs,
        time_unit: "virtual seconds".into(),
    })
}

/// The provider for a real cluster of this run. A repo that brings Cilium gets a cluster
/// without a CNI (the plan pre-installs the repo's Cilium); one that brings none keeps the
/// provider's default CNI, so its pods have a network.
pub fn provider(req: &E2eRequest, kind: ProviderKind, model: &RepoModel) -> Result<Box<dyn ClusterProvider>> {
    let repo_cni = model.helm_releases.iter().any(|h| h.spec.chart == "cilium");
    let name = format!("flux-harness-{}", req.run_id);
    let kubeconfig = req.artifacts.join("kubeconfig").display().to_string();
    // The plan writes the embedded kind-configs here before creating the cluster.
    let configs = req.artifacts.join("cluster-configs").display().to_string();
    Ok(match kind {
        ProviderKind::Kind => Box::new(Kind {
            name,
            config: format!("{configs}/{}", if repo_cni { "kind.yaml" } else { "kind-default-cni.yaml" }),
            kubeconfig,
            repo_cni,
        }),
        ProviderKind::K3d => Box::new(K3d { name, config_dir: configs, kubeconfig, repo_cni }),
        ProviderKind::Existing => {
            let context = req.context.clone().ok_or_else(|| {
                Error::new(ErrorKind::Usage, "--provider existing needs --context NAME: the harness never uses a cluster it did not create unless you name it")
            })?;
            Box::new(Existing { context })
        }
    })
}

/// The executable plan for a real provider (also what `--dry-run` prints).
pub fn real_plan(req: &E2eRequest, kind: ProviderKind, model: &RepoModel, git_url: &str) -> Result<Vec<Step>> {
    let provider = provider(req, kind, model)?;
    let root = req.plan.repo.clone();
    let gotk = crate::files::join(&model.entry_path, "flux-system/gotk-components.yaml")
        .ok()
        .map(|p| root.join(p))
        .filter(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|t| t.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        });
    Ok(plan::build(&plan::PlanInput {
        provider: provider.as_ref(),
        artifacts: req.artifacts.display().to_string(),
        model,
        gotk_components: gotk.map(|p| p.display().to_string()),
        git_url: git_url.to_string(),
        run_branch: format!("flux-harness/run-{}", req.run_id),
        age_key: super::secrets::age_key_file(req)?.map(|p| p.display().to_string()),
        existing: kind == ProviderKind::Existing,
        install_cni: req.install_cni,
        install_flux: req.install_flux,
    }))
}

/// Before anything runs: every program the plan calls is installed, and the cluster's name
/// is free (a cluster left by an earlier run with `--keep` must not be taken over, and
/// above all not deleted by this run's cleanup).
fn preflight(prov: &dyn ClusterProvider, steps: &[Step]) -> Result<()> {
    let mut missing: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Run { cmd, .. } | Step::Save { cmd, .. } | Step::IfAbsent { check: cmd, .. } => {
                Some(cmd.program.as_str())
            }
            Step::Write { .. } => None,
        })
        .chain(prov.docker_network().is_some().then_some("docker"))
        .chain(std::iter::once("git"))
        .filter(|p| !crate::exec::have(p))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "--provider {} needs {} on PATH, which {} not installed; nothing was run",
                prov.name(),
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            ),
        ));
    }
    if let (Some(list), Some(name)) = (prov.list_clusters(), prov.cluster_name()) {
        let out = list.output().map_err(|e| e.context("while checking which clusters exist"))?;
        if out.lines().any(|l| l.split_whitespace().next() == Some(name)) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "a {} cluster named {name} already exists (kept by an earlier run?): the harness creates and deletes only its own; delete it or run again (each run gets a new name)",
                    prov.name()
                ),
            ));
        }
    }
    Ok(())
}

/// The address pods reach this machine on: the gateway of the cluster's docker network.
fn gateway(provider: &dyn ClusterProvider) -> Result<String> {
    let Some(network) = provider.docker_network() else {
        return std::env::var("HARNESS_GIT_HOST").map_err(|_| {
            Error::new(ErrorKind::Usage, format!("--provider {}: set HARNESS_GIT_HOST to an address of this machine that the cluster's pods can reach (the harness's git server binds to it)", provider.name()))
        });
    };
    let out = crate::exec::Cmd::new(
        "docker",
        &["network", "inspect", &network, "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
    )
    .output()?;
    out.split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .ok_or_else(|| Error::new(ErrorKind::Io, format!("docker network {network} has no IPv4 gateway")))
}

async fn run_real(
    req: &E2eRequest,
    kind: ProviderKind,
    loaded: &Loaded,
    expected: Option<Vec<Vec<String>>>,
    progress: Progress<'_>,
) -> Result<E2eReport> {
    let (model, graph) = (&loaded.model, &loaded.graph);
    let prov = provider(req, kind, model)?;
    std::fs::create_dir_all(&req.artifacts)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", req.artifacts.display())))?;
    // The entry needs the git server's URL, which needs the cluster's network: run the
    // plan up to the entry, start the server, then apply the entry.
    let draft = real_plan(req, kind, model, "http://GIT-SERVER/repo.git")?;
    for said in super::leftovers::sweep(prov.as_ref()) {
        progress(&said);
    }
    preflight(prov.as_ref(), &draft)?;
    let entry_steps = 2;
    // The guard knows every cleanup command before the first command runs.
    let mut guard = Cleanup::new(cleanup_commands(&draft), req.keep);
    if let Some(name) = prov.cluster_name() {
        guard.record = Some(super::leftovers::register(prov.name(), name)?);
    }
    for s in &draft[..draft.len() - entry_steps] {
        execute_step_async(s, &mut guard, progress).await?;
    }
    let host = gateway(prov.as_ref())?;
    let bind = format!("{host}:0").parse().map_err(|e| Error::new(ErrorKind::Usage, format!("{host}: {e}")))?;
    let served = super::served::serve(req, model, bind, &host, progress).await?;
    let plan = real_plan(req, kind, model, &served.url)?;
    let entry_applied_ms = wall_ms();
    for s in &plan[plan.len() - entry_steps..] {
        execute_step_async(s, &mut guard, progress).await?;
    }
    let client = match (&req.context, kind) {
        (Some(ctx), ProviderKind::Existing) => {
            let opts = kube::config::KubeConfigOptions { context: Some(ctx.clone()), ..Default::default() };
            kube::Client::try_from(kube::Config::from_kubeconfig(&opts).await.map_err(kube_error)?)
                .map_err(kube_error)?
        }
        _ => {
            let kc = kube::config::Kubeconfig::read_from(req.artifacts.join("kubeconfig")).map_err(kube_error)?;
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(kube_error)?,
            )
            .map_err(kube_error)?
        }
    };
    progress("watching Kustomizations and HelmReleases");
    // Times count from when the entry was applied.
    let clock = Clock { anchor_ms: entry_applied_ms, fallback: &|d: Duration| d.as_secs_f64() };
    let obs = watch(client.clone(), model, Duration::from_secs_f64(req.timeout_seconds), &clock, &|| {}).await;
    let (rows, mut violations, warnings) =
        assert::check(model, graph, &obs, &expectations(req, expected.as_ref(), None));
    if let Some(v) = super::served::source_check(&client, model, &served).await {
        violations.insert(0, v);
    }
    let passed = violations.is_empty();
    let mut artifacts = None;
    if !passed {
        progress("collecting diagnostics");
        let target = prov.target().kubectl_args();
        let kubectl = |args: &[&str]| {
            let mut a: Vec<&str> = target.iter().map(String::as_str).collect();
            a.extend_from_slice(args);
            crate::exec::Cmd::new("kubectl", &a).output().unwrap_or_else(|e| format!("{e}\n"))
        };
        let mut extra: Vec<(String, String)> = vec![
            ("events.txt".into(), kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"])),
            (
                "kustomize-controller.log".into(),
                kubectl(&["-n", "flux-system", "logs", "deploy/kustomize-controller", "--tail=2000"]),
            ),
            (
                "helm-controller.log".into(),
                kubectl(&["-n", "flux-system", "logs", "deploy/helm-controller", "--tail=2000"]),
            ),
            (
                "source-controller.log".into(),
                kubectl(&["-n", "flux-system", "logs", "deploy/source-controller", "--tail=2000"]),
            ),
        ];
        for (file, cmd) in prov.logs() {
            extra.push((file, cmd.output().unwrap_or_else(|e| format!("{e}\n"))));
        }
        if let Some(nodes) = prov.nodes().and_then(|c| c.output().ok()) {
            let mut cni = String::new();
            for n in nodes.split_whitespace() {
                if let Some(cmd) = prov.on_node(n, "ls -l /etc/cni/net.d; cat /etc/cni/net.d/05-cilium.conflist") {
                    cni.push_str(&format!("== {n}\n{}", cmd.output().unwrap_or_else(|e| format!("{e}\n"))));
                }
            }
            extra.push(("node-cni.txt".into(), cni));
        }
        let extra: Vec<(&str, String)> = extra.iter().map(|(f, c)| (f.as_str(), c.clone())).collect();
        let chains = violations.iter().map(|v| format!("[{}] {}\n", v.kind, v.message)).collect::<String>();
        diagnostics(&req.artifacts, &client, model, &obs, &chains, &extra).await?;
        artifacts = Some(req.artifacts.display().to_string());
    }
    if req.keep && !prov.delete().is_empty() {
        progress(&format!("kept: export KUBECONFIG={}", req.artifacts.join("kubeconfig").display()));
    }
    if req.keep && kind == ProviderKind::Existing {
        // Kept as the run left it: it syncs from a server that is about to stop.
        progress(&format!(
            "kept: the cluster still syncs from the harness's git server; to put its own sync back: kubectl --context {} apply --server-side --force-conflicts -f {}",
            req.context.as_deref().unwrap_or(""),
            req.artifacts.join("entry-before.yaml").display()
        ));
    }
    let revision = served.revision();
    let rewritten = served.rewritten.clone();
    drop(served);
    guard.run();
    let duration = obs.iter().map(|o| o.at_seconds).fold(0.0, f64::max);
    let sim = crate::sim::SimConfig { cni_preinstalled: true, seed: req.seed, ..Default::default() };
    let hr_rows = assert::helm_rows(model, graph, &obs);
    let predicted_vs_observed = predicted(loaded, sim, &rows, &hr_rows);
    Ok(E2eReport {
        provider: Provider::Real(kind).name().into(),
        passed,
        duration_seconds: duration,
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
        time_unit: "seconds".into(),
    })
}
