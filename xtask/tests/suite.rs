//! `cargo xtask suite` as a user runs it: exit codes, the files it writes, the step
//! summary, `--update-snapshots` and `--rerun-failed`.

mod common;

use common::{copy_dir as copy, example, xtask};
use std::path::Path;

fn suite(repo: &Path, art: &Path, extra: &[&str]) -> common::Run {
    let mut args =
        vec!["suite", "--repo", repo.to_str().unwrap(), "--cluster", "staging", "--artifacts", art.to_str().unwrap()];
    args.extend_from_slice(extra);
    xtask(args)
}

#[test]
fn the_example_passes_and_writes_every_report() {
    let art = tempfile::tempdir().unwrap();
    let summary = art.path().join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["suite", "--repo", example("envs-infra").to_str().unwrap(), "--cluster", "staging", "--artifacts"])
        .arg(art.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in ["bootstrap-order: PASS", "webhook-bootstrap: SKIP", "cni-chaining: SKIP", "namespace-isolation: PASS"]
    {
        assert!(stdout.contains(line), "{line}:\n{stdout}");
    }
    assert!(stdout.contains("PASSED on sim: 4 of 4 suites passed"), "{stdout}");
    for f in ["suite-report.json", "suite-junit.xml", "suite-summary.md", "timeline.html"] {
        assert!(art.path().join(f).is_file(), "{f}");
    }
    let appended = std::fs::read_to_string(&summary).unwrap();
    assert!(appended.starts_with("earlier step\n## Flux bootstrap suites: passed on sim"), "{appended}");
}

#[test]
fn a_new_repo_gets_pending_snapshots_then_update_writes_them() {
    let d = tempfile::tempdir().unwrap();
    copy(&example("envs-infra"), d.path());
    std::fs::remove_dir_all(d.path().join(".flux-harness")).unwrap();
    let art = tempfile::tempdir().unwrap();
    let first = suite(d.path(), art.path(), &["namespace-isolation"]);
    assert_eq!(first.code, 1, "no reviewed snapshot is a failure, as in insta:\n{}", first.stdout);
    assert!(first.stdout.contains("no reviewed snapshot at"), "{}", first.stdout);
    let dir = d.path().join(".flux-harness/snapshots/infrastructure-clusters-staging");
    assert!(dir.join("namespace-isolation.snap.new").is_file());
    let update = suite(d.path(), art.path(), &["namespace-isolation", "--update-snapshots"]);
    assert_eq!(update.code, 0, "{}", update.stdout);
    let written = std::fs::read_to_string(dir.join("namespace-isolation.snap")).unwrap();
    assert_eq!(
        written,
        std::fs::read_to_string(
            example("envs-infra")
                .join(".flux-harness/snapshots/infrastructure-clusters-staging/namespace-isolation.snap")
        )
        .unwrap()
    );
    assert!(!dir.join("namespace-isolation.snap.new").exists(), "the pending file is gone once written");
    assert_eq!(suite(d.path(), art.path(), &["namespace-isolation"]).code, 0);
}

#[test]
fn rerun_failed_reruns_only_the_failed_suite_and_passes_once_fixed() {
    let d = tempfile::tempdir().unwrap();
    copy(&example("netcorp-infra"), d.path());
    let values = d.path().join("namespaces/kyverno/helm-release.yaml");
    let good = std::fs::read_to_string(&values).unwrap();
    std::fs::write(
        &values,
        good.replacen("  values:\n", "  values:\n    config:\n      excludeKyvernoNamespace: false\n", 1),
    )
    .unwrap();
    let art = tempfile::tempdir().unwrap();
    let first = suite(d.path(), art.path(), &[]);
    assert_eq!(first.code, 1, "{}", first.stdout);
    // plan's webhook-self-block rule and the suite's fault agree.
    assert!(first.stdout.contains("webhook-bootstrap: FAIL") && first.stdout.contains("FAIL plan"), "{}", first.stdout);
    assert!(first.stdout.contains("namespace-isolation: PASS"), "{}", first.stdout);
    let again = suite(d.path(), art.path(), &["--rerun-failed"]);
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(
        !again.stdout.contains("namespace-isolation") && !again.stdout.contains("cni-chaining"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("FAIL down:validate.kyverno.svc-fail") && again.stdout.contains("FAIL plan"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("down:webhook.cert-manager.io"), "only the failed checks:\n{}", again.stdout);
    assert!(!again.stdout.contains("ready-order"), "only the failed checks:\n{}", again.stdout);
    std::fs::write(&values, good).unwrap();
    let fixed = suite(d.path(), art.path(), &["--rerun-failed"]);
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
    let nothing = suite(d.path(), art.path(), &["--rerun-failed"]);
    assert!(nothing.stdout.contains("nothing failed in the last report"), "{}", nothing.stdout);
}

#[test]
fn an_unknown_suite_is_a_usage_error_naming_the_suites() {
    let art = tempfile::tempdir().unwrap();
    let r = suite(&example("envs-infra"), art.path(), &["bootstrap-orderr"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bootstrap-orderr: not a suite (one of bootstrap-order, webhook-bootstrap, cni-chaining, namespace-isolation)"), "{}", r.stderr);
}
