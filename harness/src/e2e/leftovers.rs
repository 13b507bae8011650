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
    /// The machine (boot id and host name) the run ran on: a record from another machine
    /// or container sharing the state directory is not this run's to judge.
    #[serde(default)]
    pub host: String,
    /// The recording process's start time (clock ticks after boot): a pid that is alive but
    /// started at another time is a reused pid, and the run that recorded it is gone.
    #[serde(default)]
    pub started: Option<u64>,
}

impl Record {
    /// A record made by process `pid` of this machine.
    pub fn new(provider: &str, name: &str, pid: u32, kept: bool) -> Record {
        Record { provider: provider.into(), name: name.into(), pid, kept, host: machine(), started: start_time(pid) }
    }
}

/// This machine as a record names it: its boot id and host name.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    format!("{}/{}", read("/proc/sys/kernel/random/boot_id"), read("/proc/sys/kernel/hostname"))
}

/// When process `pid` started (field 22 of /proc/PID/stat), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
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
    let mut b = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.recursive(true).create(&dir).map_err(|e| io(&dir, e))?;
    let path = dir.join(format!("{name}.json"));
    let r = Record::new(provider, name, std::process::id(), false);
    write_record(&path, &r)?;
    Ok(path)
}

/// Writes a record, never through a symlink planted in its place.
fn write_record(path: &Path, r: &Record) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(serde_json::to_string(r).unwrap_or_default().as_bytes()).map_err(|e| io(path, e))
}

/// O_NOFOLLOW on Linux (the only platform the harness's clusters run on).
const fn libc_o_nofollow() -> i32 {
    0o400000
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
        let _ = write_record(record, &r);
    }
}

/// Is the process still there? Where that cannot be told (no /proc), it is taken as alive:
/// nothing is deleted on a guess.
fn alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Did the run that wrote `r` end? Only a record of this machine can say: its pid gone,
/// or running again as another process (started at another time).
fn ended(r: &Record) -> bool {
    // A record of an earlier version names no machine: judged by its pid, as it was then.
    if !r.host.is_empty() && r.host != machine() {
        return false;
    }
    if !alive(r.pid) {
        return true;
    }
    matches!((r.started, start_time(r.pid)), (Some(then), Some(now)) if then != now)
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
        // Only the harness's own names, each in the file named after it: a stray or
        // planted record cannot name a cluster of the user's.
        .filter(|(p, r)| {
            r.name.starts_with("flux-harness-") && p.file_stem().is_some_and(|s| s.to_string_lossy() == r.name)
        })
        .filter(|(_, r)| r.provider == prov.name() && !r.kept && ended(r))
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
        let _ = std::fs::remove_file(super::provider::sweep_kubeconfig(&r.name));
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
        let base = rest.trim_end_matches(".fetched").trim_end_matches(".plan");
        let parts: Vec<&str> = base.rsplitn(3, '-').collect();
        let Some(pid) = parts.get(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        // Only this user's directories (the temp directory is shared).
        let mine = e.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == own_uid());
        if parts.len() == 3 && mine && !alive(pid) && e.path().is_dir() && std::fs::remove_dir_all(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// This process's user id (the owner of what it creates).
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX)
}
