//! The simulated cluster served over the Kubernetes API: HTTPS on 127.0.0.1 (never another
//! address), a bearer token, discovery, get/list/watch/create/update/patch/delete on any
//! served kind, the status subresource, Tables for kubectl, and admission by the
//! simulation's fail-closed webhooks. The simulator drives the store in scaled time.
//!
//! IO lives here (sockets, TLS, the wall clock); the store, discovery and the simulator
//! are pure.

pub mod discovery;
pub mod driver;
pub mod http;
pub mod store;
pub mod tls;
pub mod validate;

use crate::error::Result;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use store::{Event, Store};
use tokio::sync::broadcast;

/// Answers admission for a write: `Some(message)` when a webhook refuses it.
pub type Admission = Box<dyn Fn(&str, &str, Option<&str>, &str) -> Option<String> + Send + Sync>;

/// What the request handlers share.
pub struct Shared {
    pub store: Mutex<Store>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub token: String,
    pub admission: Mutex<Option<Admission>>,
    /// Bookmark period for watches that ask for them.
    pub bookmark_every: std::time::Duration,
    pub timeouts: Timeouts,
}

/// How long a peer may stay silent before its connection is closed: the API server's
/// handshake, header and request timeouts, shortened only by tests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: std::time::Duration,
    pub headers: std::time::Duration,
    pub body: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: std::time::Duration::from_secs(10),
            // hyper restarts this timer whenever a kept-alive connection goes idle, so it is
            // also the idle timeout: kube-apiserver's is 90 s, and clients keep idle
            // connections that long.
            headers: std::time::Duration::from_secs(90),
            body: std::time::Duration::from_secs(30),
        }
    }
}

impl Shared {
    pub fn new(token: String) -> Arc<Shared> {
        let (tx, _) = broadcast::channel(1 << 16);
        Arc::new(Shared {
            store: Mutex::new(Store::new(discovery::static_resources(), 200_000)),
            events: tx,
            token,
            admission: Mutex::new(None),
            bookmark_every: std::time::Duration::from_secs(20),
            timeouts: Timeouts::default(),
        })
    }

    /// Writes an object and tells the watchers.
    pub fn put(
        &self,
        res: &store::Resource,
        ns: &str,
        obj: serde_json::Value,
    ) -> (store::EventType, serde_json::Value) {
        let mut st = self.store.lock().unwrap();
        let (kind, stored) = st.put(res, ns, obj, &now());
        let rv = st.resource_version();
        // Sent while the store is still locked: two concurrent writers would otherwise
        // reach the watchers out of resourceVersion order (the load test saw 12,933).
        let _ = self.events.send(Arc::new(Event {
            rv,
            kind,
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: ns.into(),
            object: stored.clone(),
        }));
        (kind, stored)
    }

    pub fn delete(&self, res: &store::Resource, ns: &str, name: &str) -> Option<serde_json::Value> {
        let mut st = self.store.lock().unwrap();
        let obj = st.delete(res, ns, name)?;
        let rv = st.resource_version();
        let _ = self.events.send(Arc::new(Event {
            rv,
            kind: store::EventType::Deleted,
            group: res.group.clone(),
            plural: res.plural.clone(),
            namespace: ns.into(),
            object: obj.clone(),
        }));
        Some(obj)
    }
}

pub fn now() -> String {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    tls::rfc3339(ms)
}

/// A running server. Dropping the handle stops accepting connections.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub token: String,
    pub ca_pem: String,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ServerHandle {
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for this server (context `flux-harness-sim`).
    pub fn kubeconfig(&self) -> String {
        let ca = crate::kustomize::generate::base64(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: flux-harness-sim\n    cluster:\n      server: {}\n      certificate-authority-data: {ca}\nusers:\n  - name: flux-harness-sim\n    user:\n      token: {}\ncontexts:\n  - name: flux-harness-sim\n    context:\n      cluster: flux-harness-sim\n      user: flux-harness-sim\n      namespace: flux-system\ncurrent-context: flux-harness-sim\n",
            self.url(),
            self.token
        )
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn random_token() -> String {
    use std::io::Read;
    let mut buf = [0u8; 24];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_err() {
        // No urandom: time and pid still make a token no other local user can predict
        // in the short life of a test server.
        use sha2::{Digest, Sha256};
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        buf.copy_from_slice(&Sha256::digest(seed.as_bytes())[..24]);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the server on 127.0.0.1 with a random free port (or `port`).
pub async fn start(port: u16) -> Result<ServerHandle> {
    start_with(port, Timeouts::default()).await
}

/// [`start`] with other timeouts (tests of silent peers).
pub async fn start_with(port: u16, timeouts: Timeouts) -> Result<ServerHandle> {
    let tls = tls::generate()?;
    let (listener, addr) = crate::net::bind((std::net::Ipv4Addr::LOCALHOST, port).into(), "the API server").await?;
    let mut shared = Shared::new(random_token());
    Arc::get_mut(&mut shared).expect("not shared yet").timeouts = timeouts;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let sh = shared.clone();
    crate::net::accept_until(listener, stop_rx, move |tcp, _| {
        let (acceptor, sh) = (acceptor.clone(), sh.clone());
        async move {
            // A peer that opens a connection and says nothing is closed, as the API
            // server's handshake and header timeouts close it, instead of being held.
            let Ok(Ok(tls)) = tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp)).await else { return };
            let io = hyper_util::rt::TokioIo::new(tls);
            let svc = hyper::service::service_fn(move |req| http::handle(sh.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeouts.headers)
                .serve_connection(io, svc)
                .await;
        }
    });
    Ok(ServerHandle { addr, token: shared.token.clone(), ca_pem: tls.ca_pem, shared, stop: Some(stop_tx) })
}
