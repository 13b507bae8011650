//! What a crashed run leaves behind, found and removed by the next run, and only what the
//! harness can prove it made. Before creating a kind or k3d cluster a run records it
//! (provider, name, pid) in the harness's state directory; the cleanup guard removes the
//! record once the cluster is deleted, and `--keep` marks it kept. A later run deletes the
//! clusters of records whose process is gone (killed, power cut) and that are not kept;
//! a cluster without a record is never touched, whatever its name. The served trees of dead
//! runs (copies of a working tree, secrets included) are removed from the temp directory.

use super::provider::ClusterProvider;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub provider: String,
    pub name: String,
    pub pid: u32,
    #[serde(default)]
    pub kept: bool,
}

/// `HARNESS_STATE_DIR`, else `$XDG_STATE_HOME/flux-harness/clusters`, else
/// `~/.local/state/flux-harness/clusters`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HARNESS_STATE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/state")
    });
    base.join("flux-harness/clusters")
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::in_file(ErrorKind::Io, &p.display().to_string(), e.to_string())
}

/// Records a cluster this run is about to create (before `kind create`: a run killed
/// during the create still leaves its record).
pub fn register(provider: &str, name: &str) -> Result<PathBuf> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let path = dir.join(format!("{name}.json"));
    let r = Record { provider: provider.into(), name: name.into(), pid: std::process::id(), kept: false };
    std::fs::write(&path, serde_json::to_string(&r).unwrap_or_default()).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// The cluster is gone: so is its record.
pub fn release(record: &Path) {
    let _ = std::fs::remove_file(record);
}

/// `--keep`: the cluster stays, and no later run may sweep it.
pub fn mark_kept(record: &Path) {
    let Ok(text) = std::fs::read_to_string(record) else { return };
    if let Ok(mut r) = serde_json::from_str::<Record>(&text) {
        r.kept = true;
        let _ = std::fs::write(record, serde_json::to_string(&r).unwrap_or_default());
    }
}

/// Is the process still there? Where that cannot be told (no /proc), it is taken as alive:
/// nothing is deleted on a guess.
fn alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes the clusters of `prov`'s kind that dead runs recorded and did not keep; says
/// what it did. A record whose cluster no longer exists is dropped.
pub fn sweep(prov: &dyn ClusterProvider) -> Vec<String> {
    let mut said = vec![];
    let Ok(entries) = std::fs::read_dir(state_dir()) else { return said };
    let mut records: Vec<(PathBuf, Record)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let r = serde_json::from_str::<Record>(&std::fs::read_to_string(&p).ok()?).ok()?;
            Some((p, r))
        })
        .filter(|(_, r)| r.provider == prov.name() && !r.kept && !alive(r.pid))
        .collect();
    if records.is_empty() {
        return said;
    }
    records.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let Some(existing) = prov.list_clusters().and_then(|c| c.output().ok()) else { return said };
    let names: Vec<&str> = existing.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for (path, r) in records {
        if !names.contains(&r.name.as_str()) {
            release(&path);
            continue;
        }
        let failed = prov.delete_named(&r.name).iter().find_map(|c| c.output().err());
        match failed {
            None => {
                release(&path);
                said.push(format!(
                    "removed the {} cluster {} that run {} created and could not delete (it ended without cleaning up)",
                    r.provider, r.name, r.pid
                ));
            }
            Some(e) => said.push(format!("could not remove the leftover {} cluster {}: {e}", r.provider, r.name)),
        }
    }
    said
}

/// Removes the served trees and fetched copies (`flux-harness-<run>-<pid>-<n>`) of runs
/// whose process is gone.
pub fn sweep_scratch(tmp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(tmp) else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("flux-harness-") else { continue };
        let base = rest.trim_end_matches(".fetched");
        let parts: Vec<&str> = base.rsplitn(3, '-').collect();
        let Some(pid) = parts.get(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if parts.len() == 3 && !alive(pid) && e.path().is_dir() && std::fs::remove_dir_all(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}
