//! Rule 7: HelmRelease settings that turn a transient bootstrap failure into a lasting one.
//! `helm-upgrade-force`, `helm-cleanup-on-fail`, `helm-uninstall-remediation`,
//! `helm-remediate-last-failure`, `helm-restart-annotation`, `helm-no-retries`.

use super::Ctx;
use crate::findings::{Finding, Severity};
use serde_json::Value;

const RESTART_KEYS: [&str; 10] = [
    "rollme",
    "restartedat",
    "kubectl.kubernetes.io/restartedat",
    "force-restart",
    "forcerestart",
    "redeploy",
    "redeploy-timestamp",
    "timestamp",
    "deploy-time",
    "deployed-at",
];

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || v.and_then(Value::as_str) == Some("true")
}

/// `path.key` of dummy restart annotations anywhere under an `*annotations*` map.
fn restart_annotations(v: &Value, path: &str, in_annotations: bool, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if in_annotations && RESTART_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                out.push(p.clone());
            }
            restart_annotations(child, &p, k.to_ascii_lowercase().contains("annotations"), out);
        }
    }
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for h in &ctx.model.helm_releases {
        let spec = h.spec.raw.get("spec").cloned().unwrap_or(Value::Null);
        let id = format!("HelmRelease {}/{}", h.spec.namespace, h.spec.name);
        let mut push = |rule: &str, msg: String, fix: &str| {
            // Common, deliberate choices that cost debugging, not a bootstrap: said, not flagged.
            let sev = match rule {
                "helm-cleanup-on-fail" | "helm-remediate-last-failure" => Severity::Info,
                _ => Severity::Warning,
            };
            out.push(ctx.finding(rule, sev, &h.spec.origin, Some(h.owner), msg).fix(fix));
        };
        if truthy(spec.pointer("/upgrade/force")) {
            push(
                "helm-upgrade-force",
                format!(
                    "{id} sets upgrade.force: true: every upgrade deletes and recreates the chart's objects (downtime, lost state, and a webhook or CNI chart removes itself mid-bootstrap)"
                ),
                "remove upgrade.force; fix the field that needed it instead",
            );
        }
        for at in ["/upgrade/cleanupOnFail", "/install/cleanupOnFail", "/rollback/cleanupOnFail"] {
            if truthy(spec.pointer(at)) {
                push(
                    "helm-cleanup-on-fail",
                    format!(
                        "{id} sets {}: true: a failed release deletes what it created, hiding the cause, and can delete objects other releases rely on",
                        at.trim_start_matches('/').replace('/', ".")
                    ),
                    "remove cleanupOnFail and rely on remediation retries",
                );
            }
        }
        if spec.pointer("/upgrade/remediation/strategy").and_then(Value::as_str) == Some("uninstall") {
            push(
                "helm-uninstall-remediation",
                format!(
                    "{id} sets upgrade.remediation.strategy: uninstall: a failed upgrade uninstalls the release (with its CRDs' objects and claims) instead of rolling back"
                ),
                "use the default strategy (rollback)",
            );
        }
        if truthy(spec.pointer("/install/remediation/remediateLastFailure"))
            || truthy(spec.pointer("/upgrade/remediation/remediateLastFailure"))
        {
            push(
                "helm-remediate-last-failure",
                format!(
                    "{id} sets remediation.remediateLastFailure: true: after the last retry the release is uninstalled or rolled back, leaving nothing to debug"
                ),
                "remove remediateLastFailure",
            );
        }
        let mut restart = vec![];
        restart_annotations(&h.spec.values, "values", false, &mut restart);
        if let Some(a) = h.spec.raw.pointer("/metadata/annotations") {
            restart_annotations(a, "metadata.annotations", true, &mut restart);
        }
        if !restart.is_empty() {
            push(
                "helm-restart-annotation",
                format!(
                    "{id} sets a dummy annotation to force restarts ({}): every change of it rolls every pod, and it hides which config change a restart needs",
                    restart.join(", ")
                ),
                "use a checksum of the config (or Reloader) so pods restart when their config changes",
            );
        }
        let missing: Vec<&str> =
            [("install", "/install/remediation/retries"), ("upgrade", "/upgrade/remediation/retries")]
                .iter()
                .filter(|(_, p)| spec.pointer(p).is_none())
                // `strategy: RetryOnFailure` retries at retryInterval for good: no remediation
                // count needed.
                .filter(|(n, _)| {
                    spec.pointer(&format!("/{n}/strategy/name")).and_then(Value::as_str) != Some("RetryOnFailure")
                })
                .map(|(n, _)| *n)
                .collect();
        if !missing.is_empty() {
            push(
                "helm-no-retries",
                format!(
                    "{id} has no {} remediation retries (default 0): one failed attempt during bootstrap (a webhook not serving yet, a CRD not there yet) leaves the release failed until its spec changes (flux2#5592)",
                    missing.join(" or ")
                ),
                "set install.remediation.retries and upgrade.remediation.retries (e.g. 3)",
            );
        }
    }
}
