//! What the `cargo xtask` verbs do, as library functions: the binary only parses flags.

use crate::config::{self, RepoConfig};
use crate::disk::DiskFiles;
use crate::error::{Error, ErrorKind, Result};
use crate::files::{EntryKind, Files};
use crate::kustomize::{self, FluxOverlay, KUSTOMIZATION_FILES};
use crate::loaded::Loaded;
use crate::model::{self, Entry, LoadOptions, MappedSource, NativeRenderer, Renderer};
use crate::plan::Plan;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RendererChoice {
    Native,
    Kubectl,
}

#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub repo: PathBuf,
    /// `None`: the repo's only cluster.
    pub entry: Option<Entry>,
    /// `--source NAME=DIR`.
    pub sources: Vec<(String, PathBuf)>,
    pub renderer: RendererChoice,
}

/// Renders through `kubectl kustomize`, for kustomize features the native renderer does
/// not implement. Flux's own layer is still applied natively on top.
pub struct KubectlRenderer;

impl Renderer for KubectlRenderer {
    fn render(&self, files: &dyn Files, dir: &str, overlay: &FluxOverlay) -> Result<kustomize::Rendered> {
        let root = files
            .disk_root()
            .ok_or_else(|| Error::new(ErrorKind::Usage, "the kubectl renderer needs a repository on disk"))?;
        let has_kustomization = KUSTOMIZATION_FILES
            .iter()
            .any(|k| files.kind(format!("{dir}/{k}").trim_start_matches('/')) == Some(EntryKind::File));
        let (objects, notes) = if has_kustomization {
            let text = crate::exec::kubectl_kustomize(&root.join(dir))?;
            let label = format!("{} (kubectl kustomize output)", crate::files::display_dir(dir));
            (kustomize::objects_from_text(&label, &text)?, vec![])
        } else {
            // Flux generates the kustomization: the native renderer lists the same files.
            let r = kustomize::build_flux_path(files, dir, &FluxOverlay::default())?;
            (r.objects, r.notes)
        };
        Ok(kustomize::Rendered { objects: kustomize::apply_overlay(files, objects, overlay, dir)?, notes })
    }
}

/// Loads a repo and computes its plan. Errors are load errors (exit code 2).
pub fn plan(req: &PlanRequest) -> Result<Plan> {
    Ok(analyse(&load(req)?))
}

/// Simulates the bootstrap of a repo. Errors: the repo does not load, or a bad fault.
pub fn simulate(req: &PlanRequest, sim: crate::sim::SimConfig) -> Result<crate::sim::report::SimReport> {
    crate::sim::simulate(&load(req)?, sim)
}

/// Loads the repo: model, config, catalogue and graph, once.
pub fn load(req: &PlanRequest) -> Result<Loaded> {
    load_files(&DiskFiles::open(&req.repo)?, req)
}

/// [`load`] of a tree given as files (`req.repo` is not read).
pub fn load_files(files: &dyn Files, req: &PlanRequest) -> Result<Loaded> {
    let mapped: Vec<(String, DiskFiles)> = req
        .sources
        .iter()
        .map(|(k, d)| {
            DiskFiles::open(d).map(|f| (k.clone(), f)).map_err(|e| e.context(format!("--source {k}={}", d.display())))
        })
        .collect::<Result<_>>()?;
    let entry = match &req.entry {
        Some(e) => e.clone(),
        None => {
            let clusters = model::list_clusters(files);
            match clusters.as_slice() {
                [one] => Entry::Cluster(one.clone()),
                [] => Entry::Path(String::new()),
                many => {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!("the repository has several clusters ({}); choose one with --cluster", many.join(", ")),
                    ));
                }
            }
        }
    };
    let opts = LoadOptions {
        entry,
        sources: mapped.iter().map(|(k, f)| MappedSource { key: k.clone(), files: f as &dyn Files }).collect(),
    };
    let renderer: &dyn Renderer = match req.renderer {
        RendererChoice::Native => &NativeRenderer,
        RendererChoice::Kubectl => &KubectlRenderer,
    };
    let mut model = model::load(files, &opts, renderer)?;
    let mut config = load_config(files)?;
    if let Some(path) = config.sops.age_key_file.clone() {
        let text = files.read(&path).map_err(|e| e.context(format!("sops.ageKeyFile in {}", config::FILE)))?;
        let keys = crate::sops::AgeKeys::parse(&text).map_err(|why| {
            Error::in_file(ErrorKind::BadObject, &path, format!("sops.ageKeyFile in {}: {why}", config::FILE))
        })?;
        config.decryption = config::Decryption::Keys(keys);
    }
    // CRDs a bootstrap helmfile installs exist before Flux runs.
    let catalogue = Loaded::catalogue_of(&config);
    let chart_of = |name: &str, ns: Option<&str>| {
        model
            .helm_releases
            .iter()
            .find(|h| h.spec.name == name && ns.is_none_or(|n| h.spec.namespace == n))
            .filter(|h| !h.spec.chart.is_empty())
            .map(|h| (h.spec.chart.clone(), h.spec.values.clone()))
    };
    let rendered: std::collections::HashSet<&str> =
        model.kustomizations.iter().flat_map(|k| k.objects.iter().map(|o| o.origin.file.as_str())).collect();
    let helmfiles = crate::helmfile::detect(files, &catalogue, &chart_of, &rendered);
    for h in helmfiles {
        if !h.crds_only {
            for (name, ns) in &h.releases {
                if let Some(hr) = model
                    .helm_releases
                    .iter()
                    .find(|x| &x.spec.name == name && ns.as_ref().is_none_or(|n| &x.spec.namespace == n))
                {
                    config.preinstalled_releases.insert((hr.spec.namespace.clone(), hr.spec.name.clone()));
                }
            }
        }
        if !h.crds_only
            && h.charts.iter().any(|c| {
                catalogue
                    .chart(c)
                    .and_then(|c| c.cni.as_ref())
                    .is_some_and(|n| n.role == crate::catalogue::CniRole::Primary)
            })
        {
            config.cni_preinstalled = true;
        }
        let unknown: Vec<&String> =
            h.charts.iter().filter(|c| catalogue.chart(c).is_none() && c.ends_with("-crds")).collect();
        let mut msg = format!(
            "bootstrap helmfile {} installs {} before Flux: CRD groups {} are taken as pre-installed",
            h.path,
            h.charts.join(", "),
            if h.groups.is_empty() { "(none known)".to_string() } else { h.groups.join(", ") }
        );
        if !unknown.is_empty() {
            msg.push_str(&format!(
                "; the CRDs of {} are not in the catalogue (list their groups under preinstalledCRDs)",
                unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        model.findings.push(crate::findings::Finding::new(
            "bootstrap-helmfile",
            crate::findings::Severity::Info,
            &crate::Loc::new(&h.path, 1),
            msg,
        ));
        config.preinstalled_crds.extend(h.groups);
    }
    Ok(Loaded::from_parts(model, config, catalogue))
}

/// The repo's `.flux-harness.yaml`, or the defaults.
pub fn load_config(files: &dyn Files) -> Result<RepoConfig> {
    match files.kind(config::FILE) {
        Some(EntryKind::File) => RepoConfig::parse(&files.read(config::FILE)?),
        _ => Ok(RepoConfig::default()),
    }
}

/// Graph, rules, the simulation's failures and the repo config's overrides over a loaded
/// model.
pub fn analyse(loaded: &Loaded) -> Plan {
    analyse_and_simulate(loaded).0
}

/// [`analyse`], and the simulation it ran (`None` when the simulator refused the repo).
pub fn analyse_and_simulate(loaded: &Loaded) -> (Plan, Option<crate::sim::report::SimReport>) {
    let Loaded { model, config, catalogue, graph, graph_findings } = loaded;
    let mut findings = graph_findings.clone();
    findings.extend(model.findings.iter().cloned());
    findings.extend(crate::rules::check(model, graph, catalogue, config));
    let report = crate::sim::simulate(loaded, crate::sim::SimConfig::default()).ok();
    if let Some(report) = &report {
        let predicted = crate::rules::predicted::findings(model, graph, report, &findings);
        findings.extend(predicted);
    }
    (Plan::build(model, graph, config.apply(findings)), report)
}

#[derive(Debug, Clone)]
pub struct DiffRequest {
    /// The head side's repo, and everything else `plan` takes; `repo` is also where the
    /// base revision is looked up.
    pub plan: PlanRequest,
    /// Any git revision.
    pub base: String,
    /// `None`: the working tree, uncommitted changes included.
    pub head: Option<String>,
    /// Field-level changes of rendered objects.
    pub fields: bool,
    /// Where revisions are exported (removed afterwards).
    pub scratch: PathBuf,
}

/// Loads and analyses both sides of a change and compares them. An error names the side
/// that did not load (exit code 2).
pub fn diff(req: &DiffRequest) -> Result<crate::diff::BootstrapDiff> {
    use crate::revision::{Revision, Tree};
    let on_disk = req.plan.renderer == RendererChoice::Kubectl;
    let base_rev = crate::revision::read(&req.plan.repo, &req.base, &req.scratch, on_disk)?;
    let head_rev = match &req.head {
        Some(rev) => Some(crate::revision::read(&req.plan.repo, rev, &req.scratch, on_disk)?),
        None => None,
    };
    let side = |revision: Option<&Revision>| -> Result<_> {
        let mut r = req.plan.clone();
        let (info, loaded) = match revision {
            Some(rev) => {
                let info = crate::diff::SideInfo { revision: rev.rev.clone(), commit: Some(rev.commit.clone()) };
                let loaded = match &rev.tree {
                    Tree::Memory(files) => load_files(files, &r)?,
                    Tree::Disk(e) => {
                        r.repo = e.dir.clone();
                        load(&r)?
                    }
                };
                (info, loaded)
            }
            None => (crate::diff::SideInfo { revision: "working tree".into(), commit: None }, load(&r)?),
        };
        let (plan, sim) = analyse_and_simulate(&loaded);
        Ok((info, loaded, plan, sim))
    };
    let named = |which: &str, r: &Revision| {
        format!("the {which} side, {} ({}), does not load", r.rev, &r.commit[..12.min(r.commit.len())])
    };
    let base = side(Some(&base_rev)).map_err(|e| e.context(named("base", &base_rev)))?;
    let head = side(head_rev.as_ref()).map_err(|e| match &head_rev {
        Some(h) => e.context(named("head", h)),
        None => e.context("the head side, the working tree, does not load"),
    })?;
    let b = crate::diff::Side { info: base.0, model: &base.1.model, plan: &base.2, sim: base.3.as_ref() };
    let h = crate::diff::Side { info: head.0, model: &head.1.model, plan: &head.2, sim: head.3.as_ref() };
    Ok(crate::diff::compare(&b, &h, crate::diff::Options { fields: req.fields }))
}
