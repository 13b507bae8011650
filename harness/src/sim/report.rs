//! The simulator's report: Ready order, layer times, critical path, what is stuck and why,
//! deadlocks (cycles of waiting), and the timeline; as JSON and as a terminal Gantt chart.

use super::{Block, Entity, HPhase, Simulator, TimelineEntry};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadyItem {
    pub kind: String,
    pub name: String,
    pub at_seconds: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerReady {
    pub layer: usize,
    pub ready_at_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stuck {
    pub kind: String,
    pub name: String,
    pub reason: String,
    pub message: String,
    pub because: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deadlock {
    pub cycle: Vec<String>,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineRow {
    pub at_seconds: f64,
    pub kind: String,
    pub name: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// One Kustomization's span, for the Gantt chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    pub name: String,
    pub layer: Option<usize>,
    pub created_seconds: Option<f64>,
    pub started_seconds: Option<f64>,
    pub ready_seconds: Option<f64>,
}

/// A reconcile that failed on the way (flux-semantics: "Waiting versus failing"): on a
/// real cluster each one costs a `retryInterval` or a Helm backoff, mended or not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    pub kind: String,
    pub name: String,
    pub at_seconds: f64,
    pub reason: String,
    pub message: String,
    /// How many failed reconciles before Ready (or the end).
    pub attempts: usize,
    /// When it became Ready after all (`None`: never).
    pub ready_at_seconds: Option<f64>,
}

/// Ready=False reasons that are Flux waiting, not failing. `ArtifactFailed` is waiting only
/// while the source has no artifact yet. Shared with the e2e assertions, so `simulate` and
/// a sim run call the same things failures.
pub fn is_failure(status: &str, reason: &str, message: &str) -> bool {
    if status != "False" {
        return false;
    }
    match reason {
        "Progressing" | "DependencyNotReady" | "SourceNotReady" | "" => false,
        "ArtifactFailed" => !message.starts_with("Source artifact not found"),
        _ => true,
    }
}

/// One entry per object that failed before its first Ready (or never became Ready), from
/// a timeline of Ready condition changes in time order: `(at, kind, name, status, reason, message)`.
pub fn failures<'a>(
    rows: impl IntoIterator<Item = (f64, &'a str, &'a str, &'a str, &'a str, &'a str)>,
) -> Vec<Failure> {
    let mut by: BTreeMap<(String, String), Failure> = BTreeMap::new();
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    for (at, kind, name, status, reason, message) in rows {
        let key = (kind.to_string(), name.to_string());
        if done.contains(&key) {
            continue;
        }
        if status == "True" {
            if let Some(f) = by.get_mut(&key) {
                f.ready_at_seconds = Some(at);
            }
            done.insert(key);
        } else if is_failure(status, reason, message) {
            by.entry(key).and_modify(|f| f.attempts += 1).or_insert_with(|| Failure {
                kind: kind.into(),
                name: name.into(),
                at_seconds: at,
                reason: reason.into(),
                message: message.into(),
                attempts: 1,
                ready_at_seconds: None,
            });
        }
    }
    let mut v: Vec<Failure> = by.into_values().collect();
    v.sort_by(|a, b| a.at_seconds.total_cmp(&b.at_seconds).then_with(|| a.name.cmp(&b.name)));
    v
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimReport {
    pub converged: bool,
    /// Failed reconciles on the way, mended by a retry or not.
    pub failures: Vec<Failure>,
    pub total_seconds: f64,
    pub ready_order: Vec<ReadyItem>,
    pub layers: Vec<LayerReady>,
    pub critical_path: Vec<ReadyItem>,
    pub stuck: Vec<Stuck>,
    pub deadlock: Option<Deadlock>,
    pub timeline: Vec<TimelineRow>,
    pub notes: Vec<String>,
    #[serde(skip)]
    pub spans: Vec<Span>,
    /// `/etc/cni/net.d` on each node at the end.
    #[serde(skip)]
    pub nodes: Vec<super::nodes::NodeCni>,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn name_of(s: &Simulator, e: &Entity) -> String {
    match e {
        Entity::K(i) => {
            let k = &s.model.kustomizations[*i].spec;
            format!("Kustomization {}/{}", k.namespace, k.name)
        }
        Entity::H(j) => {
            let h = &s.model.helm_releases[*j].spec;
            format!("HelmRelease {}/{}", h.namespace, h.name)
        }
        Entity::Source(x) => format!("{} {}/{}", s.sources[*x].kind, s.sources[*x].namespace, s.sources[*x].name),
        Entity::Webhook(_, n) => format!("webhook {n}"),
        Entity::RepoWebhook(w) => format!("webhook {}", s.repo_hooks[*w].name),
        Entity::Network => "the pod network".into(),
        Entity::CniChain => "the linkerd-cni chain".into(),
    }
}

/// What an entity waits on at the end of the run.
fn waits_on(s: &Simulator, e: &Entity) -> Option<Block> {
    match e {
        Entity::K(i) => {
            if s.k_ready(*i) {
                return None;
            }
            if !s.ks[*i].exists {
                return s.model.kustomizations[*i].parent.map(|p| Block::On(Entity::K(p)));
            }
            s.ks[*i].block.clone()
        }
        Entity::H(j) => {
            if s.h_ready(*j) {
                return None;
            }
            if !s.hs[*j].exists {
                return Some(Block::On(Entity::K(s.model.helm_releases[*j].owner)));
            }
            s.hs[*j].block.clone()
        }
        Entity::Source(x) => {
            if s.sources[*x].ready_at.is_some() {
                return None;
            }
            s.model.sources.get(*x).and_then(|src| src.owner).map(|o| Block::On(Entity::K(o)))
        }
        Entity::Webhook(hr, name) => {
            if s.serving(*hr, name) {
                None
            } else if s.h_ready(*hr) && s.network_up() && s.self_blocks(*hr, name) {
                Some(Block::On(e.clone()))
            } else if s.h_ready(*hr) {
                if !s.network_up() {
                    Some(Block::On(Entity::Network))
                } else {
                    Some(Block::Root("its pods are down (fault injected)".to_string()))
                }
            } else {
                Some(Block::On(Entity::H(*hr)))
            }
        }
        Entity::RepoWebhook(w) => {
            let h = &s.repo_hooks[*w];
            if s.repo_hook_serving(h) {
                None
            } else if !s.network_up() {
                Some(Block::On(Entity::Network))
            } else if let Some(k) = h.backends.iter().map(|&(k, _)| k).find(|&k| !s.k_ready(k)) {
                // The first workload behind it that has not started.
                Some(Block::On(Entity::K(k)))
            } else if s.repo_self_blocks(h) {
                Some(Block::On(e.clone()))
            } else {
                Some(Block::Root("its pods are down (fault injected)".to_string()))
            }
        }
        Entity::Network => match s.primary_cni {
            _ if s.network_up() => None,
            Some(p) if !s.h_ready(p) => Some(Block::On(Entity::H(p))),
            _ => Some(Block::Root("the CNI is restarting".into())),
        },
        Entity::CniChain => {
            if s.chain_ok {
                None
            } else if s.primary_exclusive() {
                Some(Block::Root("Cilium runs with cni.exclusive=true and removes linkerd-cni's configuration".into()))
            } else {
                s.chained_cni.map(|c| Block::On(Entity::H(c)))
            }
        }
    }
}

fn verb(s: &Simulator, from: &Entity, to: &Entity) -> &'static str {
    match (from, to) {
        (Entity::K(_), Entity::K(j))
            if s.ks[*j].exists || !matches!(from, Entity::K(i) if s.model.kustomizations[*i].parent == Some(*j)) =>
        {
            "waits for"
        }
        (Entity::K(_), Entity::K(_)) => "is applied by",
        (Entity::H(_), Entity::K(_)) => "is applied by",
        (Entity::Webhook(..), Entity::Webhook(..)) => "has its new pods refused by",
        (_, Entity::Webhook(..) | Entity::RepoWebhook(_)) => "is refused by",
        (Entity::RepoWebhook(_), Entity::K(_)) => "has no endpoint until the pods applied by",
        (Entity::Webhook(..), Entity::H(_)) => "has no endpoint until the pods of",
        (_, Entity::Network) => "has no network:",
        (Entity::Network, Entity::H(_)) => "comes with the CNI of",
        (_, Entity::CniChain) => "needs",
        (_, Entity::Source(_)) => "waits for the artifact of",
        _ => "waits for",
    }
}

fn chain(s: &Simulator, start: &Entity) -> String {
    let mut parts = vec![];
    let mut seen = vec![start.clone()];
    let mut cur = start.clone();
    for _ in 0..8 {
        match waits_on(s, &cur) {
            Some(Block::On(next)) => {
                let v = verb(s, &cur, &next);
                if seen.contains(&next) {
                    parts.push(format!("{v} {} (a cycle)", name_of(s, &next)));
                    break;
                }
                parts.push(format!("{v} {}", name_of(s, &next)));
                seen.push(next.clone());
                cur = next;
            }
            Some(Block::Root(why)) => {
                parts.push(format!("because {why}"));
                break;
            }
            None => break,
        }
    }
    parts.join(", which ")
}

fn find_cycle(s: &Simulator, starts: &[Entity]) -> Option<Vec<Entity>> {
    for start in starts {
        let mut path = vec![start.clone()];
        let mut cur = start.clone();
        for _ in 0..64 {
            match waits_on(s, &cur) {
                Some(Block::On(next)) => {
                    if let Some(pos) = path.iter().position(|e| e == &next) {
                        let mut cyc = path[pos..].to_vec();
                        // Start the cycle at its smallest entity, so the text is stable.
                        let min = cyc.iter().enumerate().min_by_key(|(_, e)| (*e).clone()).map(|(i, _)| i).unwrap_or(0);
                        cyc.rotate_left(min);
                        return Some(cyc);
                    }
                    path.push(next.clone());
                    cur = next;
                }
                _ => break,
            }
        }
    }
    None
}

pub fn build(s: &Simulator) -> SimReport {
    let name_k = |i: usize| crate::graph::display_k(s.model, i);
    let mut ready_order: Vec<ReadyItem> = vec![];
    for (i, k) in s.ks.iter().enumerate() {
        if let Some(t) = k.ready.first {
            ready_order.push(ReadyItem { kind: "Kustomization".into(), name: name_k(i), at_seconds: secs(t) });
        }
    }
    for (j, h) in s.hs.iter().enumerate() {
        if let Some(t) = h.ready.first {
            let spec = &s.model.helm_releases[j].spec;
            ready_order.push(ReadyItem {
                kind: "HelmRelease".into(),
                name: format!("{}/{}", spec.namespace, spec.name),
                at_seconds: secs(t),
            });
        }
    }
    ready_order.sort_by(|a, b| {
        a.at_seconds.total_cmp(&b.at_seconds).then_with(|| a.kind.cmp(&b.kind)).then_with(|| a.name.cmp(&b.name))
    });
    let layers = s
        .graph
        .layers
        .iter()
        .enumerate()
        .map(|(l, ks)| LayerReady {
            layer: l,
            ready_at_seconds: ks
                .iter()
                .map(|&i| s.ks[i].ready.first)
                .collect::<Option<Vec<u64>>>()
                .map(|v| secs(v.into_iter().max().unwrap_or(0))),
        })
        .collect();
    // Critical path: back from the last Kustomization to become Ready, through the
    // dependency that became Ready last.
    let mut critical_path = vec![];
    if let Some(mut cur) = (0..s.ks.len())
        .filter(|&i| s.ks[i].ready.first.is_some())
        .max_by_key(|&i| (s.ks[i].ready.first, std::cmp::Reverse(name_k(i))))
    {
        loop {
            critical_path.push(ReadyItem {
                kind: "Kustomization".into(),
                name: name_k(cur),
                at_seconds: secs(s.ks[cur].ready.first.unwrap_or(0)),
            });
            match s.graph.deps[cur]
                .iter()
                .copied()
                .filter(|&d| s.ks[d].ready.first.is_some())
                .max_by_key(|&d| (s.ks[d].ready.first, std::cmp::Reverse(name_k(d))))
            {
                Some(d) => cur = d,
                None => break,
            }
        }
        critical_path.reverse();
    }
    // Stuck objects.
    let mut stuck = vec![];
    let mut stuck_entities = vec![];
    for i in 0..s.ks.len() {
        if s.k_ready(i) || s.k_suspended(i) {
            continue;
        }
        let (reason, message) = match &s.ks[i].ready.cond {
            Some(c) => (c.reason.clone(), c.message.clone()),
            None => {
                ("NotCreated".into(), "never applied: the Kustomization that applies it did not get that far".into())
            }
        };
        stuck_entities.push(Entity::K(i));
        stuck.push(Stuck {
            kind: "Kustomization".into(),
            name: name_k(i),
            reason,
            message,
            because: chain(s, &Entity::K(i)),
        });
    }
    for j in 0..s.hs.len() {
        if s.h_ready(j) {
            continue;
        }
        let spec = &s.model.helm_releases[j].spec;
        let (mut reason, message) = match &s.hs[j].ready.cond {
            Some(c) => (c.reason.clone(), c.message.clone()),
            None => {
                ("NotCreated".into(), "never applied: the Kustomization that applies it did not get that far".into())
            }
        };
        if s.hs[j].phase == HPhase::Stalled {
            reason = format!("{reason} (Stalled: RetriesExceeded)");
        }
        stuck_entities.push(Entity::H(j));
        stuck.push(Stuck {
            kind: "HelmRelease".into(),
            name: format!("{}/{}", spec.namespace, spec.name),
            reason,
            message,
            because: chain(s, &Entity::H(j)),
        });
    }
    let converged = s.converged_at.is_some();
    let deadlock = if converged {
        None
    } else {
        find_cycle(s, &stuck_entities).map(|cyc| {
            let names: Vec<String> = cyc.iter().map(|e| name_of(s, e)).collect();
            let mut steps = vec![];
            for (n, e) in cyc.iter().enumerate() {
                let next = &cyc[(n + 1) % cyc.len()];
                steps.push(format!("{} {} {}", name_of(s, e), verb(s, e, next), name_of(s, next)));
            }
            Deadlock { cycle: names, explanation: format!("{}: nothing in this loop can progress", steps.join("; ")) }
        })
    };
    let total_ms = s.converged_at.unwrap_or(s.now);
    let timeline = s
        .timeline
        .iter()
        .map(|t: &TimelineEntry| TimelineRow {
            at_seconds: secs(t.at_ms),
            kind: t.kind.clone(),
            name: if t.namespace.is_empty() { t.name.clone() } else { format!("{}/{}", t.namespace, t.name) },
            status: t.status.clone(),
            reason: t.reason.clone(),
            message: t.message.clone(),
        })
        .collect();
    let spans = (0..s.ks.len())
        .filter(|&i| i != s.model.entry)
        .map(|i| Span {
            name: name_k(i),
            layer: s.graph.layer_of[i],
            created_seconds: s.ks[i].created_at.map(secs),
            started_seconds: s.ks[i].started_at.map(secs),
            ready_seconds: s.ks[i].ready.first.map(secs),
        })
        .collect();
    let flux: Vec<&TimelineEntry> =
        s.timeline.iter().filter(|t| t.kind == "Kustomization" || t.kind == "HelmRelease").collect();
    let names: Vec<String> = flux.iter().map(|t| format!("{}/{}", t.namespace, t.name)).collect();
    let failures = failures(flux.iter().zip(&names).map(|(t, n)| {
        (secs(t.at_ms), t.kind.as_str(), n.as_str(), t.status.as_str(), t.reason.as_str(), t.message.as_str())
    }));
    SimReport {
        converged,
        failures,
        total_seconds: secs(total_ms),
        ready_order,
        layers,
        critical_path,
        stuck,
        deadlock,
        timeline,
        notes: s.notes.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect(),
        spans,
        nodes: s.nodes_cni(),
    }
}

impl SimReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    /// A terminal Gantt chart by layer: `.` created and waiting for dependencies,
    /// `=` applying and health-checking, `|` Ready.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let total = self.total_seconds.max(1.0);
        let width = 60.0;
        let col = |t: f64| ((t / total) * width).round().clamp(0.0, width) as usize;
        let name_w = self.spans.iter().map(|s| s.name.len()).max().unwrap_or(10).min(36);
        let _ = writeln!(
            out,
            "{} after {} (virtual time)",
            if self.converged { "converged" } else { "NOT converged" },
            super::fault::format_duration((self.total_seconds * 1000.0) as u64)
        );
        let mut by_layer: BTreeMap<Option<usize>, Vec<&Span>> = BTreeMap::new();
        for s in &self.spans {
            by_layer.entry(s.layer).or_default().push(s);
        }
        for (layer, spans) in &by_layer {
            let ready = layer.and_then(|l| self.layers.get(l)).and_then(|l| l.ready_at_seconds);
            let title = match (layer, ready) {
                (Some(l), Some(t)) => {
                    format!("layer {l} (Ready at {})", super::fault::format_duration((t * 1000.0) as u64))
                }
                (Some(l), None) => format!("layer {l} (not Ready)"),
                (None, _) => "no layer (in or behind a cycle)".to_string(),
            };
            let _ = writeln!(out, "\n{title}");
            for s in spans {
                let mut bar = vec![' '; width as usize + 1];
                if let Some(c) = s.created_seconds {
                    let end = s.ready_seconds.unwrap_or(total);
                    let started = s.started_seconds.unwrap_or(end);
                    for b in bar.iter_mut().take(col(started)).skip(col(c)) {
                        *b = '.';
                    }
                    for b in bar.iter_mut().take(col(end)).skip(col(started)) {
                        *b = '=';
                    }
                    if let Some(r) = s.ready_seconds {
                        bar[col(r)] = '|';
                    }
                }
                let when = match s.ready_seconds {
                    Some(r) => super::fault::format_duration((r * 1000.0) as u64),
                    None => "stuck".into(),
                };
                let name: String = s.name.chars().take(name_w).collect();
                let _ = writeln!(out, "  {name:<name_w$} [{}] {when}", bar.iter().collect::<String>());
            }
        }
        if !self.critical_path.is_empty() {
            let path: Vec<String> = self
                .critical_path
                .iter()
                .map(|c| format!("{} ({})", c.name, super::fault::format_duration((c.at_seconds * 1000.0) as u64)))
                .collect();
            let _ = writeln!(out, "\ncritical path: {}", path.join(" -> "));
        }
        if let Some(d) = &self.deadlock {
            let _ = writeln!(out, "\nDEADLOCK: {}", d.explanation);
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nfailed on the way ({}):", self.failures.len());
            for f in &self.failures {
                let fmt = |t: f64| super::fault::format_duration((t * 1000.0) as u64);
                let outcome = match f.ready_at_seconds {
                    Some(r) => format!("Ready at {} ({} lost)", fmt(r), fmt(r - f.at_seconds)),
                    None => "never Ready".into(),
                };
                let _ = writeln!(
                    out,
                    "  {} {} at {}, {} attempt(s), {outcome}: {}: {}",
                    f.kind,
                    f.name,
                    fmt(f.at_seconds),
                    f.attempts,
                    f.reason,
                    f.message
                );
            }
        }
        if !self.stuck.is_empty() {
            let _ = writeln!(out, "\nnot Ready at the end:");
            for s in &self.stuck {
                let _ = writeln!(out, "  {} {}: {} {}", s.kind, s.name, s.reason, s.message);
                if !s.because.is_empty() {
                    let _ = writeln!(out, "      {} {}", s.name, s.because);
                }
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}
