//! kustomize-controller: build, dry-run and apply stage by stage, health checks, the
//! readiness of what was applied (kstatus).

use super::*;

impl<'a> Simulator<'a> {
    // ----- kustomize-controller -----

    pub(super) fn reconcile_k(&mut self, i: usize) {
        if !self.ks[i].exists || self.ks[i].busy {
            return;
        }
        if self.k_suspended(i) {
            return;
        }
        let spec = &self.model.kustomizations[i].spec;
        let kid = format!("{}/{}", spec.namespace, spec.name);
        let retry = self.retry_interval(i);
        // Source.
        match self.k_source[i] {
            Some(s) if self.sources[s].exists => {
                if self.sources[s].ready_at.is_none() {
                    self.ks[i].block = Some(Block::On(Entity::Source(s)));
                    self.set_k(i, "False", "ArtifactFailed", "Source artifact not found, retrying in 30s".into());
                    self.queue_k(i, self.now + DEPENDENCY_REQUEUE);
                    return;
                }
            }
            other => {
                let src = &spec.source;
                self.ks[i].block = Some(match other {
                    Some(s) => Block::On(Entity::Source(s)),
                    None => Block::Root(format!(
                        "{} {}/{} is not defined in the repository",
                        src.kind, src.namespace, src.name
                    )),
                });
                let msg = format!("Source '{}/{}/{}' not found", src.kind, src.namespace, src.name);
                self.set_k(i, "False", "ArtifactFailed", msg);
                self.queue_k(i, self.now + retry);
                return;
            }
        }
        // dependsOn, in list order; the first failure is reported.
        for d in spec.depends_on.clone() {
            let dep = self.find_k(&d);
            // A dependency that turns Ready in the same instant is not seen yet: the two
            // reconciles run concurrently and the dependent reads the cache first.
            let ok = dep.is_some_and(|j| self.ks[j].exists && self.k_ready(j) && self.ks[j].ready.since < self.now);
            if ok {
                continue;
            }
            let (msg, block) = match dep {
                Some(j) if self.ks[j].exists => {
                    (format!("dependency '{}/{}' is not ready", d.namespace, d.name), Block::On(Entity::K(j)))
                }
                Some(j) => (
                    format!(
                        "dependency '{}/{}' not found: kustomizations.kustomize.toolkit.fluxcd.io \"{}\" not found",
                        d.namespace, d.name, d.name
                    ),
                    Block::On(Entity::K(j)),
                ),
                None => (
                    format!(
                        "dependency '{}/{}' not found: kustomizations.kustomize.toolkit.fluxcd.io \"{}\" not found",
                        d.namespace, d.name, d.name
                    ),
                    Block::Root(format!("Kustomization {}/{} is not defined in the repository", d.namespace, d.name)),
                ),
            };
            self.ks[i].block = Some(block);
            self.set_k(i, "False", "DependencyNotReady", msg);
            // Parked until a dependency changes (`k_parked`); one the repository does not
            // define never appears, so no tick could pass. A dependency that turned Ready
            // in this very instant will not change again: the next tick sees it.
            match dep {
                Some(j) if self.k_ready(j) => self.queue_k(i, self.now + DEPENDENCY_REQUEUE),
                Some(_) => self.k_parked[i] = Some(self.now),
                None => {}
            }
            return;
        }
        // postBuild.substituteFrom: read at build time; a missing one fails the build.
        let spec = &self.model.kustomizations[i].spec;
        for f in spec.substitute_from.iter().filter(|f| !f.optional) {
            if let Some(why) = self.missing_input(&f.kind, &spec.namespace, &f.name) {
                self.ks[i].block = Some(why);
                let plural = if f.kind == "Secret" { "secrets" } else { "configmaps" };
                let msg = format!("substitute from '{}/{}' error: {plural} \"{}\" not found", f.kind, f.name, f.name);
                self.fail_build(i, msg, retry);
                return;
            }
        }
        if self.ks[i].started_at.is_none() {
            self.ks[i].started_at = Some(self.now);
        }
        self.set_k(i, "Unknown", "Progressing", "Reconciliation in progress".into());
        if let Origin::NotRendered(why) = &self.model.kustomizations[i].origin {
            self.notes.insert(format!("Kustomization {kid} was not rendered ({why}): simulated as applying nothing"));
        }
        if let Origin::BuildFailed(msg) = &self.model.kustomizations[i].origin {
            self.ks[i].block = Some(Block::Root(format!("Kustomization {kid} cannot be built")));
            self.fail_build(i, msg.clone(), retry);
            return;
        }
        if let Some(msg) = &self.undecryptable[i] {
            self.ks[i].block = Some(Block::Root(format!("Kustomization {kid} cannot decrypt its SOPS secrets")));
            self.fail_build(i, msg.clone(), retry);
            return;
        }
        if let Some(msg) = &self.undecrypted[i] {
            self.ks[i].block =
                Some(Block::Root(format!("Kustomization {kid} applies a SOPS-encrypted Secret without decryption")));
            self.fail_k(i, msg.clone(), retry);
            return;
        }
        // Staged apply, each stage dry-run first.
        let objects = &self.model.kustomizations[i].objects;
        for stage in 0..3 {
            for n in 0..self.stages[i][stage].len() {
                let x = self.stages[i][stage][n];
                let o = &objects[x];
                if !self.objs[i][x].always_known && !self.kind_known(o.group(), o.kind()) {
                    let id = self.objs[i][x].id.clone();
                    let provider = self.provider_entity(o.group(), o.kind());
                    self.ks[i].block = Some(match provider {
                        Some(e) => Block::On(e),
                        None => Block::Root(format!("nothing provides {} ({})", o.kind(), o.group())),
                    });
                    let msg = format!(
                        "{id} dry-run failed: no matches for kind \"{}\" in version \"{}\"",
                        o.kind(),
                        o.api_version()
                    );
                    self.fail_k(i, msg, retry);
                    return;
                }
                if let Some(ns) = &self.objs[i][x].ns
                    && !self.namespaces.contains(ns)
                {
                    let ns = ns.clone();
                    let id = self.objs[i][x].id.clone();
                    self.ks[i].block = Some(
                        self.namespace_creator(&ns)
                            .map(|c| Block::On(Entity::K(c)))
                            .unwrap_or_else(|| Block::Root(format!("nothing creates namespace {ns}"))),
                    );
                    self.fail_k(i, format!("{id} dry-run failed (NotFound): namespaces \"{ns}\" not found"), retry);
                    return;
                }
                if let Some((_, refusal)) = self.model.kustomizations[i].refused.iter().find(|(r, _)| *r == x) {
                    let id = &self.objs[i][x].id;
                    self.ks[i].block = Some(Block::Root(format!("the API server refuses {id}")));
                    self.fail_k(i, format!("{id} dry-run failed (Invalid): {refusal}"), retry);
                    return;
                }
                let own = (o.kind() == "Namespace").then(|| {
                    let mut l =
                        o.value.pointer("/metadata/labels").and_then(|l| l.as_object()).cloned().unwrap_or_default();
                    l.insert("kubernetes.io/metadata.name".into(), o.name().into());
                    l
                });
                if let Some((hr, name)) = self.refused_by(o.group(), o.kind(), o.namespace(), own.as_ref()) {
                    self.ks[i].block = Some(Block::On(Entity::Webhook(hr, name.clone())));
                    let msg = self.webhook_error(&self.objs[i][x].id, hr, &name);
                    self.fail_k(i, msg, retry);
                    return;
                }
                if let Some(w) = self.refused_by_repo(o.group(), o.kind(), o.namespace(), own.as_ref()) {
                    self.ks[i].block = Some(Block::On(Entity::RepoWebhook(w)));
                    let msg = self.repo_webhook_error(&self.objs[i][x].id, w);
                    self.fail_k(i, msg, retry);
                    return;
                }
            }
            // The stage applies.
            for n in 0..self.stages[i][stage].len() {
                self.apply_object(i, self.stages[i][stage][n]);
            }
        }
        self.ks[i].applied_at = Some(self.now);
        let spec = &self.model.kustomizations[i].spec;
        if spec.wait || !spec.health_checks.is_empty() {
            self.ks[i].busy = true;
            self.ks[i].health_started = self.now;
            self.ks[i].health_deadline = self.now + self.timeout(i);
            self.health_poll(i);
        } else {
            self.succeed_k(i);
        }
    }

    pub(super) fn fail_k(&mut self, i: usize, msg: String, retry: u64) {
        self.fail_k_as(i, "ReconciliationFailed", msg, retry);
    }

    /// A failure before anything is applied, as kustomize-controller marks it: a missing
    /// `spec.path` is `ArtifactFailed`; a build that fails (kustomize, decryption, postBuild
    /// substitution) is `BuildFailed`.
    fn fail_build(&mut self, i: usize, msg: String, retry: u64) {
        let reason = if msg.starts_with("kustomization path not found") { "ArtifactFailed" } else { "BuildFailed" };
        self.fail_k_as(i, reason, msg, retry);
    }

    fn fail_k_as(&mut self, i: usize, reason: &str, msg: String, retry: u64) {
        self.set_k(i, "False", reason, msg);
        self.queue_k(i, self.now + retry);
    }

    pub(super) fn succeed_k(&mut self, i: usize) {
        self.ks[i].busy = false;
        self.ks[i].block = None;
        self.set_k(i, "True", "ReconciliationSucceeded", format!("Applied revision: {}", self.sim.revision));
        let next = self.now + {
            let iv = self.interval(i);
            self.jitter(iv)
        };
        self.queue_k(i, next);
    }

    pub(super) fn namespace_creator(&self, ns: &str) -> Option<usize> {
        self.model
            .kustomizations
            .iter()
            .position(|k| k.objects.iter().any(|o| o.kind() == "Namespace" && o.group().is_empty() && o.name() == ns))
    }

    pub(super) fn provider_entity(&self, group: &str, kind: &str) -> Option<Entity> {
        for (j, h) in self.model.helm_releases.iter().enumerate() {
            if self.cat.chart(&h.spec.chart).is_some_and(|c| {
                c.crds.iter().any(|g| {
                    g.enabled(&h.spec.values)
                        && (g.provides(group, kind) || (g.registered_by == RegisteredBy::Template && g.group == group))
                })
            }) {
                return Some(Entity::H(j));
            }
        }
        self.model
            .kustomizations
            .iter()
            .position(|k| {
                k.objects.iter().any(|o| {
                    o.kind() == "CustomResourceDefinition"
                        && o.value.pointer("/spec/group").and_then(|v| v.as_str()) == Some(group)
                })
            })
            .map(Entity::K)
    }

    pub(super) fn apply_object(&mut self, i: usize, x: usize) {
        match self.objs[i][x].creates {
            Some(Entity::K(c)) => {
                if c != i {
                    self.create_k(c);
                }
                return;
            }
            Some(Entity::H(j)) => {
                if !self.hs[j].exists {
                    self.hs[j].exists = true;
                    self.hs[j].created_at = Some(self.now);
                    self.queue_h(j, self.now);
                }
                return;
            }
            _ => {}
        }
        let o = &self.model.kustomizations[i].objects[x];
        match (o.group(), o.kind()) {
            ("", "ConfigMap" | "Secret") => {
                self.applied.insert((o.kind().to_string(), crate::flux::namespace_of(o), o.name().to_string()));
            }
            ("", "Namespace") => {
                self.namespaces.insert(o.name().to_string());
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let g = o.value.pointer("/spec/group").and_then(|v| v.as_str()).unwrap_or("").to_string();
                let k = o.value.pointer("/spec/names/kind").and_then(|v| v.as_str()).unwrap_or("").to_string();
                self.crds.insert((g, k));
            }
            ("templates.gatekeeper.sh", "ConstraintTemplate") => {
                if let Some(k) = o.value.pointer("/spec/crd/spec/names/kind").and_then(|v| v.as_str()) {
                    self.templates.insert(k.to_string());
                }
            }
            (g, "Kustomization") if g == crate::flux::KUSTOMIZE_GROUP => {
                let r = Ref {
                    kind: "Kustomization".into(),
                    namespace: crate::flux::namespace_of(o),
                    name: o.name().into(),
                };
                if let Some(c) = self.find_k(&r)
                    && c != i
                {
                    self.create_k(c);
                }
            }
            (g, "HelmRelease") if g == crate::flux::HELM_GROUP => {
                let r =
                    Ref { kind: "HelmRelease".into(), namespace: crate::flux::namespace_of(o), name: o.name().into() };
                if let Some(j) = self.find_h(&r)
                    && !self.hs[j].exists
                {
                    self.hs[j].exists = true;
                    self.hs[j].created_at = Some(self.now);
                    self.queue_h(j, self.now);
                }
            }
            // source-watcher turns the generator into ExternalArtifacts.
            (_, "ArtifactGenerator") => {
                let origin = o.origin.clone();
                for s in 0..self.model.sources.len() {
                    let src = &self.model.sources[s];
                    if src.spec.kind == "ExternalArtifact"
                        && src.owner == Some(i)
                        && src.spec.origin == origin
                        && !self.sources[s].exists
                    {
                        self.sources[s].exists = true;
                        self.push(self.now + self.sim.source_fetch_ms, Ev::SourceReady(s));
                    }
                }
            }
            (g, kind) if g == crate::flux::SOURCE_GROUP => {
                let r = Ref { kind: kind.into(), namespace: crate::flux::namespace_of(o), name: o.name().into() };
                if let Some(s) = self.find_s(&r)
                    && !self.sources[s].exists
                {
                    self.sources[s].exists = true;
                    let fetch =
                        if kind == "GitRepository" { self.sim.source_fetch_ms } else { self.sim.chart_fetch_ms };
                    self.push(self.now + fetch, Ev::SourceReady(s));
                } else if let Some(s) = self.find_s(&r)
                    && self.sources[s].failure.is_none()
                    && let Some((_, _, reason, message)) =
                        self.sim.unfetchable.iter().find(|(ns, n, _, _)| *ns == r.namespace && *n == r.name).cloned()
                {
                    // The applied spec re-points a source that exists: source-controller
                    // fetches from the new URL and fails; the old artifact stays.
                    let c = Cond { status: "False", reason, message };
                    self.sources[s].failure = Some(c.clone());
                    self.log(kind, &r.namespace, &r.name, &c);
                }
            }
            _ => {}
        }
    }

    /// kstatus of the objects this Kustomization waits for.
    pub(super) fn health_poll(&mut self, i: usize) {
        if !self.ks[i].busy {
            return;
        }
        let spec = &self.model.kustomizations[i].spec;
        let objects = &self.model.kustomizations[i].objects;
        // `wait: true` checks every applied object; `healthChecks` name objects anywhere in
        // the cluster: its own, another Flux object, a chart's workload, or nothing at all.
        let targets: Vec<Target> = if spec.wait {
            (0..objects.len()).map(Target::Own).collect()
        } else {
            self.model.kustomizations[i]
                .health
                .iter()
                .filter_map(|t| match t {
                    HealthTarget::Own(x) => Some(Target::Own(*x)),
                    HealthTarget::Kustomization(j) | HealthTarget::AppliedBy(j) => Some(Target::Flux(Entity::K(*j))),
                    HealthTarget::HelmRelease(j) | HealthTarget::Release(j) => Some(Target::Flux(Entity::H(*j))),
                    HealthTarget::Unknowable => None,
                    HealthTarget::Missing(id) => Some(Target::Missing(id.clone())),
                })
                .collect()
        };
        let mut in_progress = vec![];
        let mut failed = vec![];
        let mut blocks = vec![];
        for t in targets {
            let (id, status) = match t {
                Target::Own(x) => {
                    let o = &self.model.kustomizations[i].objects[x];
                    (kstatus_name(o.kind(), o.namespace(), o.name()), self.object_status(i, o))
                }
                Target::Flux(e) => {
                    let (id, ready, stalled) = match &e {
                        Entity::K(j) => {
                            let k = &self.model.kustomizations[*j].spec;
                            (kstatus_name("Kustomization", Some(&k.namespace), &k.name), self.k_ready(*j), false)
                        }
                        Entity::H(j) => {
                            let h = &self.model.helm_releases[*j].spec;
                            let stalled = self.hs[*j].phase == HPhase::Stalled;
                            (kstatus_name("HelmRelease", Some(&h.namespace), &h.name), self.h_ready(*j), stalled)
                        }
                        _ => unreachable!("health checks name Kustomizations and HelmReleases"),
                    };
                    let status = if ready {
                        Status::Current
                    } else if stalled {
                        Status::Failed(Some(Block::On(e)))
                    } else {
                        Status::InProgress(Some(Block::On(e)))
                    };
                    (id, status)
                }
                Target::Missing(id) => {
                    in_progress.push(format!("{id} status: 'NotFound'"));
                    blocks.push(Block::Root(format!("nothing in the repository creates {id}")));
                    continue;
                }
            };
            match status {
                Status::Current => {}
                Status::InProgress(b) => {
                    in_progress.push(format!("{id} status: 'InProgress'"));
                    blocks.extend(b);
                }
                Status::Failed(b) => {
                    failed.push(format!("{id} status: 'Failed'"));
                    blocks.extend(b);
                }
            }
        }
        if in_progress.is_empty() && failed.is_empty() {
            self.succeed_k(i);
        } else if !failed.is_empty() && in_progress.is_empty() {
            let list = failed.join(", ");
            self.health_failed(i, blocks, format!("failed early due to stalled resources: [{list}]"));
        } else if self.now >= self.ks[i].health_deadline {
            let list = in_progress.iter().chain(&failed).cloned().collect::<Vec<_>>().join(", ");
            self.health_failed(i, blocks, format!("timeout waiting for: [{list}]"));
        } else {
            self.ks[i].block = blocks.into_iter().next();
            self.push(self.now + HEALTH_POLL, Ev::HealthPollK(i));
        }
    }

    /// The health check gave up (a stalled object, or the timeout): the Kustomization turns
    /// Ready=False and retries after its retryInterval.
    pub(super) fn health_failed(&mut self, i: usize, blocks: Vec<Block>, why: String) {
        let elapsed = format_duration(self.now - self.ks[i].health_started);
        self.ks[i].busy = false;
        self.ks[i].block = blocks.into_iter().next();
        self.set_k(i, "False", "HealthCheckFailed", format!("health check failed after {elapsed}: {why}"));
        let retry = self.retry_interval(i);
        self.queue_k(i, self.now + retry);
    }

    pub(super) fn object_status(&self, i: usize, o: &Object) -> Status {
        match (o.group(), o.kind()) {
            (g, "Kustomization") if g == crate::flux::KUSTOMIZE_GROUP => {
                let r = Ref {
                    kind: "Kustomization".into(),
                    namespace: crate::flux::namespace_of(o),
                    name: o.name().into(),
                };
                match self.find_k(&r) {
                    Some(c) if self.k_ready(c) => Status::Current,
                    Some(c) => Status::InProgress(Some(Block::On(Entity::K(c)))),
                    None => Status::Current,
                }
            }
            (g, "HelmRelease") if g == crate::flux::HELM_GROUP => {
                let r =
                    Ref { kind: "HelmRelease".into(), namespace: crate::flux::namespace_of(o), name: o.name().into() };
                match self.find_h(&r) {
                    Some(j) if self.h_ready(j) => Status::Current,
                    Some(j) if self.hs[j].phase == HPhase::Stalled => Status::Failed(Some(Block::On(Entity::H(j)))),
                    Some(j) => Status::InProgress(Some(Block::On(Entity::H(j)))),
                    None => Status::Current,
                }
            }
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") | ("", "Pod") => {
                if let Some((_, why)) = self.model.kustomizations[i]
                    .pods_refused
                    .iter()
                    .find(|(x, _)| std::ptr::eq(&self.model.kustomizations[i].objects[*x], o))
                {
                    return Status::InProgress(Some(Block::Root(format!("Pod Security refuses its pods: {why}"))));
                }
                if !self.network_up() {
                    return Status::InProgress(Some(Block::On(Entity::Network)));
                }
                if let Some((hr, name)) = self.refused_by("", "Pod", o.namespace(), None) {
                    return Status::InProgress(Some(Block::On(Entity::Webhook(hr, name))));
                }
                if let Some(w) = self.refused_by_repo("", "Pod", o.namespace(), None) {
                    return Status::InProgress(Some(Block::On(Entity::RepoWebhook(w))));
                }
                let applied = self.ks[i].applied_at.unwrap_or(self.now);
                let net_since = self.network_since();
                if applied.max(net_since) + self.sim.pod_start_ms <= self.now {
                    Status::Current
                } else {
                    Status::InProgress(None)
                }
            }
            (group, kind) => {
                // Custom resources reconciled by an operator of the catalogue are Ready
                // once that operator runs; others have no status to wait for.
                for (j, h) in self.model.helm_releases.iter().enumerate() {
                    if self
                        .cat
                        .chart(&h.spec.chart)
                        .is_some_and(|c| c.crds.iter().any(|g| g.enabled(&h.spec.values) && g.provides(group, kind)))
                    {
                        return if self.h_ready(j) && self.network_up() {
                            Status::Current
                        } else {
                            Status::InProgress(Some(Block::On(Entity::H(j))))
                        };
                    }
                }
                Status::Current
            }
        }
    }

    /// When the pod network last came (back) up.
    pub(super) fn network_since(&self) -> u64 {
        let cni_ready = match self.primary_cni {
            Some(p) if !self.sim.cni_preinstalled => self.hs[p].ready.first.unwrap_or(0),
            _ => 0,
        };
        self.network_down.iter().filter(|(_, b)| *b <= self.now).map(|(_, b)| *b).max().unwrap_or(0).max(cni_ready)
    }
}
