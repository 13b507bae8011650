//! What a change does to the bootstrap: two analysed revisions of one repo compared.
//!
//! Both sides are loaded and analysed exactly as `plan` and `simulate` do; this module
//! only compares the results. It answers a reviewer's question, "what does this change do
//! to the bootstrap": Flux objects added, removed or changed (which fields), dependsOn
//! edges, layer moves, the critical path, the predicted time to Ready, findings new and
//! fixed, cycles and deadlocks introduced, and the rendered objects each Kustomization
//! changes. Findings are matched by rule, object, file and message with numbers masked,
//! never by line, so an unrelated edit that shifts lines changes nothing.

mod fields;
pub mod render;

use crate::findings::{Finding, Severity};
use crate::model::RepoModel;
use crate::plan::Plan;
use crate::sim::report::SimReport;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

pub use fields::FieldChange;

/// One analysed revision.
pub struct Side<'a> {
    pub info: SideInfo,
    pub model: &'a RepoModel,
    pub plan: &'a Plan,
    pub sim: Option<&'a SimReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SideInfo {
    /// `main`, `HEAD~1`, or `working tree`.
    pub revision: String,
    /// The commit it resolved to (`None`: the working tree).
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Field-level changes of rendered objects (Secret values masked).
    pub fields: bool,
}

/// A Flux Kustomization or HelmRelease that exists on one side only, or on both with a
/// different spec.
#[derive(Debug, Clone, Serialize)]
pub struct FluxChange {
    pub kind: String,
    /// As plan shows it: `name` in the entry's namespace, else `namespace/name`.
    pub name: String,
    pub file: String,
    pub line: u32,
    /// Changed leaves of `spec` (empty for added and removed objects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    pub added: Vec<FluxChange>,
    pub removed: Vec<FluxChange>,
    pub changed: Vec<FluxChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DependsOnEdge {
    pub kind: String,
    /// The dependent.
    pub from: String,
    /// What it waits for.
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerMove {
    pub name: String,
    pub base: Option<usize>,
    pub head: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BeforeAfter<T> {
    pub base: T,
    pub head: T,
}

/// Predicted time to Ready (virtual seconds of the simulation; `None`: never Ready).
#[derive(Debug, Clone, Serialize)]
pub struct ReadyTime {
    pub kind: String,
    pub name: String,
    pub base: Option<f64>,
    pub head: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Predicted {
    /// Whole bootstrap: the last Ready, when it converges.
    pub total: BeforeAfter<Option<f64>>,
    pub converged: BeforeAfter<bool>,
    /// Changed objects, and every object whose Ready time moved by a second or more.
    pub objects: Vec<ReadyTime>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FindingChanges {
    pub new: Vec<Finding>,
    pub fixed: Vec<Finding>,
    /// Error findings on both sides: listed, not blamed on the change.
    #[serde(rename = "preExistingErrors")]
    pub pre_existing_errors: Vec<Finding>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Loops {
    /// dependsOn cycles (plan) and deadlocks (simulation), each as its chain.
    pub new: Vec<Vec<String>>,
    pub fixed: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    #[serde(flatten)]
    pub id: ObjectId,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// What one Kustomization (on both sides) applies differently.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedChange {
    pub kustomization: String,
    pub added: Vec<ObjectId>,
    pub removed: Vec<ObjectId>,
    pub changed: Vec<ObjectChange>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BootstrapDiff {
    pub base: SideInfo,
    pub head: SideInfo,
    /// `true` when nothing below differs.
    pub unchanged: bool,
    pub kustomizations: Changes,
    #[serde(rename = "helmReleases")]
    pub helm_releases: Changes,
    #[serde(rename = "dependsOn")]
    pub depends_on: BeforeAfterEdges,
    #[serde(rename = "layerMoves")]
    pub layer_moves: Vec<LayerMove>,
    #[serde(rename = "criticalPath")]
    pub critical_path: BeforeAfter<Vec<String>>,
    pub predicted: Predicted,
    pub findings: FindingChanges,
    /// Cycles and deadlocks.
    pub loops: Loops,
    pub rendered: Vec<RenderedChange>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BeforeAfterEdges {
    pub added: Vec<DependsOnEdge>,
    pub removed: Vec<DependsOnEdge>,
}

impl BootstrapDiff {
    /// 1 when head brings an error finding, a cycle or a deadlock that base did not have.
    pub fn exit_code(&self) -> i32 {
        let new_error = self.findings.new.iter().any(|f| f.severity == Severity::Error);
        if new_error || !self.loops.new.is_empty() { 1 } else { 0 }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("diff serialises")
    }
}

/// `namespace/name` → the index, for one kind of Flux object.
fn keyed<T>(items: &[T], key: impl Fn(&T) -> String) -> BTreeMap<String, usize> {
    items.iter().enumerate().map(|(i, x)| (key(x), i)).collect()
}

pub fn compare(base: &Side, head: &Side, opts: Options) -> BootstrapDiff {
    let kustomizations = flux_changes(
        "Kustomization",
        base,
        head,
        |s| keyed(&s.model.kustomizations, |k| format!("{}/{}", k.spec.namespace, k.spec.name)),
        |s, i| {
            let k = &s.model.kustomizations[i];
            (crate::graph::display_k(s.model, i), k.spec.origin.file.clone(), k.spec.origin.line, &k.spec.raw)
        },
    );
    let helm_releases = flux_changes(
        "HelmRelease",
        base,
        head,
        |s| keyed(&s.model.helm_releases, |h| format!("{}/{}", h.spec.namespace, h.spec.name)),
        |s, i| {
            let h = &s.model.helm_releases[i].spec;
            (format!("{}/{}", h.namespace, h.name), h.origin.file.clone(), h.origin.line, &h.raw)
        },
    );
    let depends_on = edge_changes(base.plan, head.plan);
    let layer_moves = layer_moves(base.plan, head.plan);
    let critical_path = BeforeAfter { base: base.plan.critical_path.clone(), head: head.plan.critical_path.clone() };
    let mut changed_names: BTreeSet<(String, String)> = BTreeSet::new();
    for (kind, c) in [("Kustomization", &kustomizations), ("HelmRelease", &helm_releases)] {
        for x in c.added.iter().chain(&c.removed).chain(&c.changed) {
            changed_names.insert((kind.to_string(), x.name.clone()));
        }
    }
    for m in &layer_moves {
        changed_names.insert(("Kustomization".into(), m.name.clone()));
    }
    let predicted = predicted(base.sim, head.sim, &changed_names);
    let findings = finding_changes(&base.plan.findings, &head.plan.findings);
    let loops = loop_changes(base, head);
    let rendered = rendered_changes(base, head, opts);
    let unchanged = kustomizations.added.is_empty()
        && kustomizations.removed.is_empty()
        && kustomizations.changed.is_empty()
        && helm_releases.added.is_empty()
        && helm_releases.removed.is_empty()
        && helm_releases.changed.is_empty()
        && depends_on.added.is_empty()
        && depends_on.removed.is_empty()
        && layer_moves.is_empty()
        && critical_path.base == critical_path.head
        && predicted.objects.is_empty()
        && same_time(predicted.total.base, predicted.total.head)
        && findings.new.is_empty()
        && findings.fixed.is_empty()
        && loops.new.is_empty()
        && loops.fixed.is_empty()
        && rendered.is_empty();
    BootstrapDiff {
        base: base.info.clone(),
        head: head.info.clone(),
        unchanged,
        kustomizations,
        helm_releases,
        depends_on,
        layer_moves,
        critical_path,
        predicted,
        findings,
        loops,
        rendered,
    }
}

fn same_time(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1.0,
        (None, None) => true,
        _ => false,
    }
}

type Describe<'s> = (String, String, u32, &'s serde_json::Value);

fn flux_changes<'a>(
    kind: &str,
    base: &Side<'a>,
    head: &Side<'a>,
    index: impl Fn(&Side<'a>) -> BTreeMap<String, usize>,
    describe: impl for<'s> Fn(&Side<'s>, usize) -> Describe<'s>,
) -> Changes {
    let (b, h) = (index(base), index(head));
    let mut out = Changes::default();
    let row = |(name, file, line, _): Describe, fields| FluxChange { kind: kind.into(), name, file, line, fields };
    for (key, &i) in &h {
        match b.get(key) {
            None => out.added.push(row(describe(head, i), vec![])),
            Some(&j) => {
                let d = describe(head, i);
                let before = describe(base, j).3.get("spec").cloned().unwrap_or_default();
                let after = d.3.get("spec").cloned().unwrap_or_default();
                let changes = fields::diff("spec", &before, &after, false);
                if !changes.is_empty() {
                    out.changed.push(row(d, changes));
                }
            }
        }
    }
    for (key, &j) in &b {
        if !h.contains_key(key) {
            out.removed.push(row(describe(base, j), vec![]));
        }
    }
    out
}

fn edges(plan: &Plan) -> BTreeSet<DependsOnEdge> {
    let ks = plan.kustomizations.iter().map(|k| ("Kustomization", shown(plan, &k.namespace, &k.name), &k.depends_on));
    let hs = plan.helm_releases.iter().map(|h| ("HelmRelease", format!("{}/{}", h.namespace, h.name), &h.depends_on));
    ks.chain(hs)
        .flat_map(|(kind, from, deps)| {
            deps.iter().map(move |to| DependsOnEdge { kind: kind.into(), from: from.clone(), to: to.clone() })
        })
        .collect()
}

/// A Kustomization's name as plan's layers show it.
fn shown(plan: &Plan, namespace: &str, name: &str) -> String {
    let entry_ns = plan.kustomizations.iter().find(|k| k.entry).map(|k| k.namespace.as_str()).unwrap_or("");
    if namespace == entry_ns { name.to_string() } else { format!("{namespace}/{name}") }
}

fn edge_changes(base: &Plan, head: &Plan) -> BeforeAfterEdges {
    let (b, h) = (edges(base), edges(head));
    BeforeAfterEdges { added: h.difference(&b).cloned().collect(), removed: b.difference(&h).cloned().collect() }
}

fn layer_moves(base: &Plan, head: &Plan) -> Vec<LayerMove> {
    let layers = |p: &Plan| -> BTreeMap<String, Option<usize>> {
        p.kustomizations.iter().filter(|k| !k.entry).map(|k| (shown(p, &k.namespace, &k.name), k.layer)).collect()
    };
    let (b, h) = (layers(base), layers(head));
    h.iter()
        .filter_map(|(name, &hl)| match b.get(name) {
            Some(&bl) if bl != hl => Some(LayerMove { name: name.clone(), base: bl, head: hl }),
            _ => None,
        })
        .collect()
}

fn predicted(base: Option<&SimReport>, head: Option<&SimReport>, changed: &BTreeSet<(String, String)>) -> Predicted {
    let times = |s: Option<&SimReport>| -> BTreeMap<(String, String), f64> {
        s.map(|r| r.ready_order.iter().map(|x| ((x.kind.clone(), x.name.clone()), x.at_seconds)).collect())
            .unwrap_or_default()
    };
    let (b, h) = (times(base), times(head));
    let names: BTreeSet<&(String, String)> = b.keys().chain(h.keys()).chain(changed.iter()).collect();
    let mut objects: Vec<ReadyTime> = names
        .into_iter()
        .filter_map(|key| {
            let (bt, ht) = (b.get(key).copied(), h.get(key).copied());
            let moved = !same_time(bt, ht);
            (moved || changed.contains(key)).then(|| ReadyTime {
                kind: key.0.clone(),
                name: key.1.clone(),
                base: bt,
                head: ht,
            })
        })
        .collect();
    // Largest delay first: that is what a reviewer looks at.
    let delta = |r: &ReadyTime| match (r.base, r.head) {
        (Some(b), Some(h)) => h - b,
        (None, Some(_)) | (Some(_), None) => f64::INFINITY,
        (None, None) => 0.0,
    };
    objects.sort_by(|x, y| delta(y).total_cmp(&delta(x)).then_with(|| (&x.kind, &x.name).cmp(&(&y.kind, &y.name))));
    let total = |s: Option<&SimReport>| s.filter(|r| r.converged).map(|r| r.total_seconds);
    Predicted {
        total: BeforeAfter { base: total(base), head: total(head) },
        converged: BeforeAfter { base: base.is_some_and(|r| r.converged), head: head.is_some_and(|r| r.converged) },
        objects,
    }
}

/// What identifies a finding across revisions: its rule, object, file and message with
/// every number masked (line numbers, seconds, counts move with unrelated edits).
fn identity(f: &Finding) -> (String, Option<String>, String, String) {
    static DIGITS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static MEMBER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = DIGITS.get_or_init(|| regex::Regex::new(r"[0-9]+").expect("valid regex"));
    if f.rule == "dependency-cycle" {
        // A loop is the same loop whichever member it is written from (that follows load
        // order): its identity is the set of its members.
        let member = MEMBER.get_or_init(|| {
            regex::Regex::new(r"(Kustomization|HelmRelease) [^\s.]+(\.[^\s.]+)*").expect("valid regex")
        });
        let mut names: Vec<&str> = member.find_iter(&f.message).map(|m| m.as_str()).collect();
        names.sort();
        names.dedup();
        return (f.rule.clone(), None, String::new(), names.join(","));
    }
    (f.rule.clone(), f.kustomization.clone(), f.file.clone(), re.replace_all(&f.message, "#").into_owned())
}

fn finding_changes(base: &[Finding], head: &[Finding]) -> FindingChanges {
    // A multiset match: two equal findings on one side need two on the other.
    let mut pool: BTreeMap<_, usize> = BTreeMap::new();
    for f in base {
        *pool.entry(identity(f)).or_default() += 1;
    }
    let mut out = FindingChanges::default();
    for f in head {
        match pool.get_mut(&identity(f)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if f.severity == Severity::Error {
                    out.pre_existing_errors.push(f.clone());
                }
            }
            _ => out.new.push(f.clone()),
        }
    }
    let mut left: BTreeMap<_, usize> = BTreeMap::new();
    for f in head {
        *left.entry(identity(f)).or_default() += 1;
    }
    for f in base {
        match left.get_mut(&identity(f)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.fixed.push(f.clone()),
        }
    }
    out
}

fn loops(side: &Side) -> BTreeSet<Vec<String>> {
    // A loop plan found and the simulator played out is one loop.
    let mut all: BTreeSet<Vec<String>> = side.plan.cycles.iter().map(|c| crate::graph::loop_identity(c)).collect();
    if let Some(d) = side.sim.and_then(|s| s.deadlock.as_ref()) {
        all.insert(crate::graph::loop_identity(&d.cycle));
    }
    all
}

fn loop_changes(base: &Side, head: &Side) -> Loops {
    let (b, h) = (loops(base), loops(head));
    Loops { new: h.difference(&b).cloned().collect(), fixed: b.difference(&h).cloned().collect() }
}

fn objects_of(model: &RepoModel, i: usize) -> BTreeMap<ObjectId, &serde_json::Value> {
    model.kustomizations[i]
        .objects
        .iter()
        .map(|o| {
            let group = o.api_version().rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = if group.is_empty() { o.kind().to_string() } else { format!("{}.{group}", o.kind()) };
            (ObjectId { kind, namespace: o.namespace().map(str::to_string), name: o.name().to_string() }, &o.value)
        })
        .collect()
}

fn rendered_changes(base: &Side, head: &Side, opts: Options) -> Vec<RenderedChange> {
    let key = |m: &RepoModel| keyed(&m.kustomizations, |k| format!("{}/{}", k.spec.namespace, k.spec.name));
    let (b, h) = (key(base.model), key(head.model));
    let mut out = vec![];
    for (k, &hi) in &h {
        let Some(&bi) = b.get(k) else { continue };
        let (before, after) = (objects_of(base.model, bi), objects_of(head.model, hi));
        let mut change = RenderedChange {
            kustomization: crate::graph::display_k(head.model, hi),
            added: after.keys().filter(|id| !before.contains_key(id)).cloned().collect(),
            removed: before.keys().filter(|id| !after.contains_key(id)).cloned().collect(),
            changed: vec![],
        };
        for (id, v) in &after {
            // A changed Kustomization or HelmRelease is listed, field by field, above.
            if id.kind.ends_with(".kustomize.toolkit.fluxcd.io") || id.kind.ends_with(".helm.toolkit.fluxcd.io") {
                continue;
            }
            let Some(old) = before.get(id) else { continue };
            if old != v {
                let secret = id.kind == "Secret";
                let fields = if opts.fields { fields::diff("", old, v, secret) } else { vec![] };
                change.changed.push(ObjectChange { id: id.clone(), fields });
            }
        }
        if !(change.added.is_empty() && change.removed.is_empty() && change.changed.is_empty()) {
            out.push(change);
        }
    }
    out
}
