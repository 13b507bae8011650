//! The end-to-end runner: full runs on the simulated cluster, the assertions, diagnostics
//! without secrets, the real-cluster plans (dry-run, reviewed snapshots), and plan
//! execution against fake executables that record their calls.

mod common;

use common::repo::*;
use harness::e2e::assert::{self, Observation};
use harness::e2e::run::{self, E2eRequest, Provider};
use std::path::{Path, PathBuf};

use common::e2e_request as request;

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
    let expect = assert::Expect { timeout_seconds: 600.0, ..Default::default() };
    let good = vec![ob(0.0, "flux-system"), ob(10.0, "a"), ob(40.0, "b")];
    let (rows, v, _) = assert::check(&model, &graph, &good, &expect);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(rows.iter().find(|r| r.name == "b").unwrap().dependencies_ready_at_seconds, Some(10.0));
    let bad = vec![ob(0.0, "flux-system"), ob(50.0, "a"), ob(40.0, "b")];
    let (_, v, _) = assert::check(&model, &graph, &bad, &expect);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].message, "Kustomization b became Ready at 40s, before its dependency a (Ready at 50s)");
    let tie = vec![ob(0.0, "flux-system"), ob(40.0, "a"), ob(40.0, "b")];
    let (_, v, _) = assert::check(&model, &graph, &tie, &expect);
    assert_eq!(v.len(), 1, "a tie is no proof of order: {v:?}");
    assert_eq!(v[0].kind, "order-tie");
    assert!(v[0].message.contains("the same time as its dependency a"), "{}", v[0].message);
    let late = vec![ob(0.0, "flux-system"), ob(10.0, "a"), ob(700.0, "b")];
    let (_, v, _) = assert::check(&model, &graph, &late, &expect);
    assert!(v[0].message.starts_with("Kustomization b was not Ready within 600s"));
    let expected = vec![vec!["b".to_string()], vec!["a".to_string()]];
    let (_, v, _) = assert::check(&model, &graph, &good, &assert::Expect { layers: Some(&expected), ..expect.clone() });
    assert_eq!(v[0].kind, "layers");
}

#[test]
fn a_failure_mended_by_a_retry_fails_the_run_unless_retries_are_allowed() {
    let (model, _) = Repo::new().ks("a", &[], "").obj("a", "ns.yaml", &ns("a")).load();
    let (graph, _) = harness::graph::analyse(&model);
    let ob = |t: f64, status: &str, reason: &str, message: &str| Observation {
        at_seconds: t,
        kind: "Kustomization".into(),
        namespace: "flux-system".into(),
        name: "a".into(),
        condition: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
    };
    let dry_run = "CiliumNetworkPolicy/a/deny dry-run failed: no matches for kind \"CiliumNetworkPolicy\" in version \"cilium.io/v2\"";
    let obs = vec![
        ob(1.0, "Unknown", "Progressing", "Reconciliation in progress"),
        ob(2.0, "False", "DependencyNotReady", "dependency 'flux-system/x' is not ready"),
        ob(3.0, "False", "ArtifactFailed", "Source artifact not found, retrying in 30s"),
        ob(35.0, "False", "ReconciliationFailed", dry_run),
        ob(335.0, "True", "ReconciliationSucceeded", "Applied revision: main@sha1:1"),
    ];
    let expect = assert::Expect { timeout_seconds: 600.0, ..Default::default() };
    let (_, v, w) = assert::check(&model, &graph, &obs, &expect);
    assert!(w.is_empty());
    assert_eq!(v.len(), 1, "waiting reasons are not failures: {v:?}");
    assert_eq!(v[0].kind, "failed");
    assert_eq!(v[0].objects, ["a"], "named as the report's rows (and JUnit's test cases) name it");
    assert_eq!(
        v[0].message,
        format!(
            "Kustomization flux-system/a failed at 35s and became Ready only at 335s: 300s lost: ReconciliationFailed: {dry_run}"
        )
    );
    let (_, v, w) = assert::check(&model, &graph, &obs, &assert::Expect { allow_retries: true, ..expect.clone() });
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(w.len(), 1);
    // A failure never mended stays a violation even with --allow-retries.
    let (_, v, _) = assert::check(&model, &graph, &obs[..4], &assert::Expect { allow_retries: true, ..expect });
    assert_eq!(v.iter().map(|v| v.kind.as_str()).collect::<Vec<_>>(), ["failed", "timeout"]);
    assert!(v[0].message.contains("never became Ready"));
}

#[test]
fn a_cycle_is_named_before_the_timeouts_it_causes() {
    let (model, _) = Repo::new()
        .ks("a", &["b"], "")
        .obj("a", "ns.yaml", &ns("a"))
        .ks("b", &["a"], "")
        .obj("b", "ns.yaml", &ns("b"))
        .ks("c", &["a"], "")
        .obj("c", "ns.yaml", &ns("c"))
        .load();
    let (graph, _) = harness::graph::analyse(&model);
    let (_, v, _) =
        assert::check(&model, &graph, &[], &assert::Expect { timeout_seconds: 600.0, ..Default::default() });
    assert_eq!(v[0].kind, "cycle", "{v:?}");
    assert!(
        v[0].message.starts_with("dependsOn cycle: ") && v[0].message.contains("flux-system/a"),
        "{}",
        v[0].message
    );
    let timeouts: Vec<&String> = v.iter().filter(|v| v.kind == "timeout").map(|v| &v.message).collect();
    assert_eq!(timeouts.len(), 3);
    assert!(timeouts.iter().all(|m| m.ends_with("it is in or behind the dependsOn cycle above")), "{timeouts:?}");
}

/// Each mistake the API server or kustomize-controller refuses fails the sim run, naming the
/// Kustomization and quoting the message, and `plan` reports the same problem at its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_api_server_or_the_build_refuses_fails_the_sim_run_and_plan_says_the_same() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n";
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "a wrong-typed dependsOn",
            "  dependsOn: base\n",
            "schema-invalid",
            "spec.dependsOn: Invalid value: \"string\": spec.dependsOn in body must be of type array",
        ),
        ("a required field missing", "  prune: null\n", "schema-invalid", "spec.prune: Required value"),
        (
            "wait that is not a boolean",
            "  wait: \"yes\"\n",
            "schema-invalid",
            "spec.wait: Invalid value: \"string\": spec.wait in body must be of type boolean",
        ),
        ("a missing spec.path directory", "", "flux-build-failed", "kustomization path not found"),
    ];
    for (what, extra, rule, needle) in cases {
        let mut repo = Repo::new().ks("base", &[], "").obj("base", "cm.yaml", cm).ks("app", &[], extra);
        if !extra.is_empty() {
            repo = repo.obj("app", "cm.yaml", cm);
        }
        let dir = tempfile::tempdir().unwrap();
        repo.write_to(dir.path());
        let artifacts = tempfile::tempdir().unwrap();
        let mut req = request(dir.path().to_path_buf(), "test", Provider::Sim, artifacts.path());
        req.timeout_seconds = 900.0;
        let r = run::run(&req, &quiet).await.unwrap();
        assert!(!r.passed, "{what}: {}", r.to_text());
        let failed: Vec<&String> = r.violations.iter().filter(|v| v.kind == "failed").map(|v| &v.message).collect();
        let quoted = if rule == "flux-build-failed" {
            needle.to_string()
        } else {
            format!("dry-run failed (Invalid): Kustomization.kustomize.toolkit.fluxcd.io \"app\" is invalid: {needle}")
        };
        let culprit = if rule == "flux-build-failed" {
            "Kustomization flux-system/app failed"
        } else {
            "Kustomization flux-system/flux-system failed"
        };
        assert!(failed.iter().any(|m| m.starts_with(culprit) && m.contains(&quoted)), "{what}: {failed:?}");
        let f =
            r.preflight.iter().find(|f| f.rule == rule).unwrap_or_else(|| panic!("{what}: plan: {:?}", r.preflight));
        assert!(f.message.contains(needle), "{what}: {}", f.message);
        assert_eq!(f.file, "clusters/test/ks.yaml", "{what}");
    }
}

/// The Ready time of every Kustomization of a sim run, by name.
fn ready_times(r: &harness::e2e::report::E2eReport) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> =
        r.kustomizations.iter().map(|k| (k.name.clone(), k.ready_at_seconds.unwrap_or(-1.0))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_times_come_from_the_conditions_and_do_not_depend_on_the_speed() {
    for (ex, speeds) in [("envs-infra", &[10.0, 600.0, 6000.0][..]), ("netcorp-infra", &[600.0, 6000.0][..])] {
        let mut seen = vec![];
        for &speed in speeds {
            let tmp = tempfile::tempdir().unwrap();
            let mut req = request(common::example(ex), "staging", Provider::Sim, tmp.path());
            req.speed = speed;
            let r = run::run(&req, &quiet).await.unwrap();
            assert!(r.passed, "{ex} at {speed}x: {}", r.to_text());
            seen.push(ready_times(&r));
        }
        for other in &seen[1..] {
            for ((name, a), (_, b)) in seen[0].iter().zip(other) {
                assert!((a - b).abs() <= 1.0, "{ex}: {name} Ready at {a}s at one speed, {b}s at another");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_ordering_mistake_fails_the_sim_run_with_flux_s_message() {
    let cnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: deny\n  namespace: app\nspec:\n  endpointSelector: {}\n";
    let repo = Repo::new()
        .file("clusters/test/repos.yaml", &helm_repo("charts"))
        .ks("cilium", &[], "  wait: true\n")
        .obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", ""))
        .ks("app", &[], "")
        .obj("app", "ns.yaml", &ns("app"))
        .obj("app", "cnp.yaml", cnp);
    let dir = tempfile::tempdir().unwrap();
    repo.write_to(dir.path());
    let artifacts = tempfile::tempdir().unwrap();
    let req = request(dir.path().to_path_buf(), "test", Provider::Sim, artifacts.path());
    let r = run::run(&req, &quiet).await.unwrap();
    assert!(!r.passed, "{}", r.to_text());
    assert!(r.preflight.iter().any(|f| f.severity == harness::findings::Severity::Error), "plan saw it first");
    let failed: Vec<&String> = r.violations.iter().filter(|v| v.kind == "failed").map(|v| &v.message).collect();
    assert!(
        failed.iter().any(|m| m.starts_with("Kustomization flux-system/app failed at")
            && m.contains("no matches for kind \"CiliumNetworkPolicy\"")),
        "{failed:?}"
    );
    let text = r.to_text();
    assert!(text.find("plan found").unwrap() < text.find("[failed]").unwrap(), "{text}");
}

fn dry_plan(kind: Provider) -> String {
    let tmp = Path::new("/artifacts");
    let req = request(common::example("netcorp-infra"), "staging", kind, tmp);
    let model = harness::commands::load(&req.plan).unwrap().model;
    let steps = run::plan_for(&req, &model, "http://172.18.0.1:8080/repo.git").unwrap();
    // Paths of this checkout vary: redact them.
    let root = common::project_root().display().to_string();
    harness::e2e::plan::render(&steps).replace(&root, "<project>")
}

#[test]
fn dry_run_plan_for_kind() {
    insta::assert_snapshot!(dry_plan(Provider::Kind));
}

#[test]
fn dry_run_plan_for_k3d() {
    insta::assert_snapshot!(dry_plan(Provider::K3d));
}

/// The e2e profile (netcorp's NFS server) is part of every provider's served tree, and a
/// profile that cannot apply stops the run with its reason instead of doing nothing.
#[test]
fn the_e2e_profile_rewrites_the_served_tree_and_refuses_what_does_not_apply() {
    let art = tempfile::tempdir().unwrap();
    for kind in [Provider::Kind, Provider::K3d] {
        let req = request(common::example("netcorp-infra"), "staging", kind, art.path());
        let model = harness::commands::load(&req.plan).unwrap().model;
        let rw = harness::e2e::served::planned_rewrites(&req, &model, "http://172.18.0.1:8080/repo.git").unwrap();
        let infra = rw.iter().find(|r| r.path == "clusters/staging/infrastructure.yaml").unwrap();
        assert!(infra.what.contains("nfs-provisioner skipped") && infra.what.contains("./test/e2e/nfs-client"));
        assert!(infra.what.contains("NFS_SERVER=nfs.invalid") && infra.what.contains("longhorn-system"));
        let docs = harness::yaml::parse_docs("x", &infra.content).unwrap();
        let nfs = docs.iter().find(|d| d.value["metadata"]["name"] == "nfs-provisioner").unwrap();
        assert_eq!(nfs.value["spec"]["path"], "./test/e2e/nfs-client");
        let lh = docs.iter().find(|d| d.value["metadata"]["name"] == "longhorn-system").unwrap();
        assert_eq!(lh.value["spec"]["postBuild"]["substitute"]["NFS_SERVER"], "nfs.invalid");
        assert_eq!(lh.value["spec"]["postBuild"]["substituteFrom"][0]["name"], "cluster-config", "kept");
        assert!(rw.iter().any(|r| r.path.ends_with("gotk-sync.yaml")), "the entry override too");
    }
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("netcorp-infra"), tmp.path());
    let cfg = tmp.path().join(".flux-harness.yaml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, says) in [
        ("kustomization: nfs-provisioner", "kustomization: nfs-provisoner", "does not define"),
        ("instead: test/e2e/nfs-client", "instead: test/e2e/nfs", "not a directory"),
        ("instead: test/e2e/nfs-client", "instead: ../../etc", "inside the repository"),
        ("kustomization: nfs-provisioner", "kustomization: flux-system", "skips the whole bootstrap"),
    ] {
        std::fs::write(&cfg, original.replace(from, to)).unwrap();
        let req = request(tmp.path().to_path_buf(), "staging", Provider::Sim, art.path());
        let model = harness::commands::load(&req.plan).unwrap().model;
        let e = harness::e2e::served::planned_rewrites(&req, &model, "http://x/repo.git").unwrap_err();
        assert!(e.message.contains(says), "{e}");
    }
    // What belonged to the skipped content goes with it, and the report says so.
    let infra = tmp.path().join("clusters/staging/infrastructure.yaml");
    let text = std::fs::read_to_string(&infra).unwrap();
    let checked = text.replacen(
        "  wait: true\n  timeout: 10m\n  postBuild:",
        "  wait: true\n  timeout: 10m\n  healthChecks:\n    - apiVersion: apps/v1\n      kind: Deployment\n      name: nfs-subdir-external-provisioner\n      namespace: nfs-provisioner\n  postBuild:",
        1,
    );
    assert_ne!(text, checked);
    std::fs::write(&infra, checked).unwrap();
    std::fs::write(&cfg, &original).unwrap();
    let req = request(tmp.path().to_path_buf(), "staging", Provider::Kind, art.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let rw = harness::e2e::served::planned_rewrites(&req, &model, "http://x/repo.git").unwrap();
    let r = rw.iter().find(|r| r.path == "clusters/staging/infrastructure.yaml").unwrap();
    assert!(r.what.contains("without its healthChecks"), "{}", r.what);
    assert!(!r.content.contains("nfs-subdir-external-provisioner"), "{}", r.content);
    std::fs::write(&infra, text).unwrap();
    std::fs::write(&cfg, original.replace("reason: its NFS server", "reason: \"\"\n      # its NFS server")).unwrap();
    let req = request(tmp.path().to_path_buf(), "staging", Provider::Sim, art.path());
    let Err(e) = harness::commands::load(&req.plan) else { panic!("an e2e skip without a reason loads") };
    assert!(e.message.contains("needs a reason"), "{e}");
}

#[test]
fn an_existing_cluster_must_be_named() {
    let tmp = tempfile::tempdir().unwrap();
    let req = request(common::example("netcorp-infra"), "staging", Provider::Existing, tmp.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let e = run::plan_for(&req, &model, "http://x/repo.git").unwrap_err();
    assert!(e.message.contains("needs --context"), "{e}");
    let named = E2eRequest { context: Some("staging-admin".into()), ..req };
    let plan = harness::e2e::plan::render(&run::plan_for(&named, &model, "http://x/repo.git").unwrap());
    assert!(
        plan.contains("--context staging-admin --request-timeout=20s cluster-info")
            && plan.contains("--context=staging-admin")
    );
    assert!(
        !plan.contains("delete cluster") && !plan.contains("on success, failure or Ctrl-C"),
        "an existing cluster is never deleted:\n{plan}"
    );
}

/// On a cluster the harness did not create, nothing is installed unless asked, the entry
/// does not prune, and the cluster's own sync objects are saved before and restored after
/// (against fake kubectl: the saved file is applyable again, and cleanup applies it).
#[test]
fn an_existing_cluster_gets_only_what_was_asked_and_its_sync_back() {
    let bin = tempfile::tempdir().unwrap();
    let log = fakes(bin.path(), None);
    // kubectl get prints the cluster's own objects, as a List with server-set fields.
    let listing = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: source.toolkit.fluxcd.io/v1\n  kind: GitRepository\n  metadata:\n    name: flux-system\n    namespace: flux-system\n    uid: 1234\n    resourceVersion: \"99\"\n    managedFields: [{manager: flux}]\n  spec:\n    url: ssh://git@example.com/org/infra.git\n    secretRef: {name: flux-system}\n  status: {artifact: {revision: main@sha1:abc}}\n- apiVersion: kustomize.toolkit.fluxcd.io/v1\n  kind: Kustomization\n  metadata:\n    name: flux-system\n    namespace: flux-system\n    uid: 5678\n  spec:\n    path: ./clusters/prod\n    prune: true\n";
    let kubectl = bin.path().join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\necho \"kubectl $*\" >> {}\ncase \"$*\" in *\" get --ignore-not-found \"*) cat <<'EOF'\n{listing}EOF\n;; esac\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    let art = tempfile::tempdir().unwrap();
    let mut req = request(common::example("netcorp-infra"), "staging", Provider::Existing, art.path());
    req.context = Some("prod".into());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let steps = run::plan_for(&req, &model, "http://10.0.0.1:8080/repo.git").unwrap();
    let plan = harness::e2e::plan::render(&steps);
    assert!(!plan.contains("helm upgrade") && !plan.contains("flux install"), "nothing installed unasked:\n{plan}");
    assert!(plan.contains("prune: false") && !plan.contains("prune: true"), "the entry does not prune:\n{plan}");
    assert!(plan.contains("--request-timeout=20s cluster-info"), "an unreachable API server fails fast");
    with_path(bin.path(), || run::execute(&steps, false)).unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    let at =
        |needle: &str| calls.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{calls}"));
    assert!(at("get --ignore-not-found") < at("apply --server-side -f"), "saved before the entry is applied");
    // Restored after, without pruning by the run's inventory: prune off, one reconcile of
    // the cluster's own source, then the objects as they were.
    let order = ["apply --server-side -f", "entry-before-no-prune.yaml", "annotate --overwrite", "wait kustomization"];
    let positions: Vec<usize> = order.iter().map(|n| at(n)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}:\n{calls}");
    let last_apply = calls.lines().rfind(|l| l.contains(" apply ")).unwrap();
    assert!(last_apply.ends_with("entry-before.yaml"), "{calls}");
    // The decryption Secret the run made (the fake cluster had none) goes after.
    assert!(calls.lines().last().unwrap().contains("delete secret sops-age"), "{calls}");
    let quiet = std::fs::read_to_string(art.path().join("entry-before-no-prune.yaml")).unwrap();
    assert!(quiet.contains("prune: false") && !quiet.contains("prune: true"), "{quiet}");
    let saved = std::fs::read_to_string(art.path().join("entry-before.yaml")).unwrap();
    assert!(saved.contains("prune: true"), "the cluster's own setting comes back last:\n{saved}");
    assert!(saved.contains("url: ssh://git@example.com/org/infra.git") && saved.contains("secretRef"), "{saved}");
    for server_set in ["uid", "resourceVersion", "managedFields", "status", "artifact"] {
        assert!(!saved.contains(server_set), "{server_set} is dropped:\n{saved}");
    }
    // Asked for: Cilium and Flux installed.
    req.install_cni = true;
    req.install_flux = true;
    let asked = harness::e2e::plan::render(&run::plan_for(&req, &model, "http://x/repo.git").unwrap());
    assert!(asked.contains("helm upgrade --install cilium") && asked.contains("flux install"), "{asked}");
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
    let req = request(common::example("netcorp-infra"), "staging", Provider::Kind, art.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let steps = run::plan_for(&req, &model, "http://172.18.0.1:8080/repo.git").unwrap();
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
    let req = request(common::example("netcorp-infra"), "staging", Provider::Kind, art.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let steps = run::plan_for(&req, &model, "http://172.18.0.1:8080/repo.git").unwrap();
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
#[cfg_attr(not(have_git), ignore = "git is not installed: the git server is tested with a real git client")]
async fn the_git_server_serves_the_working_tree_to_a_real_git_client() {
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
    let server = harness::e2e::git::start(
        u,
        &root.path().join("git"),
        "flux-harness/run-test",
        "127.0.0.1:0".parse().unwrap(),
        &[],
        &|_| Ok(vec![]),
    )
    .await
    .unwrap();
    let url = server.url("127.0.0.1");
    let clone = tempfile::tempdir().unwrap();
    let dest = clone.path().join("c");
    git_clone(&url, "flux-harness/run-test", &dest).await;
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

#[tokio::test]
async fn the_served_gotk_sync_points_at_the_harness_and_the_user_tree_is_untouched() {
    if !harness::exec::have("git") {
        panic!("git is needed for this test");
    }
    let example = common::example("netcorp-infra");
    let req = request(example.clone(), "staging", Provider::Kind, Path::new("/unused"));
    let model = harness::commands::load(&req.plan).unwrap().model;
    let gotk = "clusters/staging/flux-system/gotk-sync.yaml";
    let before = std::fs::read_to_string(example.join(gotk)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let seen = std::sync::Mutex::new(vec![]);
    let read = |p: &str| std::fs::read_to_string(example.join(p)).ok();
    let server = harness::e2e::git::start(
        &example,
        &root.path().join("git"),
        "flux-harness/run-t",
        "127.0.0.1:0".parse().unwrap(),
        &[],
        &|url| {
            let rw = harness::e2e::plan::served_rewrites(&model, &read, url, "flux-harness/run-t");
            *seen.lock().unwrap() = rw.clone();
            Ok(rw.into_iter().map(|r| (r.path, r.content)).collect())
        },
    )
    .await
    .unwrap();
    let rewrites = seen.into_inner().unwrap();
    assert_eq!(rewrites.len(), 1, "{rewrites:?}");
    assert_eq!(rewrites[0].path, gotk);
    assert!(
        rewrites[0].what.starts_with("GitRepository flux-system: ssh://git@git.netcorp.example/platform/infra.git")
            && rewrites[0].what.ends_with("(branch flux-harness/run-t), secretRef dropped"),
        "{}",
        rewrites[0].what
    );
    let url = server.url("127.0.0.1");
    let dest = root.path().join("clone");
    git_clone(&url, "flux-harness/run-t", &dest).await;
    let served = harness::yaml::parse_docs(gotk, &std::fs::read_to_string(dest.join(gotk)).unwrap()).unwrap();
    assert_eq!(served[0].value["spec"]["url"], url.as_str());
    assert_eq!(served[0].value["spec"]["ref"], serde_json::json!({"branch": "flux-harness/run-t"}));
    assert!(served[0].value["spec"].get("secretRef").is_none());
    assert_eq!(served[1].value["kind"], "Kustomization", "the entry Kustomization is kept");
    assert_eq!(served[1].value["spec"]["path"], "./clusters/staging");
    assert_eq!(std::fs::read_to_string(example.join(gotk)).unwrap(), before, "the user's file is untouched");
    // Every other file is served as it is in the tree.
    let infra = "clusters/staging/infrastructure.yaml";
    assert_eq!(std::fs::read(dest.join(infra)).unwrap(), std::fs::read(example.join(infra)).unwrap());
}

/// A real `git clone` of a branch of the harness's git server (off the async runtime: the
/// server answers on it).
async fn git_clone(url: &str, branch: &str, dest: &Path) {
    let (url, branch, d) = (url.to_string(), branch.to_string(), dest.to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("git")
            .args(["clone", "--quiet", "--branch", &branch, &url, d.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "git clone: {}", String::from_utf8_lossy(&out.stderr));
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
    let server = harness::e2e::git::start(
        user.path(),
        &root.path().join("git"),
        "run",
        format!("{gateway}:0").parse().unwrap(),
        &[],
        &|_| Ok(vec![]),
    )
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

/// A kind cluster of the run's name already exists (kept by an earlier run): the harness
/// stops before creating anything, and its cleanup never deletes that cluster.
#[tokio::test]
async fn a_cluster_the_harness_did_not_create_is_never_taken_over_nor_deleted() {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    for prog in ["kind", "helm", "kubectl", "flux", "docker"] {
        let body = if prog == "kind" { "case \"$1\" in get) echo flux-harness-test;; esac\n" } else { "" };
        let p = bin.path().join(prog);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{prog} $*\" >> {}\n{body}exit 0\n", log.display())).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let art = tempfile::tempdir().unwrap();
    let req = request(common::example("envs-infra"), "staging", Provider::Kind, art.path());
    let old = std::env::var_os("PATH").unwrap_or_default();
    let new =
        std::env::join_paths(std::iter::once(bin.path().to_path_buf()).chain(std::env::split_paths(&old))).unwrap();
    unsafe { std::env::set_var("PATH", &new) };
    let e = run::run(&req, &quiet).await.unwrap_err();
    unsafe { std::env::set_var("PATH", old) };
    assert!(e.message.contains("a kind cluster named flux-harness-test already exists"), "{e}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.trim(), "kind get clusters", "nothing created, nothing deleted");
}

#[tokio::test]
async fn missing_programs_are_named_before_anything_runs() {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    // Only kubectl and git are there (git is needed for the snapshot).
    let p = bin.path().join("kubectl");
    std::fs::write(&p, format!("#!/bin/sh\necho \"kubectl $*\" >> {}\n", log.display())).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let git = std::process::Command::new("sh").args(["-c", "command -v git"]).output().unwrap();
    let git_dir = std::path::PathBuf::from(String::from_utf8_lossy(&git.stdout).trim()).parent().unwrap().to_path_buf();
    let art = tempfile::tempdir().unwrap();
    let req = request(common::example("envs-infra"), "staging", Provider::Kind, art.path());
    let old = std::env::var_os("PATH").unwrap_or_default();
    // git's directory may hold kind or helm on a developer's machine: a private copy of git only.
    let only = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(git_dir.join("git"), only.path().join("git")).unwrap();
    let path = std::env::join_paths([bin.path(), only.path()]).unwrap();
    unsafe { std::env::set_var("PATH", &path) };
    let e = run::run(&req, &quiet).await.unwrap_err();
    unsafe { std::env::set_var("PATH", old) };
    assert!(e.message.contains("needs docker, flux, kind on PATH"), "{e}");
    assert!(e.message.contains("nothing was run"), "{e}");
    assert!(!log.exists(), "nothing ran");
}

/// envs-infra brings no CNI: its kind and k3d clusters keep the provider's own, so pods
/// get a network; netcorp brings Cilium: the cluster has none and the plan pre-installs it.
#[test]
fn a_repo_without_a_cni_keeps_the_provider_s_default_one() {
    for kind in [Provider::Kind, Provider::K3d] {
        let envs = request(common::example("envs-infra"), "staging", kind, Path::new("/artifacts"));
        let model = harness::commands::load(&envs.plan).unwrap().model;
        let plan = harness::e2e::plan::render(&run::plan_for(&envs, &model, "http://x/repo.git").unwrap());
        assert!(plan.contains("default-cni.yaml") && plan.contains("the repo brings no CNI"), "{plan}");
        assert!(!plan.contains("helm upgrade --install cilium"), "{plan}");
        let netcorp = request(common::example("netcorp-infra"), "staging", kind, Path::new("/artifacts"));
        let model = harness::commands::load(&netcorp.plan).unwrap().model;
        let plan = harness::e2e::plan::render(&run::plan_for(&netcorp, &model, "http://x/repo.git").unwrap());
        assert!(!plan.contains("default-cni.yaml") && plan.contains("helm upgrade --install cilium"), "{plan}");
    }
    for f in ["kind-default-cni.yaml", "k3d-default-cni.yaml"] {
        let text = std::fs::read_to_string(common::project_root().join("kind-configs").join(f)).unwrap();
        let v = harness::yaml::parse_one(f, &text).unwrap().value;
        assert!(v["networking"]["disableDefaultCNI"].is_null(), "{f} keeps the default CNI");
        assert!(!text.contains("flannel-backend=none"), "{f}");
    }
}

/// The sim provider takes the path of a real cluster: the JSON report carries the commit
/// the git server served, the gotk-sync rewrite is reported, and an edit nobody committed
/// is what the simulated cluster bootstraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(have_git), ignore = "git is not installed: the sim provider serves the tree with it")]
async fn the_sim_provider_bootstraps_the_served_commit_uncommitted_edits_included() {
    let d = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("envs-infra"), d.path());
    sh(d.path(), &["init", "--quiet"]);
    sh(d.path(), &["add", "."]);
    sh(d.path(), &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "base"]);
    let art = tempfile::tempdir().unwrap();
    let r = run::run(&request(d.path().to_path_buf(), "staging", Provider::Sim, art.path()), &quiet).await.unwrap();
    assert!(r.passed, "{}", r.to_text());
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let rev = json["revision"].as_str().unwrap();
    let (branch, sha) = rev.split_once("@sha1:").unwrap();
    assert!(
        branch.starts_with("flux-harness/run-") && sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "{rev}"
    );
    assert!(json["rewritten"][0]["path"].as_str().unwrap().ends_with("flux-system/gotk-sync.yaml"), "{json}");
    assert!(!r.violations.iter().any(|v| v.kind == "source"), "the GitRepository still pulls from the harness");
    // An uncommitted edit: a new Kustomization that depends on the apps.
    let apps = d.path().join("infrastructure/clusters/staging/apps.yaml");
    let extra = "\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: smoke\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./infrastructure/clusters/staging/base\n  prune: true\n  dependsOn:\n    - name: apps-dev\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";
    std::fs::write(&apps, std::fs::read_to_string(&apps).unwrap() + extra).unwrap();
    let r2 = run::run(&request(d.path().to_path_buf(), "staging", Provider::Sim, art.path()), &quiet).await.unwrap();
    let smoke =
        r2.kustomizations.iter().find(|k| k.name == "smoke").expect("the uncommitted Kustomization is bootstrapped");
    assert_eq!(smoke.layer, Some(2));
    assert!(smoke.ready_at_seconds.is_some(), "{}", r2.to_text());
    assert_ne!(r2.revision, r.revision, "a new snapshot commit");
    assert_eq!(
        sh(d.path(), &["status", "--porcelain"]).trim(),
        "M infrastructure/clusters/staging/apps.yaml",
        "nothing else in the user's repo changed"
    );
}

/// With the rewrite off (the test-only switch), the served gotk-sync re-points the entry's
/// GitRepository at the repo's ssh remote, and source-controller fails on it as Flux does.
/// Runs in its own process under nextest, so the variable reaches no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(have_git), ignore = "git is not installed: the sim provider serves the tree with it")]
async fn without_the_rewrite_source_controller_fails_on_the_ssh_url() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("HARNESS_NO_REWRITE", "1") };
    let art = tempfile::tempdir().unwrap();
    let r = run::run(&request(common::example("netcorp-infra"), "staging", Provider::Sim, art.path()), &quiet)
        .await
        .unwrap();
    assert!(!r.passed);
    assert!(
        r.rewritten.iter().all(|w| w.what.starts_with("e2e profile")),
        "only the profile: {:?}",
        r.rewritten.iter().map(|w| &w.what).collect::<Vec<_>>()
    );
    let v = &r.violations[0];
    assert_eq!(v.kind, "source", "the cause comes first: {:?}", r.violations);
    assert!(v.message.contains("spec.url is 'ssh://git@git.netcorp.example/platform/infra.git'"), "{}", v.message);
    assert!(
        v.message.contains(
            "AuthenticationFailed: failed to get secret 'flux-system/flux-system': secrets \"flux-system\" not found"
        ),
        "{}",
        v.message
    );
}

/// On an existing cluster no Kustomization of the served tree prunes (the first reconcile
/// of the entry would otherwise turn pruning back on); kind keeps the tree as it is.
#[test]
fn on_an_existing_cluster_the_served_tree_does_not_prune() {
    let art = tempfile::tempdir().unwrap();
    let mut req = request(common::example("envs-infra"), "staging", Provider::Existing, art.path());
    req.context = Some("prod".into());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let out = std::cell::RefCell::new(vec![]);
    let files = harness::e2e::served::rewrites(&req, &model, "http://x/repo.git", "b", &out).unwrap();
    let infra =
        files.iter().find(|(p, _)| p == "infrastructure/clusters/staging/apps.yaml").expect("the Kustomizations' file");
    assert!(!infra.1.contains("prune: true") && infra.1.contains("prune: false"));
    let gotk = files.iter().find(|(p, _)| p.ends_with("gotk-sync.yaml")).unwrap();
    assert!(gotk.1.contains("url: http://x/repo.git") && !gotk.1.contains("prune: true"), "{}", gotk.1);
    assert!(out.borrow().iter().any(|r| r.what.contains("prune: false on Kustomization")));
    let kind = E2eRequest { provider: Provider::Kind, ..req };
    let files = harness::e2e::served::rewrites(&kind, &model, "http://x/repo.git", "b", &out).unwrap();
    assert!(!files.iter().any(|(p, _)| p.ends_with("apps.yaml")), "kind serves the Kustomizations as they are");
    assert!(!out.borrow().iter().any(|r| r.what.contains("prune")));
}

/// The run's artifacts inside the repo under test (a kubeconfig, saved objects) are never
/// committed to the served tree, and the copy is readable by its owner only.
#[test]
#[cfg_attr(not(have_git), ignore = "git is not installed: the served tree is a git commit")]
fn the_served_tree_leaves_out_the_run_s_artifacts() {
    let d = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("envs-infra"), d.path());
    std::fs::create_dir_all(d.path().join("target/e2e")).unwrap();
    std::fs::write(d.path().join("target/e2e/kubeconfig"), "token: canary-5f2a").unwrap();
    let root = tempfile::tempdir().unwrap();
    let served = root.path().join("served");
    harness::e2e::git::snapshot(d.path(), &served, "run", &["target/e2e".to_string()], &[]).unwrap();
    let files = sh(&served.join("repo.git"), &["ls-tree", "-r", "--name-only", "run"]);
    assert!(files.contains("infrastructure/clusters/staging/apps.yaml"), "{files}");
    assert!(!files.contains("target/e2e"), "{files}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&served).unwrap().permissions().mode() & 0o777, 0o700);
}

/// A run killed without cleaning up leaves its cluster and its record; the next run deletes
/// exactly the clusters dead runs recorded and did not keep, and nothing else.
#[test]
fn a_later_run_removes_only_the_clusters_dead_runs_recorded() {
    use harness::e2e::leftovers::{self, Record};
    let state = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("HARNESS_STATE_DIR", state.path()) };
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let me = std::process::id();
    for (name, pid, kept) in [
        ("flux-harness-dead", dead, false),
        ("flux-harness-kept", dead, true),
        ("flux-harness-alive", me, false),
        ("flux-harness-gone", dead, false),
    ] {
        let r = Record::new("kind", name, pid, kept);
        std::fs::write(state.path().join(format!("{name}.json")), serde_json::to_string(&r).unwrap()).unwrap();
    }
    let odd = |file: &str, r: Record| {
        std::fs::write(state.path().join(file), serde_json::to_string(&r).unwrap()).unwrap();
    };
    // A pid alive again as another process: the run that recorded it is gone.
    odd(
        "flux-harness-reused.json",
        Record { started: Some(1), ..Record::new("kind", "flux-harness-reused", me, false) },
    );
    // Another machine's (or container's) run: not this one's to judge.
    odd(
        "flux-harness-elsewhere.json",
        Record { host: "other/box".into(), ..Record::new("kind", "flux-harness-elsewhere", dead, false) },
    );
    // Planted or stray: a name that is not the harness's, a name that is not its file's.
    odd("prod.json", Record::new("kind", "prod", dead, false));
    odd("flux-harness-x.json", Record::new("kind", "flux-harness-alive", dead, false));
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    let script = format!(
        "#!/bin/sh\necho \"kind $*\" >> {}\nif [ \"$1 $2\" = \"get clusters\" ]; then printf 'flux-harness-alive\\nflux-harness-dead\\nflux-harness-kept\\nflux-harness-unrecorded\\nflux-harness-reused\\nflux-harness-elsewhere\\nprod\\n'; fi\n",
        log.display()
    );
    let kind = bin.path().join("kind");
    std::fs::write(&kind, script).unwrap();
    std::fs::set_permissions(&kind, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let prov = harness::e2e::provider::Kind {
        name: "flux-harness-now".into(),
        config: "unused".into(),
        kubeconfig: "unused".into(),
        repo_cni: false,
    };
    let said = with_path(bin.path(), || leftovers::sweep(&prov));
    let deletes: Vec<String> =
        std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("delete")).map(str::to_string).collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes[0].starts_with("kind delete cluster --name flux-harness-dead "), "{deletes:?}");
    assert!(deletes[1].starts_with("kind delete cluster --name flux-harness-reused "), "{deletes:?}");
    assert!(said.len() == 2 && said[0].contains("flux-harness-dead"), "{said:?}");
    let left: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        left,
        [
            "flux-harness-alive.json",
            "flux-harness-elsewhere.json",
            "flux-harness-kept.json",
            "flux-harness-x.json",
            "prod.json"
        ],
        "kept and living runs keep theirs; others' and odd records are left alone"
    );

    // The served trees of dead runs go too; a living run's stays.
    let tmp = tempfile::tempdir().unwrap();
    for d in [
        format!("flux-harness-1-2-{dead}-0"),
        format!("flux-harness-1-2-{dead}-0.fetched"),
        format!("flux-harness-1-2-{me}-0"),
        "flux-harness-notours".into(),
    ] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    assert_eq!(leftovers::sweep_scratch(tmp.path()), 2);
    assert!(tmp.path().join(format!("flux-harness-1-2-{me}-0")).exists());
    assert!(tmp.path().join("flux-harness-notours").exists());
}

/// On a cluster of the user's, `--install-flux` installs Flux only where none runs, and the
/// decryption Secret is created only where none exists, and then removed after the run.
#[test]
fn on_an_existing_cluster_flux_and_the_decryption_secret_are_added_only_when_absent() {
    for absent in [true, false] {
        let bin = tempfile::tempdir().unwrap();
        let log = bin.path().join("calls.log");
        // What `get --ignore-not-found -o name` prints: nothing when absent.
        let found = if absent { "" } else { "echo found/it;" };
        let script = format!(
            "#!/bin/sh\necho \"kubectl $*\" >> {}\ncase \"$*\" in *\" get secret \"*|*\" get crd \"*) {found} exit 0;; esac\nexit 0\n",
            log.display()
        );
        for prog in ["kubectl", "flux", "helm"] {
            let p = bin.path().join(prog);
            let body = if prog == "kubectl" {
                script.clone()
            } else {
                format!("#!/bin/sh\necho \"{prog} $*\" >> {}\n", log.display())
            };
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let art = tempfile::tempdir().unwrap();
        let mut req = request(common::example("netcorp-infra"), "staging", Provider::Existing, art.path());
        req.context = Some("prod".into());
        req.install_flux = true;
        let model = harness::commands::load(&req.plan).unwrap().model;
        let steps = run::plan_for(&req, &model, "http://10.0.0.1:8080/repo.git").unwrap();
        let plan = harness::e2e::plan::render(&steps);
        assert!(
            plan.contains("unless the cluster has one") && plan.contains("unless the cluster runs it already"),
            "{plan}"
        );
        with_path(bin.path(), || run::execute(&steps, false)).unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let created = calls.lines().any(|l| l.contains("create secret generic sops-age"));
        let deleted = calls.lines().any(|l| l.contains("delete secret sops-age"));
        let installed = calls.lines().any(|l| l.contains("gotk-components.yaml") || l.starts_with("flux install"));
        assert_eq!((created, deleted, installed), (absent, absent, absent), "absent: {absent}\n{calls}");
        assert!(!calls.contains("AGE-SECRET-KEY"), "the key is never on a command line");
    }
    // A check that cannot be answered (forbidden, unreachable) is not an absence: the run
    // stops before installing anything over what may be there.
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    let script = format!(
        "#!/bin/sh\necho \"kubectl $*\" >> {}\ncase \"$*\" in *\" get crd \"*) echo forbidden >&2; exit 1;; esac\nexit 0\n",
        log.display()
    );
    for prog in ["kubectl", "flux", "helm"] {
        let p = bin.path().join(prog);
        std::fs::write(
            &p,
            if prog == "kubectl" {
                script.clone()
            } else {
                format!("#!/bin/sh\necho \"{prog} $*\" >> {}\n", log.display())
            },
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let art = tempfile::tempdir().unwrap();
    let mut req = request(common::example("netcorp-infra"), "staging", Provider::Existing, art.path());
    req.context = Some("prod".into());
    req.install_flux = true;
    let model = harness::commands::load(&req.plan).unwrap().model;
    let steps = run::plan_for(&req, &model, "http://10.0.0.1:8080/repo.git").unwrap();
    let e = with_path(bin.path(), || run::execute(&steps, false)).unwrap_err();
    assert!(e.to_string().contains("while checking whether to install Flux"), "{e}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains("flux install") && !calls.contains("gotk-components"), "{calls}");
}

/// A decryption Secret in a namespace the repo creates itself: the namespace is made
/// first, or `kubectl create secret` fails before the entry is applied.
#[test]
fn a_tenant_decryption_secret_gets_its_namespace_first() {
    let repo = common::example("netcorp-infra");
    let mut req = request(repo, "staging", Provider::Kind, Path::new("/artifacts"));
    req.age_key = Some(common::example("netcorp-infra").join("test-keys/age.agekey"));
    let mut model = harness::commands::load(&req.plan).unwrap().model;
    let k =
        model.kustomizations.iter_mut().find(|k| k.spec.raw.pointer("/spec/decryption/secretRef").is_some()).unwrap();
    k.spec.namespace = "tenant-a".into();
    let plan = harness::e2e::plan::render(&run::plan_for(&req, &model, "http://x/repo.git").unwrap());
    let ns = plan.find("create namespace tenant-a").expect(&plan);
    let secret = plan.find("-n tenant-a create secret generic sops-age").expect(&plan);
    assert!(ns < secret, "{plan}");
}

/// The sim provider takes kind's plan without the steps that need a container runtime:
/// no cluster to create, no CNI to pre-install (netcorp brings Cilium), Flux installed and
/// the entry applied as on kind.
#[test]
fn the_sim_plan_is_kind_s_without_the_container_runtime() {
    let req = request(common::example("netcorp-infra"), "staging", Provider::Sim, Path::new("/artifacts"));
    let model = harness::commands::load(&req.plan).unwrap().model;
    let sim = harness::e2e::plan::render(&run::plan_for(&req, &model, "http://127.0.0.1:1/repo.git").unwrap());
    let kind_req = E2eRequest { provider: Provider::Kind, ..req };
    let kind = harness::e2e::plan::render(&run::plan_for(&kind_req, &model, "http://127.0.0.1:1/repo.git").unwrap());
    for step in ["install Flux", "wait for Flux's controllers", "sops-age decryption secret", "apply the cluster entry"]
    {
        assert!(sim.contains(step) && kind.contains(step), "{step}:\n{sim}");
    }
    for step in ["kind create", "helm upgrade --install cilium", "kind delete"] {
        assert!(!sim.contains(step) && kind.contains(step), "{step}:\n{sim}");
    }
}

/// A simulated cluster as a run starts it: its own namespaces, no Flux.
async fn empty_sim_cluster() -> (harness::apiserver::ServerHandle, kube::Client) {
    let server = harness::apiserver::start(0).await.unwrap();
    harness::apiserver::driver::boot(&server.shared);
    let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap()).unwrap();
    (server, client)
}

/// A repo that pins Flux (a committed gotk-components.yaml): the simulated cluster gets
/// that file's CRDs, RBAC, quota, policy and controllers through its API, as kind does, and
/// the bootstrap passes with Flux managing itself from the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_that_pins_flux_installs_its_own_components_on_the_sim() {
    use kube::api::{Api, ApiResource, DynamicObject};
    let repo = common::project_root().join("suites/fixtures/layouts/pinned-flux");
    let tmp = tempfile::tempdir().unwrap();
    let req = request(repo, "home", Provider::Sim, tmp.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let plan = run::plan_for(&req, &model, "http://127.0.0.1:1/repo.git").unwrap();
    assert!(harness::e2e::plan::render(&plan).contains("install Flux as the repo pins it (gotk-components.yaml)"));
    let (_server, client) = empty_sim_cluster().await;
    harness::e2e::inprocess::execute(&plan.before_entry, &client, &quiet).await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(&()),
    );
    let git = crds.get("gitrepositories.source.toolkit.fluxcd.io").await.unwrap();
    assert_eq!(
        git.metadata.labels.unwrap()["app.kubernetes.io/version"],
        "v2.4.0",
        "the repo's CRD, not the harness's"
    );
    let quota: Api<DynamicObject> = Api::namespaced_with(
        client,
        "flux-system",
        &ApiResource::erase::<k8s_openapi::api::core::v1::ResourceQuota>(&()),
    );
    assert!(quota.get("critical-pods-flux-system").await.is_ok());
    let r = run::run(&req, &quiet).await.unwrap();
    assert!(r.passed, "{}", r.to_text());
}

/// The simulated cluster starts without Flux: the entry cannot be applied before Flux's
/// CRDs are registered through the API, and after `flux install` (in-process) the API
/// server serves and validates Flux's kinds and the entry is stored as applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_cluster_gets_flux_and_the_entry_through_its_api() {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
    let tmp = tempfile::tempdir().unwrap();
    let req = request(common::example("envs-infra"), "staging", Provider::Sim, tmp.path());
    let model = harness::commands::load(&req.plan).unwrap().model;
    let plan = run::plan_for(&req, &model, "http://127.0.0.1:1/repo.git").unwrap();
    let (_server, client) = empty_sim_cluster().await;
    let exec = harness::e2e::inprocess::execute;
    let early = exec(&plan.entry, &client, &quiet).await.unwrap_err();
    assert!(early.to_string().contains("ensure CRDs are installed first"), "{early}");
    exec(&plan.before_entry, &client, &quiet).await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(&()),
    );
    let ks_crd = crds.get("kustomizations.kustomize.toolkit.fluxcd.io").await.unwrap();
    let conds = ks_crd.data["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["type"] == "Established" && c["status"] == "True"), "{conds:?}");
    assert!(
        ks_crd.data.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/dependsOn").is_some(),
        "the CRD carries Flux's spec schema"
    );
    exec(&plan.entry, &client, &quiet).await.unwrap();
    let ks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "flux-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
            "kustomizations",
        ),
    );
    let entry = ks.get("flux-system").await.unwrap();
    assert_eq!(entry.data["spec"]["path"], "./infrastructure/clusters/staging");
    // The API server validates what is applied against Flux's schema.
    let bad: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "bad", "namespace": "flux-system"},
        "spec": {"interval": "10m", "prune": true, "dependsOn": "apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}
    }))
    .unwrap();
    let refused = ks.create(&Default::default(), &bad).await.unwrap_err();
    assert!(refused.to_string().contains("dependsOn"), "{refused}");
    // Nothing is created in a namespace that does not exist.
    let elsewhere: Api<DynamicObject> =
        Api::namespaced_with(client, "nowhere", &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()));
    let cm: DynamicObject = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "nowhere"}}),
    )
    .unwrap();
    let e = elsewhere.create(&Default::default(), &cm).await.unwrap_err();
    assert!(e.to_string().contains("namespaces \"nowhere\" not found"), "{e}");
}

/// The kind provider of a run named `test` (only its commands are used, against fakes).
fn test_kind(repo_cni: bool) -> harness::e2e::provider::Kind {
    harness::e2e::provider::Kind {
        name: "flux-harness-test".into(),
        config: "unused".into(),
        kubeconfig: "/tmp/kc".into(),
        repo_cni,
    }
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// cni-chaining on a real cluster reads each node's /etc/cni/net.d (fake kind and docker
/// stand in for the nodes): a chained node passes, a renamed configuration fails, and the
/// Cilium agents are restarted through kubectl before the second read.
#[test]
fn the_live_cni_check_reads_the_nodes_and_restarts_cilium() {
    let kind = test_kind(true);
    for (listing, passes) in [
        ("05-cilium.conflist\\nZZZ-linkerd-cni-kubeconfig", true),
        ("05-cilium.conflist\\nZZZ-linkerd-cni-kubeconfig.cilium_bak", false),
    ] {
        let bin = tempfile::tempdir().unwrap();
        let log = bin.path().join("calls.log");
        script(bin.path(), "kind", &format!("echo \"kind $*\" >> {}\necho n1; echo n2\n", log.display()));
        let conf = r#"{"plugins":[{"type":"cilium-cni"},{"type":"linkerd-cni"}]}"#;
        script(
            bin.path(),
            "docker",
            &format!("echo \"docker $*\" >> {}\nprintf '{listing}\\n---flux-harness---\\n{conf}\\n'\n", log.display()),
        );
        script(bin.path(), "kubectl", &format!("echo \"kubectl $*\" >> {}\n", log.display()));
        let checks = with_path(bin.path(), || harness::e2e::live::cni_checks(&kind, true));
        assert_eq!(checks.len(), 2, "{checks:?}");
        for c in &checks {
            assert_eq!(c.status == harness::suite::Status::Pass, passes, "{c:?}");
        }
        if !passes {
            assert!(checks[0].message.contains("cilium_bak"), "{}", checks[0].message);
        }
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(calls.contains("docker exec n2 sh -c cd /etc/cni/net.d"), "{calls}");
        let restart = calls.find("rollout restart daemonset/cilium").expect(&calls);
        assert!(calls[..restart].matches("docker exec").count() == 2, "read before the restart:\n{calls}");
    }
}

/// namespace-isolation on a real cluster: a server pod per namespace, a client pod per
/// namespace trying every server and DNS; a pair the policies close but the probe finds
/// open fails, naming it; the probe pods are deleted after.
#[test]
fn the_live_probe_compares_pods_with_the_policies_and_cleans_up() {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    // Pod addresses by namespace; from every client, everything answers.
    script(
        bin.path(),
        "kubectl",
        &format!(
            "echo \"kubectl $*\" >> {}\ncase \"$*\" in *podIP*) case \"$*\" in *\" dev \"*) echo 10.0.0.1;; *) echo 10.0.0.2;; esac;; *\" logs pod/flux-harness-probe-client\"*) echo 'dev open'; echo 'prod open'; echo 'dns open';; esac\n",
            log.display()
        ),
    );
    let kind = test_kind(false);
    let labels: Vec<String> = ["dev", "prod", "dns"].map(String::from).to_vec();
    let namespaces: Vec<String> = ["dev", "prod", "kube-system"].map(String::from).to_vec();
    let expected = vec![vec![true, false, true], vec![false, true, true], vec![false, false, true]];
    let check = with_path(bin.path(), || harness::e2e::live::probe(&kind, &labels, &namespaces, &expected));
    assert_eq!(check.status, harness::suite::Status::Fail, "{check:?}");
    assert!(
        check.message.contains("dev → prod: the policies say closed, the probe found it open"),
        "{}",
        check.message
    );
    assert!(check.message.contains("prod → dev"), "{}", check.message);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains("-n kube-system run"), "no probe server in DNS's namespace:\n{calls}");
    for ns in ["dev", "prod"] {
        assert!(calls.contains(&format!("-n {ns} run flux-harness-probe --image busybox:1.36")), "{calls}");
        assert!(calls.contains(&format!("-n {ns} delete pod flux-harness-probe flux-harness-probe-client")), "{calls}");
    }
    assert!(calls.contains("runAsNonRoot"), "the probe pods pass restricted Pod Security");
    assert!(!calls.contains(" -i "), "the client is not attached: its answers are read from its log");
    let first_delete = calls.find("delete pod flux-harness-probe").unwrap();
    assert!(first_delete < calls.find("run flux-harness-probe ").unwrap(), "a killed run's probe pods go first");
    let all_open = vec![vec![true, true, true], vec![true, true, true], vec![false, false, true]];
    let check = with_path(bin.path(), || harness::e2e::live::probe(&kind, &labels, &namespaces, &all_open));
    assert_eq!(check.status, harness::suite::Status::Pass, "{check:?}");
}

/// webhook-bootstrap on a real cluster: the webhook's Service and Deployments are found from
/// the cluster's webhook configuration, scaled to 0 while every Kustomization reconciles,
/// scaled back to their replicas; pods that do not come back fail the check (and the
/// Deployments are scaled back all the same).
#[test]
fn the_live_webhook_check_takes_the_pods_down_and_brings_them_back() {
    let kind = test_kind(false);
    let hooks = vec![
        harness::e2e::live::LiveHook { name: "validate.kyverno.svc-fail".into(), self_blocks: false },
        harness::e2e::live::LiveHook { name: "validate.gatekeeper.sh".into(), self_blocks: true },
    ];
    let ks = vec![("flux-system".to_string(), "apps".to_string())];
    for comes_back in [true, false] {
        let bin = tempfile::tempdir().unwrap();
        let log = bin.path().join("calls.log");
        let status = if comes_back { "exit 0" } else { "echo 'timed out' >&2; exit 1" };
        script(
            bin.path(),
            "kubectl",
            &format!(
                r#"echo "kubectl $*" >> {}
case "$*" in
  *webhookconfigurations*) echo '{{"items":[{{"webhooks":[{{"name":"validate.kyverno.svc-fail","clientConfig":{{"service":{{"namespace":"kyverno","name":"kyverno-svc"}}}}}}]}}]}}';;
  *"get service kyverno-svc"*) echo '{{"spec":{{"selector":{{"app":"kyverno"}}}}}}';;
  *"get deployments"*) echo '{{"items":[{{"metadata":{{"name":"kyverno-admission-controller"}},"spec":{{"replicas":3,"template":{{"metadata":{{"labels":{{"app":"kyverno"}}}}}}}}}},{{"metadata":{{"name":"other","labels":{{"app":"kyverno"}}}},"spec":{{"replicas":1,"template":{{"metadata":{{"labels":{{"app":"other"}}}}}}}}}}]}}';;
  *"rollout status"*) {status};;
esac
"#,
                log.display()
            ),
        );
        let checks = with_path(bin.path(), || {
            harness::e2e::live::webhook_checks(&kind, &hooks, &ks, std::time::Duration::from_millis(10), "test")
        });
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[1].status, harness::suite::Status::Skip, "a self-blocking webhook is not taken down");
        assert_eq!(checks[0].status == harness::suite::Status::Pass, comes_back, "{:?}", checks[0]);
        let calls = std::fs::read_to_string(&log).unwrap();
        let at = |n: &str| calls.find(n).unwrap_or_else(|| panic!("{n}:\n{calls}"));
        assert!(at("--replicas=0") < at("requestedAt=flux-harness-test-down-0"), "{calls}");
        assert!(at("requestedAt=flux-harness-test-down-0") < at("--replicas=3"), "{calls}");
        assert!(!calls.contains("deployment/other"), "matched on the pod template, not the Deployment's labels");
        assert!(!calls.contains("gatekeeper"), "{calls}");
        if comes_back {
            assert!(
                calls.contains("-n flux-system wait kustomization.kustomize.toolkit.fluxcd.io/apps --for=jsonpath={.status.lastHandledReconcileAt}=flux-harness-test-up-0"),
                "{calls}"
            );
        } else {
            assert!(checks[0].message.contains("did not come back"), "{}", checks[0].message);
        }
    }
}

/// Interrupted during a webhook's window (Ctrl-C, SIGTERM: `exec::stop`), the live check
/// does not wait the window out nor take the next webhook down: its pods are scaled back
/// and it returns, so the run's cleanup comes next.
#[test]
fn an_interrupted_live_webhook_check_scales_back_and_stops() {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    script(
        bin.path(),
        "kubectl",
        &format!(
            r#"echo "kubectl $*" >> {}
case "$*" in
  *webhookconfigurations*) echo '{{"items":[{{"webhooks":[{{"name":"w","clientConfig":{{"service":{{"namespace":"ns","name":"svc"}}}}}}]}}]}}';;
  *"get service svc"*) echo '{{"spec":{{"selector":{{"app":"w"}}}}}}';;
  *"get deployments"*) echo '{{"items":[{{"metadata":{{"name":"d"}},"spec":{{"replicas":2,"template":{{"metadata":{{"labels":{{"app":"w"}}}}}}}}}}]}}';;
esac
"#,
            log.display()
        ),
    );
    let kind = test_kind(false);
    let hooks: Vec<harness::e2e::live::LiveHook> =
        (0..2).map(|_| harness::e2e::live::LiveHook { name: "w".into(), self_blocks: false }).collect();
    let ks = vec![("flux-system".to_string(), "apps".to_string())];
    let path = bin.path().to_path_buf();
    let checks = with_path(&path, || {
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                harness::e2e::live::webhook_checks(&kind, &hooks, &ks, std::time::Duration::from_secs(600), "t")
            });
            // Once the first webhook is down, the run is interrupted.
            while !std::fs::read_to_string(&log).unwrap_or_default().contains("requestedAt=flux-harness-t-down-0") {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            harness::exec::stop();
            t.join().unwrap()
        })
    });
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.matches("--replicas=0").count(), 1, "the second webhook is left alone:\n{calls}");
    assert!(calls.contains("scale deployment/d --replicas=2"), "scaled back:\n{calls}");
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].status, harness::suite::Status::Fail, "an interrupted check is no pass: {checks:?}");
    assert!(
        !calls.contains("rollout status"),
        "nothing is waited for once interrupted:
{calls}"
    );
}
