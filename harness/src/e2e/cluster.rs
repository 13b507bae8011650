//! The cluster a run bootstraps, one abstraction over every provider: prepared (created,
//! its CNI and Flux installed: the plan up to the entry), bootstrapped (the entry applied,
//! pointing at the harness's git server), reached (a kube-rs client, the clock its
//! conditions are dated by), inspected when the run fails, and torn down (its cleanup
//! guard, or the simulated cluster dropped).
//!
//! The simulated cluster takes the same plan as kind, minus the steps that need a
//! container runtime, executed in-process through its API (`inprocess`); its
//! source-controller then fetches what the applied entry's GitRepository names, over git,
//! and the simulation runs on what was fetched.

use super::execute::{Cleanup, cleanup_commands, execute_step_async};
use super::plan::{self, Plan, Provider, Step};
use super::provider::{ClusterProvider, Existing, K3d, Kind, Sim};
use super::run::{E2eRequest, Progress};
use super::served::Served;
use crate::apiserver::driver::SimCluster;
use crate::error::{Error, ErrorKind, Result};
use crate::loaded::Loaded;
use crate::model::RepoModel;
use std::time::Duration;

pub(super) fn kube_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("Kubernetes API: {e}"))
}

/// The provider for this run's cluster. A repo that brings Cilium gets a kind/k3d cluster
/// without a CNI (the plan pre-installs the repo's Cilium); one that brings none keeps the
/// provider's default CNI, so its pods have a network.
pub fn provider(req: &E2eRequest, model: &RepoModel) -> Result<Box<dyn ClusterProvider>> {
    let repo_cni = model.helm_releases.iter().any(|h| h.spec.chart == "cilium");
    let name = format!("flux-harness-{}", req.run_id);
    let kubeconfig = req.artifacts.join("kubeconfig").display().to_string();
    // The plan writes the embedded kind-configs here before creating the cluster.
    let configs = req.artifacts.join("cluster-configs").display().to_string();
    Ok(match req.provider {
        Provider::Sim => Box::new(Sim { kubeconfig }),
        Provider::Kind => Box::new(Kind {
            name,
            config: format!("{configs}/{}", if repo_cni { "kind.yaml" } else { "kind-default-cni.yaml" }),
            kubeconfig,
            repo_cni,
        }),
        Provider::K3d => Box::new(K3d { name, config_dir: configs, kubeconfig, repo_cni }),
        Provider::Existing => {
            let context = req.context.clone().ok_or_else(|| {
                Error::new(ErrorKind::Usage, "--provider existing needs --context NAME: the harness never uses a cluster it did not create unless you name it")
            })?;
            Box::new(Existing { context })
        }
    })
}

/// The bootstrap plan of this run's provider (also what `--dry-run` prints).
pub fn plan_for(req: &E2eRequest, model: &RepoModel, git_url: &str) -> Result<Plan> {
    let provider = provider(req, model)?;
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
        existing: req.provider == Provider::Existing,
        install_cni: req.install_cni,
        install_flux: req.install_flux,
    }))
}

/// Before anything runs: every program the plan calls is installed, and the cluster's name
/// is free (a cluster left by an earlier run with `--keep` must not be taken over, and
/// above all not deleted by this run's cleanup).
fn preflight(prov: &dyn ClusterProvider, plan: &Plan) -> Result<()> {
    let mut missing: Vec<&str> = plan
        .steps()
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

async fn client_of(kubeconfig: kube::config::Kubeconfig) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.map_err(kube_error)?;
    kube::Client::try_from(config).map_err(kube_error)
}

/// A directory only this user can read, removed when dropped.
pub(super) struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(run_id: &str) -> Result<ScratchDir> {
        let dir = std::path::PathBuf::from(format!("{}.plan", super::served::scratch(run_id).display()));
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.recursive(true).create(&dir).map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
        Ok(ScratchDir(dir))
    }

    /// `req` with its plan files written here instead of the artifacts.
    fn request(&self, req: &E2eRequest) -> E2eRequest {
        E2eRequest { artifacts: self.0.clone(), ..req.clone() }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) enum Cluster {
    /// The simulated cluster: its API server from the start, the simulation behind it
    /// once the entry is applied and its source fetched (boxed: it is large).
    /// `plan_dir` holds the plan's files (the entry manifest): private to the run, and
    /// removed with it, so a run whose artifacts cannot be written still runs.
    Sim {
        server: Option<crate::apiserver::ServerHandle>,
        running: Option<Box<SimCluster>>,
        client: kube::Client,
        plan_dir: ScratchDir,
    },
    /// kind, k3d or an existing cluster: the provider, and the guard holding every cleanup.
    Real { prov: Box<dyn ClusterProvider>, guard: Cleanup, entry_applied_ms: i64 },
}

impl Cluster {
    /// The cluster up to the entry: created, its CNI and Flux installed, the decryption
    /// Secrets made. Nothing is left behind if this fails (the guard cleans up).
    pub(super) async fn prepare(req: &E2eRequest, model: &RepoModel, progress: Progress<'_>) -> Result<Cluster> {
        // The pre-entry steps do not need the git server's URL.
        if req.provider == Provider::Sim {
            let plan_dir = ScratchDir::new(&req.run_id)?;
            let draft = plan_for(&plan_dir.request(req), model, "http://GIT-SERVER/repo.git")?;
            progress("starting the simulated cluster (HTTPS on 127.0.0.1), no Flux installed yet");
            let server = crate::apiserver::start(0).await?;
            crate::apiserver::driver::boot(&server.shared);
            let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig()).map_err(kube_error)?;
            let client = client_of(kc).await?;
            super::inprocess::execute(&draft.before_entry, &client, progress).await?;
            return Ok(Cluster::Sim { server: Some(server), running: None, client, plan_dir });
        }
        std::fs::create_dir_all(&req.artifacts)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", req.artifacts.display())))?;
        let draft = plan_for(req, model, "http://GIT-SERVER/repo.git")?;
        let prov = provider(req, model)?;
        for said in super::leftovers::sweep(prov.as_ref()) {
            progress(&said);
        }
        preflight(prov.as_ref(), &draft)?;
        // The guard knows every cleanup command before the first command runs.
        let mut guard = Cleanup::new(cleanup_commands(&draft), req.keep);
        if let Some(name) = prov.cluster_name() {
            guard.record = Some(super::leftovers::register(prov.name(), name)?);
        }
        for s in &draft.before_entry {
            execute_step_async(s, &mut guard, progress).await?;
        }
        Ok(Cluster::Real { prov, guard, entry_applied_ms: 0 })
    }

    /// Where the harness's git server listens, and the host the cluster reaches it by.
    pub(super) fn git_address(&self) -> Result<(std::net::SocketAddr, String)> {
        let host = match self {
            Cluster::Sim { .. } => "127.0.0.1".to_string(),
            Cluster::Real { prov, .. } => gateway(prov.as_ref())?,
        };
        let bind = format!("{host}:0").parse().map_err(|e| Error::new(ErrorKind::Usage, format!("{host}: {e}")))?;
        Ok((bind, host))
    }

    /// Applies the entry (its sources pointed at `served`). On sim, the simulated
    /// source-controller then fetches what the applied GitRepository names and the
    /// simulation starts on what it fetched (paused until the watchers are up).
    pub(super) async fn bootstrap(
        &mut self,
        req: &E2eRequest,
        model: &RepoModel,
        served: &Served,
        progress: Progress<'_>,
    ) -> Result<()> {
        match self {
            Cluster::Sim { server, running, client, plan_dir } => {
                let plan = plan_for(&plan_dir.request(req), model, &served.url)?;
                super::inprocess::execute(&plan.entry, client, progress).await?;
                let (fetched, sim) = super::inprocess::reconcile_entry(req, model, served, client, progress).await?;
                let server = server.take().expect("bootstrapped once");
                *running =
                    Some(Box::new(crate::apiserver::driver::attach(server, fetched, sim, req.speed, true).await?));
            }
            Cluster::Real { guard, entry_applied_ms, .. } => {
                let plan = plan_for(req, model, &served.url)?;
                *entry_applied_ms = super::run::wall_ms();
                for s in &plan.entry {
                    execute_step_async(s, guard, progress).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn client(&self, req: &E2eRequest) -> Result<kube::Client> {
        match (self, &req.context) {
            (Cluster::Sim { client, .. }, _) => Ok(client.clone()),
            (Cluster::Real { .. }, Some(ctx)) if req.provider == Provider::Existing => {
                let opts = kube::config::KubeConfigOptions { context: Some(ctx.clone()), ..Default::default() };
                kube::Client::try_from(kube::Config::from_kubeconfig(&opts).await.map_err(kube_error)?)
                    .map_err(kube_error)
            }
            (Cluster::Real { .. }, _) => {
                client_of(kube::config::Kubeconfig::read_from(req.artifacts.join("kubeconfig")).map_err(kube_error)?)
                    .await
            }
        }
    }

    /// The repo as the cluster bootstraps it: on sim, the copy its source-controller
    /// fetched; on a real cluster, the working tree's (the same commit, served).
    pub(super) fn loaded<'a>(&self, loaded: &'a Loaded) -> &'a Loaded {
        match self {
            Cluster::Sim { running: Some(c), .. } => c.loaded(),
            _ => loaded,
        }
    }

    /// The Unix ms that observed times count from (on sim, virtual time 0) and how a
    /// watcher's own elapsed time converts when a condition carries no time.
    pub(super) fn anchor_ms(&self) -> i64 {
        match self {
            Cluster::Sim { running: Some(c), .. } => c.anchor_ms() as i64,
            Cluster::Sim { .. } => 0,
            Cluster::Real { entry_applied_ms, .. } => *entry_applied_ms,
        }
    }

    /// Virtual (sim) or real seconds per real second.
    pub(super) fn speed(&self, req: &E2eRequest) -> f64 {
        if matches!(self, Cluster::Sim { .. }) { req.speed } else { 1.0 }
    }

    /// How long the watchers wait in real time for `timeout` seconds of the cluster's.
    pub(super) fn deadline(&self, req: &E2eRequest) -> Duration {
        match self {
            Cluster::Sim { .. } => {
                Duration::from_secs_f64(req.timeout_seconds / req.speed) + Duration::from_millis(500)
            }
            Cluster::Real { .. } => Duration::from_secs_f64(req.timeout_seconds),
        }
    }

    /// Lets the simulation's time run (the watchers are up).
    pub(super) fn start_clock(&self) {
        if let Cluster::Sim { running: Some(c), .. } = self {
            c.resume();
        }
    }

    /// The simulator's own report (stuck chains, a deadlock), on sim.
    pub(super) fn sim_report(&self) -> Option<crate::sim::report::SimReport> {
        match self {
            Cluster::Sim { running: Some(c), .. } => Some(c.report()),
            _ => None,
        }
    }

    /// What a failed run keeps beyond the Flux objects' status: controller logs, events
    /// and node CNI configs on a real cluster; a note saying what the sim has not.
    pub(super) fn extra_diagnostics(&self) -> Vec<(String, String)> {
        let Cluster::Real { prov, .. } = self else {
            let note = "the sim provider has no controller logs or node CNI configs: status.json, stuck.txt and timeline.json come from the simulated cluster (kubectl describe shows its events while it runs)\n";
            return vec![("README.txt".into(), note.into())];
        };
        let target = prov.target().kubectl_args();
        let kubectl = |args: &[&str]| {
            let mut a: Vec<&str> = target.iter().map(String::as_str).collect();
            a.extend_from_slice(args);
            crate::exec::Cmd::new("kubectl", &a).output().unwrap_or_else(|e| format!("{e}\n"))
        };
        let mut extra: Vec<(String, String)> =
            vec![("events.txt".into(), kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"]))];
        for c in ["kustomize-controller", "helm-controller", "source-controller"] {
            extra.push((
                format!("{c}.log"),
                kubectl(&["-n", "flux-system", "logs", &format!("deploy/{c}"), "--tail=2000"]),
            ));
        }
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
        extra
    }

    /// What `--keep` leaves, in words the user can act on.
    pub(super) fn kept(&self, req: &E2eRequest) -> Vec<String> {
        let Cluster::Real { prov, .. } = self else { return vec![] };
        let mut out = vec![];
        if !prov.delete().is_empty() {
            out.push(format!("kept: export KUBECONFIG={}", req.artifacts.join("kubeconfig").display()));
        }
        if req.provider == Provider::Existing {
            // Kept as the run left it: it syncs from a server that is about to stop.
            out.push(format!(
                "kept: the cluster still syncs from the harness's git server; to put its own sync back: kubectl --context {} apply --server-side --force-conflicts -f {}",
                req.context.as_deref().unwrap_or(""),
                req.artifacts.join("entry-before.yaml").display()
            ));
        }
        out
    }

    /// A real cluster's provider (for the suites' live checks); none on sim.
    pub(super) fn provider(&self) -> Option<&dyn ClusterProvider> {
        match self {
            Cluster::Real { prov, .. } => Some(prov.as_ref()),
            Cluster::Sim { .. } => None,
        }
    }

    /// Deletes what the run created (unless `--keep`), puts back what it changed.
    pub(super) fn teardown(self) {
        match self {
            Cluster::Sim { .. } => {}
            Cluster::Real { mut guard, .. } => guard.run(),
        }
    }
}
