//! kustomize's field transformers: labels, annotations, namespace, name prefix/suffix,
//! images, replicas, and the name-reference fix-up that follows renamed objects.
//! The field lists are kustomize's defaults (its `builtinpluginconsts`).

use serde_json::{Map, Value};

/// Where a transformer writes: `path` segments from the object root (lists are walked
/// element by element), restricted to one group/kind when given.
pub struct FieldSpec {
    pub group: Option<&'static str>,
    pub kind: Option<&'static str>,
    pub path: &'static str,
    pub create: bool,
}

const fn fs(group: Option<&'static str>, kind: Option<&'static str>, path: &'static str, create: bool) -> FieldSpec {
    FieldSpec { group, kind, path, create }
}

impl FieldSpec {
    fn applies(&self, group: &str, kind: &str) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.group.is_none_or(|g| g == group)
    }
}

/// Runs `f` on every value at `spec.path`, creating missing maps when `spec.create`.
pub fn walk(v: &mut Value, path: &[&str], create: bool, f: &mut dyn FnMut(&mut Value)) {
    if let Value::Array(items) = v {
        for item in items {
            walk(item, path, create, f);
        }
        return;
    }
    let Some((first, rest)) = path.split_first() else {
        f(v);
        return;
    };
    let Some(m) = v.as_object_mut() else { return };
    let seg = first.trim_end_matches("[]");
    if !m.contains_key(seg) || m[seg].is_null() {
        if !create || first.ends_with("[]") {
            return;
        }
        m.insert(seg.to_string(), Value::Object(Map::new()));
    }
    walk(m.get_mut(seg).unwrap(), rest, create, f);
}

fn apply_specs(obj: &mut Value, specs: &[FieldSpec], f: &mut dyn FnMut(&mut Value)) {
    let (group, kind) = group_kind(obj);
    for s in specs.iter().filter(|s| s.applies(&group, &kind)) {
        let path: Vec<&str> = s.path.split('/').collect();
        walk(obj, &path, s.create, f);
    }
}

pub fn group_kind(obj: &Value) -> (String, String) {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = crate::object::split_api_version(av).0.to_string();
    (group, obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string())
}

const APPS: Option<&str> = Some("apps");
const BATCH: Option<&str> = Some("batch");

const AFFINITY: [&str; 4] = [
    "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
];

/// commonLabels (and `labels` with includeSelectors): metadata, selectors and templates.
pub fn common_label_specs() -> Vec<FieldSpec> {
    let mut v = vec![
        fs(None, None, "metadata/labels", true),
        fs(Some(""), Some("Service"), "spec/selector", true),
        fs(Some(""), Some("ReplicationController"), "spec/selector", true),
        fs(Some(""), Some("ReplicationController"), "spec/template/metadata/labels", true),
        fs(None, Some("Deployment"), "spec/selector/matchLabels", true),
        fs(None, Some("Deployment"), "spec/template/metadata/labels", true),
        fs(None, Some("ReplicaSet"), "spec/selector/matchLabels", true),
        fs(None, Some("ReplicaSet"), "spec/template/metadata/labels", true),
        fs(None, Some("DaemonSet"), "spec/selector/matchLabels", true),
        fs(None, Some("DaemonSet"), "spec/template/metadata/labels", true),
        fs(APPS, Some("StatefulSet"), "spec/selector/matchLabels", true),
        fs(APPS, Some("StatefulSet"), "spec/template/metadata/labels", true),
        fs(APPS, Some("StatefulSet"), "spec/volumeClaimTemplates[]/metadata/labels", true),
        fs(BATCH, Some("Job"), "spec/selector/matchLabels", false),
        fs(BATCH, Some("Job"), "spec/template/metadata/labels", true),
        fs(BATCH, Some("CronJob"), "spec/jobTemplate/spec/selector/matchLabels", false),
        fs(BATCH, Some("CronJob"), "spec/jobTemplate/metadata/labels", true),
        fs(BATCH, Some("CronJob"), "spec/jobTemplate/spec/template/metadata/labels", true),
        fs(Some("policy"), Some("PodDisruptionBudget"), "spec/selector/matchLabels", false),
        fs(Some("networking.k8s.io"), Some("NetworkPolicy"), "spec/podSelector/matchLabels", false),
        fs(Some("networking.k8s.io"), Some("NetworkPolicy"), "spec/ingress/from/podSelector/matchLabels", false),
        fs(Some("networking.k8s.io"), Some("NetworkPolicy"), "spec/egress/to/podSelector/matchLabels", false),
    ];
    for kind in ["Deployment", "StatefulSet"] {
        for p in AFFINITY {
            v.push(fs(APPS, Some(kind), p, false));
        }
        v.push(fs(APPS, Some(kind), "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels", false));
    }
    v
}

/// `labels` with includeTemplates: metadata plus the pod templates' labels.
pub fn template_label_specs() -> Vec<FieldSpec> {
    common_label_specs()
        .into_iter()
        .filter(|s| s.path == "metadata/labels" || s.path.ends_with("metadata/labels") && s.create)
        .collect()
}

pub fn metadata_label_specs() -> Vec<FieldSpec> {
    vec![fs(None, None, "metadata/labels", true)]
}

pub fn annotation_specs() -> Vec<FieldSpec> {
    let mut v = vec![fs(None, None, "metadata/annotations", true)];
    for (g, k) in [
        (Some(""), "ReplicationController"),
        (None, "Deployment"),
        (None, "ReplicaSet"),
        (None, "DaemonSet"),
        (APPS, "StatefulSet"),
        (BATCH, "Job"),
    ] {
        v.push(fs(g, Some(k), "spec/template/metadata/annotations", true));
    }
    v.push(fs(BATCH, Some("CronJob"), "spec/jobTemplate/metadata/annotations", true));
    v.push(fs(BATCH, Some("CronJob"), "spec/jobTemplate/spec/template/metadata/annotations", true));
    v
}

/// Adds `pairs` to every map at `specs`. Values are written as strings, as kustomize does.
pub fn add_pairs(obj: &mut Value, pairs: &Map<String, Value>, specs: &[FieldSpec]) {
    apply_specs(obj, specs, &mut |target| {
        if target.is_null() {
            *target = Value::Object(Map::new());
        }
        if let Some(m) = target.as_object_mut() {
            for (k, v) in pairs {
                m.insert(k.clone(), Value::String(scalar_string(v)));
            }
        }
    });
}

pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Sets the namespace of one object and the namespaced references kustomize follows.
pub fn set_namespace(obj: &mut Value, ns: &str, builtin_cluster_scoped: bool, old_ns: Option<&str>) {
    let (group, kind) = group_kind(obj);
    if !builtin_cluster_scoped {
        crate::object::metadata_mut(obj).insert("namespace".into(), Value::String(ns.into()));
    }
    match (group.as_str(), kind.as_str()) {
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    if s.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
                        continue;
                    }
                    let cur = s.get("namespace").and_then(Value::as_str);
                    // kustomize's default (`defaultOnly`): only subjects in the old namespace
                    // or in `default` follow the move.
                    if cur.is_none() || cur == Some("default") || cur == old_ns {
                        s["namespace"] = Value::String(ns.into());
                    }
                }
            }
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            walk(obj, &["webhooks", "clientConfig", "service", "namespace"], false, &mut |v| {
                *v = Value::String(ns.into())
            });
        }
        ("apiregistration.k8s.io", "APIService") => {
            walk(obj, &["spec", "service", "namespace"], false, &mut |v| *v = Value::String(ns.into()));
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            walk(obj, &["spec", "conversion", "webhook", "clientConfig", "service", "namespace"], false, &mut |v| {
                *v = Value::String(ns.into())
            });
        }
        _ => {}
    }
}

/// One `images:` entry of a kustomization (or of a Flux Kustomization's `spec.images`).
#[derive(Debug, Clone, Default)]
pub struct ImageRule {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

/// Splits an image reference into name, tag and digest.
fn parse_image(image: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (rest[..slash + i].to_string(), Some(rest[slash + i + 1..].to_string()), digest),
        None => (rest.to_string(), None, digest),
    }
}

fn rewrite_image(image: &str, rules: &[ImageRule]) -> Option<String> {
    let (name, tag, digest) = parse_image(image);
    let rule = rules.iter().find(|r| r.name == name)?;
    let name = rule.new_name.clone().unwrap_or(name);
    let (tag, digest) = match (&rule.new_tag, &rule.digest) {
        (Some(t), Some(d)) => (Some(t.clone()), Some(d.clone())),
        (Some(t), None) => (Some(t.clone()), None),
        (None, Some(d)) => (None, Some(d.clone())),
        (None, None) => (tag, digest),
    };
    let mut out = name;
    if let Some(t) = tag {
        out = format!("{out}:{t}");
    }
    if let Some(d) = digest {
        out = format!("{out}@{d}");
    }
    Some(out)
}

/// kustomize's images transformer looks for `containers` and `initContainers` lists
/// anywhere in any object, custom resources included.
pub fn set_images(v: &mut Value, rules: &[ImageRule]) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if (k == "containers" || k == "initContainers") && child.is_array() {
                    for c in child.as_array_mut().unwrap() {
                        if let Some(img) = c.get("image").and_then(Value::as_str)
                            && let Some(new) = rewrite_image(img, rules)
                        {
                            c["image"] = Value::String(new);
                        }
                    }
                }
                set_images(child, rules);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| set_images(c, rules)),
        _ => {}
    }
}

const POD_SPEC_PREFIXES: [(&str, &str); 8] = [
    ("Pod", "spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicaSet", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
    ("ReplicationController", "spec/template/spec"),
];

/// The reference paths kustomize follows by default, for the kinds real repos rename
/// (generated ConfigMaps and Secrets above all, and everything under a name prefix).
pub fn name_refs() -> &'static [(String, Option<String>, String)] {
    static REFS: std::sync::OnceLock<Vec<(String, Option<String>, String)>> = std::sync::OnceLock::new();
    REFS.get_or_init(build_name_refs)
}

fn build_name_refs() -> Vec<(String, Option<String>, String)> {
    let mut out: Vec<(String, Option<String>, String)> = vec![];
    let pod_refs: [(&str, &str); 14] = [
        ("ConfigMap", "volumes/configMap/name"),
        ("ConfigMap", "volumes/projected/sources/configMap/name"),
        ("ConfigMap", "containers/env/valueFrom/configMapKeyRef/name"),
        ("ConfigMap", "initContainers/env/valueFrom/configMapKeyRef/name"),
        ("ConfigMap", "containers/envFrom/configMapRef/name"),
        ("ConfigMap", "initContainers/envFrom/configMapRef/name"),
        ("Secret", "volumes/secret/secretName"),
        ("Secret", "volumes/projected/sources/secret/name"),
        ("Secret", "containers/env/valueFrom/secretKeyRef/name"),
        ("Secret", "initContainers/env/valueFrom/secretKeyRef/name"),
        ("Secret", "containers/envFrom/secretRef/name"),
        ("Secret", "initContainers/envFrom/secretRef/name"),
        ("Secret", "imagePullSecrets/name"),
        ("ServiceAccount", "serviceAccountName"),
    ];
    for (kind, prefix) in POD_SPEC_PREFIXES {
        for (target, path) in pod_refs {
            out.push((target.into(), Some(kind.into()), format!("{prefix}/{path}")));
        }
        out.push((
            "PersistentVolumeClaim".into(),
            Some(kind.into()),
            format!("{prefix}/volumes/persistentVolumeClaim/claimName"),
        ));
    }
    for (target, referrer, path) in [
        ("Secret", "Ingress", "spec/tls/secretName"),
        ("Secret", "ServiceAccount", "imagePullSecrets/name"),
        ("Secret", "ServiceAccount", "secrets/name"),
        ("Service", "Ingress", "spec/rules/http/paths/backend/service/name"),
        ("Service", "Ingress", "spec/defaultBackend/service/name"),
        ("Service", "StatefulSet", "spec/serviceName"),
        ("Deployment", "HorizontalPodAutoscaler", "spec/scaleTargetRef/name"),
        ("StatefulSet", "HorizontalPodAutoscaler", "spec/scaleTargetRef/name"),
        ("ServiceAccount", "RoleBinding", "subjects/name"),
        ("ServiceAccount", "ClusterRoleBinding", "subjects/name"),
        ("Role", "RoleBinding", "roleRef/name"),
        ("ClusterRole", "RoleBinding", "roleRef/name"),
        ("ClusterRole", "ClusterRoleBinding", "roleRef/name"),
        ("PriorityClass", "Deployment", "spec/template/spec/priorityClassName"),
        ("StorageClass", "PersistentVolumeClaim", "spec/storageClassName"),
    ] {
        out.push((target.into(), Some(referrer.into()), path.into()));
    }
    out
}

/// Rewrites references to a renamed object in `referrer`.
pub fn fix_reference(
    referrer: &mut Value,
    target_kind: &str,
    old: &str,
    new: &str,
    refs: &[(String, Option<String>, String)],
) {
    let (_, kind) = group_kind(referrer);
    for (tk, rk, path) in refs {
        if tk != target_kind || rk.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        let segs: Vec<&str> = path.split('/').collect();
        // Role bindings name their subjects and roles with a kind beside the name.
        let (last, parent) = segs.split_last().unwrap();
        walk(referrer, parent, false, &mut |m| {
            if let Some(obj) = m.as_object_mut() {
                if matches!(*parent.last().unwrap_or(&""), "subjects" | "roleRef")
                    && obj.get("kind").and_then(Value::as_str) != Some(target_kind)
                {
                    return;
                }
                if obj.get(*last).and_then(Value::as_str) == Some(old) {
                    obj.insert(last.to_string(), Value::String(new.into()));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_are_rewritten_by_name() {
        let rules = vec![ImageRule { name: "ghcr.io/x/app".into(), new_tag: Some("v2".into()), ..Default::default() }];
        let mut v =
            json!({"spec":{"template":{"spec":{"containers":[{"image":"ghcr.io/x/app:latest"},{"image":"other:1"}]}}}});
        set_images(&mut v, &rules);
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/x/app:v2");
        assert_eq!(v["spec"]["template"]["spec"]["containers"][1]["image"], "other:1");
        assert_eq!(
            parse_image("localhost:5000/a/b:1@sha256:x"),
            ("localhost:5000/a/b".into(), Some("1".into()), Some("sha256:x".into()))
        );
    }

    #[test]
    fn labels_reach_selectors_only_with_the_common_specs() {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},"spec":{"selector":{"matchLabels":{"x":"1"}},"template":{"metadata":{"labels":{"x":"1"}}}}});
        let pairs = json!({"env":"prod"}).as_object().unwrap().clone();
        let mut plain = d.clone();
        add_pairs(&mut plain, &pairs, &metadata_label_specs());
        assert_eq!(plain["spec"]["selector"]["matchLabels"], json!({"x":"1"}));
        add_pairs(&mut d, &pairs, &common_label_specs());
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"x":"1","env":"prod"}));
        assert_eq!(d["metadata"]["labels"], json!({"env":"prod"}));
    }
}
