//! A git revision of the repo under test, as a tree the loader reads like any other.
//!
//! Nothing of the user's checkout changes: not the index, HEAD, branches or working tree.
//! Only the repo's own subtree is read: `--repo examples/netcorp-infra` inside a larger
//! checkout reads `REV:examples/netcorp-infra`, the same directory at that revision.
//!
//! The usual tree (text files, no symlinks, no submodules) is read into memory with two
//! git commands (`ls-tree`, `cat-file --batch`): writing a few hundred files out costs
//! more than the whole `plan`. Anything else (symlinks, whose meaning is the file system's,
//! binary or oversized files, and the kubectl renderer, which runs on a directory) is
//! exported into a throwaway directory with a private index file (`read-tree` into
//! `GIT_INDEX_FILE`, then `checkout-index --prefix`), so the loader sees exactly what a
//! checkout would hold.

use crate::error::{Error, ErrorKind, Result};
use crate::exec::Cmd;
use crate::files::MemFiles;
use std::path::{Path, PathBuf};

/// A revision read for the loader.
pub enum Tree {
    Memory(MemFiles),
    Disk(Exported),
}

/// One revision: what the user asked for, the commit, and its tree.
pub struct Revision {
    pub rev: String,
    pub commit: String,
    pub tree: Tree,
}

/// Reads the repo's directory at `rev`: in memory when it can be, else exported under
/// `scratch` (always when `on_disk`).
pub fn read(repo: &Path, rev: &str, scratch: &Path, on_disk: bool) -> Result<Revision> {
    let (top, prefix) = locate(repo)?;
    let commit = resolve_in(&top, rev)?;
    if !on_disk && let Some(files) = in_memory(&top, &prefix, &commit, rev)? {
        return Ok(Revision { rev: rev.into(), commit, tree: Tree::Memory(files) });
    }
    let e = export(repo, rev, scratch)?;
    Ok(Revision { rev: rev.into(), commit, tree: Tree::Disk(e) })
}

fn treeish(commit: &str, prefix: &str) -> String {
    if prefix.is_empty() { commit.to_string() } else { format!("{commit}:{}", prefix.trim_end_matches('/')) }
}

fn missing_dir(rev: &str, commit: &str, prefix: &str) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("{rev} ({}) has no directory {prefix}: the repo did not exist at that revision", &commit[..12]),
    )
}

/// The tree as files in memory, or `None` when it holds something only a checkout shows
/// faithfully (a symlink, a submodule, a binary or oversized file).
fn in_memory(top: &Path, prefix: &str, commit: &str, rev: &str) -> Result<Option<MemFiles>> {
    let d = top.display().to_string();
    let listing = Cmd::new("git", &["-C", &d, "ls-tree", "-r", "-z", "--end-of-options", &treeish(commit, prefix)])
        .output_bytes(None)
        .map_err(|_| missing_dir(rev, commit, prefix))?;
    let mut paths = vec![];
    let mut ids = Vec::new();
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        // `<mode> SP <type> SP <object> TAB <path>`
        let Some(tab) = entry.iter().position(|&b| b == b'\t') else { return Ok(None) };
        let head = String::from_utf8_lossy(&entry[..tab]);
        let mut words = head.split(' ');
        let (mode, kind, oid) = (words.next(), words.next(), words.next());
        let (Some(mode), Some("blob"), Some(oid)) = (mode, kind, oid) else { return Ok(None) };
        if mode != "100644" && mode != "100755" {
            return Ok(None);
        }
        let Ok(path) = std::str::from_utf8(&entry[tab + 1..]) else { return Ok(None) };
        paths.push(path.to_string());
        ids.extend_from_slice(oid.as_bytes());
        ids.push(b'\n');
    }
    let out = Cmd::new("git", &["-C", &d, "cat-file", "--batch"]).output_bytes(Some(ids))?;
    let mut files = MemFiles::new();
    let mut rest = out.as_slice();
    for path in &paths {
        // `<oid> SP blob SP <size> LF <contents> LF`
        let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let size: usize = match String::from_utf8_lossy(&rest[..nl]).rsplit(' ').next().and_then(|s| s.parse().ok()) {
            Some(n) if rest.len() >= nl + 1 + n => n,
            _ => return Err(Error::new(ErrorKind::Io, format!("git cat-file gave a short answer for {path}"))),
        };
        if size > crate::yaml::MAX_FILE_BYTES {
            return Ok(None);
        }
        let Ok(text) = std::str::from_utf8(&rest[nl + 1..nl + 1 + size]) else { return Ok(None) };
        files.insert(path, text);
        rest = rest.get(nl + 1 + size + 1..).unwrap_or(&[]);
    }
    Ok(Some(files))
}

/// One exported revision. The directory is removed when this is dropped.
#[derive(Debug)]
pub struct Exported {
    /// The revision as the user wrote it.
    pub rev: String,
    /// The full commit SHA it resolved to.
    pub commit: String,
    /// The repo's directory at that revision.
    pub dir: PathBuf,
    root: PathBuf,
}

impl Drop for Exported {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let d = dir.display().to_string();
    let mut all = vec!["-C", d.as_str()];
    all.extend_from_slice(args);
    Cmd::new("git", &all).with_env(env).output().map(|s| s.trim_end().to_string())
}

/// Where `repo` sits in its git checkout: (top level, prefix like `examples/netcorp-infra/`).
pub fn locate(repo: &Path) -> Result<(PathBuf, String)> {
    let not_git = |e: Error| {
        Error::new(
            ErrorKind::Usage,
            format!("{} is not inside a git repository, so it has no revision to compare with ({e})", repo.display()),
        )
    };
    let out = git(repo, &["rev-parse", "--show-toplevel", "--show-prefix"], &[]).map_err(not_git)?;
    let mut lines = out.lines();
    let top = lines.next().unwrap_or_default();
    Ok((PathBuf::from(top), lines.next().unwrap_or_default().to_string()))
}

/// The full SHA of `rev` in the checkout holding `repo`, or an error naming the revision.
pub fn resolve(repo: &Path, rev: &str) -> Result<String> {
    resolve_in(&locate(repo)?.0, rev)
}

fn resolve_in(top: &Path, rev: &str) -> Result<String> {
    if rev.starts_with('-') {
        return Err(Error::new(ErrorKind::Usage, format!("`{rev}` is not a git revision")));
    }
    git(top, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")], &[]).map_err(
        |_| Error::new(ErrorKind::Usage, format!("`{rev}` is not a commit of the git repository at {}", top.display())),
    )
}

/// Exports the repo's directory at `rev` into a new directory under `scratch`.
pub fn export(repo: &Path, rev: &str, scratch: &Path) -> Result<Exported> {
    let (top, prefix) = locate(repo)?;
    let commit = resolve_in(&top, rev)?;
    let short = &commit[..commit.len().min(12)];
    let root = scratch.join(format!("rev-{short}-{}", std::process::id()));
    let io = |e: std::io::Error, p: &Path| Error::new(ErrorKind::Io, format!("{}: {e}", p.display()));
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| io(e, &root))?;
    }
    let tree = root.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| io(e, &tree))?;
    let exported = Exported { rev: rev.into(), commit: commit.clone(), dir: tree.clone(), root: root.clone() };
    let index = root.join("index").display().to_string();
    let env = [("GIT_INDEX_FILE", index.as_str())];
    git(&top, &["read-tree", "--end-of-options", &treeish(&commit, &prefix)], &env)
        .map_err(|_| missing_dir(rev, &commit, &prefix))?;
    let dest = format!("{}/", tree.display());
    git(&top, &["checkout-index", "--all", "--force", &format!("--prefix={dest}")], &env)
        .map_err(|e| e.context(format!("while exporting {rev} ({short})")))?;
    Ok(exported)
}
