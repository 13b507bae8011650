//! Strategic merge patches (as kustomize applies them with kyaml) and RFC 6902 JSON patches.

use serde_json::{Map, Value};

/// Which list fields of built-in kinds merge element-by-element, and by which keys. This
/// is the `patchMergeKey` of the Kubernetes OpenAPI schema for the fields real repos patch
/// (ports merge on port and protocol, protocol defaulting to TCP). Lists of custom
/// resources have no schema: kustomize replaces them whole.
fn schema_merge_key(parent: &str, field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => &["name"],
        "env" => &["name"],
        "volumes" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "imagePullSecrets" => &["name"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey"],
        "readinessGates" => &["conditionType"],
        "resourceClaims" | "schedulingGates" => &["name"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "ports" if parent == "container" => &["containerPort", "protocol"],
        "ports" if parent == "service" => &["port", "protocol"],
        _ => return None,
    })
}

/// The value of one merge key in a list element; a missing protocol is TCP.
fn key_value(v: &Value, key: &str) -> Option<Value> {
    match v.get(key) {
        Some(x) => Some(x.clone()),
        None if key == "protocol" => Some(Value::String("TCP".into())),
        None => None,
    }
}

/// The context of a map reached through `field` from a map of context `parent`: enough
/// to tell a container's `ports` from a Service's.
fn child_context(parent: &'static str, field: &str) -> &'static str {
    match (parent, field) {
        (_, "containers" | "initContainers" | "ephemeralContainers") => "container",
        ("service-root", "spec") => "service",
        _ => "",
    }
}

/// Applies a strategic merge patch to `dest`. `builtin` says the object is a built-in
/// Kubernetes kind (its lists have schema merge keys); `service` that it is a Service.
pub fn strategic_merge(dest: &mut Value, patch: &Value, builtin: bool, service: bool) {
    let ctx = if service { "service-root" } else { "" };
    match (dest.as_object_mut(), patch.as_object()) {
        (Some(d), Some(p)) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut p = p.clone();
                p.remove("$patch");
                *dest = Value::Object(p);
            } else {
                merge_map(d, p, builtin, ctx);
            }
        }
        _ => *dest = strip_directives(patch),
    }
}

/// Merges `patch` into `dest`, both values of `field` in a map of context `parent`.
fn merge_value(dest: &mut Value, patch: &Value, builtin: bool, parent: &'static str, field: &str) {
    if let (Some(d), Some(p)) = (dest.as_object_mut(), patch.as_object()) {
        if p.get("$patch").and_then(Value::as_str) == Some("replace") {
            let mut p = p.clone();
            p.remove("$patch");
            *dest = Value::Object(p);
        } else {
            merge_map(d, p, builtin, child_context(parent, field));
        }
    } else if let (Some(d), Some(p)) = (dest.as_array_mut(), patch.as_array()) {
        merge_list(d, p, builtin, parent, field);
    } else {
        *dest = strip_directives(patch);
    }
}

fn merge_map(d: &mut Map<String, Value>, p: &Map<String, Value>, builtin: bool, ctx: &'static str) {
    for (k, pv) in p {
        if k == "$patch" || k.starts_with("$setElementOrder") || k == "$retainKeys" {
            continue;
        }
        if pv.is_null() || pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            d.remove(k);
            continue;
        }
        match d.get_mut(k) {
            Some(dv) if !dv.is_null() => merge_value(dv, pv, builtin, ctx, k),
            _ => {
                d.insert(k.clone(), strip_directives(pv));
            }
        }
    }
}

/// Merges a keyed list the way kyaml does: the patch's elements first, in patch order
/// (each merged into its counterpart), then the original elements the patch did not name.
fn merge_list(d: &mut Vec<Value>, p: &[Value], builtin: bool, parent: &'static str, field: &str) {
    let keys = if builtin { schema_merge_key(parent, field) } else { None };
    let replace = p.iter().any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some(keys) = keys.filter(|_| !replace) else {
        *d = p.iter().filter(|v| v.get("$patch").is_none()).map(strip_directives).collect();
        return;
    };
    let elem_ctx = child_context(parent, field);
    let id = |v: &Value| -> Option<Vec<Value>> { keys.iter().map(|k| key_value(v, k)).collect() };
    let mut rest: Vec<Option<Value>> = std::mem::take(d).into_iter().map(Some).collect();
    let mut out = vec![];
    for pe in p {
        let Some(pid) = id(pe) else {
            out.push(strip_directives(pe));
            continue;
        };
        let pos = rest.iter().position(|de| de.as_ref().is_some_and(|de| id(de).as_ref() == Some(&pid)));
        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => rest[i] = None,
            (None, true) => {}
            (Some(i), false) => {
                let mut merged = rest[i].take().unwrap();
                if let (Some(dm), Some(pm)) = (merged.as_object_mut(), pe.as_object()) {
                    // Key fields identify the element; a defaulted one is not written.
                    let mut pm = pm.clone();
                    for k in keys.iter().skip(1) {
                        pm.remove(*k);
                    }
                    merge_map(dm, &pm, builtin, elem_ctx);
                }
                out.push(merged);
            }
            (None, false) => out.push(strip_directives(pe)),
        }
    }
    out.extend(rest.into_iter().flatten());
    *d = out;
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Applies an RFC 6902 patch. Errors name the failing operation.
pub fn json_patch(dest: &mut Value, ops: &[Value]) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        let kind = op.get("op").and_then(Value::as_str).ok_or_else(|| format!("operation {i} has no 'op'"))?;
        let path = op.get("path").and_then(Value::as_str).ok_or_else(|| format!("operation {i} has no 'path'"))?;
        let ctx = |e: String| format!("operation {i} ({kind} {path}): {e}");
        match kind {
            "add" => add(dest, path, op.get("value").cloned().unwrap_or(Value::Null)).map_err(ctx)?,
            "remove" => {
                remove(dest, path).map_err(ctx)?;
            }
            "replace" => {
                remove(dest, path).map_err(ctx)?;
                add(dest, path, op.get("value").cloned().unwrap_or(Value::Null)).map_err(ctx)?;
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).ok_or_else(|| ctx("no 'from'".into()))?;
                let v = if kind == "move" {
                    remove(dest, from).map_err(ctx)?
                } else {
                    dest.pointer(from).cloned().ok_or_else(|| ctx(format!("'{from}' does not exist")))?
                };
                add(dest, path, v).map_err(ctx)?;
            }
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                if dest.pointer(path) != Some(&want) {
                    return Err(ctx("test failed".into()));
                }
            }
            other => return Err(format!("operation {i}: unknown op '{other}'")),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_parent(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be the target".into());
    }
    let i = path.rfind('/').ok_or_else(|| format!("'{path}' is not a JSON pointer"))?;
    Ok((&path[..i], unescape(&path[i + 1..])))
}

/// `add` creates missing parent objects, as kustomize's JSON patch does
/// (`EnsurePathExistsOnAdd`).
fn add(dest: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_parent(path)?;
    ensure_path(dest, parent)?;
    let target = dest.pointer_mut(parent).ok_or_else(|| format!("'{parent}' does not exist"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let idx: usize = last.parse().map_err(|_| format!("'{last}' is not an array index"))?;
            if idx > a.len() {
                return Err(format!("index {idx} is out of range"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("'{parent}' is not an object or array")),
    }
}

fn ensure_path(dest: &mut Value, pointer: &str) -> Result<(), String> {
    let mut cur = dest;
    for token in pointer.split('/').skip(1) {
        let token = unescape(token);
        cur = match cur {
            Value::Object(m) => m.entry(token).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => {
                let i: usize = token.parse().map_err(|_| format!("'{token}' is not an array index"))?;
                a.get_mut(i).ok_or_else(|| format!("index {i} is out of range"))?
            }
            _ => return Err(format!("'{pointer}' goes through a scalar")),
        };
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
    }
    Ok(())
}

fn remove(dest: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_parent(path)?;
    let target = dest.pointer_mut(parent).ok_or_else(|| format!("'{parent}' does not exist"))?;
    match target {
        Value::Object(m) => m.remove(&last).ok_or_else(|| format!("'{path}' does not exist")),
        Value::Array(a) => {
            let idx: usize = last.parse().map_err(|_| format!("'{last}' is not an array index"))?;
            if idx >= a.len() {
                return Err(format!("index {idx} is out of range"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("'{parent}' is not an object or array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut d = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"a","image":"x","env":[{"name":"L","value":"info"},{"name":"K","value":"1"}]},
            {"name":"b","image":"y"}]}}}});
        let p = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"a","env":[{"name":"L","value":"debug"}]}]}}}});
        strategic_merge(&mut d, &p, true, false);
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "x");
        assert_eq!(c[0]["env"], json!([{"name":"L","value":"debug"},{"name":"K","value":"1"}]));
    }

    #[test]
    fn directives_delete_and_replace() {
        let mut d = json!({"a":{"b":1,"c":2},"volumes":[{"name":"x"},{"name":"y"}],"m":{"k":1}});
        let p = json!({"a":{"b":null},"volumes":[{"name":"x","$patch":"delete"}],"m":{"$patch":"replace","z":2}});
        strategic_merge(&mut d, &p, true, false);
        assert_eq!(d, json!({"a":{"c":2},"volumes":[{"name":"y"}],"m":{"z":2}}));
    }

    #[test]
    fn lists_of_custom_resources_are_replaced() {
        let mut d = json!({"spec":{"values":{"envs":[{"name":"A"},{"name":"B"}]}}});
        strategic_merge(&mut d, &json!({"spec":{"values":{"envs":[{"name":"B","v":1}]}}}), false, false);
        assert_eq!(d["spec"]["values"]["envs"], json!([{"name":"B","v":1}]));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a":[1,2],"b":{"c":1}});
        json_patch(
            &mut d,
            &[
                json!({"op":"add","path":"/a/-","value":3}),
                json!({"op":"replace","path":"/b/c","value":2}),
                json!({"op":"remove","path":"/a/0"}),
            ],
        )
        .unwrap();
        assert_eq!(d, json!({"a":[2,3],"b":{"c":2}}));
        let err = json_patch(&mut d, &[json!({"op":"remove","path":"/nope"})]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
