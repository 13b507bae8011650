//! Where a cluster's entry is: the `clusters/<name>` directories and the flux-system
//! Kustomization that syncs one, or one synthesized when the repo has none.

use super::*;

/// Every `clusters/<name>` directory of the repo (at any depth up to 7, hidden
/// directories and build outputs skipped), as `(name, path)`.
pub(super) fn cluster_dirs(files: &dyn Files) -> Vec<(String, String)> {
    let mut found = vec![];
    let mut stack = vec![(String::new(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = files.list(&dir) else { continue };
        for (name, kind) in entries {
            if kind != EntryKind::Dir || name.starts_with('.') || name == "node_modules" || name == "target" {
                continue;
            }
            let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            if files::file_name(&dir) == "clusters" {
                found.push((name, path.clone()));
            }
            if depth < 6 {
                stack.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// Finds the `clusters/ENV` directories.
pub fn find_cluster_dirs(files: &dyn Files, env: &str) -> Vec<String> {
    cluster_dirs(files).into_iter().filter(|(n, _)| n == env).map(|(_, p)| p).collect()
}

/// Names of every `clusters/*` directory, for "did you mean" messages.
pub fn list_clusters(files: &dyn Files) -> Vec<String> {
    let mut names: Vec<String> = cluster_dirs(files).into_iter().map(|(n, _)| n).collect();
    names.dedup();
    names
}

pub(super) fn resolve_entry_dir(files: &dyn Files, entry: &Entry) -> Result<String> {
    match entry {
        Entry::Cluster(env) => {
            let dirs = find_cluster_dirs(files, env);
            match dirs.len() {
                1 => Ok(dirs.into_iter().next().unwrap()),
                0 => {
                    let known = list_clusters(files);
                    Err(Error::new(
                        if known.is_empty() { ErrorKind::NotFluxRepo } else { ErrorKind::Usage },
                        if known.is_empty() {
                            format!(
                                "no clusters/{env} directory in the repository (and no clusters/ directory at all); is this a Flux repository? Use --path DIR to name the directory Flux syncs"
                            )
                        } else {
                            format!("no clusters/{env} directory; clusters in this repository: {}", known.join(", "))
                        },
                    ))
                }
                _ => Err(Error::new(
                    ErrorKind::Usage,
                    format!("several clusters/{env} directories: {}; choose one with --path", dirs.join(", ")),
                )),
            }
        }
        Entry::Path(p) => {
            let dir = files::join("", p).map_err(|m| Error::new(ErrorKind::Usage, m))?;
            match files.kind(&dir) {
                Some(EntryKind::Dir) => Ok(dir),
                Some(EntryKind::File) => Err(Error::in_file(ErrorKind::Usage, &dir, "--path must name a directory")),
                None => {
                    Err(Error::in_file(ErrorKind::MissingPath, files::display_dir(&dir), "directory does not exist"))
                }
            }
        }
    }
}

pub(super) fn synthesized_entry(dir: &str) -> Kustomization {
    let loc = Loc::new(format!("{}/ (synthesized flux-system)", files::display_dir(dir)), 1);
    Kustomization {
        name: "flux-system".into(),
        namespace: "flux-system".into(),
        api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
        path: dir.into(),
        source: Ref { kind: "GitRepository".into(), namespace: "flux-system".into(), name: "flux-system".into() },
        depends_on: vec![],
        interval: Some("10m".into()),
        retry_interval: None,
        timeout: None,
        wait: false,
        health_checks: vec![],
        prune: true,
        suspend: false,
        decryption: false,
        substitute: vec![],
        substitute_from: vec![],
        overlay: FluxOverlay::default(),
        origin: loc,
        raw: serde_json::Value::Null,
    }
}
