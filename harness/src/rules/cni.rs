//! Rule 8: CNI chaining. `cni-exclusive`: with linkerd2-cni chained, Cilium must not own the
//! CNI directory exclusively (it rewrites the conflist and drops linkerd-cni).
//! `cni-order`: the Kustomization with linkerd2-cni must depend on the one with the primary
//! CNI. `cni-priority`: linkerd2-cni without `priorityClassName: system-node-critical`.

use super::Ctx;
use crate::catalogue::{CniRole, value_at, value_bool};
use crate::findings::{Finding, Severity};

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let mut primaries = vec![];
    let mut chained = vec![];
    for j in 0..ctx.model.helm_releases.len() {
        if let Some(cni) = ctx.chart_of(j).and_then(|c| c.cni.as_ref()) {
            match cni.role {
                CniRole::Primary => primaries.push((j, cni)),
                CniRole::Chained => chained.push((j, cni)),
            }
        }
    }
    if chained.is_empty() {
        return;
    }
    for &(p, cni) in &primaries {
        let h = &ctx.model.helm_releases[p];
        let exclusive = cni
            .exclusive_value
            .as_ref()
            .and_then(|path| value_bool(&h.spec.values, path))
            .unwrap_or(cni.exclusive_default);
        if exclusive {
            let chained_names: Vec<String> =
                chained.iter().map(|(c, _)| ctx.model.helm_releases[*c].spec.name.clone()).collect();
            out.push(
                ctx.finding(
                    "cni-exclusive",
                    Severity::Error,
                    &h.spec.origin,
                    Some(h.owner),
                    format!(
                        "HelmRelease {}/{} ({}) owns the CNI configuration exclusively ({} is {}), so it rewrites the conflist and removes the chained {}: meshed pods then start without the linkerd-cni redirect and fail (linkerd2#11597, cilium#26760)",
                        h.spec.namespace,
                        h.spec.name,
                        h.spec.chart,
                        cni.exclusive_value.as_deref().unwrap_or("exclusive"),
                        if value_at(&h.spec.values, cni.exclusive_value.as_deref().unwrap_or("")).is_some() { "true" } else { "true by default" },
                        chained_names.join(", ")
                    ),
                )
                .fix(format!("set `{}: false` in the values of {}", cni.exclusive_value.as_deref().unwrap_or("cni.exclusive"), h.spec.name)),
            );
        }
    }
    for &(c, cni) in &chained {
        let h = &ctx.model.helm_releases[c];
        for &(p, _) in &primaries {
            let pk = ctx.model.helm_releases[p].owner;
            if !matches!(ctx.standing(h.owner, &[(pk, true)]), super::Standing::Met(_)) {
                out.push(
                    ctx.finding(
                        "cni-order",
                        Severity::Error,
                        &ctx.model.kustomizations[h.owner].spec.origin,
                        Some(h.owner),
                        format!(
                            "Kustomization {} installs the chained CNI {} but does not depend on {}, which installs the primary CNI {}: linkerd-cni then installs into a node with no conflist to chain into, or is overwritten when the primary arrives",
                            ctx.name(h.owner),
                            h.spec.name,
                            ctx.name(pk),
                            ctx.model.helm_releases[p].spec.name
                        ),
                    )
                    .fix(format!("add `- name: {}` to spec.dependsOn of {}", ctx.model.kustomizations[pk].spec.name, ctx.name(h.owner))),
                );
            }
        }
        if let (Some(path), Some(required)) = (&cni.priority_class_value, &cni.required_priority_class) {
            let set = value_at(&h.spec.values, path).and_then(|v| v.as_str());
            if set != Some(required.as_str()) {
                out.push(
                    ctx.finding(
                        "cni-priority",
                        Severity::Warning,
                        &h.spec.origin,
                        Some(h.owner),
                        format!(
                            "HelmRelease {}/{} ({}) runs without `{path}: {required}` ({}): under node pressure its DaemonSet pods are evicted or not scheduled first, and new pods on that node start without the mesh redirect (linkerd2#11325)",
                            h.spec.namespace,
                            h.spec.name,
                            h.spec.chart,
                            set.map(|s| format!("it is '{s}'")).unwrap_or_else(|| "it is not set".into())
                        ),
                    )
                    .fix(format!("set `{path}: {required}` in the values")),
                );
            }
        }
    }
}
