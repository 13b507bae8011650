//! `cargo xtask bench plan`: the performance goals of `plan`, measured.
//!
//! - netcorp-infra: `plan` (median of many runs) against `kubectl kustomize` of the same
//!   directories in the same run, and the ratio.
//! - generated repos of 500, 1,000 and 2,000 Flux Kustomizations: time and peak memory,
//!   to show the growth is near-linear.

use harness::commands::{PlanRequest, RendererChoice, plan};
use harness::model::Entry;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn request(repo: &Path, cluster: &str) -> PlanRequest {
    PlanRequest { repo: repo.to_path_buf(), entry: Some(Entry::Cluster(cluster.into())), sources: vec![], renderer: RendererChoice::Native }
}

pub fn run(which: &str) -> ExitCode {
    match which {
        "plan" => plan_bench(),
        "simulate" => simulate_bench(),
        "all" => {
            let a = plan_bench();
            println!();
            let b = simulate_bench();
            if a == ExitCode::SUCCESS { b } else { a }
        }
        other => {
            eprintln!("error: unknown benchmark '{other}' (known: plan, simulate, all)");
            ExitCode::from(2)
        }
    }
}

/// The simulator: netcorp-infra (target <= 10 ms) and a generated 2,000-Kustomization
/// graph (target <= 300 ms). Loading the model is not counted: it is `plan`'s cost.
fn simulate_bench() -> ExitCode {
    let root = project_root();
    let time_sim = |repo: &Path, cluster: &str, runs: usize| -> (Duration, harness::sim::report::SimReport) {
        let (model, config) = harness::commands::load(&request(repo, cluster)).unwrap();
        let (graph, _) = harness::graph::analyse(&model);
        let mut last = None;
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let r = harness::sim::simulate(&model, &graph, &config, harness::sim::SimConfig::default()).unwrap();
                let e = t.elapsed();
                last = Some(r);
                e
            })
            .collect();
        (median(times), last.unwrap())
    };
    let (t, r) = time_sim(&root.join("examples/netcorp-infra"), "staging", 50);
    println!(
        "simulate netcorp-infra: median {:.2} ms over 50 runs ({} timeline entries, converged after {} s virtual) (target <= 10 ms)",
        ms(t),
        r.timeline.len(),
        r.total_seconds
    );
    let n = 2000;
    let dir = tempdir_for(n);
    for (p, text) in harness::generate::flux_repo(n) {
        let full = dir.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let (t, r) = time_sim(&dir, "bench", 5);
    println!(
        "simulate {n} generated Kustomizations: median {:.1} ms over 5 runs ({} timeline entries, converged: {}, {} s virtual) (target <= 300 ms)",
        ms(t),
        r.timeline.len(),
        r.converged,
        r.total_seconds
    );
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}

fn plan_bench() -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; run `cargo xtask bench` (release) for real figures");
    }
    let root = project_root();
    let netcorp = root.join("examples/netcorp-infra");
    let req = request(&netcorp, "staging");
    let p = match plan(&req) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runs = 50;
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let _ = plan(&req).unwrap();
            t.elapsed()
        })
        .collect();
    let ours = median(times);
    println!("plan on netcorp-infra (staging, {} Kustomizations): median {:.2} ms over {runs} runs", p.kustomizations.len(), ms(ours));

    let mut dirs: Vec<String> = p.kustomizations.iter().map(|k| k.path.trim_start_matches("./").to_string()).collect();
    dirs.sort();
    dirs.dedup();
    if harness::exec::have("kubectl") {
        let t = Instant::now();
        let mut rendered = 0;
        for d in &dirs {
            let dir = netcorp.join(d);
            if dir.join("kustomization.yaml").is_file() && harness::exec::kubectl_kustomize(&dir).is_ok() {
                rendered += 1;
            }
        }
        let theirs = t.elapsed();
        println!(
            "kubectl kustomize of the same {rendered} directories: {:.1} ms  ->  plan is {:.0}x faster (target >= 30x, <= 30 ms)",
            ms(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    } else {
        println!("kubectl not installed: ratio not measured");
    }

    println!("\ngenerated repos (each Kustomization: Deployment, Service, generated ConfigMap, substitution):");
    println!("{:>15} {:>12} {:>14} {:>16}", "Kustomizations", "plan (ms)", "peak RSS (MiB)", "ms per 1,000");
    for n in [500usize, 1000, 2000] {
        let dir = tempdir_for(n);
        for (p, t) in harness::generate::flux_repo(n) {
            let full = dir.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, t).unwrap();
        }
        let req = request(&dir, "bench");
        reset_peak_rss();
        let before = peak_rss_mib().unwrap_or(0.0);
        let times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let p = plan(&req).unwrap();
                assert_eq!(p.kustomizations.len(), n + 1);
                t.elapsed()
            })
            .collect();
        let peak = peak_rss_mib().unwrap_or(0.0);
        let m = median(times);
        println!("{n:>15} {:>12.1} {:>14.1} {:>16.1}", ms(m), peak.max(before), ms(m) * 1000.0 / n as f64);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("targets: 2,000 Kustomizations <= 1000 ms and <= 300 MiB");
    // The per-app layout (apps/<ns>/<app>/ks.yaml): 300 Kustomizations.
    let dir = tempdir_for(300);
    for (p, t) in harness::generate::per_app_repo(30, 10) {
        let full = dir.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, t).unwrap();
    }
    let req = PlanRequest { repo: dir.clone(), entry: Some(Entry::Path("kubernetes/flux/cluster".into())), sources: vec![], renderer: RendererChoice::Native };
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(plan(&req).unwrap().kustomizations.len(), 302);
            t.elapsed()
        })
        .collect();
    println!("per-app layout, 300 ks.yaml Kustomizations: median {:.1} ms (target: well under 1 s)", ms(median(times)));
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}

fn tempdir_for(n: usize) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}
