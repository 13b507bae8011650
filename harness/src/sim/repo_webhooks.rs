//! Admission webhooks the repository defines itself (a ValidatingWebhookConfiguration or
//! MutatingWebhookConfiguration among a Kustomization's objects, served by a Deployment the
//! repo also applies: a vendored cert-manager, an in-house policy controller), as opposed
//! to those of catalogue charts. Registered once the Kustomization applying the
//! configuration has applied; serving once the pods behind its Service have started; while
//! registered and not serving, a fail-closed one refuses what it intercepts, in the API
//! server's words.
//!
//! Only what can be told from the manifests is modelled, so nothing is refused on a guess:
//! a webhook with an `objectSelector`, one whose Service or workload is not in the repo,
//! one that is `failurePolicy: Ignore`, or one that does not intercept CREATE or UPDATE is
//! left out.

use super::Simulator;
use crate::model::RepoModel;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct RepoHook {
    pub name: String,
    /// The Kustomization that applies the webhook configuration, and where it is.
    pub owner: usize,
    pub origin: crate::error::Loc,
    pub service: (String, String),
    pub path: String,
    /// (apiGroups, resources, scope) of each rule that intercepts CREATE: what a bootstrap's
    /// applies create.
    rules: Vec<(Vec<String>, Vec<String>, String)>,
    namespace_selector: Option<Value>,
    /// The workloads (Kustomization, object) whose pods the Service selects.
    pub backends: Vec<(usize, usize)>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
}

/// The fail-closed webhooks of the repo that can be modelled (see the module comment).
pub fn find(model: &RepoModel) -> Vec<RepoHook> {
    let mut out = vec![];
    for (k, node) in model.kustomizations.iter().enumerate() {
        for o in &node.objects {
            let is_config = o.group() == "admissionregistration.k8s.io"
                && matches!(o.kind(), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration");
            if !is_config {
                continue;
            }
            for w in o.value.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
                let closed = w.get("failurePolicy").and_then(Value::as_str).unwrap_or("Fail") == "Fail";
                let object_selector =
                    w.get("objectSelector").is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty()));
                let svc = &w["clientConfig"]["service"];
                let (Some(svc_ns), Some(svc_name)) = (svc["namespace"].as_str(), svc["name"].as_str()) else {
                    continue;
                };
                if !closed || object_selector {
                    continue;
                }
                let rules: Vec<(Vec<String>, Vec<String>, String)> = w
                    .get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| strings(&r["operations"]).iter().any(|op| matches!(op.as_str(), "CREATE" | "*")))
                    .map(|r| {
                        let scope = r["scope"].as_str().unwrap_or("*").to_string();
                        (strings(&r["apiGroups"]), strings(&r["resources"]), scope)
                    })
                    .collect();
                let backends = backends(model, svc_ns, svc_name);
                if rules.is_empty() || backends.is_empty() {
                    continue;
                }
                out.push(RepoHook {
                    name: w["name"].as_str().unwrap_or("").to_string(),
                    owner: k,
                    origin: o.origin.clone(),
                    service: (svc_ns.to_string(), svc_name.to_string()),
                    path: svc["path"].as_str().unwrap_or("/").to_string(),
                    rules,
                    namespace_selector: w.get("namespaceSelector").filter(|s| !s.is_null()).cloned(),
                    backends,
                });
            }
        }
    }
    out
}

/// The workloads of the repo whose pod labels the Service `ns/name` selects.
fn backends(model: &RepoModel, ns: &str, name: &str) -> Vec<(usize, usize)> {
    let all = || {
        model
            .kustomizations
            .iter()
            .enumerate()
            .flat_map(|(k, n)| n.objects.iter().enumerate().map(move |(x, o)| (k, x, o)))
    };
    let Some(selector) = all()
        .find(|(_, _, o)| {
            o.kind() == "Service" && o.group().is_empty() && o.name() == name && o.namespace() == Some(ns)
        })
        .and_then(|(_, _, o)| o.value.pointer("/spec/selector").and_then(Value::as_object).cloned())
        .filter(|s| !s.is_empty())
    else {
        return vec![];
    };
    all()
        .filter(|(_, _, o)| {
            o.group() == "apps"
                && matches!(o.kind(), "Deployment" | "StatefulSet" | "DaemonSet")
                && o.namespace() == Some(ns)
                && o.value
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object)
                    .is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
        })
        .map(|(k, x, _)| (k, x))
        .collect()
}

impl RepoHook {
    /// What it intercepts, for people: `certificates in cert-manager.io`.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|(g, r, _)| {
                let g: Vec<&str> = g.iter().map(|g| if g.is_empty() { "core" } else { g.as_str() }).collect();
                format!("{} in {}", r.join(","), g.join(","))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// It intercepts Pods in its own pods' namespace (labelled `labels`), which its
    /// namespaceSelector does not exempt: once its pods are gone, their replacements go
    /// through it and are refused.
    pub fn blocks_own_pods(&self, labels: &serde_json::Map<String, Value>) -> bool {
        self.intercepts("", "Pod")
            && self.namespace_selector.as_ref().is_none_or(|sel| crate::labels::label_selector_matches(sel, labels))
    }

    /// Whether a create of `group`/`kind` (namespaced or not) matches one of its rules:
    /// `*` and `*/*` name every resource, `pods/*` only subresources.
    fn intercepts_scoped(&self, group: &str, kind: &str, namespaced: bool) -> bool {
        let plural = crate::builtin::find(group, kind)
            .map(|b| b.plural.to_string())
            .unwrap_or_else(|| crate::apiserver::store::plural_of(kind));
        self.rules.iter().any(|(groups, resources, scope)| {
            let in_scope = match scope.as_str() {
                "Namespaced" => namespaced,
                "Cluster" => !namespaced,
                _ => true,
            };
            in_scope
                && groups.iter().any(|g| g == "*" || g == group)
                && resources.iter().any(|r| matches!(r.as_str(), "*" | "*/*") || *r == plural)
        })
    }

    fn intercepts(&self, group: &str, kind: &str) -> bool {
        self.intercepts_scoped(group, kind, !crate::object::is_known_cluster_scoped(group, kind))
    }
}

impl Simulator<'_> {
    /// Registered (its configuration applied) and not serving (its pods not up yet).
    fn repo_hook_down(&self, h: &RepoHook) -> bool {
        self.ks[h.owner].applied_at.is_some() && !self.repo_hook_serving(h)
    }

    pub(super) fn repo_hook_serving(&self, h: &RepoHook) -> bool {
        let up = self.network_up()
            && h.backends.iter().all(|&(k, _)| {
                self.ks[k].applied_at.is_some_and(|t| t.max(self.network_since()) + self.sim.pod_start_ms <= self.now)
            });
        // Pods taken down come back at the end of the window, unless the webhook refuses
        // its own new pods: then they never do.
        up && !self.sim.faults.iter().any(|f| {
            matches!(f, super::fault::Fault::WebhookDown { name, from, to }
                if *name == h.name && self.now >= *from && (self.now < *to || self.repo_self_blocks(h)))
        })
    }

    /// It intercepts Pods in the namespace of its own pods, which its selector does not
    /// exempt: once its pods are gone, their replacements go through it.
    pub fn repo_self_blocks(&self, h: &RepoHook) -> bool {
        h.blocks_own_pods(&self.labels_of(&h.service.0))
    }

    /// The repo's webhooks the simulator models.
    pub fn repo_hooks(&self) -> &[RepoHook] {
        &self.repo_hooks
    }

    /// The repo's fail-closed webhook that refuses this write now, if any (its index).
    /// `own_labels`: a Namespace's own labels, which its namespaceSelector is matched on;
    /// other cluster-scoped objects are never skipped by a namespaceSelector.
    pub(super) fn refused_by_repo(
        &self,
        group: &str,
        kind: &str,
        ns: Option<&str>,
        own_labels: Option<&serde_json::Map<String, Value>>,
    ) -> Option<usize> {
        self.repo_hooks.iter().position(|h| {
            h.intercepts_scoped(group, kind, ns.is_some())
                && self.repo_hook_down(h)
                && match (&h.namespace_selector, ns, own_labels) {
                    (Some(sel), Some(ns), _) => crate::labels::label_selector_matches(sel, &self.labels_of(ns)),
                    (Some(sel), None, Some(own)) if kind == "Namespace" => {
                        crate::labels::label_selector_matches(sel, own)
                    }
                    _ => true,
                }
        })
    }

    pub(super) fn repo_webhook_error(&self, id: &str, w: usize) -> String {
        let h = &self.repo_hooks[w];
        let (ns, svc) = &h.service;
        format!(
            "{id} dry-run failed (InternalError): Internal error occurred: failed calling webhook \"{}\": failed to call webhook: Post \"https://{svc}.{ns}.svc:443{}?timeout=10s\": no endpoints available for service \"{svc}\"",
            h.name, h.path
        )
    }
}
