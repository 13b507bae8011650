//! Field-level differences between two JSON values, as dotted paths to changed leaves.

use serde::Serialize;
use serde_json::Value;

/// One changed leaf. `None`: the field is absent on that side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub base: Option<String>,
    pub head: Option<String>,
}

/// Values longer than this are cut: a diff line is read, not parsed.
const SHOWN: usize = 80;

/// What a Secret's value is shown as: never the value, in any form.
pub const MASK: &str = "(secret value)";

fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > SHOWN { format!("{}…", s.chars().take(SHOWN).collect::<String>()) } else { s }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// Is this path a value of a Secret (`data`, `stringData`)? Those are masked.
fn secret_value(path: &str) -> bool {
    ["data", "stringData"].iter().any(|f| path == *f || path.starts_with(&format!("{f}.")))
}

/// The changed leaves between `base` and `head` under `prefix`, in path order. With
/// `secret`, the values of `data`/`stringData` are masked.
pub fn diff(prefix: &str, base: &Value, head: &Value, secret: bool) -> Vec<FieldChange> {
    let mut out = vec![];
    walk(prefix, Some(base), Some(head), secret, &mut out);
    out
}

fn walk(path: &str, base: Option<&Value>, head: Option<&Value>, secret: bool, out: &mut Vec<FieldChange>) {
    if base == head {
        return;
    }
    // A map or list on one side and nothing on the other is walked too, so a new block
    // shows as its leaves (a Secret's keys are names; only their values are masked).
    let (bm, hm) = (base.and_then(Value::as_object), head.and_then(Value::as_object));
    let (bl, hl) = (base.and_then(Value::as_array), head.and_then(Value::as_array));
    let maps = (bm.is_some() || base.is_none()) && (hm.is_some() || head.is_none());
    let lists = (bl.is_some() || base.is_none()) && (hl.is_some() || head.is_none());
    let keys: std::collections::BTreeSet<&String> = bm.into_iter().chain(hm).flat_map(|m| m.keys()).collect();
    let len = bl.map_or(0, |l| l.len()).max(hl.map_or(0, |l| l.len()));
    if maps && !keys.is_empty() {
        for k in keys {
            walk(&join(path, k), bm.and_then(|m| m.get(k)), hm.and_then(|m| m.get(k)), secret, out);
        }
    } else if lists && len > 0 {
        for i in 0..len {
            walk(&format!("{path}[{i}]"), bl.and_then(|l| l.get(i)), hl.and_then(|l| l.get(i)), secret, out);
        }
    } else {
        let masked = secret && secret_value(path);
        let shown = |v: Option<&Value>| v.map(|v| if masked { MASK.to_string() } else { show(v) });
        out.push(FieldChange { path: path.to_string(), base: shown(base), head: shown(head) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_changed_added_and_removed_leaves() {
        let b = json!({"interval": "10m", "dependsOn": [{"name": "a"}], "wait": true});
        let h = json!({"interval": "5m", "dependsOn": [{"name": "a"}, {"name": "b"}]});
        let d = diff("spec", &b, &h, false);
        let paths: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["spec.dependsOn[1].name", "spec.interval", "spec.wait"]);
        assert_eq!(d[1].base.as_deref(), Some("10m"));
        assert_eq!(d[2].head, None);
    }

    #[test]
    fn secret_values_are_never_shown() {
        let b = json!({"data": {"password": "c2VjcmV0"}, "metadata": {"name": "x"}});
        let h = json!({"data": {"password": "bmV3"}, "metadata": {"name": "x", "labels": {"a": "b"}}});
        let d = diff("", &b, &h, true);
        let text = format!("{d:?}");
        assert!(!text.contains("c2VjcmV0") && !text.contains("bmV3"), "{text}");
        assert!(d.iter().any(|c| c.path == "data.password" && c.head.as_deref() == Some(MASK)));
        assert!(d.iter().any(|c| c.path == "metadata.labels.a" && c.head.as_deref() == Some("b")));
    }
}
