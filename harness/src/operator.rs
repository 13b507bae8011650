//! Flux Operator objects: `FluxInstance` (where the cluster syncs from) and `ResourceSet`
//! (templated objects with `<< inputs.x >>`), expanded where their inputs are static.
//! Pure.

use crate::error::Loc;
use crate::object::Object;
use serde_json::{Map, Value};

pub const GROUP: &str = "fluxcd.controlplane.io";

/// What a FluxInstance (or the flux-instance chart's `instance` values) syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    pub kind: String,
    pub url: Option<String>,
    pub path: String,
    pub origin: Loc,
}

fn sync_from(v: &Value, origin: &Loc) -> Option<Sync> {
    let path = v.get("path").and_then(Value::as_str)?;
    Some(Sync {
        kind: v.get("kind").and_then(Value::as_str).unwrap_or("GitRepository").to_string(),
        url: v.get("url").and_then(Value::as_str).map(str::to_string),
        path: path.trim().trim_start_matches("./").trim_end_matches('/').to_string(),
        origin: origin.clone(),
    })
}

/// The sync of a FluxInstance among `objects`, or of a HelmRelease of the flux-instance chart.
pub fn find_sync(objects: &[Object]) -> Option<Sync> {
    for o in objects {
        if o.group() == GROUP
            && o.kind() == "FluxInstance"
            && let Some(s) = o.value.pointer("/spec/sync").and_then(|v| sync_from(v, &o.origin))
        {
            return Some(s);
        }
        if o.kind() == "HelmRelease"
            && o.value.pointer("/spec/chart/spec/chart").and_then(Value::as_str) == Some("flux-instance")
            && let Some(s) = o.value.pointer("/spec/values/instance/sync").and_then(|v| sync_from(v, &o.origin))
        {
            return Some(s);
        }
    }
    None
}

/// The result of expanding a ResourceSet.
pub enum Expansion {
    Objects(Vec<Object>),
    /// Why it cannot be analysed offline.
    NotAnalysable(String),
}

fn template_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"<<-?\s*([^>]*?)\s*-?>>").unwrap())
}

fn render(v: &Value, inputs: &Map<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let mut err = None;
            let whole = template_re().find(s).is_some_and(|m| m.start() == 0 && m.end() == s.len());
            let out = template_re().replace_all(s, |c: &regex::Captures| {
                let expr = c[1].trim();
                match expr
                    .strip_prefix("inputs.")
                    .filter(|k| k.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.'))
                {
                    Some(key) => {
                        let mut cur = Value::Object(inputs.clone());
                        for seg in key.split('.') {
                            cur = cur.get(seg).cloned().unwrap_or(Value::Null);
                        }
                        if cur.is_null() {
                            err = Some(format!("input '{key}' is not set"));
                        }
                        crate::kustomize::transform::scalar_string(&cur)
                    }
                    None => {
                        err = Some(format!("template expression '<< {expr} >>' is not a plain input"));
                        String::new()
                    }
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            // A value that was only a template keeps the input's type (numbers, booleans).
            if whole
                && let Some(key) =
                    template_re().captures(s).and_then(|c| c[1].trim().strip_prefix("inputs.").map(str::to_string))
            {
                let mut cur = Value::Object(inputs.clone());
                for seg in key.split('.') {
                    cur = cur.get(seg).cloned().unwrap_or(Value::Null);
                }
                if !cur.is_string() {
                    return Ok(cur);
                }
            }
            Value::String(out.into_owned())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render(x, inputs)).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| Ok((k.clone(), render(x, inputs)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

/// Expands a ResourceSet with static `spec.inputs`: every resource for every input set.
pub fn expand_resource_set(rs: &Object) -> Expansion {
    let spec = rs.value.get("spec").cloned().unwrap_or(Value::Null);
    if spec.get("inputsFrom").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return Expansion::NotAnalysable(
            "its inputs come from ResourceSetInputProviders (inputsFrom), known only in the cluster".into(),
        );
    }
    if spec.get("resourcesTemplate").is_some() {
        return Expansion::NotAnalysable(
            "it uses resourcesTemplate (a text template), which is not expanded offline".into(),
        );
    }
    let inputs: Vec<Map<String, Value>> = match spec.get("inputs").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(|v| v.as_object().cloned()).collect(),
        None => vec![Map::new()],
    };
    let ns = rs.namespace().unwrap_or("default").to_string();
    let mut out = vec![];
    for input in &inputs {
        for r in spec.get("resources").and_then(Value::as_array).into_iter().flatten() {
            match render(r, input) {
                Ok(mut v) => {
                    if v.get("kind").and_then(Value::as_str).is_none() {
                        return Expansion::NotAnalysable("a templated resource has no kind".into());
                    }
                    // Objects without a namespace land in the ResourceSet's.
                    let md = crate::object::metadata_mut(&mut v);
                    md.entry("namespace").or_insert(Value::String(ns.clone()));
                    out.push(Object::new(v, rs.origin.clone()));
                }
                Err(e) => return Expansion::NotAnalysable(e),
            }
        }
    }
    Expansion::Objects(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_sets_expand_static_inputs() {
        let rs = Object::new(
            json!({"apiVersion":"fluxcd.controlplane.io/v1","kind":"ResourceSet","metadata":{"name":"apps","namespace":"flux-system"},
                "spec":{"inputs":[{"app":"a","replicas":2},{"app":"b","replicas":3}],
                "resources":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"<< inputs.app >>-cfg"},"data":{"n":"<< inputs.replicas >>"}}]}}),
            Loc::new("rs.yaml", 1),
        );
        let Expansion::Objects(objs) = expand_resource_set(&rs) else { panic!() };
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].name(), "b-cfg");
        assert_eq!(objs[1].namespace(), Some("flux-system"));
        assert_eq!(objs[0].value["data"]["n"], 2);
        let dynamic = Object::new(
            json!({"kind":"ResourceSet","spec":{"inputsFrom":[{"name":"prs"}],"resources":[]}}),
            Loc::new("rs.yaml", 1),
        );
        assert!(matches!(expand_resource_set(&dynamic), Expansion::NotAnalysable(_)));
        let fancy = Object::new(
            json!({"kind":"ResourceSet","spec":{"inputs":[{"a":"x"}],"resources":[{"kind":"ConfigMap","metadata":{"name":"<< inputs.a | slugify >>"}}]}}),
            Loc::new("rs.yaml", 1),
        );
        assert!(matches!(expand_resource_set(&fancy), Expansion::NotAnalysable(m) if m.contains("not a plain input")));
    }
}
