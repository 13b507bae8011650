//! kustomize `replacements`: copy a field of one object into fields of others. Field paths
//! are dotted (`spec.template.spec.containers.[name=app].image`); `[key=value]` selects a
//! list element, a number an index. Options: `delimiter` + `index` pick or replace one part
//! of a string, `create` makes missing maps.

use serde_json::{Map, Value};

pub fn parse_path(p: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                depth -= 1;
                cur.push(c)
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn element<'a>(list: &'a mut [Value], seg: &str) -> Option<&'a mut Value> {
    let inner = seg.trim_start_matches('[').trim_end_matches(']');
    if let Ok(i) = inner.parse::<usize>() {
        return list.get_mut(i);
    }
    let (k, v) = inner.split_once('=')?;
    list.iter_mut().find(|e| e.get(k).map(crate::kustomize::transform::scalar_string).as_deref() == Some(v))
}

pub fn get<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = if seg.starts_with('[') {
            element(cur.as_array_mut()?, seg)?
        } else {
            cur.as_object_mut()?.get_mut(seg)?
        };
    }
    Some(cur)
}

/// Sets the value at `path`; with `create`, missing maps on the way are made.
pub fn set(v: &mut Value, path: &[String], value: Value, create: bool) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut cur = v;
    for seg in parents {
        cur = if seg.starts_with('[') {
            match cur.as_array_mut().and_then(|l| element(l, seg)) {
                Some(x) => x,
                None => return false,
            }
        } else {
            let Some(m) = cur.as_object_mut() else { return false };
            if !m.contains_key(seg) {
                if !create {
                    return false;
                }
                m.insert(seg.clone(), Value::Object(Map::new()));
            }
            m.get_mut(seg).unwrap()
        };
    }
    if last.starts_with('[') {
        match cur.as_array_mut().and_then(|l| element(l, last)) {
            Some(x) => {
                *x = value;
                true
            }
            None => false,
        }
    } else {
        match cur.as_object_mut() {
            Some(m) if m.contains_key(last) || create => {
                m.insert(last.clone(), value);
                true
            }
            _ => false,
        }
    }
}

/// Applies `delimiter`/`index` options: pick one part of a source string.
pub fn pick(value: Value, options: Option<&Value>) -> Value {
    let Some(delim) = options.and_then(|o| o.get("delimiter")).and_then(Value::as_str) else { return value };
    let idx = options.and_then(|o| o.get("index")).and_then(Value::as_i64).unwrap_or(0);
    let s = crate::kustomize::transform::scalar_string(&value);
    let parts: Vec<&str> = s.split(delim).collect();
    if idx < 0 || idx as usize >= parts.len() {
        return value;
    }
    Value::String(parts[idx as usize].to_string())
}

/// Applies `delimiter`/`index` options on the target: replace one part of its string.
pub fn splice(existing: Option<&Value>, value: Value, options: Option<&Value>) -> Value {
    let Some(delim) = options.and_then(|o| o.get("delimiter")).and_then(Value::as_str) else { return value };
    let idx = options.and_then(|o| o.get("index")).and_then(Value::as_i64).unwrap_or(0);
    let cur = existing.map(crate::kustomize::transform::scalar_string).unwrap_or_default();
    let mut parts: Vec<String> = cur.split(delim).map(str::to_string).collect();
    let new = crate::kustomize::transform::scalar_string(&value);
    if idx >= 0 && (idx as usize) < parts.len() {
        parts[idx as usize] = new;
    } else if idx < 0 {
        parts.insert(0, new);
    } else {
        parts.push(new);
    }
    Value::String(parts.join(delim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_with_list_selectors() {
        let p = parse_path("spec.template.spec.containers.[name=app].image");
        assert_eq!(p, vec!["spec", "template", "spec", "containers", "[name=app]", "image"]);
        let mut v = json!({"spec":{"template":{"spec":{"containers":[{"name":"x","image":"a"},{"name":"app","image":"b:1"}]}}}});
        assert_eq!(get(&mut v, &p).cloned(), Some(json!("b:1")));
        let spliced = splice(get(&mut v, &p).map(|x| &*x), json!("2"), Some(&json!({"delimiter": ":", "index": 1})));
        assert!(set(&mut v, &p, spliced, false));
        assert_eq!(v["spec"]["template"]["spec"]["containers"][1]["image"], "b:2");
        assert_eq!(pick(json!("a.b.c"), Some(&json!({"delimiter": ".", "index": 2}))), json!("c"));
        assert!(!set(&mut v, &parse_path("metadata.labels.x"), json!("y"), false));
        assert!(set(&mut v, &parse_path("metadata.labels.x"), json!("y"), true));
    }
}
