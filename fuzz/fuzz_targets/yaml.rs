//! The YAML loader on arbitrary text: documents or an error naming the place, never a
//! panic, a hang or unbounded memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = harness::yaml::parse_docs("fuzz.yaml", text);
        let _ = harness::kustomize::objects_from_text("fuzz.yaml", text);
    }
});
