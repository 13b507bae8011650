//! The bootstrap simulator: the examples converge (Ready order reviewed as snapshots), and
//! every bootstrap mistake of the rules shows its real effect on the timeline.

mod common;

use common::repo::*;
use harness::commands::{PlanRequest, RendererChoice, simulate};
use harness::model::Entry;
use harness::sim::report::SimReport;
use harness::sim::{Fault, SimConfig};

fn example(name: &str, sim: SimConfig) -> SimReport {
    let req = PlanRequest {
        repo: common::example(name),
        entry: Some(Entry::Cluster("staging".into())),
        sources: vec![],
        renderer: RendererChoice::Native,
    };
    simulate(&req, sim).unwrap()
}

fn ready_view(r: &SimReport) -> serde_json::Value {
    serde_json::json!({
        "converged": r.converged,
        "total_seconds": r.total_seconds,
        "layers": r.layers,
        "critical_path": r.critical_path.iter().map(|c| format!("{} at {}s", c.name, c.at_seconds)).collect::<Vec<_>>(),
        "ready_order": r.ready_order.iter().map(|c| format!("{:>6}s {} {}", c.at_seconds, c.kind, c.name)).collect::<Vec<_>>(),
        "notes": r.notes,
    })
}

#[test]
fn netcorp_converges_in_this_order() {
    let r = example("netcorp-infra", SimConfig::default());
    assert!(r.converged, "{}", r.to_text());
    assert!(r.stuck.is_empty() && r.deadlock.is_none());
    insta::assert_json_snapshot!(ready_view(&r));
}

#[test]
fn envs_converges_in_this_order() {
    let r = example("envs-infra", SimConfig::default());
    assert!(r.converged, "{}", r.to_text());
    insta::assert_json_snapshot!(ready_view(&r));
}

#[test]
fn the_same_inputs_and_seed_give_the_identical_timeline() {
    let a = example("netcorp-infra", SimConfig::default()).to_json();
    let b = example("netcorp-infra", SimConfig::default()).to_json();
    assert_eq!(a, b);
    let other = example("netcorp-infra", SimConfig { seed: 7, ..Default::default() });
    assert!(other.converged);
}

#[test]
fn nothing_that_needs_pods_is_ready_before_the_cni() {
    let cold = example("netcorp-infra", SimConfig::default());
    let net = cold.timeline.iter().find(|t| t.reason == "NetworkReady").expect("network event").at_seconds;
    for hr in ["kyverno/kyverno", "cert-manager/cert-manager", "monitoring/kube-prometheus-stack"] {
        let at = cold.ready_order.iter().find(|r| r.name == hr).unwrap().at_seconds;
        assert!(at >= net, "{hr} Ready at {at}s before the network at {net}s");
    }
}

#[test]
fn a_preinstalled_cni_is_adopted_and_the_bootstrap_is_faster() {
    let repo = || {
        base()
            .ks("cilium", &[], "")
            .obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", ""))
            .ks("app", &["cilium"], "")
            .obj("app", "hr.yaml", &hr("podinfo", "default", "podinfo", ""))
    };
    let cold = repo().simulate(SimConfig::default()).unwrap();
    let warm = repo().simulate(SimConfig { cni_preinstalled: true, ..Default::default() }).unwrap();
    assert!(cold.converged && warm.converged);
    assert!(warm.total_seconds + 100.0 < cold.total_seconds, "{} vs {}", warm.total_seconds, cold.total_seconds);
}

#[test]
fn with_cilium_preinstalled_netcorp_bootstraps_without_a_failed_reconcile() {
    // Kyverno and Longhorn register their webhooks from their running pods, so no apply
    // meets them registered-but-not-serving; Gatekeeper's are fail-open in the example.
    let warm = example("netcorp-infra", SimConfig { cni_preinstalled: true, ..Default::default() });
    assert!(warm.converged);
    assert!(warm.failures.is_empty(), "{:#?}", warm.failures);
}

#[test]
fn a_fail_closed_gatekeeper_refuses_the_namespaces_created_while_it_installs() {
    // The example as it came, with Gatekeeper fail-closed: plan and simulate both say so.
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("netcorp-infra"), tmp.path());
    let hr = tmp.path().join("namespaces/gatekeeper-system/helm-release.yaml");
    let text = std::fs::read_to_string(&hr).unwrap().replace("Policy: Ignore", "Policy: Fail");
    std::fs::write(&hr, text).unwrap();
    let req = harness::commands::PlanRequest {
        repo: tmp.path().into(),
        entry: Some(harness::model::Entry::Cluster("staging".into())),
        sources: vec![],
        renderer: harness::commands::RendererChoice::Native,
    };
    let sim = harness::commands::simulate(&req, SimConfig::default()).unwrap();
    assert!(sim.converged, "a retry mends it");
    let f =
        sim.failures.iter().find(|f| f.message.contains("gatekeeper.sh\": failed to call webhook")).expect("the race");
    assert!(f.ready_at_seconds.unwrap() >= f.at_seconds + 300.0, "a retryInterval lost");
    let plan = harness::commands::plan(&req).unwrap();
    let race = plan
        .findings
        .iter()
        .find(|x| x.rule == "webhook-race" && x.kustomization.as_deref() == Some(f.name.as_str()))
        .expect("plan names the race");
    assert_eq!(race.severity, harness::findings::Severity::Error);
}

fn base() -> Repo {
    Repo::new().file("clusters/test/repos.yaml", &helm_repo("charts"))
}

const CERT: &str = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: web\n  namespace: default\nspec:\n  secretName: web-tls\n  issuerRef:\n    name: ca\n";

fn cert_manager(r: Repo, extra: &str) -> Repo {
    r.ks("cert-manager", &[], extra).obj("cert-manager", "ns.yaml", &ns("cert-manager")).obj(
        "cert-manager",
        "hr.yaml",
        &hr("cert-manager", "cert-manager", "cert-manager", "    crds:\n      enabled: true\n"),
    )
}

fn ready_at(r: &SimReport, name: &str) -> f64 {
    r.ready_order
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("{name} never Ready:\n{}", r.to_text()))
        .at_seconds
}

#[test]
fn a_missing_crd_dependency_fails_with_no_matches_and_costs_a_retry_interval() {
    let missing = cert_manager(base(), "")
        .ks("app", &[], "")
        .obj("app", "cert.yaml", CERT)
        .simulate(SimConfig::default())
        .unwrap();
    let fail = missing
        .timeline
        .iter()
        .find(|t| t.name == "flux-system/app" && t.reason == "ReconciliationFailed")
        .unwrap_or_else(|| panic!("no failure:\n{}", missing.to_text()));
    assert_eq!(
        fail.message,
        "Certificate/default/web dry-run failed: no matches for kind \"Certificate\" in version \"cert-manager.io/v1\""
    );
    assert!(missing.converged, "it converges once the CRD exists");
    // retryInterval defaults to the interval (5m): the next attempt is 300 s later.
    assert!(ready_at(&missing, "app") >= fail.at_seconds + 300.0, "{}", missing.to_text());
    let fixed = cert_manager(base(), "")
        .ks("app", &["cert-manager"], "")
        .obj("app", "cert.yaml", CERT)
        .simulate(SimConfig::default())
        .unwrap();
    assert!(!fixed.timeline.iter().any(|t| t.reason == "ReconciliationFailed"));
    assert!(
        ready_at(&fixed, "app") + 200.0 < ready_at(&missing, "app"),
        "the dependency saves most of a retryInterval"
    );
}

#[test]
fn a_provider_without_wait_races_its_dependents() {
    let r = cert_manager(base(), "  wait: false\n")
        .ks("app", &["cert-manager"], "")
        .obj("app", "cert.yaml", CERT)
        .simulate(SimConfig::default())
        .unwrap();
    // cert-manager is Ready as soon as it applied the HelmRelease object ...
    assert!(ready_at(&r, "cert-manager") < ready_at(&r, "cert-manager/cert-manager"));
    // ... so app applies before cert-manager can take it (its CRDs missing, or its
    // fail-closed webhook not serving yet), fails, and waits a retryInterval.
    let fail = r
        .timeline
        .iter()
        .find(|t| t.name == "flux-system/app" && t.reason == "ReconciliationFailed")
        .expect("the race");
    assert!(
        fail.message.contains("no matches for kind \"Certificate\"")
            || fail.message.contains("failed calling webhook \"webhook.cert-manager.io\""),
        "{}",
        fail.message
    );
    assert!(ready_at(&r, "app") >= fail.at_seconds + 300.0);
}

#[test]
fn a_depends_on_cycle_stalls_forever() {
    let r = base()
        .ks("a", &["b"], "")
        .obj("a", "ns.yaml", &ns("a"))
        .ks("b", &["a"], "")
        .obj("b", "ns.yaml", &ns("b"))
        .ks("c", &["a"], "")
        .obj("c", "ns.yaml", &ns("c"))
        .simulate(SimConfig::default())
        .unwrap();
    assert!(!r.converged);
    let d = r.deadlock.as_ref().expect("a deadlock");
    assert_eq!(d.cycle, vec!["Kustomization flux-system/a", "Kustomization flux-system/b"]);
    assert!(d.explanation.contains("Kustomization flux-system/a waits for Kustomization flux-system/b; Kustomization flux-system/b waits for Kustomization flux-system/a"), "{}", d.explanation);
    let c = r.stuck.iter().find(|s| s.name == "c").unwrap();
    assert_eq!(c.reason, "DependencyNotReady");
    assert!(
        c.because.contains("waits for Kustomization flux-system/a") && c.because.contains("(a cycle)"),
        "{}",
        c.because
    );
    assert!(r.to_text().contains("DEADLOCK"));
}

#[test]
fn a_webhook_that_blocks_its_own_pods_deadlocks() {
    let values =
        "    validatingWebhookFailurePolicy: Fail\n    postInstall:\n      labelNamespace:\n        enabled: false\n";
    let r = base()
        .ks("gatekeeper", &[], "")
        .obj("gatekeeper", "ns.yaml", &ns("gatekeeper-system"))
        .obj("gatekeeper", "hr.yaml", &hr("gatekeeper", "gatekeeper-system", "gatekeeper", values))
        .simulate(SimConfig::default())
        .unwrap();
    assert!(!r.converged);
    let d = r.deadlock.as_ref().unwrap_or_else(|| panic!("no deadlock:\n{}", r.to_text()));
    assert!(
        d.cycle.contains(&"HelmRelease gatekeeper-system/gatekeeper".to_string())
            && d.cycle.contains(&"webhook validation.gatekeeper.sh".to_string()),
        "{d:?}"
    );
    assert!(
        d.explanation.contains("is refused by webhook validation.gatekeeper.sh")
            && d.explanation.contains("has no endpoint until the pods of HelmRelease gatekeeper-system/gatekeeper"),
        "{}",
        d.explanation
    );
    let stuck = r.stuck.iter().find(|s| s.name == "gatekeeper-system/gatekeeper").unwrap();
    assert!(stuck.reason.contains("Stalled"), "retries 3 are used up: {stuck:?}");
    assert_eq!(
        r.timeline.iter().filter(|t| t.name == "gatekeeper-system/gatekeeper" && t.reason == "InstallFailed").count(),
        4
    );
    // Labelled as Gatekeeper wants: it converges.
    let ok = base()
        .ks("gatekeeper", &[], "")
        .obj(
            "gatekeeper",
            "ns.yaml",
            &(ns("gatekeeper-system") + "    admission.gatekeeper.sh/ignore: no-self-managing\n"),
        )
        .obj("gatekeeper", "hr.yaml", &hr("gatekeeper", "gatekeeper-system", "gatekeeper", values))
        .simulate(SimConfig::default())
        .unwrap();
    assert!(ok.converged, "{}", ok.to_text());
}

fn mesh(cilium_values: &str) -> SimReport {
    base()
        .ks("cilium", &[], "")
        .obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", cilium_values))
        .ks("linkerd", &["cilium"], "")
        .obj("linkerd", "ns.yaml", &ns("linkerd"))
        .obj("linkerd", "ns-cni.yaml", &ns("linkerd-cni"))
        .obj(
            "linkerd",
            "cni.yaml",
            &hr("linkerd2-cni", "linkerd-cni", "linkerd2-cni", "    priorityClassName: system-node-critical\n"),
        )
        .obj(
            "linkerd",
            "cp.yaml",
            &(hr("linkerd-control-plane", "linkerd", "linkerd-control-plane", "    cniEnabled: true\n")
                + "  dependsOn:\n    - name: linkerd2-cni\n      namespace: linkerd-cni\n"),
        )
        .simulate(SimConfig::default())
        .unwrap()
}

#[test]
fn cilium_with_an_exclusive_cni_drops_linkerd_cni() {
    let r = mesh("");
    assert!(!r.converged);
    let broken = r.timeline.iter().find(|t| t.reason == "ChainBroken").expect("the conflist rewrite");
    assert!(broken.message.contains("*.cilium_bak"));
    let cp = r.stuck.iter().find(|s| s.name == "linkerd/linkerd-control-plane").unwrap();
    assert!(cp.message.contains("linkerd-cni is not in the node's CNI chain"), "{cp:?}");
    assert!(cp.because.contains("cni.exclusive=true"), "{}", cp.because);
    let ok = mesh("    cni:\n      exclusive: false\n");
    assert!(ok.converged, "{}", ok.to_text());
    assert!(ok.timeline.iter().any(|t| t.reason == "Chained"));
}

fn kyverno_and_app() -> Repo {
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: 'nginx:1.27'}]\n";
    base()
        .ks("kyverno", &[], "")
        .obj("kyverno", "ns.yaml", &ns("kyverno"))
        .obj("kyverno", "hr.yaml", &hr("kyverno", "kyverno", "kyverno", ""))
        .ks("app", &["kyverno"], "  interval: 1m\n")
        .obj("app", "d.yaml", deploy)
}

#[test]
fn faults_webhook_down_refuses_applies_for_its_window() {
    let calm = kyverno_and_app().simulate(SimConfig::default()).unwrap();
    assert!(calm.converged);
    let window = Fault::parse("webhook-down:validate.kyverno.svc-fail@1m-10m").unwrap();
    let r = kyverno_and_app().simulate(SimConfig { faults: vec![window], ..Default::default() }).unwrap();
    let refused = r
        .timeline
        .iter()
        .find(|t| t.name == "flux-system/app" && t.reason == "ReconciliationFailed")
        .unwrap_or_else(|| panic!("{}", r.to_text()));
    assert!(refused.message.contains("failed calling webhook \"validate.kyverno.svc-fail\""), "{}", refused.message);
    assert!(r.converged && ready_at(&r, "app") >= 600.0, "Ready only after the window:\n{}", r.to_text());
}

#[test]
fn faults_chart_failures_use_up_retries() {
    let two = Fault::parse("chart-fail:kyverno/kyverno=2").unwrap();
    let r = kyverno_and_app().simulate(SimConfig { faults: vec![two], ..Default::default() }).unwrap();
    assert!(r.converged, "retries: 3 absorb two failures");
    assert_eq!(
        r.timeline.iter().filter(|t| t.name == "kyverno/kyverno" && t.message.contains("fault injected")).count(),
        2
    );
    let four = Fault::parse("chart-fail:kyverno/kyverno=4").unwrap();
    let r = kyverno_and_app().simulate(SimConfig { faults: vec![four], ..Default::default() }).unwrap();
    assert!(!r.converged);
    assert!(r.timeline.iter().any(|t| t.message == "Failed to install after 4 attempt(s)"));
}

#[test]
fn faults_slow_charts_and_late_nodes_delay_but_converge() {
    let calm = kyverno_and_app().simulate(SimConfig::default()).unwrap();
    let slow = kyverno_and_app()
        .simulate(SimConfig {
            faults: vec![Fault::parse("slow-chart:kyverno/kyverno=4m").unwrap()],
            ..Default::default()
        })
        .unwrap();
    assert!(slow.converged && ready_at(&slow, "kyverno/kyverno") > ready_at(&calm, "kyverno/kyverno") + 120.0);
    let late = kyverno_and_app()
        .simulate(SimConfig { faults: vec![Fault::parse("node-late@20s").unwrap()], ..Default::default() })
        .unwrap();
    assert!(late.converged);
    assert!(late.timeline.iter().any(|t| t.message.contains("a node joins late")));
}

#[test]
fn a_fault_naming_an_unknown_object_is_an_error() {
    let e = kyverno_and_app()
        .simulate(SimConfig { faults: vec![Fault::parse("chart-fail:nope/nope=1").unwrap()], ..Default::default() })
        .err()
        .unwrap();
    assert!(e.message.contains("no HelmRelease nope/nope"), "{e}");
    let e = kyverno_and_app()
        .simulate(SimConfig { faults: vec![Fault::parse("webhook-down:ghost@1m-2m").unwrap()], ..Default::default() })
        .err()
        .unwrap();
    assert!(e.message.contains("no HelmRelease of the repository registers a webhook named ghost"), "{e}");
}

#[test]
fn an_unknown_chart_gets_the_default_behaviour_and_a_note() {
    let r = base()
        .ks("a", &[], "")
        .obj("a", "hr.yaml", &hr("m", "default", "mystery", ""))
        .simulate(SimConfig::default())
        .unwrap();
    assert!(r.converged);
    assert!(r.notes.iter().any(|n| n.contains("chart mystery") && n.contains("default behaviour")), "{:?}", r.notes);
}
