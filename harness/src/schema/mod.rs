//! What the API server refuses before anything is applied: the structural schema of Flux's
//! CRDs (required fields, types, enums, patterns, lengths, the CEL rules that matter) and
//! Kubernetes' own name rules. Pure: one value in, the problems out, worded as the API
//! server words them, so `plan` (a finding at the field's line) and the simulated cluster
//! (a refused dry-run) say the same thing.
//!
//! Unknown fields are not problems here: the API server prunes them with a warning (field
//! validation defaults to `Warn`), which the `misplaced-field` rule reports.

mod flux;
pub mod names;
pub mod pod_security;

use serde_json::Value;

/// The type of a field, as its CRD's openAPIV3Schema declares it.
#[derive(Debug)]
pub enum T {
    Str,
    /// A string with limits: (min length, max length, pattern, pattern as the CRD writes it).
    StrOf(Option<usize>, Option<usize>, Option<fn(&str) -> bool>, &'static str),
    Bool,
    Int,
    /// A Go duration as Flux's CRDs constrain it (`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`).
    Duration,
    Enum(&'static [&'static str]),
    Obj(&'static [F]),
    Arr(&'static T),
    /// An object whose values all have one type (`map[string]string`).
    Map(&'static T),
    /// `x-kubernetes-preserve-unknown-fields` or `x-kubernetes-int-or-string`: anything.
    Any,
    IntOrStr,
}

/// One field of an object schema.
#[derive(Debug)]
pub struct F {
    pub name: &'static str,
    pub ty: T,
    pub required: bool,
}

/// The OpenAPI v3 form of a type (what `kubectl explain` reads).
pub fn openapi(t: &T) -> Value {
    use serde_json::json;
    match t {
        T::Str => json!({"type": "string"}),
        T::StrOf(min, max, _, pattern) => {
            let mut v = json!({"type": "string"});
            if let Some(m) = min {
                v["minLength"] = json!(m);
            }
            if let Some(m) = max {
                v["maxLength"] = json!(m);
            }
            if !pattern.is_empty() {
                v["pattern"] = json!(pattern);
            }
            v
        }
        T::Bool => json!({"type": "boolean"}),
        T::Int => json!({"type": "integer"}),
        T::Duration => json!({"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"}),
        T::Enum(values) => json!({"type": "string", "enum": values}),
        T::Obj(fields) => {
            let props: serde_json::Map<String, Value> =
                fields.iter().map(|f| (f.name.to_string(), openapi(&f.ty))).collect();
            let required: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.name).collect();
            let mut v = json!({"type": "object", "properties": props});
            if !required.is_empty() {
                v["required"] = json!(required);
            }
            v
        }
        T::Arr(item) => json!({"type": "array", "items": openapi(item)}),
        T::Map(value) => json!({"type": "object", "additionalProperties": openapi(value)}),
        T::Any => json!({"x-kubernetes-preserve-unknown-fields": true}),
        T::IntOrStr => json!({"x-kubernetes-int-or-string": true}),
    }
}

/// The OpenAPI v3 schema of a whole Flux object (spec as the CRD declares the fields
/// checked here), with the group-version-kind extension `kubectl explain` looks for.
pub fn flux_openapi(group: &str, version: &str, kind: &str) -> Option<Value> {
    use serde_json::json;
    let spec = flux::spec_schema(group, version, kind)?;
    Some(json!({
        "type": "object",
        "description": format!("{kind} is the Schema for the {}s API (Flux, as the harness's simulated cluster validates it).", kind.to_lowercase()),
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"type": "object", "description": "Standard object's metadata."},
            "spec": openapi(spec),
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
        "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}],
    }))
}

/// A field's place, as the API server prints it: `spec.dependsOn[0].name`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// One reason the API server refuses an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path segments from the object's root (`["spec", "dependsOn", "0", "name"]`).
    pub path: Vec<String>,
    /// `Required value`, `Invalid value: ...`, `Unsupported value: ...`.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.detail)
    }
}

/// The JSON type name the API server uses in "must be of type X".
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as the API server quotes it in an `Invalid value` message.
fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn wrong_type(path: &[String], v: &Value, want: &str, out: &mut Vec<Problem>) {
    let p = display_path(path);
    out.push(Problem {
        path: path.to_vec(),
        detail: format!("Invalid value: \"{}\": {p} in body must be of type {want}: {}", type_name(v), quoted(v)),
    });
}

pub fn is_duration(s: &str) -> bool {
    // ^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == f {
                return false;
            }
        }
        match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => i += 2,
            (Some(b's' | b'm' | b'h'), _) => i += 1,
            _ => return false,
        }
    }
    true
}

fn check(ty: &T, v: &Value, path: &mut Vec<String>, out: &mut Vec<Problem>) {
    match ty {
        T::Any => {}
        T::IntOrStr => {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                wrong_type(path, v, "integer or string", out);
            }
        }
        T::Str => {
            if !v.is_string() {
                wrong_type(path, v, "string", out);
            }
        }
        T::StrOf(min, max, pattern, written) => {
            let Some(s) = v.as_str() else { return wrong_type(path, v, "string", out) };
            let p = display_path(path);
            let n = s.chars().count();
            if let Some(min) = min
                && n < *min
            {
                out.push(Problem {
                    path: path.clone(),
                    detail: format!("Invalid value: {s:?}: {p} in body should be at least {min} chars long"),
                });
            } else if let Some(max) = max
                && n > *max
            {
                out.push(Problem { path: path.clone(), detail: format!("Too long: may not be more than {max} bytes") });
            } else if let Some(f) = pattern
                && !f(s)
            {
                out.push(Problem {
                    path: path.clone(),
                    detail: format!("Invalid value: {s:?}: {p} in body should match '{written}'"),
                });
            }
        }
        T::Bool => {
            if !v.is_boolean() {
                wrong_type(path, v, "boolean", out);
            }
        }
        T::Int => {
            if !(v.is_i64() || v.is_u64()) {
                wrong_type(path, v, "integer", out);
            }
        }
        T::Duration => match v.as_str() {
            None => wrong_type(path, v, "string", out),
            Some(s) if !is_duration(s) => {
                let p = display_path(path);
                out.push(Problem {
                    path: path.clone(),
                    detail: format!(
                        "Invalid value: {s:?}: {p} in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'"
                    ),
                });
            }
            Some(_) => {}
        },
        T::Enum(allowed) => match v.as_str() {
            None => wrong_type(path, v, "string", out),
            Some(s) if !allowed.contains(&s) => out.push(Problem {
                path: path.clone(),
                detail: format!(
                    "Unsupported value: {s:?}: supported values: {}",
                    allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
                ),
            }),
            Some(_) => {}
        },
        T::Arr(item) => {
            let Some(items) = v.as_array() else { return wrong_type(path, v, "array", out) };
            for (i, it) in items.iter().enumerate() {
                path.push(i.to_string());
                check(item, it, path, out);
                path.pop();
            }
        }
        T::Map(val) => {
            let Some(m) = v.as_object() else { return wrong_type(path, v, "object", out) };
            for (k, it) in m {
                path.push(k.clone());
                check(val, it, path, out);
                path.pop();
            }
        }
        T::Obj(fields) => {
            let Some(m) = v.as_object() else { return wrong_type(path, v, "object", out) };
            for f in fields.iter() {
                match m.get(f.name) {
                    // A null is an absent field to the API server's defaulting and validation.
                    None | Some(Value::Null) => {
                        if f.required {
                            path.push(f.name.into());
                            out.push(Problem { path: path.clone(), detail: "Required value".into() });
                            path.pop();
                        }
                    }
                    Some(x) => {
                        path.push(f.name.into());
                        check(&f.ty, x, path, out);
                        path.pop();
                    }
                }
            }
        }
    }
}

/// The problems the API server finds in a rendered object, in field order. Kinds without
/// a known schema are checked for their name only.
pub fn validate(v: &Value) -> Vec<Problem> {
    let mut out = vec![];
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = crate::object::split_api_version(api_version);
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    names::check_metadata(v, group, kind, &mut out);
    if let Some(spec) = flux::spec_schema(group, version, kind) {
        let mut path = vec!["spec".to_string()];
        match v.get("spec") {
            None | Some(Value::Null) => out.push(Problem { path, detail: "Required value".into() }),
            Some(s) => {
                check(spec, s, &mut path, &mut out);
                flux::rules(group, kind, s, &mut out);
            }
        }
    }
    out
}

/// The API server's refusal of an object, as `kubectl apply` and Flux's dry-run show it:
/// `Kustomization.kustomize.toolkit.fluxcd.io "apps" is invalid: [spec.prune: Required value, ...]`.
pub fn refusal(v: &Value, problems: &[Problem]) -> String {
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = crate::object::split_api_version(api_version).0;
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let list: Vec<String> = problems.iter().map(Problem::to_string).collect();
    if list.len() == 1 {
        format!("{gk} {name:?} is invalid: {}", list[0])
    } else {
        format!("{gk} {name:?} is invalid: [{}]", list.join(", "))
    }
}

#[cfg(test)]
mod tests;
