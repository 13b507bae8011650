//! The bootstrap rules: the mistakes that break a Flux bootstrap, found offline, each
//! pointing at a file and line with a fix. One module per concern; the shared knowledge
//! (who provides which kind, who creates which namespace, who depends on whom) is built
//! once in [`Ctx`]. Rule ids and docs: docs/rules.md.
//!
//! Every ordering rule is one check, [`Ctx::standing`]: for what an object needs (its
//! namespace, its kind's CRD, its chart's source, a substitution or values input, the
//! primary CNI, the monitoring CRDs), who produces it and whether that producer is
//! guaranteed first (a dependency, an ancestor, or the same Kustomization where its staged
//! apply brings it first). The rules differ only in what they ask about and how they word
//! the answer; the simulator plays the same needs out, and `predicted` turns what it loses
//! into errors.
//!
//! Pure: reads the model, the graph, the catalogue and the repo config.

mod cni;
mod crds;
mod fields;
mod helm;
mod monitoring;
mod namespaces;
mod needs;
mod netpol;
mod owners;
mod policy;
pub mod predicted;
mod sources;
mod webhooks;

use crate::catalogue::{Catalogue, Chart, RegisteredBy};
use crate::config::RepoConfig;
use crate::error::Loc;
use crate::findings::{Finding, Severity};
use crate::graph::Graph;
use crate::model::{Origin, RepoModel};
use crate::object::Object;
use std::collections::BTreeMap;

/// Namespaces every cluster has before Flux applies anything.
pub const ALWAYS_NAMESPACES: [&str; 5] = ["default", "kube-system", "kube-public", "kube-node-lease", "flux-system"];

/// How a kind comes to exist in the cluster.
#[derive(Debug, Clone)]
pub enum Via {
    /// A CustomResourceDefinition rendered by the Kustomization.
    Crd(Loc),
    /// A chart of the catalogue installed by HelmRelease `hr` (index).
    Chart { hr: usize, registered_by: RegisteredBy },
    /// A ConstraintTemplate rendered by the Kustomization (Gatekeeper creates the CRD).
    Template(Loc),
}

#[derive(Debug, Clone)]
pub struct Provider {
    /// The Kustomization whose apply brings it.
    pub k: usize,
    pub via: Via,
}

/// Where one need of a Kustomization stands: something it applies needs another thing
/// present first (its namespace, its kind's CRD, a chart's source, a substitution or
/// values input). Every ordering rule asks [`Ctx::standing`] and words the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The producer at this index of the list is guaranteed first (or, where allowed, is
    /// the same Kustomization, whose staged apply brings it first).
    Met(usize),
    /// Produced only by Kustomizations nothing orders first: the first of them.
    Unordered(usize),
    /// Nothing in the repository produces it.
    Missing,
}

pub struct Ctx<'a> {
    pub model: &'a RepoModel,
    pub graph: &'a Graph,
    pub cat: &'a Catalogue,
    pub cfg: &'a RepoConfig,
    /// Transitive dependsOn, per Kustomization asked about, as a bit set: computed when
    /// first asked. (Every closure up front was O(n²) in time and memory: 2 GB for a
    /// chain of 10,000.)
    reach: std::cell::RefCell<std::collections::HashMap<usize, Vec<u64>>>,
    /// Namespace → the Kustomizations whose objects create it, with the object.
    pub namespaces: BTreeMap<String, Vec<(usize, &'a Object)>>,
    /// (group, kind) → providers; kind `*` for group-wide providers.
    providers: BTreeMap<(String, String), Vec<Provider>>,
}

impl<'a> Ctx<'a> {
    pub fn new(model: &'a RepoModel, graph: &'a Graph, cat: &'a Catalogue, cfg: &'a RepoConfig) -> Self {
        let mut namespaces: BTreeMap<String, Vec<(usize, &Object)>> = BTreeMap::new();
        let mut providers: BTreeMap<(String, String), Vec<Provider>> = BTreeMap::new();
        for (i, k) in model.kustomizations.iter().enumerate() {
            for o in &k.objects {
                match (o.group(), o.kind()) {
                    ("", "Namespace") => namespaces.entry(o.name().to_string()).or_default().push((i, o)),
                    ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                        let g = o.value.pointer("/spec/group").and_then(|v| v.as_str()).unwrap_or("");
                        let kd = o.value.pointer("/spec/names/kind").and_then(|v| v.as_str()).unwrap_or("");
                        providers
                            .entry((g.into(), kd.into()))
                            .or_default()
                            .push(Provider { k: i, via: Via::Crd(o.origin.clone()) });
                    }
                    ("templates.gatekeeper.sh", "ConstraintTemplate") => {
                        let kd = o.value.pointer("/spec/crd/spec/names/kind").and_then(|v| v.as_str()).unwrap_or("");
                        providers
                            .entry(("constraints.gatekeeper.sh".into(), kd.into()))
                            .or_default()
                            .push(Provider { k: i, via: Via::Template(o.origin.clone()) });
                    }
                    _ => {}
                }
            }
        }
        for (j, h) in model.helm_releases.iter().enumerate() {
            if let Some(chart) = cat.chart(&h.spec.chart) {
                for g in chart.crds.iter().filter(|g| g.enabled(&h.spec.values)) {
                    if g.registered_by == RegisteredBy::Template {
                        continue;
                    }
                    for kind in &g.kinds {
                        providers
                            .entry((g.group.clone(), kind.clone()))
                            .or_default()
                            .push(Provider { k: h.owner, via: Via::Chart { hr: j, registered_by: g.registered_by } });
                    }
                }
            }
        }
        Ctx { model, graph, cat, cfg, reach: Default::default(), namespaces, providers }
    }

    pub fn kid(&self, i: usize) -> String {
        let k = &self.model.kustomizations[i].spec;
        format!("{}/{}", k.namespace, k.name)
    }

    pub fn name(&self, i: usize) -> String {
        crate::graph::display_k(self.model, i)
    }

    /// Kustomizations that are rendered (their objects are known).
    pub fn rendered(&self) -> impl Iterator<Item = (usize, &'a crate::model::KustomizationNode)> + '_ {
        self.model.kustomizations.iter().enumerate().filter(|(_, k)| !matches!(k.origin, Origin::NotRendered(_)))
    }

    /// The one ordering check: does Kustomization `k` find what it needs, given who
    /// produces it? `producers` are (Kustomization, whether being `k` itself is enough).
    pub fn standing(&self, k: usize, producers: &[(usize, bool)]) -> Standing {
        if let Some(j) = producers.iter().position(|&(p, same)| (p == k && same) || (p != k && self.before(k, p))) {
            return Standing::Met(j);
        }
        match producers.first() {
            Some(&(p, _)) => Standing::Unordered(p),
            None => Standing::Missing,
        }
    }

    /// Is `p` applied before `k` starts: `k` itself excluded, a dependency (transitively)
    /// or an ancestor of `k` (or of a dependency).
    pub fn before(&self, k: usize, p: usize) -> bool {
        self.depends_on(k, p) || self.is_ancestor(k, p)
    }

    /// Does `k` depend on `p`, directly or through other dependencies?
    pub fn depends_on(&self, k: usize, p: usize) -> bool {
        let mut cache = self.reach.borrow_mut();
        let bits = cache.entry(k).or_insert_with(|| {
            let mut bits = vec![0u64; self.graph.deps.len().div_ceil(64)];
            let mut stack: Vec<usize> = self.graph.deps[k].clone();
            while let Some(x) = stack.pop() {
                if bits[x / 64] & (1 << (x % 64)) == 0 {
                    bits[x / 64] |= 1 << (x % 64);
                    stack.extend(self.graph.deps[x].iter().copied());
                }
            }
            bits
        });
        bits.get(p / 64).is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    /// Did `p` apply `k`, or apply what applied it? (Parents form a tree; the walk is
    /// bounded anyway.)
    pub fn is_ancestor(&self, k: usize, p: usize) -> bool {
        let mut cur = self.model.kustomizations[k].parent;
        for _ in 0..self.model.kustomizations.len() {
            match cur {
                Some(x) if x == p => return true,
                Some(x) => cur = self.model.kustomizations[x].parent,
                None => return false,
            }
        }
        false
    }

    pub fn providers(&self, group: &str, kind: &str) -> Vec<&Provider> {
        let mut out: Vec<&Provider> =
            self.providers.get(&(group.to_string(), kind.to_string())).into_iter().flatten().collect();
        out.extend(self.providers.get(&(group.to_string(), "*".to_string())).into_iter().flatten());
        out
    }

    /// The kinds a Kustomization provides to others (via chart CRDs, operator CRDs,
    /// templates, CRD files), as (group, kind) pairs.
    pub fn provided_by(&self, k: usize) -> Vec<(&(String, String), &Provider)> {
        self.providers.iter().flat_map(|(gk, ps)| ps.iter().filter(move |p| p.k == k).map(move |p| (gk, p))).collect()
    }

    pub fn preinstalled(&self, group: &str) -> bool {
        self.cfg.preinstalled_crds.iter().any(|g| g == group)
    }

    pub fn chart_of(&self, hr: usize) -> Option<&'a Chart> {
        self.cat.chart(&self.model.helm_releases[hr].spec.chart)
    }

    /// Labels of a namespace as the cluster will have them: those of the Namespace object
    /// in the repo, plus `kubernetes.io/metadata.name`, which Kubernetes sets itself.
    pub fn namespace_labels(&self, ns: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut labels = self
            .namespaces
            .get(ns)
            .and_then(|v| v.first())
            .and_then(|(_, o)| o.value.pointer("/metadata/labels"))
            .and_then(|l| l.as_object())
            .cloned()
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        labels
    }

    pub fn finding(&self, rule: &str, severity: Severity, loc: &Loc, k: Option<usize>, msg: String) -> Finding {
        let f = Finding::new(rule, severity, loc, msg);
        match k {
            Some(i) => f.for_kustomization(&self.kid(i)),
            None => f,
        }
    }
}

/// Runs every rule. The repo config's severity overrides and suppressions are applied by
/// the caller, over these and the model's findings alike.
pub fn check(model: &RepoModel, graph: &Graph, cat: &Catalogue, cfg: &RepoConfig) -> Vec<Finding> {
    let ctx = Ctx::new(model, graph, cat, cfg);
    let mut out = vec![];
    crds::check(&ctx, &mut out);
    fields::check(&ctx, &mut out);
    monitoring::check(&ctx, &mut out);
    webhooks::check(&ctx, &mut out);
    helm::check(&ctx, &mut out);
    cni::check(&ctx, &mut out);
    netpol::check(&ctx, &mut out);
    namespaces::check(&ctx, &mut out);
    needs::check(&ctx, &mut out);
    owners::check(&ctx, &mut out);
    policy::check(&ctx, &mut out);
    sources::check(&ctx, &mut out);
    out
}
