//! Rule 10 `namespace-missing`: every namespaced object's namespace is created by the same
//! Kustomization or one applied before it, or always exists.
//! Rule 16 `pss-missing`: a Namespace without `pod-security.kubernetes.io/enforce`.

use super::{ALWAYS_NAMESPACES, Ctx, Standing};
use crate::findings::{Finding, Severity};
use crate::object::is_known_cluster_scoped;
use std::collections::BTreeSet;

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    // Kinds the repo's own CRDs declare cluster-scoped.
    let cluster_crds: BTreeSet<(String, String)> = ctx
        .rendered()
        .flat_map(|(_, k)| k.objects.iter())
        .filter(|o| {
            o.kind() == "CustomResourceDefinition"
                && o.value.pointer("/spec/scope").and_then(|s| s.as_str()) == Some("Cluster")
        })
        .map(|o| {
            let s = |p: &str| o.value.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (s("/spec/group"), s("/spec/names/kind"))
        })
        .collect();
    // Namespaces a HelmRelease creates with install.createNamespace.
    let mut helm_created: Vec<(String, usize)> = vec![];
    for h in &ctx.model.helm_releases {
        if h.spec.raw.pointer("/spec/install/createNamespace").and_then(|v| v.as_bool()) == Some(true) {
            let ns = h.spec.raw.pointer("/spec/targetNamespace").and_then(|v| v.as_str()).unwrap_or(&h.spec.namespace);
            helm_created.push((ns.to_string(), h.owner));
        }
    }
    let mut reported = BTreeSet::new();
    for (i, k) in ctx.rendered() {
        for o in &k.objects {
            let Some(ns) = o.namespace() else { continue };
            if ALWAYS_NAMESPACES.contains(&ns)
                || is_known_cluster_scoped(o.group(), o.kind())
                || cluster_crds.contains(&(o.group().to_string(), o.kind().to_string()))
            {
                continue;
            }
            let mut creators: Vec<(usize, bool)> =
                ctx.namespaces.get(ns).into_iter().flatten().map(|(c, _)| (*c, true)).collect();
            creators.extend(helm_created.iter().filter(|(n, _)| n == ns).map(|(_, c)| (*c, true)));
            let standing = ctx.standing(i, &creators);
            if matches!(standing, Standing::Met(_)) || !reported.insert((i, ns.to_string())) {
                continue;
            }
            let f = match standing {
                Standing::Met(_) => continue,
                Standing::Missing => ctx
                    .finding(
                        "namespace-missing",
                        Severity::Error,
                        &o.origin,
                        Some(i),
                        format!(
                            "{} is in namespace {ns}, which no Kustomization of the repository creates and which does not exist in a new cluster: Flux fails with `{} namespace not specified` / `namespaces \"{ns}\" not found`",
                            o.display_id(),
                            o.display_id()
                        ),
                    )
                    .fix(format!("add a Namespace {ns} to {} or to a Kustomization it depends on", ctx.name(i))),
                Standing::Unordered(c) => ctx
                    .finding(
                        "namespace-missing",
                        Severity::Error,
                        &o.origin,
                        Some(i),
                        format!(
                            "{} is in namespace {ns}, which Kustomization {} creates, but {} does not depend on it: when {} is applied first, Flux fails with `namespaces \"{ns}\" not found`",
                            o.display_id(),
                            ctx.name(c),
                            ctx.name(i),
                            ctx.name(i)
                        ),
                    )
                    .fix(format!("add `- name: {}` to spec.dependsOn of {}", ctx.model.kustomizations[c].spec.name, ctx.name(i))),
            };
            out.push(f);
        }
    }
    for (i, k) in ctx.rendered() {
        for o in k.objects.iter().filter(|o| o.kind() == "Namespace" && o.group().is_empty()) {
            if o.label("pod-security.kubernetes.io/enforce").is_none() {
                out.push(
                    ctx.finding(
                        "pss-missing",
                        Severity::Warning,
                        &o.origin,
                        Some(i),
                        format!("Namespace {} has no `pod-security.kubernetes.io/enforce` label: the cluster default applies, so a pod that breaks the intended level is admitted here and refused in another environment", o.name()),
                    )
                    .fix("label it with pod-security.kubernetes.io/enforce: restricted (or baseline / privileged where needed)"),
                );
            }
        }
    }
}
