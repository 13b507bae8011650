//! SOPS decryption as kustomize-controller does it (`internal/decryptor`): the data key is
//! age-decrypted from `sops.age[].enc` with the identities of the Kustomization's
//! decryption Secret (`*.agekey` entries), then every value the file's rules mark encrypted
//! is opened with AES-256-GCM (32-byte nonce), its additional data being the path of keys
//! to it joined by `:` plus a trailing `:`. Flux does not check the MAC (its decryptor's
//! `checkSopsMac` is off), so neither does this.
//!
//! Pure. Values are decrypted only to prove they can be; nothing here prints one, and the
//! messages name paths, never values.

use crate::kustomize::generate::base64_decode;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use serde_json::{Map, Value};
use std::io::Read;

/// Age identities, as a decryption Secret's `*.agekey` entry holds them (comment lines and
/// `AGE-SECRET-KEY-1…` lines). Debug never shows them.
#[derive(Clone)]
pub struct AgeKeys(Vec<age::x25519::Identity>);

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgeKeys({} identities, redacted)", self.0.len())
    }
}

impl AgeKeys {
    /// Parses an age identity file. The error names the line, never its content.
    pub fn parse(text: &str) -> Result<AgeKeys, String> {
        let mut ids = vec![];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            ids.push(
                line.parse::<age::x25519::Identity>()
                    .map_err(|_| format!("line {} is not an age identity (AGE-SECRET-KEY-1…)", n + 1))?,
            );
        }
        if ids.is_empty() {
            return Err("no age identity (AGE-SECRET-KEY-1…) in it".into());
        }
        Ok(AgeKeys(ids))
    }

    /// The public keys (recipients) of these identities, to say which key was tried.
    pub fn recipients(&self) -> Vec<String> {
        self.0.iter().map(|i| i.to_public().to_string()).collect()
    }
}

/// What kustomize-controller treats as a SOPS-encrypted resource: a `sops` field with a
/// `mac` (`isSOPSEncryptedResource`).
pub fn is_encrypted(v: &Value) -> bool {
    v.pointer("/sops/mac").is_some_and(|m| !m.is_null() && m.as_str() != Some(""))
}

/// Decrypts a SOPS-encrypted resource: the same tree with its values in clear and the
/// `sops` metadata gone. The error is in sops' and Flux's words (without any value).
pub fn decrypt(v: &Value, keys: &AgeKeys) -> Result<Value, String> {
    let meta = v.get("sops").and_then(Value::as_object).ok_or("no sops metadata")?;
    let key = data_key(meta, keys)?;
    let rules = Rules::of(meta)?;
    let Value::Object(top) = v else { return Err("a SOPS document must be a mapping".into()) };
    let mut out = Map::new();
    for (k, x) in top.iter().filter(|(k, _)| *k != "sops") {
        out.insert(k.clone(), walk(x, &mut vec![k.clone()], &key, &rules)?);
    }
    Ok(Value::Object(out))
}

/// Whether the harness can open a file at all: a Shamir threshold above 1 needs shares of
/// several key groups combined, which it does not do (such a file is left as assumed).
pub fn analysable(v: &Value) -> bool {
    v.pointer("/sops/shamir_threshold").and_then(Value::as_u64).unwrap_or(1) <= 1
}

/// The data key, from the first age entry one of the identities opens: `sops.age`, or the
/// age entries of `sops.key_groups` (any one group opens a file whose threshold is 1).
fn data_key(meta: &Map<String, Value>, keys: &AgeKeys) -> Result<[u8; 32], String> {
    let mut entries = meta.get("age").and_then(Value::as_array).cloned().unwrap_or_default();
    for g in meta.get("key_groups").and_then(Value::as_array).into_iter().flatten() {
        entries.extend(g.get("age").and_then(Value::as_array).into_iter().flatten().cloned());
    }
    let mut tried = vec![];
    for e in &entries {
        let recipient = e.get("recipient").and_then(Value::as_str).unwrap_or("?");
        let Some(enc) = e.get("enc").and_then(Value::as_str) else { continue };
        match open_age(enc, keys) {
            Ok(k) => return Ok(k),
            Err(why) => tried.push(format!("{recipient}: FAILED - {why}")),
        }
    }
    let mut msg = "cannot get sops data key: Error getting data key: 0 successful groups required, got 0".to_string();
    if entries.is_empty() {
        msg.push_str(" (the file has no age recipients: it was encrypted for another key type)");
    } else {
        msg.push_str(&format!(" ({})", tried.join("; ")));
    }
    Err(msg)
}

fn open_age(armored: &str, keys: &AgeKeys) -> Result<[u8; 32], String> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).map_err(|e| format!("malformed age file: {e}"))?;
    let ids = keys.0.iter().map(|i| i as &dyn age::Identity);
    let mut r = decryptor.decrypt(ids).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => "no identity matched any of the recipients".to_string(),
        other => other.to_string(),
    })?;
    let mut key = vec![];
    r.read_to_end(&mut key).map_err(|e| format!("reading the age payload: {e}"))?;
    key.try_into().map_err(|_| "the data key is not 32 bytes".to_string())
}

/// Which values a file encrypts: `unencrypted_suffix` (by default `_unencrypted`),
/// `encrypted_suffix`, `unencrypted_regex`, `encrypted_regex`, checked on every key of the
/// path as sops' `shouldBeEncrypted` does.
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    /// `encrypted_comment_regex` / `unencrypted_comment_regex`: which values sops encrypted
    /// was decided by their YAML comments, which a parsed tree does not keep, so a value is
    /// taken as encrypted when it is in sops' format (`ENC[...]`) and left otherwise.
    by_comment: bool,
}

impl Rules {
    fn of(meta: &Map<String, Value>) -> Result<Rules, String> {
        let s = |k: &str| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let re = |k: &str| {
            s(k).map(|r| compiled(&r).map_err(|e| format!("sops.{k} is not a regular expression: {e}"))).transpose()
        };
        let (encrypted_suffix, unencrypted_regex, encrypted_regex) =
            (s("encrypted_suffix"), re("unencrypted_regex")?, re("encrypted_regex")?);
        // sops writes `_unencrypted` only when no other rule was chosen (the comment
        // rules count: a file encrypted with only `encrypted_comment_regex` has no default).
        let comment_rule = s("encrypted_comment_regex").is_some() || s("unencrypted_comment_regex").is_some();
        let unencrypted_suffix = s("unencrypted_suffix").or_else(|| {
            (encrypted_suffix.is_none() && unencrypted_regex.is_none() && encrypted_regex.is_none() && !comment_rule)
                .then(|| "_unencrypted".to_string())
        });
        Ok(Rules { unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex, by_comment: comment_rule })
    }

    fn encrypted(&self, path: &[String]) -> bool {
        let mut enc = true;
        if let Some(suf) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(suf.as_str()))
        {
            enc = false;
        }
        if let Some(suf) = &self.encrypted_suffix {
            enc = path.iter().any(|p| p.ends_with(suf.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|p| re.is_match(p))
        {
            enc = false;
        }
        if let Some(re) = &self.encrypted_regex {
            enc = path.iter().any(|p| re.is_match(p));
        }
        enc
    }
}

/// Every file of a repo carries the same few rules: each is compiled once.
fn compiled(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return Ok(r.clone());
    }
    let r = regex::Regex::new(pattern)?;
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(pattern.to_string(), r.clone());
    Ok(r)
}

fn walk(v: &Value, path: &mut Vec<String>, key: &[u8; 32], rules: &Rules) -> Result<Value, String> {
    Ok(match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                path.push(k.clone());
                let r = walk(x, path, key, rules);
                path.pop();
                out.insert(k.clone(), r?);
            }
            Value::Object(out)
        }
        // List items share their parent's path, as in sops.
        Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, path, key, rules)).collect::<Result<_, _>>()?),
        Value::Null => Value::Null,
        leaf if !rules.encrypted(path) => leaf.clone(),
        Value::String(s) if s.is_empty() => Value::String(String::new()),
        Value::String(s) if rules.by_comment && !s.starts_with("ENC[") => Value::String(s.clone()),
        leaf if rules.by_comment && !leaf.is_string() => leaf.clone(),
        Value::String(s) => open_value(s, key, &format!("{}:", path.join(":"))).map_err(|e| {
            format!(
                "error decrypting sops tree: Error walking tree: Could not decrypt value at {}: {e}",
                path.join(".")
            )
        })?,
        _ => {
            return Err(format!(
                "error decrypting sops tree: Error walking tree: Expected encrypted value as string at {}",
                path.join(".")
            ));
        }
    })
}

/// One `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value.
fn open_value(s: &str, key: &[u8; 32], aad: &str) -> Result<Value, String> {
    let inner = s
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("the value does not match sops' data format")?;
    let mut parts = std::collections::HashMap::new();
    for p in inner.split(',') {
        let (k, v) = p.split_once(':').ok_or("the value does not match sops' data format")?;
        parts.insert(k, v);
    }
    let field = |k: &str| parts.get(k).copied().ok_or(format!("the value has no {k}"));
    let b64 = |k: &str| -> Result<Vec<u8>, String> {
        let text = field(k)?;
        if text.is_empty() {
            return Ok(vec![]);
        }
        base64_decode(text).ok_or(format!("Error base64-decoding {k}"))
    };
    let (mut data, iv, tag, ty) = (b64("data")?, b64("iv")?, b64("tag")?, field("type")?);
    if iv.len() != 32 || tag.len() != 16 {
        return Err("the iv or tag has the wrong length".into());
    }
    data.extend_from_slice(&tag);
    let cipher = aes_gcm::AesGcm::<Aes256, U32>::new(key.into());
    let plain = cipher
        .decrypt(aes_gcm::Nonce::<U32>::from_slice(&iv), Payload { msg: &data, aad: aad.as_bytes() })
        .map_err(|_| "Could not decrypt with AES_GCM: cipher: message authentication failed".to_string())?;
    // `bytes` holds whatever the file held (a binary file's content); the rest is text.
    let text = match ty {
        "bytes" => String::from_utf8_lossy(&plain).into_owned(),
        _ => String::from_utf8(plain).map_err(|_| "the decrypted value is not UTF-8".to_string())?,
    };
    Ok(match ty {
        "str" | "bytes" | "time" | "comment" => Value::String(text),
        "int" => text.parse::<i64>().map(Value::from).map_err(|_| "not an int".to_string())?,
        "float" => text.parse::<f64>().map(Value::from).map_err(|_| "not a float".to_string())?,
        "bool" => Value::Bool(matches!(text.as_str(), "True" | "true" | "1" | "t" | "T" | "TRUE")),
        other => return Err(format!("Unknown datatype: {other}")),
    })
}

/// A SOPS-encrypted Secret in a Kustomization without `spec.decryption`: kustomize-controller
/// refuses to apply it (before any stage), unless the Secret opts out with
/// `kustomize.toolkit.fluxcd.io/decrypt: disabled`. The object and Flux's message.
pub fn undecrypted_secret(k: &crate::model::KustomizationNode) -> Option<(usize, String)> {
    if k.spec.decryption {
        return None;
    }
    k.objects.iter().enumerate().find_map(|(x, o)| {
        let disabled = o
            .value
            .pointer("/metadata/annotations/kustomize.toolkit.fluxcd.io~1decrypt")
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("disabled"));
        (o.kind() == "Secret" && o.api_version() == "v1" && o.value.get("sops").is_some() && !disabled).then(|| {
            let id = format!("Secret/{}/{}", o.namespace().unwrap_or(""), o.name());
            (x, format!("{id} is SOPS encrypted, configuring decryption is required for this secret to be reconciled"))
        })
    })
}

/// Why a Kustomization's build cannot decrypt, in kustomize-controller's words, and the
/// object that does not open (`None` when the decryption Secret itself is missing): its
/// Secret is missing (`ImportKeys`), or an encrypted object does not open with the keys
/// the Secret holds (`DecryptResource`, wrapped by the build). `None`: it decrypts, or
/// nothing is known of the Secret (assumed right). The simulator fails the build with it;
/// the `sops-decrypt-failed` rule reports it.
pub fn build_failure(
    k: &crate::model::KustomizationNode,
    d: &crate::config::Decryption,
) -> Option<(Option<usize>, String)> {
    use crate::config::Decryption;
    let spec = &k.spec;
    if !spec.decryption {
        return None;
    }
    let secret = spec.raw.pointer("/spec/decryption/secretRef/name").and_then(Value::as_str);
    let encrypted = || k.objects.iter().enumerate().filter(|(_, o)| is_encrypted(&o.value) && analysable(&o.value));
    let none = AgeKeys(vec![]);
    let keys = match (d, secret) {
        (Decryption::Assumed, _) => return None,
        (Decryption::NoSecret, Some(name)) => return Some((None, format!("secrets \"{name}\" not found"))),
        // No secretRef: only the controller's own keys, and a cluster the harness made
        // without a key gives it none, so any encrypted object fails to open.
        (Decryption::NoSecret, None) => &none,
        (Decryption::Keys(keys), _) => keys,
    };
    encrypted().find_map(|(x, o)| {
        let why = decrypt(&o.value, keys).err()?;
        // kustomize's resid: `~G` for the core group, fields joined by `_`.
        let group = if o.group().is_empty() { "~G" } else { o.group() };
        let version = o.api_version().rsplit('/').next().unwrap_or("");
        Some((
            Some(x),
            format!(
                "decryption failed for '{group}_{version}_{}/{}': failed to decrypt and format '{}/{}' {} data: {why}",
                o.kind(),
                o.name(),
                o.namespace().unwrap_or(""),
                o.name(),
                o.kind()
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_parsed_and_never_shown() {
        let k = AgeKeys::parse(
            "# created: 2026-12-02\n# public key: age1...\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n",
        )
        .unwrap();
        assert!(!format!("{k:?}").contains("AGE-SECRET"));
        assert!(AgeKeys::parse("# nothing\n").unwrap_err().contains("no age identity"));
        let e = AgeKeys::parse("AGE-SECRET-KEY-1NOTAKEY\n").unwrap_err();
        assert!(e.contains("line 1") && !e.contains("NOTAKEY"), "{e}");
    }

    #[test]
    fn the_default_rule_leaves_unencrypted_suffixes_alone() {
        let r = Rules::of(&Map::new()).unwrap();
        assert!(r.encrypted(&["stringData".into(), "password".into()]));
        assert!(!r.encrypted(&["stringData".into(), "user_unencrypted".into()]));
        let mut m = Map::new();
        m.insert("encrypted_regex".into(), "^(data|stringData)$".into());
        let r = Rules::of(&m).unwrap();
        assert!(r.encrypted(&["stringData".into(), "x".into()]));
        assert!(!r.encrypted(&["metadata".into(), "name".into()]));
    }
}
