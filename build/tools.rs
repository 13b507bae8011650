//! Build script of the test crates: which reference tools this machine has. A test that
//! needs one is `#[cfg_attr(not(have_TOOL), ignore = "...")]`, so without the tool the
//! runner reports it as skipped (never as passed), and `.ci/run` refuses to run without
//! the tools CI requires. Looks at PATH only; spawns nothing.

use std::path::PathBuf;

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    // A tool installed after the first build (apt, a download into ~/.local/bin) changes
    // its directory: look again then, or its tests would stay skipped.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path).filter(|d| d.is_dir()) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    for (cfg, names) in [
        ("have_kubectl", &["kubectl"][..]),
        ("have_git", &["git"][..]),
        ("have_sops", &["sops"][..]),
        ("have_age", &["age-keygen"][..]),
        ("have_chromium", &["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"][..]),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if let Some(p) = find(names) {
            println!("cargo::rustc-cfg={cfg}");
            if cfg == "have_chromium" {
                println!("cargo::rustc-env=HARNESS_CHROMIUM={}", p.display());
            }
        }
    }
}
