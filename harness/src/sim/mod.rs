//! The bootstrap simulator: a deterministic discrete-event simulation, in virtual time, of
//! Flux's controllers bootstrapping the repo model onto an empty cluster. It models what
//! docs/flux-semantics.md describes: source-controller fetches, kustomize-controller's
//! dependsOn requeue (30 s, no wake-up), staged dry-run apply with Flux's own error
//! messages, retryInterval/interval, wait and health checks with kstatus rules;
//! helm-controller installs with their durations, chart and operator CRDs, webhooks that
//! register at install and serve only once their pods are Ready, remediation retries and
//! Stalled; and the cluster: no pod network before a CNI, Cilium's conflist and
//! linkerd-cni chaining, fail-closed webhooks refusing matching requests.
//!
//! Pure: no IO, no clock, no threads. Same inputs and seed, same timeline.

pub mod fault;
pub mod nodes;
pub mod report;

use crate::catalogue::{Catalogue, CniRole, FailurePolicy, RegisteredBy, Webhook};
use crate::config::RepoConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::flux::Ref;
use crate::graph::Graph;
use crate::model::{HealthTarget, Origin, RepoModel};
use crate::object::Object;
pub use fault::Fault;
use fault::format_duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

const SEC: u64 = 1000;
/// kustomize-controller's `--requeue-dependency`.
const DEPENDENCY_REQUEUE: u64 = 30 * SEC;
const HEALTH_POLL: u64 = 5 * SEC;
const REVISION: &str = "main@sha1:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub source_fetch_ms: u64,
    pub chart_fetch_ms: u64,
    pub pod_start_ms: u64,
    /// After an operator's pods are Ready, until the CRDs it registers are Established.
    pub operator_crd_ms: u64,
    /// Install time of a chart the catalogue does not know.
    pub default_install_ms: u64,
    /// A CNI is running before Flux starts (the e2e pre-installs Cilium); else nodes are
    /// NotReady until the repo's CNI chart is installed.
    pub cni_preinstalled: bool,
    /// Give up after this much virtual time (raised to five minutes per layer of the
    /// dependsOn graph).
    pub max_ms: u64,
    pub faults: Vec<Fault>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            source_fetch_ms: 5 * SEC,
            chart_fetch_ms: 3 * SEC,
            pod_start_ms: 10 * SEC,
            operator_crd_ms: 5 * SEC,
            default_install_ms: 30 * SEC,
            cni_preinstalled: false,
            max_ms: 4 * 3600 * SEC,
            faults: vec![],
        }
    }
}

/// One condition change, in Flux's words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineEntry {
    pub at_ms: u64,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    status: &'static str,
    reason: String,
    message: String,
}

/// The Ready condition of a Kustomization or HelmRelease, with the times the reports need.
#[derive(Debug, Clone, Default)]
struct Readiness {
    cond: Option<Cond>,
    /// First time it was Ready.
    first: Option<u64>,
    /// When the condition last changed (its lastTransitionTime).
    since: u64,
}

impl Readiness {
    /// Sets the condition; returns it when it changed (to log), None when unchanged.
    fn set(&mut self, c: Cond, now: u64) -> Option<&Cond> {
        if self.cond.as_ref() == Some(&c) {
            return None;
        }
        if c.status == "True" && self.first.is_none() {
            self.first = Some(now);
        }
        self.since = now;
        Some(self.cond.insert(c))
    }
}

/// Why something does not progress: the edges of the wait-for graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    K(usize),
    H(usize),
    Source(usize),
    /// Webhook `name` of HelmRelease `hr`.
    Webhook(usize, String),
    /// The pod network (nodes Ready).
    Network,
    /// linkerd-cni chained into the primary CNI's conflist.
    CniChain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    On(Entity),
    /// A cause with nothing behind it (a config value, a missing object).
    Root(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    ReconcileK(usize),
    HealthPollK(usize),
    ReconcileH(usize),
    InstallPoll(usize, u32),
    SourceReady(usize),
    Fault(usize),
    NetworkUp,
}

#[derive(Debug, Clone, Default)]
struct KSim {
    exists: bool,
    created_at: Option<u64>,
    /// First time it got past its dependencies and started applying.
    started_at: Option<u64>,
    busy: bool,
    health_deadline: u64,
    health_started: u64,
    applied_at: Option<u64>,
    ready: Readiness,
    block: Option<Block>,
    /// When the next reconcile is queued; requests merge into the earliest
    /// (controller-runtime's work queue), later events for it are stale.
    next_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HPhase {
    Waiting,
    Installing,
    Ready,
    Stalled,
}

#[derive(Debug, Clone)]
struct HSim {
    exists: bool,
    created_at: Option<u64>,
    phase: HPhase,
    attempt: u32,
    failures: u32,
    backoff: u32,
    install_started: u64,
    install_ends: u64,
    deadline: u64,
    ready: Readiness,
    block: Option<Block>,
    injected_failures: u32,
    next_at: Option<u64>,
}

#[derive(Debug, Clone)]
struct SSim {
    kind: String,
    namespace: String,
    name: String,
    exists: bool,
    ready_at: Option<u64>,
}

pub struct Simulator<'a> {
    model: &'a RepoModel,
    graph: &'a Graph,
    cat: Catalogue,
    cfg: RepoConfig,
    sim: SimConfig,
    now: u64,
    seq: u64,
    /// Events handled so far: the cluster's objects change only when this or `now` does.
    handled: u64,
    /// A Ready condition changed since `all_ready` last looked: checking every object
    /// after every event made long chains cost O(n) per event.
    readiness_changed: bool,
    /// The dependsOn requeue ticks every 30 s, and a tick can only tell something new
    /// when a dependency changed: so a Kustomization or HelmRelease whose dependency check
    /// failed is parked (the time of that check) instead of ticking, and a change to one of
    /// its dependencies wakes it at its next tick. The timeline is the one polling gives;
    /// a chain of n costs O(n) events instead of O(n²).
    k_parked: Vec<Option<u64>>,
    h_parked: Vec<Option<u64>>,
    /// Who names each Kustomization / HelmRelease in its dependsOn.
    k_dependents: Vec<Vec<usize>>,
    h_dependents: Vec<Vec<usize>>,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    rng: u64,
    ks: Vec<KSim>,
    hs: Vec<HSim>,
    sources: Vec<SSim>,
    /// Source index of each Kustomization and HelmRelease (None: not in the repo).
    k_source: Vec<Option<usize>>,
    h_source: Vec<Option<usize>>,
    /// Sources whose revision events do not wake their Kustomizations (a dependsOn cycle
    /// among them: kustomize-controller#1712).
    silenced: BTreeSet<usize>,
    crds: BTreeSet<(String, String)>,
    namespaces: BTreeSet<String>,
    ns_labels: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Registered fail-closed webhooks: (hr, index in its chart's list).
    webhooks: BTreeSet<(usize, usize)>,
    templates: BTreeSet<String>,
    /// ConfigMaps and Secrets applied so far (kind, namespace, name).
    applied: BTreeSet<(String, String, String)>,
    /// The Kustomization that renders each ConfigMap and Secret.
    producers: BTreeMap<(String, String, String), usize>,
    /// Per HelmRelease: installed before Flux (asked on every admission, so not a set lookup).
    preinstalled: Vec<bool>,
    /// Kustomizations, HelmReleases and sources by (kind, namespace, name): the model's
    /// lookups scan, and a reconcile looks up every dependency.
    index: std::collections::HashMap<(String, String, String), usize>,
    /// Per Kustomization, per rendered object: what every reconcile asks of it.
    objs: Vec<Vec<ObjInfo>>,
    /// Per Kustomization: its objects by apply stage.
    stages: Vec<[Vec<usize>; 3]>,
    network: bool,
    network_down: Vec<(u64, u64)>,
    chain_ok: bool,
    primary_cni: Option<usize>,
    chained_cni: Option<usize>,
    timeline: Vec<TimelineEntry>,
    notes: BTreeSet<String>,
    converged_at: Option<u64>,
}

fn kstatus_name(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// Flux's apply stages: cluster definitions, then `*Class` kinds, then the rest.
fn stage_of(o: &Object) -> u8 {
    match (o.group(), o.kind()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("", "Namespace")
        | ("rbac.authorization.k8s.io", "ClusterRole") => 0,
        (_, k) if k.ends_with("Class") => 1,
        _ => 2,
    }
}

/// What every reconcile asks of a rendered object, worked out once: an entry Kustomization
/// re-applies thousands of objects on each interval, and reading kind, group and name out
/// of JSON each time made that the cost of a whole run.
struct ObjInfo {
    /// kstatus name, `Kind/ns/name`.
    id: String,
    /// The namespace it must land in (`None`: cluster-scoped or none given).
    ns: Option<String>,
    /// Built in, a Flux kind, or a pre-installed group: no CRD to wait for.
    always_known: bool,
    /// The Flux Kustomization or HelmRelease applying it creates.
    creates: Option<Entity>,
}

impl<'a> Simulator<'a> {
    pub fn new(
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
            handled: 0,
            readiness_changed: true,
            k_parked: vec![None; model.kustomizations.len()],
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
                    });
                    if !known {
                        return Err(Error::new(
                            ErrorKind::Usage,
                            format!(
                                "--fault webhook-down:{name}: no HelmRelease of the repository registers a webhook named {name}"
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

    fn release(&self, spec: &str) -> Result<usize> {
        let (ns, name) = spec.split_once('/').unwrap_or(("", spec));
        self.model
            .helm_releases
            .iter()
            .position(|h| h.spec.name == name && (ns.is_empty() || h.spec.namespace == ns))
            .ok_or_else(|| Error::new(ErrorKind::Usage, format!("--fault: no HelmRelease {spec} in the repository")))
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn jitter(&mut self, ms: u64) -> u64 {
        // ±5 %, as kustomize-controller's interval jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = ms / 10;
        if span == 0 {
            return ms;
        }
        ms - ms / 20 + self.rng % span
    }

    fn log(&mut self, kind: &str, ns: &str, name: &str, c: &Cond) {
        self.timeline.push(TimelineEntry {
            at_ms: self.now,
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            status: c.status.into(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
    }

    fn set_k(&mut self, i: usize, status: &'static str, reason: &str, message: String) {
        let c = Cond { status, reason: reason.into(), message };
        if let Some(c) = self.ks[i].ready.set(c, self.now).cloned() {
            let model = self.model; // a shared &'a reference: no borrow of self
            let k = &model.kustomizations[i].spec;
            self.log("Kustomization", &k.namespace, &k.name, &c);
            self.readiness_changed = true;
            self.wake(Entity::K(i));
        }
    }

    fn set_h(&mut self, j: usize, status: &'static str, reason: &str, message: String) {
        let c = Cond { status, reason: reason.into(), message };
        if let Some(c) = self.hs[j].ready.set(c, self.now).cloned() {
            let model = self.model;
            let h = &model.helm_releases[j].spec;
            self.log("HelmRelease", &h.namespace, &h.name, &c);
            self.readiness_changed = true;
            self.wake(Entity::H(j));
        }
    }

    /// Queues every parked dependent of `changed` at its next dependsOn tick after now
    /// (a change in this instant is not seen by a check in this instant).
    fn wake(&mut self, changed: Entity) {
        let next =
            |checked_at: u64, now: u64| checked_at + ((now - checked_at) / DEPENDENCY_REQUEUE + 1) * DEPENDENCY_REQUEUE;
        match changed {
            Entity::K(x) => {
                for n in 0..self.k_dependents[x].len() {
                    let i = self.k_dependents[x][n];
                    if let Some(c) = self.k_parked[i].take() {
                        self.queue_k(i, next(c, self.now));
                    }
                }
            }
            Entity::H(x) => {
                for n in 0..self.h_dependents[x].len() {
                    let j = self.h_dependents[x][n];
                    if let Some(c) = self.h_parked[j].take() {
                        self.queue_h(j, next(c, self.now));
                    }
                }
            }
            _ => {}
        }
    }

    fn note_cluster(&mut self, name: &str, reason: &str, message: String) {
        let c = Cond { status: "True", reason: reason.into(), message };
        self.log("Cluster", "", name, &c);
    }

    fn k_ready(&self, i: usize) -> bool {
        self.ks[i].ready.cond.as_ref().is_some_and(|c| c.status == "True")
    }

    fn h_ready(&self, j: usize) -> bool {
        self.hs[j].phase == HPhase::Ready
    }

    fn network_up(&self) -> bool {
        self.network && !self.network_down.iter().any(|(a, b)| self.now >= *a && self.now < *b)
    }

    fn retry_interval(&self, i: usize) -> u64 {
        let k = &self.model.kustomizations[i].spec;
        k.retry_interval.as_deref().or(k.interval.as_deref()).and_then(fault::parse_duration).unwrap_or(10 * 60 * SEC)
    }

    fn interval(&self, i: usize) -> u64 {
        self.model.kustomizations[i].spec.interval.as_deref().and_then(fault::parse_duration).unwrap_or(10 * 60 * SEC)
    }

    fn timeout(&self, i: usize) -> u64 {
        let k = &self.model.kustomizations[i].spec;
        k.timeout
            .as_deref()
            .and_then(fault::parse_duration)
            .unwrap_or_else(|| self.interval(i).saturating_sub(30 * SEC))
            .max(30 * SEC)
    }

    fn create_k(&mut self, i: usize) {
        if self.ks[i].exists {
            return;
        }
        self.ks[i].exists = true;
        self.ks[i].created_at = Some(self.now);
        self.queue_k(i, self.now);
        // A dependent's message changes from "not found" to "not ready".
        self.wake(Entity::K(i));
    }

    fn queue_k(&mut self, i: usize, at: u64) {
        if self.ks[i].next_at.is_none_or(|t| at < t) {
            self.ks[i].next_at = Some(at);
            self.push(at, Ev::ReconcileK(i));
        }
    }

    fn queue_h(&mut self, j: usize, at: u64) {
        if self.hs[j].next_at.is_none_or(|t| at < t) {
            self.hs[j].next_at = Some(at);
            self.push(at, Ev::ReconcileH(j));
        }
    }

    /// Runs until converged, nothing is left to happen, or the time limit.
    pub fn run(&mut self) {
        self.advance_to(self.sim.max_ms);
        // A run that never converges ends at the time limit, however few events it had
        // left (parked dependents tick no more). Only here: a live driver's clock moves
        // with events, so its objects are rebuilt only when something happened.
        if self.converged_at.is_none() {
            self.now = self.now.max(self.sim.max_ms);
        }
    }

    /// Processes every event up to `t` (virtual ms); returns false once finished.
    pub fn advance_to(&mut self, t: u64) -> bool {
        while let Some(Reverse((at, _, ev))) = self.queue.peek().copied() {
            if at > t || self.converged_at.is_some() {
                break;
            }
            self.queue.pop();
            self.now = at;
            self.handled += 1;
            self.handle(ev);
            if self.converged_at.is_none() && std::mem::take(&mut self.readiness_changed) && self.all_ready() {
                self.converged_at = Some(self.now);
            }
        }
        if self.converged_at.is_none() && self.queue.is_empty() {
            self.now = self.now.max(t.min(self.sim.max_ms));
        }
        self.converged_at.is_none() && !self.queue.is_empty() && self.now < self.sim.max_ms
    }

    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Changes whenever [`Simulator::cluster_objects`] may: a consumer polling the
    /// simulator rebuilds the objects only when this differs from last time.
    pub fn version(&self) -> (u64, u64) {
        (self.handled, self.now)
    }

    fn all_ready(&self) -> bool {
        (0..self.ks.len()).all(|i| self.k_ready(i) || self.model.kustomizations[i].spec.suspend)
            && (0..self.hs.len()).all(|j| self.h_ready(j))
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ReconcileK(i) => {
                if self.ks[i].next_at == Some(self.now) {
                    self.ks[i].next_at = None;
                    self.k_parked[i] = None;
                    self.reconcile_k(i)
                }
            }
            Ev::HealthPollK(i) => self.health_poll(i),
            Ev::ReconcileH(j) => {
                if self.hs[j].next_at == Some(self.now) {
                    self.hs[j].next_at = None;
                    self.h_parked[j] = None;
                    self.reconcile_h(j)
                }
            }
            Ev::InstallPoll(j, attempt) => {
                if self.hs[j].attempt == attempt && self.hs[j].phase == HPhase::Installing {
                    self.install_poll(j)
                }
            }
            Ev::SourceReady(s) => self.source_ready(s),
            Ev::Fault(n) => self.fault(n),
            Ev::NetworkUp => {
                if self.network_up() {
                    self.note_cluster("nodes", "NetworkReady", "the CNI is running again: pods get a network".into());
                }
            }
        }
    }

    fn source_ready(&mut self, s: usize) {
        if self.sources[s].ready_at.is_some() {
            return;
        }
        self.sources[s].ready_at = Some(self.now);
        let (kind, ns, name) =
            (self.sources[s].kind.clone(), self.sources[s].namespace.clone(), self.sources[s].name.clone());
        let msg = if kind == "GitRepository" {
            format!("stored artifact for revision '{REVISION}'")
        } else {
            "stored artifact: revision 'sha256:4f8e0c2a'".to_string()
        };
        self.log(&kind, &ns, &name, &Cond { status: "True", reason: "Succeeded".into(), message: msg });
        // kustomize-controller and helm-controller watch their sources' artifacts.
        if !self.silenced.contains(&s) {
            for i in 0..self.ks.len() {
                if self.k_source[i] == Some(s) && self.ks[i].exists && !self.ks[i].busy && !self.k_ready(i) {
                    self.queue_k(i, self.now);
                }
            }
        }
        for j in 0..self.hs.len() {
            if self.h_source[j] == Some(s) && self.hs[j].exists {
                let at = self.now + self.sim.chart_fetch_ms;
                self.queue_h(j, at);
            }
        }
    }

    fn fault(&mut self, n: usize) {
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

    fn primary_exclusive(&self) -> bool {
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

    fn kind_known(&mut self, group: &str, kind: &str) -> bool {
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

    fn provided_somewhere(&self, group: &str, kind: &str) -> bool {
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

    fn labels_of(&self, ns: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut l = self.ns_labels.get(ns).cloned().unwrap_or_default();
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }

    fn webhook(&self, hr: usize, w: usize) -> &Webhook {
        &self.cat.charts[&self.model.helm_releases[hr].spec.chart].webhooks[w]
    }

    fn release_ns(&self, hr: usize) -> String {
        let h = &self.model.helm_releases[hr].spec;
        h.raw.pointer("/spec/targetNamespace").and_then(|v| v.as_str()).unwrap_or(&h.namespace).to_string()
    }

    fn serving(&self, hr: usize, name: &str) -> bool {
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
    fn missing_input(&self, kind: &str, ns: &str, name: &str) -> Option<Block> {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        if self.applied.contains(&key) || self.model.preapplied.contains(&(kind.to_string(), name.to_string())) {
            return None;
        }
        Some(match self.producers.get(&key) {
            Some(&k) => Block::On(Entity::K(k)),
            None => Block::Root(format!("nothing in the repository creates {kind} {ns}/{name}")),
        })
    }

    fn find(&self, kind: &str, r: &Ref) -> Option<usize> {
        self.index.get(&(kind.to_string(), r.namespace.clone(), r.name.clone())).copied()
    }
    fn find_k(&self, r: &Ref) -> Option<usize> {
        self.find("Kustomization", r)
    }
    fn find_h(&self, r: &Ref) -> Option<usize> {
        self.find("HelmRelease", r)
    }
    fn find_s(&self, r: &Ref) -> Option<usize> {
        if matches!(r.kind.as_str(), "Kustomization" | "HelmRelease") {
            return None;
        }
        self.find(&r.kind, r)
    }

    /// Installed before Flux by a bootstrap helmfile: running from the start.
    fn preinstalled(&self, j: usize) -> bool {
        self.preinstalled[j]
    }

    /// A registered fail-closed webhook that is not serving and intercepts this object.
    fn refused_by(
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

    fn webhook_error(&self, id: &str, hr: usize, name: &str) -> String {
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

    // ----- kustomize-controller -----

    fn reconcile_k(&mut self, i: usize) {
        if !self.ks[i].exists || self.ks[i].busy {
            return;
        }
        let spec = &self.model.kustomizations[i].spec;
        if spec.suspend {
            return;
        }
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
                self.fail_k(i, msg, retry);
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

    fn fail_k(&mut self, i: usize, msg: String, retry: u64) {
        self.set_k(i, "False", "ReconciliationFailed", msg);
        self.queue_k(i, self.now + retry);
    }

    fn succeed_k(&mut self, i: usize) {
        self.ks[i].busy = false;
        self.ks[i].block = None;
        self.set_k(i, "True", "ReconciliationSucceeded", format!("Applied revision: {REVISION}"));
        let next = self.now + {
            let iv = self.interval(i);
            self.jitter(iv)
        };
        self.queue_k(i, next);
    }

    fn namespace_creator(&self, ns: &str) -> Option<usize> {
        self.model
            .kustomizations
            .iter()
            .position(|k| k.objects.iter().any(|o| o.kind() == "Namespace" && o.group().is_empty() && o.name() == ns))
    }

    fn provider_entity(&self, group: &str, kind: &str) -> Option<Entity> {
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

    fn apply_object(&mut self, i: usize, x: usize) {
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
                }
            }
            _ => {}
        }
    }

    /// kstatus of the objects this Kustomization waits for.
    fn health_poll(&mut self, i: usize) {
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
    fn health_failed(&mut self, i: usize, blocks: Vec<Block>, why: String) {
        let elapsed = format_duration(self.now - self.ks[i].health_started);
        self.ks[i].busy = false;
        self.ks[i].block = blocks.into_iter().next();
        self.set_k(i, "False", "HealthCheckFailed", format!("health check failed after {elapsed}: {why}"));
        let retry = self.retry_interval(i);
        self.queue_k(i, self.now + retry);
    }

    fn object_status(&self, i: usize, o: &Object) -> Status {
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
    fn network_since(&self) -> u64 {
        let cni_ready = match self.primary_cni {
            Some(p) if !self.sim.cni_preinstalled => self.hs[p].ready.first.unwrap_or(0),
            _ => 0,
        };
        self.network_down.iter().filter(|(_, b)| *b <= self.now).map(|(_, b)| *b).max().unwrap_or(0).max(cni_ready)
    }

    // ----- helm-controller -----

    /// A failure before a release is written: no remediation counts it; helm-controller
    /// retries with exponential backoff (750 ms doubling, at most 15 min).
    fn fail_before_release(&mut self, j: usize, block: Block, reason: &str, msg: String) {
        self.hs[j].block = Some(block);
        self.set_h(j, "False", reason, msg);
        let back = (750u64 << self.hs[j].backoff.min(20)).min(15 * 60 * SEC);
        self.hs[j].backoff += 1;
        self.queue_h(j, self.now + back);
    }

    fn reconcile_h(&mut self, j: usize) {
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

    fn needs_service_monitor(&self, j: usize) -> bool {
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

    fn install_ms(&self, j: usize) -> u64 {
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
    fn pods_blocked(&self, j: usize) -> Option<(Block, String)> {
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

    fn install_poll(&mut self, j: usize) {
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

    fn after_install(&mut self, j: usize) {
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

    // ----- the cluster as objects (for the simulated API server) -----

    fn conditions(c: Option<&Cond>, since: String) -> serde_json::Value {
        match c {
            Some(c) => {
                serde_json::json!([{"type": "Ready", "status": c.status, "reason": c.reason, "message": c.message, "lastTransitionTime": since, "observedGeneration": 1}])
            }
            None => serde_json::json!([]),
        }
    }

    /// Every object the cluster holds now, Flux's with their status. `time` turns virtual
    /// milliseconds into an RFC 3339 timestamp.
    pub fn cluster_objects(&self, time: &dyn Fn(u64) -> String) -> Vec<serde_json::Value> {
        use serde_json::json;
        let mut out = vec![];
        for ns in crate::rules::ALWAYS_NAMESPACES {
            out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "status": {"phase": "Active"}}));
        }
        // CRDs: charts, operators, Gatekeeper templates.
        let mut crds: BTreeSet<(String, String)> = self.crds.iter().filter(|(_, k)| k != "*").cloned().collect();
        for j in 0..self.hs.len() {
            let h = &self.model.helm_releases[j].spec;
            let operator_up =
                self.h_ready(j) && self.hs[j].ready.first.is_some_and(|t| t + self.sim.operator_crd_ms <= self.now);
            if let Some(c) = self.cat.chart(&h.chart) {
                for g in c.crds.iter().filter(|g| g.enabled(&h.values)) {
                    match g.registered_by {
                        RegisteredBy::Operator if operator_up => {
                            crds.extend(g.kinds.iter().filter(|k| *k != "*").map(|k| (g.group.clone(), k.clone())))
                        }
                        RegisteredBy::Template if operator_up => {
                            crds.extend(self.templates.iter().map(|k| (g.group.clone(), k.clone())))
                        }
                        _ => {}
                    }
                }
            }
        }
        let repo_crds: BTreeSet<(String, String)> = self
            .model
            .kustomizations
            .iter()
            .flat_map(|k| &k.objects)
            .filter(|o| o.kind() == "CustomResourceDefinition")
            .map(|o| {
                let s = |p: &str| o.value.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
                (s("/spec/group"), s("/spec/names/kind"))
            })
            .collect();
        for (g, k) in &crds {
            if !repo_crds.contains(&(g.clone(), k.clone())) {
                out.push(crate::apiserver::store::synthetic_crd(g, k, !crate::object::is_known_cluster_scoped(g, k)));
            }
        }
        let entry_raw = |i: usize| -> serde_json::Value {
            let k = &self.model.kustomizations[i].spec;
            if k.raw.is_null() {
                json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": k.name, "namespace": k.namespace},
                       "spec": {"interval": "10m", "path": format!("./{}", k.path), "prune": true, "sourceRef": {"kind": k.source.kind, "name": k.source.name}}})
            } else {
                k.raw.clone()
            }
        };
        for i in 0..self.ks.len() {
            if !self.ks[i].exists {
                continue;
            }
            let mut o = entry_raw(i);
            let ready = self.k_ready(i);
            o["status"] = json!({
                "observedGeneration": if self.ks[i].ready.first.is_some() { 1 } else { -1 },
                "conditions": Self::conditions(self.ks[i].ready.cond.as_ref(), time(self.ks[i].ready.since)),
            });
            if self.ks[i].ready.first.is_some() {
                o["status"]["lastAppliedRevision"] = json!(REVISION);
            }
            if ready || self.ks[i].ready.cond.is_some() {
                o["status"]["lastAttemptedRevision"] = json!(REVISION);
            }
            out.push(o);
            if self.ks[i].applied_at.is_none() {
                continue;
            }
            for obj in &self.model.kustomizations[i].objects {
                let flux = obj.group().ends_with(".toolkit.fluxcd.io");
                if flux && matches!(obj.kind(), "Kustomization" | "HelmRelease") {
                    continue;
                }
                let mut v = obj.value.clone();
                if obj.group() == crate::flux::SOURCE_GROUP {
                    let r = Ref {
                        kind: obj.kind().into(),
                        namespace: crate::flux::namespace_of(obj),
                        name: obj.name().into(),
                    };
                    let ready_at = self.find_s(&r).and_then(|x| self.sources.get(x)).and_then(|x| x.ready_at);
                    let cond = ready_at
                        .map(|_| Cond { status: "True", reason: "Succeeded".into(), message: "stored artifact".into() })
                        .unwrap_or(Cond {
                            status: "Unknown",
                            reason: "Progressing".into(),
                            message: "building artifact".into(),
                        });
                    v["status"] = json!({"observedGeneration": 1, "conditions": Self::conditions(Some(&cond), time(ready_at.unwrap_or(self.now)))});
                }
                if matches!(obj.kind(), "Deployment" | "StatefulSet") && obj.group() == "apps" {
                    let replicas = v.pointer("/spec/replicas").and_then(|r| r.as_i64()).unwrap_or(1);
                    let up = matches!(self.object_status(i, obj), Status::Current);
                    v["status"] = json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": if up { replicas } else { 0 }, "availableReplicas": if up { replicas } else { 0 }});
                }
                out.push(v);
            }
        }
        for j in 0..self.hs.len() {
            if !self.hs[j].exists {
                continue;
            }
            let mut o = self.model.helm_releases[j].spec.raw.clone();
            let mut conds = Self::conditions(self.hs[j].ready.cond.as_ref(), time(self.hs[j].ready.since));
            if self.hs[j].phase == HPhase::Stalled {
                let n = self.hs[j].failures;
                conds.as_array_mut().unwrap().push(json!({"type": "Stalled", "status": "True", "reason": "RetriesExceeded", "message": format!("Failed to install after {n} attempt(s)"), "lastTransitionTime": time(self.hs[j].ready.since), "observedGeneration": 1}));
            }
            o["status"] = json!({"observedGeneration": if self.hs[j].ready.first.is_some() { 1 } else { -1 }, "conditions": conds, "installFailures": self.hs[j].failures});
            out.push(o);
        }
        // The entry's own source (bootstrap created it).
        if self.find_s(&self.model.self_source).is_none() {
            let s = &self.model.self_source;
            let ready = self.sources.last().and_then(|x| x.ready_at);
            let cond = ready.map(|_| Cond {
                status: "True",
                reason: "Succeeded".into(),
                message: format!("stored artifact for revision '{REVISION}'"),
            });
            out.push(json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": s.kind, "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {"interval": "1m", "url": "http://127.0.0.1/flux-harness/repo.git"},
                "status": {"observedGeneration": 1, "conditions": Self::conditions(cond.as_ref(), time(ready.unwrap_or(0)))}}));
        }
        out
    }

    /// The message the API server would answer a write with, when a fail-closed webhook
    /// of the simulation refuses it now.
    pub fn admission(&self, group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<String> {
        let (hr, webhook) = self.refused_by(group, kind, namespace, None)?;
        let h = &self.model.helm_releases[hr].spec;
        let svc = format!("{}-webhook-service", h.name);
        let _ = name;
        Some(format!(
            "Internal error occurred: failed calling webhook \"{webhook}\": failed to call webhook: Post \"https://{svc}.{}.svc:443/validate?timeout=10s\": no endpoints available for service \"{svc}\"",
            self.release_ns(hr)
        ))
    }

    pub fn finished(&self) -> bool {
        self.converged_at.is_some() || self.queue.is_empty() || self.now >= self.sim.max_ms
    }

    // ----- results -----

    pub fn report(&self) -> report::SimReport {
        report::build(self)
    }
}

/// What a health check waits for.
enum Target {
    /// An object the Kustomization itself applies (index).
    Own(usize),
    /// A Kustomization or HelmRelease elsewhere in the repo.
    Flux(Entity),
    /// Nothing the repo creates (its kstatus id).
    Missing(String),
}

enum Status {
    Current,
    InProgress(Option<Block>),
    Failed(Option<Block>),
}

/// Simulates a loaded repo with the built-in catalogue extended by the repo config.
pub fn simulate(model: &RepoModel, graph: &Graph, config: &RepoConfig, sim: SimConfig) -> Result<report::SimReport> {
    let mut cat = Catalogue::builtin();
    cat.extend(config.catalogue.clone());
    let mut s = Simulator::new(model, graph, &cat, config, sim)?;
    s.run();
    Ok(s.report())
}
