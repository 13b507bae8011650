//! `namespace-isolation`: who can reach whom, computed from the repo's NetworkPolicies and
//! CiliumNetworkPolicies, as a matrix between the environment namespaces, the other rows the
//! config names, `flux-system` and cluster DNS; then held to the intent: deny across
//! environments, allow within one, allow flux-system in and DNS out. Pure.
//!
//! Each row stands for a generic workload pod of that namespace (no labels of its own, so
//! policies selecting every pod apply to it and policies selecting named apps do not); DNS
//! is CoreDNS in kube-system (`k8s-app: kube-dns`), reached on 53/UDP. A connection is open
//! when the source's egress allows it and the destination's ingress allows it (Kubernetes:
//! a pod is isolated in a direction once any policy selects it for that direction, and then
//! only what some policy allows passes; Cilium's `*Deny` rules win over allows). `ipBlock`
//! and CIDR peers are taken not to match pod addresses.

use super::ports::{Ports, port_list};
use super::{Check, Status, SuiteName, SuiteResult, Table};
use crate::config::Isolation;
use crate::labels::label_selector_matches;
use crate::model::RepoModel;
use crate::object::Object;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A representative pod.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub label: String,
    pub namespace: String,
    pub pod_labels: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

/// A policy of either kind, read once.
struct Policy<'a> {
    obj: &'a Object,
    cilium: bool,
    clusterwide: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Row and column labels, in order.
    pub endpoints: Vec<String>,
    /// `cells[from][to]`: `allow`, `deny`, or the ports that pass (`53/UDP 53/TCP`).
    pub cells: Vec<Vec<String>>,
    pub policies: usize,
}

impl Matrix {
    /// The reviewed-snapshot form: a fixed-width table.
    pub fn to_table(&self) -> String {
        let w = self.endpoints.iter().map(|e| e.len()).max().unwrap_or(4).max(9);
        let cw = self
            .cells
            .iter()
            .flatten()
            .map(|c| c.len())
            .chain(self.endpoints.iter().map(|e| e.len()))
            .max()
            .unwrap_or(5);
        let mut out = format!("{:<w$}", "from \\ to");
        for e in &self.endpoints {
            out.push_str(&format!("  {e:<cw$}"));
        }
        out = out.trim_end().to_string() + "\n";
        for (i, e) in self.endpoints.iter().enumerate() {
            let mut line = format!("{e:<w$}");
            for c in &self.cells[i] {
                line.push_str(&format!("  {c:<cw$}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn namespace_labels(model: &RepoModel, ns: &str) -> Map<String, Value> {
    let mut labels = model
        .kustomizations
        .iter()
        .flat_map(|k| &k.objects)
        .find(|o| o.kind() == "Namespace" && o.group().is_empty() && o.name() == ns)
        .and_then(|o| o.value.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.into());
    labels
}

/// The environments: the config's list, else the namespaces labelled `environment` with
/// their own name (except `system`).
pub fn environments(model: &RepoModel, cfg: &Isolation) -> Vec<String> {
    if let Some(e) = &cfg.environments {
        return e.clone();
    }
    let mut out: Vec<String> = model
        .kustomizations
        .iter()
        .flat_map(|k| &k.objects)
        .filter(|o| o.kind() == "Namespace" && o.group().is_empty())
        .filter(|o| o.label("environment") == Some(o.name()) && o.name() != "system")
        .map(|o| o.name().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn endpoints(model: &RepoModel, cfg: &Isolation, envs: &[String]) -> Vec<Endpoint> {
    let generic = |ns: &str| Endpoint { label: ns.to_string(), namespace: ns.to_string(), pod_labels: Map::new() };
    let mut names: Vec<String> = envs.to_vec();
    let has_system = model
        .kustomizations
        .iter()
        .flat_map(|k| &k.objects)
        .any(|o| o.kind() == "Namespace" && o.group().is_empty() && o.name() == "system");
    if has_system && !names.iter().any(|n| n == "system") {
        names.push("system".into());
    }
    for n in &cfg.namespaces {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    if envs.is_empty() && cfg.namespaces.is_empty() {
        // No environments: every namespace that some policy of the repo governs.
        let mut governed: BTreeSet<String> = BTreeSet::new();
        for p in policies(model) {
            if let Some(ns) = p.obj.namespace() {
                governed.insert(ns.to_string());
            }
        }
        for n in governed {
            if !names.contains(&n) && n != "flux-system" {
                names.push(n);
            }
        }
    }
    let mut out: Vec<Endpoint> = names.iter().filter(|n| n.as_str() != "flux-system").map(|n| generic(n)).collect();
    out.push(generic("flux-system"));
    let mut dns = Map::new();
    dns.insert("k8s-app".into(), "kube-dns".into());
    out.push(Endpoint { label: "dns".into(), namespace: "kube-system".into(), pod_labels: dns });
    out
}

fn policies(model: &RepoModel) -> Vec<Policy<'_>> {
    let mut out = vec![];
    for o in model.kustomizations.iter().flat_map(|k| &k.objects) {
        match (o.group(), o.kind()) {
            ("networking.k8s.io", "NetworkPolicy") => out.push(Policy { obj: o, cilium: false, clusterwide: false }),
            ("cilium.io", "CiliumNetworkPolicy") => out.push(Policy { obj: o, cilium: true, clusterwide: false }),
            ("cilium.io", "CiliumClusterwideNetworkPolicy") => {
                out.push(Policy { obj: o, cilium: true, clusterwide: true })
            }
            _ => {}
        }
    }
    out
}

/// Does a Cilium endpoint selector match the endpoint? Cilium writes Kubernetes labels as
/// `k8s:key` sometimes; the namespace is the label `io.kubernetes.pod.namespace`, namespace
/// labels `io.cilium.k8s.namespace.labels.KEY`. `pin`: the policy's namespace, which an
/// `endpointSelector` always stays in, and a peer selector too unless it names a namespace
/// (by name or by its labels).
fn cilium_selects(
    sel: &Value,
    pin: Option<&str>,
    subject: bool,
    ep: &Endpoint,
    ns_labels: &Map<String, Value>,
) -> bool {
    let mut labels = ep.pod_labels.clone();
    labels.insert("io.kubernetes.pod.namespace".into(), ep.namespace.clone().into());
    for (k, v) in ns_labels {
        labels.insert(format!("io.cilium.k8s.namespace.labels.{k}"), v.clone());
    }
    let strip = |k: &str| k.strip_prefix("k8s:").or_else(|| k.strip_prefix("any:")).unwrap_or(k).to_string();
    let names_ns = |k: &str| k == "io.kubernetes.pod.namespace" || k.starts_with("io.cilium.k8s.namespace.labels.");
    let mut sel = sel.clone();
    let mut names_namespace = false;
    if let Some(ml) = sel.get_mut("matchLabels").and_then(Value::as_object_mut) {
        let fixed: Map<String, Value> = ml.iter().map(|(k, v)| (strip(k), v.clone())).collect();
        names_namespace |= fixed.keys().any(|k| names_ns(k));
        *ml = fixed;
    }
    if let Some(me) = sel.get_mut("matchExpressions").and_then(Value::as_array_mut) {
        for e in me.iter_mut() {
            if let Some(k) = e.get("key").and_then(Value::as_str).map(strip) {
                names_namespace |= names_ns(&k);
                e["key"] = k.into();
            }
        }
    }
    if let Some(pns) = pin
        && (subject || !names_namespace)
        && ep.namespace != pns
    {
        return false;
    }
    label_selector_matches(&sel, &labels)
}

/// Does a Kubernetes NetworkPolicy peer match the endpoint?
fn k8s_peer(peer: &Value, policy_ns: &str, ep: &Endpoint, ns_labels: &Map<String, Value>) -> bool {
    let ns_sel = peer.get("namespaceSelector");
    let pod_sel = peer.get("podSelector");
    if ns_sel.is_none() && pod_sel.is_none() {
        return false; // ipBlock
    }
    let ns_ok = match ns_sel {
        Some(s) => label_selector_matches(s, ns_labels),
        None => ep.namespace == policy_ns,
    };
    ns_ok && pod_sel.is_none_or(|s| label_selector_matches(s, &ep.pod_labels))
}

/// The fields of a Cilium rule that name its peers (L3); a rule with none applies to all.
const INGRESS_L3: [&str; 7] =
    ["fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "fromRequires", "fromGroups", "fromNodes"];
const EGRESS_L3: [&str; 9] =
    ["toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toFQDNs", "toServices", "toRequires", "toGroups", "toNodes"];

fn entities_match(rule: &Value, key: &str) -> bool {
    rule.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|e| e == "all" || e == "cluster")
}

struct Eval<'a> {
    model: &'a RepoModel,
    policies: Vec<Policy<'a>>,
    ns_labels: BTreeMap<String, Map<String, Value>>,
}

impl Eval<'_> {
    fn labels(&self, ns: &str) -> Map<String, Value> {
        self.ns_labels.get(ns).cloned().unwrap_or_else(|| namespace_labels(self.model, ns))
    }

    /// What the policies selecting `subject` let through in `dir` from/to `peer`; `None`
    /// when no policy isolates the subject in that direction.
    fn side(&self, dir: Dir, subject: &Endpoint, peer: &Endpoint) -> Option<Ports> {
        let (subj_labels, peer_labels) = (self.labels(&subject.namespace), self.labels(&peer.namespace));
        let mut isolated = false;
        let mut allowed = Ports::none();
        let mut denied = Ports::none();
        for p in &self.policies {
            let spec = p.obj.value.get("spec").cloned().unwrap_or(Value::Null);
            let specs: Vec<Value> = if p.cilium {
                let mut v: Vec<Value> = spec.as_object().map(|_| vec![spec.clone()]).unwrap_or_default();
                v.extend(p.obj.value.get("specs").and_then(Value::as_array).cloned().unwrap_or_default());
                v.into_iter().filter(|s| s.is_object()).collect()
            } else {
                vec![spec]
            };
            // A namespaced policy without a namespace lands in `default`.
            let pns = if p.clusterwide { None } else { Some(p.obj.namespace().unwrap_or("default")) };
            for spec in &specs {
                if p.cilium {
                    let Some(sel) = spec.get("endpointSelector").or(spec.get("nodeSelector")) else { continue };
                    if spec.get("nodeSelector").is_some() || !cilium_selects(sel, pns, true, subject, &subj_labels) {
                        continue;
                    }
                    let (key, deny_key, peers, ents, l3) = match dir {
                        Dir::Ingress => ("ingress", "ingressDeny", "fromEndpoints", "fromEntities", &INGRESS_L3[..]),
                        Dir::Egress => ("egress", "egressDeny", "toEndpoints", "toEntities", &EGRESS_L3[..]),
                    };
                    let matches = |rule: &Value| {
                        // No L3 peer at all: the rule (only ports) applies to every peer.
                        !l3.iter().any(|k| rule.get(*k).is_some())
                            || entities_match(rule, ents)
                            || rule.get(peers).and_then(Value::as_array).into_iter().flatten().any(|s| {
                                // `{}` in a namespaced policy: every endpoint of its namespace.
                                cilium_selects(s, pns, false, peer, &peer_labels)
                            })
                    };
                    if let Some(rules) = spec.get(key).and_then(Value::as_array) {
                        isolated = true;
                        for r in rules.iter().filter(|r| matches(r)) {
                            allowed = allowed.union(port_list(r.get("toPorts"), true));
                        }
                    }
                    if let Some(rules) = spec.get(deny_key).and_then(Value::as_array) {
                        isolated = true;
                        for r in rules.iter().filter(|r| matches(r)) {
                            denied = denied.union(port_list(r.get("toPorts"), true));
                        }
                    }
                } else {
                    let Some(pns) = pns else { continue };
                    if subject.namespace != pns {
                        continue;
                    }
                    let sel = spec.get("podSelector").cloned().unwrap_or(Value::Object(Map::new()));
                    if !label_selector_matches(&sel, &subject.pod_labels) {
                        continue;
                    }
                    let types: Vec<&str> = spec
                        .get("policyTypes")
                        .and_then(Value::as_array)
                        .filter(|a| !a.is_empty())
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_else(|| {
                            // Kubernetes' default: Ingress, plus Egress when there are egress rules.
                            let mut t = vec!["Ingress"];
                            if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
                                t.push("Egress");
                            }
                            t
                        });
                    let (ty, key, peers) = match dir {
                        Dir::Ingress => ("Ingress", "ingress", "from"),
                        Dir::Egress => ("Egress", "egress", "to"),
                    };
                    if !types.contains(&ty) {
                        continue;
                    }
                    isolated = true;
                    for r in spec.get(key).and_then(Value::as_array).into_iter().flatten() {
                        let peer_list = r.get(peers).and_then(Value::as_array);
                        let hit = match peer_list {
                            None => true,
                            Some(l) if l.is_empty() => true,
                            Some(l) => l.iter().any(|x| k8s_peer(x, pns, peer, &peer_labels)),
                        };
                        if hit {
                            allowed = allowed.union(port_list(r.get("ports"), false));
                        }
                    }
                }
            }
        }
        isolated.then(|| allowed.minus(&denied))
    }

    fn cell(&self, from: &Endpoint, to: &Endpoint) -> Ports {
        let egress = self.side(Dir::Egress, from, to).unwrap_or_else(Ports::all);
        let ingress = self.side(Dir::Ingress, to, from).unwrap_or_else(Ports::all);
        let mut p = egress.intersect(ingress);
        if to.label == "dns" {
            // DNS is only ever reached on 53.
            p = p.intersect(Ports::range("UDP", 53, 53).union(Ports::range("TCP", 53, 53)));
        }
        p
    }
}

pub fn matrix(model: &RepoModel, eps: &[Endpoint]) -> (Matrix, Vec<Vec<bool>>) {
    let eval = Eval {
        model,
        policies: policies(model),
        ns_labels: eps.iter().map(|e| (e.namespace.clone(), namespace_labels(model, &e.namespace))).collect(),
    };
    let mut cells = vec![];
    let mut open = vec![];
    for a in eps {
        let row: Vec<Ports> = eps.iter().map(|b| eval.cell(a, b)).collect();
        open.push(
            row.iter()
                .zip(eps)
                .map(|(p, b)| if b.label == "dns" { p.allows("UDP", 53) } else { p != &Ports::none() })
                .collect(),
        );
        cells.push(row.iter().map(Ports::cell).collect());
    }
    (Matrix { endpoints: eps.iter().map(|e| e.label.clone()).collect(), cells, policies: eval.policies.len() }, open)
}

/// Whether each endpoint's generic pod reaches each other's on `proto`/`port` (DNS: its
/// 53/UDP), by the repo's policies: what a probe on a real cluster must observe.
pub fn reachable(model: &RepoModel, eps: &[Endpoint], proto: &str, port: u32) -> Vec<Vec<bool>> {
    let eval = Eval {
        model,
        policies: policies(model),
        ns_labels: eps.iter().map(|e| (e.namespace.clone(), namespace_labels(model, &e.namespace))).collect(),
    };
    eps.iter()
        .map(|a| {
            eps.iter()
                .map(|b| {
                    let p = eval.cell(a, b);
                    if b.label == "dns" { p.allows("UDP", 53) } else { p.allows(proto, port) }
                })
                .collect()
        })
        .collect()
}

/// The intent checks: one per rule of the intent, failing with every pair that breaks it.
pub fn checks(envs: &[String], m: &Matrix, open: &[Vec<bool>]) -> Vec<Check> {
    if envs.is_empty() {
        return vec![Check::new(
            "intent",
            "environments isolated as declared",
            Status::Skip,
            "no environment namespaces: none is labelled `environment: <its own name>` and `.flux-harness.yaml` names none under isolation.environments; the matrix is still compared with its snapshot".into(),
        )];
    }
    let idx = |n: &str| m.endpoints.iter().position(|e| e == n);
    let (flux, dns) = (idx("flux-system"), idx("dns"));
    let mut across = vec![];
    let mut within = vec![];
    let mut flux_in = vec![];
    let mut dns_out = vec![];
    for a in envs {
        let Some(i) = idx(a) else { continue };
        for b in envs {
            let Some(j) = idx(b) else { continue };
            if a == b && !open[i][j] {
                within.push(format!("{a} → {a} is {}", m.cells[i][j]));
            } else if a != b && open[i][j] {
                across.push(format!("{a} → {b} is {}", m.cells[i][j]));
            }
        }
        if let Some(f) = flux
            && !open[f][i]
        {
            flux_in.push(format!("flux-system → {a} is {}", m.cells[f][i]));
        }
        if let Some(d) = dns
            && !open[i][d]
        {
            dns_out.push(format!("{a} → dns is {}", m.cells[i][d]));
        }
    }
    let n = envs.len();
    vec![
        Check::from_problems(
            "deny-across",
            "traffic between environments is denied",
            &across,
            format!("{} ordered pairs of {n} environments, all denied", n * n.saturating_sub(1)),
        ),
        Check::from_problems(
            "allow-within",
            "traffic inside each environment is allowed",
            &within,
            format!("{n} environments"),
        ),
        Check::from_problems(
            "allow-flux",
            "flux-system reaches every environment",
            &flux_in,
            format!("{n} environments"),
        ),
        Check::from_problems(
            "allow-dns",
            "every environment resolves DNS (53/UDP)",
            &dns_out,
            format!("{n} environments"),
        ),
    ]
}

pub fn run(model: &RepoModel, cfg: &Isolation) -> SuiteResult {
    let envs = environments(model, cfg);
    let eps = endpoints(model, cfg, &envs);
    let (m, open) = matrix(model, &eps);
    let mut table = Table {
        headers: std::iter::once("from \\ to".to_string()).chain(m.endpoints.iter().cloned()).collect(),
        rows: vec![],
    };
    for (i, e) in m.endpoints.iter().enumerate() {
        table.row(std::iter::once(e.clone()).chain(m.cells[i].iter().cloned()).collect());
    }
    let mut checks = checks(&envs, &m, &open);
    checks.insert(
        0,
        Check::new(
            "policies",
            "network policies read",
            if m.policies == 0 { Status::Skip } else { Status::Pass },
            if m.policies == 0 {
                "the repository has no NetworkPolicy nor CiliumNetworkPolicy: every namespace reaches every other"
                    .into()
            } else {
                format!("{} policies over {} namespaces and DNS", m.policies, m.endpoints.len() - 1)
            },
        ),
    );
    SuiteResult { suite: SuiteName::NamespaceIsolation, checks, table, snapshot: Some(m.to_table()) }
}
