//! Request handling: auth, routing and the verbs, shaped after what kubectl 1.32 and
//! kube-rs 5 send (docs in README: lenient queries `?&...`, aggregated and legacy
//! discovery, Tables, watches as newline-delimited JSON with 410 as an in-stream ERROR).

use super::Shared;
use super::discovery;
use super::store::{Event, Resource, merge_patch};
use super::validate;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Larger request bodies are refused (413): no real manifest comes near it.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed()
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    json_typed(code, v, "application/json")
}

fn json_typed(code: StatusCode, v: &Value, ctype: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap()
}

pub fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), &v)
}

fn refuse(r: validate::Refusal) -> Response<Body> {
    status(r.code, r.reason, &r.message)
}

fn not_found(res: &Resource, name: &str) -> Response<Body> {
    status(404, "NotFound", &format!("{} \"{name}\" not found", res.qualified()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters; empty keys (kube-rs sends `?&limit=500`) are ignored.
fn query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v)))
        })
        .collect()
}

fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(route(shared, req).await)
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let authorized =
        req.headers().get("authorization").and_then(|h| h.to_str().ok()) == Some(&format!("Bearer {}", shared.token));
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query(req.uri().query());
    let accept = req.headers().get("accept").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let ctype = req.headers().get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let method = req.method().clone();
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let resources = shared.store.lock().unwrap().resources();
    let aggregated = accept.contains("g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    const AGG: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    if method == Method::GET {
        match s.as_slice() {
            ["version"] => return json_response(StatusCode::OK, &discovery::version()),
            ["api"] if aggregated => return json_typed(StatusCode::OK, &discovery::aggregated(&resources, true), AGG),
            ["api"] => return json_response(StatusCode::OK, &discovery::legacy_api()),
            ["apis"] if aggregated => {
                return json_typed(StatusCode::OK, &discovery::aggregated(&resources, false), AGG);
            }
            ["apis"] => return json_response(StatusCode::OK, &discovery::legacy_apis(&resources)),
            ["api", v] => {
                return discovery::resource_list(&resources, "", v)
                    .map(|x| json_response(StatusCode::OK, &x))
                    .unwrap_or_else(|| status(404, "NotFound", "the server could not find the requested resource"));
            }
            ["apis", g, v] => {
                return discovery::resource_list(&resources, g, v)
                    .map(|x| json_response(StatusCode::OK, &x))
                    .unwrap_or_else(|| status(404, "NotFound", "the server could not find the requested resource"));
            }
            ["openapi", "v3"] => return json_response(StatusCode::OK, &discovery::openapi_index(&resources)),
            ["openapi", "v3", "api", v] => {
                return discovery::openapi_gv(&resources, "", v)
                    .map(|x| json_response(StatusCode::OK, &x))
                    .unwrap_or_else(|| status(404, "NotFound", "not found"));
            }
            ["openapi", "v3", "apis", g, v] => {
                return discovery::openapi_gv(&resources, g, v)
                    .map(|x| json_response(StatusCode::OK, &x))
                    .unwrap_or_else(|| status(404, "NotFound", "not found"));
            }
            ["healthz"] | ["livez"] | ["readyz"] => {
                return Response::builder().status(200).body(full(b"ok".to_vec())).unwrap();
            }
            _ => {}
        }
    }
    // Resource paths: /api/v1/... or /apis/GROUP/VERSION/...
    let (group, version, rest): (&str, &str, &[&str]) = match s.as_slice() {
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return status(404, "NotFound", "the server could not find the requested resource"),
    };
    let (ns, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", n, more @ ..] if !more.is_empty() => (Some(n), more),
        other => (None, other),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, sub] => (*p, Some(*n), Some(*sub)),
        _ => return status(404, "NotFound", "the server could not find the requested resource"),
    };
    let Some(res) = shared.store.lock().unwrap().resource(group, version, plural) else {
        return status(404, "NotFound", "the server could not find the requested resource");
    };
    if sub.is_some_and(|x| x != "status") {
        return status(404, "NotFound", &format!("subresource {} is not served", sub.unwrap_or("")));
    }
    if res.namespaced && name.is_some() && ns.is_none() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource (namespaced resource without a namespace)",
        );
    }
    let ns_key = if res.namespaced { ns.unwrap_or("") } else { "" };
    // Body for writes.
    let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        // A body that never arrives (a Content-Length larger than what is sent) is given
        // up on, as the API server's request timeout does, instead of holding the
        // connection forever.
        let read = http_body_util::Limited::new(req.into_body(), MAX_BODY).collect();
        let limit = shared.timeouts.body;
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => {
                return status(
                    413,
                    "RequestEntityTooLarge",
                    &format!("the request body is larger than {} MiB", MAX_BODY / 1048576),
                );
            }
            Err(_) => {
                return status(
                    408,
                    "Timeout",
                    &format!("the request body did not arrive within {}s", limit.as_secs_f64()),
                );
            }
        }
    } else {
        Bytes::new()
    };
    if let Err(r) = validate::resource_version(q.get("resourceVersion").map(String::as_str)) {
        return refuse(r);
    }
    match (method, name) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(shared, res, ns.map(str::to_string), q, wants_table(&accept))
        }
        (Method::GET, None) => list(&shared, &res, ns, &q, wants_table(&accept)),
        (Method::GET, Some(n)) => match shared.store.lock().unwrap().get(&res.group, &res.plural, ns_key, n) {
            Some(o) if wants_table(&accept) => json_response(StatusCode::OK, &table(&res, vec![o], ns.is_none())),
            Some(o) => json_response(StatusCode::OK, o),
            None => not_found(&res, n),
        },
        (Method::POST, None) => {
            let obj = match parse_body(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = validate::body(&res, ns_key, None, &obj) {
                return refuse(r);
            }
            let n = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if n.is_empty() {
                return status(
                    422,
                    "Invalid",
                    &format!("{} is invalid: metadata.name: Required value: name is required", res.kind),
                );
            }
            if shared.store.lock().unwrap().get(&res.group, &res.plural, ns_key, &n).is_some() {
                return status(409, "AlreadyExists", &format!("{} \"{n}\" already exists", res.qualified()));
            }
            write(&shared, &res, ns_key, &n, obj, &q, StatusCode::CREATED)
        }
        (Method::PUT, Some(n)) => {
            let mut obj = match parse_body(&body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = validate::body(&res, ns_key, Some(n), &obj) {
                return refuse(r);
            }
            let Some(cur) = shared.store.lock().unwrap().get(&res.group, &res.plural, ns_key, n).cloned() else {
                return not_found(&res, n);
            };
            if let Err(r) = validate::identity(&cur, &obj) {
                return refuse(r);
            }
            let sent_rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            if sent_rv
                .as_ref()
                .is_some_and(|rv| Some(rv.as_str()) != cur.pointer("/metadata/resourceVersion").and_then(Value::as_str))
            {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{n}\": the object has been modified; please apply your changes to the latest version and try again",
                        res.qualified()
                    ),
                );
            }
            if sub == Some("status") {
                let mut merged = cur.clone();
                merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                obj = merged;
            }
            write(&shared, &res, ns_key, n, obj, &q, StatusCode::OK)
        }
        (Method::PATCH, Some(n)) => {
            const PATCH_TYPES: [&str; 4] = [
                "application/json-patch+json",
                "application/strategic-merge-patch+json",
                "application/merge-patch+json",
                "application/apply-patch",
            ];
            if !PATCH_TYPES.iter().any(|t| ctype.starts_with(t)) {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got '{ctype}')"
                    ),
                );
            }
            let cur = shared.store.lock().unwrap().get(&res.group, &res.plural, ns_key, n).cloned();
            let is_apply = ctype.starts_with("application/apply-patch");
            let patch = match if is_apply { parse_yaml_body(&body) } else { parse_body(&body) } {
                Ok(v) => v,
                Err(r) => return r,
            };
            let (mut obj, code) = match (cur, is_apply) {
                (None, true) => (Value::Object(Default::default()), StatusCode::CREATED),
                (None, false) => return not_found(&res, n),
                (Some(c), _) => (c, StatusCode::OK),
            };
            // Only a JSON patch is a list; every other patch is merged into the object, so it
            // must be one (the API server refuses the rest before applying anything).
            if !ctype.starts_with("application/json-patch+json") && !patch.is_object() {
                return status(400, "BadRequest", "the patch must be a JSON object");
            }
            let before = obj.clone();
            if ctype.starts_with("application/json-patch+json") {
                let Some(ops) = patch.as_array() else {
                    return status(400, "BadRequest", "a JSON patch must be a list of operations");
                };
                if let Err(e) = crate::kustomize::patch::json_patch(&mut obj, ops) {
                    return status(422, "Invalid", &format!("the JSON patch cannot be applied: {e}"));
                }
            } else if ctype.starts_with("application/strategic-merge-patch+json") {
                crate::kustomize::patch::strategic_merge(
                    &mut obj,
                    &patch,
                    crate::object::is_builtin_kind(&res.group, &res.kind),
                    res.kind == "Service" && res.group.is_empty(),
                );
            } else if is_apply {
                // Server-side apply: fields are owned by their manager; another manager
                // changing them is a conflict unless it forces.
                let manager = q.get("fieldManager").cloned().unwrap_or_default();
                if manager.is_empty() {
                    return status(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    );
                }
                let force = q.get("force").is_some_and(|f| f == "true");
                let current = if code == StatusCode::CREATED { None } else { Some(before.clone()) };
                merge_patch(&mut obj, &patch);
                if let Err(conflicts) =
                    super::store::apply_ownership(&mut obj, current.as_ref(), &patch, &manager, force)
                {
                    let list = conflicts
                        .iter()
                        .map(|(m, p)| format!("- conflict with \"{m}\": {p}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Apply failed with {} conflict{}:\n{list}",
                            conflicts.len(),
                            if conflicts.len() == 1 { "" } else { "s" }
                        ),
                    );
                }
            } else if ctype.starts_with("application/merge-patch+json") {
                merge_patch(&mut obj, &patch);
            } else {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got '{ctype}')"
                    ),
                );
            }
            if sub == Some("status") {
                let mut only_status = before.clone();
                only_status["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                obj = only_status;
            }
            // What the patch made must still be the object of the URL.
            if let Err(r) = validate::body(&res, ns_key, Some(n), &obj).and_then(|_| validate::identity(&before, &obj))
            {
                return refuse(r);
            }
            let md = crate::object::metadata_mut(&mut obj);
            md.entry("name").or_insert_with(|| Value::String(n.to_string()));
            write(&shared, &res, ns_key, n, obj, &q, code)
        }
        (Method::DELETE, Some(n)) => match shared.delete(&res, ns_key, n) {
            Some(o) => json_response(StatusCode::OK, &o),
            None => not_found(&res, n),
        },
        (m, _) => status(405, "MethodNotAllowed", &format!("{m} is not supported on {}", path)),
    }
}

// A rejected body is answered as it is, so the error is the response itself.
#[allow(clippy::result_large_err)]
fn parse_body(body: &Bytes) -> Result<Value, Response<Body>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| status(400, "BadRequest", &format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() && !v.is_array() {
        return Err(status(400, "BadRequest", "the request body must be an object"));
    }
    Ok(v)
}

#[allow(clippy::result_large_err)]
fn parse_yaml_body(body: &Bytes) -> Result<Value, Response<Body>> {
    let text = std::str::from_utf8(body).map_err(|_| status(400, "BadRequest", "the request body is not UTF-8"))?;
    match crate::yaml::parse_one("request", text) {
        Ok(d) if d.value.is_object() => Ok(d.value),
        Ok(_) => Err(status(400, "BadRequest", "the request body must be an object")),
        Err(e) => Err(status(400, "BadRequest", &format!("the request body is not valid YAML or JSON: {}", e.message))),
    }
}

/// Admission, dry-run, then store. The simulation's fail-closed webhooks refuse with the
/// API server's own text.
fn write(
    shared: &Shared,
    res: &Resource,
    ns: &str,
    name: &str,
    mut obj: Value,
    q: &BTreeMap<String, String>,
    code: StatusCode,
) -> Response<Body> {
    if !obj.is_object() {
        return status(400, "BadRequest", "the request body must be an object");
    }
    if let Err(r) = validate::admit(res, &obj) {
        return refuse(r);
    }
    // The NamespaceLifecycle admission plugin: nothing is created in a namespace that
    // does not exist.
    if code == StatusCode::CREATED
        && res.namespaced
        && shared.store.lock().unwrap().get("", "namespaces", "", ns).is_none()
    {
        return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    if let Some(adm) = shared.admission.lock().unwrap().as_ref() {
        let namespace = (!ns.is_empty()).then_some(ns);
        if let Some(msg) = adm(&res.group, &res.kind, namespace, name) {
            return status(500, "InternalError", &msg);
        }
    }
    if q.get("dryRun").is_some_and(|d| d == "All") {
        obj["apiVersion"] = Value::String(res.api_version());
        obj["kind"] = Value::String(res.kind.clone());
        return json_response(code, &obj);
    }
    let (_, stored) = shared.put(res, ns, obj);
    json_response(code, &stored)
}

fn selector_ok(obj: &Value, q: &BTreeMap<String, String>) -> bool {
    if let Some(ls) = q.get("labelSelector").filter(|s| !s.is_empty()) {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        if !crate::labels::selector_matches(ls, &labels) {
            return false;
        }
    }
    if let Some(fs) = q.get("fieldSelector").filter(|s| !s.is_empty()) {
        for term in fs.split(',') {
            let (k, v, neg) = match term.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => match term.split_once("==").or_else(|| term.split_once('=')) {
                    Some((k, v)) => (k, v, false),
                    None => continue,
                },
            };
            let path = format!("/{}", k.trim().replace('.', "/"));
            let actual = obj.pointer(&path).map(crate::kustomize::transform::scalar_string).unwrap_or_default();
            if (actual == v.trim()) == neg {
                return false;
            }
        }
    }
    true
}

fn list(
    shared: &Shared,
    res: &Resource,
    ns: Option<&str>,
    q: &BTreeMap<String, String>,
    table_out: bool,
) -> Response<Body> {
    let st = shared.store.lock().unwrap();
    let rv = st.resource_version();
    let all: Vec<Value> = st
        .list(&res.group, &res.plural, if res.namespaced { ns } else { None })
        .into_iter()
        .filter(|o| selector_ok(o, q))
        .cloned()
        .collect();
    drop(st);
    let start: usize = q.get("continue").and_then(|c| c.split(':').nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let page: Vec<Value> = all.get(start..end).unwrap_or(&[]).to_vec();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if end < all.len() {
        metadata["continue"] = Value::String(format!("o:{end}:{rv}"));
    }
    if table_out {
        let mut t = table(res, page.iter().collect(), ns.is_none());
        t["metadata"] = metadata;
        return json_response(StatusCode::OK, &t);
    }
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": res.api_version(), "kind": format!("{}List", res.kind), "metadata": metadata, "items": page}),
    )
}

/// Ages as kube-apiserver prints them (`45s`, `3m12s`, `5h`, `2d`).
fn age(created: &str) -> String {
    let parse = |s: &str| -> Option<u64> {
        let (d, t) = s.trim_end_matches('Z').split_once('T')?;
        let mut dp = d.split('-').map(|x| x.parse::<i64>().ok());
        let (y, m, dd) = (dp.next()??, dp.next()??, dp.next()??);
        let mut tp = t.split(':').map(|x| x.parse::<u64>().ok());
        let (h, mi, se) = (tp.next()??, tp.next()??, tp.next()??);
        let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let doy = (153 * m2 + 2) / 5 + dd - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(days as u64 * 86400 + h * 3600 + mi * 60 + se)
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = parse(created).map(|c| now.saturating_sub(c)).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn ready_cells(o: &Value) -> (String, String) {
    let c = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")));
    match c {
        Some(c) => (
            c.get("status").and_then(Value::as_str).unwrap_or("").into(),
            c.get("message").and_then(Value::as_str).unwrap_or("").into(),
        ),
        None => ("Unknown".into(), String::new()),
    }
}

/// A `meta.k8s.io/v1` Table, as kubectl get wants it: Flux kinds get READY and STATUS.
pub fn table(res: &Resource, objs: Vec<&Value>, _all_namespaces: bool) -> Value {
    let flux = res.group.ends_with(".toolkit.fluxcd.io");
    let mut cols =
        vec![json!({"name": "Name", "type": "string", "format": "name"}), json!({"name": "Age", "type": "date"})];
    if flux {
        cols.push(json!({"name": "Ready", "type": "string"}));
        cols.push(json!({"name": "Status", "type": "string"}));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let md = o.get("metadata").cloned().unwrap_or(json!({}));
            let mut cells = vec![md.get("name").cloned().unwrap_or(Value::Null), Value::String(age(md.get("creationTimestamp").and_then(Value::as_str).unwrap_or("")))];
            if flux {
                let (r, s) = ready_cells(o);
                cells.push(Value::String(r));
                cells.push(Value::String(s));
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows})
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn gone(rv: u64) -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {rv}"), "reason": "Expired", "code": 410}),
    )
}

/// A watch: replay from `resourceVersion` (410 as an in-stream ERROR when too old), then
/// live events, bookmarks when asked, until `timeoutSeconds` or the client goes.
fn watch(
    shared: Arc<Shared>,
    res: Resource,
    ns: Option<String>,
    q: BTreeMap<String, String>,
    table_out: bool,
) -> Response<Body> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    // Subscribe before reading the log so nothing falls between the two.
    let mut live = shared.events.subscribe();
    let (replay, start_rv) = {
        let st = shared.store.lock().unwrap();
        let current = st.resource_version();
        let initial = q.get("sendInitialEvents").is_some_and(|s| s == "true");
        let from: Option<u64> = q.get("resourceVersion").and_then(|r| r.parse().ok()).filter(|r| *r > 0 && !initial);
        let replay: Result<Vec<(String, Value)>, u64> = match from {
            Some(rv) => match st.events_since(rv) {
                Some(evs) => Ok(evs
                    .into_iter()
                    .filter(|e| e.group == res.group && e.plural == res.plural)
                    .map(|e| (e.kind.as_str().to_string(), e.object))
                    .collect()),
                None => Err(rv),
            },
            // No version (or 0): every current object as ADDED, as kube-apiserver does.
            None => Ok(st
                .list(&res.group, &res.plural, if res.namespaced { ns.as_deref() } else { None })
                .into_iter()
                .map(|o| ("ADDED".to_string(), o.clone()))
                .collect()),
        };
        (replay.map(|r| (r, initial)), current)
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(3600));
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let every = shared.bookmark_every;
    let q2 = q.clone();
    let api_version = res.api_version();
    let kind = res.kind.clone();
    let keep = move |o: &Value, ev_ns: &str| ns.as_deref().is_none_or(|n| n == ev_ns) && selector_ok(o, &q2);
    let render = {
        let res = res.clone();
        move |o: &Value| if table_out { table(&res, vec![o], true) } else { o.clone() }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rv = start_rv;
        match replay {
            Err(rv) => {
                let _ = tx.send(gone(rv)).await;
                return;
            }
            Ok((events, initial)) => {
                for (k, o) in events {
                    let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
                    if keep(&o, &ns) && tx.send(event_line(&k, &render(&o))).await.is_err() {
                        return;
                    }
                }
                if initial {
                    let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(event_line("BOOKMARK", &bm)).await.is_err() { return; }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        let ev: Arc<Event> = ev;
                        if ev.rv <= start_rv || ev.group != res.group || ev.plural != res.plural {
                            continue;
                        }
                        last_rv = ev.rv;
                        if keep(&ev.object, &ev.namespace) && tx.send(event_line(ev.kind.as_str(), &render(&ev.object))).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind the broadcast buffer: the client must relist.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(gone(last_rv)).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(|b| Ok::<_, std::io::Error>(Frame::data(b))))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}
