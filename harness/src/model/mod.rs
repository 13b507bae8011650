//! The repo as Flux sees it: starting at the cluster entry, every Flux Kustomization is
//! rendered and followed through its `spec.path`, collecting the Kustomizations,
//! HelmReleases and sources it applies, with the file and line of each.
//!
//! Pure: reads only through [`Files`], renders through a [`Renderer`].

use crate::error::{Error, ErrorKind, Loc, Result};
use crate::files::{self, EntryKind, Files};
use crate::findings::{Finding, Severity};
use crate::flux::{self, FluxKind, HelmRelease, Kustomization, Ref, Source};
use crate::kustomize::{self, FluxOverlay};
use crate::object::Object;
use std::collections::BTreeMap;

/// Renders a directory of a source the way kustomize-controller's build step does.
pub trait Renderer {
    fn render(&self, files: &dyn Files, dir: &str, overlay: &FluxOverlay) -> Result<kustomize::Rendered>;
}

/// The built-in renderer: native kustomize plus Flux's overlay, no processes.
pub struct NativeRenderer;

impl Renderer for NativeRenderer {
    fn render(&self, files: &dyn Files, dir: &str, overlay: &FluxOverlay) -> Result<kustomize::Rendered> {
        kustomize::build_flux_path(files, dir, overlay)
    }
}

#[derive(Debug, Clone)]
pub enum Entry {
    /// `clusters/ENV`, wherever `clusters/` sits in the repo.
    Cluster(String),
    /// A directory that is the root of the sync.
    Path(String),
}

/// A source mapped to a directory with `--source NAME=DIR`.
pub struct MappedSource<'a> {
    /// `name`, `namespace/name` or `Kind/namespace/name`.
    pub key: String,
    pub files: &'a dyn Files,
}

pub struct LoadOptions<'a> {
    pub entry: Entry,
    pub sources: Vec<MappedSource<'a>>,
}

/// Where a Flux Kustomization's manifests came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// This repository.
    Repo,
    /// A source mapped with `--source` (its key).
    Mapped(String),
    /// Not rendered: the reason (unmapped remote source, missing source ...).
    NotRendered(String),
    /// kustomize-controller's build fails (missing path, broken YAML, bad patch ...): the
    /// Kustomization fails every reconcile with this message and applies nothing.
    BuildFailed(String),
    /// The API server refuses the Kustomization object itself: it is never created and
    /// applies nothing (its `schema-invalid` finding says why).
    Refused,
}

#[derive(Debug, Clone)]
pub struct KustomizationNode {
    pub spec: Kustomization,
    pub objects: Vec<Object>,
    pub origin: Origin,
    /// The Kustomization that applies this one (`None` for the entry).
    pub parent: Option<usize>,
    /// Synthesised because the repo does not commit it (placeholder gotk-sync, `--path`).
    pub synthesized: bool,
    /// Objects the API server refuses (index into `objects`, the refusal): the dry-run of
    /// their stage fails, so nothing of that stage is applied.
    pub refused: Vec<(usize, String)>,
    /// Workloads whose pods Pod Security admission refuses (index, why): applied, never Ready.
    pub pods_refused: Vec<(usize, String)>,
    /// What each `spec.healthChecks` entry waits for, resolved once for the rules and the
    /// simulator alike.
    pub health: Vec<HealthTarget>,
}

/// What a health check names, as far as the repo shows.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthTarget {
    /// An object the Kustomization applies itself (index into its objects).
    Own(usize),
    Kustomization(usize),
    HelmRelease(usize),
    /// An object another Kustomization applies: there once that one is Ready.
    AppliedBy(usize),
    /// A chart's workload: the release installing into that namespace.
    Release(usize),
    /// Possibly made by a chart, or by a Kustomization not rendered here: not checked.
    Unknowable,
    /// Nothing can create it: `Kind/ns/name`.
    Missing(String),
}

#[derive(Debug, Clone)]
pub struct HelmReleaseNode {
    pub spec: HelmRelease,
    /// Index of the Kustomization that applies it.
    pub owner: usize,
}

#[derive(Debug, Clone)]
pub struct SourceNode {
    pub spec: Source,
    pub owner: Option<usize>,
}

/// Rendered objects in one repository before the load stops (exit 2): the largest real
/// repositories render a few thousand; memory grows with every object kept.
pub const MAX_OBJECTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct RepoModel {
    pub entry: usize,
    /// The source that is this repository (the entry's `flux-system` GitRepository).
    pub self_source: Ref,
    /// The directory the entry syncs (e.g. `clusters/staging`).
    pub entry_path: String,
    pub kustomizations: Vec<KustomizationNode>,
    pub helm_releases: Vec<HelmReleaseNode>,
    pub sources: Vec<SourceNode>,
    pub findings: Vec<Finding>,
    /// ConfigMaps and Secrets (kind, name) committed outside what Flux applies and read by
    /// a Kustomization: taken as applied before Flux (a bootstrap script).
    pub preapplied: std::collections::BTreeSet<(String, String)>,
    /// The index behind [`RepoModel::kustomization`] and its siblings.
    pub lookup: Lookup,
}

impl RepoModel {
    pub fn kustomization(&self, r: &Ref) -> Option<usize> {
        let mut guard = self.lookup.0.lock().unwrap_or_else(|e| e.into_inner());
        let l = &mut *guard;
        let key = |k: &KustomizationNode| (k.spec.namespace.clone(), k.spec.name.clone());
        extend(&mut l.k, &mut l.k_len, &self.kustomizations, key);
        let found = l.k.get(&(r.namespace.clone(), r.name.clone())).copied();
        found.filter(|&i| {
            self.kustomizations[i].spec.namespace == r.namespace && self.kustomizations[i].spec.name == r.name
        })
    }
    pub fn helm_release(&self, r: &Ref) -> Option<usize> {
        let mut guard = self.lookup.0.lock().unwrap_or_else(|e| e.into_inner());
        let l = &mut *guard;
        let key = |h: &HelmReleaseNode| (h.spec.namespace.clone(), h.spec.name.clone());
        extend(&mut l.h, &mut l.h_len, &self.helm_releases, key);
        let found = l.h.get(&(r.namespace.clone(), r.name.clone())).copied();
        found.filter(|&j| {
            self.helm_releases[j].spec.namespace == r.namespace && self.helm_releases[j].spec.name == r.name
        })
    }
    pub fn source(&self, r: &Ref) -> Option<usize> {
        let mut guard = self.lookup.0.lock().unwrap_or_else(|e| e.into_inner());
        let l = &mut *guard;
        let key = |s: &SourceNode| (s.spec.kind.clone(), s.spec.namespace.clone(), s.spec.name.clone());
        extend(&mut l.s, &mut l.s_len, &self.sources, key);
        let found = l.s.get(&(r.kind.clone(), r.namespace.clone(), r.name.clone())).copied();
        found.filter(|&i| {
            let s = &self.sources[i].spec;
            s.kind == r.kind && s.namespace == r.namespace && s.name == r.name
        })
    }
}

/// Name lookups of [`RepoModel`], indexed: a linear scan per lookup made every pass over
/// a repo of n Kustomizations cost O(n²). Nodes are only ever pushed, and a node's
/// identity (kind, namespace, name) never changes once pushed, so the index extends
/// itself from where it stopped; a hit is still checked against the node.
#[derive(Default)]
pub struct Lookup(std::sync::Mutex<LookupIndex>);

#[derive(Default)]
struct LookupIndex {
    k_len: usize,
    k: std::collections::HashMap<(String, String), usize>,
    h_len: usize,
    h: std::collections::HashMap<(String, String), usize>,
    s_len: usize,
    s: std::collections::HashMap<(String, String, String), usize>,
}

impl Clone for Lookup {
    fn clone(&self) -> Self {
        Lookup::default()
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup")
    }
}

/// Adds `items[*len..]` to `map` (the first of equal keys wins, as a scan would find it).
fn extend<T, K: std::hash::Hash + Eq>(
    map: &mut std::collections::HashMap<K, usize>,
    len: &mut usize,
    items: &[T],
    key: impl Fn(&T) -> K,
) {
    for (i, item) in items.iter().enumerate().skip(*len) {
        map.entry(key(item)).or_insert(i);
    }
    *len = items.len();
}

/// Every `clusters/<name>` directory of the repo (at any depth up to 7, hidden
/// directories and build outputs skipped), as `(name, path)`.
fn cluster_dirs(files: &dyn Files) -> Vec<(String, String)> {
    let mut found = vec![];
    let mut stack = vec![(String::new(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = files.list(&dir) else { continue };
        for (name, kind) in entries {
            if kind != EntryKind::Dir || name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            if files::file_name(&dir) == "clusters" {
                found.push((name, path.clone()));
            }
            if depth < 6 {
                stack.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// Finds the `clusters/ENV` directories.
pub fn find_cluster_dirs(files: &dyn Files, env: &str) -> Vec<String> {
    cluster_dirs(files).into_iter().filter(|(n, _)| n == env).map(|(_, p)| p).collect()
}

/// Names of every `clusters/*` directory, for "did you mean" messages.
pub fn list_clusters(files: &dyn Files) -> Vec<String> {
    let mut names: Vec<String> = cluster_dirs(files).into_iter().map(|(n, _)| n).collect();
    names.dedup();
    names
}

fn resolve_entry_dir(files: &dyn Files, entry: &Entry) -> Result<String> {
    match entry {
        Entry::Cluster(env) => {
            let dirs = find_cluster_dirs(files, env);
            match dirs.len() {
                1 => Ok(dirs.into_iter().next().unwrap()),
                0 => {
                    let known = list_clusters(files);
                    Err(Error::new(
                        if known.is_empty() { ErrorKind::NotFluxRepo } else { ErrorKind::Usage },
                        if known.is_empty() {
                            format!(
                                "no clusters/{env} directory in the repository (and no clusters/ directory at all); is this a Flux repository? Use --path DIR to name the directory Flux syncs"
                            )
                        } else {
                            format!("no clusters/{env} directory; clusters in this repository: {}", known.join(", "))
                        },
                    ))
                }
                _ => Err(Error::new(
                    ErrorKind::Usage,
                    format!("several clusters/{env} directories: {}; choose one with --path", dirs.join(", ")),
                )),
            }
        }
        Entry::Path(p) => {
            let dir = files::join("", p).map_err(|m| Error::new(ErrorKind::Usage, m))?;
            match files.kind(&dir) {
                Some(EntryKind::Dir) => Ok(dir),
                Some(EntryKind::File) => Err(Error::in_file(ErrorKind::Usage, &dir, "--path must name a directory")),
                None => {
                    Err(Error::in_file(ErrorKind::MissingPath, files::display_dir(&dir), "directory does not exist"))
                }
            }
        }
    }
}

fn synthesized_entry(dir: &str) -> Kustomization {
    let loc = Loc::new(format!("{}/ (synthesized flux-system)", files::display_dir(dir)), 1);
    Kustomization {
        name: "flux-system".into(),
        namespace: "flux-system".into(),
        api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
        path: dir.into(),
        source: Ref { kind: "GitRepository".into(), namespace: "flux-system".into(), name: "flux-system".into() },
        depends_on: vec![],
        interval: Some("10m".into()),
        retry_interval: None,
        timeout: None,
        wait: false,
        health_checks: vec![],
        prune: true,
        suspend: false,
        decryption: false,
        substitute: vec![],
        substitute_from: vec![],
        overlay: FluxOverlay::default(),
        origin: loc,
        raw: serde_json::Value::Null,
    }
}

struct Loader<'a> {
    files: &'a dyn Files,
    opts: &'a LoadOptions<'a>,
    renderer: &'a dyn Renderer,
    model: RepoModel,
    /// The entry's own GitRepository (`flux-system`) and its URL: the repo itself.
    self_source: Ref,
    self_url: Option<String>,
    /// ConfigMaps and Secrets rendered anywhere, by (kind, namespace, name).
    var_sources: BTreeMap<(String, String, String), Object>,
    /// Kustomizations not rendered yet.
    pending: Vec<usize>,
    /// The entry directory, already rendered to find the entry.
    prerendered: Option<kustomize::Rendered>,
    /// Renders of paths without a Flux overlay, by (origin, path).
    render_cache: std::collections::HashMap<(String, String), kustomize::Rendered>,
    /// Secrets and ConfigMaps committed outside what Flux applies (`bootstrap/`), by
    /// (kind, name): built the first time a reference is missing.
    out_of_band: Option<BTreeMap<(String, String), Loc>>,
    /// Objects rendered so far, against [`MAX_OBJECTS`].
    total_objects: usize,
}

/// Loads the model. Errors are for repos that cannot be loaded at all (exit code 2);
/// everything else becomes a finding.
pub fn load(files: &dyn Files, opts: &LoadOptions, renderer: &dyn Renderer) -> Result<RepoModel> {
    let entry_dir = resolve_entry_dir(files, &opts.entry)?;
    // Render the entry directory to find the flux-system Kustomization that syncs it.
    let rendered = renderer
        .render(files, &entry_dir, &FluxOverlay::default())
        .map_err(|e| e.context(format!("while rendering the cluster entry {}", files::display_dir(&entry_dir))))?;
    let objects = rendered.objects.clone();
    let mut entry_spec = None;
    let mut self_source =
        Ref { kind: "GitRepository".into(), namespace: "flux-system".into(), name: "flux-system".into() };
    let mut candidates: Vec<Kustomization> = vec![];
    for o in &objects {
        if flux::classify(o)? == FluxKind::Kustomization {
            let k = Kustomization::from_object(o)?;
            if k.path == entry_dir {
                candidates.push(k);
            }
        }
    }
    candidates.sort_by_key(|k| (k.name != "flux-system", k.name.clone()));
    if let Some(k) = candidates.into_iter().next() {
        self_source = k.source.clone();
        entry_spec = Some(k);
    }
    // Installed by the Flux Operator: the FluxInstance says what the cluster syncs.
    let mut operator_sync = None;
    if entry_spec.is_none()
        && let Some(sync) = crate::operator::find_sync(&objects)
    {
        let mut k = synthesized_entry(&sync.path);
        k.source.kind = sync.kind.clone();
        k.origin = sync.origin.clone();
        self_source = k.source.clone();
        entry_spec = Some(k);
        operator_sync = Some(sync);
    }
    let synthesized = entry_spec.is_none();
    let entry_spec = entry_spec.unwrap_or_else(|| synthesized_entry(&entry_dir));
    let self_url = objects
        .iter()
        .find(|o| {
            o.kind() == self_source.kind
                && o.name() == self_source.name
                && flux::namespace_of(o) == self_source.namespace
        })
        .and_then(|o| o.value.pointer("/spec/url").and_then(|u| u.as_str()).map(str::to_string))
        .or_else(|| operator_sync.as_ref().and_then(|s| s.url.clone()));

    let mut l = Loader {
        files,
        opts,
        renderer,
        model: RepoModel {
            entry: 0,
            self_source: self_source.clone(),
            entry_path: entry_dir.clone(),
            kustomizations: vec![],
            helm_releases: vec![],
            sources: vec![],
            findings: vec![],
            preapplied: Default::default(),
            lookup: Lookup::default(),
        },
        self_source,
        self_url,
        var_sources: BTreeMap::new(),
        pending: vec![],
        prerendered: None,
        render_cache: Default::default(),
        out_of_band: None,
        total_objects: 0,
    };
    if let Some(sync) = &operator_sync {
        l.model.entry_path = sync.path.clone();
        l.model.findings.push(Finding::new(
            "entry-flux-operator",
            Severity::Info,
            &sync.origin,
            format!(
                "Flux is installed by the Flux Operator: the entry syncs ./{} from the {} {}",
                sync.path,
                sync.kind,
                sync.url.as_deref().unwrap_or("(no url)")
            ),
        ));
        if !matches!(files.kind(&sync.path), Some(EntryKind::Dir)) {
            return Err(Error::at(
                ErrorKind::MissingPath,
                &sync.origin,
                format!("the FluxInstance syncs ./{}, which is not a directory of the repository", sync.path),
            ));
        }
    }
    if synthesized {
        l.model.findings.push(Finding::new(
            "entry-synthesized",
            Severity::Info,
            &Loc::new(files::display_dir(&entry_dir), 1),
            format!(
                "no Flux Kustomization in {} syncs this directory (gotk-sync.yaml missing or a placeholder); using a synthesized flux-system Kustomization with path ./{}",
                files::display_dir(&entry_dir),
                entry_dir
            ),
        ));
    }
    // The entry usually syncs the directory just rendered with no overlay: reuse it.
    if entry_spec.path == entry_dir && entry_spec.overlay.is_empty() && l.is_self(&entry_spec.source) {
        l.prerendered = Some(rendered);
    }
    l.model.kustomizations.push(KustomizationNode {
        spec: entry_spec,
        objects: vec![],
        origin: Origin::Repo,
        parent: None,
        synthesized,
        refused: vec![],
        pods_refused: vec![],
        health: vec![],
    });
    l.pending.push(0);
    l.run()?;
    l.merge_values_from();
    l.pod_security();
    l.health_targets();
    if l.model.kustomizations.len() == 1
        && l.model.helm_releases.is_empty()
        && l.model.kustomizations[0].objects.is_empty()
    {
        return Err(Error::in_file(
            ErrorKind::NotFluxRepo,
            files::display_dir(&entry_dir),
            "nothing to bootstrap: the entry renders no objects and no Flux Kustomization or HelmRelease",
        ));
    }
    Ok(l.model)
}

impl Loader<'_> {
    fn run(&mut self) -> Result<()> {
        loop {
            if self.pending.is_empty() {
                return Ok(());
            }
            // Render every Kustomization whose inputs (source, substituteFrom objects) are
            // known; when none is ready, render the oldest anyway and report what is missing.
            let ready: Vec<usize> = self.pending.iter().copied().filter(|&i| self.inputs_known(i)).collect();
            let batch = if ready.is_empty() { vec![self.pending[0]] } else { ready };
            self.pending.retain(|i| !batch.contains(i));
            for i in batch {
                if let Err(e) = self.render(i) {
                    self.build_failed(i, e)?;
                }
                self.total_objects += self.model.kustomizations[i].objects.len();
                if self.total_objects > MAX_OBJECTS {
                    let k = &self.model.kustomizations[i].spec;
                    return Err(Error::at(
                        ErrorKind::TooLarge,
                        &k.origin,
                        format!(
                            "the repository renders more than {MAX_OBJECTS} objects (reached with Kustomization {}/{}): more than the harness analyses; a real repository holds a few thousand, so this is most likely generated",
                            k.namespace, k.name
                        ),
                    ));
                }
            }
        }
    }

    /// HelmRelease `valuesFrom`: ConfigMaps and Secrets of the repo merged under
    /// `spec.values`, as helm-controller does, so the rules see the values it installs with.
    /// A Kustomization whose build fails is what Flux shows it as: that Kustomization
    /// failing, its dependents waiting, the rest of the repo going on. The entry failing, or
    /// the machine refusing (IO), still stops the load.
    fn build_failed(&mut self, i: usize, e: Error) -> Result<()> {
        if i == self.model.entry || matches!(e.kind, ErrorKind::Io | ErrorKind::Usage | ErrorKind::NotFluxRepo) {
            return Err(e);
        }
        let spec = self.model.kustomizations[i].spec.clone();
        let kid = format!("{}/{}", spec.namespace, spec.name);
        let loc = match (&e.file, e.line) {
            (Some(f), Some(l)) => Loc::new(f, l),
            (Some(f), None) => Loc::new(f, 1),
            _ => spec.origin.clone(),
        };
        let mut what = e.message.clone();
        for c in e.context.iter().filter(|c| !c.starts_with("while rendering Kustomization")) {
            what.push_str(&format!(" ({c})"));
        }
        // Drop whatever the failed render registered half-way.
        self.model.kustomizations[i].objects.clear();
        if e.kind == ErrorKind::Unsupported {
            // kustomize itself builds it: the harness cannot, so the proof is incomplete.
            self.model.findings.push(
                Finding::new(
                    "renderer-unsupported",
                    Severity::Error,
                    &loc,
                    format!("Kustomization {kid} cannot be rendered natively: {what}; nothing it applies is checked"),
                )
                .for_kustomization(&kid)
                .fix("run plan with --renderer kubectl"),
            );
            self.model.kustomizations[i].origin =
                Origin::NotRendered(format!("the native renderer does not implement it: {what}"));
            return Ok(());
        }
        let flux_message = if e.kind == ErrorKind::MissingPath && e.file.as_deref() == Some(spec.origin.file.as_str()) {
            format!("kustomization path not found: stat /tmp/kustomization/{}: no such file or directory", spec.path)
        } else {
            format!("kustomize build failed: {}{what}", e.location().map(|l| format!("{l}: ")).unwrap_or_default())
        };
        self.model.findings.push(
            Finding::new(
                "flux-build-failed",
                Severity::Error,
                &loc,
                format!(
                    "Kustomization {kid} cannot be built ({what}): Flux fails it on every reconcile{} and nothing that depends on it becomes Ready",
                    if flux_message.starts_with("kustomization path not found") { format!(" (`{flux_message}`)") } else { String::new() }
                ),
            )
            .for_kustomization(&kid),
        );
        self.model.kustomizations[i].origin = Origin::BuildFailed(flux_message);
        Ok(())
    }

    /// Two Kustomizations applying the same Flux object: in Flux both apply it and the last
    /// one wins on every reconcile. The same spec twice is harmless but for pruning (a
    /// warning); two different specs flap (an error). The first definition is the model's.
    fn duplicate(&mut self, kid: &str, kind: &str, id: &Ref, here: &Loc, first: &Loc, same: bool) {
        let (severity, effect) = if same {
            (Severity::Warning, "with the same spec; pruning either Kustomization deletes it from under the other")
        } else {
            (
                Severity::Error,
                "with different specs; each reconcile of either Kustomization overwrites the other's, so the object flaps",
            )
        };
        self.model.findings.push(
            Finding::new(
                "duplicate-object",
                severity,
                here,
                format!("{kind} {}/{} is applied twice (also at {first}) {effect}", id.namespace, id.name),
            )
            .for_kustomization(kid)
            .fix("define it in one place and let the other Kustomization depend on that one"),
        );
    }

    fn merge_values_from(&mut self) {
        for j in 0..self.model.helm_releases.len() {
            let h = self.model.helm_releases[j].spec.clone();
            let Some(list) = h.raw.pointer("/spec/valuesFrom").and_then(|v| v.as_array()) else { continue };
            let hid = format!("{}/{}", h.namespace, h.name);
            let owner = format!(
                "{}/{}",
                self.model.kustomizations[self.model.helm_releases[j].owner].spec.namespace,
                self.model.kustomizations[self.model.helm_releases[j].owner].spec.name
            );
            let mut merged = serde_json::Value::Object(serde_json::Map::new());
            for vf in list {
                let kind = vf.get("kind").and_then(|v| v.as_str()).unwrap_or("ConfigMap");
                let name = vf.get("name").and_then(|v| v.as_str()).unwrap_or("");
                let key = vf.get("valuesKey").and_then(|v| v.as_str()).unwrap_or("values.yaml");
                let optional = vf.get("optional").and_then(|v| v.as_bool()).unwrap_or(false);
                let Some(o) = self.var_sources.get(&(kind.to_string(), h.namespace.clone(), name.to_string())) else {
                    if !optional {
                        self.model.findings.push(
                            Finding::new(
                                "values-from-missing",
                                Severity::Error,
                                &h.origin,
                                format!("HelmRelease {hid} takes values from {kind} {}/{name}, which the repository does not define: helm-controller fails with ValuesError", h.namespace),
                            )
                            .for_kustomization(&owner)
                            .fix("create it (a configMapGenerator with a `configurations:` nameReference for HelmRelease spec/valuesFrom/name keeps hashed names in step), or mark it optional"),
                        );
                    }
                    continue;
                };
                if o.value.get("sops").is_some() {
                    continue;
                }
                let Some(text) = var_values(o).into_iter().find(|(k, _)| k == key).map(|(_, v)| v) else { continue };
                let Ok(doc) = crate::yaml::parse_one(&o.origin.file, &text) else { continue };
                match vf.get("targetPath").and_then(|v| v.as_str()) {
                    Some(tp) => {
                        let path = crate::kustomize::replace::parse_path(tp);
                        crate::kustomize::replace::set(
                            &mut merged,
                            &path,
                            serde_json::Value::String(text.trim().to_string()),
                            true,
                        );
                    }
                    None => deep_merge(&mut merged, &doc.value),
                }
            }
            deep_merge(&mut merged, &h.values);
            self.model.helm_releases[j].spec.values = merged;
        }
    }

    fn inputs_known(&self, i: usize) -> bool {
        let k = &self.model.kustomizations[i].spec;
        let source_known =
            self.is_self(&k.source) || self.mapped(&k.source).is_some() || self.model.source(&k.source).is_some();
        source_known
            && k.substitute_from.iter().all(|s| {
                s.optional || self.var_sources.contains_key(&(s.kind.clone(), k.namespace.clone(), s.name.clone()))
            })
    }

    fn is_self(&self, r: &Ref) -> bool {
        if r == &self.self_source {
            return true;
        }
        if r.kind != "GitRepository" {
            return false;
        }
        let url = self.model.source(r).and_then(|i| self.model.sources[i].spec.url.clone());
        matches!((url, &self.self_url), (Some(a), Some(b)) if flux::same_repo_url(&a, b))
    }

    fn mapped(&self, r: &Ref) -> Option<usize> {
        self.opts.sources.iter().position(|m| {
            m.key == r.name
                || m.key == format!("{}/{}", r.namespace, r.name)
                || m.key == format!("{}/{}/{}", r.kind, r.namespace, r.name)
        })
    }

    fn render(&mut self, i: usize) -> Result<()> {
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
        let cache_key =
            spec.overlay.is_empty().then(|| (format!("{:?}", self.model.kustomizations[i].origin), spec.path.clone()));
        let rendered = match self.prerendered.take().filter(|_| i == self.model.entry) {
            Some(r) => r,
            None => match cache_key.as_ref().and_then(|k| self.render_cache.get(k)) {
                Some(r) => r.clone(),
                None => {
                    let r = self.renderer.render(files, &spec.path, &spec.overlay).map_err(|e| e.context(ctx()))?;
                    if let Some(k) = cache_key {
                        self.render_cache.insert(k, r.clone());
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

    /// What the API server would refuse among the objects Kustomization `i` applies: an
    /// error finding at the field's line, and the refusal kept for the simulator.
    fn check_schemas(&mut self, i: usize, kid: &str, files: &dyn Files, objects: &[Object]) {
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
    fn health_targets(&mut self) {
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
    fn pod_security(&mut self) {
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

    /// Where the repo commits a Secret or ConfigMap that Flux does not apply (a bootstrap
    /// directory applied by hand or by a script before Flux starts).
    fn out_of_band(&mut self, kind: &str, name: &str) -> Option<Loc> {
        if self.out_of_band.is_none() {
            let mut index = BTreeMap::new();
            let files = self.files;
            files::walk(files, 8, |path, name| {
                if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                    return;
                }
                let Ok(text) = files.read(path) else { return };
                if !(text.contains("kind: Secret") || text.contains("kind: ConfigMap")) {
                    return;
                }
                for d in crate::yaml::parse_docs(path, &text).unwrap_or_default() {
                    let (Some(k), Some(nm)) =
                        (d.value["kind"].as_str(), d.value.pointer("/metadata/name").and_then(|v| v.as_str()))
                    else {
                        continue;
                    };
                    if matches!(k, "Secret" | "ConfigMap") {
                        index.entry((k.to_string(), nm.to_string())).or_insert(Loc::new(path, d.line));
                    }
                }
            });
            self.out_of_band = Some(index);
        }
        self.out_of_band.as_ref()?.get(&(kind.to_string(), name.to_string())).cloned()
    }

    /// postBuild substitution, as kustomize-controller runs it after the build.
    fn substitute(&mut self, spec: &Kustomization, kid: &str, objects: &mut [Object]) -> Result<()> {
        if spec.substitute.is_empty() && spec.substitute_from.is_empty() {
            return Ok(());
        }
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut encrypted = vec![];
        for from in &spec.substitute_from {
            let key = (from.kind.clone(), spec.namespace.clone(), from.name.clone());
            let found = self.var_sources.get(&key).cloned();
            let at = if found.is_none() && !from.optional { self.out_of_band(&from.kind, &from.name) } else { None };
            match found.as_ref() {
                None if from.optional => {}
                None if let Some(at) = at => {
                    self.model.preapplied.insert((from.kind.clone(), from.name.clone()));
                    self.model.findings.push(
                    Finding::new(
                        "bootstrap-object",
                        Severity::Info,
                        &spec.origin,
                        format!(
                            "Kustomization {kid} substitutes from {} {}, which nothing Flux applies defines; it is committed at {at}, outside the Flux tree, and taken as applied before Flux (its values are not known here)",
                            from.kind, from.name
                        ),
                    )
                    .for_kustomization(kid),
                    )
                }
                None => self.model.findings.push(
                    Finding::new(
                        "substitute-from-missing",
                        Severity::Error,
                        &spec.origin,
                        format!(
                            "Kustomization {kid} substitutes from {} {}/{}, which the repository does not define; Flux fails the build",
                            from.kind, spec.namespace, from.name
                        ),
                    )
                    .for_kustomization(kid)
                    .fix("create it in a Kustomization applied before this one, or mark it `optional: true`"),
                ),
                Some(o) => {
                    if o.value.get("sops").is_some() {
                        encrypted.push(format!("{} {}", from.kind, from.name));
                    }
                    vars.extend(var_values(o));
                }
            }
        }
        vars.extend(spec.substitute.iter().cloned());
        for o in objects.iter_mut() {
            if !Kustomization::substitution_enabled(o) {
                continue;
            }
            let mut unresolved = vec![];
            if let Err(m) = substitute_value(&mut o.value, &vars, &mut unresolved) {
                self.model.findings.push(
                    Finding::new(
                        "substitution-failed",
                        Severity::Error,
                        &o.origin,
                        format!("postBuild substitution in {} fails: {m}; Flux fails the build of Kustomization {kid}", o.display_id()),
                    )
                    .for_kustomization(kid)
                    .fix("escape shell expressions as $${...}, or label the object kustomize.toolkit.fluxcd.io/substitute: disabled"),
                );
                continue;
            }
            unresolved.sort();
            unresolved.dedup();
            if !unresolved.is_empty() {
                let why = if encrypted.is_empty() {
                    String::new()
                } else {
                    format!(" (values of SOPS-encrypted {} cannot be read offline)", encrypted.join(", "))
                };
                self.model.findings.push(
                    Finding::new(
                        "substitution-unresolved",
                        Severity::Warning,
                        &o.origin,
                        format!(
                            "{} uses {} that postBuild of Kustomization {kid} does not set{why}; Flux substitutes an empty string",
                            o.display_id(),
                            unresolved.iter().map(|v| format!("${{{v}}}")).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .for_kustomization(kid)
                    .fix("add the variable to postBuild.substitute or to a substituteFrom ConfigMap, or give it a default with ${VAR:=value}"),
                );
            }
        }
        Ok(())
    }
}

/// The variables a ConfigMap or Secret provides. Secret `data` is base64; values that are
/// SOPS ciphertext are kept as they are (never decrypted, never printed).
fn var_values(o: &Object) -> Vec<(String, String)> {
    let mut out = vec![];
    if let Some(m) = o.value.get("data").and_then(|d| d.as_object()) {
        for (k, v) in m {
            let s = crate::kustomize::transform::scalar_string(v);
            let val = if o.kind() == "Secret" && !s.starts_with("ENC[") {
                crate::kustomize::generate::base64_decode(&s)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            } else {
                s
            };
            out.push((k.clone(), val));
        }
    }
    if let Some(m) = o.value.get("stringData").and_then(|d| d.as_object()) {
        out.extend(m.iter().map(|(k, v)| (k.clone(), crate::kustomize::transform::scalar_string(v))));
    }
    out.retain(|(_, v)| !v.starts_with("ENC["));
    out
}

/// Helm's values merge: maps merge key by key, anything else is replaced.
fn deep_merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into.as_object_mut(), from.as_object()) {
        (Some(a), Some(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => deep_merge(x, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ if !from.is_null() => *into = from.clone(),
        _ => {}
    }
}

/// Substitutes in every string of a value (keys are left alone).
fn substitute_value(
    v: &mut serde_json::Value,
    vars: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::String(s) if s.contains("${") => {
            let r = flux::substitute::substitute(s, vars)?;
            unresolved.extend(r.unresolved);
            *s = r.text;
        }
        serde_json::Value::Array(a) => {
            for x in a {
                substitute_value(x, vars, unresolved)?;
            }
        }
        serde_json::Value::Object(m) => {
            for x in m.values_mut() {
                substitute_value(x, vars, unresolved)?;
            }
        }
        _ => {}
    }
    Ok(())
}
