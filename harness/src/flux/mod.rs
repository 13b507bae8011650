//! Flux's own objects (Kustomization, HelmRelease, sources) read from rendered manifests,
//! and what kustomize-controller adds on top of kustomize: the overlay fields and
//! `postBuild` substitution.

pub mod substitute;

use crate::error::{Error, ErrorKind, Loc, Result};
use crate::kustomize::FluxOverlay;
use crate::kustomize::transform::ImageRule;
use crate::object::Object;
use serde_json::Value;

pub const KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";
pub const HELM_GROUP: &str = "helm.toolkit.fluxcd.io";
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";

/// API versions Flux has served, newest first.
const KUSTOMIZE_VERSIONS: &[&str] = &["v1", "v1beta2", "v1beta1"];
const HELM_VERSIONS: &[&str] = &["v2", "v2beta2", "v2beta1"];
const SOURCE_VERSIONS: &[&str] = &["v1", "v1beta2", "v1beta1"];
const SOURCE_KINDS: &[&str] =
    &["GitRepository", "OCIRepository", "HelmRepository", "Bucket", "HelmChart", "ExternalArtifact"];

/// What a rendered object is to Flux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxKind {
    Kustomization,
    HelmRelease,
    Source,
    Other,
}

/// Classifies an object, refusing Flux kinds under an API version Flux never served (a
/// typo there means the object is never reconciled).
pub fn classify(obj: &Object) -> Result<FluxKind> {
    let (group, version, kind) = (obj.group(), obj.version(), obj.kind());
    let check = |versions: &[&str], fk: FluxKind| -> Result<FluxKind> {
        if versions.contains(&version) {
            Ok(fk)
        } else {
            Err(Error::at(
                ErrorKind::BadObject,
                &obj.origin,
                format!(
                    "{kind} {} uses apiVersion {group}/{version}, which Flux does not serve (known: {})",
                    obj.name(),
                    versions.iter().map(|v| format!("{group}/{v}")).collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    match (group, kind) {
        (KUSTOMIZE_GROUP, "Kustomization") => check(KUSTOMIZE_VERSIONS, FluxKind::Kustomization),
        (HELM_GROUP, "HelmRelease") => check(HELM_VERSIONS, FluxKind::HelmRelease),
        (SOURCE_GROUP, k) if SOURCE_KINDS.contains(&k) => check(SOURCE_VERSIONS, FluxKind::Source),
        _ => Ok(FluxKind::Other),
    }
}

/// A namespaced reference (`dependsOn`, `sourceRef`, `substituteFrom`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Ref {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct SubstituteFrom {
    pub kind: String,
    pub name: String,
    pub optional: bool,
}

/// A Flux Kustomization as the controller reads it.
#[derive(Debug, Clone)]
pub struct Kustomization {
    pub name: String,
    pub namespace: String,
    pub api_version: String,
    /// `spec.path`, normalised (no leading `./`); `""` is the source root.
    pub path: String,
    pub source: Ref,
    pub depends_on: Vec<Ref>,
    pub interval: Option<String>,
    pub retry_interval: Option<String>,
    pub timeout: Option<String>,
    pub wait: bool,
    pub health_checks: Vec<Value>,
    pub prune: bool,
    pub suspend: bool,
    pub decryption: bool,
    pub substitute: Vec<(String, String)>,
    pub substitute_from: Vec<SubstituteFrom>,
    pub overlay: FluxOverlay,
    pub origin: Loc,
    /// The raw object, for rules that look at fields the model does not lift.
    pub raw: Value,
}

/// A HelmRelease as helm-controller reads it.
#[derive(Debug, Clone)]
pub struct HelmRelease {
    pub name: String,
    pub namespace: String,
    pub api_version: String,
    pub chart: String,
    pub version: Option<String>,
    /// The HelmRepository / OCIRepository / GitRepository / HelmChart it installs from.
    pub source: Option<Ref>,
    pub depends_on: Vec<Ref>,
    pub values: Value,
    pub origin: Loc,
    pub raw: Value,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub url: Option<String>,
    /// `spec.secretRef.name`: the credentials source-controller reads first.
    pub secret_ref: Option<String>,
    pub origin: Loc,
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

/// The namespace an object lands in: its own, else `default` (as for any namespaced
/// object applied without one).
pub fn namespace_of(obj: &Object) -> String {
    obj.namespace().unwrap_or("default").to_string()
}

fn refs(v: Option<&Value>, kind: &str, default_ns: &str) -> Vec<Ref> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let name = d.get("name").and_then(Value::as_str)?;
            Some(Ref {
                kind: kind.into(),
                namespace: d.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string(),
                name: name.into(),
            })
        })
        .collect()
}

fn normalise_path(p: &str) -> String {
    let t = p.trim().trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    if t == "." { String::new() } else { t.to_string() }
}

impl Kustomization {
    pub fn from_object(obj: &Object) -> Result<Self> {
        let v = &obj.value;
        let ns = namespace_of(obj);
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let source_kind = s(&spec, "/sourceRef/kind").unwrap_or("GitRepository");
        // A missing or mistyped field is the schema check's finding (the API server refuses
        // the object); the model keeps what it can read.
        let source_name = s(&spec, "/sourceRef/name").unwrap_or("");
        let post = spec.get("postBuild");
        let substitute = post
            .and_then(|p| p.get("substitute"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), crate::kustomize::transform::scalar_string(v))).collect())
            .unwrap_or_default();
        let substitute_from = post
            .and_then(|p| p.get("substituteFrom"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| SubstituteFrom {
                kind: e.get("kind").and_then(Value::as_str).unwrap_or("ConfigMap").to_string(),
                name: e.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                optional: e.get("optional").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect();
        let cm = spec.get("commonMetadata");
        let overlay = FluxOverlay {
            target_namespace: s(&spec, "/targetNamespace").filter(|x| !x.is_empty()).map(str::to_string),
            name_prefix: s(&spec, "/namePrefix").map(str::to_string),
            name_suffix: s(&spec, "/nameSuffix").map(str::to_string),
            patches: spec.get("patches").and_then(Value::as_array).cloned().unwrap_or_default(),
            images: spec
                .get("images")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|i| ImageRule {
                    name: s(i, "/name").unwrap_or("").into(),
                    new_name: s(i, "/newName").map(str::to_string),
                    new_tag: i.get("newTag").map(crate::kustomize::transform::scalar_string),
                    digest: s(i, "/digest").map(str::to_string),
                })
                .collect(),
            common_labels: cm.and_then(|c| c.get("labels")).and_then(Value::as_object).cloned().unwrap_or_default(),
            common_annotations: cm
                .and_then(|c| c.get("annotations"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            components: crate::object::strings(spec.get("components")),
            origin: Some(obj.origin.clone()),
        };
        Ok(Kustomization {
            name: obj.name().to_string(),
            namespace: ns.clone(),
            api_version: obj.api_version().to_string(),
            path: normalise_path(s(&spec, "/path").unwrap_or("")),
            source: Ref {
                kind: source_kind.into(),
                namespace: s(&spec, "/sourceRef/namespace").unwrap_or(&ns).to_string(),
                name: source_name.into(),
            },
            depends_on: refs(spec.get("dependsOn"), "Kustomization", &ns),
            interval: s(&spec, "/interval").map(str::to_string),
            retry_interval: s(&spec, "/retryInterval").map(str::to_string),
            timeout: s(&spec, "/timeout").map(str::to_string),
            wait: spec.get("wait").and_then(Value::as_bool).unwrap_or(false),
            health_checks: spec.get("healthChecks").and_then(Value::as_array).cloned().unwrap_or_default(),
            prune: spec.get("prune").and_then(Value::as_bool).unwrap_or(false),
            suspend: spec.get("suspend").and_then(Value::as_bool).unwrap_or(false),
            decryption: spec.get("decryption").is_some_and(|d| !d.is_null()),
            substitute,
            substitute_from,
            overlay,
            origin: obj.origin.clone(),
            raw: v.clone(),
        })
    }

    pub fn id(&self) -> Ref {
        Ref { kind: "Kustomization".into(), namespace: self.namespace.clone(), name: self.name.clone() }
    }

    /// `spec.kubeConfig`: the Secret or ConfigMap (in the Kustomization's namespace) that
    /// names the cluster it applies to, as `(kind, name)`; `None` for this cluster.
    pub fn kube_config(&self) -> Option<(&'static str, String)> {
        let kc = self.raw.pointer("/spec/kubeConfig")?;
        let name = |p: &str| kc.pointer(p).and_then(Value::as_str).map(str::to_string);
        name("/secretRef/name")
            .map(|n| ("Secret", n))
            .or_else(|| name("/configMapRef/name").map(|n| ("ConfigMap", n)))
            .or_else(|| Some(("Secret", String::new())))
    }

    /// Is the object with this `(ns, name)` covered by `substitute: disabled`?
    pub fn substitution_enabled(obj: &Object) -> bool {
        const KEY: &str = "kustomize.toolkit.fluxcd.io/substitute";
        obj.label(KEY) != Some("disabled") && obj.annotation(KEY) != Some("disabled")
    }
}

impl HelmRelease {
    pub fn from_object(obj: &Object) -> Result<Self> {
        let v = &obj.value;
        let ns = namespace_of(obj);
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let (chart, version, source) = if let Some(cs) = spec.pointer("/chart/spec") {
            let src = cs.get("sourceRef").map(|r| Ref {
                kind: s(r, "/kind").unwrap_or("HelmRepository").into(),
                namespace: s(r, "/namespace").unwrap_or(&ns).into(),
                name: s(r, "/name").unwrap_or("").into(),
            });
            (
                s(cs, "/chart").unwrap_or("").to_string(),
                cs.get("version").map(crate::kustomize::transform::scalar_string),
                src,
            )
        } else if let Some(r) = spec.get("chartRef") {
            let src = Ref {
                kind: s(r, "/kind").unwrap_or("OCIRepository").into(),
                namespace: s(r, "/namespace").unwrap_or(&ns).into(),
                name: s(r, "/name").unwrap_or("").into(),
            };
            (src.name.clone(), None, Some(src))
        } else {
            // Neither chart nor chartRef: the API server refuses it (the schema check's finding).
            (String::new(), None, None)
        };
        Ok(HelmRelease {
            name: obj.name().to_string(),
            namespace: ns.clone(),
            api_version: obj.api_version().to_string(),
            chart,
            version,
            source,
            depends_on: refs(spec.get("dependsOn"), "HelmRelease", &ns),
            values: spec.get("values").cloned().unwrap_or(Value::Null),
            origin: obj.origin.clone(),
            raw: v.clone(),
        })
    }

    pub fn id(&self) -> Ref {
        Ref { kind: "HelmRelease".into(), namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

impl Source {
    pub fn from_object(obj: &Object) -> Self {
        Source {
            kind: obj.kind().to_string(),
            name: obj.name().to_string(),
            namespace: namespace_of(obj),
            url: s(&obj.value, "/spec/url").map(str::to_string),
            secret_ref: s(&obj.value, "/spec/secretRef/name").map(str::to_string),
            origin: obj.origin.clone(),
        }
    }
    pub fn id(&self) -> Ref {
        Ref { kind: self.kind.clone(), namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

/// Normalises a Git URL so `ssh://git@host/org/repo.git` and `https://host/org/repo`
/// compare equal: the same repository reached two ways.
pub fn same_repo_url(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim().trim_end_matches('/').trim_end_matches(".git");
        let u = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
        let u = u.split_once('@').map(|(_, r)| r).unwrap_or(u);
        // scp-like `host:org/repo`
        let u = u.replacen(':', "/", 1);
        // drop a port
        let mut parts: Vec<&str> = u.split('/').collect();
        if let Some(h) = parts.first_mut() {
            *h = h.split(':').next().unwrap_or(h);
        }
        parts.join("/").to_lowercase()
    }
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_one_repo_compare_equal() {
        assert!(same_repo_url("ssh://git@github.com/org/repo.git", "https://github.com/org/repo"));
        assert!(same_repo_url("git@github.com:org/repo.git", "https://github.com/org/repo/"));
        assert!(!same_repo_url("https://github.com/org/repo", "https://github.com/org/other"));
    }

    #[test]
    fn unknown_flux_api_version_is_refused() {
        let v: Value = serde_json::json!({"apiVersion":"kustomize.toolkit.fluxcd.io/v9","kind":"Kustomization","metadata":{"name":"a"}});
        let e = classify(&Object::new(v, Loc::new("k.yaml", 4))).unwrap_err();
        assert_eq!(e.location().unwrap(), "k.yaml:4");
        assert!(e.message.contains("kustomize.toolkit.fluxcd.io/v1"), "{e}");
    }
}
