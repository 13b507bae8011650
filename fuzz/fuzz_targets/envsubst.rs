//! Flux's postBuild substitution on arbitrary text and variables: the first line holds
//! `NAME=value` pairs separated by `;`, the rest is the manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (head, body) = text.split_once('\n').unwrap_or(("", text));
    let vars: BTreeMap<String, String> = head
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = harness::flux::substitute::substitute(body, &vars);
});
