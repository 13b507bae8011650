//! Errors that stop a repo from loading (exit code 2), each naming a file and, where one
//! exists, a line and column. Problems that still let the repo load are findings instead
//! (see `findings`).

use std::fmt;

/// A place in the repo: a repo-relative path with `/` separators, and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Loc {
    pub file: String,
    pub line: u32,
}

impl Loc {
    pub fn new(file: impl Into<String>, line: u32) -> Self {
        Loc { file: file.into(), line }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What went wrong, so callers and tests can tell cases apart without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The YAML does not parse.
    Yaml,
    /// A YAML document is a scalar or a list where an object is expected.
    NotObject,
    /// `apiVersion`/`kind` missing, or a Flux kind with an API version Flux never had.
    BadObject,
    /// A path named by the repo (spec.path, a kustomize resource, a patch file) is missing.
    MissingPath,
    /// Two Flux objects of the same kind share namespace and name.
    Duplicate,
    /// Following symlinks leads back to a directory already being read.
    SymlinkLoop,
    /// A kustomization includes itself, directly or through others.
    ResourceCycle,
    /// Nothing that looks like a Flux repo.
    NotFluxRepo,
    /// A file larger than the manifest size limit.
    TooLarge,
    /// A kustomize or Flux feature the native renderer does not implement.
    Unsupported,
    /// A kustomize input that kustomize itself rejects (bad patch, conflicting ids ...).
    Render,
    /// The file system refused (permissions, not UTF-8 ...).
    Io,
    /// A command-line argument that does not fit the repo.
    Usage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Repo-relative file (or directory) the error is about.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    /// Outer context, innermost first ("while rendering Kustomization flux-system/apps").
    pub context: Vec<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, file: None, line: None, column: None, message: message.into(), context: vec![] }
    }

    pub fn in_file(kind: ErrorKind, file: &str, message: impl Into<String>) -> Self {
        Error::new(kind, message).at_file(file)
    }

    pub fn at(kind: ErrorKind, loc: &Loc, message: impl Into<String>) -> Self {
        let mut e = Error::new(kind, message).at_file(&loc.file);
        e.line = Some(loc.line);
        e
    }

    pub fn at_file(mut self, file: &str) -> Self {
        if self.file.is_none() {
            self.file = Some(file.to_string());
        }
        self
    }

    /// Adds an outer layer of context, e.g. which Flux Kustomization was being rendered.
    pub fn context(mut self, ctx: impl Into<String>) -> Self {
        self.context.push(ctx.into());
        self
    }

    /// `file:line:column` as far as known.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
            (Some(l), None) => format!("{file}:{l}"),
            _ => file.clone(),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location() {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}", self.message)?;
        for c in &self.context {
            write!(f, "\n  {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
