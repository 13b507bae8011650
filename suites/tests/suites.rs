//! The four suites a user runs on a repo (`cargo xtask suite`), over the two examples: they
//! pass against the reviewed snapshots committed under each example's
//! `.flux-harness/snapshots/`, and each fails on a copy of an example broken for it. The
//! reports people read: JUnit parsed, the HTML timeline rendered in headless Chromium.

mod common;

use harness::e2e::run::Provider;
use harness::e2e::suites::{SuiteRequest, run as run_suites};
use harness::suite::report::SuiteReport;
use harness::suite::{Status, SuiteName};
use std::path::{Path, PathBuf};

fn request(repo: PathBuf, suites: &[SuiteName], artifacts: &Path) -> SuiteRequest {
    SuiteRequest {
        e2e: common::e2e_request(repo, "staging", Provider::Sim, artifacts),
        suites: suites.to_vec(),
        snapshots: None,
        update_snapshots: false,
        only: None,
    }
}

async fn run(req: &SuiteRequest) -> SuiteReport {
    run_suites(req, &|_| {}).await.expect("the suites run")
}

fn failed(r: &SuiteReport, suite: SuiteName) -> Vec<&harness::suite::Check> {
    r.suites.iter().filter(|s| s.suite == suite).flat_map(|s| s.failed_checks()).collect()
}

/// A copy of an example, changed by `edit` (path, from, to).
fn broken(example: &str, edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example(example), d.path());
    for (path, from, to) in edits {
        let p = d.path().join(path);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{path} has no `{from}`");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
    d
}

#[tokio::test]
async fn the_examples_pass_every_suite_and_match_their_reviewed_snapshots() {
    for (example, entry) in [("netcorp-infra", "clusters-staging"), ("envs-infra", "infrastructure-clusters-staging")] {
        let art = tempfile::tempdir().unwrap();
        let report = run(&request(common::example(example), &[], art.path())).await;
        assert_eq!(report.suites.len(), 4);
        for s in &report.suites {
            let bad: Vec<String> = s.failed_checks().map(|c| format!("{}: {}", c.id, c.message)).collect();
            assert!(bad.is_empty(), "{example} {}: {bad:#?}", s.suite.id());
            // The same files, through insta, so `cargo insta review` shows a change.
            if let Some(snap) = &s.snapshot {
                let mut settings = insta::Settings::clone_current();
                settings.set_snapshot_path(common::example(example).join(".flux-harness/snapshots").join(entry));
                settings.set_prepend_module_to_snapshot(false);
                settings.bind(|| insta::assert_snapshot!(s.suite.id(), snap));
            }
        }
        let order = &report.suites[0];
        assert!(order.checks.iter().any(|c| c.id == "snapshot" && c.status == Status::Pass));
        assert!(order.checks.iter().any(|c| c.id == "idempotent" && c.status == Status::Pass));
    }
}

#[tokio::test]
async fn a_webhook_that_refuses_its_own_pods_is_a_deadlock_with_its_chain() {
    // Kyverno registers its webhook once its pods run, so the first install passes; with
    // its own namespace no longer excluded, pods taken down mid-bootstrap never come back.
    let d = broken(
        "netcorp-infra",
        &[(
            "namespaces/kyverno/helm-release.yaml",
            "  values:\n",
            "  values:\n    config:\n      excludeKyvernoNamespace: false\n",
        )],
    );
    let art = tempfile::tempdir().unwrap();
    let mut req = request(d.path().to_path_buf(), &[SuiteName::WebhookBootstrap], art.path());
    req.update_snapshots = true;
    let report = run(&req).await;
    let bad = failed(&report, SuiteName::WebhookBootstrap);
    let ids: Vec<&str> = bad.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["down:validate.kyverno.svc-fail"], "the bootstrap and every other webhook recover");
    let m = &bad[0].message;
    assert!(m.starts_with("webhook validate.kyverno.svc-fail intercepts Pods in its own namespace kyverno"), "{m}");
    // The chain is the faulted run's own deadlock, not a sentence made up for the check.
    assert!(
        m.contains("deadlock: webhook validate.kyverno.svc-fail has its new pods refused by webhook validate.kyverno.svc-fail: nothing in this loop can progress"),
        "the chain: {m}"
    );

    // Gatekeeper fail-closed without its namespace exempt: its chart registers the webhook
    // at install, before its pods serve, so the first install itself deadlocks.
    let d = broken(
        "netcorp-infra",
        &[
            (
                "namespaces/gatekeeper-system/helm-release.yaml",
                "validatingWebhookFailurePolicy: Ignore",
                "validatingWebhookFailurePolicy: Fail",
            ),
            (
                "namespaces/gatekeeper-system/namespace.yaml",
                "    admission.gatekeeper.sh/ignore: no-self-managing\n",
                "",
            ),
        ],
    );
    let mut req = request(d.path().to_path_buf(), &[SuiteName::WebhookBootstrap], art.path());
    req.update_snapshots = true;
    let report = run(&req).await;
    let bad = failed(&report, SuiteName::WebhookBootstrap);
    assert_eq!(bad.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["bootstrap"]);
    assert!(
        bad[0].message.contains(
            "deadlock: HelmRelease gatekeeper-system/gatekeeper is refused by webhook validation.gatekeeper.sh"
        ),
        "{}",
        bad[0].message
    );
    let skipped = report.suites[0].checks.iter().filter(|c| c.status == Status::Skip).count();
    assert!(skipped >= 5, "pods are not taken down in a bootstrap that does not converge");
}

#[tokio::test]
async fn an_exclusive_cilium_is_caught_on_every_node() {
    let d = broken("netcorp-infra", &[("namespaces/cilium/helm-release.yaml", "exclusive: false", "exclusive: true")]);
    let art = tempfile::tempdir().unwrap();
    let report = run(&request(d.path().to_path_buf(), &[SuiteName::CniChaining], art.path())).await;
    let bad = failed(&report, SuiteName::CniChaining);
    let ids: Vec<&str> = bad.iter().map(|c| c.id.as_str()).collect();
    assert!(ids.contains(&"not-exclusive") && ids.contains(&"chained-after-bootstrap"), "{ids:?}");
    let nodes = bad.iter().find(|c| c.id == "chained-after-bootstrap").unwrap();
    assert!(nodes.message.contains("ZZZ-linkerd-cni-kubeconfig.cilium_bak"), "{}", nodes.message);
    assert_eq!(nodes.message.matches("linkerd-cni is not its last plugin").count(), 3, "{}", nodes.message);
    // The table shows what the nodes hold.
    let table = &report.suites[0].table;
    assert!(table.rows.iter().all(|r| !r[3].contains("linkerd-cni")), "{table:?}");
}

/// envs-infra with two policies added that open dev → prod (and nothing else).
fn dev_opened_to_prod() -> tempfile::TempDir {
    let opened = "\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-dev-egress\n  namespace: dev\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - {}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-from-dev\n  namespace: prod\nspec:\n  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              name: dev\n";
    let d = broken("envs-infra", &[]);
    let p = d.path().join("infrastructure/clusters/staging/base/network-policies.yaml");
    let text = std::fs::read_to_string(&p).unwrap() + opened;
    std::fs::write(&p, text).unwrap();
    d
}

#[tokio::test]
async fn a_policy_that_opens_dev_to_prod_fails_isolation() {
    let d = dev_opened_to_prod();
    let art = tempfile::tempdir().unwrap();
    let report = run(&request(d.path().to_path_buf(), &[SuiteName::NamespaceIsolation], art.path())).await;
    let bad = failed(&report, SuiteName::NamespaceIsolation);
    let across = bad.iter().find(|c| c.id == "deny-across").expect("deny-across fails");
    assert_eq!(across.message, "dev → prod is allow", "only that pair opened");
    let snap = bad.iter().find(|c| c.id == "snapshot").expect("the matrix differs from the reviewed one");
    assert!(snap.message.contains("-dev          allow          deny"), "{}", snap.message);
    assert!(snap.message.contains("+dev          allow          allow"), "{}", snap.message);
}

#[tokio::test]
async fn the_junit_parses_and_carries_each_failure() {
    let d = broken("netcorp-infra", &[("namespaces/cilium/helm-release.yaml", "exclusive: false", "exclusive: true")]);
    let art = tempfile::tempdir().unwrap();
    let mut req = request(d.path().to_path_buf(), &[SuiteName::BootstrapOrder, SuiteName::CniChaining], art.path());
    // Linkerd never gets Ready here: a short timeout keeps the run short.
    req.e2e.timeout_seconds = 900.0;
    let report = run(&req).await;
    let xml = report.to_junit();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is well-formed XML");
    let cases: Vec<roxmltree::Node> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    let e2e = report.e2e.as_ref().unwrap();
    let checks: usize = report.suites.iter().map(|s| s.checks.len()).sum();
    assert_eq!(cases.len(), checks + e2e.kustomizations.len() + e2e.helm_releases.len());
    assert!(cases.iter().any(|c| c.attribute("classname") == Some("bootstrap-order.helmrelease")
        && c.attribute("name") == Some("kube-system/cilium")));
    let failure = cases
        .iter()
        .find(|c| c.attribute("name").is_some_and(|n| n.starts_with("not-exclusive")))
        .and_then(|c| c.children().find(|n| n.has_tag_name("failure")))
        .expect("the failed check has a failure element");
    assert!(failure.text().unwrap_or("").contains("owns the CNI configuration exclusively"));
    // bootstrap-order fails on it too: linkerd never gets Ready, and plan says why.
    let order: Vec<&str> = failed(&report, SuiteName::BootstrapOrder).iter().map(|c| c.id.as_str()).collect();
    assert!(order.contains(&"plan") && order.contains(&"all-ready"), "{order:?}");
    let unit = doc.descendants().find(|n| n.has_tag_name("property") && n.attribute("name") == Some("time_unit"));
    assert_eq!(unit.and_then(|n| n.attribute("value")), Some("virtual seconds"));
}

#[tokio::test]
#[cfg_attr(not(have_chromium), ignore = "chromium is not installed: it renders the HTML timeline")]
async fn the_html_timeline_renders_in_headless_chromium() {
    let art = common::project_root().join("target/test-artifacts/timeline");
    std::fs::create_dir_all(&art).unwrap();
    let mut report = run(&request(common::example("netcorp-infra"), &[SuiteName::BootstrapOrder], &art)).await;
    harness::e2e::suites::write_artifacts(&mut report, &art).unwrap();
    let html = art.join("timeline.html");
    let e2e = report.e2e.as_ref().unwrap();
    let want = e2e.kustomizations.len() + e2e.helm_releases.len();
    // Set by the build script when it found a browser; the test is ignored otherwise.
    let chromium = option_env!("HARNESS_CHROMIUM").unwrap_or("chromium");
    let common_args = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1250,1900"];
    let url = format!("file://{}", html.display());
    let dom = std::process::Command::new(chromium).args(common_args).arg("--dump-dom").arg(&url).output().unwrap();
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    // What the browser built, not the file: a broken document would lose elements.
    assert_eq!(dom.matches("class=\"bar observed").count(), want, "one bar per Kustomization and HelmRelease");
    assert_eq!(dom.matches("data-kind=\"HelmRelease\"").count(), e2e.helm_releases.len());
    assert!(dom.matches("class=\"layer\"").count() >= 5, "grouped by layer");
    assert!(dom.contains("PASSED") && dom.contains("predicted Ready"));
    let png = art.join("timeline.png");
    let _ = std::fs::remove_file(&png);
    let shot = std::process::Command::new(chromium)
        .args(common_args)
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "a rendered timeline, not a blank page ({size} bytes): {}", png.display());
}

#[tokio::test]
async fn rerun_failed_runs_only_what_failed() {
    let d = dev_opened_to_prod();
    let art = tempfile::tempdir().unwrap();
    let first = run(&request(d.path().to_path_buf(), &[], art.path())).await;
    assert!(first.e2e.is_some());
    let failed = first.failed();
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), vec![SuiteName::NamespaceIsolation], "{failed:?}");
    let mut req = request(d.path().to_path_buf(), &[], art.path());
    req.only = Some(failed.clone());
    let again = run(&req).await;
    assert_eq!(again.suites.len(), 1);
    assert!(again.e2e.is_none(), "the bootstrap passed: it is not run again");
    let ids: Vec<&str> = again.suites[0].checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, failed[&SuiteName::NamespaceIsolation].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!again.passed);
}

/// The matrix of an in-memory repo with environments dev and prod (labelled
/// `environment: <name>`, `name: <name>`) and the given policies.
fn matrix(policies: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let env = |n: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n  labels:\n    name: {n}\n    environment: {n}\n"
        )
    };
    let (model, _) = common::repo::Repo::new()
        .ks("base", &[], "")
        .obj("base", "ns.yaml", &format!("{}---\n{}", env("dev"), env("prod")))
        .obj("base", "kustomization.yaml", "resources: [ns.yaml, policies.yaml]\n")
        .obj("base", "policies.yaml", policies)
        .load();
    let cfg = harness::config::Isolation::default();
    let envs = harness::suite::isolation::environments(&model, &cfg);
    assert_eq!(envs, ["dev", "prod"]);
    let eps = harness::suite::isolation::endpoints(&model, &cfg, &envs);
    let (m, _) = harness::suite::isolation::matrix(&model, &eps);
    (m.endpoints, m.cells)
}

fn cell(m: &(Vec<String>, Vec<Vec<String>>), from: &str, to: &str) -> String {
    let i = m.0.iter().position(|e| e == from).unwrap();
    let j = m.0.iter().position(|e| e == to).unwrap();
    m.1[i][j].clone()
}

#[test]
fn the_isolation_matrix_follows_kubernetes_and_cilium_semantics() {
    // No policy: everything open.
    let m = matrix("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: none\n  namespace: dev\n");
    assert_eq!(cell(&m, "dev", "prod"), "allow");
    // A Cilium rule with only ports applies to every peer.
    let l4 = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: l4\n  namespace: prod\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports:\n            - port: \"8080\"\n";
    let m = matrix(l4);
    assert_eq!(cell(&m, "dev", "prod"), "8080/SCTP 8080/TCP 8080/UDP", "no protocol is ANY in Cilium");
    // Peers named by namespace labels are not pinned to the policy's namespace.
    let by_labels = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: from-dev\n  namespace: prod\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            k8s:io.cilium.k8s.namespace.labels.environment: dev\n";
    let m = matrix(by_labels);
    assert_eq!(cell(&m, "dev", "prod"), "allow");
    assert_eq!(cell(&m, "prod", "prod"), "deny", "ingress-isolated, and prod is not dev");
    // An endpointSelector naming another namespace still selects only the policy's own.
    let elsewhere = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: odd\n  namespace: prod\nspec:\n  endpointSelector:\n    matchLabels:\n      k8s:io.kubernetes.pod.namespace: dev\n  ingress: []\n";
    assert_eq!(cell(&matrix(elsewhere), "prod", "dev"), "allow", "dev is not selected by a prod policy");
    // Kubernetes: `egress: []` without policyTypes does not isolate egress.
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ingress-only\n  namespace: dev\nspec:\n  podSelector: {}\n  egress: []\n  ingress:\n    - from:\n        - podSelector: {}\n";
    let m = matrix(np);
    assert_eq!(cell(&m, "dev", "prod"), "allow");
    assert_eq!(cell(&m, "prod", "dev"), "deny");
    assert_eq!(cell(&m, "dev", "dev"), "allow");
    // Port ranges, and a deny of one port under an allow-all.
    let ranges = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: all-but-dns-udp\nspec:\n  endpointSelector: {}\n  egress:\n    - toEntities: [all]\n  egressDeny:\n    - toEndpoints:\n        - matchLabels:\n            k8s:k8s-app: kube-dns\n      toPorts:\n        - ports:\n            - port: \"53\"\n              protocol: UDP\n";
    let m = matrix(ranges);
    assert_eq!(cell(&m, "dev", "dns"), "53/TCP", "UDP is denied, TCP still open");
    assert_eq!(cell(&m, "dev", "prod"), "allow");
    let np_range = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: high\n  namespace: prod\nspec:\n  podSelector: {}\n  ingress:\n    - ports:\n        - port: 30000\n          endPort: 32767\n          protocol: TCP\n";
    assert_eq!(cell(&matrix(np_range), "dev", "prod"), "30000-32767/TCP");
    // A policy without a namespace is in `default`, not everywhere.
    let nons = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    assert_eq!(cell(&matrix(nons), "dev", "prod"), "allow");
}

#[test]
fn a_rerun_keeps_what_failed_before_and_whatever_fails_now() {
    use harness::suite::{Check, SuiteResult, Table};
    let mut r = SuiteResult {
        suite: SuiteName::WebhookBootstrap,
        checks: vec![
            Check::new("bootstrap", "b", Status::Pass, "fixed since".into()),
            Check::new("down:a", "a", Status::Pass, "recovers".into()),
            Check::new("down:b", "b", Status::Fail, "was skipped last time, fails now".into()),
        ],
        table: Table::default(),
        snapshot: None,
    };
    r.keep_rerun(&["bootstrap".to_string()]);
    let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["bootstrap", "down:b"]);
    assert!(!r.passed(), "a new failure is not hidden by the rerun filter");
}
