//! What a real API server refuses before it stores anything, with its status code and
//! words: a body whose kind, apiVersion, namespace or name is not the endpoint's, an
//! update that changes an object's identity, an object its schema refuses (the same
//! `schema` module `plan` reads), a `resourceVersion` that is not one. Pure.

use super::store::Resource;
use serde_json::Value;

/// A refused request: HTTP code, Status reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

fn bad_request(message: String) -> Refusal {
    Refusal { code: 400, reason: "BadRequest", message }
}

fn str_field<'v>(v: &'v Value, pointer: &str, what: &str, res: &Resource) -> Result<Option<&'v str>, Refusal> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal {} into Go struct field {what} of type string",
            res.kind,
            res.version,
            res.kind,
            match other {
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                Value::Array(_) => "array",
                _ => "object",
            }
        ))),
    }
}

/// A body sent to `res`'s endpoint in namespace `ns` (`""`: cluster-scoped or all), for
/// the object `name` of the URL (`None`: a create). Kind, apiVersion, namespace and name,
/// when the body gives them, must be the request's.
pub fn body(res: &Resource, ns: &str, name: Option<&str>, obj: &Value) -> Result<(), Refusal> {
    if !obj.is_object() {
        return Err(bad_request("the request body must be an object".into()));
    }
    if let Some(av) = str_field(obj, "/apiVersion", "TypeMeta.apiVersion", res)?
        && av != res.api_version()
    {
        return Err(bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = str_field(obj, "/kind", "TypeMeta.kind", res)?
        && kind != res.kind
    {
        return Err(bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    if let Some(n) = str_field(obj, "/metadata/namespace", "ObjectMeta.metadata.namespace", res)?
        && res.namespaced
        && !n.is_empty()
        && n != ns
    {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    let body_name = str_field(obj, "/metadata/name", "ObjectMeta.metadata.name", res)?;
    if let (Some(url), Some(n)) = (name, body_name)
        && n != url
    {
        return Err(bad_request(format!("the name of the object ({n}) does not match the name on the URL ({url})")));
    }
    Ok(())
}

/// An update may not change what the object is: its uid (a precondition of every update).
pub fn identity(current: &Value, updated: &Value) -> Result<(), Refusal> {
    let uid = |v: &Value| v.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
    match (uid(current), uid(updated)) {
        (Some(old), Some(new)) if old != new => Err(Refusal {
            code: 409,
            reason: "Conflict",
            message: format!("Precondition failed: UID in precondition: {new}, UID in object meta: {old}"),
        }),
        _ => Ok(()),
    }
}

/// Names, labels and (for Flux kinds) the CRD schema: 422 Invalid, worded as the API
/// server words it.
pub fn admit(res: &Resource, obj: &Value) -> Result<(), Refusal> {
    if !obj.is_object() {
        return Err(bad_request("the request body must be an object".into()));
    }
    let mut typed = obj.clone();
    typed["apiVersion"] = Value::String(res.api_version());
    typed["kind"] = Value::String(res.kind.clone());
    let problems = crate::schema::validate(&typed);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Refusal { code: 422, reason: "Invalid", message: crate::schema::refusal(&typed, &problems) })
}

/// The `resourceVersion` of a list or watch: absent, `""` and `"0"` mean "any"; anything
/// else must be a resourceVersion this server could have given out.
pub fn resource_version(rv: Option<&str>) -> Result<Option<u64>, Refusal> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(|n| (n > 0).then_some(n)).map_err(|_| Refusal {
            code: 400,
            reason: "BadRequest",
            message: format!("resourceVersion: Invalid value: \"{s}\": must be a non-negative integer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ks() -> Resource {
        Resource {
            group: "kustomize.toolkit.fluxcd.io".into(),
            version: "v1".into(),
            kind: "Kustomization".into(),
            plural: "kustomizations".into(),
            namespaced: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_body_of_another_kind_or_place_is_refused() {
        let r = ks();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        assert!(body(&r, "flux-system", None, &pod).unwrap_err().message.contains("expected API version"));
        let other_ns = json!({"metadata": {"name": "x", "namespace": "default"}});
        assert_eq!(body(&r, "flux-system", None, &other_ns).unwrap_err().code, 400);
        let renamed = json!({"metadata": {"name": "y"}});
        let e = body(&r, "flux-system", Some("x"), &renamed).unwrap_err();
        assert_eq!(e.message, "the name of the object (y) does not match the name on the URL (x)");
        let number = json!({"metadata": {"name": 42}});
        assert!(body(&r, "flux-system", Some("x"), &number).unwrap_err().message.contains("cannot unmarshal number"));
        assert!(body(&r, "flux-system", Some("x"), &json!({"metadata": {"name": "x"}})).is_ok());
    }

    #[test]
    fn admission_of_a_body_that_is_not_an_object_is_a_refusal() {
        // Found by the apiserver fuzz target: a JSON string panicked on indexing.
        assert_eq!(admit(&ks(), &json!("spec")).unwrap_err().code, 400);
        assert_eq!(admit(&ks(), &json!([1, 2])).unwrap_err().code, 400);
    }

    #[test]
    fn resource_versions_must_be_numbers() {
        assert_eq!(resource_version(Some("17")), Ok(Some(17)));
        assert_eq!(resource_version(Some("0")), Ok(None));
        assert_eq!(resource_version(None), Ok(None));
        for bad in ["abc", "-1", "1.5"] {
            assert_eq!(resource_version(Some(bad)).unwrap_err().code, 400, "{bad}");
        }
    }
}
