//! Every bootstrap rule on a repo that breaks it and on one that does not.

mod common;

use common::repo::*;
use harness::findings::Severity::{self, Error, Info, Warning};
use harness::sim::SimConfig;

fn base() -> Repo {
    // The entry applies the chart repository every HelmRelease here uses.
    Repo::new().file("clusters/test/repos.yaml", &helm_repo("charts"))
}

const CERT: &str = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: web\n  namespace: default\nspec:\n  secretName: web-tls\n  issuerRef:\n    name: ca\n";
const CRDS_ON: &str = "    crds:\n      enabled: true\n";

/// A Kustomization `name` that creates the namespace `name` and installs `chart` there as `release`.
fn with_chart(r: Repo, name: &str, release: &str, chart: &str, ks_extra: &str, values: &str) -> Repo {
    r.ks(name, &[], ks_extra).obj(name, "ns.yaml", &ns(name)).obj(name, "hr.yaml", &hr(release, name, chart, values))
}

fn with_cert_manager(r: Repo, extra: &str) -> Repo {
    with_chart(r, "cert-manager", "cert-manager", "cert-manager", extra, CRDS_ON)
}

#[test]
fn rule_1_crd_dependency() {
    let p = with_cert_manager(base(), "").ks("app", &[], "").obj("app", "cert.yaml", CERT).plan();
    let f = one(&p, "crd-dependency", Error);
    assert_eq!((f.file.as_str(), f.line), ("apps/app/cert.yaml", 1));
    assert!(
        f.message.contains("no matches for kind \"Certificate\" in version \"cert-manager.io/v1\""),
        "{}",
        f.message
    );
    assert!(f.message.contains("provided by Kustomization cert-manager"), "{}", f.message);
    assert!(f.fix.as_deref().unwrap().contains("- name: cert-manager"));

    let p = with_cert_manager(base(), "").ks("app", &["cert-manager"], "").obj("app", "cert.yaml", CERT).plan();
    none(&p, "crd-dependency");
    none(&p, "unknown-kind");

    // A chart and objects of its CRDs in one Kustomization: the dry-run comes first.
    let p = with_cert_manager(base(), "").obj("cert-manager", "cert.yaml", CERT).plan();
    assert!(one(&p, "crd-dependency", Error).message.contains("same Kustomization"));
}

#[test]
fn rule_1_crds_in_the_repo_and_unknown_kinds() {
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n";
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\n";
    // CRD and object in one Kustomization: Flux applies CRDs first and waits for them.
    let p = base().ks("app", &[], "").obj("app", "crd.yaml", crd).obj("app", "w.yaml", widget).plan();
    none(&p, "crd-dependency");
    none(&p, "unknown-kind");
    // CRD in another Kustomization without dependsOn.
    let p =
        base().ks("crds", &[], "").obj("crds", "crd.yaml", crd).ks("app", &[], "").obj("app", "w.yaml", widget).plan();
    one(&p, "crd-dependency", Error);
    // Nobody provides it.
    let p = base().ks("app", &[], "").obj("app", "w.yaml", widget).plan();
    assert!(one(&p, "unknown-kind", Warning).message.contains("Widget (example.com)"));
    // Pre-installed at cluster creation (config).
    let p = base()
        .file(".flux-harness.yaml", "preinstalledCRDs: [example.com]\n")
        .ks("app", &[], "")
        .obj("app", "w.yaml", widget)
        .plan();
    none(&p, "unknown-kind");
    // cert-manager without crds.enabled installs no CRDs.
    let p = base()
        .ks("cert-manager", &[], "")
        .obj("cert-manager", "hr.yaml", &hr("cert-manager", "cert-manager", "cert-manager", ""))
        .ks("app", &["cert-manager"], "")
        .obj("app", "cert.yaml", CERT)
        .plan();
    one(&p, "unknown-kind", Warning);
}

#[test]
fn rule_2_provider_not_ready() {
    let p = with_cert_manager(base(), "  wait: false\n")
        .ks("app", &["cert-manager"], "")
        .obj("app", "cert.yaml", CERT)
        .plan();
    let f = one(&p, "provider-not-ready", Error);
    assert_eq!(f.kustomization.as_deref(), Some("flux-system/cert-manager"));
    assert!(f.message.contains("kustomize-controller#601"));
    let p = with_cert_manager(base(), "").ks("app", &["cert-manager"], "").obj("app", "cert.yaml", CERT).plan();
    none(&p, "provider-not-ready");
    let hc = "  wait: false\n  healthChecks:\n    - apiVersion: helm.toolkit.fluxcd.io/v2\n      kind: HelmRelease\n      name: cert-manager\n      namespace: cert-manager\n";
    let p = with_cert_manager(base(), hc).ks("app", &["cert-manager"], "").obj("app", "cert.yaml", CERT).plan();
    none(&p, "provider-not-ready");
}

fn with_monitoring(r: Repo) -> Repo {
    with_chart(r, "monitoring", "kps", "kube-prometheus-stack", "", "")
}

const SM: &str = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: app\n  namespace: default\nspec:\n  selector: {}\n  endpoints: [{port: http}]\n";

#[test]
fn rule_3_monitoring_split() {
    let p = with_monitoring(base()).ks("app", &["monitoring"], "").obj("app", "sm.yaml", SM).plan();
    assert!(one(&p, "monitoring-split", Warning).fix.as_deref().unwrap().contains("app-monitoring"));
    let p = with_monitoring(base())
        .ks("app", &[], "")
        .obj("app", "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n")
        .ks("app-monitoring", &["monitoring", "app"], "")
        .obj("app-monitoring", "sm.yaml", SM)
        .plan();
    none(&p, "monitoring-split");
    let p = with_monitoring(base())
        .ks("app", &[], "")
        .obj("app", "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n")
        .ks("app-monitoring", &["monitoring"], "")
        .obj("app-monitoring", "sm.yaml", SM)
        .plan();
    assert!(one(&p, "monitoring-split", Warning).message.contains("does not depend on it"));
}

#[test]
fn rule_4_helm_generated_service_monitors() {
    let values = "    metrics:\n      serviceMonitor:\n        enabled: true\n";
    let p = with_monitoring(base())
        .ks("app", &["monitoring"], "")
        .obj("app", "hr.yaml", &hr("podinfo", "default", "podinfo", values))
        .plan();
    assert!(one(&p, "helm-servicemonitor", Warning).message.contains("metrics.serviceMonitor.enabled: true"));
    let p = base().ks("app", &[], "").obj("app", "hr.yaml", &hr("podinfo", "default", "podinfo", values)).plan();
    one(&p, "helm-servicemonitor", Error);
    let p = base()
        .ks("app", &[], "")
        .obj(
            "app",
            "hr.yaml",
            &hr("podinfo", "default", "podinfo", "    metrics:\n      serviceMonitor:\n        enabled: false\n"),
        )
        .plan();
    none(&p, "helm-servicemonitor");
}

fn with_kyverno(r: Repo) -> Repo {
    with_chart(r, "kyverno", "kyverno", "kyverno", "", "")
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: NS\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: 'nginx:1.27'}]\n";

#[test]
fn rule_5_webhook_ordering() {
    let p =
        with_kyverno(base()).ks("app", &["kyverno"], "").obj("app", "d.yaml", &DEPLOY.replace("NS", "default")).plan();
    let f = one(&p, "webhook-ordering", Warning);
    assert!(
        f.message.contains("validate.kyverno.svc-fail") && f.message.contains("Deployment/default/web"),
        "{}",
        f.message
    );
    // Uses the provider's CRDs: the dependency is needed.
    let policy = "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: p\nspec:\n  rules: []\n";
    let p = with_kyverno(base()).ks("app", &["kyverno"], "").obj("app", "p.yaml", policy).plan();
    none(&p, "webhook-ordering");
    // In the webhook's own (exempt) namespace, as a provider's *-monitoring objects are.
    let p =
        with_kyverno(base()).ks("app", &["kyverno"], "").obj("app", "d.yaml", &DEPLOY.replace("NS", "kyverno")).plan();
    none(&p, "webhook-ordering");
    // Webhook turned to Ignore.
    let p = base()
        .ks("kyverno", &[], "")
        .obj(
            "kyverno",
            "hr.yaml",
            &hr(
                "kyverno",
                "kyverno",
                "kyverno",
                "    features:\n      forceFailurePolicyIgnore:\n        enabled: true\n",
            ),
        )
        .ks("app", &["kyverno"], "")
        .obj("app", "d.yaml", &DEPLOY.replace("NS", "default"))
        .plan();
    none(&p, "webhook-ordering");
}

#[test]
fn rule_6_webhook_self_block() {
    let values =
        "    validatingWebhookFailurePolicy: Fail\n    postInstall:\n      labelNamespace:\n        enabled: false\n";
    let gk = |ns_text: &str| {
        base()
            .ks("gatekeeper", &[], "")
            .obj("gatekeeper", "ns.yaml", ns_text)
            .obj("gatekeeper", "hr.yaml", &hr("gatekeeper", "gatekeeper-system", "gatekeeper", values))
            .plan()
    };
    let p = gk(&ns("gatekeeper-system"));
    let errors: Vec<_> = findings(&p, "webhook-self-block").into_iter().filter(|f| f.severity == Error).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, "apps/gatekeeper/ns.yaml");
    assert!(errors[0].fix.as_deref().unwrap().contains("admission.gatekeeper.sh/ignore"));
    let labelled = ns("gatekeeper-system") + "    admission.gatekeeper.sh/ignore: no-self-managing\n";
    let p = gk(&labelled);
    let all = findings(&p, "webhook-self-block");
    assert!(all.iter().all(|f| f.severity == Warning && f.message.contains("kube-system")), "{all:#?}");
    // The chart's default (Ignore) cannot block anything.
    let p = base()
        .ks("gatekeeper", &[], "")
        .obj("gatekeeper", "hr.yaml", &hr("gatekeeper", "gatekeeper-system", "gatekeeper", ""))
        .plan();
    none(&p, "webhook-self-block");
    // Kyverno exempts its own namespace and kube-system by default.
    none(&with_kyverno(base()).plan(), "webhook-self-block");
}

#[test]
fn rule_7_helm_anti_patterns() {
    let bad = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  chart:\n    spec:\n      chart: podinfo\n      sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}\n  install:\n    remediation:\n      remediateLastFailure: true\n  upgrade:\n    force: true\n    cleanupOnFail: true\n    remediation:\n      strategy: uninstall\n  values:\n    podAnnotations:\n      rollme: \"123\"\n";
    let p = base().ks("app", &[], "").obj("app", "hr.yaml", bad).plan();
    for (rule, sev) in [
        ("helm-upgrade-force", Warning),
        ("helm-cleanup-on-fail", Info),
        ("helm-uninstall-remediation", Warning),
        ("helm-remediate-last-failure", Info),
        ("helm-restart-annotation", Warning),
        ("helm-no-retries", Warning),
    ] {
        let f = one(&p, rule, sev);
        assert_eq!((f.file.as_str(), f.line), ("apps/app/hr.yaml", 1));
    }
    assert!(one(&p, "helm-no-retries", Warning).message.contains("install or upgrade"));
    // `strategy: RetryOnFailure` retries for good: no remediation count needed.
    let retrying = bad.replace("  install:\n", "  install:\n    strategy:\n      name: RetryOnFailure\n");
    let p2 = base().ks("app", &[], "").obj("app", "hr.yaml", &retrying).plan();
    assert!(one(&p2, "helm-no-retries", Warning).message.contains("no upgrade remediation"), "install is covered");
    let p = base()
        .ks("app", &[], "")
        .obj("app", "hr.yaml", &hr("good", "default", "podinfo", "    podAnnotations:\n      team: web\n"))
        .plan();
    for rule in [
        "helm-upgrade-force",
        "helm-cleanup-on-fail",
        "helm-uninstall-remediation",
        "helm-remediate-last-failure",
        "helm-restart-annotation",
        "helm-no-retries",
    ] {
        none(&p, rule);
    }
}

#[test]
fn rule_8_cni_chaining() {
    let bad = base()
        .ks("cilium", &[], "")
        .obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", ""))
        .ks("linkerd", &[], "")
        .obj("linkerd", "ns.yaml", &ns("linkerd-cni"))
        .obj("linkerd", "hr.yaml", &hr("linkerd2-cni", "linkerd-cni", "linkerd2-cni", ""))
        .plan();
    assert!(one(&bad, "cni-exclusive", Error).message.contains("true by default"));
    assert!(one(&bad, "cni-order", Error).fix.as_deref().unwrap().contains("- name: cilium"));
    assert!(one(&bad, "cni-priority", Warning).message.contains("not set"));
    let good = base()
        .ks("cilium", &[], "")
        .obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", "    cni:\n      exclusive: false\n"))
        .ks("linkerd", &["cilium"], "")
        .obj("linkerd", "ns.yaml", &ns("linkerd-cni"))
        .obj(
            "linkerd",
            "hr.yaml",
            &hr("linkerd2-cni", "linkerd-cni", "linkerd2-cni", "    priorityClassName: system-node-critical\n"),
        )
        .plan();
    for rule in ["cni-exclusive", "cni-order", "cni-priority"] {
        none(&good, rule);
    }
}

#[test]
fn rule_9_cilium_policies() {
    let cnp = |egress: &str| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: default\nspec:\n  endpointSelector: {{}}\n  egress:\n{egress}"
        )
    };
    let cilium = |r: Repo| r.ks("cilium", &[], "").obj("cilium", "hr.yaml", &hr("cilium", "kube-system", "cilium", ""));
    let p = cilium(base())
        .ks("net", &["cilium"], "")
        .obj("net", "p.yaml", &cnp("    - toEntities: [kube-apiserver]\n"))
        .plan();
    one(&p, "cilium-policy-dns", Error);
    one(&p, "cilium-policy-intra-namespace", Warning);
    let good = "    - toEntities: [kube-apiserver]\n    - toEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: kube-system\n            k8s:k8s-app: kube-dns\n      toPorts:\n        - ports: [{port: \"53\", protocol: UDP}]\n    - toEndpoints:\n        - {}\n";
    let p = cilium(base()).ks("net", &["cilium"], "").obj("net", "p.yaml", &cnp(good)).plan();
    none(&p, "cilium-policy-dns");
    none(&p, "cilium-policy-intra-namespace");
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: api\n  namespace: default\nspec:\n  podSelector: {}\n  egress:\n    - to:\n        - ipBlock: {cidr: 10.96.0.1/32}\n      ports:\n        - port: 443\n";
    let p = cilium(base()).ks("net", &["cilium"], "").obj("net", "np.yaml", np).plan();
    one(&p, "netpol-ipblock-apiserver", Warning);
    let p = base().ks("net", &[], "").obj("net", "np.yaml", np).plan();
    none(&p, "netpol-ipblock-apiserver");
}

const CM_IN: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: NS\n";

#[test]
fn rule_10_namespace_exists() {
    let p = base()
        .ks("a", &[], "")
        .obj("a", "ns.yaml", &ns("team"))
        .ks("b", &[], "")
        .obj("b", "cm.yaml", &CM_IN.replace("NS", "team"))
        .plan();
    let f = one(&p, "namespace-missing", Error);
    assert!(f.message.contains("Kustomization a creates") && f.fix.as_deref().unwrap().contains("- name: a"), "{f:#?}");
    let p = base()
        .ks("a", &[], "")
        .obj("a", "ns.yaml", &ns("team"))
        .ks("b", &["a"], "")
        .obj("b", "cm.yaml", &CM_IN.replace("NS", "team"))
        .plan();
    none(&p, "namespace-missing");
    let p = base().ks("b", &[], "").obj("b", "cm.yaml", &CM_IN.replace("NS", "nowhere")).plan();
    assert!(one(&p, "namespace-missing", Error).message.contains("no Kustomization"));
    let p = base().ks("b", &[], "").obj("b", "cm.yaml", &CM_IN.replace("NS", "kube-system")).plan();
    none(&p, "namespace-missing");
}

#[test]
fn rule_11_helm_sources() {
    let other = hr("x", "default", "podinfo", "").replace("name: charts", "name: other");
    let p = base().ks("app", &[], "").obj("app", "hr.yaml", &other).plan();
    assert!(one(&p, "helm-source-missing", Error).message.contains("HelmRepository/flux-system/other"));
    let p = base()
        .ks("repos", &[], "")
        .obj("repos", "r.yaml", &helm_repo("other"))
        .ks("app", &[], "")
        .obj("app", "hr.yaml", &other)
        .plan();
    one(&p, "helm-source-order", Warning);
    let p = base()
        .ks("repos", &[], "")
        .obj("repos", "r.yaml", &helm_repo("other"))
        .ks("app", &["repos"], "")
        .obj("app", "hr.yaml", &other)
        .plan();
    none(&p, "helm-source-order");
    none(&p, "helm-source-missing");
}

#[test]
fn rule_12_single_owner() {
    let p = base()
        .ks("a", &[], "")
        .obj("a", "ns.yaml", &ns("team"))
        .ks("b", &[], "")
        .obj("b", "ns.yaml", &ns("team"))
        .plan();
    let f = one(&p, "single-owner", Warning);
    assert!(
        f.message.contains("Namespace/team is applied by a (apps/a/ns.yaml:1) and b (apps/b/ns.yaml:1)"),
        "{}",
        f.message
    );
    let p = base()
        .ks("a", &[], "  prune: true\n")
        .obj("a", "ns.yaml", &ns("team"))
        .ks("b", &[], "")
        .obj("b", "ns.yaml", &ns("team"))
        .plan();
    one(&p, "single-owner", Error);
    let p = base().ks("a", &[], "").obj("a", "ns.yaml", &ns("team")).plan();
    none(&p, "single-owner");
}

#[test]
fn rule_13_network_policy_namespace_selectors() {
    let np = |sel: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: team\nspec:\n  podSelector: {{}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              {sel}\n"
        )
    };
    let team = ns("team") + "    name: team\n";
    let run = |sel: &str| base().ks("a", &[], "").obj("a", "ns.yaml", &team).obj("a", "np.yaml", &np(sel)).plan();
    assert!(one(&run("name: flux-system"), "netpol-selector", Warning).message.contains("kubernetes.io/metadata.name"));
    none(&run("kubernetes.io/metadata.name: flux-system"), "netpol-selector");
    none(&run("name: team"), "netpol-selector");
}

#[test]
fn rule_14_substitution() {
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\ndata:\n  env: ${CLUSTER_ENV}\n";
    let p = base().ks("a", &[], "").obj("a", "cm.yaml", cm).plan();
    assert!(one(&p, "substitution-disabled", Warning).message.contains("${CLUSTER_ENV}"));
    let p =
        base().ks("a", &[], "  postBuild:\n    substitute:\n      CLUSTER_ENV: test\n").obj("a", "cm.yaml", cm).plan();
    none(&p, "substitution-disabled");
    none(&p, "substitution-unresolved");
    let p = base().ks("a", &[], "  postBuild:\n    substitute:\n      OTHER: x\n").obj("a", "cm.yaml", cm).plan();
    one(&p, "substitution-unresolved", Warning);
}

#[test]
fn rule_15_sops_needs_decryption() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: default\nstringData:\n  password: ENC[AES256_GCM,data:Zm9v,iv:aXY=,tag:dGFn,type:str]\nsops:\n  age:\n    - recipient: age1fixture\n  version: 3.9.0\n";
    let p = base().ks("a", &[], "").obj("a", "s.yaml", secret).plan();
    let f = one(&p, "sops-decryption", Error);
    assert!(!f.message.contains("Zm9v"), "ciphertext must not be echoed");
    assert!(f.message.contains("configuring decryption is required for this secret to be reconciled"), "{}", f.message);
    // The simulation refuses it as kustomize-controller does: nothing of it is applied.
    let sim = base().ks("a", &[], "").obj("a", "s.yaml", secret).simulate(SimConfig::default()).unwrap();
    assert!(!sim.converged);
    assert!(
        sim.failures
            .iter()
            .any(|x| x.name == "flux-system/a" && x.message.starts_with("Secret/default/s is SOPS encrypted")),
        "{:?}",
        sim.failures
    );
    // A Secret that opts out is applied as it is.
    let opted = secret.replace(
        "  namespace: default\n",
        "  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/decrypt: Disabled\n",
    );
    let p = base().ks("a", &[], "").obj("a", "s.yaml", &opted).plan();
    none(&p, "sops-decryption");
    assert!(base().ks("a", &[], "").obj("a", "s.yaml", &opted).simulate(SimConfig::default()).unwrap().converged);
    let p = base()
        .ks("a", &[], "  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n")
        .obj("a", "s.yaml", secret)
        .plan();
    none(&p, "sops-decryption");
}

#[test]
fn rule_16_pod_security_labels() {
    let p = base()
        .ks("a", &[], "")
        .obj("a", "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bare\n")
        .plan();
    assert_eq!(one(&p, "pss-missing", Warning).file, "apps/a/ns.yaml");
    none(&base().ks("a", &[], "").obj("a", "ns.yaml", &ns("ok")).plan(), "pss-missing");
}

#[test]
fn rule_17_production_policy() {
    let d = |image: &str, replicas: u32| {
        DEPLOY
            .replace("NS", "default")
            .replace("nginx:1.27", image)
            .replace("replicas: 2", &format!("replicas: {replicas}"))
    };
    let p = base().ks("apps-prod", &[], "").obj("apps-prod", "d.yaml", &d("ghcr.io/x/web:latest", 1)).plan();
    one(&p, "env-image-unpinned", Error);
    one(&p, "env-replicas", Error);
    let p = base().ks("apps-prod", &[], "").obj("apps-prod", "d.yaml", &d("ghcr.io/x/web:prod-latest", 3)).plan();
    assert!(one(&p, "env-image-unpinned", Error).message.contains("*-latest"));
    let p = base().ks("apps-prod", &[], "").obj("apps-prod", "d.yaml", &d("ghcr.io/x/web:v1.2.3", 3)).plan();
    none(&p, "env-image-unpinned");
    none(&p, "env-replicas");
    // Not production: no policy.
    let p = base().ks("apps-dev", &[], "").obj("apps-dev", "d.yaml", &d("ghcr.io/x/web:dev-latest", 1)).plan();
    none(&p, "env-image-unpinned");
    none(&p, "env-replicas");
}

#[test]
fn unknown_charts_are_an_info_finding() {
    let p = base().ks("a", &[], "").obj("a", "hr.yaml", &hr("m", "default", "mystery-operator", "")).plan();
    assert!(one(&p, "chart-unknown", Info).message.contains("mystery-operator"));
    // Described in the repo config: known, and its CRDs count.
    let cfg = "catalogue:\n  charts:\n    mystery-operator:\n      crds:\n        - group: mystery.io\n          kinds: [Thing]\n";
    let thing = "apiVersion: mystery.io/v1\nkind: Thing\nmetadata:\n  name: t\n  namespace: default\n";
    let p = base()
        .file(".flux-harness.yaml", cfg)
        .ks("a", &[], "")
        .obj("a", "hr.yaml", &hr("m", "default", "mystery-operator", ""))
        .ks("b", &[], "")
        .obj("b", "t.yaml", thing)
        .plan();
    none(&p, "chart-unknown");
    one(&p, "crd-dependency", Error);
}

#[test]
fn severity_overrides_and_suppressions_come_from_the_repo_config() {
    let bare = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bare\n";
    let p = base()
        .file(".flux-harness.yaml", "severity:\n  pss-missing: error\n")
        .ks("a", &[], "")
        .obj("a", "ns.yaml", bare)
        .plan();
    one(&p, "pss-missing", Error);
    assert_eq!(p.exit_code(), 1);
    let cfg = "suppress:\n  - rule: pss-missing\n    kustomization: flux-system/a\n    reason: namespace labelled by the platform operator\n";
    let p = base().file(".flux-harness.yaml", cfg).ks("a", &[], "").obj("a", "ns.yaml", bare).plan();
    let f = one(&p, "pss-missing", Info);
    assert!(f.message.starts_with("(suppressed in .flux-harness.yaml: namespace labelled by the platform operator)"));
    let no_reason =
        harness::config::RepoConfig::parse("suppress:\n  - rule: pss-missing\n    reason: \"\"\n").unwrap_err();
    assert!(no_reason.message.contains("needs a reason"));
    let typo = harness::config::RepoConfig::parse("severty:\n  x: error\n").unwrap_err();
    assert_eq!(typo.location().unwrap(), ".flux-harness.yaml:1:1");
}

#[test]
fn misplaced_fields_of_flux_objects() {
    let p = base().ks("a", &[], "").obj("a", "ns.yaml", &ns("a")).ks("b", &[], "").obj("b", "ns.yaml", &ns("b")).plan();
    none(&p, "misplaced-field");
    let child = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: c\n  namespace: flux-system\nspec:\n  interval: 5m\n  path: ./apps/a\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\ndependsOn:\n  - name: a\n";
    let p = base().ks("a", &[], "").obj("a", "ns.yaml", &ns("a")).file("clusters/test/c.yaml", child).plan();
    let f = one(&p, "misplaced-field", Warning);
    assert!(f.message.contains("`dependsOn`") && f.fix.as_deref() == Some("indent `dependsOn` under `spec:`"));
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n";

/// Each "needs" check on a repo that breaks it and on one that does not, and the
/// simulation agreeing: an error of plan is a failure or a stall of simulate.
#[test]
fn a_health_check_on_an_object_nothing_creates() {
    let hc = |name: &str| {
        format!("  wait: false\n  healthChecks:\n    - kind: ConfigMap\n      name: {name}\n      namespace: default\n")
    };
    let bad = || base().ks("app", &[], &hc("ghost")).obj("app", "cm.yaml", CM);
    let p = bad().plan();
    let f = one(&p, "health-check-missing", Severity::Error);
    assert!(f.message.contains("ConfigMap/default/ghost status: 'NotFound'"), "{}", f.message);
    let sim = bad().simulate(SimConfig::default()).unwrap();
    let fail = sim.failures.iter().find(|f| f.name == "flux-system/app").expect("never Ready");
    assert_eq!(fail.reason, "HealthCheckFailed");
    assert!(fail.message.contains("ConfigMap/default/ghost status: 'NotFound'"), "{}", fail.message);
    // Its own object, or one another Kustomization applies: found.
    let own = base().ks("app", &[], &hc("c")).obj("app", "cm.yaml", CM).plan();
    none(&own, "health-check-missing");
    let other = base()
        .ks("other", &[], "")
        .obj("other", "cm.yaml", &CM.replace("name: c", "name: elsewhere"))
        .ks("app", &[], &hc("elsewhere"))
        .obj("app", "cm.yaml", CM);
    none(&other.plan(), "health-check-missing");
}

#[test]
fn a_dependency_on_a_suspended_kustomization() {
    let repo = || {
        base().ks("base", &[], "  suspend: true\n").obj("base", "cm.yaml", CM).ks("app", &["base"], "").obj(
            "app",
            "cm.yaml",
            &CM.replace("name: c", "name: d"),
        )
    };
    one(&repo().plan(), "depends-on-suspended", Severity::Error);
    let sim = repo().simulate(SimConfig::default()).unwrap();
    assert!(!sim.converged && sim.stuck.iter().any(|s| s.name == "app"), "{:?}", sim.stuck);
    let fine = base().ks("base", &[], "").obj("base", "cm.yaml", CM).ks("app", &["base"], "");
    none(&fine.plan(), "depends-on-suspended");
}

#[test]
fn a_substitute_from_config_map_that_nothing_orders_first() {
    let vars = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-vars\n  namespace: flux-system\ndata:\n  DOMAIN: example.com\n";
    let sub = "  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: cluster-vars\n";
    let app = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: default\ndata:\n  url: https://${DOMAIN}\n";
    // The producer waits for a slow chart first, so the reader builds before the ConfigMap exists.
    let race = || {
        base()
            .ks("vars", &[], "  wait: true\n")
            .obj("vars", "hr.yaml", &hr("slow", "default", "some-chart", ""))
            .obj("vars", "cm.yaml", vars)
            .ks("app", &[], sub)
            .obj("app", "cm.yaml", app)
    };
    let p = race().plan();
    assert!(
        findings(&p, "input-order")
            .iter()
            .any(|f| f.severity == Severity::Warning && f.message.contains("cluster-vars")),
        "{:#?}",
        p.findings
    );
    let sim = race().simulate(SimConfig::default()).unwrap();
    if let Some(f) = sim.failures.iter().find(|f| f.name == "flux-system/app") {
        // The simulated bootstrap lost the race: plan says so as an error.
        assert!(f.message.starts_with("substitute from 'ConfigMap/cluster-vars' error"), "{}", f.message);
        one(&p, "input-race", Severity::Error);
    }
    let ordered =
        base().ks("vars", &[], "").obj("vars", "cm.yaml", vars).ks("app", &["vars"], sub).obj("app", "cm.yaml", app);
    let p = ordered.plan();
    none(&p, "input-order");
    none(&p, "input-race");
}

/// A Kustomization that applies its own substituteFrom never gets to: Flux reads the
/// variables before applying, so the first build fails and so does every later one. plan
/// says so as an error, and the simulation never makes it Ready.
#[test]
fn a_substitute_from_its_own_config_map_never_builds() {
    let vars = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-vars\n  namespace: flux-system\ndata:\n  DOMAIN: example.com\n";
    let sub = "  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: cluster-vars\n";
    let repo = || base().ks("app", &[], sub).obj("app", "vars.yaml", vars);
    let p = repo().plan();
    assert!(
        findings(&p, "input-order")
            .iter()
            .any(|f| f.severity == Severity::Error && f.message.contains("which it applies itself")),
        "{:#?}",
        p.findings
    );
    let sim = repo().simulate(SimConfig::default()).unwrap();
    assert!(!sim.converged, "never Ready: {:?} {:?}", sim.failures, sim.ready_order);
    assert!(
        sim.failures
            .iter()
            .any(|f| f.name == "flux-system/app" && f.message.contains("substitute from 'ConfigMap/cluster-vars'")),
        "{:?}",
        sim.failures
    );
    let optional = base()
        .ks("app", &[], &sub.replace("name: cluster-vars\n", "name: cluster-vars\n        optional: true\n"))
        .obj("app", "vars.yaml", vars);
    none(&optional.plan(), "input-order");
}

#[test]
fn values_from_a_secret_applied_downstream_is_a_deadlock() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-values\n  namespace: db\nstringData:\n  values.yaml: 'x: 1'\n";
    let release = hr("db", "db", "some-chart", "")
        .replace("  install:", "  valuesFrom:\n    - kind: Secret\n      name: db-values\n  install:");
    let repo = || {
        base()
            .ks("db", &[], "  wait: true\n")
            .obj("db", "ns.yaml", &ns("db"))
            .obj("db", "hr.yaml", &release)
            .ks("db-secrets", &["db"], "")
            .obj("db-secrets", "secret.yaml", secret)
    };
    let p = repo().plan();
    let f = one(&p, "values-from-deadlock", Severity::Error);
    assert!(f.message.contains("deadlock"), "{}", f.message);
    let sim = repo().simulate(SimConfig::default()).unwrap();
    assert!(!sim.converged, "it never bootstraps");
    let h = sim.stuck.iter().find(|s| s.name == "db/db").expect("the release is stuck");
    assert_eq!(h.reason, "ValuesError");
    assert!(h.message.contains("could not resolve Secret chart values reference 'db/db-values'"), "{}", h.message);
}

#[test]
fn pods_that_break_the_namespace_s_pod_security_level() {
    let deploy = |sc: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: web\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n{sc}"
        )
    };
    let compliant = "          securityContext:\n            runAsNonRoot: true\n            allowPrivilegeEscalation: false\n            capabilities: {drop: [ALL]}\n            seccompProfile: {type: RuntimeDefault}\n";
    // ns() labels the namespace enforce: restricted.
    let bad = || base().ks("web", &[], "").obj("web", "ns.yaml", &ns("web")).obj("web", "deploy.yaml", &deploy(""));
    let p = bad().plan();
    let f = one(&p, "pss-violation", Error);
    assert!(
        f.message.contains("violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"),
        "{}",
        f.message
    );
    let sim = bad().simulate(SimConfig::default()).unwrap();
    let fail = sim.failures.iter().find(|f| f.name == "flux-system/web").expect("never Ready");
    assert_eq!(fail.reason, "HealthCheckFailed");
    let ok = base()
        .ks("web", &[], "")
        .obj("web", "ns.yaml", &ns("web"))
        .obj("web", "deploy.yaml", &deploy(compliant))
        .plan();
    none(&ok, "pss-violation");
    // Nothing waits for it: a warning (Flux reports Ready while no pod runs).
    let nowait = base()
        .ks("web", &[], "  wait: false\n")
        .obj("web", "ns.yaml", &ns("web"))
        .obj("web", "deploy.yaml", &deploy(""))
        .plan();
    one(&nowait, "pss-violation", Warning);
}

/// A webhook the repo defines itself (a vendored cert-manager: its ValidatingWebhookConfiguration,
/// Service and Deployment as plain manifests): registered once applied, serving once its pods
/// start (slow here: two minutes). A dependent applied meanwhile is refused as the API server
/// refuses it, and converges on its retry; waiting for the webhook's Kustomization removes the
/// race; a fail-open webhook or one with an objectSelector is never taken to refuse.
/// A vendored cert-manager: CRD, namespace, the webhook's Service and Deployment and its
/// ValidatingWebhookConfiguration (`extra`: more fields of the webhook; `resources`: what it
/// intercepts in `groups`) in Kustomization cert-manager (`wait`), and an app applying a
/// Certificate after it.
fn vendored_cert_manager(wait: &str, extra: &str, groups: &str, resources: &str) -> Repo {
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: certificates.cert-manager.io\nspec:\n  group: cert-manager.io\n  names:\n    kind: Certificate\n    plural: certificates\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n";
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cert-manager\n";
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: cert-manager-webhook\n  namespace: cert-manager\nspec:\n  selector:\n    app: webhook\n  ports:\n    - port: 443\n";
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cert-manager-webhook\n  namespace: cert-manager\nspec:\n  selector:\n    matchLabels:\n      app: webhook\n  template:\n    metadata:\n      labels:\n        app: webhook\n    spec:\n      containers:\n        - name: webhook\n          image: quay.io/jetstack/cert-manager-webhook:v1.16.1\n";
    let vwc = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: cert-manager-webhook\nwebhooks:\n  - name: webhook.cert-manager.io\n    admissionReviewVersions: [v1]\n    sideEffects: None\n{extra}    clientConfig:\n      service:\n        name: cert-manager-webhook\n        namespace: cert-manager\n        path: /validate\n    rules:\n      - apiGroups: [{groups}]\n        apiVersions: [v1]\n        operations: [CREATE, UPDATE]\n        resources: [{resources}]\n"
    );
    base()
        .ks("cert-manager", &[], wait)
        .obj("cert-manager", "crd.yaml", crd)
        .obj("cert-manager", "ns.yaml", ns)
        .obj("cert-manager", "svc.yaml", svc)
        .obj("cert-manager", "deploy.yaml", deploy)
        .obj("cert-manager", "vwc.yaml", &vwc)
        .ks("app", &["cert-manager"], "")
        .obj("app", "cert.yaml", CERT)
}

#[test]
fn a_webhook_the_repo_defines_itself_refuses_until_its_pods_serve() {
    let repo = |wait: &str, extra: &str| vendored_cert_manager(wait, extra, "cert-manager.io", "certificates");
    let slow = || SimConfig { pod_start_ms: 120_000, ..Default::default() };
    let sim = repo("  wait: false\n", "").simulate(slow()).unwrap();
    let refused =
        sim.failures.iter().find(|f| f.name == "flux-system/app").unwrap_or_else(|| panic!("{}", sim.to_text()));
    assert!(
        refused.message.contains("failed calling webhook \"webhook.cert-manager.io\"")
            && refused.message.contains("https://cert-manager-webhook.cert-manager.svc:443/validate")
            && refused.message.contains("no endpoints available for service \"cert-manager-webhook\""),
        "{}",
        refused.message
    );
    assert!(sim.converged, "it serves once its pods start: a retry later, Ready");
    assert!(repo("  wait: true\n", "").simulate(slow()).unwrap().failures.is_empty());
    for extra in ["    failurePolicy: Ignore\n", "    objectSelector:\n      matchLabels:\n        team: web\n"] {
        assert!(repo("  wait: false\n", extra).simulate(slow()).unwrap().failures.is_empty(), "{extra}");
    }
}

/// The webhook-bootstrap suite covers the repo's own webhooks too: its pods taken down in
/// the middle of the bootstrap, it must recover; one that intercepts Pods in its own
/// namespace never does, which plan calls `webhook-self-block` and the suite a deadlock.
#[test]
fn the_webhook_suite_takes_down_the_repo_s_own_webhooks() {
    let sim = SimConfig { cni_preinstalled: true, ..Default::default() };
    let r = harness::suite::webhook::run(
        &vendored_cert_manager("  wait: false\n", "", "cert-manager.io", "certificates").loaded(),
        &sim,
    )
    .unwrap();
    let down =
        r.checks.iter().find(|c| c.id == "down:webhook.cert-manager.io").unwrap_or_else(|| panic!("{:?}", r.checks));
    assert_ne!(down.status, harness::suite::Status::Fail, "{down:?}");
    assert!(r.table.rows.iter().any(|row| row[1] == "Kustomization cert-manager"), "{:?}", r.table.rows);
    let pods = || vendored_cert_manager("  wait: false\n", "", "\"\"", "pods");
    one(&pods().plan(), "webhook-self-block", Severity::Error);
    let r = harness::suite::webhook::run(&pods().loaded(), &sim).unwrap();
    let down = r.checks.iter().find(|c| c.id == "down:webhook.cert-manager.io").unwrap();
    assert_eq!(down.status, harness::suite::Status::Fail, "{down:?}");
    assert!(down.message.contains("deadlock"), "{}", down.message);
    // Exempting its own namespace removes the deadlock.
    let exempt = "    namespaceSelector:\n      matchExpressions:\n        - key: kubernetes.io/metadata.name\n          operator: NotIn\n          values: [cert-manager]\n";
    none(&vendored_cert_manager("  wait: false\n", exempt, "\"\"", "pods").plan(), "webhook-self-block");
}
