//! `cargo xtask plan` as a user runs it: exit codes, and a clear error naming the file
//! (and line) for every kind of bad input. Never a panic.

use std::path::Path;
use std::process::Command;

mod common;
use common::Run;

fn plan(repo: &Path, args: &[&str]) -> Run {
    let mut all = vec!["plan".as_ref(), "--repo".as_ref(), repo.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    common::xtask(all)
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, t).unwrap();
    }
}

const SYNC: &str = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: https://git.example.com/infra\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./clusters/test\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";

const APP_KS: &str = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: app\n  namespace: flux-system\nspec:\n  interval: 5m\n  path: ./apps/app\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";

/// A valid repo with one app; `extra` files are added or replace defaults.
fn repo(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        &[
            ("clusters/test/flux-system/gotk-sync.yaml", SYNC),
            ("clusters/test/apps.yaml", APP_KS),
            ("apps/app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\n"),
        ],
    );
    write(d.path(), extra);
    d
}

/// A Kustomization whose build fails is a finding (exit 1) naming the place: Flux fails that
/// Kustomization and goes on with the rest.
fn expect_build_failure(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 1, "expected exit 1, got {}\nstdout:{}\nstderr:{}", r.code, r.stdout, r.stderr);
    for n in needles {
        assert!(r.stdout.contains(n), "stdout lacks '{n}':\n{}", r.stdout);
    }
}

fn expect_load_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "expected exit 2, got {}\nstdout:{}\nstderr:{}", r.code, r.stdout, r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks '{n}':\n{}", r.stderr);
    }
}

#[test]
fn a_valid_repo_exits_0_and_prints_layers() {
    let d = repo(&[]);
    let r = plan(d.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Bootstrap layer order") && r.stdout.contains("app"), "{}", r.stdout);
    let j = plan(d.path(), &["--cluster", "test", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).expect("JSON output parses");
    assert_eq!(v["layers"], serde_json::json!([["app"]]));
}

#[test]
fn error_findings_exit_1() {
    let d =
        repo(&[("clusters/test/apps.yaml", &APP_KS.replace("spec:\n", "spec:\n  dependsOn:\n    - name: ghost\n"))]);
    let r = plan(d.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("  flux-system/app\n    error   clusters/test/apps.yaml:1 [dependency-missing]"),
        "{}",
        r.stdout
    );
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let d =
        repo(&[("apps/app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a, b\n  namespace: x\n")]);
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &["apps/app/cm.yaml:5 [flux-build-failed] Kustomization flux-system/app cannot be built", "invalid YAML"],
    );
    // Broken YAML in the entry itself: nothing can be loaded.
    let d = repo(&[("clusters/test/apps.yaml", "kind: [\n")]);
    expect_load_error(&plan(d.path(), &["--cluster", "test"]), &["clusters/test/apps.yaml:", "invalid YAML"]);
}

#[test]
fn a_document_that_is_not_an_object() {
    // Listed by a kustomization: kustomize fails, the repo does not load.
    let d = repo(&[
        ("apps/app/list.yaml", "---\n- just\n- a list\n"),
        ("apps/app/kustomization.yaml", "resources: [cm.yaml, list.yaml]\n"),
    ]);
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &["apps/app/list.yaml:2 [flux-build-failed]", "expected a Kubernetes object"],
    );
    // In a directory Flux generates a kustomization for: Flux fails that Kustomization's
    // build; the plan says so at the file and keeps analysing the rest.
    let d = repo(&[("apps/app/list.yaml", "---\n- just\n- a list\n")]);
    let r = plan(d.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("apps/app/list.yaml:2 [flux-build-failed]")
            && r.stdout.contains("failed to decode Kubernetes YAML from apps/app/list.yaml"),
        "{}",
        r.stdout
    );
}

#[test]
fn an_unknown_flux_api_version() {
    let d =
        repo(&[("clusters/test/apps.yaml", &APP_KS.replace("/v1\nkind: Kustomization", "/v3\nkind: Kustomization"))]);
    expect_load_error(
        &plan(d.path(), &["--cluster", "test"]),
        &["clusters/test/apps.yaml:1", "kustomize.toolkit.fluxcd.io/v3", "does not serve"],
    );
}

#[test]
fn a_missing_spec_path_directory() {
    let d = repo(&[("clusters/test/apps.yaml", &APP_KS.replace("./apps/app", "./apps/gone"))]);
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &["clusters/test/apps.yaml:1 [flux-build-failed]", "spec.path './apps/gone'"],
    );
}

#[test]
fn duplicate_kustomization_names() {
    let twice = format!("{APP_KS}---\n{}", APP_KS.replace("./apps/app", "./apps"));
    let d = repo(&[("clusters/test/apps.yaml", &twice)]);
    // Twice in one build: kustomize refuses it, and this build is the entry's.
    expect_load_error(
        &plan(d.path(), &["--cluster", "test"]),
        &["clusters/test/apps.yaml:14", "is defined twice", "first at clusters/test/apps.yaml:1"],
    );
    // The same name applied by two different Flux Kustomizations.
    let d = repo(&[("apps/app/again.yaml", &APP_KS.replace("./apps/app", "./apps"))]);
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &[
            "apps/app/again.yaml:1 [duplicate-object] Kustomization flux-system/app is applied twice (also at clusters/test/apps.yaml:1)",
        ],
    );
    // The same spec twice is harmless but for pruning: a warning.
    let d = repo(&[("apps/app/again.yaml", APP_KS)]);
    let r = plan(d.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("warning apps/app/again.yaml:1 [duplicate-object]"), "{}", r.stdout);
}

#[test]
fn symlink_loops() {
    let d = repo(&[]);
    std::os::unix::fs::symlink("..", d.path().join("apps/app/loop")).unwrap();
    expect_build_failure(&plan(d.path(), &["--cluster", "test"]), &["[flux-build-failed]", "symlink", "apps/app/loop"]);
    let d2 = repo(&[]);
    std::os::unix::fs::symlink("self.yaml", d2.path().join("apps/app/self.yaml")).unwrap();
    expect_build_failure(&plan(d2.path(), &["--cluster", "test"]), &["apps/app/self.yaml", "symlink loop"]);
}

#[test]
fn a_named_pipe_is_refused_without_blocking() {
    let d = repo(&[]);
    let fifo = d.path().join("apps/app/pipe.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Opening it would wait for a writer for ever (nextest's slow-timeout ends such a run).
    let r = plan(d.path(), &["--cluster", "test"]);
    expect_build_failure(&r, &["apps/app/pipe.yaml", "a named pipe (FIFO), not a manifest"]);
    // Listed by a kustomization, too.
    let d = repo(&[("apps/app/kustomization.yaml", "resources: [cm.yaml, pipe.yaml]\n")]);
    assert!(Command::new("mkfifo").arg(d.path().join("apps/app/pipe.yaml")).status().unwrap().success());
    expect_build_failure(&plan(d.path(), &["--cluster", "test"]), &["apps/app/pipe.yaml", "named pipe"]);
}

#[test]
fn an_empty_repo() {
    let d = tempfile::tempdir().unwrap();
    expect_load_error(&plan(d.path(), &["--cluster", "test"]), &["no clusters/test directory", "Flux repository"]);
    expect_load_error(&plan(d.path(), &[]), &["nothing to bootstrap"]);
}

#[test]
fn a_directory_that_is_not_a_flux_repo() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &[("README.md", "# hello\n"), ("src/main.rs", "fn main() {}\n")]);
    expect_load_error(&plan(d.path(), &[]), &["nothing to bootstrap"]);
    let r = plan(&d.path().join("README.md"), &[]);
    expect_load_error(&r, &["README.md", "not a directory"]);
    let r = plan(&d.path().join("nope"), &[]);
    expect_load_error(&r, &["nope", "cannot open repository"]);
}

#[test]
fn a_50_mb_file() {
    let d = repo(&[]);
    let big = "# padding\n".repeat(5 * 1024 * 1024);
    std::fs::write(d.path().join("apps/app/huge.yaml"), big).unwrap();
    expect_build_failure(&plan(d.path(), &["--cluster", "test"]), &["apps/app/huge.yaml", "50.0 MiB", "limit"]);
}

#[test]
fn three_hundred_thousand_tiny_documents_are_refused_by_count() {
    // About 14 MiB: under the size limit, but a gigabyte once parsed.
    let d = repo(&[]);
    let doc = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    std::fs::write(d.path().join("apps/app/many.yaml"), doc.repeat(300_000)).unwrap();
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &["apps/app/many.yaml", "300000 YAML documents", "50000 allowed"],
    );
}

#[test]
fn an_unknown_cluster_lists_the_known_ones() {
    let d = repo(&[]);
    expect_load_error(
        &plan(d.path(), &["--cluster", "prod"]),
        &["no clusters/prod directory", "clusters in this repository: test"],
    );
}

#[test]
fn an_unsupported_kustomize_field_points_at_kubectl() {
    let d = repo(&[(
        "apps/app/kustomization.yaml",
        "resources: [cm.yaml]\nvars:\n  - name: X\n    objref: {kind: ConfigMap, name: a, apiVersion: v1}\n",
    )]);
    expect_build_failure(
        &plan(d.path(), &["--cluster", "test"]),
        &["apps/app/kustomization.yaml:2 [renderer-unsupported]", "'vars'", "--renderer kubectl"],
    );
}

#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: needed by --renderer kubectl")]
fn the_kubectl_renderer_gives_the_same_plan_on_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/netcorp-infra");
    let native = plan(&example, &["--cluster", "staging", "--format", "json"]);
    let kubectl = plan(&example, &["--cluster", "staging", "--format", "json", "--renderer", "kubectl"]);
    assert_eq!((native.code, kubectl.code), (0, 0), "{}", kubectl.stderr);
    let n: serde_json::Value = serde_json::from_str(&native.stdout).unwrap();
    let k: serde_json::Value = serde_json::from_str(&kubectl.stdout).unwrap();
    assert_eq!(n["layers"], k["layers"]);
    let count = |v: &serde_json::Value| {
        v["kustomizations"].as_array().unwrap().iter().map(|k| k["objects"].as_array().unwrap().len()).sum::<usize>()
    };
    assert_eq!(count(&n), count(&k), "both renderers see the same objects");
}

#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: needed by --renderer kubectl")]
fn the_kubectl_renderer_handles_what_the_native_one_refuses() {
    let d = repo(&[(
        "apps/app/kustomization.yaml",
        "resources: [cm.yaml]\nvars:\n  - name: SELF\n    objref: {kind: ConfigMap, name: a, apiVersion: v1}\n    fieldref: {fieldpath: metadata.name}\n",
    )]);
    assert_eq!(plan(d.path(), &["--cluster", "test"]).code, 1, "the native renderer cannot prove it");
    let r = plan(d.path(), &["--cluster", "test", "--renderer", "kubectl", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let app = v["kustomizations"].as_array().unwrap().iter().find(|k| k["name"] == "app").unwrap();
    assert_eq!(app["objects"][0]["kind"], "ConfigMap");
}

#[test]
fn github_actions_gets_annotations_on_stderr_and_clean_json_on_stdout() {
    let d =
        repo(&[("clusters/test/apps.yaml", &APP_KS.replace("spec:\n", "spec:\n  dependsOn:\n    - name: ghost\n"))]);
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["plan", "--cluster", "test", "--format", "json", "--repo"])
        .arg(d.path())
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("::error file=clusters/test/apps.yaml,line=1,title=dependency-missing::Kustomization flux-system/app depends on flux-system/ghost"), "{stderr}");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout stays valid JSON");
    assert_eq!(out.status.code(), Some(1));
    // The Flux repo in a subfolder of the workflow's checkout: paths from the checkout.
    let checkout = d.path().parent().unwrap();
    let sub = d.path().file_name().unwrap().to_string_lossy().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["plan", "--cluster", "test", "--repo"])
        .arg(d.path())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", checkout)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("::error file={sub}/clusters/test/apps.yaml,line=1,")), "{stderr}");
}

fn simulate(repo: &Path, args: &[&str]) -> Run {
    let out =
        Command::new(env!("CARGO_BIN_EXE_xtask")).arg("simulate").arg("--repo").arg(repo).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn simulate_exits_0_when_it_converges_and_prints_the_json_contract() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/netcorp-infra");
    let r = simulate(&example, &["--cluster", "staging", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for key in ["converged", "total_seconds", "ready_order", "layers", "stuck", "deadlock", "timeline"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["converged"], true);
    assert!(v["deadlock"].is_null());
    assert!(v["ready_order"][0].get("at_seconds").is_some());
    let text = simulate(&example, &["--cluster", "staging"]);
    assert!(text.stdout.contains("layer 0 (Ready at") && text.stdout.contains("critical path:"), "{}", text.stdout);
}

#[test]
fn simulate_exits_1_when_it_does_not_converge_and_2_on_bad_input() {
    let cyc = APP_KS.replace("spec:\n", "spec:\n  dependsOn:\n    - name: app\n");
    let d = repo(&[("clusters/test/apps.yaml", &cyc)]);
    let r = simulate(d.path(), &["--cluster", "test", "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["deadlock"]["cycle"], serde_json::json!(["Kustomization flux-system/app"]));
    let ok = repo(&[]);
    expect_load_error(
        &simulate(ok.path(), &["--cluster", "test", "--fault", "chart-fail:ghost/ghost=1"]),
        &["no HelmRelease ghost/ghost"],
    );
    expect_load_error(&simulate(ok.path(), &["--cluster", "test", "--fault", "meteor"]), &["unknown fault"]);
    // A Kustomization that cannot be built fails in the simulation as in Flux: for good.
    let broken = repo(&[("apps/app/cm.yaml", "a: [\n")]);
    let r = simulate(broken.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Kustomization flux-system/app at 5s")
            && r.stdout
                .contains("never Ready: BuildFailed: kustomize build failed: apps/app/cm.yaml:1:4: invalid YAML"),
        "{}",
        r.stdout
    );
}

/// Fake executables that log their calls; `kind create` takes 30 s (to be interrupted).
fn slow_fakes(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("calls.log");
    for prog in ["kind", "helm", "kubectl", "flux", "docker"] {
        let body = if prog == "kind" { "case \"$1\" in create) sleep 30;; esac\n" } else { "" };
        let p = dir.join(prog);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{prog} $*\" >> {}\n{body}exit 0\n", log.display())).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    log
}

#[test]
fn ctrl_c_during_cluster_creation_deletes_the_cluster() {
    let _ = interrupt_during_cluster_creation("-INT", 130);
}

/// What CI runners send when a job is cancelled.
#[test]
fn sigterm_during_cluster_creation_deletes_the_cluster() {
    let _ = interrupt_during_cluster_creation("-TERM", 143);
}

/// The terminal closed, or the ssh session to the laptop dropped.
#[test]
fn sighup_during_cluster_creation_deletes_the_cluster() {
    let _ = interrupt_during_cluster_creation("-HUP", 129);
}

#[test]
fn the_sim_cluster_kubeconfig_is_private_and_removed_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/envs-infra");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["sim-cluster", "--cluster", "staging", "--repo"])
        .arg(&example)
        .arg("--kubeconfig")
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if kc.is_file() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&kc).expect("kubeconfig written").permissions().mode() & 0o777;
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(mode, 0o600, "it holds the bearer token");
    assert_eq!(status.code(), Some(143));
    assert!(!kc.exists(), "removed on SIGTERM");
}

fn interrupt_during_cluster_creation(signal: &str, code: i32) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let log = slow_fakes(bin.path());
    let art = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/netcorp-infra");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--provider", "kind", "--cluster", "staging", "--repo"])
        .arg(&example)
        .arg("--artifacts")
        .arg(art.path())
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until kind create runs, then interrupt.
    for _ in 0..100 {
        if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("kind create")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("kind delete cluster --name flux-harness-"), "{calls}");
    assert!(!calls.contains("helm upgrade"), "nothing after the interrupt: {calls}");
    art
}

#[test]
fn e2e_dry_run_prints_the_plan_and_runs_nothing() {
    let bin = tempfile::tempdir().unwrap();
    let log = slow_fakes(bin.path());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/netcorp-infra");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--provider", "k3d", "--dry-run", "--cluster", "staging", "--repo"])
        .arg(&example)
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("$ k3d cluster create")
            && text.contains("$ helm upgrade --install cilium")
            && text.contains("on success, failure or Ctrl-C"),
        "{text}"
    );
    assert!(!log.exists(), "--dry-run runs nothing");
    let none = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--provider", "existing", "--dry-run", "--cluster", "staging", "--repo"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("needs --context"));
}

#[test]
fn e2e_on_sim_passes_and_writes_reports() {
    let art = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/envs-infra");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--cluster", "staging", "--format", "json", "--repo"])
        .arg(&example)
        .arg("--artifacts")
        .arg(art.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["provider"].as_str(), v["passed"].as_bool()), (Some("sim"), Some(true)));
    assert!(art.path().join("report.json").is_file() && art.path().join("junit.xml").is_file());
}

#[test]
fn e2e_says_when_it_cannot_save_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/envs-infra");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["e2e", "--cluster", "staging", "--format", "json", "--repo"])
        .arg(&example)
        .arg("--artifacts")
        .arg(file.join("artifacts"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the run itself passed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"].as_bool(), Some(true), "the report is still printed");
    assert!(stderr.contains("warning: cannot save the report under") && stderr.contains("a-file"), "{stderr}");
}

#[test]
fn kustomizations_nested_thousands_deep_are_refused_not_a_crash() {
    let d = repo(&[]);
    // apps/app -> chain/k0 -> ../k1 -> ... 9,000 levels (siblings: no path grows long), the
    // depth that overflowed the stack (SIGABRT, no file named) before the limit.
    std::fs::write(d.path().join("apps/app/kustomization.yaml"), "resources: [cm.yaml, chain/k0]\n").unwrap();
    let chain = d.path().join("apps/app/chain");
    for i in 0..9000 {
        let k = chain.join(format!("k{i}"));
        std::fs::create_dir_all(&k).unwrap();
        let next = if i < 8999 { format!("resources: [../k{}]\n", i + 1) } else { "resources: []\n".to_string() };
        std::fs::write(k.join("kustomization.yaml"), next).unwrap();
    }
    let r = plan(d.path(), &["--cluster", "test"]);
    expect_build_failure(&r, &["[flux-build-failed]", "kustomizations nested more than 256 deep"]);
}

#[test]
fn a_wrongly_typed_path_is_blamed_on_its_field_and_nothing_else() {
    // Two clusters: a mistyped path must not be read as the repo root, where the other
    // cluster's gotk-sync.yaml would look like a duplicate.
    let other = SYNC.replace("clusters/test", "clusters/other");
    let d = repo(&[
        ("clusters/other/flux-system/gotk-sync.yaml", other.as_str()),
        ("clusters/test/apps.yaml", &APP_KS.replace("path: ./apps/app", "path: [1, 2]")),
    ]);
    let r = plan(d.path(), &["--cluster", "test", "--format", "json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let errors: Vec<&serde_json::Value> =
        v["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["rule"], "schema-invalid");
    assert_eq!((errors[0]["file"].as_str(), errors[0]["line"].as_u64()), (Some("clusters/test/apps.yaml"), Some(8)));
    assert!(!r.stdout.contains("defined twice"), "{}", r.stdout);
}

#[test]
fn a_repo_rendering_more_objects_than_the_limit_stops_naming_the_kustomization() {
    // Three Kustomizations of 34,000 tiny ConfigMaps each (under the per-file limit): the
    // third crosses 100,000.
    let mut files: Vec<(String, String)> = vec![];
    let mut ks = String::new();
    for i in 0..3 {
        let many: String =
            (0..34_000).map(|n| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c-{n}}}\n")).collect();
        files.push((format!("apps/gen-{i}/many.yaml"), many));
        ks.push_str(&format!(
            "---\n{}",
            APP_KS
                .replace("name: app\n", &format!("name: gen-{i}\n"))
                .replace("./apps/app", &format!("./apps/gen-{i}"))
        ));
    }
    files.push(("clusters/test/apps.yaml".into(), ks));
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let d = repo(&refs);
    let r = plan(d.path(), &["--cluster", "test"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("more than 100000 objects") && r.stderr.contains("clusters/test/apps.yaml"),
        "{}",
        r.stderr
    );
}
