//! The dependency graph of a repo model: layers, critical path and cycles.
//!
//! Layers come from `dependsOn` between Flux Kustomizations. Cycles are looked for in a
//! finer *readiness* graph that also knows what Flux waits for, so that deadlocks across
//! kinds are found: a Kustomization cannot apply before its dependencies are Ready, a
//! HelmRelease cannot exist before the Kustomization that applies it has applied, and a
//! Kustomization with `wait`/`healthChecks` is not Ready before what it waits for is.
//!
//! Knows nothing about clusters or time.

use crate::findings::{Finding, Severity};
use crate::flux::Ref;
use crate::model::RepoModel;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// Kustomization i can apply (its dependencies are Ready).
    KApply(usize),
    /// Kustomization i is Ready.
    KReady(usize),
    /// HelmRelease j is Ready.
    HReady(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    DependsOn,
    WaitsFor,
    AppliedBy,
    /// Ready only after it applied (internal; folded away in messages).
    AfterApply,
}

#[derive(Debug, Clone)]
pub struct Graph {
    /// Kustomization indices per layer (the entry is not in any layer).
    pub layers: Vec<Vec<usize>>,
    /// Layer of each Kustomization; `None` for the entry and for anything in or behind a cycle.
    pub layer_of: Vec<Option<usize>>,
    /// The longest dependsOn chain, root first.
    pub critical_path: Vec<usize>,
    /// Each cycle as readable steps, e.g. `Kustomization flux-system/a depends on`.
    pub cycles: Vec<Vec<String>>,
    /// Resolved dependsOn of each Kustomization (indices).
    pub deps: Vec<Vec<usize>>,
    /// Resolved dependsOn of each HelmRelease (indices).
    pub hr_deps: Vec<Vec<usize>>,
}

/// How a Kustomization is shown: `name` in the entry's namespace, else `namespace/name`.
pub fn display_k(model: &RepoModel, i: usize) -> String {
    let k = &model.kustomizations[i].spec;
    let entry_ns = &model.kustomizations[model.entry].spec.namespace;
    if &k.namespace == entry_ns { k.name.clone() } else { format!("{}/{}", k.namespace, k.name) }
}

fn waits_for(model: &RepoModel, i: usize, kind: &str, ns: &str, name: &str) -> bool {
    let k = &model.kustomizations[i].spec;
    if k.wait {
        return true;
    }
    k.health_checks.iter().any(|h| {
        h.get("kind").and_then(|v| v.as_str()) == Some(kind)
            && h.get("name").and_then(|v| v.as_str()) == Some(name)
            && h.get("namespace").and_then(|v| v.as_str()).unwrap_or(&k.namespace) == ns
    })
}

/// `namespace/name` of every Kustomization in the dependsOn-only cycles (steps are
/// written `Kustomization ns/name depends on`): nothing in such a loop ever starts, so the
/// cycle is the one cause of all their stalls. Members of a deadlock through `wait` or
/// health checks do apply, and can fail for their own reasons.
pub fn cycle_members(cycles: &[Vec<String>]) -> impl Iterator<Item = String> + '_ {
    cycles
        .iter()
        .filter(|c| c.len() > 1 && c[..c.len() - 1].iter().all(|s| s.ends_with(" depends on")))
        .flatten()
        .filter_map(|step| step.strip_prefix("Kustomization "))
        .map(|rest| rest.split(' ').next().unwrap_or(rest).to_string())
}

/// The members of a loop as `Kind ns/name`, closing step and verbs dropped, from its
/// smallest member on: the same loop however it was found or written.
pub fn loop_identity(steps: &[String]) -> Vec<String> {
    let mut members: Vec<String> = steps.iter().map(|s| s.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
    if members.len() > 1 && members.first() == members.last() {
        members.pop();
    }
    if let Some(start) = members.iter().enumerate().min_by_key(|(_, m)| *m).map(|(i, _)| i) {
        members.rotate_left(start);
    }
    members
}

pub fn analyse(model: &RepoModel) -> (Graph, Vec<Finding>) {
    let nk = model.kustomizations.len();
    let mut findings = vec![];
    let mut deps = vec![vec![]; nk];
    for (i, kn) in model.kustomizations.iter().enumerate() {
        let k = &kn.spec;
        let kid = format!("{}/{}", k.namespace, k.name);
        for d in &k.depends_on {
            match model.kustomization(d) {
                Some(j) => deps[i].push(j),
                None => findings.push(missing_dep(model, "Kustomization", &kid, &k.origin, d)),
            }
        }
    }
    let mut hr_deps = vec![vec![]; model.helm_releases.len()];
    for (j, hn) in model.helm_releases.iter().enumerate() {
        let h = &hn.spec;
        let owner = &model.kustomizations[hn.owner].spec;
        let hid = format!("{}/{}", h.namespace, h.name);
        for d in &h.depends_on {
            match model.helm_release(d) {
                Some(x) => hr_deps[j].push(x),
                None => findings.push(
                    missing_dep(model, "HelmRelease", &hid, &h.origin, d)
                        .for_kustomization(&format!("{}/{}", owner.namespace, owner.name)),
                ),
            }
        }
    }

    // Readiness graph.
    let mut g: DiGraph<Node, Edge> = DiGraph::new();
    let mut idx: HashMap<Node, NodeIndex> = HashMap::new();
    let mut node = |g: &mut DiGraph<Node, Edge>, n: Node| *idx.entry(n).or_insert_with(|| g.add_node(n));
    for (i, ki_deps) in deps.iter().enumerate() {
        let a = node(&mut g, Node::KApply(i));
        let r = node(&mut g, Node::KReady(i));
        g.add_edge(r, a, Edge::AfterApply);
        for &d in ki_deps {
            let dr = node(&mut g, Node::KReady(d));
            g.add_edge(a, dr, Edge::DependsOn);
        }
        if let Some(p) = model.kustomizations[i].parent {
            let pa = node(&mut g, Node::KApply(p));
            g.add_edge(a, pa, Edge::AppliedBy);
            let k = &model.kustomizations[i].spec;
            if waits_for(model, p, "Kustomization", &k.namespace, &k.name) {
                let pr = node(&mut g, Node::KReady(p));
                g.add_edge(pr, r, Edge::WaitsFor);
            }
        }
    }
    for (j, hn) in model.helm_releases.iter().enumerate() {
        let hr = node(&mut g, Node::HReady(j));
        let oa = node(&mut g, Node::KApply(hn.owner));
        g.add_edge(hr, oa, Edge::AppliedBy);
        if waits_for(model, hn.owner, "HelmRelease", &hn.spec.namespace, &hn.spec.name) {
            let or = node(&mut g, Node::KReady(hn.owner));
            g.add_edge(or, hr, Edge::WaitsFor);
        }
        for &d in &hr_deps[j] {
            let dr = node(&mut g, Node::HReady(d));
            g.add_edge(hr, dr, Edge::DependsOn);
        }
    }
    let mut cycles = vec![];
    let mut in_cycle = vec![false; nk];
    let mut sccs = tarjan_scc(&g);
    sccs.sort_by_key(|c| c.iter().map(|n| g[*n]).min());
    for scc in sccs {
        let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        for n in &scc {
            if let Node::KApply(i) | Node::KReady(i) = g[*n] {
                in_cycle[i] = true;
            }
        }
        let path = cycle_path(&g, &scc);
        let steps = describe_cycle(model, &g, &path);
        let first = path.first().map(|n| match g[*n] {
            Node::KApply(i) | Node::KReady(i) => model.kustomizations[i].spec.origin.clone(),
            Node::HReady(j) => model.helm_releases[j].spec.origin.clone(),
        });
        let loc = first.unwrap_or_else(|| crate::Loc::new("", 1));
        let only_deps = path
            .windows(2)
            .all(|w| matches!(g.find_edge(w[0], w[1]).map(|e| g[e]), Some(Edge::DependsOn | Edge::AfterApply)));
        // A loop of thousands is read by nobody: its first and last steps, and how many
        // are between (the JSON report's `cycles` has every step).
        let shown = if steps.len() > 24 {
            format!(
                "{} ... ({} more) ... {}",
                steps[..10].join(" "),
                steps.len() - 13,
                steps[steps.len() - 3..].join(" ")
            )
        } else {
            steps.join(" ")
        };
        let msg = if only_deps {
            format!(
                "dependsOn cycle ({} in the loop): {shown}. Flux never reports it: these stay DependencyNotReady forever",
                steps.len() - 1
            )
        } else {
            format!("deadlock: {shown}. Nothing in this loop can become Ready")
        };
        findings.push(
            Finding::new("dependency-cycle", Severity::Error, &loc, msg)
                .fix("remove one dependsOn (or wait/healthCheck) edge of the loop"),
        );
        cycles.push(steps);
    }

    // Layers over Kustomization dependsOn, skipping the entry and what is blocked by a cycle.
    let mut layer_of: Vec<Option<usize>> = vec![None; nk];
    let mut order: Vec<usize> = (0..nk).filter(|&i| i != model.entry).collect();
    order.sort_by_key(|&i| display_k(model, i));
    let mut changed = true;
    while changed {
        changed = false;
        for &i in &order {
            if layer_of[i].is_some() || in_cycle[i] {
                continue;
            }
            let ds: Vec<usize> = deps[i].iter().copied().filter(|&d| d != model.entry).collect();
            if ds.iter().all(|&d| layer_of[d].is_some()) {
                layer_of[i] = Some(ds.iter().map(|&d| layer_of[d].unwrap() + 1).max().unwrap_or(0));
                changed = true;
            }
        }
    }
    let depth = layer_of.iter().flatten().max().map(|m| m + 1).unwrap_or(0);
    let mut layers = vec![vec![]; depth];
    for &i in &order {
        if let Some(l) = layer_of[i] {
            layers[l].push(i);
        }
    }
    for &i in &order {
        if layer_of[i].is_none() && !in_cycle[i] && i != model.entry {
            let k = &model.kustomizations[i].spec;
            findings.push(
                Finding::new(
                    "blocked-by-cycle",
                    Severity::Error,
                    &k.origin,
                    format!("Kustomization {}/{} depends (directly or not) on a dependency cycle and can never become Ready", k.namespace, k.name),
                )
                .for_kustomization(&format!("{}/{}", k.namespace, k.name)),
            );
        }
    }
    let critical_path = critical_path(model, &deps, &layer_of);
    (Graph { layers, layer_of, critical_path, cycles, deps, hr_deps }, findings)
}

fn missing_dep(model: &RepoModel, kind: &str, id: &str, origin: &crate::Loc, d: &Ref) -> Finding {
    let other_kind = if kind == "Kustomization" {
        model.helm_release(&Ref { kind: "HelmRelease".into(), ..d.clone() }).map(|_| "HelmRelease")
    } else {
        model.kustomization(&Ref { kind: "Kustomization".into(), ..d.clone() }).map(|_| "Kustomization")
    };
    let hint = match other_kind {
        Some(other) => {
            format!("; {}/{} is a {other}, and a {kind}'s dependsOn can only name {kind}s", d.namespace, d.name)
        }
        None => String::new(),
    };
    Finding::new(
        "dependency-missing",
        Severity::Error,
        origin,
        format!("{kind} {id} depends on {}/{}, which is not defined in the repository{hint}; Flux reports \"dependency '{}/{}' not found\" and never applies it", d.namespace, d.name, d.namespace, d.name),
    )
    .for_kustomization(id)
    .fix("fix the name (and namespace) in dependsOn, or add the missing object")
}

/// One concrete loop inside a strongly connected component, as a node path that starts
/// and ends at the same node.
fn cycle_path(g: &DiGraph<Node, Edge>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let start = *scc.iter().min_by_key(|n| g[**n]).unwrap();
    // BFS from start's successors back to start, staying in the SCC.
    let inside = |n: NodeIndex| scc.contains(&n);
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::new();
    let mut succ: Vec<NodeIndex> = g.neighbors(start).filter(|n| inside(*n)).collect();
    succ.sort_by_key(|n| g[*n]);
    for n in succ {
        if n == start {
            return vec![start, start];
        }
        if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(n) {
            e.insert(start);
            queue.push_back(n);
        }
    }
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = g.neighbors(n).filter(|m| inside(*m)).collect();
        next.sort_by_key(|m| g[*m]);
        for m in next {
            if m == start {
                let mut path = vec![start, n];
                let mut cur = n;
                while let Some(&p) = prev.get(&cur) {
                    if p == start {
                        break;
                    }
                    path.push(p);
                    cur = p;
                }
                path.push(start);
                // path is start, n, ..., start reversed in the middle: rebuild forwards.
                let mut mid: Vec<NodeIndex> = path[1..path.len() - 1].to_vec();
                mid.reverse();
                let mut out = vec![start];
                out.extend(mid);
                out.push(start);
                return out;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

fn describe_cycle(model: &RepoModel, g: &DiGraph<Node, Edge>, path: &[NodeIndex]) -> Vec<String> {
    let name = |n: Node| match n {
        Node::KApply(i) | Node::KReady(i) => {
            let k = &model.kustomizations[i].spec;
            format!("Kustomization {}/{}", k.namespace, k.name)
        }
        Node::HReady(j) => {
            let h = &model.helm_releases[j].spec;
            format!("HelmRelease {}/{}", h.namespace, h.name)
        }
    };
    let mut steps: Vec<String> = vec![];
    for w in path.windows(2) {
        let e = g.find_edge(w[0], w[1]).map(|e| g[e]).unwrap_or(Edge::DependsOn);
        let verb = match e {
            Edge::DependsOn => "depends on",
            Edge::WaitsFor => "waits for",
            Edge::AppliedBy => "is applied by",
            Edge::AfterApply => continue,
        };
        steps.push(format!("{} {verb}", name(g[w[0]])));
    }
    if let Some(last) = path.last() {
        steps.push(name(g[*last]));
    }
    steps.dedup();
    steps
}

fn critical_path(model: &RepoModel, deps: &[Vec<usize>], layer_of: &[Option<usize>]) -> Vec<usize> {
    let Some(end) = (0..layer_of.len())
        .filter(|&i| layer_of[i].is_some())
        .max_by(|&a, &b| layer_of[a].cmp(&layer_of[b]).then_with(|| display_k(model, b).cmp(&display_k(model, a))))
    else {
        return vec![];
    };
    let mut path = vec![end];
    let mut cur = end;
    while let Some(next) = deps[cur]
        .iter()
        .copied()
        .filter(|&d| layer_of[d].is_some())
        .max_by(|&a, &b| layer_of[a].cmp(&layer_of[b]).then_with(|| display_k(model, b).cmp(&display_k(model, a))))
    {
        path.push(next);
        cur = next;
    }
    path.reverse();
    path
}
