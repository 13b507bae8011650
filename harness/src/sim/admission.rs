//! The cluster around the controllers: faults, the CNI, which kinds the API server knows,
//! namespaces, and the admission webhooks that refuse requests while they do not serve.

use super::*;

impl<'a> Simulator<'a> {
    pub(super) fn fault(&mut self, n: usize) {
        match self.sim.faults[n].clone() {
            Fault::WebhookDown { name, from, to } => {
                let msg = if self.now == from {
                    format!("fault: the pods of webhook {name} are down until {}", format_duration(to))
                } else {
                    format!("fault: the pods of webhook {name} are back")
                };
                self.note_cluster(&name, "FaultInjected", msg);
            }
            Fault::CiliumRestart { at } => self.cilium_restart(at),
            Fault::NodeLate { at } => {
                self.network_down.push((at, at + 30 * SEC));
                self.push(at + 30 * SEC, Ev::NetworkUp);
                self.note_cluster("nodes", "FaultInjected", "fault: a node joins late; until its CNI DaemonSet pods run (30s), pods scheduled there get no network".into());
            }
            _ => {}
        }
    }

    /// The Cilium agents restart at `at` (also after convergence, for the cni-chaining
    /// suite): the network is down for 20 s and Cilium rewrites its conflist; linkerd-cni
    /// appends itself again unless Cilium owns the directory exclusively.
    pub fn cilium_restart(&mut self, at: u64) {
        self.network_down.push((at, at + 20 * SEC));
        self.push(at + 20 * SEC, Ev::NetworkUp);
        let exclusive = self.primary_exclusive();
        let mut msg = "fault: the Cilium agents restart; pods get no network for 20s".to_string();
        if exclusive && self.chain_ok {
            self.chain_ok = false;
            msg.push_str("; Cilium (cni.exclusive=true) rewrote /etc/cni/net.d/05-cilium.conflist and renamed linkerd-cni's configuration to *.cilium_bak");
        } else if self.chain_ok {
            msg.push_str("; linkerd-cni appended itself to the rewritten conflist again");
        }
        self.note_cluster("cilium", "FaultInjected", msg);
    }

    pub(super) fn primary_exclusive(&self) -> bool {
        let Some(p) = self.primary_cni else { return false };
        let h = &self.model.helm_releases[p].spec;
        let cni = self.cat.chart(&h.chart).and_then(|c| c.cni.as_ref());
        cni.map(|c| {
            c.exclusive_value
                .as_ref()
                .and_then(|v| crate::catalogue::value_bool(&h.values, v))
                .unwrap_or(c.exclusive_default)
        })
        .unwrap_or(false)
    }

    // ----- kinds, namespaces, webhooks -----

    pub(super) fn kind_known(&mut self, group: &str, kind: &str) -> bool {
        if crate::builtin::find(group, kind).is_some()
            || group.ends_with(".toolkit.fluxcd.io")
            || self.cfg.preinstalled_crds.iter().any(|g| g == group)
        {
            return true;
        }
        if self.crds.contains(&(group.to_string(), kind.to_string()))
            || self.crds.contains(&(group.to_string(), "*".to_string()))
        {
            return true;
        }
        if group == "constraints.gatekeeper.sh" && self.templates.contains(kind) {
            let gk_ready = (0..self.hs.len()).any(|j| {
                self.h_ready(j)
                    && self.hs[j].ready.first.is_some_and(|t| t + self.sim.operator_crd_ms <= self.now)
                    && self
                        .cat
                        .chart(&self.model.helm_releases[j].spec.chart)
                        .is_some_and(|c| c.crds.iter().any(|g| g.registered_by == RegisteredBy::Template))
            });
            if gk_ready {
                return true;
            }
        }
        // Operator-registered CRDs: after the operator is Ready.
        for j in 0..self.hs.len() {
            let h = &self.model.helm_releases[j].spec;
            if let Some(c) = self.cat.chart(&h.chart)
                && c.crds.iter().any(|g| {
                    g.registered_by == RegisteredBy::Operator && g.enabled(&h.values) && g.provides(group, kind)
                })
                && self.h_ready(j)
                && self.hs[j].ready.first.is_some_and(|t| t + self.sim.operator_crd_ms <= self.now)
            {
                return true;
            }
        }
        // Nobody in the model provides it: assume it is there rather than invent a failure.
        if !self.provided_somewhere(group, kind) {
            self.notes.insert(format!("{kind} ({group}) has no known provider: assumed to exist in the cluster"));
            return true;
        }
        false
    }

    pub(super) fn provided_somewhere(&self, group: &str, kind: &str) -> bool {
        let crd = self.model.kustomizations.iter().flat_map(|k| &k.objects).any(|o| {
            (o.kind() == "CustomResourceDefinition"
                && o.value.pointer("/spec/group").and_then(|v| v.as_str()) == Some(group)
                && o.value.pointer("/spec/names/kind").and_then(|v| v.as_str()) == Some(kind))
                || (group == "constraints.gatekeeper.sh"
                    && o.kind() == "ConstraintTemplate"
                    && o.value.pointer("/spec/crd/spec/names/kind").and_then(|v| v.as_str()) == Some(kind))
        });
        crd || self.model.helm_releases.iter().any(|h| {
            self.cat
                .chart(&h.spec.chart)
                .is_some_and(|c| c.crds.iter().any(|g| g.enabled(&h.spec.values) && g.provides(group, kind)))
        })
    }

    pub(super) fn labels_of(&self, ns: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut l = self.ns_labels.get(ns).cloned().unwrap_or_default();
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }

    pub(super) fn webhook(&self, hr: usize, w: usize) -> &Webhook {
        &self.cat.charts[&self.model.helm_releases[hr].spec.chart].webhooks[w]
    }

    pub(super) fn release_ns(&self, hr: usize) -> String {
        let h = &self.model.helm_releases[hr].spec;
        h.raw.pointer("/spec/targetNamespace").and_then(|v| v.as_str()).unwrap_or(&h.namespace).to_string()
    }

    pub(super) fn serving(&self, hr: usize, name: &str) -> bool {
        // Pods taken down come back at the end of the window, unless the webhook refuses
        // its own new pods: then they never do.
        if !((self.h_ready(hr) || self.preinstalled(hr)) && self.network_up()) {
            return false;
        }
        !self.sim.faults.iter().any(|f| matches!(f, Fault::WebhookDown { name: n, from, to } if n == name && self.now >= *from && (self.now < *to || self.self_blocks(hr, name))))
    }

    /// A fail-closed webhook of HelmRelease `hr` that intercepts Pods in its own namespace:
    /// once its pods are gone, their replacements go through it, and it has no endpoint.
    pub fn self_blocks(&self, hr: usize, name: &str) -> bool {
        let h = &self.model.helm_releases[hr].spec;
        let Some(wh) = self.cat.chart(&h.chart).and_then(|c| c.webhooks.iter().find(|w| w.name == name)) else {
            return false;
        };
        let rns = self.release_ns(hr);
        wh.effective_policy(&h.values) == Some(FailurePolicy::Fail)
            && wh.intercepts("", "Pod")
            && !wh.exempts(&rns, &h.values, &rns, &self.labels_of(&rns))
    }

    /// Why a ConfigMap or Secret that an object reads (substituteFrom, valuesFrom) is not
    /// in the cluster yet, or `None` when it is. Committed outside the Flux tree (applied
    /// before Flux) counts as there.
    pub(super) fn missing_input(&self, kind: &str, ns: &str, name: &str) -> Option<Block> {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        if self.applied.contains(&key) || self.model.preapplied.contains(&(kind.to_string(), name.to_string())) {
            return None;
        }
        Some(match self.producers.get(&key) {
            Some(&k) => Block::On(Entity::K(k)),
            None => Block::Root(format!("nothing in the repository creates {kind} {ns}/{name}")),
        })
    }

    pub(super) fn find(&self, kind: &str, r: &Ref) -> Option<usize> {
        self.index.get(&(kind.to_string(), r.namespace.clone(), r.name.clone())).copied()
    }
    pub(super) fn find_k(&self, r: &Ref) -> Option<usize> {
        self.find("Kustomization", r)
    }
    pub(super) fn find_h(&self, r: &Ref) -> Option<usize> {
        self.find("HelmRelease", r)
    }
    pub(super) fn find_s(&self, r: &Ref) -> Option<usize> {
        if matches!(r.kind.as_str(), "Kustomization" | "HelmRelease") {
            return None;
        }
        self.find(&r.kind, r)
    }

    /// Installed before Flux by a bootstrap helmfile: running from the start.
    pub(super) fn preinstalled(&self, j: usize) -> bool {
        self.preinstalled[j]
    }

    /// A registered fail-closed webhook that is not serving and intercepts this object.
    pub(super) fn refused_by(
        &self,
        group: &str,
        kind: &str,
        ns: Option<&str>,
        own_labels: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Option<(usize, String)> {
        for &(hr, w) in &self.webhooks {
            let wh = self.webhook(hr, w);
            if !wh.intercepts(group, kind) || self.serving(hr, &wh.name) {
                continue;
            }
            // Registered by the pods themselves: not there before they first served.
            if wh.registered_by == RegisteredBy::Operator && self.hs[hr].ready.first.is_none() {
                continue;
            }
            let values = &self.model.helm_releases[hr].spec.values;
            let rns = self.release_ns(hr);
            let exempt = match (kind, ns, own_labels) {
                ("Namespace", _, Some(l)) => wh.exempts(
                    &rns,
                    values,
                    l.get("kubernetes.io/metadata.name").and_then(|v| v.as_str()).unwrap_or(""),
                    l,
                ),
                (_, Some(ns), _) => wh.exempts(&rns, values, ns, &self.labels_of(ns)),
                (_, None, _) => false,
            };
            if !exempt {
                return Some((hr, wh.name.clone()));
            }
        }
        None
    }

    pub(super) fn webhook_error(&self, id: &str, hr: usize, name: &str) -> String {
        let h = &self.model.helm_releases[hr].spec;
        let svc = format!("{}-webhook-service", h.name);
        let ns = self.release_ns(hr);
        let ending = if self.h_ready(hr) {
            "dial tcp 10.96.0.10:443: connect: connection refused".to_string()
        } else {
            format!("no endpoints available for service \"{svc}\"")
        };
        format!(
            "{id} dry-run failed (InternalError): Internal error occurred: failed calling webhook \"{name}\": failed to call webhook: Post \"https://{svc}.{ns}.svc:443/validate?timeout=10s\": {ending}"
        )
    }
}
