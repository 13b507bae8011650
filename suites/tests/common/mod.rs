//! Helpers shared by the suites.
#![allow(dead_code)]

pub mod repo;

use std::path::{Path, PathBuf};

/// The project root (the suites crate sits one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn example(name: &str) -> PathBuf {
    project_root().join("examples").join(name)
}

/// Writes a tree of files given as (relative path, content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, String)]) {
    for (p, text) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
}

/// Copies a directory tree (files and directories only) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// An e2e request as the CLI builds it, with a generous timeout: a passing run ends when all
/// is Ready; the timeout only bounds a failing one on a loaded machine.
pub fn e2e_request(
    repo: PathBuf,
    cluster: &str,
    provider: harness::e2e::run::Provider,
    artifacts: &Path,
) -> harness::e2e::run::E2eRequest {
    harness::e2e::run::E2eRequest {
        plan: harness::commands::PlanRequest {
            repo,
            entry: Some(harness::model::Entry::Cluster(cluster.into())),
            sources: vec![],
            renderer: harness::commands::RendererChoice::Native,
        },
        provider,
        context: None,
        keep: false,
        // Generous: a passing run ends when all is Ready; this only bounds a failing one
        // on a loaded machine (at 600x, 7,200 virtual seconds are 12 real ones).
        timeout_seconds: 7200.0,
        age_key: None,
        assume_decryption: false,
        artifacts: artifacts.to_path_buf(),
        speed: 600.0,
        seed: 1,
        layers_snapshot: None,
        run_id: "test".into(),
        allow_retries: false,
        install_cni: false,
        install_flux: false,
    }
}
