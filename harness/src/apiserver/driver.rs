//! Drives the simulator in scaled real time (`speed` virtual seconds per second) and
//! mirrors its cluster into the served store, so clients see real watch events.

use super::{ServerHandle, Shared};
use crate::error::Result;
use crate::loaded::Loaded;
use crate::sim::{SimConfig, Simulator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct SimCluster {
    pub server: ServerHandle,
    sim: Arc<Mutex<Simulator<'static>>>,
    task: tokio::task::JoinHandle<()>,
    go: Arc<tokio::sync::Notify>,
    anchor_ms: u64,
    loaded: &'static Loaded,
}

impl SimCluster {
    /// The repo the cluster bootstraps, as the simulator holds it.
    pub fn loaded(&self) -> &'static Loaded {
        self.loaded
    }

    /// The simulator's report so far.
    pub fn report(&self) -> crate::sim::report::SimReport {
        self.sim.lock().unwrap().report()
    }

    pub fn finished(&self) -> bool {
        self.sim.lock().unwrap().finished()
    }

    /// Lets a cluster started paused run (virtual time starts now).
    pub fn resume(&self) {
        self.go.notify_one();
    }

    /// The Unix time (ms) that virtual time 0 is stamped as: every timestamp the cluster
    /// serves is `anchor + virtual ms`, so a client reads virtual time from the objects
    /// themselves, whatever the speed and however late its watch event arrives.
    pub fn anchor_ms(&self) -> u64 {
        self.anchor_ms
    }

    pub fn virtual_ms(&self) -> u64 {
        self.sim.lock().unwrap().now_ms()
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.task.abort();
        self.server.stop();
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Copies the simulator's objects into the store, writing only what changed; returns how
/// many it wrote.
fn sync(shared: &Shared, objects: Vec<Value>, last: &mut HashMap<(String, String, String), Value>) -> u64 {
    let mut written = 0;
    let mut objects = objects;
    // CRDs first (their kinds must be served), then namespaces, then the rest, and events
    // last: they name the uid of an object stored before them.
    objects.sort_by_key(|o| match o.get("kind").and_then(Value::as_str) {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        Some("Event") => 3,
        _ => 2,
    });
    for mut o in objects {
        if o.get("kind").and_then(Value::as_str) == Some("Event") && o.get("apiVersion") == Some(&Value::from("v1")) {
            let Some(uid) = involved_uid(shared, &o) else { continue };
            o["involvedObject"]["uid"] = uid;
        }
        let av = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = crate::object::split_api_version(av).0.to_string();
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        let Some(res) = shared.store.lock().unwrap().resource_for_kind(&group, &kind) else { continue };
        let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let ns = if res.namespaced {
            o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let k = (format!("{group}/{kind}"), ns.clone(), name);
        if last.get(&k) == Some(&o) {
            continue;
        }
        last.insert(k, o.clone());
        shared.put(&res, &ns, o);
        written += 1;
    }
    written
}

/// What clients set on the served Kustomizations: (namespace, name, `spec.suspend`, the
/// `reconcile.fluxcd.io/requestedAt` annotation); the simulator acts only on what changed.
/// Nothing when the store has not moved since `seen` (the resourceVersion after the
/// driver's own last write): most ticks, and every one once a bootstrap is quiet.
fn client_edits(shared: &Shared, seen: &mut u64) -> Vec<(String, String, bool, Option<String>)> {
    let st = shared.store.lock().unwrap();
    if st.resource_version() == *seen {
        return vec![];
    }
    *seen = st.resource_version();
    st.list("kustomize.toolkit.fluxcd.io", "kustomizations", None)
        .into_iter()
        .map(|o| {
            let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            let requested = o.pointer("/metadata/annotations/reconcile.fluxcd.io~1requestedAt").and_then(Value::as_str);
            (
                s("/metadata/namespace"),
                s("/metadata/name"),
                o.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false),
                requested.map(str::to_string),
            )
        })
        .collect()
}

/// The uid of the object an event is about, once the store holds it.
fn involved_uid(shared: &Shared, event: &Value) -> Option<Value> {
    let io = &event["involvedObject"];
    let group = crate::object::split_api_version(io["apiVersion"].as_str()?).0.to_string();
    let st = shared.store.lock().unwrap();
    let res = st.resource_for_kind(&group, io["kind"].as_str()?)?;
    st.get(&group, &res.plural, io["namespace"].as_str().unwrap_or(""), io["name"].as_str()?)
        .and_then(|o| o.pointer("/metadata/uid").cloned())
}

/// Starts the API server and the simulation behind it, Flux taken as installed. The model
/// and graph live as long as the process (they are leaked: a server runs until the process
/// ends).
pub async fn start(loaded: Loaded, sim: SimConfig, speed: f64, port: u16) -> Result<SimCluster> {
    let server = super::start(port).await?;
    install_flux(&server.shared);
    attach(server, loaded, sim, speed, false).await
}

/// A new cluster before anything is installed: its own namespaces (Flux's comes with
/// `flux install`).
pub fn boot(shared: &Shared) {
    let Some(ns) = shared.store.lock().unwrap().resource_for_kind("", "Namespace") else { return };
    for n in crate::rules::ALWAYS_NAMESPACES.iter().filter(|n| **n != "flux-system") {
        shared.put(&ns, "", serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {"kubernetes.io/metadata.name": n}}, "status": {"phase": "Active"}}));
    }
}

/// Registers Flux's CRDs as `flux install` would, straight into the store (for a cluster
/// that starts with Flux; the e2e installs it through the API instead).
pub fn install_flux(shared: &Shared) {
    let Some(crd) = shared.store.lock().unwrap().resource_for_kind("apiextensions.k8s.io", "CustomResourceDefinition")
    else {
        return;
    };
    for c in super::discovery::flux_crds() {
        shared.put(&crd, "", c);
    }
}

/// Runs the simulation behind a server that is already up: the e2e has installed Flux and
/// applied the entry through the API, and the controllers start from what it holds.
/// `paused`: virtual time stands still until [`SimCluster::resume`], so a client can set
/// up its watches and see the bootstrap from its first second.
pub async fn attach(
    server: ServerHandle,
    loaded: Loaded,
    sim: SimConfig,
    speed: f64,
    paused: bool,
) -> Result<SimCluster> {
    // The simulator borrows the repo for as long as the cluster serves it.
    let loaded: &'static Loaded = Box::leak(Box::new(loaded));
    let simulator = Arc::new(Mutex::new(Simulator::of(loaded, sim)?));
    let shared = server.shared.clone();
    {
        let s = simulator.clone();
        *shared.admission.lock().unwrap() =
            Some(Box::new(move |group: &str, kind: &str, ns: Option<&str>, name: &str| {
                s.lock().unwrap().admission(group, kind, ns, name)
            }));
    }
    let start_wall = wall_ms();
    let speed = speed.max(0.001);
    let time = move |virtual_ms: u64| super::tls::rfc3339_ms(start_wall + virtual_ms);
    // The cluster at t=0 is there before the first client request.
    let mut last = HashMap::new();
    let initial = simulator.lock().unwrap().cluster_objects(&time);
    sync(&shared, initial, &mut last);
    let sim2 = simulator.clone();
    let go = Arc::new(tokio::sync::Notify::new());
    let go2 = go.clone();
    let task = tokio::spawn(async move {
        if paused {
            go2.notified().await;
        }
        let t0 = tokio::time::Instant::now();
        // About three virtual seconds per step, so clients see times close to the model's.
        let tick = std::time::Duration::from_secs_f64((3.0 / speed).clamp(0.002, 0.05));
        let mut seen = sim2.lock().unwrap().version();
        let mut store_seen = 0;
        loop {
            tokio::time::sleep(tick).await;
            let target = (t0.elapsed().as_millis() as f64 * speed) as u64;
            let edits = client_edits(&shared, &mut store_seen);
            let objects = {
                let mut s = sim2.lock().unwrap();
                for (ns, name, suspend, requested) in &edits {
                    s.client_edit(ns, name, *suspend, requested.as_deref(), target);
                }
                s.advance_to(target);
                // Most ticks handle no event (and after convergence none ever does):
                // skip rebuilding and diffing every object then.
                if s.version() == seen {
                    continue;
                }
                seen = s.version();
                s.cluster_objects(&time)
            };
            let before = shared.store.lock().unwrap().resource_version();
            let written = sync(&shared, objects, &mut last);
            // The driver's own writes are no client's edits; if a client wrote meanwhile,
            // the next tick reads the store again.
            let after = shared.store.lock().unwrap().resource_version();
            if store_seen == before && after == before + written {
                store_seen = after;
            }
        }
    });
    Ok(SimCluster { server, sim: simulator, task, go, anchor_ms: start_wall, loaded })
}
