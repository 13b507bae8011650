//! Label selectors in their string form (`a=b,c!=d,e in (x,y),!f,g`), as used by
//! kustomize patch targets, Flux patch targets and kubectl.

use serde_json::{Map, Value};

pub fn selector_matches(selector: &str, labels: &Map<String, Value>) -> bool {
    split_terms(selector).iter().all(|t| term_matches(t.trim(), labels))
}

/// Splits on commas that are not inside `( )`.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

fn term_matches(t: &str, labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k.trim()).map(crate::kustomize::transform::scalar_string);
    if let Some(k) = t.strip_prefix('!') {
        return get(k).is_none();
    }
    if let Some((k, v)) = t.split_once("!=") {
        return get(k).as_deref() != Some(v.trim());
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return get(k).as_deref() == Some(v.trim());
    }
    for (op, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = t.split_once(op) {
            let vals: Vec<&str> =
                set.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(str::trim).collect();
            let hit = get(k).is_some_and(|v| vals.contains(&v.as_str()));
            return if negate { !hit } else { hit };
        }
    }
    get(t).is_some()
}

/// A Kubernetes `LabelSelector` object (`matchLabels` and `matchExpressions`).
pub fn label_selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).map(crate::kustomize::transform::scalar_string);
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if get(k) != Some(crate::kustomize::transform::scalar_string(v)) {
                return false;
            }
        }
    }
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(crate::kustomize::transform::scalar_string)
            .collect();
        let v = get(key);
        let ok = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => v.is_some_and(|v| values.contains(&v)),
            "NotIn" => v.is_none_or(|v| !values.contains(&v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_selectors() {
        let l = json!({"app":"web","tier":"front"}).as_object().unwrap().clone();
        assert!(selector_matches("app=web", &l));
        assert!(selector_matches("app==web,tier!=back", &l));
        assert!(selector_matches("tier in (front, mid),!missing", &l));
        assert!(!selector_matches("tier notin (front)", &l));
        assert!(!selector_matches("app=db", &l));
        assert!(selector_matches("app", &l));
    }

    #[test]
    fn object_selectors() {
        let l = json!({"kubernetes.io/metadata.name":"dev"}).as_object().unwrap().clone();
        assert!(label_selector_matches(&json!({"matchLabels":{"kubernetes.io/metadata.name":"dev"}}), &l));
        assert!(!label_selector_matches(&json!({"matchLabels":{"name":"dev"}}), &l));
        assert!(label_selector_matches(&json!({}), &l), "an empty selector matches everything");
        assert!(label_selector_matches(&json!({"matchExpressions":[{"key":"x","operator":"DoesNotExist"}]}), &l));
    }
}
