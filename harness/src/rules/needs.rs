//! What an object needs, found offline: the inputs a Kustomization or HelmRelease reads
//! (substituteFrom, valuesFrom), what its health checks wait for, the dependencies it
//! waits on. Each input has a producer (the Kustomization that renders it); when the
//! producer is not guaranteed to have applied it first (a dependency, or an ancestor that
//! applies both), the ordering is a race: a warning here, and an error (from the
//! simulation, `rules::predicted`) where the simulated bootstrap loses it.
//!
//! `health-check-missing`: a health check names an object nothing creates (Flux waits
//! until the timeout, then fails, on every reconcile).
//! `depends-on-suspended`: a dependency that is suspended never turns Ready.
//! `input-order`: a substituteFrom / valuesFrom ConfigMap or Secret produced by a
//! Kustomization that is not ordered before its reader.
//! `values-from-deadlock`: a HelmRelease reads values produced by a Kustomization that
//! depends on the HelmRelease's own Kustomization, which waits for it.

use super::Ctx;
use crate::findings::{Finding, Severity};

/// The Kustomization that renders a ConfigMap or Secret.
fn producer(ctx: &Ctx, kind: &str, ns: &str, name: &str) -> Option<usize> {
    ctx.model.kustomizations.iter().position(|k| {
        k.objects
            .iter()
            .any(|o| o.group().is_empty() && o.kind() == kind && o.name() == name && crate::flux::namespace_of(o) == ns)
    })
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let m = ctx.model;
    for (i, k) in m.kustomizations.iter().enumerate() {
        let spec = &k.spec;
        if spec.suspend {
            continue;
        }
        for d in &spec.depends_on {
            if let Some(j) = m.kustomization(d)
                && m.kustomizations[j].spec.suspend
            {
                out.push(
                    ctx.finding(
                        "depends-on-suspended",
                        Severity::Error,
                        &spec.origin,
                        Some(i),
                        format!(
                            "Kustomization {} depends on {}, which is suspended: a suspended Kustomization never reports Ready, so {} waits with `dependency '{}/{}' is not ready` forever",
                            ctx.name(i),
                            ctx.name(j),
                            ctx.name(i),
                            d.namespace,
                            d.name
                        ),
                    )
                    .fix(format!("resume {} (spec.suspend: false) or drop the dependency", ctx.name(j))),
                );
            }
        }
        if !spec.wait {
            for h in &spec.health_checks {
                let kind = h.get("kind").and_then(|v| v.as_str()).unwrap_or("");
                let name = h.get("name").and_then(|v| v.as_str()).unwrap_or("");
                let ns = h.get("namespace").and_then(|v| v.as_str());
                let r = |kd: &str| crate::flux::Ref {
                    kind: kd.into(),
                    namespace: ns.unwrap_or(&spec.namespace).into(),
                    name: name.into(),
                };
                let rendered = m.kustomizations.iter().any(|k| {
                    k.objects
                        .iter()
                        .any(|o| o.kind() == kind && o.name() == name && ns.is_none_or(|n| Some(n) == o.namespace()))
                });
                let flux = match kind {
                    "Kustomization" => m.kustomization(&r(kind)).is_some(),
                    "HelmRelease" => m.helm_release(&r(kind)).is_some(),
                    _ => false,
                };
                // Charts create objects the repo does not show (workloads, values-driven
                // issuers, CRDs): a namespaced object may come from any release in that
                // namespace, a cluster-scoped one from any release at all.
                let in_ns = |n: &str| {
                    m.helm_releases.iter().any(|h| {
                        h.spec
                            .raw
                            .pointer("/spec/targetNamespace")
                            .and_then(|v| v.as_str())
                            .unwrap_or(&h.spec.namespace)
                            == n
                    })
                };
                let chart = kind == "CustomResourceDefinition"
                    || match ns {
                        Some(n) => in_ns(n),
                        None => !m.helm_releases.is_empty() && !matches!(kind, "Kustomization" | "HelmRelease"),
                    };
                // Not rendered (unmapped source): its objects are unknown.
                let unknown = m
                    .kustomizations
                    .iter()
                    .any(|k| !matches!(k.origin, crate::model::Origin::Repo | crate::model::Origin::Mapped(_)));
                if rendered || flux || chart || unknown {
                    continue;
                }
                let id = match ns {
                    Some(n) => format!("{kind}/{n}/{name}"),
                    None => format!("{kind}/{name}"),
                };
                out.push(
                    ctx.finding(
                        "health-check-missing",
                        Severity::Error,
                        &spec.origin,
                        Some(i),
                        format!(
                            "Kustomization {} health-checks {id}, which nothing in the repository creates: Flux waits until its timeout and fails with `timeout waiting for: [{id} status: 'NotFound']` on every reconcile, and nothing that depends on it becomes Ready",
                            ctx.name(i)
                        ),
                    )
                    .fix("fix the health check's kind, name and namespace, or remove it"),
                );
            }
        }
        for f in spec.substitute_from.iter().filter(|f| !f.optional) {
            let Some(p) = producer(ctx, &f.kind, &spec.namespace, &f.name) else { continue };
            if p == i || ctx.before(i, p) {
                continue;
            }
            out.push(
                ctx.finding(
                    "input-order",
                    Severity::Warning,
                    &spec.origin,
                    Some(i),
                    format!(
                        "Kustomization {} substitutes from {} {}, which Kustomization {} applies, but nothing orders {} first: when {} builds before it exists, Flux fails with `substitute from '{}/{}' error: ... not found` and retries after retryInterval",
                        ctx.name(i), f.kind, f.name, ctx.name(p), ctx.name(p), ctx.name(i), f.kind, f.name
                    ),
                )
                .fix(format!("add `- name: {}` to spec.dependsOn of {}", m.kustomizations[p].spec.name, ctx.name(i))),
            );
        }
    }
    for h in &m.helm_releases {
        let k = h.owner;
        for v in h.spec.raw.pointer("/spec/valuesFrom").and_then(|v| v.as_array()).into_iter().flatten() {
            let (kind, name) = (v["kind"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or(""));
            if v["optional"].as_bool() == Some(true) {
                continue;
            }
            let Some(p) = producer(ctx, kind, &h.spec.namespace, name) else { continue };
            if p == k || ctx.before(k, p) {
                continue;
            }
            let hid = format!("{}/{}", h.spec.namespace, h.spec.name);
            let owner = &m.kustomizations[k].spec;
            // The owner waits for the release, the producer waits for the owner.
            let waits = owner.wait
                || owner.health_checks.iter().any(|c| {
                    c.get("kind").and_then(|v| v.as_str()) == Some("HelmRelease")
                        && c.get("name").and_then(|v| v.as_str()) == Some(h.spec.name.as_str())
                });
            if waits && ctx.deps[p].contains(&k) {
                out.push(
                    ctx.finding(
                        "values-from-deadlock",
                        Severity::Error,
                        &h.spec.origin,
                        Some(k),
                        format!(
                            "HelmRelease {hid} takes values from {kind} {name}, which Kustomization {} applies; {} depends on {}, which waits for {hid}: none of them can become Ready (deadlock)",
                            ctx.name(p), ctx.name(p), ctx.name(k)
                        ),
                    )
                    .fix(format!("move {kind} {name} into {} or a Kustomization it depends on", ctx.name(k))),
                );
            } else {
                out.push(
                    ctx.finding(
                        "input-order",
                        Severity::Warning,
                        &h.spec.origin,
                        Some(k),
                        format!(
                            "HelmRelease {hid} takes values from {kind} {name}, which Kustomization {} applies, but nothing orders it before {}: the install fails with `could not resolve {kind} chart values reference` until it exists",
                            ctx.name(p), ctx.name(k)
                        ),
                    )
                    .fix(format!("add `- name: {}` to spec.dependsOn of {}", m.kustomizations[p].spec.name, ctx.name(k))),
                );
            }
        }
    }
}
