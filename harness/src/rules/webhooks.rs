//! Rule 5 `webhook-ordering`: a Kustomization that depends directly on one registering a
//! fail-closed webhook, without using any of its CRDs, while its objects go through that
//! webhook: the dependency only orders it behind the webhook and couples it to its uptime.
//! Rule 6 `webhook-self-block`: a fail-closed webhook that intercepts Pods and does not
//! exempt its own namespace (or kube-system): when its pods go, nothing brings them back.

use super::Ctx;
use crate::catalogue::{FailurePolicy, Webhook};
use crate::findings::{Finding, Severity};
use crate::object::Object;

/// Fail-closed webhooks of HelmRelease `j`, with the release namespace.
fn fail_closed<'a>(ctx: &Ctx<'a>, j: usize) -> Vec<(&'a Webhook, String)> {
    let h = &ctx.model.helm_releases[j].spec;
    let release_ns =
        h.raw.pointer("/spec/targetNamespace").and_then(|v| v.as_str()).unwrap_or(&h.namespace).to_string();
    ctx.chart_of(j)
        .map(|c| {
            c.webhooks
                .iter()
                .filter(|w| w.effective_policy(&h.values) == Some(FailurePolicy::Fail))
                .map(|w| (w, release_ns.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Does the object go through the webhook (intercepted kind, namespace not exempt)?
fn subject(ctx: &Ctx, w: &Webhook, release_ns: &str, values: &serde_json::Value, o: &Object) -> bool {
    if !w.intercepts(o.group(), o.kind()) {
        return false;
    }
    if o.kind() == "Namespace" && o.group().is_empty() {
        let mut labels = o.value.pointer("/metadata/labels").and_then(|l| l.as_object()).cloned().unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), o.name().into());
        return !w.exempts(release_ns, values, o.name(), &labels);
    }
    match o.namespace() {
        // Other cluster-scoped objects are never skipped by a namespaceSelector.
        None => true,
        Some(ns) => !w.exempts(release_ns, values, ns, &ctx.namespace_labels(ns)),
    }
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    // Rule 6, for the webhooks the repo defines itself.
    for h in crate::sim::repo_webhooks::find(ctx.model) {
        let ns = &h.service.0;
        if h.blocks_own_pods(&ctx.namespace_labels(ns)) {
            out.push(
                ctx.finding(
                    "webhook-self-block",
                    Severity::Error,
                    &h.origin,
                    Some(h.owner),
                    format!(
                        "webhook {} (failurePolicy Fail), served by pods in {ns}, intercepts Pod creation in {ns}, which its namespaceSelector does not exempt: once its pods are gone (restart, node loss, upgrade), the API server refuses to create new ones and nothing can recover (deadlock)",
                        h.name
                    ),
                )
                .fix(format!("add a namespaceSelector that excludes {ns} (e.g. on kubernetes.io/metadata.name), or make it failurePolicy: Ignore")),
            );
        }
    }
    // Rule 6.
    for (j, h) in ctx.model.helm_releases.iter().enumerate() {
        for (w, release_ns) in fail_closed(ctx, j) {
            if !w.intercepts_pods() {
                continue;
            }
            let values = &h.spec.values;
            let fix = match &w.exempt.namespace_label {
                Some(l) => format!("label the namespace with `{}`", l.replace('=', ": ")),
                None => "exempt the namespace in the webhook's namespaceSelector".to_string(),
            };
            if !w.exempts(&release_ns, values, &release_ns, &ctx.namespace_labels(&release_ns)) {
                let loc = ctx
                    .namespaces
                    .get(&release_ns)
                    .and_then(|v| v.first())
                    .map(|(_, o)| o.origin.clone())
                    .unwrap_or_else(|| h.spec.origin.clone());
                out.push(
                    ctx.finding(
                        "webhook-self-block",
                        Severity::Error,
                        &loc,
                        Some(h.owner),
                        format!(
                            "webhook {} of HelmRelease {}/{} (failurePolicy Fail) intercepts Pod creation in its own namespace {release_ns}, which its selectors do not exempt: once its pods are gone (restart, node loss, upgrade), the API server refuses to create new ones and nothing can recover (deadlock)",
                            w.name, h.spec.namespace, h.spec.name
                        ),
                    )
                    .fix(format!("{fix} ({release_ns})")),
                );
            }
            if !w.exempts(&release_ns, values, "kube-system", &ctx.namespace_labels("kube-system")) {
                let in_repo = ctx.namespaces.get("kube-system").and_then(|v| v.first()).map(|(_, o)| o.origin.clone());
                let (sev, loc, unless) = match in_repo {
                    Some(loc) => (Severity::Error, loc, String::new()),
                    None => (
                        Severity::Warning,
                        h.spec.origin.clone(),
                        " unless kube-system is labelled when the cluster is created (the repository cannot show it)"
                            .to_string(),
                    ),
                };
                out.push(
                    ctx.finding(
                        "webhook-self-block",
                        sev,
                        &loc,
                        Some(h.owner),
                        format!(
                            "webhook {} of HelmRelease {}/{} (failurePolicy Fail) intercepts Pod creation in kube-system{unless}: while the webhook has no ready endpoint, CNI and DNS pods cannot be (re)created, and the webhook's own pods may be waiting for them",
                            w.name, h.spec.namespace, h.spec.name
                        ),
                    )
                    .fix(format!("{fix} (kube-system)")),
                );
            }
        }
    }
    // Rule 5.
    for (i, k) in ctx.rendered() {
        for &p in &ctx.graph.deps[i] {
            let webhooks: Vec<(usize, &Webhook, String)> = ctx
                .model
                .helm_releases
                .iter()
                .enumerate()
                .filter(|(_, h)| h.owner == p)
                .flat_map(|(j, _)| fail_closed(ctx, j).into_iter().map(move |(w, ns)| (j, w, ns)))
                .collect();
            if webhooks.is_empty() {
                continue;
            }
            let provided = ctx.provided_by(p);
            let uses_crds = k
                .objects
                .iter()
                .any(|o| provided.iter().any(|((g, kd), _)| g == o.group() && (kd == o.kind() || kd == "*")));
            if uses_crds {
                continue;
            }
            let hit = webhooks.iter().find_map(|(j, w, ns)| {
                let values = &ctx.model.helm_releases[*j].spec.values;
                k.objects.iter().find(|o| subject(ctx, w, ns, values, o)).map(|o| (w, o))
            });
            if let Some((w, o)) = hit {
                out.push(
                    ctx.finding(
                        "webhook-ordering",
                        Severity::Warning,
                        &k.spec.origin,
                        Some(i),
                        format!(
                            "Kustomization {} depends on {} but uses none of its CRDs; its objects (first: {}) go through {}'s fail-closed webhook {}, so the dependency only orders it behind the webhook: it is applied the moment {} turns Ready, often before the webhook serves, and fails with `failed calling webhook \"{}\"`",
                            ctx.name(i),
                            ctx.name(p),
                            o.display_id(),
                            ctx.name(p),
                            w.name,
                            ctx.name(p),
                            w.name
                        ),
                    )
                    .fix(format!(
                        "drop the dependency on {} if it is only there for ordering, or move the objects to a namespace the webhook exempts",
                        ctx.model.kustomizations[p].spec.name
                    )),
                );
            }
        }
    }
}
