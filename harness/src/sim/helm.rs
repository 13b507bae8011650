//! helm-controller: chart fetch, install with its timeout and remediation, pods that
//! cannot start (no network, a webhook, no CNI chain), what an install brings (the CNI).

use super::*;

impl<'a> Simulator<'a> {
    // ----- helm-controller -----

    /// A failure before a release is written: no remediation counts it; helm-controller
    /// retries with exponential backoff (750 ms doubling, at most 15 min).
    pub(super) fn fail_before_release(&mut self, j: usize, block: Block, reason: &str, msg: String) {
        self.hs[j].block = Some(block);
        self.set_h(j, "False", reason, msg);
        let back = (750u64 << self.hs[j].backoff.min(20)).min(15 * 60 * SEC);
        self.hs[j].backoff += 1;
        self.queue_h(j, self.now + back);
    }

    pub(super) fn reconcile_h(&mut self, j: usize) {
        if !self.hs[j].exists || matches!(self.hs[j].phase, HPhase::Installing | HPhase::Ready | HPhase::Stalled) {
            return;
        }
        let h = &self.model.helm_releases[j].spec;
        let hid = format!("{}/{}", h.namespace, h.name);
        // Source and chart.
        match (self.h_source[j], &h.source) {
            (Some(s), _) if self.sources[s].ready_at.is_some_and(|t| t + self.sim.chart_fetch_ms <= self.now) => {}
            (Some(s), Some(r)) => {
                self.hs[j].block = Some(Block::On(Entity::Source(s)));
                let msg = if self.sources[s].exists {
                    format!("{} '{}/{}' is not ready", r.kind, r.namespace, r.name)
                } else {
                    format!("could not get Source object: {}.source.toolkit.fluxcd.io \"{}\" not found", r.kind, r.name)
                };
                self.set_h(j, "False", "SourceNotReady", msg);
                if let Some(ready_at) = self.sources[s].ready_at {
                    self.queue_h(j, ready_at + self.sim.chart_fetch_ms);
                }
                return;
            }
            (None, Some(r)) => {
                self.hs[j].block = Some(Block::Root(format!(
                    "{} {}/{} is not defined in the repository",
                    r.kind, r.namespace, r.name
                )));
                self.set_h(
                    j,
                    "False",
                    "SourceNotReady",
                    format!(
                        "could not get Source object: {}.source.toolkit.fluxcd.io \"{}\" not found",
                        r.kind, r.name
                    ),
                );
                return;
            }
            _ => {}
        }
        for d in h.depends_on.clone() {
            let dep = self.find_h(&d);
            if dep.is_some_and(|x| self.h_ready(x) && self.hs[x].ready.since < self.now) {
                continue;
            }
            self.hs[j].block = Some(match dep {
                Some(x) => Block::On(Entity::H(x)),
                None => Block::Root(format!("HelmRelease {}/{} is not defined in the repository", d.namespace, d.name)),
            });
            self.set_h(
                j,
                "False",
                "DependencyNotReady",
                format!("dependency '{}/{}' is not ready", d.namespace, d.name),
            );
            match dep {
                Some(x) if self.h_ready(x) => self.queue_h(j, self.now + DEPENDENCY_REQUEUE),
                Some(_) => self.h_parked[j] = Some(self.now),
                None => {}
            }
            return;
        }
        // valuesFrom: composed before the install; a missing reference fails it, and
        // helm-controller retries with backoff (no release was written).
        let h = &self.model.helm_releases[j].spec;
        for v in h.raw.pointer("/spec/valuesFrom").and_then(|v| v.as_array()).into_iter().flatten() {
            let (kind, name) = (v["kind"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or(""));
            if v["optional"].as_bool() == Some(true) || !matches!(kind, "ConfigMap" | "Secret") {
                continue;
            }
            if let Some(why) = self.missing_input(kind, &h.namespace, name) {
                let key = v["valuesKey"].as_str().unwrap_or("values.yaml");
                let plural = if kind == "Secret" { "secrets" } else { "configmaps" };
                let msg = format!(
                    "could not resolve {kind} chart values reference '{}/{name}' with key '{key}': {plural} \"{name}\" not found",
                    h.namespace
                );
                self.fail_before_release(j, why, "ValuesError", msg);
                return;
            }
        }
        let chart_ver = format!("{}@{}", h.chart, h.version.clone().unwrap_or_else(|| "0.1.0".into()));
        // Errors before a release is written: exponential backoff (750 ms doubling, 15 min).
        let release_ns = self.release_ns(j);
        let create_ns = h.raw.pointer("/spec/install/createNamespace").and_then(|v| v.as_bool()) == Some(true);
        let mut early: Option<(String, Block)> = None;
        if !create_ns && !self.namespaces.contains(&release_ns) {
            early = Some((
                format!(
                    "Helm install failed for release {hid} with chart {chart_ver}: create: failed to create: namespaces \"{release_ns}\" not found"
                ),
                self.namespace_creator(&release_ns)
                    .map(|c| Block::On(Entity::K(c)))
                    .unwrap_or_else(|| Block::Root(format!("nothing creates namespace {release_ns}"))),
            ));
        } else if self.needs_service_monitor(j) && !self.kind_known("monitoring.coreos.com", "ServiceMonitor") {
            let provider = self.provider_entity("monitoring.coreos.com", "ServiceMonitor");
            early = Some((
                format!(
                    "Helm install failed for release {hid} with chart {chart_ver}: unable to build kubernetes objects from release manifest: resource mapping not found for name: \"{}\" namespace: \"{release_ns}\" from \"\": no matches for kind \"ServiceMonitor\" in version \"monitoring.coreos.com/v1\"",
                    h.name
                ),
                provider.map(Block::On).unwrap_or_else(|| Block::Root("nothing provides ServiceMonitor".into())),
            ));
        }
        if let Some((msg, block)) = early {
            self.fail_before_release(j, block, "InstallFailed", msg);
            return;
        }
        if create_ns {
            self.namespaces.insert(release_ns.clone());
        }
        // Install: chart CRDs first, then the rest; webhooks register now.
        self.hs[j].attempt += 1;
        self.hs[j].phase = HPhase::Installing;
        self.hs[j].install_started = self.now;
        let dur = self.install_ms(j);
        self.hs[j].install_ends = self.now + dur;
        let timeout = h
            .raw
            .pointer("/spec/install/timeout")
            .or_else(|| h.raw.pointer("/spec/timeout"))
            .and_then(|v| v.as_str())
            .and_then(fault::parse_duration)
            .unwrap_or(5 * 60 * SEC);
        self.hs[j].deadline = self.now + timeout;
        if let Some(c) = self.cat.chart(&h.chart).cloned() {
            for g in c.crds.iter().filter(|g| g.registered_by == RegisteredBy::Chart && g.enabled(&h.values)) {
                for k in &g.kinds {
                    self.crds.insert((g.group.clone(), k.clone()));
                }
            }
            for (w, wh) in c.webhooks.iter().enumerate() {
                if wh.effective_policy(&h.values) == Some(FailurePolicy::Fail) {
                    self.webhooks.insert((j, w));
                }
            }
        }
        self.set_h(
            j,
            "Unknown",
            "Progressing",
            format!("Running 'install' action with timeout of {}", format_duration(timeout)),
        );
        let at = self.hs[j].install_ends;
        let attempt = self.hs[j].attempt;
        self.push(at, Ev::InstallPoll(j, attempt));
    }

    pub(super) fn needs_service_monitor(&self, j: usize) -> bool {
        fn walk(v: &serde_json::Value) -> bool {
            v.as_object().is_some_and(|m| {
                m.iter().any(|(k, c)| {
                    (k.eq_ignore_ascii_case("servicemonitor")
                        && (c.get("enabled") == Some(&serde_json::Value::Bool(true))))
                        || walk(c)
                })
            })
        }
        walk(&self.model.helm_releases[j].spec.values)
    }

    pub(super) fn install_ms(&self, j: usize) -> u64 {
        let h = &self.model.helm_releases[j].spec;
        // The e2e installs the CNI before Flux with the same chart, name and namespace:
        // helm-controller then only adopts the release.
        if (self.sim.cni_preinstalled && Some(j) == self.primary_cni) || self.preinstalled(j) {
            return 5 * SEC;
        }
        for f in &self.sim.faults {
            if let Fault::SlowChart { release, ms } = f
                && (release == &format!("{}/{}", h.namespace, h.name) || release == &h.name)
            {
                return *ms;
            }
        }
        self.cat
            .chart(&h.chart)
            .and_then(|c| c.install_seconds)
            .map(|s| s as u64 * SEC)
            .unwrap_or(self.sim.default_install_ms)
    }

    /// What keeps the chart's pods from running now, if anything.
    pub(super) fn pods_blocked(&self, j: usize) -> Option<(Block, String)> {
        let h = &self.model.helm_releases[j].spec;
        let chart = self.cat.chart(&h.chart);
        let is_cni = chart.is_some_and(|c| c.cni.is_some());
        if !is_cni && !self.network_up() {
            return Some((
                Block::On(Entity::Network),
                "pods have no network: nodes are NotReady until a CNI runs".into(),
            ));
        }
        let release_ns = self.release_ns(j);
        if let Some(w) = self.refused_by_repo("", "Pod", Some(&release_ns), None) {
            let name = self.repo_hooks[w].name.clone();
            return Some((
                Block::On(Entity::RepoWebhook(w)),
                format!(
                    "pods could not be created: admission webhook \"{name}\" (failurePolicy Fail) has no ready endpoint"
                ),
            ));
        }
        if let Some((hr, name)) = self.refused_by("", "Pod", Some(&release_ns), None) {
            return Some((
                Block::On(Entity::Webhook(hr, name.clone())),
                format!(
                    "pods could not be created: admission webhook \"{name}\" (failurePolicy Fail) has no ready endpoint"
                ),
            ));
        }
        if h.values.get("cniEnabled") == Some(&serde_json::Value::Bool(true))
            && self.chained_cni.is_some()
            && !self.chain_ok
        {
            return Some((
                Block::On(Entity::CniChain),
                "pods fail linkerd-network-validator: linkerd-cni is not in the node's CNI chain".into(),
            ));
        }
        None
    }

    pub(super) fn install_poll(&mut self, j: usize) {
        let h = &self.model.helm_releases[j].spec;
        let hid = format!("{}/{}", h.namespace, h.name);
        let chart_ver = format!("{}@{}", h.chart, h.version.clone().unwrap_or_else(|| "0.1.0".into()));
        let injected = self.hs[j].injected_failures > 0;
        let blocked = self.pods_blocked(j);
        if blocked.is_none() && !injected {
            self.hs[j].phase = HPhase::Ready;
            self.hs[j].block = None;
            self.set_h(
                j,
                "True",
                "InstallSucceeded",
                format!("Helm install succeeded for release {hid}.v1 with chart {chart_ver}"),
            );
            self.after_install(j);
            return;
        }
        if let Some((b, _)) = &blocked {
            self.hs[j].block = Some(b.clone());
        }
        if self.now < self.hs[j].deadline && !injected {
            let attempt = self.hs[j].attempt;
            self.push(self.now + HEALTH_POLL, Ev::InstallPoll(j, attempt));
            return;
        }
        // The attempt failed (a release was written): remediation.
        let why = match (&blocked, injected) {
            (_, true) => {
                self.hs[j].injected_failures -= 1;
                "fault injected: the chart's hooks failed".to_string()
            }
            (Some((_, why)), _) => format!("context deadline exceeded ({why})"),
            _ => "context deadline exceeded".into(),
        };
        self.hs[j].failures += 1;
        let retries = h.raw.pointer("/spec/install/remediation/retries").and_then(|v| v.as_i64()).unwrap_or(0);
        let msg = format!("Helm install failed for release {hid} with chart {chart_ver}: {why}");
        if retries < 0 || (self.hs[j].failures as i64) <= retries {
            // Uninstall (its webhooks go with it) and try again.
            self.webhooks.retain(|(hr, _)| *hr != j);
            self.hs[j].phase = HPhase::Waiting;
            self.set_h(j, "False", "InstallFailed", msg);
            self.queue_h(j, self.now + 5 * SEC);
        } else {
            self.hs[j].phase = HPhase::Stalled;
            let n = self.hs[j].failures;
            self.set_h(j, "False", "InstallFailed", msg);
            let stalled = Cond {
                status: "True",
                reason: "RetriesExceeded".into(),
                message: format!("Failed to install after {n} attempt(s)"),
            };
            let (ns, name) = (h.namespace.clone(), h.name.clone());
            self.log("HelmRelease/Stalled", &ns, &name, &stalled);
        }
    }

    pub(super) fn after_install(&mut self, j: usize) {
        if Some(j) == self.primary_cni && !self.network {
            self.network = true;
            self.note_cluster(
                "nodes",
                "NetworkReady",
                "Cilium wrote /etc/cni/net.d/05-cilium.conflist: nodes are Ready and pods get a network".into(),
            );
        }
        if Some(j) == self.primary_cni || Some(j) == self.chained_cni {
            let both = self.chained_cni.is_some_and(|c| self.h_ready(c))
                && (self.sim.cni_preinstalled || self.primary_cni.is_some_and(|p| self.h_ready(p)));
            if both {
                if self.primary_exclusive() {
                    self.chain_ok = false;
                    self.note_cluster(
                        "cni",
                        "ChainBroken",
                        "Cilium (cni.exclusive=true) owns /etc/cni/net.d: it renamed linkerd-cni's configuration to *.cilium_bak, so linkerd-cni is not in the chain".into(),
                    );
                } else {
                    self.chain_ok = true;
                    self.note_cluster(
                        "cni",
                        "Chained",
                        "linkerd-cni appended itself as the last plugin of /etc/cni/net.d/05-cilium.conflist".into(),
                    );
                }
            }
        }
        // Dependants of a HelmRelease are requeued on their own schedule (30 s).
    }
}
