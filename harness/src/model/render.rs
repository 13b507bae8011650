//! Rendering one Kustomization: where its source is, the render (cached for paths synced
//! without an overlay, done ahead on every core for a batch), and what the rendered
//! objects add to the model (Flux objects, ResourceSet expansion, duplicates).

use super::*;

/// The render cache's key: paths without a Flux overlay render the same for every
/// Kustomization that syncs them from the same source.
pub(super) fn render_key(origin: &Origin, spec: &Kustomization) -> Option<(String, String)> {
    spec.overlay.is_empty().then(|| (format!("{origin:?}"), spec.path.clone()))
}

impl Loader<'_> {
    /// Renders ahead, on every core, what `render` will ask of the renderer for this batch:
    /// rendering is most of a load and each path's render is independent of the others.
    /// Only the plain cases are taken (the repo's own or a mapped source, a directory, not
    /// cached); whatever is not prefetched `render` does itself, so the result is the same.
    pub(super) fn prefetch(&mut self, batch: &[usize]) {
        let mut keys = std::collections::HashSet::new();
        let mut jobs: Vec<(usize, &dyn Files, String, FluxOverlay)> = vec![];
        for &i in batch {
            let node = &self.model.kustomizations[i];
            let spec = &node.spec;
            if i == self.model.entry && self.prerendered.is_some() {
                continue;
            }
            let (files, origin): (&dyn Files, Origin) = if self.is_self(&spec.source) {
                (self.files, Origin::Repo)
            } else if let Some(m) = self.mapped(&spec.source) {
                (self.opts.sources[m].files, Origin::Mapped(self.opts.sources[m].key.clone()))
            } else {
                continue;
            };
            if let Some(k) = render_key(&origin, spec)
                && (self.render_cache.contains_key(&k) || !keys.insert(k))
            {
                continue;
            }
            if files.kind(&spec.path) == Some(EntryKind::Dir) {
                jobs.push((i, files, spec.path.clone(), spec.overlay.clone()));
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        if jobs.len() < 4 || threads < 2 {
            return;
        }
        let renderer = self.renderer;
        let chunk = jobs.len().div_ceil(threads);
        let done: Vec<(usize, Result<kustomize::Rendered>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(i, files, path, overlay)| (*i, renderer.render(*files, path, overlay)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // A renderer that panics is a bug: surface it as the panic it is.
            handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        self.prefetched.extend(done);
    }

    pub(super) fn render(&mut self, i: usize) -> Result<()> {
        let spec = self.model.kustomizations[i].spec.clone();
        let kid = format!("{}/{}", spec.namespace, spec.name);
        // Refused by the API server (its `schema-invalid` finding says why): it is never
        // created, so nothing of it is built. Rendering it would read whatever a mistyped
        // `spec.path` fell back to and blame that.
        if let Some(p) = self.model.kustomizations[i].parent {
            let parent = &self.model.kustomizations[p];
            // The very object this node was read from (file and line), not another of the
            // same name.
            let refused = parent.refused.iter().any(|(x, _)| {
                let o = &parent.objects[*x];
                o.kind() == "Kustomization" && o.group() == crate::flux::KUSTOMIZE_GROUP && o.origin == spec.origin
            });
            if refused {
                self.model.kustomizations[i].origin = Origin::Refused;
                return Ok(());
            }
        }
        let (files, origin): (&dyn Files, Origin) = if self.is_self(&spec.source) {
            (self.files, Origin::Repo)
        } else if let Some(m) = self.mapped(&spec.source) {
            let opts = self.opts;
            (opts.sources[m].files, Origin::Mapped(opts.sources[m].key.clone()))
        } else {
            let reason = match self.model.source(&spec.source) {
                Some(_) if spec.source.kind == "ExternalArtifact" => {
                    self.model.findings.push(
                        Finding::new(
                            "not-analysable",
                            Severity::Info,
                            &spec.origin,
                            format!("Kustomization {kid} reads {}, an artifact built in the cluster; its manifests cannot be analysed offline", spec.source),
                        )
                        .for_kustomization(&kid),
                    );
                    format!("source {} is built in the cluster", spec.source)
                }
                Some(s) => {
                    let url = self.model.sources[s].spec.url.clone().unwrap_or_default();
                    self.model.findings.push(
                        Finding::new(
                            "source-unmapped",
                            Severity::Warning,
                            &spec.origin,
                            format!("Kustomization {kid} reads {} ({url}), which is not this repository; its manifests are not analysed", spec.source),
                        )
                        .for_kustomization(&kid)
                        .fix(format!("map it to a local checkout with --source {}=DIR", spec.source.name)),
                    );
                    format!("source {} is not this repository and not mapped", spec.source)
                }
                None => {
                    self.model.findings.push(
                        Finding::new(
                            "source-missing",
                            Severity::Error,
                            &spec.origin,
                            format!("Kustomization {kid} reads {}, which nothing in the repository defines; Flux reports ArtifactFailed forever", spec.source),
                        )
                        .for_kustomization(&kid)
                        .fix("define the source in a Kustomization this one depends on, or fix spec.sourceRef"),
                    );
                    format!("source {} does not exist", spec.source)
                }
            };
            self.model.kustomizations[i].origin = Origin::NotRendered(reason);
            return Ok(());
        };
        self.model.kustomizations[i].origin = origin;
        let ctx = || format!("while rendering Kustomization {kid} ({})", spec.origin);
        match files.kind(&spec.path) {
            Some(EntryKind::Dir) => {}
            _ => {
                return Err(Error::at(
                    ErrorKind::MissingPath,
                    &spec.origin,
                    format!("Kustomization {kid}: spec.path './{}' is not a directory of the source", spec.path),
                ));
            }
        }
        // Many Kustomizations sync one path (one base, different substitutions): a path
        // without a Flux overlay renders the same every time, so it is rendered once.
        let cache_key = render_key(&self.model.kustomizations[i].origin, &spec);
        let rendered = match self.prerendered.take().filter(|_| i == self.model.entry) {
            Some(r) => r,
            None => match cache_key.as_ref().and_then(|k| self.render_cache.get(k)) {
                Some(Some(r)) => r.clone(),
                seen => {
                    let again = seen.is_some();
                    let r = match self.prefetched.remove(&i) {
                        Some(r) => r,
                        None => self.renderer.render(files, &spec.path, &spec.overlay),
                    }
                    .map_err(|e| e.context(ctx()))?;
                    if let Some(k) = cache_key {
                        self.render_cache.insert(k, again.then(|| r.clone()));
                    }
                    r
                }
            },
        };
        for n in &rendered.notes {
            self.model.findings.push(
                Finding::new(n.rule, if n.error { Severity::Error } else { Severity::Info }, &n.loc, n.message.clone())
                    .for_kustomization(&kid),
            );
        }
        let mut objects = rendered.objects;
        self.substitute(&spec, &kid, &mut objects)?;
        if let Some((kind, name)) = spec.kube_config() {
            // Applied to another cluster: its namespaces, CRDs, charts and Flux objects are
            // that cluster's, and nothing of this cluster's bootstrap waits on them. The
            // build (and substitution) above still has to succeed, as in Flux.
            self.model.findings.push(
                Finding::new(
                    "remote-target",
                    Severity::Info,
                    &spec.origin,
                    format!(
                        "Kustomization {kid} applies its {} object(s) to the cluster named by {kind} {}/{name} (spec.kubeConfig), not to this one: they are not part of this cluster's bootstrap and are not checked against it; {kid} needs that {kind} in this cluster before it can reconcile",
                        objects.len(),
                        spec.namespace
                    ),
                )
                .for_kustomization(&kid),
            );
            return Ok(());
        }
        let mut expanded = vec![];
        for o in &objects {
            match (o.group(), o.kind()) {
                (crate::operator::GROUP, "ResourceSet") => match crate::operator::expand_resource_set(o) {
                    crate::operator::Expansion::Objects(v) => expanded.extend(v),
                    crate::operator::Expansion::NotAnalysable(why) => self.model.findings.push(
                        Finding::new(
                            "not-analysable",
                            Severity::Info,
                            &o.origin,
                            format!("ResourceSet {} cannot be expanded offline: {why}", o.display_id()),
                        )
                        .for_kustomization(&kid),
                    ),
                },
                (_, "ArtifactGenerator") => {
                    // source-watcher emits one ExternalArtifact per spec.artifacts[] entry, in
                    // the generator's namespace: those sources exist, their content is built
                    // in the cluster.
                    let names: Vec<String> = o
                        .value
                        .pointer("/spec/artifacts")
                        .and_then(|a| a.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.get("name").and_then(|n| n.as_str()).map(str::to_string))
                        .collect();
                    for name in &names {
                        let src = Source {
                            kind: "ExternalArtifact".into(),
                            name: name.clone(),
                            namespace: flux::namespace_of(o),
                            url: None,
                            secret_ref: None,
                            origin: o.origin.clone(),
                        };
                        if self.model.source(&src.id()).is_none() {
                            self.model.sources.push(SourceNode { spec: src, owner: Some(i) });
                        }
                    }
                    self.model.findings.push(
                        Finding::new(
                            "not-analysable",
                            Severity::Info,
                            &o.origin,
                            format!(
                                "{} builds the ExternalArtifacts {} in the cluster (source-watcher); what they hold cannot be analysed offline",
                                o.display_id(),
                                names.join(", ")
                            ),
                        )
                        .for_kustomization(&kid),
                    )
                }
                _ => {}
            }
        }
        objects.extend(expanded);
        // Register what Flux will see before anything else reads the objects.
        for o in &objects {
            match flux::classify(o)? {
                FluxKind::Kustomization => {
                    let k = Kustomization::from_object(o)?;
                    if i == self.model.entry && k.name == spec.name && k.namespace == spec.namespace {
                        // The entry applies itself (gotk-sync.yaml): keep the committed spec.
                        self.model.kustomizations[i].spec = Kustomization { origin: k.origin.clone(), ..k };
                        self.model.kustomizations[i].synthesized = false;
                        continue;
                    }
                    if let Some(j) = self.model.kustomization(&k.id()) {
                        let first = self.model.kustomizations[j].spec.clone();
                        self.duplicate(
                            &kid,
                            "Kustomization",
                            &k.id(),
                            &k.origin,
                            &first.origin,
                            k.raw["spec"] == first.raw["spec"],
                        );
                        continue;
                    }
                    self.model.kustomizations.push(KustomizationNode {
                        spec: k,
                        objects: vec![],
                        origin: Origin::Repo,
                        parent: Some(i),
                        synthesized: false,
                        refused: vec![],
                        pods_refused: vec![],
                        health: vec![],
                    });
                    self.pending.push(self.model.kustomizations.len() - 1);
                }
                FluxKind::HelmRelease => {
                    let h = HelmRelease::from_object(o)?;
                    if let Some(j) = self.model.helm_release(&h.id()) {
                        let first = self.model.helm_releases[j].spec.clone();
                        self.duplicate(
                            &kid,
                            "HelmRelease",
                            &h.id(),
                            &h.origin,
                            &first.origin,
                            h.raw["spec"] == first.raw["spec"],
                        );
                        continue;
                    }
                    self.model.helm_releases.push(HelmReleaseNode { spec: h, owner: i });
                }
                FluxKind::Source => {
                    let s = Source::from_object(o);
                    if let Some(j) = self.model.source(&s.id()) {
                        if self.model.sources[j].owner != Some(i) {
                            let first = self.model.sources[j].spec.origin.clone();
                            let same = self.model.sources[j].spec.url == s.url;
                            self.duplicate(&kid, &s.kind, &s.id(), &s.origin, &first, same);
                        }
                        continue;
                    }
                    self.model.sources.push(SourceNode { spec: s, owner: Some(i) });
                }
                FluxKind::Other => {
                    if matches!(o.kind(), "ConfigMap" | "Secret") && o.group().is_empty() {
                        self.var_sources
                            .insert((o.kind().to_string(), flux::namespace_of(o), o.name().to_string()), o.clone());
                    }
                }
            }
        }
        self.check_schemas(i, &kid, files, &objects);
        self.model.kustomizations[i].objects = objects;
        Ok(())
    }
}
