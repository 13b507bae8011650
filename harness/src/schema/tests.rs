use super::*;
use serde_json::json;

fn ks(spec: Value) -> Value {
    json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
           "metadata": {"name": "apps", "namespace": "flux-system"}, "spec": spec})
}

fn good_ks() -> Value {
    json!({"interval": "10m", "prune": true, "path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}})
}

fn problems(v: &Value) -> Vec<String> {
    validate(v).iter().map(Problem::to_string).collect()
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[test]
fn a_valid_kustomization_has_no_problem() {
    assert!(problems(&ks(good_ks())).is_empty(), "{:?}", problems(&ks(good_ks())));
}

#[test]
fn wrong_types_of_kustomization_fields_are_refused_as_the_api_server_words_it() {
    let cases = [
        (
            "dependsOn",
            json!(["x"]),
            "spec.dependsOn[0]: Invalid value: \"string\": spec.dependsOn[0] in body must be of type object: \"x\"",
        ),
        (
            "dependsOn",
            json!(42),
            "spec.dependsOn: Invalid value: \"integer\": spec.dependsOn in body must be of type array: 42",
        ),
        (
            "dependsOn",
            json!({"name": "x"}),
            "spec.dependsOn: Invalid value: \"object\": spec.dependsOn in body must be of type array: \"object\"",
        ),
        ("dependsOn", json!([{"namespace": "x"}]), "spec.dependsOn[0].name: Required value"),
        (
            "wait",
            json!("yes"),
            "spec.wait: Invalid value: \"string\": spec.wait in body must be of type boolean: \"yes\"",
        ),
        (
            "prune",
            json!("true"),
            "spec.prune: Invalid value: \"string\": spec.prune in body must be of type boolean: \"true\"",
        ),
        (
            "timeout",
            json!(300),
            "spec.timeout: Invalid value: \"integer\": spec.timeout in body must be of type string: 300",
        ),
        (
            "interval",
            json!("5 minutes"),
            "spec.interval: Invalid value: \"5 minutes\": spec.interval in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'",
        ),
        (
            "interval",
            json!("1d"),
            "spec.interval: Invalid value: \"1d\": spec.interval in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'",
        ),
        (
            "sourceRef",
            json!({"kind": "HelmRepository", "name": "x"}),
            "spec.sourceRef.kind: Unsupported value: \"HelmRepository\": supported values: \"OCIRepository\", \"GitRepository\", \"Bucket\", \"ExternalArtifact\"",
        ),
        (
            "targetNamespace",
            json!(""),
            "spec.targetNamespace: Invalid value: \"\": spec.targetNamespace in body should be at least 1 chars long",
        ),
        (
            "postBuild",
            json!({"substituteFrom": [{"name": "vars"}]}),
            "spec.postBuild.substituteFrom[0].kind: Required value",
        ),
        (
            "postBuild",
            json!({"substitute": {"n": 3}}),
            "spec.postBuild.substitute.n: Invalid value: \"integer\": spec.postBuild.substitute.n in body must be of type string: 3",
        ),
        (
            "decryption",
            json!({"provider": "vault"}),
            "spec.decryption.provider: Unsupported value: \"vault\": supported values: \"sops\"",
        ),
        ("healthChecks", json!([{"kind": "Deployment"}]), "spec.healthChecks[0].name: Required value"),
    ];
    for (field, value, want) in cases {
        let got = problems(&ks(with(good_ks(), field, value.clone())));
        assert_eq!(got, vec![want.to_string()], "{field}: {value}");
    }
}

#[test]
fn required_kustomization_fields() {
    for field in ["interval", "prune", "sourceRef"] {
        let mut spec = good_ks();
        spec.as_object_mut().unwrap().remove(field);
        assert_eq!(problems(&ks(spec)), vec![format!("spec.{field}: Required value")]);
    }
    let no_spec =
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "a"}});
    assert_eq!(problems(&no_spec), ["spec: Required value"]);
    let mut spec = good_ks();
    spec["sourceRef"] = json!({"kind": "GitRepository"});
    assert_eq!(problems(&ks(spec)), ["spec.sourceRef.name: Required value"]);
}

fn hr(spec: Value) -> Value {
    json!({"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "cilium", "namespace": "kube-system"}, "spec": spec})
}

#[test]
fn helm_release_fields_and_the_chart_rule() {
    let chart = json!({"spec": {"chart": "cilium", "version": "1.16.5", "sourceRef": {"kind": "HelmRepository", "name": "cilium"}}});
    assert!(problems(&hr(json!({"interval": "1h", "chart": chart}))).is_empty());
    assert_eq!(problems(&hr(json!({"chart": chart}))), ["spec.interval: Required value"]);
    assert_eq!(
        problems(&hr(json!({"interval": "1h"}))),
        ["spec: Invalid value: \"object\": either chart or chartRef must be set"]
    );
    assert_eq!(
        problems(&hr(json!({"interval": "1h", "chart": chart, "chartRef": {"kind": "OCIRepository", "name": "x"}}))),
        ["spec: Invalid value: \"object\": either chart or chartRef must be set"]
    );
    assert_eq!(
        problems(&hr(
            json!({"interval": "1h", "chart": {"spec": {"chart": "c", "sourceRef": {"kind": "OCIRepository", "name": "x"}}}})
        )),
        [
            "spec.chart.spec.sourceRef.kind: Unsupported value: \"OCIRepository\": supported values: \"HelmRepository\", \"GitRepository\", \"Bucket\""
        ]
    );
    assert_eq!(
        problems(&hr(json!({"interval": "1h", "chart": chart, "install": {"remediation": {"retries": "3"}}}))),
        [
            "spec.install.remediation.retries: Invalid value: \"string\": spec.install.remediation.retries in body must be of type integer: \"3\""
        ]
    );
    assert_eq!(
        problems(&hr(json!({"interval": "1h", "chart": chart, "valuesFrom": [{"kind": "Secret"}]}))),
        ["spec.valuesFrom[0].name: Required value"]
    );
    assert_eq!(
        problems(&hr(json!({"interval": "1h", "chart": chart, "releaseName": "x".repeat(54)}))),
        ["spec.releaseName: Too long: may not be more than 53 bytes"]
    );
    assert!(problems(&hr(json!({"interval": "1h", "chart": chart, "values": {"any": [1, {"x": true}]}}))).is_empty());
}

fn source(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": kind, "metadata": {"name": "s", "namespace": "flux-system"}, "spec": spec})
}

#[test]
fn source_fields() {
    assert!(
        problems(&source(
            "GitRepository",
            json!({"interval": "1m", "url": "ssh://git@host/org/repo", "ref": {"branch": "main"}})
        ))
        .is_empty()
    );
    assert_eq!(problems(&source("GitRepository", json!({"interval": "1m"}))), ["spec.url: Required value"]);
    assert_eq!(
        problems(&source("GitRepository", json!({"interval": "1m", "url": "git@github.com:org/repo.git"}))),
        [
            "spec.url: Invalid value: \"git@github.com:org/repo.git\": spec.url in body should match '^(http|https|ssh)://.*$'"
        ]
    );
    assert_eq!(
        problems(&source("GitRepository", json!({"interval": "1m", "url": "https://h/r", "timeout": "1h"}))),
        ["spec.timeout: Invalid value: \"1h\": spec.timeout in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m))+$'"]
    );
    assert_eq!(
        problems(&source("OCIRepository", json!({"interval": "1m", "url": "https://ghcr.io/x"}))),
        ["spec.url: Invalid value: \"https://ghcr.io/x\": spec.url in body should match '^oci://.*$'"]
    );
    assert!(
        problems(&source("HelmRepository", json!({"url": "oci://ghcr.io/charts", "type": "oci"}))).is_empty(),
        "interval is optional"
    );
    assert_eq!(
        problems(&source("HelmRepository", json!({"url": "https://charts.x", "type": "OCI"}))),
        ["spec.type: Unsupported value: \"OCI\": supported values: \"default\", \"oci\""]
    );
    assert_eq!(problems(&source("HelmRepository", json!({"interval": 60}))).len(), 2);
}

#[test]
fn names_and_labels() {
    let cm = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}});
    assert!(problems(&cm("app.config-1", json!({"app.kubernetes.io/name": "x", "empty": ""}))).is_empty());
    assert!(
        problems(&cm("App", json!({})))[0]
            .starts_with("metadata.name: Invalid value: \"App\": a lowercase RFC 1123 subdomain")
    );
    assert!(problems(&cm("${CLUSTER}-config", json!({}))).is_empty(), "left to the substitution findings");
    assert_eq!(
        problems(&cm("a", json!({"enabled": true}))),
        ["metadata.labels.enabled: expected string, got &value.valueUnstructured{Value:true} (quote it in the YAML)"]
    );
    assert_eq!(problems(&cm("a", json!({"x": "not ok"}))).len(), 1);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
    assert_eq!(problems(&ns).len(), 1, "a namespace is a label, not a subdomain");
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:aggregate-to-admin"}});
    assert!(problems(&role).is_empty());
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1st"}});
    assert_eq!(problems(&svc).len(), 1);
    let unnamed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
    assert_eq!(problems(&unnamed), ["metadata.name: Required value: name or generateName is required"]);
}

#[test]
fn the_refusal_reads_like_kubectl() {
    let v = ks(json!({"interval": "10m", "sourceRef": {"kind": "GitRepository"}}));
    assert_eq!(
        refusal(&v, &validate(&v)),
        "Kustomization.kustomize.toolkit.fluxcd.io \"apps\" is invalid: [spec.prune: Required value, spec.sourceRef.name: Required value]"
    );
}

#[test]
fn durations() {
    for ok in ["1m", "1h30m", "0.5s", "500ms", "10m0s"] {
        assert!(is_duration(ok), "{ok}");
    }
    for bad in ["", "5", "1d", "m", "1.m", "1h 30m", "-1m"] {
        assert!(!is_duration(bad), "{bad}");
    }
}
