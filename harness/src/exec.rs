//! Every child process the harness starts goes through here, so that command lines are
//! logged the same way, errors carry the command (ready to paste) and its output, and a
//! dry run can print the plan instead of running it.

use crate::error::{Error, ErrorKind, Result};
use std::path::Path;

/// A command line, kept as words for display and for running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub dir: Option<String>,
    /// Extra environment variables (shown in [`Cmd::display`]; never put secrets here).
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Cmd { program: program.into(), args: args.iter().map(|s| s.to_string()).collect(), dir: None, env: vec![] }
    }

    pub fn with_env(mut self, env: &[(&str, &str)]) -> Self {
        self.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.display().to_string());
        self
    }

    /// The command as a user would type it.
    pub fn display(&self) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{k}={}", shell_quote(v)));
        let words: Vec<String> =
            env.chain(std::iter::once(&self.program).chain(&self.args).map(|w| shell_quote(w))).collect();
        match &self.dir {
            Some(d) => format!("(cd {} && {})", shell_quote(d), words.join(" ")),
            None => words.join(" "),
        }
    }

    /// Runs to completion and returns stdout. A failure carries the command and stderr.
    /// While it runs, [`kill_running`] can stop it (an interrupted run).
    pub fn output(&self) -> Result<String> {
        let out = self.output_bytes(None)?;
        String::from_utf8(out)
            .map_err(|_| Error::new(ErrorKind::Io, format!("`{}` printed non-UTF-8 output", self.display())))
    }

    /// [`Cmd::output`] with bytes on stdin and stdout as bytes (git's object streams).
    pub fn output_bytes(&self, stdin: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let mut e = duct::cmd(&self.program, &self.args).stdout_capture().stderr_capture().unchecked();
        if let Some(input) = stdin {
            e = e.stdin_bytes(input);
        }
        if let Some(d) = &self.dir {
            e = e.dir(d);
        }
        for (k, v) in &self.env {
            e = e.env(k, v);
        }
        let handle = std::sync::Arc::new(
            e.start().map_err(|err| Error::new(ErrorKind::Io, format!("cannot run `{}`: {err}", self.display())))?,
        );
        RUNNING.lock().unwrap().push(handle.clone());
        let out = handle.wait().cloned();
        RUNNING.lock().unwrap().retain(|h| !std::sync::Arc::ptr_eq(h, &handle));
        let out = out.map_err(|err| Error::new(ErrorKind::Io, format!("cannot run `{}`: {err}", self.display())))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Render,
                format!(
                    "`{}` failed ({}):\n{}",
                    self.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(out.stdout)
    }
}

impl Cmd {
    /// Runs with the terminal's stdin, stdout and stderr (a build the user watches) and
    /// returns its exit code.
    pub fn status(&self) -> Result<i32> {
        let mut e = duct::cmd(&self.program, &self.args).unchecked();
        if let Some(d) = &self.dir {
            e = e.dir(d);
        }
        for (k, v) in &self.env {
            e = e.env(k, v);
        }
        let out =
            e.run().map_err(|err| Error::new(ErrorKind::Io, format!("cannot run `{}`: {err}", self.display())))?;
        Ok(out.status.code().unwrap_or(1))
    }
}

/// Commands running now, so an interrupted run can stop them before cleaning up.
static RUNNING: std::sync::Mutex<Vec<std::sync::Arc<duct::Handle>>> = std::sync::Mutex::new(Vec::new());

/// Set once the run was interrupted (Ctrl-C, SIGTERM, SIGHUP).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The run was interrupted: what is running is killed, and long checks stop at their next
/// step ([`stopping`]) so that the cleanup guards run soon. Commands still start (the
/// cleanup's own).
pub fn stop() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    kill_running();
}

/// Whether [`stop`] was called.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Kills every command started through [`Cmd::output`] that is still running.
pub fn kill_running() {
    let handles: Vec<_> = RUNNING.lock().unwrap().drain(..).collect();
    for h in handles {
        let _ = h.kill();
    }
}

pub fn shell_quote(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Is a program on PATH? (Used to skip oracle tests with a message, never silently.)
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// `kubectl kustomize DIR` with Flux's load restrictions (none inside the repo).
pub fn kubectl_kustomize(dir: &Path) -> Result<String> {
    let d = dir.display().to_string();
    Cmd::new("kubectl", &["kustomize", "--load-restrictor=LoadRestrictionsNone", &d]).output()
}

/// Runs a CGI program (git http-backend) with `env`, feeding `stdin`, and returns its
/// whole output (headers, blank line, body). Blocking: call from `spawn_blocking`.
pub fn cgi(program: &str, args: &[&str], env: &[(String, String)], stdin: Vec<u8>) -> Result<Vec<u8>> {
    let mut e = duct::cmd(program, args).stdin_bytes(stdin).stdout_capture().stderr_capture().unchecked();
    for (k, v) in env {
        e = e.env(k, v);
    }
    let out = e.run().map_err(|err| Error::new(ErrorKind::Io, format!("cannot run `{program}`: {err}")))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("`{program}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(out.stdout)
}
