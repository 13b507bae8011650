//! Discovery (legacy and aggregated), `/version` and the OpenAPI v3 documents kubectl needs
//! for `apply --server-side`. Pure: built from the store's resources.

use super::store::Resource;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn short_names(kind: &str) -> Vec<String> {
    let s: &[&str] = match kind {
        "Namespace" => &["ns"],
        "ConfigMap" => &["cm"],
        "Service" => &["svc"],
        "Pod" => &["po"],
        "Deployment" => &["deploy"],
        "DaemonSet" => &["ds"],
        "StatefulSet" => &["sts"],
        "ServiceAccount" => &["sa"],
        "PersistentVolumeClaim" => &["pvc"],
        "CustomResourceDefinition" => &["crd", "crds"],
        "Kustomization" => &["ks"],
        "HelmRelease" => &["hr"],
        "GitRepository" => &["gitrepo"],
        "HelmRepository" => &["helmrepo"],
        "OCIRepository" => &["ocirepo"],
        "HelmChart" => &["hc"],
        _ => &[],
    };
    s.iter().map(|x| x.to_string()).collect()
}

/// Every resource served from the start: the built-in kinds of k8s-openapi. Flux's kinds
/// are served once its CRDs are registered ([`flux_crds`]), as on any cluster.
pub fn static_resources() -> Vec<Resource> {
    crate::builtin::BUILTIN_KINDS
        .iter()
        .map(|k| Resource {
            group: k.group.into(),
            version: k.version.into(),
            kind: k.kind.into(),
            plural: k.plural.into(),
            namespaced: k.namespaced,
            short_names: short_names(k.kind),
        })
        .collect()
}

/// Flux's kinds (group, version, kind, plural), as its CRDs serve them.
pub const FLUX_KINDS: [(&str, &str, &str, &str); 11] = [
    ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"),
    ("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"),
    ("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
    ("source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories"),
    ("source.toolkit.fluxcd.io", "v1", "HelmChart", "helmcharts"),
    ("source.toolkit.fluxcd.io", "v1", "OCIRepository", "ocirepositories"),
    ("source.toolkit.fluxcd.io", "v1", "Bucket", "buckets"),
    ("source.toolkit.fluxcd.io", "v1", "ExternalArtifact", "externalartifacts"),
    ("notification.toolkit.fluxcd.io", "v1beta3", "Alert", "alerts"),
    ("notification.toolkit.fluxcd.io", "v1beta3", "Provider", "providers"),
    ("notification.toolkit.fluxcd.io", "v1", "Receiver", "receivers"),
];

/// Flux's CustomResourceDefinitions as `flux install` registers them: namespaced, with
/// the OpenAPI v3 schema of each spec that the API server validates (the `schema` module's,
/// written from Flux's CRDs), and the short names kubectl knows.
pub fn flux_crds() -> Vec<Value> {
    FLUX_KINDS
        .iter()
        .map(|(group, version, kind, plural)| {
            let mut schema = crate::schema::flux_openapi(group, version, kind)
                .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
            if let Some(m) = schema.as_object_mut() {
                // A CRD's schema does not carry the kind: the API server adds it to the
                // published OpenAPI document.
                m.remove("x-kubernetes-group-version-kind");
            }
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{group}"), "labels": {"app.kubernetes.io/part-of": "flux"}},
                "spec": {
                    "group": group,
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                              "listKind": format!("{kind}List"), "shortNames": short_names(kind)},
                    "scope": "Namespaced",
                    "versions": [{"name": version, "served": true, "storage": true,
                                  "schema": {"openAPIV3Schema": schema},
                                  "subresources": {"status": {}}}]
                }
            })
        })
        .collect()
}

pub fn version() -> Value {
    // The minor decides which kubectl the gcloud dispatcher runs: stay on 1.32.
    json!({"major":"1","minor":"32","gitVersion":"v1.32.0-flux-harness-sim","gitCommit":"0000000000000000000000000000000000000000","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.23.3","compiler":"gc","platform":"linux/amd64"})
}

fn by_group(resources: &[Resource]) -> BTreeMap<String, BTreeMap<String, Vec<&Resource>>> {
    let mut m: BTreeMap<String, BTreeMap<String, Vec<&Resource>>> = BTreeMap::new();
    for r in resources {
        m.entry(r.group.clone()).or_default().entry(r.version.clone()).or_default().push(r);
    }
    m
}

/// The version kube-apiserver would prefer: GA over beta over alpha, highest first.
fn preferred(versions: &[&String]) -> String {
    let rank = |v: &str| -> (u8, u32, u32) {
        let n: u32 = v
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let level = if v.contains("alpha") {
            0
        } else if v.contains("beta") {
            1
        } else {
            2
        };
        let sub: u32 = v.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|x| x.parse().ok()).unwrap_or(0);
        (level, n, sub)
    };
    versions.iter().max_by_key(|v| rank(v)).map(|v| v.to_string()).unwrap_or_default()
}

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn legacy_resource(r: &Resource) -> Vec<Value> {
    vec![
        json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names}),
        json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
    ]
}

pub fn legacy_api() -> Value {
    json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:6443"}]})
}

pub fn legacy_apis(resources: &[Resource]) -> Value {
    let groups: Vec<Value> = by_group(resources)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let names: Vec<&String> = versions.keys().collect();
            let pref = preferred(&names);
            json!({"name": g,
                "versions": names.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                "preferredVersion": {"groupVersion": format!("{g}/{pref}"), "version": pref}})
        })
        .collect();
    json!({"kind":"APIGroupList","apiVersion":"v1","groups": groups})
}

pub fn resource_list(resources: &[Resource], group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = resources.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion": gv, "resources": rs.iter().flat_map(|r| legacy_resource(r)).collect::<Vec<_>>()}),
    )
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`), for `/api` (core) or `/apis`.
pub fn aggregated(resources: &[Resource], core: bool) -> Value {
    let items: Vec<Value> = by_group(resources)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let names: Vec<&String> = versions.keys().collect();
            let pref = preferred(&names);
            let mut vs: Vec<(&String, &Vec<&Resource>)> = versions.iter().collect();
            vs.sort_by_key(|(v, _)| if **v == pref { 0 } else { 1 });
            let metadata = if core { json!({}) } else { json!({"name": g}) };
            json!({"metadata": metadata, "versions": vs.iter().map(|(v, rs)| json!({
                "version": v, "freshness": "Current",
                "resources": rs.iter().map(|r| json!({
                    "resource": r.plural,
                    "responseKind": {"group": "", "version": "", "kind": r.kind},
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.kind.to_lowercase(),
                    "shortNames": r.short_names,
                    "verbs": VERBS,
                    "subresources": [{"subresource": "status", "responseKind": {"group": "", "version": "", "kind": r.kind}, "verbs": ["get", "patch", "update"]}]
                })).collect::<Vec<_>>()
            })).collect::<Vec<_>>()})
        })
        .collect();
    json!({"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items": items})
}

pub fn openapi_index(resources: &[Resource]) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, versions) in by_group(resources) {
        for v in versions.keys() {
            let p = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=SIM")}));
        }
    }
    json!({"paths": paths})
}

/// The group-version document: a PATCH operation per resource, with the object-valued
/// `x-kubernetes-group-version-kind` and the `fieldValidation` parameter kubectl checks for.
pub fn openapi_gv(resources: &[Resource], group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = resources.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for r in rs {
        if let Some(schema) = crate::schema::flux_openapi(group, version, &r.kind) {
            // Named as the CRD's schema is (reversed group, version, kind).
            let reversed: Vec<&str> = group.split('.').rev().collect();
            schemas.insert(format!("{}.{version}.{}", reversed.join("."), r.kind), schema);
        }
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(
            path,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                               {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                               {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                               {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}}}}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "components": {"schemas": schemas}, "paths": paths}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_versions() {
        let (v1, v2b, v2) = ("v1".to_string(), "v2beta2".to_string(), "v2".to_string());
        assert_eq!(preferred(&[&v1, &v2]), "v2");
        assert_eq!(preferred(&[&v1, &v2b]), "v1");
    }

    #[test]
    fn every_listed_group_version_is_served() {
        let mut st = crate::apiserver::store::Store::new(static_resources(), 100);
        let crd = st.resource_for_kind("apiextensions.k8s.io", "CustomResourceDefinition").unwrap();
        for c in flux_crds() {
            st.put(&crd, "", c, "2026-01-01T00:00:00Z");
        }
        let rs = st.resources();
        assert!(rs.iter().any(|r| r.kind == "Kustomization" && r.short_names.contains(&"ks".to_string())));
        assert!(
            !static_resources().iter().any(|r| r.group.ends_with("fluxcd.io")),
            "Flux is served only once installed"
        );
        let apis = legacy_apis(&rs);
        for g in apis["groups"].as_array().unwrap() {
            for v in g["versions"].as_array().unwrap() {
                let (grp, ver) = v["groupVersion"].as_str().unwrap().rsplit_once('/').unwrap();
                assert!(resource_list(&rs, grp, ver).is_some(), "{grp}/{ver}");
            }
        }
        assert!(
            resource_list(&rs, "", "v1").unwrap()["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "namespaces" && r["namespaced"] == false)
        );
    }
}
