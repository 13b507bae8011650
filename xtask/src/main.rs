//! `cargo xtask`: the user's entry point. Flags are parsed here; the work is done by the
//! `harness` library.

use clap::{Parser, Subcommand, ValueEnum};
use harness::commands::{PlanRequest, RendererChoice};
use harness::model::Entry;
use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod cluster;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Prove that a Flux repository bootstraps a cluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum E2eFormat {
    Text,
    Json,
    Junit,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SuiteFormat {
    Text,
    Json,
    Junit,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum DiffFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
enum RendererArg {
    Native,
    Kubectl,
}

#[derive(clap::Args, Clone)]
struct RepoArgs {
    /// The Flux repository (a directory).
    #[arg(long, default_value = "examples/netcorp-infra")]
    repo: PathBuf,
    /// The cluster to bootstrap: `clusters/ENV` (wherever `clusters/` is in the repo).
    #[arg(long, conflicts_with = "path")]
    cluster: Option<String>,
    /// The directory Flux syncs, when the repo has no `clusters/ENV` layout.
    #[arg(long)]
    path: Option<String>,
    /// Map a Flux source to a local directory: NAME=DIR (NAME may be `ns/name`).
    #[arg(long = "source", value_name = "NAME=DIR")]
    sources: Vec<String>,
    /// How kustomize directories are rendered.
    #[arg(long, value_enum, default_value = "native")]
    renderer: RendererArg,
}

#[derive(Subcommand)]
enum Command {
    /// Offline: render every Flux Kustomization, print the layers and the findings.
    Plan {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Offline: predict the bootstrap timeline, stalls and deadlocks (virtual time).
    Simulate {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        sim: SimArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Exit 0 when it converges even though a reconcile failed on the way.
        #[arg(long)]
        allow_retries: bool,
    },
    /// Bootstrap the repo on a cluster and prove every layer becomes Ready in order.
    E2e {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Print every command and manifest instead of running anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: E2eFormat,
        /// A reviewed layer snapshot (JSON) the layer order must equal.
        #[arg(long)]
        layers_snapshot: Option<PathBuf>,
    },
    /// Run the named suites (default: all four) on a provider and compare them with the
    /// repo's reviewed snapshots: bootstrap-order, webhook-bootstrap, cni-chaining,
    /// namespace-isolation.
    Suite {
        /// Which suites (default: all).
        #[arg(value_name = "NAME", value_parser = parse_suite)]
        names: Vec<harness::suite::SuiteName>,
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Where the reviewed snapshots are (default: REPO/.flux-harness/snapshots/ENTRY).
        #[arg(long)]
        snapshots: Option<PathBuf>,
        /// Write the snapshots as they are now (then review the change in git).
        #[arg(long)]
        update_snapshots: bool,
        /// Run only the suites and checks that failed in the last report (ARTIFACTS/suite-report.json).
        #[arg(long)]
        rerun_failed: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: SuiteFormat,
    },
    /// Serve the simulated bootstrap over the Kubernetes API (kubectl, k9s, kube-rs) until Ctrl-C.
    SimCluster {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        sim: SimArgs,
        /// Virtual seconds per real second (60: one simulated minute per second).
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Port on 127.0.0.1 (0: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the kubeconfig.
        #[arg(long, default_value = "target/sim-cluster/kubeconfig")]
        kubeconfig: PathBuf,
    },
    /// What a change does to the bootstrap: base revision against the working tree (or --head).
    Diff {
        #[command(flatten)]
        repo: RepoArgs,
        /// The git revision to compare with (a branch, tag or commit).
        #[arg(long)]
        base: String,
        /// The revision under review (default: the working tree, uncommitted changes included).
        #[arg(long)]
        head: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
        /// Also list the changed fields of rendered objects (Secret values are never shown).
        #[arg(long)]
        fields: bool,
        /// Also write the JSON report here (the artifact a shortened Markdown comment points to).
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// The most characters the Markdown may take (several reports in one comment share
        /// GitHub's 65,536).
        #[arg(long, default_value_t = harness::diff::render::COMMENT_LIMIT)]
        max_chars: usize,
    },
    /// Benchmarks (release build): plan (against kubectl, and generated repos), simulate, all.
    Bench {
        /// Which benchmark: plan, simulate or all.
        #[arg(default_value = "all")]
        which: String,
    },
}

#[derive(clap::Args, Clone)]
struct SimArgs {
    /// Inject a fault: webhook-down:NAME@FROM-TO, cilium-restart@T,
    /// chart-fail:NS/NAME=N, slow-chart:NS/NAME=DURATION, node-late@T.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<String>,
    /// Seed of the interval jitter (same seed, same timeline).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A CNI already runs when Flux starts (as the e2e pre-installs Cilium).
    #[arg(long)]
    cni_preinstalled: bool,
}

impl SimArgs {
    fn config(&self) -> harness::Result<harness::sim::SimConfig> {
        let faults = self.faults.iter().map(|f| harness::sim::Fault::parse(f)).collect::<harness::Result<Vec<_>>>()?;
        Ok(harness::sim::SimConfig {
            seed: self.seed,
            cni_preinstalled: self.cni_preinstalled,
            faults,
            ..Default::default()
        })
    }
}

/// The repo's directory relative to the workflow's checkout (`GITHUB_WORKSPACE`, else the
/// current directory), with a trailing `/`; empty when it is the checkout itself or
/// outside it.
fn workspace_prefix(repo: &std::path::Path) -> String {
    let base = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from).or_else(|| std::env::current_dir().ok());
    let (Some(base), Ok(repo)) = (base.and_then(|b| b.canonicalize().ok()), repo.canonicalize()) else {
        return String::new();
    };
    match repo.strip_prefix(&base) {
        Ok(rel) if !rel.as_os_str().is_empty() => format!("{}/", rel.display()),
        _ => String::new(),
    }
}

/// Writes a file only its owner can read (credentials).
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(content.as_bytes())
}

fn parse_suite(s: &str) -> Result<harness::suite::SuiteName, String> {
    harness::suite::SuiteName::parse(s).ok_or_else(|| {
        let all: Vec<&str> = harness::suite::SuiteName::ALL.iter().map(|n| n.id()).collect();
        format!("{s}: not a suite (one of {})", all.join(", "))
    })
}

/// `--timeout`: plain seconds (`1800`, `90.5`) or a Go-style duration (`20m`, `1h30m`, `90s`),
/// the way Flux and kubectl users write it.
pub(crate) fn parse_timeout(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>() {
        return if v.is_finite() && v > 0.0 { Ok(v) } else { Err(format!("{s}: must be more than 0")) };
    }
    match harness::sim::fault::parse_duration(s) {
        Some(ms) if ms > 0 => Ok(ms as f64 / 1000.0),
        _ => Err(format!("{s}: not a duration (seconds, or like 90s, 20m, 1h30m)")),
    }
}

fn request(r: &RepoArgs) -> Result<PlanRequest, String> {
    let mut sources = vec![];
    for s in &r.sources {
        let (k, d) = s.split_once('=').ok_or_else(|| format!("--source {s}: expected NAME=DIR"))?;
        sources.push((k.to_string(), PathBuf::from(d)));
    }
    Ok(PlanRequest {
        repo: r.repo.clone(),
        entry: match (&r.cluster, &r.path) {
            (Some(c), _) => Some(Entry::Cluster(c.clone())),
            (None, Some(p)) => Some(Entry::Path(p.clone())),
            (None, None) => None,
        },
        sources,
        renderer: match r.renderer {
            RendererArg::Native => RendererChoice::Native,
            RendererArg::Kubectl => RendererChoice::Kubectl,
        },
    })
}

/// Exit codes: 0 passed, 1 the repo fails (findings, no convergence, a failed run), 2 the
/// harness could not judge (bad input or environment), 130 interrupted.
fn main() -> ExitCode {
    run(Cli::parse()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn usage(e: String) -> harness::Error {
    harness::Error::new(harness::ErrorKind::Usage, e)
}

fn io(what: &std::path::Path, e: std::io::Error) -> harness::Error {
    harness::Error::new(harness::ErrorKind::Io, format!("{}: {e}", what.display()))
}

fn run(cli: Cli) -> Result<ExitCode, harness::Error> {
    match cli.command {
        Command::Plan { repo, format } => {
            let plan = harness::commands::plan(&request(&repo).map_err(usage)?)?;
            match format {
                Format::Json => println!("{}", plan.to_json()),
                Format::Text => print!("{}", plan.to_text()),
            }
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                eprint!("{}", plan.to_github_annotations(&workspace_prefix(&repo.repo)));
            }
            Ok(ExitCode::from(plan.exit_code() as u8))
        }
        Command::Simulate { repo, sim, format, allow_retries } => {
            let report = harness::commands::simulate(&request(&repo).map_err(usage)?, sim.config()?)?;
            match format {
                Format::Json => println!("{}", report.to_json()),
                Format::Text => print!("{}", report.to_text()),
            }
            // A failed reconcile costs a retryInterval on a real cluster even when a retry
            // mends it: the same verdict as the sim e2e.
            let failed = report.failures.iter().any(|f| !allow_retries || f.ready_at_seconds.is_none());
            Ok(ExitCode::from(if report.converged && !failed { 0 } else { 1 }))
        }
        Command::E2e { repo, cluster, dry_run, format, layers_snapshot } => {
            let mut req = cluster.request(request(&repo).map_err(usage)?);
            req.layers_snapshot = layers_snapshot;
            if dry_run {
                return cluster::dry_run(&req);
            }
            let report = match cluster::run_async(harness::e2e::run::run(&req, &cluster::progress_printer()))? {
                Ok(r) => r?,
                Err(code) => return Ok(ExitCode::from(code)),
            };
            match format {
                E2eFormat::Text => print!("{}", report.to_text()),
                E2eFormat::Json => println!("{}", report.to_json()),
                E2eFormat::Junit => print!("{}", report.to_junit()),
            }
            // The report is printed either way; a report that cannot be saved is said, not lost.
            let saved = std::fs::create_dir_all(&req.artifacts)
                .and_then(|_| std::fs::write(req.artifacts.join("report.json"), report.to_json()))
                .and_then(|_| std::fs::write(req.artifacts.join("junit.xml"), report.to_junit()));
            if let Err(e) = saved {
                eprintln!("warning: cannot save the report under {}: {e}", req.artifacts.display());
            }
            Ok(ExitCode::from(if report.passed { 0 } else { 1 }))
        }
        Command::Suite { names, repo, cluster, snapshots, update_snapshots, rerun_failed, format } => {
            let e2e = cluster.request(request(&repo).map_err(usage)?);
            let only = if rerun_failed {
                let failed = harness::e2e::suites::failed_in(&e2e.artifacts.join("suite-report.json"))?;
                if failed.is_empty() {
                    println!("nothing failed in the last report ({}): nothing to rerun", e2e.artifacts.display());
                    return Ok(ExitCode::SUCCESS);
                }
                Some(failed)
            } else {
                None
            };
            let artifacts = e2e.artifacts.clone();
            let req = harness::e2e::suites::SuiteRequest { e2e, suites: names, snapshots, update_snapshots, only };
            let mut report = match cluster::run_async(harness::e2e::suites::run(&req, &cluster::progress_printer()))? {
                Ok(r) => r?,
                Err(code) => return Ok(ExitCode::from(code)),
            };
            harness::e2e::suites::write_artifacts(&mut report, &artifacts)?;
            if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
                use std::io::Write;
                let appended = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&summary)
                    .and_then(|mut f| f.write_all(report.to_markdown().as_bytes()));
                if let Err(e) = appended {
                    eprintln!("warning: cannot append to $GITHUB_STEP_SUMMARY: {e}");
                }
            }
            match format {
                SuiteFormat::Text => print!("{}", report.to_text()),
                SuiteFormat::Json => println!("{}", report.to_json()),
                SuiteFormat::Junit => print!("{}", report.to_junit()),
                SuiteFormat::Markdown => print!("{}", report.to_markdown()),
            }
            Ok(ExitCode::from(if report.passed { 0 } else { 1 }))
        }
        Command::SimCluster { repo, sim, speed, port, kubeconfig } => {
            let req = request(&repo).map_err(usage)?;
            let cfg = sim.config()?;
            let loaded = harness::commands::load(&req)?;
            let rt = tokio::runtime::Runtime::new()
                .map_err(|e| harness::Error::new(harness::ErrorKind::Io, format!("tokio runtime: {e}")))?;
            rt.block_on(async move {
                let cluster = harness::apiserver::driver::start(loaded, cfg, speed, port).await?;
                if let Some(dir) = kubeconfig.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
                }
                // It holds the bearer token: readable by its owner only.
                write_private(&kubeconfig, &cluster.server.kubeconfig()).map_err(|e| io(&kubeconfig, e))?;
                let abs = std::fs::canonicalize(&kubeconfig).unwrap_or(kubeconfig.clone());
                println!("simulated cluster on {} (speed {speed}x; listening on loopback only)", cluster.server.url());
                println!("export KUBECONFIG={}", abs.display());
                println!("kubectl get kustomizations -A -w    # Ctrl-C to stop");
                let code = cluster::interrupted().await;
                let _ = std::fs::remove_file(&kubeconfig);
                println!("stopped after {} virtual seconds", cluster.virtual_ms() / 1000);
                Ok(if code == 143 { ExitCode::from(143) } else { ExitCode::SUCCESS })
            })
        }
        Command::Diff { repo, base, head, format, fields, json_out, max_chars } => {
            if repo.cluster.is_none() && repo.path.is_none() {
                return Err(usage(
                    "diff needs --cluster ENV or --path DIR: the entry must be the same on both sides".into(),
                ));
            }
            let scratch = std::env::temp_dir().join("flux-harness-diff");
            let req =
                harness::commands::DiffRequest { plan: request(&repo).map_err(usage)?, base, head, fields, scratch };
            let d = harness::commands::diff(&req)?;
            if let Some(p) = &json_out {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
                }
                std::fs::write(p, d.to_json()).map_err(|e| io(p, e))?;
            }
            match format {
                DiffFormat::Text => print!("{}", harness::diff::render::to_text(&d)),
                DiffFormat::Json => println!("{}", d.to_json()),
                DiffFormat::Markdown => print!("{}", harness::diff::render::to_markdown(&d, max_chars)),
            }
            Ok(ExitCode::from(d.exit_code() as u8))
        }
        Command::Bench { which } => Ok(bench::run(&which)),
    }
}
