//! Rule 9 `cilium-policy-dns` / `cilium-policy-intra-namespace`: a CiliumNetworkPolicy that
//! selects every endpoint and restricts egress must still allow DNS and traffic inside the
//! namespace. `netpol-ipblock-apiserver`: under Cilium, a NetworkPolicy `ipBlock` does not
//! reach the API server (it is the `kube-apiserver` entity).
//! Rule 13 `netpol-selector`: a NetworkPolicy `namespaceSelector` that matches no namespace.

use super::{ALWAYS_NAMESPACES, Ctx};
use crate::findings::{Finding, Severity};
use crate::labels::label_selector_matches;
use serde_json::{Map, Value};

fn is_empty_selector(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .all(|(_, x)| x.as_object().is_some_and(|o| o.is_empty()) || x.as_array().is_some_and(|a| a.is_empty())),
        _ => false,
    }
}

fn has_port(rule: &Value, port: &str) -> bool {
    rule.get("toPorts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|tp| tp.get("ports").and_then(Value::as_array).into_iter().flatten())
        .any(|p| p.get("port").map(crate::kustomize::transform::scalar_string).as_deref() == Some(port))
}

fn allows_dns(rule: &Value) -> bool {
    let to_dns = rule.get("toEndpoints").and_then(Value::as_array).into_iter().flatten().any(|e| {
        e.get("matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| m.iter().any(|(k, v)| (k == "k8s-app" || k == "k8s:k8s-app") && v == "kube-dns"))
    });
    to_dns || has_port(rule, "53")
}

fn allows_own_namespace(rule: &Value) -> bool {
    rule.get("toEndpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| e.as_object().is_some_and(|m| m.is_empty()))
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let cilium = ctx.model.helm_releases.iter().any(|h| h.spec.chart == "cilium");
    let mut known: Vec<(String, Map<String, Value>)> =
        ctx.namespaces.keys().map(|n| (n.clone(), ctx.namespace_labels(n))).collect();
    for n in ALWAYS_NAMESPACES {
        if !ctx.namespaces.contains_key(n) {
            known.push((n.to_string(), ctx.namespace_labels(n)));
        }
    }
    for (i, k) in ctx.rendered() {
        for o in &k.objects {
            match (o.group(), o.kind()) {
                ("cilium.io", "CiliumNetworkPolicy") => {
                    let specs: Vec<&Value> = o
                        .value
                        .get("spec")
                        .into_iter()
                        .chain(o.value.get("specs").and_then(Value::as_array).into_iter().flatten())
                        .collect();
                    for spec in specs {
                        if !is_empty_selector(spec.get("endpointSelector")) {
                            continue;
                        }
                        let Some(egress) = spec.get("egress").and_then(Value::as_array).filter(|e| !e.is_empty())
                        else {
                            continue;
                        };
                        if !egress.iter().any(allows_dns) {
                            out.push(
                                ctx.finding(
                                    "cilium-policy-dns",
                                    Severity::Error,
                                    &o.origin,
                                    Some(i),
                                    format!("{} selects every endpoint of its namespace and restricts egress without a DNS rule: every name lookup in the namespace times out, and health checks that resolve Services fail", o.display_id()),
                                )
                                .fix("add an egress rule to kube-dns: `toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}]` with `toPorts` 53/UDP and 53/TCP"),
                            );
                        }
                        if !egress.iter().any(allows_own_namespace) {
                            out.push(
                                ctx.finding(
                                    "cilium-policy-intra-namespace",
                                    Severity::Warning,
                                    &o.origin,
                                    Some(i),
                                    format!("{} selects every endpoint of its namespace and restricts egress, but has no rule for traffic inside the namespace (`toEndpoints: [{{}}]`): pods of the namespace cannot reach each other", o.display_id()),
                                )
                                .fix("add an egress rule `- toEndpoints: [{}]`"),
                            );
                        }
                    }
                }
                ("networking.k8s.io", "NetworkPolicy") => {
                    let spec = o.value.get("spec").cloned().unwrap_or(Value::Null);
                    let mut peers: Vec<&Value> = vec![];
                    for (dir, field) in [("ingress", "from"), ("egress", "to")] {
                        for rule in spec.get(dir).and_then(Value::as_array).into_iter().flatten() {
                            peers.extend(rule.get(field).and_then(Value::as_array).into_iter().flatten());
                            if cilium && dir == "egress" {
                                let ip_block = rule
                                    .get("to")
                                    .and_then(Value::as_array)
                                    .into_iter()
                                    .flatten()
                                    .any(|p| p.get("ipBlock").is_some());
                                let api_ports =
                                    rule.get("ports").and_then(Value::as_array).into_iter().flatten().any(|p| {
                                        matches!(
                                            p.get("port").map(crate::kustomize::transform::scalar_string).as_deref(),
                                            Some("443" | "6443")
                                        )
                                    });
                                if ip_block && api_ports {
                                    out.push(
                                        ctx.finding(
                                            "netpol-ipblock-apiserver",
                                            Severity::Warning,
                                            &o.origin,
                                            Some(i),
                                            format!("{} allows egress to an ipBlock on port 443/6443, presumably the API server; under Cilium the API server is the reserved `kube-apiserver` entity and ipBlock rules do not match it, so API calls stay denied", o.display_id()),
                                        )
                                        .fix("use a CiliumNetworkPolicy with `toEntities: [kube-apiserver]`"),
                                    );
                                }
                            }
                        }
                    }
                    for peer in peers {
                        let Some(sel) = peer.get("namespaceSelector") else { continue };
                        if is_empty_selector(Some(sel)) || sel.as_object().is_some_and(|m| m.is_empty()) {
                            continue;
                        }
                        if known.iter().any(|(_, labels)| label_selector_matches(sel, labels)) {
                            continue;
                        }
                        out.push(
                            ctx.finding(
                                "netpol-selector",
                                Severity::Warning,
                                &o.origin,
                                Some(i),
                                format!(
                                    "{} has a namespaceSelector {} that matches no namespace: the repository's namespaces do not carry those labels, and namespaces it does not create (flux-system, kube-system ...) only carry kubernetes.io/metadata.name, so the rule allows nothing",
                                    o.display_id(),
                                    serde_json::to_string(sel).unwrap_or_default()
                                ),
                            )
                            .fix("select namespaces by `kubernetes.io/metadata.name: NAME`, or add the label to the Namespace objects"),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}
