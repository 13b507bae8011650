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

mod checks;
mod entry;
mod inputs;
mod render;

pub use entry::{find_cluster_dirs, list_clusters};
use entry::{resolve_entry_dir, synthesized_entry};

/// Renders a directory of a source the way kustomize-controller's build step does.
pub trait Renderer: Sync {
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
    /// Renders of paths without a Flux overlay, by (origin, path): `None` once a path was
    /// rendered for one Kustomization (most paths are synced once, and copying every render
    /// to keep it cost more than the rare second render), the render once a second one
    /// asked for it.
    render_cache: std::collections::HashMap<(String, String), Option<kustomize::Rendered>>,
    /// Renders done ahead, in parallel, for the Kustomizations of the current batch.
    prefetched: std::collections::HashMap<usize, Result<kustomize::Rendered>>,
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
        prefetched: Default::default(),
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
            self.prefetch(&batch);
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
}
