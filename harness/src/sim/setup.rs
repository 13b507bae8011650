//! Building a simulator from a model: the per-object facts computed once (stage, kind,
//! what creates it), the sources, the charts' CNI roles, the faults, the entry queued.

use super::*;

impl<'a> Simulator<'a> {
    /// A simulator of a loaded repo, before its first event.
    pub fn of(loaded: &'a crate::loaded::Loaded, sim: SimConfig) -> Result<Self> {
        Self::new(&loaded.model, &loaded.graph, &loaded.catalogue, &loaded.config, sim)
    }

    fn new(
        model: &'a RepoModel,
        graph: &'a Graph,
        cat: &Catalogue,
        cfg: &RepoConfig,
        mut sim: SimConfig,
    ) -> Result<Self> {
        // A CNI installed before Flux (a bootstrap helmfile) runs from the start.
        sim.cni_preinstalled |= cfg.cni_preinstalled;
        // Each layer waits at least one dependsOn requeue for the one before: a chain of
        // 2,000 takes most of a day and is slow, not stuck. The limit is at least five
        // minutes per layer.
        sim.max_ms = sim.max_ms.max(graph.layers.len() as u64 * 5 * 60 * SEC);
        let mut sources: Vec<SSim> = model
            .sources
            .iter()
            .map(|s| SSim {
                failure: None,
                kind: s.spec.kind.clone(),
                namespace: s.spec.namespace.clone(),
                name: s.spec.name.clone(),
                exists: false,
                ready_at: None,
            })
            .collect();
        let self_idx = match model.source(&model.self_source) {
            Some(i) => i,
            None => {
                sources.push(SSim {
                    failure: None,
                    kind: model.self_source.kind.clone(),
                    namespace: model.self_source.namespace.clone(),
                    name: model.self_source.name.clone(),
                    exists: false,
                    ready_at: None,
                });
                sources.len() - 1
            }
        };
        let k_source: Vec<Option<usize>> = model
            .kustomizations
            .iter()
            .map(|k| if k.spec.source == model.self_source { Some(self_idx) } else { model.source(&k.spec.source) })
            .collect();
        let h_source =
            model.helm_releases.iter().map(|h| h.spec.source.as_ref().and_then(|r| model.source(r))).collect();
        // A source whose Kustomizations include a dependsOn cycle is silenced.
        let mut silenced = BTreeSet::new();
        // Cycle members are written `Kustomization ns/name[ depends on]`.
        let in_cycles: std::collections::HashSet<&str> = graph
            .cycles
            .iter()
            .flatten()
            .filter_map(|s| s.strip_prefix("Kustomization "))
            .map(|s| s.split(' ').next().unwrap_or(s))
            .collect();
        if !in_cycles.is_empty() {
            for (i, k) in model.kustomizations.iter().enumerate() {
                if in_cycles.contains(format!("{}/{}", k.spec.namespace, k.spec.name).as_str())
                    && let Some(s) = k_source[i]
                {
                    silenced.insert(s);
                }
            }
        }
        let mut ns_labels = BTreeMap::new();
        for k in &model.kustomizations {
            for o in k.objects.iter().filter(|o| o.kind() == "Namespace" && o.group().is_empty()) {
                let mut l =
                    o.value.pointer("/metadata/labels").and_then(|l| l.as_object()).cloned().unwrap_or_default();
                l.insert("kubernetes.io/metadata.name".into(), o.name().into());
                ns_labels.insert(o.name().to_string(), l);
            }
        }
        let mut s = Simulator {
            model,
            graph,
            cat: cat.clone(),
            cfg: cfg.clone(),
            now: 0,
            seq: 0,
            client_edits: 0,
            ready_below: (0, 0),
            handled: 0,
            readiness_changed: true,
            k_parked: vec![None; model.kustomizations.len()],
            undecryptable: model
                .kustomizations
                .iter()
                .map(|k| crate::sops::build_failure(k, &cfg.decryption).map(|(_, m)| m))
                .collect(),
            undecrypted: model
                .kustomizations
                .iter()
                .map(|k| crate::sops::undecrypted_secret(k).map(|(_, m)| m))
                .collect(),
            h_parked: vec![None; model.helm_releases.len()],
            k_dependents: vec![vec![]; model.kustomizations.len()],
            h_dependents: vec![vec![]; model.helm_releases.len()],
            queue: BinaryHeap::new(),
            rng: sim.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            ks: vec![KSim::default(); model.kustomizations.len()],
            hs: vec![
                HSim {
                    exists: false,
                    created_at: None,
                    phase: HPhase::Waiting,
                    attempt: 0,
                    failures: 0,
                    backoff: 0,
                    install_started: 0,
                    install_ends: 0,
                    deadline: 0,
                    ready: Readiness::default(),
                    block: None,
                    injected_failures: 0,
                    next_at: None,
                };
                model.helm_releases.len()
            ],
            sources,
            k_source,
            h_source,
            silenced,
            crds: BTreeSet::new(),
            namespaces: crate::rules::ALWAYS_NAMESPACES.iter().map(|s| s.to_string()).collect(),
            ns_labels,
            webhooks: BTreeSet::new(),
            repo_hooks: super::repo_webhooks::find(model),
            templates: BTreeSet::new(),
            applied: BTreeSet::new(),
            preinstalled: model
                .helm_releases
                .iter()
                .map(|h| cfg.preinstalled_releases.contains(&(h.spec.namespace.clone(), h.spec.name.clone())))
                .collect(),
            index: {
                let mut m = std::collections::HashMap::new();
                for (i, k) in model.kustomizations.iter().enumerate() {
                    m.entry(("Kustomization".to_string(), k.spec.namespace.clone(), k.spec.name.clone())).or_insert(i);
                }
                for (j, h) in model.helm_releases.iter().enumerate() {
                    m.entry(("HelmRelease".to_string(), h.spec.namespace.clone(), h.spec.name.clone())).or_insert(j);
                }
                for (x, src) in model.sources.iter().enumerate() {
                    m.entry((src.spec.kind.clone(), src.spec.namespace.clone(), src.spec.name.clone())).or_insert(x);
                }
                m
            },
            objs: vec![],
            stages: model
                .kustomizations
                .iter()
                .map(|k| {
                    let mut st: [Vec<usize>; 3] = Default::default();
                    for (x, o) in k.objects.iter().enumerate() {
                        st[stage_of(o) as usize].push(x);
                    }
                    st
                })
                .collect(),
            producers: {
                let mut m = BTreeMap::new();
                for (k, node) in model.kustomizations.iter().enumerate() {
                    for o in node
                        .objects
                        .iter()
                        .filter(|o| o.group().is_empty() && matches!(o.kind(), "ConfigMap" | "Secret"))
                    {
                        m.entry((o.kind().to_string(), crate::flux::namespace_of(o), o.name().to_string()))
                            .or_insert(k);
                    }
                }
                m
            },
            network: false,
            network_down: vec![],
            chain_ok: false,
            primary_cni: None,
            chained_cni: None,
            timeline: vec![],
            notes: BTreeSet::new(),
            converged_at: None,
            sim,
        };
        for (i, k) in model.kustomizations.iter().enumerate() {
            for d in &k.spec.depends_on {
                if let Some(x) = s.find_k(d).filter(|x| !s.k_dependents[*x].contains(&i)) {
                    s.k_dependents[x].push(i);
                }
            }
        }
        for (j, h) in model.helm_releases.iter().enumerate() {
            for d in &h.spec.depends_on {
                if let Some(x) = s.find_h(d).filter(|x| !s.h_dependents[*x].contains(&j)) {
                    s.h_dependents[x].push(j);
                }
            }
        }
        s.objs = model
            .kustomizations
            .iter()
            .map(|k| {
                k.objects
                    .iter()
                    .map(|o| {
                        let (group, kind) = (o.group(), o.kind());
                        let flux_ref = || Ref {
                            kind: kind.into(),
                            namespace: crate::flux::namespace_of(o),
                            name: o.name().into(),
                        };
                        let creates = match group {
                            crate::flux::KUSTOMIZE_GROUP if kind == "Kustomization" => {
                                s.find_k(&flux_ref()).map(Entity::K)
                            }
                            crate::flux::HELM_GROUP if kind == "HelmRelease" => s.find_h(&flux_ref()).map(Entity::H),
                            _ => None,
                        };
                        ObjInfo {
                            id: kstatus_name(kind, o.namespace(), o.name()),
                            ns: o
                                .namespace()
                                .filter(|_| !crate::object::is_known_cluster_scoped(group, kind))
                                .map(str::to_string),
                            always_known: crate::builtin::find(group, kind).is_some()
                                || group.ends_with(".toolkit.fluxcd.io")
                                || cfg.preinstalled_crds.iter().any(|g| g == group),
                            creates,
                        }
                    })
                    .collect()
            })
            .collect();
        for (j, h) in model.helm_releases.iter().enumerate() {
            match s.cat.chart(&h.spec.chart).and_then(|c| c.cni.as_ref()).map(|c| c.role) {
                Some(CniRole::Primary) => s.primary_cni = Some(j),
                Some(CniRole::Chained) => s.chained_cni = Some(j),
                None => {}
            }
            if s.cat.chart(&h.spec.chart).is_none() {
                s.notes.insert(format!(
                    "chart {} (HelmRelease {}/{}) is not in the catalogue: simulated with the default behaviour (no CRDs, no webhooks, {} install)",
                    h.spec.chart,
                    h.spec.namespace,
                    h.spec.name,
                    format_duration(s.sim.default_install_ms)
                ));
            }
        }
        s.network = s.sim.cni_preinstalled || s.primary_cni.is_none();
        if s.network && s.primary_cni.is_none() && !s.sim.cni_preinstalled {
            s.notes.insert(
                "the repository installs no CNI: the cluster's own CNI is assumed (pods get a network from the start)"
                    .into(),
            );
        }
        // Validate faults against the model and schedule them.
        let faults = s.sim.faults.clone();
        for (n, f) in faults.iter().enumerate() {
            match f {
                Fault::WebhookDown { name, from, to } => {
                    let known = model.helm_releases.iter().any(|h| {
                        s.cat.chart(&h.spec.chart).is_some_and(|c| c.webhooks.iter().any(|w| &w.name == name))
                    }) || s.repo_hooks.iter().any(|h| &h.name == name);
                    if !known {
                        return Err(Error::new(
                            ErrorKind::Usage,
                            format!(
                                "--fault webhook-down:{name}: no HelmRelease of the repository registers a webhook named {name}, nor does a webhook configuration the repository applies"
                            ),
                        ));
                    }
                    s.push(*from, Ev::Fault(n));
                    s.push(*to, Ev::Fault(n));
                }
                Fault::CiliumRestart { at } | Fault::NodeLate { at } => {
                    if matches!(f, Fault::CiliumRestart { .. }) && s.primary_cni.is_none() && !s.sim.cni_preinstalled {
                        return Err(Error::new(
                            ErrorKind::Usage,
                            "--fault cilium-restart: the repository installs no Cilium",
                        ));
                    }
                    s.push(*at, Ev::Fault(n));
                }
                Fault::ChartFail { release, times } => {
                    let j = s.release(release)?;
                    s.hs[j].injected_failures = *times;
                }
                Fault::SlowChart { release, .. } => {
                    s.release(release)?;
                }
            }
        }
        // Bootstrap: flux install created the entry Kustomization and its source.
        s.sources[self_idx].exists = true;
        s.push(s.sim.source_fetch_ms, Ev::SourceReady(self_idx));
        s.create_k(model.entry);
        Ok(s)
    }
}
