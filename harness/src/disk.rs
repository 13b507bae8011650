//! The real file system behind [`Files`]. Paths stay inside the repo root: a symlink that
//! points outside is refused, as Flux's secure file system refuses it.

use crate::error::{Error, ErrorKind, Result};
use crate::files::{EntryKind, Files};
use crate::yaml::MAX_FILE_BYTES;
use std::path::{Path, PathBuf};

pub struct DiskFiles {
    root: PathBuf,
    canonical_root: PathBuf,
    /// Directory listings already read: a load lists the repo several times (the cluster
    /// search, the bootstrap helmfile scan, every build), and one load should see one tree.
    listed: std::sync::Mutex<std::collections::HashMap<String, Vec<(String, EntryKind)>>>,
}

impl DiskFiles {
    /// Opens a repo directory. Errors when it does not exist or is not a directory.
    pub fn open(root: &Path) -> Result<Self> {
        let shown = root.display().to_string();
        let meta = std::fs::metadata(root)
            .map_err(|e| Error::in_file(ErrorKind::MissingPath, &shown, format!("cannot open repository: {e}")))?;
        if !meta.is_dir() {
            return Err(Error::in_file(ErrorKind::NotFluxRepo, &shown, "not a directory"));
        }
        let canonical_root = root
            .canonicalize()
            .map_err(|e| Error::in_file(ErrorKind::Io, &shown, format!("cannot resolve repository path: {e}")))?;
        Ok(DiskFiles { root: root.to_path_buf(), canonical_root, listed: Default::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() { self.root.clone() } else { self.root.join(path) }
    }

    fn list_uncached(&self, path: &str) -> Result<Vec<(String, EntryKind)>> {
        self.check_inside(path)?;
        let rd = std::fs::read_dir(self.full(path)).map_err(|e| io_error(path, &e))?;
        let mut out = vec![];
        for entry in rd {
            let entry = entry.map_err(|e| io_error(path, &e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let child = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            let meta = std::fs::metadata(entry.path()).map_err(|e| io_error(&child, &e))?;
            out.push((name, if meta.is_dir() { EntryKind::Dir } else { EntryKind::File }));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn check_inside(&self, path: &str) -> Result<PathBuf> {
        let full = self.full(path);
        let canon = full.canonicalize().map_err(|e| io_error(path, &e))?;
        if !canon.starts_with(&self.canonical_root) {
            return Err(Error::in_file(
                ErrorKind::Io,
                path,
                "symlink points outside the repository; Flux cannot follow it",
            ));
        }
        Ok(canon)
    }
}

fn io_error(path: &str, e: &std::io::Error) -> Error {
    // ELOOP: too many levels of symbolic links.
    if e.raw_os_error() == Some(40) {
        return Error::in_file(ErrorKind::SymlinkLoop, path, "symlink loop: following the links never reaches a file");
    }
    let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::MissingPath } else { ErrorKind::Io };
    Error::in_file(kind, path, e.to_string())
}

impl Files for DiskFiles {
    fn read(&self, path: &str) -> Result<String> {
        let canon = self.check_inside(path)?;
        let meta = std::fs::metadata(&canon).map_err(|e| io_error(path, &e))?;
        // By type, before opening: reading a FIFO blocks until a writer comes, a device
        // never ends. Neither is a manifest.
        if !meta.is_file() {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            let what = if t.is_fifo() {
                "a named pipe (FIFO)"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(Error::in_file(
                ErrorKind::BadObject,
                path,
                format!("{what}, not a manifest: refused without reading it"),
            ));
        }
        if meta.len() as usize > MAX_FILE_BYTES {
            return Err(Error::in_file(
                ErrorKind::TooLarge,
                path,
                format!(
                    "file is {:.1} MiB, larger than the {} MiB limit for one manifest file",
                    meta.len() as f64 / 1048576.0,
                    MAX_FILE_BYTES / 1048576
                ),
            ));
        }
        let bytes = std::fs::read(&canon).map_err(|e| io_error(path, &e))?;
        String::from_utf8(bytes).map_err(|_| Error::in_file(ErrorKind::Io, path, "file is not UTF-8 text"))
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        let meta = std::fs::metadata(self.full(path)).ok()?;
        Some(if meta.is_dir() { EntryKind::Dir } else { EntryKind::File })
    }

    fn list(&self, path: &str) -> Result<Vec<(String, EntryKind)>> {
        let listed = || self.listed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = listed().get(path) {
            return Ok(v.clone());
        }
        let v = self.list_uncached(path)?;
        listed().insert(path.to_string(), v.clone());
        Ok(v)
    }

    fn disk_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn identity(&self, path: &str) -> String {
        self.full(path).canonicalize().map(|p| p.display().to_string()).unwrap_or_else(|_| path.to_string())
    }
}
