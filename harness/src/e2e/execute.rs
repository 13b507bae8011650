//! Executing a bootstrap plan: files written, commands run off the async runtime (so
//! Ctrl-C is seen while one runs), and the cleanup guard that runs the cleanup commands in
//! reverse order on success, failure, panic or cancellation, unless `--keep`.

use super::plan::{Plan, Step};
use super::run::Progress;
use crate::error::{Error, ErrorKind, Result};
use std::path::Path;

/// Runs cleanup steps in reverse order when dropped (success, failure, panic), unless kept.
pub(super) struct Cleanup {
    pub(super) steps: Vec<crate::exec::Cmd>,
    pub(super) keep: bool,
    pub(super) done: bool,
    /// The created cluster's record (`leftovers`): removed once the cluster is deleted,
    /// marked kept with `--keep`, left for the next run to sweep if deleting failed.
    pub(super) record: Option<std::path::PathBuf>,
}

impl Cleanup {
    pub(super) fn new(steps: Vec<crate::exec::Cmd>, keep: bool) -> Self {
        Cleanup { steps, keep, done: false, record: None }
    }

    pub(super) fn run(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if self.keep {
            if let Some(r) = &self.record {
                super::leftovers::mark_kept(r);
            }
            return;
        }
        // An interrupted run may still have a command going (kind create ...).
        crate::exec::kill_running();
        let mut ok = true;
        for cmd in self.steps.iter().rev() {
            if let Err(e) = cmd.output() {
                ok = false;
                // The terminal may be gone (SIGHUP): never panic while cleaning up.
                let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("cleanup: {e}\n"));
            }
        }
        if ok && let Some(r) = &self.record {
            super::leftovers::release(r);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// As [`execute_step`], with commands on a blocking thread so that Ctrl-C (which cancels
/// the run's future and so drops the cleanup guard) is seen while a long command runs.
pub(super) async fn execute_step_async(s: &Step, guard: &mut Cleanup, progress: Progress<'_>) -> Result<()> {
    match s {
        Step::Run { what, cmd, cleanup: false } => {
            progress(what);
            blocking(cmd).await.map(|_| ()).map_err(|e| e.context(format!("while trying to {what}")))
        }
        Step::IfAbsent { what, check, then, undo } => {
            progress(what);
            let found = blocking(check).await.map_err(|e| e.context(format!("while checking whether to {what}")))?;
            if !found.trim().is_empty() {
                progress("  present: left as it is");
                return Ok(());
            }
            for c in then {
                blocking(c).await.map_err(|e| e.context(format!("while trying to {what}")))?;
            }
            guard.steps.extend(undo.iter().rev().cloned());
            Ok(())
        }
        other => execute_step(other, guard, progress),
    }
}

async fn blocking(cmd: &crate::exec::Cmd) -> Result<String> {
    let c = cmd.clone();
    tokio::task::spawn_blocking(move || c.output()).await.map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?
}

pub(super) fn execute_step(s: &Step, guard: &mut Cleanup, progress: Progress<'_>) -> Result<()> {
    match s {
        Step::Write { path, content, .. } => {
            if let Some(parent) = Path::new(path).parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", parent.display())))?;
            }
            std::fs::write(path, content).map_err(|e| Error::new(ErrorKind::Io, format!("{path}: {e}")))?;
            // The k3d entrypoint script runs inside the nodes.
            if path.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::new(ErrorKind::Io, format!("{path}: {e}")))?;
            }
            Ok(())
        }
        Step::Run { cmd, cleanup: true, .. } => {
            if !guard.steps.contains(cmd) {
                guard.steps.push(cmd.clone());
            }
            Ok(())
        }
        Step::Run { what, cmd, .. } => {
            progress(what);
            cmd.output().map(|_| ()).map_err(|e| e.context(format!("while trying to {what}")))
        }
        Step::IfAbsent { what, check, then, undo } => {
            progress(what);
            let found = check.output().map_err(|e| e.context(format!("while checking whether to {what}")))?;
            if !found.trim().is_empty() {
                progress("  present: left as it is");
                return Ok(());
            }
            for c in then {
                c.output().map_err(|e| e.context(format!("while trying to {what}")))?;
            }
            guard.steps.extend(undo.iter().rev().cloned());
            Ok(())
        }
        Step::Save { what, cmd, path, path_no_prune, restore, otherwise } => {
            progress(what);
            let text = cmd.output().map_err(|e| e.context(format!("while trying to {what}")))?;
            let saved = restorable(path, &text)?;
            let mut quiet = saved.clone();
            for o in quiet.iter_mut().filter(|o| o["kind"] == "Kustomization") {
                o["spec"]["prune"] = false.into();
            }
            for (p, objects) in [(path, &saved), (path_no_prune, &quiet)] {
                std::fs::write(p, crate::yaml::to_yaml_stream(objects.iter()))
                    .map_err(|e| Error::new(ErrorKind::Io, format!("{p}: {e}")))?;
            }
            // Registered before the entry is applied: a failure from here on still restores.
            // The guard runs its steps last first, so they go in reversed.
            let cmds = if saved.is_empty() { otherwise } else { restore };
            guard.steps.extend(cmds.iter().rev().cloned());
            Ok(())
        }
    }
}

/// The objects of `kubectl get -o yaml` (one object or a List) as they can be applied
/// again: without what the server sets (uid, resourceVersion, timestamps, managed fields,
/// status).
fn restorable(path: &str, text: &str) -> Result<Vec<serde_json::Value>> {
    let mut out = vec![];
    for d in crate::yaml::parse_docs(path, text)? {
        let items = match d.value.get("items").and_then(|i| i.as_array()) {
            Some(items) => items.clone(),
            None if d.value.is_object() => vec![d.value.clone()],
            None => vec![],
        };
        for mut o in items {
            if let Some(md) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "finalizers"] {
                    md.remove(k);
                }
            }
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
            out.push(o);
        }
    }
    Ok(out)
}

pub(super) fn cleanup_commands(plan: &Plan) -> Vec<crate::exec::Cmd> {
    plan.steps()
        .filter_map(|s| if let Step::Run { cmd, cleanup: true, .. } = s { Some(cmd.clone()) } else { None })
        .collect()
}

/// Executes plan steps (used by the real providers and by tests with fake executables):
/// writes files, runs commands, and runs cleanup steps in reverse order afterwards, also
/// when a step fails or the thread panics, unless `keep`.
pub fn execute(plan: &Plan, keep: bool) -> Result<()> {
    let mut cleanup = Cleanup::new(cleanup_commands(plan), keep);
    for s in plan.steps() {
        execute_step(s, &mut cleanup, &|_| {})?;
    }
    cleanup.run();
    Ok(())
}
