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

mod admission;
mod client;
pub mod fault;
mod helm;
mod kustomize;
pub mod nodes;
mod objects;
pub mod repo_webhooks;
pub mod report;
mod setup;
mod source;

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
    /// The revision source-controller reports (`BRANCH@sha1:SHA`): on the sim provider,
    /// the commit the harness's git server serves.
    pub revision: String,
    /// The URL the bootstrap pointed the entry's source at (the harness's git server).
    pub self_url: String,
    /// Sources source-controller cannot fetch once the tree re-points them (namespace,
    /// name, reason, Flux's message): the artifact fetched before stays, Ready goes False.
    pub unfetchable: Vec<(String, String, String, String)>,
    /// The entry's objects as the bootstrap applied them through the API (its Kustomization
    /// and GitRepository): the cluster serves the entry Kustomization as applied (with its
    /// status), and its GitRepository so until the tree applies its own.
    pub applied: Vec<serde_json::Value>,
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
            revision: REVISION.into(),
            self_url: "http://127.0.0.1/flux-harness/repo.git".into(),
            unfetchable: vec![],
            applied: vec![],
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
    /// A webhook the repo defines itself (index into the simulator's `repo_hooks`).
    RepoWebhook(usize),
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
    /// `spec.suspend` as a client of the API server set it (`flux suspend`), over the repo's.
    suspended: Option<bool>,
    /// The last `reconcile.fluxcd.io/requestedAt` handled (`flux reconcile`).
    handled_request: Option<String>,
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
    /// The fetch failed after the tree re-pointed it (the artifact stays).
    failure: Option<Cond>,
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
    /// Changes a client made through the API that the controllers acted on.
    client_edits: u64,
    /// Kustomizations and HelmReleases below these indexes are Ready (see `all_ready`).
    ready_below: (usize, usize),
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
    /// Per Kustomization: why its build cannot decrypt (kustomize-controller's message),
    /// computed once from the repo config's `Decryption`.
    undecryptable: Vec<Option<String>>,
    /// A SOPS-encrypted Secret without `spec.decryption`: refused before any stage applies.
    undecrypted: Vec<Option<String>>,
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
    /// The fail-closed webhooks the repo defines itself.
    repo_hooks: Vec<repo_webhooks::RepoHook>,
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
        if status != "True" {
            self.ready_below.0 = self.ready_below.0.min(i);
        }
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
        if status != "True" {
            self.ready_below.1 = self.ready_below.1.min(j);
        }
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

    /// Every Kustomization Ready (or suspended) and every HelmRelease Ready, resumed from
    /// `ready_below` (`set_k`/`set_h` move it back when one turns unready).
    fn all_ready(&mut self) -> bool {
        let (nk, nh) = (self.ks.len(), self.hs.len());
        while self.ready_below.0 < nk && (self.k_ready(self.ready_below.0) || self.k_suspended(self.ready_below.0)) {
            self.ready_below.0 += 1;
        }
        while self.ready_below.0 == nk && self.ready_below.1 < nh && self.h_ready(self.ready_below.1) {
            self.ready_below.1 += 1;
        }
        self.ready_below == (nk, nh)
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
pub fn simulate(loaded: &crate::loaded::Loaded, sim: SimConfig) -> Result<report::SimReport> {
    let mut s = Simulator::of(loaded, sim)?;
    s.run();
    Ok(s.report())
}
