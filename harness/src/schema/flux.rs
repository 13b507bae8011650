//! The `spec` schemas of Flux's CRDs, written from their openAPIV3Schema (the `config/crd/bases`
//! of kustomize-, helm- and source-controller, 2026 releases): required fields, types, enums,
//! patterns and lengths. Fields outside these tables are not checked (the API server prunes
//! unknown ones). docs/rules.md (`schema-invalid`) lists the sources.

use super::{F, Problem, T};
use serde_json::Value;

const fn f(name: &'static str, ty: T) -> F {
    F { name, ty, required: false }
}
const fn req(name: &'static str, ty: T) -> F {
    F { name, ty, required: true }
}

fn http_ssh(s: &str) -> bool {
    ["http://", "https://", "ssh://"].iter().any(|p| s.starts_with(p))
}
fn http_oci(s: &str) -> bool {
    ["http://", "https://", "oci://"].iter().any(|p| s.starts_with(p))
}
fn oci(s: &str) -> bool {
    s.starts_with("oci://")
}
/// source-controller's `timeout`: a duration without hours.
fn no_hours(s: &str) -> bool {
    super::is_duration(s) && !s.contains('h')
}
fn values_key(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

const STR_MAP: T = T::Map(&T::Str);
const LOCAL_REF: T = T::Obj(&[req("name", T::Str)]);
const DEPENDS_ON: T = T::Arr(&T::Obj(&[req("name", T::Str), f("namespace", T::Str), f("readyExpr", T::Str)]));
const KUBECONFIG: T =
    T::Obj(&[f("secretRef", T::Obj(&[req("name", T::Str), f("key", T::Str)])), f("configMapRef", LOCAL_REF)]);
const SELECTOR: T = T::Obj(&[
    f("group", T::Str),
    f("version", T::Str),
    f("kind", T::Str),
    f("name", T::Str),
    f("namespace", T::Str),
    f("labelSelector", T::Str),
    f("annotationSelector", T::Str),
]);
const PATCHES: T = T::Arr(&T::Obj(&[req("patch", T::Str), f("target", SELECTOR)]));
const IMAGES: T =
    T::Arr(&T::Obj(&[req("name", T::Str), f("newName", T::Str), f("newTag", T::Str), f("digest", T::Str)]));
const COMMON_METADATA: T = T::Obj(&[f("labels", STR_MAP), f("annotations", STR_MAP)]);
const HEALTH_CHECK_EXPRS: T = T::Arr(&T::Obj(&[
    req("apiVersion", T::Str),
    req("current", T::Str),
    f("kind", T::Str),
    f("inProgress", T::Str),
    f("failed", T::Str),
]));
const NS63: T = T::StrOf(Some(1), Some(63), None, "");
const NAME253: T = T::StrOf(Some(1), Some(253), None, "");
const URL_HTTP_SSH: T = T::StrOf(None, None, Some(http_ssh), "^(http|https|ssh)://.*$");
const SC_TIMEOUT: T = T::StrOf(None, None, Some(no_hours), "^([0-9]+(\\.[0-9]+)?(ms|s|m))+$");

const KUSTOMIZATION: T = T::Obj(&[
    req("interval", T::Duration),
    req("prune", T::Bool),
    req(
        "sourceRef",
        T::Obj(&[
            req("kind", T::Enum(&["OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"])),
            req("name", T::Str),
            f("namespace", T::Str),
            f("apiVersion", T::Str),
        ]),
    ),
    f("retryInterval", T::Duration),
    f("timeout", T::Duration),
    f("path", T::Str),
    f("targetNamespace", NS63),
    f("namePrefix", T::StrOf(Some(1), Some(200), None, "")),
    f("nameSuffix", T::StrOf(Some(1), Some(200), None, "")),
    f("serviceAccountName", T::Str),
    f("suspend", T::Bool),
    f("wait", T::Bool),
    f("force", T::Bool),
    f("ignoreMissingComponents", T::Bool),
    f("deletionPolicy", T::Enum(&["MirrorPrune", "Delete", "WaitForTermination", "Orphan"])),
    f("dependsOn", DEPENDS_ON),
    f(
        "healthChecks",
        T::Arr(&T::Obj(&[req("kind", T::Str), req("name", T::Str), f("apiVersion", T::Str), f("namespace", T::Str)])),
    ),
    f("healthCheckExprs", HEALTH_CHECK_EXPRS),
    f(
        "decryption",
        T::Obj(&[req("provider", T::Enum(&["sops"])), f("secretRef", LOCAL_REF), f("serviceAccountName", T::Str)]),
    ),
    f("kubeConfig", KUBECONFIG),
    f(
        "postBuild",
        T::Obj(&[
            f("substitute", STR_MAP),
            f(
                "substituteFrom",
                T::Arr(&T::Obj(&[
                    req("kind", T::Enum(&["Secret", "ConfigMap"])),
                    req("name", NAME253),
                    f("optional", T::Bool),
                ])),
            ),
            f("substituteStrategy", T::Enum(&["WithVariables", "Always"])),
        ]),
    ),
    f("patches", PATCHES),
    f("images", IMAGES),
    f("components", T::Arr(&T::Str)),
    f("buildMetadata", T::Arr(&T::Enum(&["originAnnotations", "transformerAnnotations"]))),
    f("commonMetadata", COMMON_METADATA),
    f("ignore", T::Arr(&T::Obj(&[req("paths", T::Arr(&T::Str)), f("target", SELECTOR)]))),
]);

const HR_STRATEGY: T =
    T::Obj(&[req("name", T::Enum(&["RemediateOnFailure", "RetryOnFailure"])), f("retryInterval", T::Duration)]);
const HELM_RELEASE: T = T::Obj(&[
    req("interval", T::Duration),
    f(
        "chart",
        T::Obj(&[
            req(
                "spec",
                T::Obj(&[
                    req("chart", T::StrOf(Some(1), Some(2048), None, "")),
                    req(
                        "sourceRef",
                        T::Obj(&[
                            req("kind", T::Enum(&["HelmRepository", "GitRepository", "Bucket"])),
                            req("name", NAME253),
                            f("namespace", NS63),
                            f("apiVersion", T::Str),
                        ]),
                    ),
                    f("version", T::Str),
                    f("interval", T::Duration),
                    f("reconcileStrategy", T::Enum(&["ChartVersion", "Revision"])),
                    f("valuesFiles", T::Arr(&T::Str)),
                    f("ignoreMissingValuesFiles", T::Bool),
                    f(
                        "verify",
                        T::Obj(&[req("provider", T::Enum(&["cosign", "notation"])), f("secretRef", LOCAL_REF)]),
                    ),
                ]),
            ),
            f("metadata", COMMON_METADATA),
        ]),
    ),
    f(
        "chartRef",
        T::Obj(&[
            req("kind", T::Enum(&["OCIRepository", "HelmChart", "ExternalArtifact"])),
            req("name", NAME253),
            f("namespace", NS63),
            f("apiVersion", T::Str),
        ]),
    ),
    f("releaseName", T::StrOf(Some(1), Some(53), None, "")),
    f("targetNamespace", NS63),
    f("storageNamespace", NS63),
    f("serviceAccountName", NAME253),
    f("dependsOn", DEPENDS_ON),
    f("timeout", T::Duration),
    f("maxHistory", T::Int),
    f("suspend", T::Bool),
    f("persistentClient", T::Bool),
    f("kubeConfig", KUBECONFIG),
    f("values", T::Any),
    f(
        "valuesFrom",
        T::Arr(&T::Obj(&[
            req("kind", T::Enum(&["Secret", "ConfigMap"])),
            req("name", NAME253),
            f("valuesKey", T::StrOf(None, Some(253), Some(values_key), "^[\\-._a-zA-Z0-9]+$")),
            f("targetPath", T::StrOf(None, Some(250), None, "")),
            f("optional", T::Bool),
        ])),
    ),
    f(
        "driftDetection",
        T::Obj(&[
            f("mode", T::Enum(&["enabled", "warn", "disabled"])),
            f("ignore", T::Arr(&T::Obj(&[req("paths", T::Arr(&T::Str)), f("target", SELECTOR)]))),
        ]),
    ),
    f("postRenderers", T::Arr(&T::Obj(&[f("kustomize", T::Obj(&[f("patches", PATCHES), f("images", IMAGES)]))]))),
    f("healthCheckExprs", HEALTH_CHECK_EXPRS),
    f("commonMetadata", COMMON_METADATA),
    f(
        "install",
        T::Obj(&[
            f("timeout", T::Duration),
            f("crds", T::Enum(&["Skip", "Create", "CreateReplace"])),
            f("createNamespace", T::Bool),
            f("disableHooks", T::Bool),
            f("disableWait", T::Bool),
            f("disableWaitForJobs", T::Bool),
            f("replace", T::Bool),
            f("skipCRDs", T::Bool),
            f("serverSideApply", T::Bool),
            f("strategy", HR_STRATEGY),
            f(
                "remediation",
                T::Obj(&[f("retries", T::Int), f("ignoreTestFailures", T::Bool), f("remediateLastFailure", T::Bool)]),
            ),
        ]),
    ),
    f(
        "upgrade",
        T::Obj(&[
            f("timeout", T::Duration),
            f("crds", T::Enum(&["Skip", "Create", "CreateReplace"])),
            f("cleanupOnFail", T::Bool),
            f("disableHooks", T::Bool),
            f("disableWait", T::Bool),
            f("disableWaitForJobs", T::Bool),
            f("force", T::Bool),
            f("preserveValues", T::Bool),
            f("serverSideApply", T::Enum(&["enabled", "disabled", "auto"])),
            f("strategy", HR_STRATEGY),
            f(
                "remediation",
                T::Obj(&[
                    f("retries", T::Int),
                    f("strategy", T::Enum(&["rollback", "uninstall"])),
                    f("ignoreTestFailures", T::Bool),
                    f("remediateLastFailure", T::Bool),
                ]),
            ),
        ]),
    ),
    f(
        "test",
        T::Obj(&[
            f("enable", T::Bool),
            f("ignoreFailures", T::Bool),
            f("timeout", T::Duration),
            f("filters", T::Arr(&T::Obj(&[req("name", NAME253), f("exclude", T::Bool)]))),
        ]),
    ),
    f("rollback", T::Obj(&[f("timeout", T::Duration), f("cleanupOnFail", T::Bool), f("force", T::Bool)])),
    f(
        "uninstall",
        T::Obj(&[
            f("timeout", T::Duration),
            f("keepHistory", T::Bool),
            f("deletionPropagation", T::Enum(&["background", "foreground", "orphan"])),
        ]),
    ),
]);

const GIT_REPOSITORY: T = T::Obj(&[
    req("url", URL_HTTP_SSH),
    req("interval", T::Duration),
    f("timeout", SC_TIMEOUT),
    f(
        "ref",
        T::Obj(&[f("branch", T::Str), f("tag", T::Str), f("semver", T::Str), f("name", T::Str), f("commit", T::Str)]),
    ),
    f("secretRef", LOCAL_REF),
    f("proxySecretRef", LOCAL_REF),
    f("provider", T::Enum(&["generic", "aws", "azure", "github"])),
    f("serviceAccountName", T::Str),
    f("suspend", T::Bool),
    f("recurseSubmodules", T::Bool),
    f("ignore", T::Str),
    f("sparseCheckout", T::Arr(&T::Str)),
    f("include", T::Arr(&T::Obj(&[req("repository", LOCAL_REF), f("fromPath", T::Str), f("toPath", T::Str)]))),
    f("verify", T::Obj(&[f("mode", T::Enum(&["head", "HEAD", "Tag", "TagAndHEAD"])), req("secretRef", LOCAL_REF)])),
]);

const OCI_REPOSITORY: T = T::Obj(&[
    req("url", T::StrOf(None, None, Some(oci), "^oci://.*$")),
    req("interval", T::Duration),
    f("timeout", SC_TIMEOUT),
    f("ref", T::Obj(&[f("digest", T::Str), f("semver", T::Str), f("semverFilter", T::Str), f("tag", T::Str)])),
    f("layerSelector", T::Obj(&[f("mediaType", T::Str), f("operation", T::Enum(&["extract", "copy"]))])),
    f("provider", T::Enum(&["generic", "aws", "azure", "gcp"])),
    f("secretRef", LOCAL_REF),
    f("certSecretRef", LOCAL_REF),
    f("proxySecretRef", LOCAL_REF),
    f("serviceAccountName", T::Str),
    f("ignore", T::Str),
    f("insecure", T::Bool),
    f("suspend", T::Bool),
    f("verify", T::Obj(&[req("provider", T::Enum(&["cosign", "notation"])), f("secretRef", LOCAL_REF)])),
]);

const HELM_REPOSITORY: T = T::Obj(&[
    req("url", T::StrOf(None, None, Some(http_oci), "^(http|https|oci)://.*$")),
    f("interval", T::Duration),
    f("timeout", SC_TIMEOUT),
    f("type", T::Enum(&["default", "oci"])),
    f("provider", T::Enum(&["generic", "aws", "azure", "gcp"])),
    f("secretRef", LOCAL_REF),
    f("certSecretRef", LOCAL_REF),
    f("passCredentials", T::Bool),
    f("insecure", T::Bool),
    f("suspend", T::Bool),
]);

const HELM_CHART: T = T::Obj(&[
    req("chart", T::Str),
    req("interval", T::Duration),
    req(
        "sourceRef",
        T::Obj(&[
            req("kind", T::Enum(&["HelmRepository", "GitRepository", "Bucket"])),
            req("name", T::Str),
            f("apiVersion", T::Str),
        ]),
    ),
    f("version", T::Str),
    f("reconcileStrategy", T::Enum(&["ChartVersion", "Revision"])),
    f("valuesFiles", T::Arr(&T::Str)),
    f("ignoreMissingValuesFiles", T::Bool),
    f("suspend", T::Bool),
]);

const BUCKET: T = T::Obj(&[
    req("bucketName", T::Str),
    req("endpoint", T::Str),
    req("interval", T::Duration),
    f("timeout", SC_TIMEOUT),
    f("provider", T::Enum(&["generic", "aws", "gcp", "azure"])),
    f("region", T::Str),
    f("prefix", T::Str),
    f("ignore", T::Str),
    f("insecure", T::Bool),
    f("suspend", T::Bool),
    f("secretRef", LOCAL_REF),
]);

/// The schema of `spec` for a Flux kind at a version Flux serves (older versions share the
/// current shape for the fields checked here).
pub fn spec_schema(group: &str, version: &str, kind: &str) -> Option<&'static T> {
    let _ = version;
    Some(match (group, kind) {
        (crate::flux::KUSTOMIZE_GROUP, "Kustomization") => &KUSTOMIZATION,
        (crate::flux::HELM_GROUP, "HelmRelease") => &HELM_RELEASE,
        (crate::flux::SOURCE_GROUP, "GitRepository") => &GIT_REPOSITORY,
        (crate::flux::SOURCE_GROUP, "OCIRepository") => &OCI_REPOSITORY,
        (crate::flux::SOURCE_GROUP, "HelmRepository") => &HELM_REPOSITORY,
        (crate::flux::SOURCE_GROUP, "HelmChart") => &HELM_CHART,
        (crate::flux::SOURCE_GROUP, "Bucket") => &BUCKET,
        _ => return None,
    })
}

fn invalid(path: &[&str], detail: &str, out: &mut Vec<Problem>) {
    out.push(Problem { path: path.iter().map(|s| s.to_string()).collect(), detail: detail.into() });
}

/// The CEL rules (`x-kubernetes-validations`) that a repo can break, worded as the CRDs word them.
pub fn rules(group: &str, kind: &str, spec: &Value, out: &mut Vec<Problem>) {
    let has = |p: &str| spec.pointer(p).is_some_and(|v| !v.is_null());
    if matches!(
        (group, kind),
        (crate::flux::KUSTOMIZE_GROUP, "Kustomization") | (crate::flux::HELM_GROUP, "HelmRelease")
    ) && has("/kubeConfig")
        && has("/kubeConfig/secretRef") == has("/kubeConfig/configMapRef")
    {
        invalid(
            &["spec", "kubeConfig"],
            "Invalid value: \"object\": exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified",
            out,
        );
    }
    match (group, kind) {
        (crate::flux::HELM_GROUP, "HelmRelease") => {
            if has("/chart") == has("/chartRef") {
                invalid(&["spec"], "Invalid value: \"object\": either chart or chartRef must be set", out);
            }
            if spec.pointer("/install/strategy/name").and_then(Value::as_str) == Some("RemediateOnFailure")
                && has("/install/strategy/retryInterval")
            {
                invalid(
                    &["spec", "install", "strategy"],
                    "Invalid value: \"object\": .retryInterval cannot be set when .name is 'RemediateOnFailure'",
                    out,
                );
            }
        }
        (crate::flux::SOURCE_GROUP, "GitRepository")
            if has("/serviceAccountName")
                && !matches!(spec.pointer("/provider").and_then(Value::as_str), Some("azure" | "aws")) =>
        {
            invalid(
                &["spec"],
                "Invalid value: \"object\": serviceAccountName can only be set when provider is 'azure' or 'aws'",
                out,
            );
        }
        (crate::flux::SOURCE_GROUP, "HelmChart")
            if has("/verify") && spec.pointer("/sourceRef/kind").and_then(Value::as_str) != Some("HelmRepository") =>
        {
            invalid(
                &["spec"],
                "Invalid value: \"object\": spec.verify is only supported when spec.sourceRef.kind is 'HelmRepository'",
                out,
            );
        }
        _ => {}
    }
}
