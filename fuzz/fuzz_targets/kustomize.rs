//! The native kustomize renderer on an arbitrary directory: the input is split into a
//! kustomization file and up to three resources or patches it may name, at `---FILE---`.
#![no_main]
use harness::files::MemFiles;
use harness::kustomize::{FluxOverlay, build_flux_path};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["kustomization.yaml", "a.yaml", "patch.yaml", "base/kustomization.yaml"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut files = MemFiles::new();
    for (name, part) in NAMES.iter().zip(text.split("---FILE---\n")) {
        files.insert(name, part);
    }
    let _ = build_flux_path(&files, "", &FluxOverlay::default());
});
