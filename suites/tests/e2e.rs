//! The end-to-end runner: full runs on the simulated cluster, the assertions, diagnostics
//! without secrets, the real-cluster plans (dry-run, reviewed snapshots), and plan
//! execution against fake executables that record their calls.

mod common;

use common::repo::*;
use harness::commands::{PlanRequest, RendererChoice};
use harness::e2e::assert::{self, Observation};
use harness::e2e::plan::ProviderKind;
use harness::e2e::run::{self, E2eRequest, Provider};
use harness::model::Entry;
use std::path::{Path, PathBuf};

fn request(repo: PathBuf, cluster: &str, provider: Provider, artifacts: &Path) -> E2eRequest {
    E2eRequest {
        plan: PlanRequest {
            repo,
            entry: Some(Entry::Cluster(cluster.into())),
            sources: vec![],
            renderer: RendererChoice::Native,
        },
        provider,
        context: None,
        keep: false,
        // Generous: a passing run ends when all is Ready; this only bounds a failing one
        // on a loaded machine (at 600x, 7,200 virtual seconds are 12 real ones).
        timeout_seconds: 7200.0,
        age_key: None,
        artifacts: artifacts.to_path_buf(),
        speed: 600.0,
        seed: 1,
        layers_snapshot: None,
        run_id: "test".into(),
    }
}

fn quiet(_: &str) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_examples_pass_on_the_simulated_cluster() {
    for (ex, n) in [("netcorp-infra", 38), ("envs-infra", 4)] {
        let tmp = tempfile::tempdir().unwrap();
        let r = run::run(&request(common::example(ex), "staging", Provider::Sim, tmp.path()), &quiet).await.unwrap();
        assert!(r.passed, "{ex}: {}", r.to_text());
        assert_eq!(r.kustomizations.len(), n);
        assert!(r.kustomizations.iter().all(|k| k.ready_at_seconds.is_some()));
        assert!(
            r.predicted_vs_observed.iter().all(|p| p.predicted_seconds.is_some()),
            "the prediction covers every Kustomization"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in ["provider", "passed", "duration_seconds", "kustomizations", "violations", "artifacts"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(json["kustomizations"][0].get("dependencies_ready_at_seconds").is_some());
        assert!(r.to_junit().contains("<testsuite name=\"bootstrap-sim\""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_repo_fails_with_the_violation_and_diagnostics_without_secrets() {
    let canary = "CANARY-7f3a9-do-not-print";
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: canary\n  namespace: default\nstringData:\n  password: {canary}\n"
    );
    let values =
        "    validatingWebhookFailurePolicy: Fail\n    postInstall:\n      labelNamespace:\n        enabled: false\n";
    let repo = Repo::new()
        .file("clusters/test/repos.yaml", &helm_repo("charts"))
        .ks("secrets", &[], "")
        .obj("secrets", "secret.yaml", &secret)
        .ks("gatekeeper", &[], "")
        .obj("gatekeeper", "ns.yaml", &ns("gatekeeper-system"))
        .obj("gatekeeper", "hr.yaml", &hr("gatekeeper", "gatekeeper-system", "gatekeeper", values))
        .ks("app", &["gatekeeper"], "")
        .obj("app", "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n");
    let dir = tempfile::tempdir().unwrap();
    repo.write_to(dir.path());
    let artifacts = tempfile::tempdir().unwrap();
    let mut req = request(dir.path().to_path_buf(), "test", Provider::Sim, artifacts.path());
    req.timeout_seconds = 1200.0;
    let r = run::run(&req, &quiet).await.unwrap();
    assert!(!r.passed);
    let timeouts: Vec<&str> = r.violations.iter().filter(|v| v.kind == "timeout").map(|v| v.message.as_str()).collect();
    assert!(
        timeouts.iter().any(|m| m.starts_with("Kustomization gatekeeper was not Ready within 1200s")),
        "{timeouts:?}"
    );
    assert!(
        timeouts.iter().any(|m| m.starts_with("HelmRelease gatekeeper-system/gatekeeper was not Ready")),
        "{timeouts:?}"
    );
    assert!(
        r.violations.iter().any(|v| v.kind == "stalled" && v.message.contains("RetriesExceeded")),
        "{:?}",
        r.violations
    );
    let a = r.artifacts.as_ref().expect("diagnostics written");
    let stuck = std::fs::read_to_string(Path::new(a).join("stuck.txt")).unwrap();
    assert!(stuck.contains("DEADLOCK") && stuck.contains("webhook validation.gatekeeper.sh"), "{stuck}");
    let status = std::fs::read_to_string(Path::new(a).join("status.json")).unwrap();
    assert!(status.contains("RetriesExceeded"));
    for f in std::fs::read_dir(a).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(canary), "a secret value reached the artifacts");
    }
    assert!(!r.to_json().contains(canary) && !r.to_junit().contains(canary));
    assert!(r.to_junit().contains("<failure type=\"timeout\""));
}

#[test]
fn the_order_assertion_names_objects_times_and_dependency() {
    let (model, _) = Repo::new()
        .ks("a", &[], "")
        .obj("a", "ns.yaml", &ns("a"))
        .ks("b", &["a"], "")
        .obj("b", "ns.yaml", &ns("b"))
        .load();
    let (graph, _) = harness::graph::analyse(&model);
    let ob = |t: f64, name: &str| Observation {
        at_seconds: t,
        kind: "Kustomization".into(),
        namespace: "flux-system".into(),
        name: name.into(),
        condition: "Ready".into(),
        status: "True".into(),
        reason: "ReconciliationSucceeded".into(),
        message: String::new(),
    };
    let good = vec![ob(0.0, "flux-system"), ob(10.0, "a"), ob(40.0, "b")];
    let (rows, v) = assert::check(&model, &graph, &good, 600.0, None);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(rows.iter().find(|r| r.name == "b").unwrap().dependencies_ready_at_seconds, Some(10.0));
    let bad = vec![ob(0.0, "flux-system"), ob(50.0, "a"), ob(40.0, "b")];
    let (_, v) = assert::check(&model, &graph, &bad, 600.0, None);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].message, "Kustomization b became Ready at 40s, before its dependency a (Ready at 50s)");
    let late = vec![ob(0.0, "flux-system"), ob(10.0, "a"), ob(700.0, "b")];
    let (_, v) = assert::check(&model, &graph, &late, 600.0, None);
    assert!(v[0].message.starts_with("Kustomization b was not Ready within 600s"));
    let expected = vec![vec!["b".to_string()], vec!["a".to_string()]];
    let (_, v) = assert::check(&model, &graph, &good, 600.0, Some(&expected));
    assert_eq!(v[0].kind, "layers");
}

fn dry_plan(kind: ProviderKind) -> String {
    let tmp = Path::new("/artifacts");
    let req = request(common::example("netcorp-infra"), "staging", Provider::Real(kind), tmp);
    let (model, _) = harness::commands::load(&req.plan).unwrap();
    let steps = run::real_plan(&req, kind, &model, "http://172.18.0.1:8080/repo.git").unwrap();
    // Paths of this checkout vary: redact them.
    let root = common::project_root().display().to_string();
    harness::e2e::plan::render(&steps).replace(&root, "<project>")
}

#[test]
fn dry_run_plan_for_kind() {
    insta::assert_snapshot!(dry_plan(ProviderKind::Kind));
}

#[test]
fn dry_run_plan_for_k3d() {
    insta::assert_snapshot!(dry_plan(ProviderKind::K3d));
}

#[test]
fn an_existing_cluster_must_be_named() {
    let tmp = tempfile::tempdir().unwrap();
    let req = request(common::example("netcorp-infra"), "staging", Provider::Real(ProviderKind::Existing), tmp.path());
    let (model, _) = harness::commands::load(&req.plan).unwrap();
    let e = run::real_plan(&req, ProviderKind::Existing, &model, "http://x/repo.git").unwrap_err();
    assert!(e.message.contains("needs --context"), "{e}");
    let named = E2eRequest { context: Some("staging-admin".into()), ..req };
    let plan = harness::e2e::plan::render(
        &run::real_plan(&named, ProviderKind::Existing, &model, "http://x/repo.git").unwrap(),
    );
    assert!(plan.contains("--context staging-admin cluster-info") && plan.contains("--context=staging-admin"));
    assert!(
        !plan.contains("delete cluster") && !plan.contains("on success, failure or Ctrl-C"),
        "an existing cluster is never deleted:\n{plan}"
    );
}

/// Fake `kind`, `helm`, `kubectl` and `flux` that append their arguments to a log; the
/// program named in `fail` exits 1.
fn fakes(dir: &Path, fail: Option<&str>) -> PathBuf {
    let log = dir.join("calls.log");
    for prog in ["kind", "helm", "kubectl", "flux", "k3d"] {
        let code = if fail == Some(prog) { 1 } else { 0 };
        let script = format!("#!/bin/sh\necho \"{prog} $*\" >> {}\nexit {code}\n", log.display());
        let p = dir.join(prog);
        std::fs::write(&p, script).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&p).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    log
}

fn with_path<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    // Tests run in their own processes under nextest, so changing PATH is contained.
    let old = std::env::var_os("PATH").unwrap_or_default();
    let new = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&old))).unwrap();
    unsafe { std::env::set_var("PATH", &new) };
    let r = f();
    unsafe { std::env::set_var("PATH", old) };
    r
}

#[test]
fn the_kind_plan_runs_in_order_and_cleans_up() {
    let bin = tempfile::tempdir().unwrap();
    let log = fakes(bin.path(), None);
    let art = tempfile::tempdir().unwrap();
    let req = request(common::example("netcorp-infra"), "staging", Provider::Real(ProviderKind::Kind), art.path());
    let (model, _) = harness::commands::load(&req.plan).unwrap();
    let steps = run::real_plan(&req, ProviderKind::Kind, &model, "http://172.18.0.1:8080/repo.git").unwrap();
    with_path(bin.path(), || run::execute(&steps, false)).unwrap();
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    let order = [
        "kind create cluster",
        "helm repo add",
        "helm upgrade --install",
        "kubectl --kubeconfig",
        "flux install --version",
        "kind delete cluster",
    ];
    let mut at = 0;
    for want in order {
        let pos = calls[at..]
            .iter()
            .position(|c| c.starts_with(want))
            .unwrap_or_else(|| panic!("{want} missing or out of order in {calls:?}"));
        at += pos;
    }
    assert!(art.path().join("cilium-values.yaml").is_file() && art.path().join("entry.yaml").is_file());
    let values = std::fs::read_to_string(art.path().join("cilium-values.yaml")).unwrap();
    assert!(
        values.contains("k8sServiceHost: flux-harness-test-control-plane") && values.contains("exclusive: false"),
        "{values}"
    );
}

#[test]
fn a_failing_step_still_deletes_the_cluster_and_keep_keeps_it() {
    let bin = tempfile::tempdir().unwrap();
    let log = fakes(bin.path(), Some("helm"));
    let art = tempfile::tempdir().unwrap();
    let req = request(common::example("netcorp-infra"), "staging", Provider::Real(ProviderKind::Kind), art.path());
    let (model, _) = harness::commands::load(&req.plan).unwrap();
    let steps = run::real_plan(&req, ProviderKind::Kind, &model, "http://172.18.0.1:8080/repo.git").unwrap();
    let err = with_path(bin.path(), || run::execute(&steps, false)).unwrap_err();
    assert!(
        err.to_string().contains("helm repo add cilium")
            && err.to_string().contains("while trying to add the Cilium chart repository"),
        "{err}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.lines().last().unwrap().starts_with("kind delete cluster --name flux-harness-test"), "{calls}");
    assert!(!calls.contains("flux install"), "nothing runs after the failure");
    std::fs::remove_file(&log).unwrap();
    let _ = with_path(bin.path(), || run::execute(&steps, true));
    assert!(!std::fs::read_to_string(&log).unwrap().contains("kind delete"), "--keep keeps the cluster");
}

fn sh(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_git_server_serves_the_working_tree_to_a_real_git_client() {
    if !common::require_program("git", "the git server is tested with a real git client") {
        return;
    }
    let user = tempfile::tempdir().unwrap();
    let u = user.path();
    sh(u, &["init", "--quiet", "-b", "main"]);
    std::fs::write(u.join("committed.yaml"), "a: 1\n").unwrap();
    std::fs::write(u.join(".gitignore"), "secret.key\n").unwrap();
    sh(u, &["add", "."]);
    sh(u, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "first"]);
    // Uncommitted work: a change, a new file, an ignored file.
    std::fs::write(u.join("committed.yaml"), "a: 2\n").unwrap();
    std::fs::write(u.join("new.yaml"), "b: 1\n").unwrap();
    std::fs::write(u.join("secret.key"), "AGE-SECRET-KEY\n").unwrap();
    let status_before = sh(u, &["status", "--porcelain"]);
    let root = tempfile::tempdir().unwrap();
    let server =
        harness::e2e::git::start(u, &root.path().join("git"), "flux-harness/run-test", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let url = server.url("127.0.0.1");
    let clone = tempfile::tempdir().unwrap();
    let dest = clone.path().join("c");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("git")
            .args(["clone", "--quiet", "--branch", "flux-harness/run-test", &url, dest.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "git clone: {}", String::from_utf8_lossy(&out.stderr));
    let dest = clone.path().join("c");
    assert_eq!(
        std::fs::read_to_string(dest.join("committed.yaml")).unwrap(),
        "a: 2\n",
        "uncommitted changes are in the snapshot"
    );
    assert!(dest.join("new.yaml").is_file());
    assert!(!dest.join("secret.key").exists(), ".gitignore is honoured");
    assert_eq!(sh(&dest, &["rev-parse", "HEAD"]).trim(), server.revision);
    assert_eq!(sh(u, &["status", "--porcelain"]), status_before, "the user's repository is untouched");
    assert_eq!(sh(u, &["rev-list", "--count", "HEAD"]).trim(), "1");
}

/// Opt-in (nextest lists it as skipped, never as passed): needs a Docker engine and a `git`
/// image built from a debootstrap rootfs (`docker import`, see README) named `flux-harness/git`.
#[tokio::test]
#[ignore = "needs Docker and the flux-harness/git image: cargo nextest run --run-ignored all -E 'test(docker)' (see README)"]
async fn the_git_server_is_reachable_from_a_container_on_a_docker_network() {
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("x.yaml"), "a: 1\n").unwrap();
    let gw = std::process::Command::new("docker")
        .args(["network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"])
        .output()
        .unwrap();
    let gateway = String::from_utf8_lossy(&gw.stdout).trim().to_string();
    let root = tempfile::tempdir().unwrap();
    let server =
        harness::e2e::git::start(user.path(), &root.path().join("git"), "run", format!("{gateway}:0").parse().unwrap())
            .await
            .unwrap();
    let url = server.url(&gateway);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("docker")
            .args(["run", "--rm", "flux-harness/git", "git", "ls-remote", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refs/heads/run"));
}
