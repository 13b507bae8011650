//! The harness's git server: a snapshot of the working tree under test (uncommitted changes
//! included, .gitignore honoured) as a fresh commit on a run branch of a throwaway bare
//! repository, served over smart HTTP by `git http-backend` (Flux needs http, https or ssh).
//! The user's own repository is never written to.

use crate::error::{Error, ErrorKind, Result};
use crate::exec::{self, Cmd};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub struct GitServer {
    pub addr: SocketAddr,
    pub branch: String,
    pub revision: String,
    root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl GitServer {
    /// The URL pods use: `http://HOST:PORT/repo.git` with the host they can reach.
    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/repo.git", self.addr.port())
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn git(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    // Root runs in CI: the backend and git itself refuse foreign-owned repos otherwise.
    let mut all = vec![("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "safe.directory"), ("GIT_CONFIG_VALUE_0", "*")];
    all.extend_from_slice(env);
    Cmd::new("git", args).with_env(&all).output()
}

/// Commits the working tree of `repo` into a new bare repository under `root`, with the
/// files of `rewrites` (repo-relative path, content) replaced in the commit only.
pub fn snapshot(
    repo: &Path,
    root: &Path,
    branch: &str,
    exclude: &[String],
    rewrites: &[(String, String)],
) -> Result<String> {
    let bare = root.join("repo.git");
    // Only this user may read the copy of the tree (it holds the repo's secrets too).
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", root.display())))?;
    }
    let b = bare.display().to_string();
    let w = repo.display().to_string();
    git(&["init", "--quiet", "--bare", &b], &[])?;
    let index = root.join("index").display().to_string();
    let env = [("GIT_INDEX_FILE", index.as_str()), ("GIT_DIR", b.as_str()), ("GIT_WORK_TREE", w.as_str())];
    let excluded: Vec<String> = exclude.iter().map(|p| format!(":(exclude){p}")).collect();
    let mut add = vec!["add", "--all", "--", "."];
    add.extend(excluded.iter().map(String::as_str));
    git(&add, &env).map_err(|e| e.context(format!("while snapshotting {}", repo.display())))?;
    for (i, (path, content)) in rewrites.iter().enumerate() {
        let tmp = root.join(format!("rewrite-{i}"));
        std::fs::write(&tmp, content).map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", tmp.display())))?;
        let blob = git(&["hash-object", "-w", &tmp.display().to_string()], &env)?;
        git(&["update-index", "--add", "--cacheinfo", &format!("100644,{},{path}", blob.trim())], &env)?;
        let _ = std::fs::remove_file(&tmp);
    }
    git(
        &[
            "-c",
            "user.name=flux-harness",
            "-c",
            "user.email=flux-harness@localhost",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "flux-harness: snapshot of the working tree under test",
        ],
        &env,
    )?;
    git(&["branch", "--force", branch, "HEAD"], &env)?;
    git(&["update-server-info"], &env)?;
    Ok(git(&["rev-parse", "HEAD"], &env)?.trim().to_string())
}

/// Serves a snapshot of `repo` on `bind` (port 0: a free one). `rewrites` gets the URL
/// the server is reached at (`http://BIND-IP:PORT/repo.git`) and names the files the
/// snapshot holds rewritten.
/// A file of the served snapshot (path, content) that replaces the working tree's.
pub type Replaced = (String, String);

pub async fn start(
    repo: &Path,
    root: &Path,
    branch: &str,
    bind: SocketAddr,
    exclude: &[String],
    rewrites: &dyn Fn(&str) -> Result<Vec<Replaced>>,
) -> Result<GitServer> {
    let (listener, addr) = crate::net::bind(bind, "git server").await?;
    let url = format!("http://{}:{}/repo.git", addr.ip(), addr.port());
    let revision = rewrites(&url).and_then(|rw| snapshot(repo, root, branch, exclude, &rw)).inspect_err(|_| {
        // A half-made copy of the tree is not left behind.
        let _ = std::fs::remove_dir_all(root);
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let project_root = root.to_path_buf();
    crate::net::accept_until(listener, rx, move |tcp, peer| {
        let pr = project_root.clone();
        async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let svc = hyper::service::service_fn(move |req| serve(pr.clone(), peer, req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
        }
    });
    Ok(GitServer { addr, branch: branch.into(), revision, root: root.to_path_buf(), stop: Some(tx) })
}

async fn serve(
    root: PathBuf,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let ctype = req.headers().get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let env: Vec<(String, String)> = vec![
        ("GIT_PROJECT_ROOT".into(), root.display().to_string()),
        ("GIT_HTTP_EXPORT_ALL".into(), "1".into()),
        ("PATH_INFO".into(), path),
        ("QUERY_STRING".into(), query),
        ("REQUEST_METHOD".into(), method),
        ("CONTENT_TYPE".into(), ctype),
        ("CONTENT_LENGTH".into(), body.len().to_string()),
        ("REMOTE_ADDR".into(), peer.ip().to_string()),
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "safe.directory".into()),
        ("GIT_CONFIG_VALUE_0".into(), "*".into()),
    ];
    let out = tokio::task::spawn_blocking(move || exec::cgi("git", &["http-backend"], &env, body)).await;
    let raw = match out {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => {
            return Ok(hyper::Response::builder().status(500).body(Full::new(Bytes::from(e.to_string()))).unwrap());
        }
        Err(e) => {
            return Ok(hyper::Response::builder().status(500).body(Full::new(Bytes::from(e.to_string()))).unwrap());
        }
    };
    // CGI: headers, a blank line, the body.
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&raw[..i]).into_owned(), raw[i + n..].to_vec()),
        None => (String::new(), raw),
    };
    let mut resp = hyper::Response::builder().status(200);
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                let code: u16 = v.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(200);
                resp = resp.status(code);
            } else {
                resp = resp.header(k.trim(), v.trim());
            }
        }
    }
    Ok(resp.body(Full::new(Bytes::from(body))).unwrap())
}
