//! Port sets of network policies: per protocol, sorted disjoint ranges, with the union,
//! intersection and difference the isolation matrix needs. Pure.

use serde_json::Value;
use std::collections::BTreeMap;

const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const MAX_PORT: u32 = 65535;

/// Ports a connection may use: per protocol, sorted disjoint inclusive ranges. Every port
/// of every protocol is "allow", none is "deny".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ports(BTreeMap<String, Vec<(u32, u32)>>);

impl Ports {
    pub fn none() -> Ports {
        Ports::default()
    }
    pub fn all() -> Ports {
        Ports(PROTOCOLS.iter().map(|p| (p.to_string(), vec![(1, MAX_PORT)])).collect())
    }
    pub fn range(proto: &str, lo: u32, hi: u32) -> Ports {
        Ports([(proto.to_string(), vec![(lo.max(1), hi.min(MAX_PORT))])].into_iter().collect()).normal()
    }
    /// Merges overlapping and touching ranges; drops empty protocols.
    fn normal(mut self) -> Ports {
        for r in self.0.values_mut() {
            r.retain(|(a, b)| a <= b);
            r.sort();
            let mut out: Vec<(u32, u32)> = vec![];
            for &(a, b) in r.iter() {
                match out.last_mut() {
                    Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                    _ => out.push((a, b)),
                }
            }
            *r = out;
        }
        self.0.retain(|_, r| !r.is_empty());
        self
    }
    pub fn union(mut self, o: Ports) -> Ports {
        for (p, r) in o.0 {
            self.0.entry(p).or_default().extend(r);
        }
        self.normal()
    }
    pub fn intersect(self, o: Ports) -> Ports {
        let mut out = Ports::none();
        for (p, ra) in &self.0 {
            let Some(rb) = o.0.get(p) else { continue };
            let v = out.0.entry(p.clone()).or_default();
            for &(a1, b1) in ra {
                for &(a2, b2) in rb {
                    v.push((a1.max(a2), b1.min(b2)));
                }
            }
        }
        out.normal()
    }
    pub fn minus(self, o: &Ports) -> Ports {
        let mut out = Ports::none();
        for (p, ra) in self.0 {
            let cut = o.0.get(&p).cloned().unwrap_or_default();
            let mut pieces = ra;
            for &(c1, c2) in &cut {
                pieces = pieces
                    .into_iter()
                    .flat_map(|(a, b)| {
                        let mut keep = vec![];
                        if a < c1 {
                            keep.push((a, b.min(c1 - 1)));
                        }
                        if b > c2 {
                            keep.push((a.max(c2 + 1), b));
                        }
                        keep
                    })
                    .collect();
            }
            out.0.insert(p, pieces);
        }
        out.normal()
    }
    pub fn allows(&self, proto: &str, port: u32) -> bool {
        self.0.get(proto).is_some_and(|r| r.iter().any(|&(a, b)| a <= port && port <= b))
    }
    pub fn cell(&self) -> String {
        if self == &Ports::all() {
            return "allow".into();
        }
        if self.0.is_empty() {
            return "deny".into();
        }
        let mut parts: Vec<(u32, String)> = vec![];
        for (p, r) in &self.0 {
            for &(a, b) in r {
                let text = match (a, b) {
                    (1, MAX_PORT) => format!("*/{p}"),
                    (a, b) if a == b => format!("{a}/{p}"),
                    (a, b) => format!("{a}-{b}/{p}"),
                };
                parts.push((a, text));
            }
        }
        parts.sort();
        parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(" ")
    }
}

/// The ports of a rule: a NetworkPolicy's `ports` or a Cilium rule's `toPorts[].ports`.
/// No list: every port. A named port (`dns`) could be any number: taken as every port of
/// its protocol, so the matrix never claims a port closed that may be open. In Cilium a
/// missing protocol is ANY and port 0 every port; in Kubernetes the protocol is TCP.
pub fn port_list(ports: Option<&Value>, cilium: bool) -> Ports {
    let list: Vec<&Value> = ports.and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let entries: Vec<&Value> = if cilium {
        list.iter().flat_map(|tp| tp.get("ports").and_then(Value::as_array).into_iter().flatten()).collect()
    } else {
        list
    };
    if entries.is_empty() {
        return Ports::all();
    }
    let mut out = Ports::none();
    for q in entries {
        let proto = q.get("protocol").and_then(Value::as_str).unwrap_or(if cilium { "ANY" } else { "TCP" });
        let protos: Vec<&str> = if proto == "ANY" { PROTOCOLS.to_vec() } else { vec![proto] };
        let port = q.get("port").map(crate::kustomize::transform::scalar_string);
        let (lo, hi) = match port.as_deref().map(str::parse::<u32>) {
            None | Some(Ok(0)) => (1, MAX_PORT),
            Some(Ok(n)) => {
                let end = q.get("endPort").and_then(Value::as_u64).map(|e| e as u32).unwrap_or(n);
                (n, end.max(n))
            }
            Some(Err(_)) => (1, MAX_PORT),
        };
        for p in protos {
            out = out.union(Ports::range(p, lo, hi));
        }
    }
    out
}
