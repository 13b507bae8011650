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

use super::{Ctx, Standing};
use crate::findings::{Finding, Severity};

/// The Kustomization that renders each ConfigMap and Secret, by (kind, namespace, name).
fn producers<'a>(ctx: &Ctx<'a>) -> std::collections::HashMap<(&'a str, String, &'a str), usize> {
    let mut m = std::collections::HashMap::new();
    for (k, node) in ctx.model.kustomizations.iter().enumerate() {
        for o in node.objects.iter().filter(|o| o.group().is_empty() && matches!(o.kind(), "ConfigMap" | "Secret")) {
            m.entry((o.kind(), crate::flux::namespace_of(o), o.name())).or_insert(k);
        }
    }
    m
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let m = ctx.model;
    let produced = producers(ctx);
    let producer = |kind: &str, ns: &str, name: &str| produced.get(&(kind, ns.to_string(), name)).copied();
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
            // Resolved once by the model (`HealthTarget`), which the simulator plays too.
            for t in &k.health {
                let crate::model::HealthTarget::Missing(id) = t else { continue };
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
            let Some(p) = producer(&f.kind, &spec.namespace, &f.name) else { continue };
            if p == i {
                // Flux reads the variables from the cluster before it applies anything, so
                // a Kustomization never gets to apply its own substituteFrom.
                out.push(
                    ctx.finding(
                        "input-order",
                        Severity::Error,
                        &spec.origin,
                        Some(i),
                        format!(
                            "Kustomization {} substitutes from {} {}, which it applies itself: Flux reads postBuild variables from the cluster before applying, so every build fails with `substitute from '{}/{}' error: ... not found` and the {} is never applied",
                            ctx.name(i), f.kind, f.name, f.kind, f.name, f.kind
                        ),
                    )
                    .fix(format!("move {} {} into a Kustomization that {} depends on, or mark it `optional: true`", f.kind, f.name, ctx.name(i))),
                );
                continue;
            }
            if let Standing::Met(_) = ctx.standing(i, &[(p, false)]) {
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
            let Some(p) = producer(kind, &h.spec.namespace, name) else { continue };
            if let Standing::Met(_) = ctx.standing(k, &[(p, true)]) {
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
            if waits && ctx.depends_on(p, k) {
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
