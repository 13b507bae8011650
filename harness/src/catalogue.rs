//! What well-known charts install: CRDs (and who registers them), admission webhooks, CNI
//! behaviour. The built-in data is `harness/data/catalogue.yaml`; a repo extends or
//! overrides it in `.flux-harness.yaml`. See docs/catalogue.md for the format.

use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const BUILTIN: &str = include_str!("../data/catalogue.yaml");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    #[serde(default)]
    pub charts: BTreeMap<String, Chart>,
    /// API group → where users usually get it from (for messages).
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chart {
    #[serde(default)]
    pub crds: Vec<CrdGroup>,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    pub cni: Option<Cni>,
    /// Values paths that make the chart render a ServiceMonitor (besides any
    /// `serviceMonitor.enabled` key, which is always looked for).
    #[serde(default)]
    pub service_monitor_values: Vec<String>,
    /// The chart is the cluster's monitoring stack (provides monitoring.coreos.com).
    #[serde(default)]
    pub monitoring_provider: bool,
    pub install_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisteredBy {
    #[default]
    Chart,
    Operator,
    Template,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrdGroup {
    pub group: String,
    /// Kinds, or `["*"]` for any kind of the group.
    pub kinds: Vec<String>,
    #[serde(default)]
    pub registered_by: RegisteredBy,
    /// Values paths that turn the CRDs on (any true); without one set, `enabled_default`.
    #[serde(default)]
    pub enabled_by: Vec<String>,
    #[serde(default = "yes")]
    pub enabled_default: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    pub name: String,
    /// `chart`: the configuration is in the chart, registered at install, before its pods
    /// serve. `operator`: the running pods register it (Kyverno, Longhorn), so it is never
    /// registered-but-not-serving during the first install; it stays registered when they
    /// go down later.
    #[serde(default)]
    pub registered_by: RegisteredBy,
    pub failure_policy: FailurePolicy,
    pub failure_policy_from: Option<String>,
    pub ignore_when: Option<String>,
    pub enabled_by: Option<String>,
    pub intercepts: Intercepts,
    #[serde(default)]
    pub exempt: Exempt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intercepts {
    pub groups: Vec<String>,
    pub kinds: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exempt {
    /// The namespace the chart is installed in is never intercepted.
    #[serde(default)]
    pub release_namespace: bool,
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `key` or `key=value`: namespaces carrying it are not intercepted.
    pub namespace_label: Option<String>,
    /// A boolean values path (default true): the chart puts `namespace_label` on its own
    /// namespace itself.
    pub release_namespace_labelled_when: Option<String>,
    /// A boolean values path (default true): the chart exempts its own namespace from its
    /// webhooks (Kyverno's `config.excludeKyvernoNamespace`).
    pub release_namespace_when: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    pub role: CniRole,
    pub exclusive_value: Option<String>,
    #[serde(default)]
    pub exclusive_default: bool,
    pub priority_class_value: Option<String>,
    pub required_priority_class: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CniRole {
    #[default]
    Primary,
    Chained,
}

/// The value at a dotted path of Helm values (`a.b.c`).
pub fn value_at<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = values;
    for seg in path.split('.') {
        cur = cur.get(seg)?;
    }
    Some(cur)
}

pub fn value_bool(values: &Value, path: &str) -> Option<bool> {
    match value_at(values, path)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

impl CrdGroup {
    pub fn enabled(&self, values: &Value) -> bool {
        let set: Vec<bool> = self.enabled_by.iter().filter_map(|p| value_bool(values, p)).collect();
        if set.is_empty() { self.enabled_default } else { set.iter().any(|b| *b) }
    }
    pub fn provides(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kinds.iter().any(|k| k == "*" || k == kind)
    }
}

impl Webhook {
    /// The failure policy this release gets with its values; `None` when the webhook is
    /// switched off.
    pub fn effective_policy(&self, values: &Value) -> Option<FailurePolicy> {
        if let Some(p) = &self.enabled_by
            && value_bool(values, p) == Some(false)
        {
            return None;
        }
        if let Some(p) = &self.ignore_when
            && value_bool(values, p) == Some(true)
        {
            return Some(FailurePolicy::Ignore);
        }
        if let Some(p) = &self.failure_policy_from
            && let Some(v) = value_at(values, p).and_then(Value::as_str)
        {
            return Some(if v.eq_ignore_ascii_case("ignore") { FailurePolicy::Ignore } else { FailurePolicy::Fail });
        }
        Some(self.failure_policy)
    }

    /// Does it intercept Pod creation (and so can block its own pods, or the CNI's)?
    pub fn intercepts_pods(&self) -> bool {
        self.intercepts("", "Pod")
    }

    pub fn intercepts(&self, group: &str, kind: &str) -> bool {
        self.intercepts.groups.iter().any(|g| g == "*" || g == group)
            && self.intercepts.kinds.iter().any(|k| k == "*" || k == kind)
    }

    /// Is a namespace (its name and labels) exempt, for a release installed in `release_ns`
    /// with `values`?
    pub fn exempts(&self, release_ns: &str, values: &Value, ns: &str, labels: &serde_json::Map<String, Value>) -> bool {
        if self.exempt.release_namespace && ns == release_ns {
            return true;
        }
        if ns == release_ns
            && let Some(p) = &self.exempt.release_namespace_when
            && value_bool(values, p) != Some(false)
        {
            return true;
        }
        if ns == release_ns
            && let Some(p) = &self.exempt.release_namespace_labelled_when
            && value_bool(values, p) != Some(false)
        {
            return true;
        }
        if self.exempt.namespaces.iter().any(|n| n == ns) {
            return true;
        }
        match self.exempt.namespace_label.as_deref().map(|l| l.split_once('=').unwrap_or((l, ""))) {
            Some((k, "")) => labels.contains_key(k),
            Some((k, v)) => labels.get(k).map(crate::kustomize::transform::scalar_string).as_deref() == Some(v),
            None => false,
        }
    }
}

impl Catalogue {
    pub fn builtin() -> Catalogue {
        // Parsed once: plan, the rules and the simulator each start from it.
        static PARSED: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
        PARSED
            .get_or_init(|| parse("harness/data/catalogue.yaml", BUILTIN).expect("the built-in catalogue parses"))
            .clone()
    }

    /// Adds or replaces charts and groups.
    pub fn extend(&mut self, other: Catalogue) {
        self.charts.extend(other.charts);
        self.groups.extend(other.groups);
    }

    pub fn chart(&self, name: &str) -> Option<&Chart> {
        self.charts.get(name)
    }
}

pub fn parse(file: &str, text: &str) -> Result<Catalogue> {
    parse_typed(file, text)
}

/// Parses a typed YAML document; errors name the file, line and column.
pub fn parse_typed<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| {
        let mut err = Error::in_file(ErrorKind::BadObject, file, "");
        if let Some(l) = e.location() {
            err.line = Some(l.line() as u32);
            err.column = Some(l.column() as u32);
        }
        let msg = e.to_string();
        let msg = msg.lines().next().unwrap_or("").trim();
        let msg = msg.split_once(": ").filter(|(a, _)| a.starts_with("error")).map(|(_, b)| b).unwrap_or(msg);
        let msg = msg.split_once(": ").filter(|(a, _)| a.starts_with("line ")).map(|(_, b)| b).unwrap_or(msg);
        err.message = msg.to_string();
        err
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_builtin_catalogue_covers_the_required_charts() {
        let c = Catalogue::builtin();
        for chart in [
            "cilium",
            "linkerd-crds",
            "linkerd-control-plane",
            "linkerd2-cni",
            "linkerd-viz",
            "cert-manager",
            "kube-prometheus-stack",
            "longhorn",
            "velero",
            "gatekeeper",
            "kyverno",
            "trivy-operator",
            "cloudnative-pg",
            "rabbitmq-cluster-operator",
            "community-operator",
            "gateway-helm",
            "external-secrets",
            "ingress-nginx",
            "metallb",
        ] {
            assert!(c.chart(chart).is_some(), "{chart} missing");
        }
        assert!(c.groups.contains_key("gateway.networking.k8s.io"));
    }

    #[test]
    fn webhook_policy_follows_values() {
        let c = Catalogue::builtin();
        let gk = &c.chart("gatekeeper").unwrap().webhooks[0];
        assert_eq!(gk.effective_policy(&json!({})), Some(FailurePolicy::Ignore));
        assert_eq!(gk.effective_policy(&json!({"validatingWebhookFailurePolicy": "Fail"})), Some(FailurePolicy::Fail));
        let ky = &c.chart("kyverno").unwrap().webhooks[0];
        assert_eq!(
            ky.effective_policy(&json!({"features":{"forceFailurePolicyIgnore":{"enabled":true}}})),
            Some(FailurePolicy::Ignore)
        );
        let ing = &c.chart("ingress-nginx").unwrap().webhooks[0];
        assert_eq!(ing.effective_policy(&json!({"controller":{"admissionWebhooks":{"enabled":false}}})), None);
        let cm = &c.chart("cert-manager").unwrap().crds[0];
        assert!(!cm.enabled(&json!({})));
        assert!(cm.enabled(&json!({"crds":{"enabled":true}})));
        assert!(cm.enabled(&json!({"installCRDs":true})));
    }

    #[test]
    fn a_typo_in_a_catalogue_names_the_line() {
        let e = parse(".flux-harness.yaml", "charts:\n  x:\n    crdz: []\n").unwrap_err();
        assert_eq!(e.location().unwrap(), ".flux-harness.yaml:3:5");
        assert!(e.message.contains("crdz"), "{e}");
    }
}
