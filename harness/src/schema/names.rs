//! Kubernetes' own metadata rules (apimachinery `validation`): object names as DNS-1123
//! subdomains or labels, label keys and values. Names still holding `${...}` are left to
//! the substitution findings.

use super::Problem;
use serde_json::Value;

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending with `[a-z0-9]`.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// DNS-1123 subdomain: at most 253, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty() && l.chars().all(|c| alnum(c) || c == '-') && l.starts_with(alnum) && l.ends_with(alnum)
        })
}

/// DNS-1035 label (Service names): a DNS-1123 label that starts with a letter.
fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A label value or the name part of a label key: at most 63 of `[A-Za-z0-9-_.]`, starting
/// and ending with an alphanumeric (values may also be empty).
fn is_label_name(s: &str) -> bool {
    s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_label_key(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(k),
    }
}

fn problem(path: &[&str], detail: String, out: &mut Vec<Problem>) {
    out.push(Problem { path: path.iter().map(|s| s.to_string()).collect(), detail });
}

pub fn check_metadata(v: &Value, group: &str, kind: &str, out: &mut Vec<Problem>) {
    let Some(meta) = v.get("metadata") else {
        return problem(&["metadata", "name"], "Required value: name or generateName is required".into(), out);
    };
    match meta.get("name") {
        None | Some(Value::Null) if meta.get("generateName").is_none() => {
            problem(&["metadata", "name"], "Required value: name or generateName is required".into(), out)
        }
        Some(Value::String(name)) if !name.contains("${") => {
            let (ok, rule) = match (group, kind) {
                ("", "Namespace") => (
                    is_dns_label(name),
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                ),
                ("", "Service") => (
                    is_dns1035_label(name),
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
                ),
                // RBAC names are path segments: `system:aggregate-to-admin` is valid.
                ("rbac.authorization.k8s.io", _) => (
                    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%'),
                    "may not contain '/' or '%' and may not be '.' or '..'",
                ),
                _ => (
                    is_dns_subdomain(name),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                ),
            };
            if !ok {
                problem(&["metadata", "name"], format!("Invalid value: {name:?}: {rule}"), out);
            }
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {}
        Some(other) => problem(
            &["metadata", "name"],
            format!("Invalid value: {other}: metadata.name in body must be of type string"),
            out,
        ),
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, val) in labels {
            if k.contains("${") {
                continue;
            }
            if !is_label_key(k) {
                problem(
                    &["metadata", "labels"],
                    format!(
                        "Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                    out,
                );
            }
            match val {
                Value::String(s) if s.contains("${") || s.is_empty() || is_label_name(s) => {}
                Value::String(s) => problem(
                    &["metadata", "labels"],
                    format!(
                        "Invalid value: {s:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)"
                    ),
                    out,
                ),
                // What server-side apply answers (Flux applies that way).
                other => problem(
                    &["metadata", "labels", k],
                    format!("expected string, got &value.valueUnstructured{{Value:{other}}} (quote it in the YAML)"),
                    out,
                ),
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        for (k, val) in ann {
            if !val.is_string() {
                problem(
                    &["metadata", "annotations", k],
                    format!("expected string, got &value.valueUnstructured{{Value:{val}}} (quote it in the YAML)"),
                    out,
                );
            }
        }
    }
}
