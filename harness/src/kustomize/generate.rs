//! configMapGenerator / secretGenerator, and kustomize's content hash for generated names.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The suffix kustomize appends to a generated ConfigMap or Secret: a SHA-256 over a
/// canonical JSON of kind, data (and a Secret's type), cut to ten hex characters with a
/// few of them swapped for letters (so the suffix never looks like a number and avoids
/// vowels). kustomize hashes with an empty name (checked against kubectl 1.32 /
/// kustomize 5.5): the same data under two names gets the same suffix.
pub fn name_hash(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = "";
    let canonical = if kind == "Secret" {
        let mut data = Map::new();
        for field in ["data", "stringData"] {
            if let Some(m) = obj.get(field).and_then(Value::as_object) {
                data.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let typ = obj.get("type").cloned().unwrap_or(Value::String(String::new()));
        json!({"data": data, "kind": "Secret", "name": name, "type": typ})
    } else {
        let data = obj.get("data").cloned().unwrap_or(json!({}));
        let mut m = json!({"data": data, "kind": kind, "name": name});
        if let Some(b) = obj.get("binaryData").filter(|b| b.as_object().is_some_and(|o| !o.is_empty())) {
            m["binaryData"] = b.clone();
        }
        m
    };
    let digest = Sha256::digest(go_json(&canonical).as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// JSON the way Go's encoding/json writes it: sorted keys (serde_json's default map is
/// sorted) and `<`, `>`, `&` escaped for HTML safety.
fn go_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Splits `KEY=VALUE`; quotes around the value are removed, as kustomize does for literals.
pub fn parse_literal(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("literal '{s}' is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("literal '{s}' has an empty key"));
    }
    let v = if v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    Ok((k.to_string(), v.to_string()))
}

/// Parses an env file: `KEY=VALUE` lines, `#` comments and blank lines skipped.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((k.trim().to_string(), v.to_string())),
            _ => {
                return Err(format!(
                    "line {}: '{t}' is not KEY=VALUE (a bare KEY would read the environment of the machine running the build, which Flux never does)",
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![];
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = buf << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "hello world!"] {
            assert_eq!(base64_decode(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64(b"bar"), "YmFy");
    }

    #[test]
    fn literals_and_env_files() {
        assert_eq!(parse_literal("A=\"b c\"").unwrap(), ("A".into(), "b c".into()));
        assert_eq!(parse_literal("A=x=y").unwrap(), ("A".into(), "x=y".into()));
        assert!(parse_literal("novalue").is_err());
        assert_eq!(
            parse_env_file("# c\nA=1\n\nB = 2\n").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), " 2".into())]
        );
        assert!(parse_env_file("JUSTKEY\n").is_err());
    }
}
