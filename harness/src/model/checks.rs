//! What the API server would refuse, and what health checks wait for, over the rendered
//! objects: schema checks, Pod Security admission, health-check targets.

use super::*;

impl Loader<'_> {
    /// What the API server would refuse among the objects Kustomization `i` applies: an
    /// error finding at the field's line, and the refusal kept for the simulator.
    pub(super) fn check_schemas(&mut self, i: usize, kid: &str, files: &dyn Files, objects: &[Object]) {
        for (x, o) in objects.iter().enumerate() {
            let problems = crate::schema::validate(&o.value);
            if problems.is_empty() {
                continue;
            }
            let refusal = crate::schema::refusal(&o.value, &problems);
            let line = files
                .read(&o.origin.file)
                .map(|t| crate::yaml::field_line(&t, o.origin.line, &problems[0].path))
                .unwrap_or(o.origin.line);
            let stage = if matches!(o.kind(), "CustomResourceDefinition" | "Namespace" | "ClusterRole") {
                "the CRDs, Namespaces and ClusterRoles"
            } else {
                "the objects"
            };
            self.model.findings.push(
                Finding::new(
                    "schema-invalid",
                    Severity::Error,
                    &Loc::new(&o.origin.file, line),
                    format!(
                        "the API server refuses {}: {refusal}; Kustomization {kid} fails its dry-run and applies none of {stage} it holds",
                        o.display_id()
                    ),
                )
                .for_kustomization(kid)
                .fix(format!("fix {} as the message says", crate::schema::display_path(&problems[0].path))),
            );
            self.model.kustomizations[i].refused.push((x, refusal));
        }
    }

    /// Resolves every health check (see [`HealthTarget`]).
    pub(super) fn health_targets(&mut self) {
        let m = &self.model;
        // Objects of Kustomizations not rendered here are unknown.
        let unknown =
            m.kustomizations.iter().any(|k| !matches!(k.origin, Origin::Repo | Origin::Mapped(_) | Origin::Refused));
        let release_ns = |h: &HelmReleaseNode| {
            h.spec
                .raw
                .pointer("/spec/targetNamespace")
                .and_then(|v| v.as_str())
                .unwrap_or(&h.spec.namespace)
                .to_string()
        };
        let mut all = vec![];
        for k in &m.kustomizations {
            let mut v = vec![];
            for h in &k.spec.health_checks {
                let kind = h.get("kind").and_then(|v| v.as_str()).unwrap_or("");
                let name = h.get("name").and_then(|v| v.as_str()).unwrap_or("");
                let ns = h.get("namespace").and_then(|v| v.as_str());
                let is =
                    |o: &Object| o.kind() == kind && o.name() == name && ns.is_none_or(|n| Some(n) == o.namespace());
                let r = Ref { kind: kind.into(), namespace: ns.unwrap_or(&k.spec.namespace).into(), name: name.into() };
                let t = if let Some(x) = k.objects.iter().position(is) {
                    HealthTarget::Own(x)
                } else if kind == "Kustomization" {
                    m.kustomization(&r)
                        .map(HealthTarget::Kustomization)
                        .unwrap_or(HealthTarget::Missing(format!("Kustomization/{}/{name}", r.namespace)))
                } else if kind == "HelmRelease" {
                    m.helm_release(&r)
                        .map(HealthTarget::HelmRelease)
                        .unwrap_or(HealthTarget::Missing(format!("HelmRelease/{}/{name}", r.namespace)))
                } else if let Some(p) = m.kustomizations.iter().position(|o| o.objects.iter().any(is)) {
                    HealthTarget::AppliedBy(p)
                } else if let Some(n) = ns
                    && let Some(j) = m.helm_releases.iter().position(|h| release_ns(h) == n)
                {
                    HealthTarget::Release(j)
                } else if unknown || kind == "CustomResourceDefinition" || (ns.is_none() && !m.helm_releases.is_empty())
                {
                    // Charts create objects the repo does not show (workloads, issuers, CRDs).
                    HealthTarget::Unknowable
                } else {
                    HealthTarget::Missing(match ns {
                        Some(n) => format!("{kind}/{n}/{name}"),
                        None => format!("{kind}/{name}"),
                    })
                };
                v.push(t);
            }
            all.push(v);
        }
        for (k, v) in self.model.kustomizations.iter_mut().zip(all) {
            k.health = v;
        }
    }

    /// Pod Security admission of every pod template against its namespace's `enforce`
    /// level (from the Namespace objects of the repo): a Pod is refused at dry-run, a
    /// workload is admitted but gets no pod.
    pub(super) fn pod_security(&mut self) {
        let mut levels: BTreeMap<String, String> = BTreeMap::new();
        for k in &self.model.kustomizations {
            for o in k.objects.iter().filter(|o| o.kind() == "Namespace" && o.group().is_empty()) {
                if let Some(l) = o.label("pod-security.kubernetes.io/enforce") {
                    levels.insert(o.name().to_string(), l.to_string());
                }
            }
        }
        for i in 0..self.model.kustomizations.len() {
            let kid =
                format!("{}/{}", self.model.kustomizations[i].spec.namespace, self.model.kustomizations[i].spec.name);
            for x in 0..self.model.kustomizations[i].objects.len() {
                let o = &self.model.kustomizations[i].objects[x];
                let (Some(spec), Some(level)) =
                    (crate::schema::pod_security::pod_spec(&o.value), levels.get(&flux::namespace_of(o)))
                else {
                    continue;
                };
                let v = crate::schema::pod_security::violations(level, spec);
                if v.is_empty() {
                    continue;
                }
                let ns = flux::namespace_of(o);
                let why = format!("violates PodSecurity \"{level}:latest\": {}", v.join(", "));
                let k = &self.model.kustomizations[i];
                let waits = k.spec.wait
                    || k.spec.health_checks.iter().any(|h| h.get("name").and_then(|n| n.as_str()) == Some(o.name()));
                let (sev, effect) = if o.kind() == "Pod" {
                    (Severity::Error, "the API server refuses it, and the Kustomization's dry-run fails".to_string())
                } else if waits {
                    (
                        Severity::Error,
                        format!(
                            "the API server refuses its pods, so it never becomes Ready and {kid} fails its health check"
                        ),
                    )
                } else {
                    (
                        Severity::Warning,
                        format!(
                            "the API server refuses its pods; nothing waits for it, so {kid} reports Ready while no pod runs"
                        ),
                    )
                };
                let f = Finding::new(
                    "pss-violation",
                    sev,
                    &o.origin,
                    format!("{} in namespace {ns} (enforce: {level}) {why}: {effect}", o.display_id()),
                )
                .for_kustomization(&kid)
                .fix(format!(
                    "set the pod's securityContext as {level} requires, or lower the namespace's enforce level"
                ));
                self.model.findings.push(f);
                if o.kind() == "Pod" {
                    let r = format!("pods \"{}\" is forbidden: {why}", o.name());
                    self.model.kustomizations[i].refused.push((x, r));
                } else {
                    self.model.kustomizations[i].pods_refused.push((x, why));
                }
            }
        }
    }
}
