//! The path a real cluster takes, for every provider: the working tree (uncommitted
//! changes included) committed to a throwaway repository and served by the harness's git
//! server, with the files that would re-point the harness's source rewritten in that
//! commit only; on sim, the tree fetched back over HTTP with `git clone` as
//! source-controller does, and the model built from what was fetched. After the run, the
//! entry's GitRepository must still pull from the harness at the served commit.

use super::assert::Violation;
use super::git::GitServer;
use super::plan::{self, Rewrite};
use super::run::{E2eRequest, Progress, Provider};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::Cmd;
use crate::model::RepoModel;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a run keeps its served repository and fetched copy: outside the repo under test
/// (a snapshot must not contain itself), unique to the run (runs go in parallel), removed
/// when the run ends.
pub fn scratch(run_id: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("flux-harness-{run_id}-{}-{n}", std::process::id()))
}

/// The served snapshot's rewrites (see [`plan::served_rewrites`]) and the repo's e2e
/// profile ([`super::profile`]), kept in `out` for the report; `HARNESS_NO_REWRITE=1` turns
/// the source rewrites off to show what the bootstrap would do without them.
pub fn rewrites(
    req: &E2eRequest,
    model: &RepoModel,
    url: &str,
    branch: &str,
    out: &std::cell::RefCell<Vec<Rewrite>>,
) -> Result<Vec<(String, String)>> {
    let root = req.plan.repo.clone();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    let mut rw = vec![];
    if !std::env::var("HARNESS_NO_REWRITE").is_ok_and(|v| v == "1") {
        rw = plan::served_rewrites(model, &read, url, branch);
        if req.provider == Provider::Existing {
            no_prune(model, &read, &mut rw);
        } else if super::secrets::age_key_file(req)?.is_some() {
            decryption_secret(model, &read, &mut rw);
        }
    }
    let config = crate::commands::load_config(&crate::disk::DiskFiles::open(&root)?)?;
    super::profile::apply(model, &config.e2e, &read, &|d| root.join(d).is_dir(), &mut rw)?;
    let files = rw.iter().map(|r| (r.path.clone(), r.content.clone())).collect();
    *out.borrow_mut() = rw;
    Ok(files)
}

/// On a cluster the harness did not create, no Kustomization of the served tree prunes:
/// the tree under test must not garbage-collect what the cluster runs (its first reconcile
/// would otherwise turn the entry's `prune: false` back on, and every child prunes on its own).
fn no_prune(model: &RepoModel, read: &dyn Fn(&str) -> Option<String>, rw: &mut Vec<Rewrite>) {
    edit_kustomizations(
        model,
        read,
        rw,
        &|k| k.spec.prune,
        &|v| {
            let on = v["spec"]["prune"] == true;
            if on {
                v["spec"]["prune"] = false.into();
            }
            on
        },
        &|names| format!("prune: false on Kustomization {} (an existing cluster)", names.join(", ")),
    );
}

/// On a cluster the harness makes with a key, a Kustomization that decrypts without a
/// `secretRef` (its production controller has keys of its own: KMS, a mounted key) is given
/// the Secret the harness makes from the key in its namespace, or it could not decrypt.
fn decryption_secret(model: &RepoModel, read: &dyn Fn(&str) -> Option<String>, rw: &mut Vec<Rewrite>) {
    edit_kustomizations(
        model,
        read,
        rw,
        &|k| k.spec.decryption && k.spec.raw.pointer("/spec/decryption/secretRef").is_none(),
        &|v| {
            let add = v["spec"]["decryption"].is_object() && v["spec"]["decryption"].get("secretRef").is_none();
            if add {
                v["spec"]["decryption"]["secretRef"] = serde_json::json!({"name": plan::DECRYPTION_SECRET});
            }
            add
        },
        &|names| {
            format!(
                "decryption.secretRef {} on Kustomization {} (no secretRef: the test cluster's controller has only the harness's key)",
                plan::DECRYPTION_SECRET,
                names.join(", ")
            )
        },
    );
}

/// Edits, in the files that define them, the Kustomization documents `edit` changes (of the
/// model's Kustomizations `pick` selects), as rewrites of the served tree.
fn edit_kustomizations(
    model: &RepoModel,
    read: &dyn Fn(&str) -> Option<String>,
    rw: &mut Vec<Rewrite>,
    pick: &dyn Fn(&crate::model::KustomizationNode) -> bool,
    edit: &dyn Fn(&mut serde_json::Value) -> bool,
    what: &dyn Fn(&[String]) -> String,
) {
    let mut files: Vec<&str> = model
        .kustomizations
        .iter()
        .filter(|k| pick(k) && !k.synthesized)
        .map(|k| k.spec.origin.file.as_str())
        .collect();
    files.sort();
    files.dedup();
    for file in files {
        let at = rw.iter().position(|r| r.path == file);
        let Some(text) = at.map(|i| rw[i].content.clone()).or_else(|| read(file)) else { continue };
        let Ok(mut docs) = crate::yaml::parse_docs(file, &text) else { continue };
        let mut names = vec![];
        for d in &mut docs {
            let v = &mut d.value;
            if v["kind"] == "Kustomization"
                && v["apiVersion"].as_str().is_some_and(|a| a.starts_with("kustomize.toolkit.fluxcd.io/"))
                && edit(v)
            {
                names.push(v["metadata"]["name"].as_str().unwrap_or("").to_string());
            }
        }
        if names.is_empty() {
            continue;
        }
        let content = crate::yaml::to_yaml_stream(docs.iter().map(|d| &d.value));
        let what = what(&names);
        match at {
            Some(i) => {
                rw[i].content = content;
                rw[i].what = format!("{}; {what}", rw[i].what);
            }
            None => rw.push(Rewrite { path: file.to_string(), what, content }),
        }
    }
}

/// What the served tree of a run would rewrite, for `--dry-run` (the server's URL unknown).
pub fn planned_rewrites(req: &E2eRequest, model: &RepoModel, url: &str) -> Result<Vec<Rewrite>> {
    let out = std::cell::RefCell::new(vec![]);
    rewrites(req, model, url, &format!("flux-harness/run-{}", req.run_id), &out)?;
    Ok(out.into_inner())
}

pub struct Served {
    pub git: GitServer,
    /// Where the fetched copy goes (next to the served repository).
    pub fetch_dir: PathBuf,
    pub url: String,
    pub branch: String,
    pub rewritten: Vec<Rewrite>,
}

impl Served {
    /// Flux's revision string for the served commit.
    pub fn revision(&self) -> String {
        format!("{}@sha1:{}", self.branch, self.git.revision)
    }
}

/// Serves the working tree on `bind` (`host` is how the cluster reaches it).
pub async fn serve(
    req: &E2eRequest,
    model: &RepoModel,
    bind: SocketAddr,
    host: &str,
    progress: Progress<'_>,
) -> Result<Served> {
    let branch = format!("flux-harness/run-{}", req.run_id);
    // Served trees of runs that died without cleaning up hold a copy of a working tree.
    super::leftovers::sweep_scratch(&std::env::temp_dir());
    let rewritten = std::cell::RefCell::new(vec![]);
    // Removed with the server (success, failure, Ctrl-C: its Drop).
    let root = scratch(&req.run_id);
    let fetch_dir = PathBuf::from(format!("{}.fetched", root.display()));
    // The run's own artifacts (a kubeconfig, saved objects) are never part of the served tree.
    let exclude: Vec<String> = std::fs::canonicalize(&req.artifacts)
        .ok()
        .zip(std::fs::canonicalize(&req.plan.repo).ok())
        .and_then(|(a, r)| a.strip_prefix(&r).ok().map(|p| p.display().to_string()))
        .filter(|p| !p.is_empty())
        .into_iter()
        .collect();
    // A profile that does not apply stops the run before anything is served.
    rewrites(req, model, "http://check/repo.git", &branch, &rewritten)?;
    let git = super::git::start(&req.plan.repo, &root, &branch, bind, &exclude, &|url| {
        // Never served without its rewrites: the cluster would pull the real remote.
        rewrites(req, model, url, &branch, &rewritten)
    })
    .await?;
    let url = git.url(host);
    progress(&format!(
        "serving the working tree on {url} (branch {branch}, commit {})",
        &git.revision[..12.min(git.revision.len())]
    ));
    let rewritten = rewritten.into_inner();
    for r in &rewritten {
        progress(&format!("served {} rewritten: {}", r.path, r.what));
    }
    Ok(Served { git, fetch_dir, url, branch, rewritten })
}

/// Fetches `url` at `branch` as source-controller does (over HTTP, a shallow clone) into
/// the run's fetch directory, and returns the repo loaded from what was fetched, synced
/// from `path` (the applied Kustomization's `spec.path`), and the fetched commit's SHA.
pub async fn fetch(
    req: &E2eRequest,
    served: &Served,
    url: &str,
    branch: &str,
    path: &str,
) -> Result<(crate::loaded::Loaded, String)> {
    let dir = served.fetch_dir.as_path();
    let _ = std::fs::remove_dir_all(dir);
    let d = dir.display().to_string();
    // Straight to the local server, whatever proxy the environment names.
    let cmd = Cmd::new("git", &["-c", "http.proxy=", "clone", "--quiet", "--depth", "1", "--branch", branch, url, &d]);
    let head = Cmd::new("git", &["-C", &d, "rev-parse", "HEAD"]);
    // The server answers on this runtime: the clone must not block it.
    let cloned = tokio::task::spawn_blocking(move || cmd.output().and_then(|_| head.output()))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("git clone: {e}")))
        .and_then(|r| {
            r.map_err(|e| e.context(format!("source-controller (simulated) fetching {url} at branch {branch}")))
        });
    let entry = crate::model::Entry::Path(path.trim_start_matches("./").trim_end_matches('/').to_string());
    let loaded = cloned.and_then(|sha| {
        let request = crate::commands::PlanRequest { repo: dir.to_path_buf(), entry: Some(entry), ..req.plan.clone() };
        crate::commands::load(&request).map(|l| (l, sha.trim().to_string()))
    });
    // The copy holds the whole tree (secrets too): it goes whatever happened.
    let _ = std::fs::remove_dir_all(dir);
    loaded
}

/// The sources that are this repository (the entry's own and those with its URL) but that
/// the served tree points somewhere else: source-controller fails on them as Flux does
/// (namespace, name, reason, message).
pub fn unfetchable(model: &RepoModel, url: &str) -> Vec<(String, String, String, String)> {
    let ours = plan::rewritten_sources(model, url, "");
    let mut out = vec![];
    for s in &model.sources {
        let is_ours = ours.iter().any(|o| {
            o["metadata"]["name"] == s.spec.name.as_str() && o["metadata"]["namespace"] == s.spec.namespace.as_str()
        });
        let Some(u) = s.spec.url.as_deref().filter(|u| is_ours && s.spec.kind == "GitRepository" && *u != url) else {
            continue;
        };
        let (ns, name) = (s.spec.namespace.clone(), s.spec.name.clone());
        let (reason, message) = match &s.spec.secret_ref {
            Some(secret) => (
                "AuthenticationFailed".to_string(),
                format!("failed to get secret '{ns}/{secret}': secrets \"{secret}\" not found"),
            ),
            None if u.starts_with("ssh://") || u.contains('@') => (
                "GitOperationFailed".to_string(),
                format!(
                    "failed to checkout and determine revision: unable to clone '{u}': ssh: handshake failed: ssh: unable to authenticate, attempted methods [none], no supported methods remain"
                ),
            ),
            None => (
                "GitOperationFailed".to_string(),
                format!(
                    "failed to checkout and determine revision: unable to clone '{u}': the simulated cluster reaches only the harness's git server"
                ),
            ),
        };
        out.push((ns, name, reason, message));
    }
    out
}

/// After the run: the entry's GitRepository still pulls from the harness's server and
/// holds the served commit. `None` when it does.
pub async fn source_check(client: &kube::Client, model: &RepoModel, served: &Served) -> Option<Violation> {
    let s = &model.self_source;
    // An entry that syncs from an OCIRepository (or a Bucket) is not served by git.
    if s.kind != "GitRepository" {
        return None;
    }
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        &s.namespace,
        &super::run::ar("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
    );
    let id = format!("GitRepository {}/{}", s.namespace, s.name);
    let problem = match api.get(&s.name).await {
        Err(e) => format!("cannot be read after the run: {e}"),
        Ok(o) => {
            let url = o.data["spec"]["url"].as_str().unwrap_or("");
            let ready = o.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    format!(
                        "{} {}: {}",
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "no Ready condition".into());
            let revision = o.data["status"]["artifact"]["revision"].as_str().unwrap_or("");
            if url != served.url {
                format!(
                    "no longer pulls from the harness's git server: spec.url is '{url}' ({ready}); the served tree re-points it, and the rewrite was turned off or missed it"
                )
            } else if !ready.starts_with("True") {
                format!("is not Ready: {ready}")
            } else if !revision.ends_with(&served.git.revision) {
                format!("holds revision '{revision}', not the served commit {}", served.git.revision)
            } else {
                return None;
            }
        }
    };
    Some(Violation { kind: "source".into(), objects: vec![id.clone()], message: format!("{id} {problem}") })
}
