//! The object store behind the simulated API server: objects by resource, namespace and
//! name, a global resourceVersion, and a bounded log of events that watches replay from.
//! Pure: no IO and no clock (timestamps are passed in).

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};

/// A served resource: group/version/kind with its plural and scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    /// `kustomizations.kustomize.toolkit.fluxcd.io`, as the API server names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub object: Value,
}

type Key = (String, String, String, String);

pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Event>,
    log_cap: usize,
    /// Resources served because of a CRD in the store: (group, plural) → resource.
    crd_resources: BTreeMap<(String, String), Resource>,
    static_resources: Vec<Resource>,
}

pub fn key(group: &str, plural: &str, ns: &str, name: &str) -> Key {
    (group.to_string(), plural.to_string(), ns.to_string(), name.to_string())
}

impl Store {
    pub fn new(static_resources: Vec<Resource>, log_cap: usize) -> Self {
        Store {
            rv: 100,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_cap,
            crd_resources: BTreeMap::new(),
            static_resources,
        }
    }

    /// How many events watches can resume from (older resourceVersions get 410 Gone).
    pub fn set_log_cap(&mut self, cap: usize) {
        self.log_cap = cap.max(1);
        while self.log.len() > self.log_cap {
            self.log.pop_front();
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can still resume from.
    pub fn oldest_rv(&self) -> u64 {
        self.log.front().map(|e| e.rv - 1).unwrap_or(self.rv)
    }

    pub fn resources(&self) -> Vec<Resource> {
        let mut v = self.static_resources.clone();
        v.extend(self.crd_resources.values().cloned());
        v
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.static_resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.version == version)
            .cloned()
            .or_else(|| {
                self.crd_resources
                    .get(&(group.to_string(), plural.to_string()))
                    .filter(|r| r.version == version)
                    .cloned()
            })
    }

    /// The resource serving a group/kind (any version), for objects written by the simulator.
    pub fn resource_for_kind(&self, group: &str, kind: &str) -> Option<Resource> {
        self.static_resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .cloned()
            .or_else(|| self.crd_resources.values().find(|r| r.group == group && r.kind == kind).cloned())
    }

    pub fn get(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(group, plural, ns, name))
    }

    pub fn list(&self, group: &str, plural: &str, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .range(key(group, plural, "", "")..)
            .take_while(|((g, p, _, _), _)| g == group && p == plural)
            .filter(|((_, _, n, _), _)| ns.is_none_or(|x| x == n))
            .map(|(_, v)| v)
            .collect()
    }

    /// Creates or replaces an object; sets resourceVersion and keeps uid, creation time
    /// and generation rules (generation moves when `spec` changes). Returns the stored object.
    pub fn put(&mut self, res: &Resource, ns: &str, mut obj: Value, now: &str) -> (EventType, Value) {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let k = key(&res.group, &res.plural, ns, &name);
        let prev = self.objects.get(&k).cloned();
        self.rv += 1;
        let rv = self.rv;
        obj["apiVersion"] = Value::String(res.api_version());
        obj["kind"] = Value::String(res.kind.clone());
        let md = crate::object::metadata_mut(&mut obj);
        if res.namespaced {
            md.insert("namespace".into(), Value::String(ns.into()));
        } else {
            md.remove("namespace");
        }
        md.insert("resourceVersion".into(), Value::String(rv.to_string()));
        let (uid, created, generation) = match &prev {
            Some(p) => (
                p.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                p.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
                p.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1),
            ),
            None => (Value::String(format!("00000000-0000-4000-8000-{rv:012}")), Value::String(now.into()), 0),
        };
        md.insert("uid".into(), uid);
        md.insert("creationTimestamp".into(), created);
        let spec_changed = prev.as_ref().map(|p| p.get("spec") != obj.get("spec")).unwrap_or(true);
        let gen_val = if spec_changed { generation + 1 } else { generation };
        crate::object::metadata_mut(&mut obj).insert("generation".into(), json!(gen_val.max(1)));
        let is_crd = res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition";
        if is_crd && !has_condition(&obj, "Established") {
            // apiextensions-apiserver accepts the names and establishes a CRD at once; a
            // client that waits for `condition=Established` (kubectl, Flux) sees it.
            if !obj["status"].is_object() {
                obj["status"] = json!({});
            }
            obj["status"]["conditions"] = json!([
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
            ]);
            obj["status"]["acceptedNames"] = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
        }
        let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
        self.objects.insert(k, obj.clone());
        self.record(kind, res, ns, obj.clone());
        if is_crd {
            self.register_crd(&obj);
        }
        (kind, obj)
    }

    pub fn delete(&mut self, res: &Resource, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self.objects.remove(&key(&res.group, &res.plural, ns, name))?;
        self.rv += 1;
        crate::object::metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        self.record(EventType::Deleted, res, ns, obj.clone());
        if res.kind == "CustomResourceDefinition" {
            let g = obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
            let p = obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
            self.crd_resources.remove(&(g, p));
        }
        Some(obj)
    }

    fn record(&mut self, kind: EventType, res: &Resource, ns: &str, object: Value) {
        self.log.push_back(Event {
            rv: self.rv,
            kind,
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: ns.into(),
            object,
        });
        while self.log.len() > self.log_cap {
            self.log.pop_front();
        }
    }

    /// Events after `rv`, or `None` when `rv` is older than the log keeps (410 Gone).
    pub fn events_since(&self, rv: u64) -> Option<Vec<Event>> {
        if rv < self.oldest_rv() {
            return None;
        }
        Some(self.log.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    fn register_crd(&mut self, crd: &Value) {
        let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let version = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| vs.iter().find(|v| v.get("storage") == Some(&Value::Bool(true))).or(vs.first()))
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_string();
        let res = Resource {
            group: s("/spec/group"),
            version,
            kind: s("/spec/names/kind"),
            plural: s("/spec/names/plural"),
            namespaced: s("/spec/scope") != "Cluster",
            short_names: crate::object::strings(crd.pointer("/spec/names/shortNames")),
        };
        if !res.group.is_empty() && !res.plural.is_empty() {
            self.crd_resources.insert((res.group.clone(), res.plural.clone()), res);
        }
    }
}

fn has_condition(obj: &Value, ctype: &str) -> bool {
    obj.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["type"] == ctype))
}

/// A minimal CustomResourceDefinition for a kind, as charts and operators create them.
/// The plural a CRD author would choose (`policy` → `policies`, `ingress` → `ingresses`).
pub fn plural_of(kind: &str) -> String {
    let k = kind.to_lowercase();
    let vowel_y = k.len() >= 2 && matches!(k.as_bytes()[k.len() - 2], b'a' | b'e' | b'i' | b'o' | b'u');
    if k.ends_with('y') && !vowel_y {
        format!("{}ies", &k[..k.len() - 1])
    } else if k.ends_with('s') || k.ends_with('x') || k.ends_with("ch") || k.ends_with("sh") {
        format!("{k}es")
    } else {
        format!("{k}s")
    }
}

pub fn synthetic_crd(group: &str, kind: &str, namespaced: bool) -> Value {
    let plural = plural_of(kind);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        },
        "status": {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]}
    })
}

/// The leaf field paths of an applied object (`.spec.replicas`), metadata identity and
/// status aside: what a server-side apply manager owns.
pub fn leaf_paths(v: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, x) in m {
                    walk(x, &format!("{path}.{k}"), out);
                }
            }
            _ => out.push(path.to_string()),
        }
    }
    let mut out = vec![];
    if let Some(m) = v.as_object() {
        for (k, x) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            if k == "metadata" {
                for (mk, mx) in x.as_object().into_iter().flatten() {
                    if matches!(mk.as_str(), "labels" | "annotations") {
                        walk(mx, &format!(".metadata.{mk}"), &mut out);
                    }
                }
                continue;
            }
            walk(x, &format!(".{k}"), &mut out);
        }
    }
    out.sort();
    out
}

/// Server-side apply ownership, kept in `metadata.managedFields` as a simplified
/// `fieldsV1`: each Apply manager with the leaf paths it set. Returns the conflicting
/// (manager, path) pairs when `force` is off; else takes the fields over.
pub fn apply_ownership(
    obj: &mut Value,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<(), Vec<(String, String)>> {
    let mine = leaf_paths(applied);
    let mut managers: Vec<(String, Vec<String>)> = current
        .and_then(|c| c.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m.get("manager")?.as_str()?.to_string();
            let paths = m
                .pointer("/fieldsV1/paths")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            Some((name, paths))
        })
        .collect();
    let value_at = |v: Option<&Value>, path: &str| -> Option<Value> {
        let ptr = path.replace('.', "/");
        v.and_then(|v| v.pointer(&ptr)).cloned()
    };
    let mut conflicts = vec![];
    for (other, paths) in &managers {
        if other == manager {
            continue;
        }
        for p in paths.iter().filter(|p| mine.contains(p)) {
            if value_at(current, p) != value_at(Some(applied), p) {
                conflicts.push((other.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (other, paths) in managers.iter_mut() {
        if other != manager {
            paths.retain(|p| !mine.contains(p));
        }
    }
    managers.retain(|(m, p)| m != manager && !p.is_empty());
    managers.push((manager.to_string(), mine));
    let mf: Vec<Value> = managers
        .into_iter()
        .map(|(m, p)| json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"paths": p}}))
        .collect();
    crate::object::metadata_mut(obj).insert("managedFields".into(), Value::Array(mf));
    Ok(())
}

/// Merge patch (RFC 7386).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(p)) => {
            let mut m = Value::Object(Map::new());
            merge_patch(&mut m, &Value::Object(p.clone()));
            *target = m;
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> Resource {
        Resource {
            group: "".into(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
            short_names: vec![],
        }
    }

    #[test]
    fn put_sets_versions_and_the_log_expires() {
        let mut s = Store::new(vec![cm()], 2);
        let (k, o) = s.put(&cm(), "a", json!({"metadata":{"name":"x"},"data":{"k":"v"}}), "2026-01-01T00:00:00Z");
        assert_eq!(k, EventType::Added);
        assert_eq!(o["metadata"]["namespace"], "a");
        let rv1: u64 = o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        s.put(&cm(), "a", json!({"metadata":{"name":"x"},"data":{"k":"w"}}), "t");
        s.put(&cm(), "a", json!({"metadata":{"name":"y"}}), "t");
        assert!(s.events_since(rv1 - 1).is_none(), "older than the log: Gone");
        assert_eq!(s.events_since(rv1).unwrap().len(), 2);
        assert_eq!(s.list("", "configmaps", Some("a")).len(), 2);
        assert_eq!(s.get("", "configmaps", "a", "x").unwrap()["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn crds_add_and_remove_resources() {
        let crd_res = Resource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
            namespaced: false,
            short_names: vec![],
        };
        let mut s = Store::new(vec![crd_res.clone()], 100);
        s.put(&crd_res, "", synthetic_crd("example.com", "Widget", true), "t");
        assert_eq!(s.resource("example.com", "v1", "widgets").unwrap().kind, "Widget");
        s.delete(&crd_res, "", "widgets.example.com");
        assert!(s.resource("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn plurals() {
        assert_eq!(plural_of("CiliumNetworkPolicy"), "ciliumnetworkpolicies");
        assert_eq!(plural_of("Gateway"), "gateways");
        assert_eq!(plural_of("Ingress"), "ingresses");
        assert_eq!(plural_of("Certificate"), "certificates");
    }

    #[test]
    fn apply_conflicts_between_managers() {
        let mut obj = json!({"metadata": {"name": "x"}, "data": {"a": "1"}});
        let first = json!({"metadata": {"name": "x"}, "data": {"a": "1"}});
        apply_ownership(&mut obj, None, &first, "flux", false).unwrap();
        let current = obj.clone();
        let theirs = json!({"metadata": {"name": "x"}, "data": {"a": "2", "b": "x"}});
        let conflicts = apply_ownership(&mut obj.clone(), Some(&current), &theirs, "kubectl", false).unwrap_err();
        assert_eq!(conflicts, vec![("flux".to_string(), ".data.a".to_string())]);
        // Same value: no conflict (shared ownership); force: taken over.
        apply_ownership(&mut obj.clone(), Some(&current), &first, "kubectl", false).unwrap();
        apply_ownership(&mut obj, Some(&current), &theirs, "kubectl", true).unwrap();
        let mf = obj["metadata"]["managedFields"].as_array().unwrap();
        assert!(mf.iter().all(|m| m["manager"] != "flux"), "flux lost its only field: {mf:?}");
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 4}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 4, "d": 3}, "e": [1]}));
    }
}
