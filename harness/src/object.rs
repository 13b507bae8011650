//! A Kubernetes object as rendered, with the file and line it came from.

use crate::error::Loc;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub value: Value,
    pub origin: Loc,
}

impl Object {
    pub fn new(value: Value, origin: Loc) -> Self {
        Object { value, origin }
    }

    pub fn api_version(&self) -> &str {
        str_at(&self.value, &["apiVersion"]).unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"]).unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        str_at(&self.value, &["metadata", "namespace"]).filter(|s| !s.is_empty())
    }
    /// API group: `""` for the core group.
    pub fn group(&self) -> &str {
        split_api_version(self.api_version()).0
    }
    pub fn version(&self) -> &str {
        split_api_version(self.api_version()).1
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.value.get("metadata")?.get("labels")?.get(key)?.as_str()
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value.get("metadata")?.get("annotations")?.get(key)?.as_str()
    }

    pub fn set_name(&mut self, name: &str) {
        metadata_mut(&mut self.value).insert("name".into(), Value::String(name.into()));
    }
    pub fn set_namespace(&mut self, ns: &str) {
        metadata_mut(&mut self.value).insert("namespace".into(), Value::String(ns.into()));
    }

    /// `Kind/namespace/name` (or `Kind/name`), the way Flux names objects in messages.
    pub fn display_id(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{}/{}", self.kind(), ns, self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }

    /// Identity used for kustomize's "same object" checks: group, kind, namespace, name.
    pub fn id(&self) -> ResId {
        ResId {
            group: self.group().to_string(),
            kind: self.kind().to_string(),
            namespace: self.namespace().unwrap_or("").to_string(),
            name: self.name().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

pub fn split_api_version(av: &str) -> (&str, &str) {
    match av.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    }
}

/// The strings of a YAML list (a missing field or a non-list is empty; non-strings are skipped,
/// as the API server would have rejected them).
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

pub fn metadata_mut(v: &mut Value) -> &mut Map<String, Value> {
    let obj = v.as_object_mut().expect("objects are maps");
    let md = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !md.is_object() {
        *md = Value::Object(Map::new());
    }
    md.as_object_mut().unwrap()
}

/// The map at `path`, created (with empty maps) when `create` is set.
pub fn map_at_mut<'a>(v: &'a mut Value, path: &[&str], create: bool) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for p in path {
        let obj = cur.as_object_mut()?;
        if !obj.contains_key(*p) {
            if !create {
                return None;
            }
            obj.insert((*p).to_string(), Value::Object(Map::new()));
        }
        cur = obj.get_mut(*p).unwrap();
        if cur.is_null() && create {
            *cur = Value::Object(Map::new());
        }
    }
    cur.as_object_mut()
}

/// Built-in Kubernetes kinds that are cluster-scoped (from k8s-openapi). This is what
/// kustomize knows from its embedded schema: it sets `namespace:` on every other kind,
/// custom resources included.
pub fn is_builtin_cluster_scoped(group: &str, kind: &str) -> bool {
    crate::builtin::find(group, kind).is_some_and(|k| !k.namespaced)
}

/// Cluster-scoped as far as the harness knows: built-in kinds and the custom resources of
/// well-known projects. CRDs rendered in the repo refine this in the model (`spec.scope`).
pub fn is_known_cluster_scoped(group: &str, kind: &str) -> bool {
    is_builtin_cluster_scoped(group, kind)
        || matches!(
            (group, kind),
            ("gateway.networking.k8s.io", "GatewayClass")
                | ("cert-manager.io", "ClusterIssuer")
                | (
                    "cilium.io",
                    "CiliumClusterwideNetworkPolicy"
                        | "CiliumNode"
                        | "CiliumIdentity"
                        | "CiliumLoadBalancerIPPool"
                        | "CiliumBGPClusterConfig"
                )
                | ("kyverno.io", "ClusterPolicy" | "ClusterCleanupPolicy")
                | ("templates.gatekeeper.sh", "ConstraintTemplate")
                | ("constraints.gatekeeper.sh", _)
                | ("mutations.gatekeeper.sh", "Assign" | "AssignMetadata" | "ModifySet")
                | ("external-secrets.io", "ClusterSecretStore" | "ClusterExternalSecret")
                | (
                    "aquasecurity.github.io",
                    "ClusterComplianceReport"
                        | "ClusterConfigAuditReport"
                        | "ClusterRbacAssessmentReport"
                        | "ClusterVulnerabilityReport"
                )
        )
}

/// Groups served by the Kubernetes API server itself (kinds kustomize has a schema for).
pub fn is_builtin_group(group: &str) -> bool {
    crate::builtin::is_builtin_group(group)
}

pub fn is_builtin_kind(group: &str, kind: &str) -> bool {
    crate::builtin::find(group, kind).is_some()
}

/// Helm's values merge: maps merge key by key, anything else is replaced.
pub fn deep_merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into.as_object_mut(), from.as_object()) {
        (Some(a), Some(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => deep_merge(x, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ if !from.is_null() => *into = from.clone(),
        _ => {}
    }
}
