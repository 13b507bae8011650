//! The flags and the run loop shared by the verbs that bootstrap a cluster (`e2e`,
//! `suite`): provider, timeout, artifacts; a tokio runtime that stops on Ctrl-C or SIGTERM;
//! progress as a spinner for people and plain lines for CI logs.

use clap::ValueEnum;
use harness::e2e::run::{E2eRequest, Provider};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProviderArg {
    Sim,
    Kind,
    K3d,
    Existing,
}

#[derive(clap::Args, Clone)]
pub struct ClusterArgs {
    /// sim (default: the simulated cluster, no Docker), kind, k3d, or existing (--context).
    #[arg(long, value_enum, default_value = "sim")]
    provider: ProviderArg,
    /// The kubeconfig context of an existing cluster (never created nor deleted).
    #[arg(long)]
    context: Option<String>,
    /// Keep the cluster after the run.
    #[arg(long)]
    keep: bool,
    /// How long until everything must be Ready: seconds, or a duration like 20m or 1h30m
    /// (virtual time on sim).
    #[arg(long, default_value = "30m", value_parser = crate::parse_timeout)]
    timeout: f64,
    /// A failed reconcile that a retry mended is a warning, not a failure of the run.
    #[arg(long)]
    allow_retries: bool,
    /// The age key the cluster's decryption Secrets (sops-age) are made from; default: the
    /// repo's test key (`sops.ageKeyFile` in .flux-harness.yaml), if it names one.
    #[arg(long)]
    age_key: Option<PathBuf>,
    /// On sim: take the decryption Secrets as present and right without a key (nothing is
    /// decrypted), to prove the ordering of a repo whose key you do not have.
    #[arg(long, conflicts_with = "age_key")]
    assume_decryption: bool,
    /// Virtual seconds per real second on sim.
    #[arg(long, default_value_t = 600.0)]
    speed: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where reports and diagnostics go.
    #[arg(long, default_value = "target/e2e")]
    artifacts: PathBuf,
    /// On --provider existing: also pre-install the repo's Cilium (else the cluster's own CNI is used).
    #[arg(long)]
    install_cni: bool,
    /// On --provider existing: install Flux when the cluster has none (else its absence is an error).
    #[arg(long)]
    install_flux: bool,
}

impl ClusterArgs {
    pub fn request(&self, plan: harness::commands::PlanRequest) -> E2eRequest {
        E2eRequest {
            plan,
            provider: match self.provider {
                ProviderArg::Sim => Provider::Sim,
                ProviderArg::Kind => Provider::Kind,
                ProviderArg::K3d => Provider::K3d,
                ProviderArg::Existing => Provider::Existing,
            },
            context: self.context.clone(),
            keep: self.keep,
            timeout_seconds: self.timeout,
            age_key: self.age_key.clone(),
            assume_decryption: self.assume_decryption,
            artifacts: self.artifacts.clone(),
            speed: self.speed,
            seed: self.seed,
            layers_snapshot: None,
            // Unique per run: the pid alone repeats across reboots and containers.
            run_id: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() % 100_000)
                    .unwrap_or(0)
            ),
            allow_retries: self.allow_retries,
            install_cni: self.install_cni,
            install_flux: self.install_flux,
        }
    }
}

/// `--dry-run`: what would run, and nothing runs.
pub fn dry_run(req: &E2eRequest) -> Result<ExitCode, harness::Error> {
    let model = harness::commands::load(&req.plan)?.model;
    let url = "http://GIT-SERVER:PORT/repo.git";
    if req.provider == Provider::Sim {
        println!(
            "provider sim: an in-process simulated cluster on 127.0.0.1 (HTTPS, bearer token), {}x speed; the same plan as kind's without the steps that need a container runtime (create the cluster, pre-install the CNI: its nodes have the repo's CNI), each step run in-process through the cluster's API; nothing external runs\n",
            req.speed
        );
    }
    let plan = harness::e2e::run::plan_for(req, &model, url)?;
    print!("{}", harness::e2e::plan::render(&plan));
    let rewrites = harness::e2e::served::planned_rewrites(req, &model, url)?;
    if !rewrites.is_empty() {
        println!("\nthe served tree (the commit the cluster pulls; your files are not changed):");
        for r in rewrites {
            println!("  {}: {}", r.path, r.what);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress for people (a spinner on a terminal) and for CI logs (`==> step` lines).
pub fn progress_printer() -> impl Fn(&str) {
    use std::io::IsTerminal;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    move |m: &str| match &spinner {
        Some(pb) => {
            if let Some(prev) = Some(pb.message()).filter(|p| !p.is_empty()) {
                pb.println(format!("  done: {prev}"));
            }
            pb.set_message(m.to_string());
        }
        None => eprintln!("==> {m}"),
    }
}

/// Runs `fut` to its end, or until Ctrl-C/SIGTERM: `Err(exit code)` then. Cleanup has run
/// by the time it returns (the run's guards drop with the cancelled future).
pub fn run_async<T>(fut: impl std::future::Future<Output = T>) -> Result<Result<T, u8>, harness::Error> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| harness::Error::new(harness::ErrorKind::Io, format!("tokio runtime: {e}")))?;
    // On its own task: it runs even while the run blocks a worker (the live checks), kills
    // what runs and tells the checks to stop, so the run's guards get to clean up.
    rt.spawn(async {
        interrupted().await;
        harness::exec::stop();
    });
    let result = rt.block_on(async {
        tokio::select! {
            r = fut => Ok(r),
            code = interrupted() => Err(code),
        }
    });
    if result.is_err() {
        // Do not wait for blocking threads.
        rt.shutdown_background();
        // SIGHUP: the terminal may be gone, and eprintln! would panic on it.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "interrupted: the run was stopped and what it created removed");
    }
    Ok(result)
}

/// Waits for Ctrl-C (SIGINT), SIGTERM (what CI runners send on cancel) or SIGHUP (the
/// terminal closed, an ssh session dropped); returns the exit code a shell gives for it
/// (130, 143, 129).
pub async fn interrupted() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        let _ = tokio::signal::ctrl_c().await;
        return 130;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        _ = term.recv() => 143,
        _ = hup.recv() => 129,
    }
}
