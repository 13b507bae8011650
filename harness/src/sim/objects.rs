//! The simulated cluster as Kubernetes objects, for the simulated API server: Flux's
//! objects with their conditions, what was applied, and the admission verdicts.

use super::*;

impl<'a> Simulator<'a> {
    // ----- the cluster as objects (for the simulated API server) -----

    pub(super) fn conditions(c: Option<&Cond>, since: String) -> serde_json::Value {
        match c {
            Some(c) => {
                serde_json::json!([{"type": "Ready", "status": c.status, "reason": c.reason, "message": c.message, "lastTransitionTime": since, "observedGeneration": 1}])
            }
            None => serde_json::json!([]),
        }
    }

    /// Every object the cluster holds now, Flux's with their status. `time` turns virtual
    /// milliseconds into an RFC 3339 timestamp.
    pub fn cluster_objects(&self, time: &dyn Fn(u64) -> String) -> Vec<serde_json::Value> {
        use serde_json::json;
        let mut out = vec![];
        for ns in crate::rules::ALWAYS_NAMESPACES {
            out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "status": {"phase": "Active"}}));
        }
        // CRDs: charts, operators, Gatekeeper templates.
        let mut crds: BTreeSet<(String, String)> = self.crds.iter().filter(|(_, k)| k != "*").cloned().collect();
        for j in 0..self.hs.len() {
            let h = &self.model.helm_releases[j].spec;
            let operator_up =
                self.h_ready(j) && self.hs[j].ready.first.is_some_and(|t| t + self.sim.operator_crd_ms <= self.now);
            if let Some(c) = self.cat.chart(&h.chart) {
                for g in c.crds.iter().filter(|g| g.enabled(&h.values)) {
                    match g.registered_by {
                        RegisteredBy::Operator if operator_up => {
                            crds.extend(g.kinds.iter().filter(|k| *k != "*").map(|k| (g.group.clone(), k.clone())))
                        }
                        RegisteredBy::Template if operator_up => {
                            crds.extend(self.templates.iter().map(|k| (g.group.clone(), k.clone())))
                        }
                        _ => {}
                    }
                }
            }
        }
        let repo_crds: BTreeSet<(String, String)> = self
            .model
            .kustomizations
            .iter()
            .flat_map(|k| &k.objects)
            .filter(|o| o.kind() == "CustomResourceDefinition")
            .map(|o| {
                let s = |p: &str| o.value.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
                (s("/spec/group"), s("/spec/names/kind"))
            })
            .collect();
        for (g, k) in &crds {
            if !repo_crds.contains(&(g.clone(), k.clone())) {
                out.push(crate::apiserver::store::synthetic_crd(g, k, !crate::object::is_known_cluster_scoped(g, k)));
            }
        }
        let applied = |kind: &str, ns: &str, name: &str| {
            self.sim
                .applied
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["namespace"] == ns && o["metadata"]["name"] == name)
        };
        let entry_raw = |i: usize| -> serde_json::Value {
            let k = &self.model.kustomizations[i].spec;
            if i == self.model.entry
                && let Some(o) = applied("Kustomization", &k.namespace, &k.name)
            {
                o.clone()
            } else if k.raw.is_null() {
                json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": k.name, "namespace": k.namespace},
                       "spec": {"interval": "10m", "path": format!("./{}", k.path), "prune": true, "sourceRef": {"kind": k.source.kind, "name": k.source.name}}})
            } else {
                k.raw.clone()
            }
        };
        for i in 0..self.ks.len() {
            if !self.ks[i].exists {
                continue;
            }
            let mut o = entry_raw(i);
            let ready = self.k_ready(i);
            o["status"] = json!({
                "observedGeneration": if self.ks[i].ready.first.is_some() { 1 } else { -1 },
                "conditions": Self::conditions(self.ks[i].ready.cond.as_ref(), time(self.ks[i].ready.since)),
            });
            if self.ks[i].ready.first.is_some() {
                o["status"]["lastAppliedRevision"] = json!(self.sim.revision);
            }
            self.client_fields(i, &mut o);
            if ready || self.ks[i].ready.cond.is_some() {
                o["status"]["lastAttemptedRevision"] = json!(self.sim.revision);
            }
            out.push(o);
            if self.ks[i].applied_at.is_none() {
                continue;
            }
            for obj in &self.model.kustomizations[i].objects {
                let flux = obj.group().ends_with(".toolkit.fluxcd.io");
                if flux && matches!(obj.kind(), "Kustomization" | "HelmRelease") {
                    continue;
                }
                let mut v = obj.value.clone();
                if obj.group() == crate::flux::SOURCE_GROUP {
                    let r = Ref {
                        kind: obj.kind().into(),
                        namespace: crate::flux::namespace_of(obj),
                        name: obj.name().into(),
                    };
                    let src = self.find_s(&r).and_then(|x| self.sources.get(x));
                    let ready_at = src.and_then(|x| x.ready_at);
                    let git = obj.kind() == "GitRepository";
                    let cond = match (src.and_then(|x| x.failure.clone()), ready_at) {
                        (Some(f), _) => f,
                        (None, Some(_)) if git => Cond {
                            status: "True",
                            reason: "Succeeded".into(),
                            message: format!("stored artifact for revision '{}'", self.sim.revision),
                        },
                        (None, Some(_)) => {
                            Cond { status: "True", reason: "Succeeded".into(), message: "stored artifact".into() }
                        }
                        (None, None) => Cond {
                            status: "Unknown",
                            reason: "Progressing".into(),
                            message: "building artifact".into(),
                        },
                    };
                    v["status"] = json!({"observedGeneration": 1, "conditions": Self::conditions(Some(&cond), time(ready_at.unwrap_or(self.now)))});
                    if git && ready_at.is_some() {
                        v["status"]["artifact"] = json!({"revision": self.sim.revision});
                    }
                }
                if matches!(obj.kind(), "Deployment" | "StatefulSet") && obj.group() == "apps" {
                    let replicas = v.pointer("/spec/replicas").and_then(|r| r.as_i64()).unwrap_or(1);
                    let up = matches!(self.object_status(i, obj), Status::Current);
                    v["status"] = json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": if up { replicas } else { 0 }, "availableReplicas": if up { replicas } else { 0 }});
                }
                out.push(v);
            }
        }
        for j in 0..self.hs.len() {
            if !self.hs[j].exists {
                continue;
            }
            let mut o = self.model.helm_releases[j].spec.raw.clone();
            let mut conds = Self::conditions(self.hs[j].ready.cond.as_ref(), time(self.hs[j].ready.since));
            if self.hs[j].phase == HPhase::Stalled {
                let n = self.hs[j].failures;
                conds.as_array_mut().unwrap().push(json!({"type": "Stalled", "status": "True", "reason": "RetriesExceeded", "message": format!("Failed to install after {n} attempt(s)"), "lastTransitionTime": time(self.hs[j].ready.since), "observedGeneration": 1}));
            }
            o["status"] = json!({"observedGeneration": if self.hs[j].ready.first.is_some() { 1 } else { -1 }, "conditions": conds, "installFailures": self.hs[j].failures});
            out.push(o);
        }
        // The entry's own source as the bootstrap created it, until (if ever) the tree
        // applies its own version of it.
        let self_idx = self.find_s(&self.model.self_source);
        let applied_by_tree = self_idx.is_some_and(|_| {
            (0..self.ks.len()).any(|i| {
                self.ks[i].applied_at.is_some()
                    && self.model.kustomizations[i].objects.iter().any(|o| {
                        o.group() == crate::flux::SOURCE_GROUP
                            && o.kind() == self.model.self_source.kind
                            && o.name() == self.model.self_source.name
                            && crate::flux::namespace_of(o) == self.model.self_source.namespace
                    })
            })
        });
        if !applied_by_tree {
            let s = &self.model.self_source;
            let ready = self_idx.or(self.sources.len().checked_sub(1)).and_then(|x| self.sources[x].ready_at);
            let cond = ready.map(|_| Cond {
                status: "True",
                reason: "Succeeded".into(),
                message: format!("stored artifact for revision '{}'", self.sim.revision),
            });
            let mut o = applied(&s.kind, &s.namespace, &s.name).cloned().unwrap_or_else(|| {
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": s.kind, "metadata": {"name": s.name, "namespace": s.namespace},
                       "spec": {"interval": "1m", "url": self.sim.self_url}})
            });
            o["status"] = json!({"observedGeneration": 1, "conditions": Self::conditions(cond.as_ref(), time(ready.unwrap_or(0))),
                                 "artifact": if ready.is_some() { json!({"revision": self.sim.revision}) } else { json!(null) }});
            out.push(o);
        }
        out.extend(self.events(time));
        out
    }

    /// Flux's events: one per change of a Flux object's condition, as its controller
    /// records it (what `kubectl describe` and `kubectl get events` show). The involved
    /// object's uid is the store's, filled in by the server.
    fn events(&self, time: &dyn Fn(u64) -> String) -> Vec<serde_json::Value> {
        use serde_json::json;
        let mut out = vec![];
        for (n, e) in self.timeline.iter().enumerate() {
            let (api_version, component) = match e.kind.as_str() {
                "Kustomization" => ("kustomize.toolkit.fluxcd.io/v1", "kustomize-controller"),
                "HelmRelease" => ("helm.toolkit.fluxcd.io/v2", "helm-controller"),
                "GitRepository" | "OCIRepository" | "HelmRepository" | "Bucket" => {
                    ("source.toolkit.fluxcd.io/v1", "source-controller")
                }
                _ => continue,
            };
            let warning = crate::sim::report::is_failure(&e.status, &e.reason, &e.message);
            let at = time(e.at_ms);
            out.push(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{}.{:016x}", e.name, n), "namespace": e.namespace, "creationTimestamp": at},
                "involvedObject": {"apiVersion": api_version, "kind": e.kind, "name": e.name, "namespace": e.namespace},
                "reason": e.reason, "message": e.message, "type": if warning { "Warning" } else { "Normal" },
                "source": {"component": component}, "reportingComponent": component,
                "firstTimestamp": at, "lastTimestamp": at, "count": 1,
            }));
        }
        out
    }

    /// The message the API server would answer a write with, when a fail-closed webhook
    /// of the simulation refuses it now.
    pub fn admission(&self, group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<String> {
        if let Some(w) = self.refused_by_repo(group, kind, namespace, None) {
            let h = &self.repo_hooks[w];
            let (ns, svc) = &h.service;
            return Some(format!(
                "Internal error occurred: failed calling webhook \"{}\": failed to call webhook: Post \"https://{svc}.{ns}.svc:443{}?timeout=10s\": no endpoints available for service \"{svc}\"",
                h.name, h.path
            ));
        }
        let (hr, webhook) = self.refused_by(group, kind, namespace, None)?;
        let h = &self.model.helm_releases[hr].spec;
        let svc = format!("{}-webhook-service", h.name);
        let _ = name;
        Some(format!(
            "Internal error occurred: failed calling webhook \"{webhook}\": failed to call webhook: Post \"https://{svc}.{}.svc:443/validate?timeout=10s\": no endpoints available for service \"{svc}\"",
            self.release_ns(hr)
        ))
    }

    pub fn finished(&self) -> bool {
        self.converged_at.is_some() || self.queue.is_empty() || self.now >= self.sim.max_ms
    }
}
