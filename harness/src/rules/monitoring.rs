//! Rule 3 `monitoring-split`: PrometheusRule / ServiceMonitor / PodMonitor live only in a
//! `*-monitoring` Kustomization that depends on the monitoring stack and on what it monitors.
//! Rule 4 `helm-servicemonitor`: a chart told to render a ServiceMonitor
//! (`serviceMonitor.enabled: true` at any depth of the values).

use super::Ctx;
use crate::findings::{Finding, Severity};
use serde_json::Value;

const GROUP: &str = "monitoring.coreos.com";
const KINDS: [&str; 3] = ["PrometheusRule", "ServiceMonitor", "PodMonitor"];

/// The Kustomizations a `*-monitoring` one may watch: `x` for `x-monitoring`, else every
/// one whose name starts with `x-` (`netcorp-app` for `netcorp-monitoring`), by name, so
/// the verdict never depends on the order of documents or files.
fn watched(ctx: &Ctx, i: usize) -> Vec<usize> {
    let k = &ctx.model.kustomizations[i].spec;
    let Some(prefix) = k.name.strip_suffix("-monitoring") else { return vec![] };
    let same_ns = |j: &usize| ctx.model.kustomizations[*j].spec.namespace == k.namespace && *j != i;
    let all = 0..ctx.model.kustomizations.len();
    if let Some(exact) = all.clone().filter(same_ns).find(|&j| ctx.model.kustomizations[j].spec.name == prefix) {
        return vec![exact];
    }
    let mut v: Vec<usize> = all
        .filter(same_ns)
        .filter(|&j| {
            let n = &ctx.model.kustomizations[j].spec.name;
            n.starts_with(&format!("{prefix}-")) && !n.ends_with("-monitoring")
        })
        .collect();
    v.sort_by_key(|&j| ctx.model.kustomizations[j].spec.name.clone());
    v
}

fn monitoring_before(ctx: &Ctx, k: usize) -> bool {
    let producers: Vec<(usize, bool)> = ctx.providers(GROUP, "ServiceMonitor").iter().map(|p| (p.k, true)).collect();
    ctx.preinstalled(GROUP) || matches!(ctx.standing(k, &producers), super::Standing::Met(_))
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for (i, k) in ctx.rendered() {
        let Some(first) = k.objects.iter().find(|o| o.group() == GROUP && KINDS.contains(&o.kind())) else {
            continue;
        };
        let count = k.objects.iter().filter(|o| o.group() == GROUP && KINDS.contains(&o.kind())).count();
        if !k.spec.name.ends_with("-monitoring") {
            out.push(
                ctx.finding(
                    "monitoring-split",
                    Severity::Warning,
                    &first.origin,
                    Some(i),
                    format!(
                        "Kustomization {} applies {count} monitoring object(s) ({} first): it cannot become Ready until the monitoring stack's CRDs exist, and a monitoring outage blocks it",
                        ctx.name(i),
                        first.display_id()
                    ),
                )
                .fix(format!("move them to a `{}-monitoring` Kustomization that depends on the monitoring stack and on {}", k.spec.name, k.spec.name)),
            );
            continue;
        }
        let candidates = watched(ctx, i);
        // Ordered after any of them is taken as ordered after the one it watches.
        if let Some(&parent) = candidates.first()
            && !matches!(
                ctx.standing(i, &candidates.iter().map(|&c| (c, false)).collect::<Vec<_>>()),
                super::Standing::Met(_)
            )
        {
            out.push(
                ctx.finding(
                    "monitoring-split",
                    Severity::Warning,
                    &k.spec.origin,
                    Some(i),
                    format!(
                        "Kustomization {} monitors {} but does not depend on it: its monitoring objects may be applied before the workload they watch exists",
                        ctx.name(i),
                        ctx.name(parent)
                    ),
                )
                .fix(format!("add `- name: {}` to spec.dependsOn of {}", ctx.model.kustomizations[parent].spec.name, ctx.name(i))),
            );
        }
    }
    for (j, h) in ctx.model.helm_releases.iter().enumerate() {
        let mut paths = vec![];
        find_service_monitors(&h.spec.values, "", &mut paths);
        if let Some(chart) = ctx.chart_of(j) {
            for p in &chart.service_monitor_values {
                if crate::catalogue::value_bool(&h.spec.values, p) == Some(true) && !paths.iter().any(|x| x == p) {
                    paths.push(p.clone());
                }
            }
        }
        if paths.is_empty() {
            continue;
        }
        let ready = monitoring_before(ctx, h.owner);
        let (sev, why) = if ready {
            (
                Severity::Warning,
                "it couples the release to the monitoring stack: while that is missing or being upgraded, this install or upgrade fails",
            )
        } else {
            (
                Severity::Error,
                "nothing that provides the ServiceMonitor CRD is applied before it, so the install fails with `no matches for kind \"ServiceMonitor\"`",
            )
        };
        out.push(
            ctx.finding(
                "helm-servicemonitor",
                sev,
                &h.spec.origin,
                Some(h.owner),
                format!(
                    "HelmRelease {}/{} sets {} in its values: the chart renders a ServiceMonitor, and {why}",
                    h.spec.namespace,
                    h.spec.name,
                    paths.iter().map(|p| format!("{p}: true")).collect::<Vec<_>>().join(", ")
                ),
            )
            .fix(format!(
                "set it to false and put a ServiceMonitor in a `{}-monitoring` Kustomization instead",
                ctx.model.kustomizations[h.owner].spec.name
            )),
        );
    }
}

/// Paths (`a.serviceMonitor.enabled`) of every `serviceMonitor: {enabled: true}` (any case).
fn find_service_monitors(v: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if k.eq_ignore_ascii_case("servicemonitor")
                && let Some(e) = child.get("enabled")
                && (e == &Value::Bool(true) || e == "true")
            {
                out.push(format!("{p}.enabled"));
            }
            find_service_monitors(child, &p, out);
        }
    }
}
