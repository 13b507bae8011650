//! Rule 1 `crd-dependency` / `unknown-kind`: an object of a custom kind must be applied by
//! a Kustomization that depends on whoever provides the kind.
//! Rule 2 `provider-not-ready`: a Kustomization whose HelmReleases provide CRDs to its
//! dependents must wait for them.
//! `chart-unknown`: a chart the catalogue does not describe (info: the rules are blind to it).

use super::{Ctx, Provider, Standing, Via};
use crate::catalogue::RegisteredBy;
use crate::findings::{Finding, Severity};
use std::collections::BTreeSet;

fn via_text(ctx: &Ctx, p: &Provider) -> String {
    match &p.via {
        Via::Crd(loc) => format!("its CustomResourceDefinition at {loc}"),
        Via::Chart { hr, registered_by } => {
            let h = &ctx.model.helm_releases[*hr].spec;
            let who = match registered_by {
                RegisteredBy::Operator => "registered at run time by the operator of",
                _ => "installed by",
            };
            format!("CRD {who} HelmRelease {}/{} (chart {})", h.namespace, h.name, h.chart)
        }
        Via::Template(loc) => format!("created by Gatekeeper from the ConstraintTemplate at {loc}"),
    }
}

/// Kustomizations that apply remote resources (URLs): what those provide is unknown offline.
fn with_remote_resources(ctx: &Ctx) -> Vec<usize> {
    let kids: BTreeSet<&str> = ctx
        .model
        .findings
        .iter()
        .filter(|f| f.rule == "remote-resource")
        .filter_map(|f| f.kustomization.as_deref())
        .collect();
    (0..ctx.model.kustomizations.len())
        .filter(|&j| {
            let s = &ctx.model.kustomizations[j].spec;
            kids.contains(format!("{}/{}", s.namespace, s.name).as_str())
        })
        .collect()
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let mut reported: BTreeSet<(usize, String, String)> = BTreeSet::new();
    let remote = with_remote_resources(ctx);
    // (provider K, dependent K, kind) pairs that need the provider to wait.
    let mut needs_wait: Vec<(usize, usize, String, usize)> = vec![];
    for (i, k) in ctx.rendered() {
        for o in &k.objects {
            let (group, kind) = (o.group(), o.kind());
            if crate::builtin::find(group, kind).is_some()
                || group.ends_with(".toolkit.fluxcd.io")
                || ctx.preinstalled(group)
            {
                continue;
            }
            let providers = ctx.providers(group, kind);
            if providers.is_empty() {
                // A remote resource applied first may well be the CRD: unknown, not wrong.
                let remote_first: Vec<(usize, bool)> = remote.iter().map(|&r| (r, true)).collect();
                if let Standing::Met(j) = ctx.standing(i, &remote_first) {
                    let r = remote[j];
                    if reported.insert((i, group.into(), kind.into())) {
                        out.push(ctx.finding(
                            "unknown-kind",
                            Severity::Info,
                            &o.origin,
                            Some(i),
                            format!(
                                "{} is a {kind} ({group}): no CRD in the repository provides it, but Kustomization {}, applied before it, applies remote resources, which may; what they hold is not known offline, so its ordering is not checked",
                                o.display_id(),
                                ctx.name(r)
                            ),
                        ));
                    }
                    continue;
                }
                if reported.insert((i, group.into(), kind.into())) {
                    let hint = ctx
                        .cat
                        .groups
                        .get(group)
                        .map(|h| format!(" ({group} usually comes from {h})"))
                        .unwrap_or_default();
                    out.push(
                        ctx.finding(
                            "unknown-kind",
                            Severity::Warning,
                            &o.origin,
                            Some(i),
                            format!(
                                "{} is a {kind} ({group}), which no CRD in the repository, no chart of the catalogue and no pre-installed group provides{hint}; its ordering cannot be checked",
                                o.display_id()
                            ),
                        )
                        .fix("add the CRDs to the repo, describe the chart that installs them in .flux-harness.yaml, or list the group under preinstalledCRDs"),
                    );
                }
                continue;
            }
            // A CRD rendered by the same Kustomization is applied (and waited for) first.
            let producers: Vec<(usize, bool)> = providers.iter().map(|p| (p.k, matches!(p.via, Via::Crd(_)))).collect();
            if let Standing::Met(j) = ctx.standing(i, &producers) {
                let p = providers[j];
                if p.k != i
                    && let Via::Chart { hr, .. } = p.via
                {
                    needs_wait.push((p.k, i, kind.to_string(), hr));
                }
                continue;
            }
            if !reported.insert((i, group.into(), kind.into())) {
                continue;
            }
            let p = providers[0];
            let flux_err = format!(
                "{} dry-run failed: no matches for kind \"{kind}\" in version \"{}\"",
                o.display_id(),
                o.api_version()
            );
            let f = if p.k == i {
                ctx.finding(
                    "crd-dependency",
                    Severity::Error,
                    &o.origin,
                    Some(i),
                    format!(
                        "{} is a {kind}, whose CRD comes from this same Kustomization {} ({}); Flux dry-runs every object before that CRD exists and fails: {flux_err}",
                        o.display_id(),
                        ctx.name(i),
                        via_text(ctx, p)
                    ),
                )
                .fix(format!("move the {kind} objects to a Kustomization with `dependsOn: [{{name: {}}}]`, and give {} `wait: true`", ctx.model.kustomizations[i].spec.name, ctx.name(i)))
            } else {
                ctx.finding(
                    "crd-dependency",
                    Severity::Error,
                    &o.origin,
                    Some(i),
                    format!(
                        "{} uses kind {kind} ({group}), provided by Kustomization {} ({}), but {} does not depend on it; Flux fails with: {flux_err}",
                        o.display_id(),
                        ctx.name(p.k),
                        via_text(ctx, p),
                        ctx.name(i)
                    ),
                )
                .fix(format!("add `- name: {}` to spec.dependsOn of {} ({})", ctx.model.kustomizations[p.k].spec.name, ctx.name(i), k.spec.origin))
            };
            out.push(f);
        }
    }
    // Rule 2: providers that do not wait for the charts whose CRDs their dependents use.
    let mut seen = BTreeSet::new();
    for (p, dependent, kind, hr) in needs_wait {
        let pk = &ctx.model.kustomizations[p].spec;
        let h = &ctx.model.helm_releases[hr].spec;
        let checked = pk.wait
            || pk.health_checks.iter().any(|c| {
                c.get("kind").and_then(|v| v.as_str()) == Some("HelmRelease")
                    && c.get("name").and_then(|v| v.as_str()) == Some(h.name.as_str())
                    && c.get("namespace").and_then(|v| v.as_str()).unwrap_or(&pk.namespace) == h.namespace
            });
        if checked || !seen.insert((p, hr)) {
            continue;
        }
        out.push(
            ctx.finding(
                "provider-not-ready",
                Severity::Error,
                &pk.origin,
                Some(p),
                format!(
                    "Kustomization {} provides {kind} (chart {} of HelmRelease {}/{}) to {}, but has neither `wait: true` nor a health check on that HelmRelease: it turns Ready as soon as the HelmRelease object is applied, before the chart's CRDs exist, and its dependents race the install (kustomize-controller#601)",
                    ctx.name(p),
                    h.chart,
                    h.namespace,
                    h.name,
                    ctx.name(dependent)
                ),
            )
            .fix(format!("set `wait: true` on {} (or add a healthCheck on HelmRelease {}/{})", ctx.name(p), h.namespace, h.name)),
        );
    }
    // Charts the catalogue does not describe.
    let mut charts = BTreeSet::new();
    for (j, h) in ctx.model.helm_releases.iter().enumerate() {
        if ctx.chart_of(j).is_none() && charts.insert(h.spec.chart.clone()) {
            out.push(
                ctx.finding(
                    "chart-unknown",
                    Severity::Info,
                    &h.spec.origin,
                    Some(h.owner),
                    format!(
                        "chart {} (HelmRelease {}/{}) is not in the catalogue: the CRDs, webhooks and CNI behaviour it brings are unknown, so the CRD, webhook and CNI rules cannot check it",
                        h.spec.chart, h.spec.namespace, h.spec.name
                    ),
                )
                .fix("describe the chart under catalogue.charts in .flux-harness.yaml (see docs/catalogue.md)"),
            );
        }
    }
}
