//! The simulated cluster behind a real Kubernetes API, exercised with the clients users
//! have: kube-rs (typed and dynamic, watcher, await_condition, server-side apply) and
//! kubectl (tables, apply --server-side, wait, api-resources).

mod common;

use common::repo::*;
use futures::{StreamExt, TryStreamExt};
use harness::apiserver::driver::{self, SimCluster};
use harness::sim::{Fault, SimConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, wait::await_condition, watcher};
use kube::{Client, Config};
use std::time::Duration;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\ndata:\n  k: v\n";

fn two_layers() -> Repo {
    Repo::new().ks("a", &[], "").obj("a", "cm.yaml", CM).ks("b", &["a"], "").obj(
        "b",
        "cm.yaml",
        &CM.replace("name: c", "name: d"),
    )
}

async fn start(repo: Repo, sim: SimConfig, speed: f64) -> SimCluster {
    driver::start(repo.loaded(), sim, speed, 0).await.expect("the simulated cluster starts")
}

async fn client(c: &SimCluster) -> Client {
    let kc = Kubeconfig::from_yaml(&c.server.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

fn ks_api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    );
    Api::namespaced_with(client.clone(), "flux-system", &ar)
}

fn is_ready(o: &DynamicObject) -> bool {
    o.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[tokio::test]
async fn typed_client_crud_and_server_side_apply() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    let api: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    let mut cm: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "t", "labels": {"app": "x"}}, "data": {"a": "1"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.resource_version.is_some() && created.metadata.uid.is_some());
    assert_eq!(api.get("t").await.unwrap().data.unwrap()["a"], "1");
    assert_eq!(api.list(&ListParams::default().labels("app=x")).await.unwrap().items.len(), 1);
    assert_eq!(api.list(&ListParams::default().labels("app=y")).await.unwrap().items.len(), 0);
    cm.metadata.resource_version = created.metadata.resource_version.clone();
    cm.data.as_mut().unwrap().insert("a".into(), "2".into());
    assert_eq!(api.replace("t", &PostParams::default(), &cm).await.unwrap().data.unwrap()["a"], "2");
    // A stale resourceVersion is a conflict.
    let err = api.replace("t", &PostParams::default(), &cm).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err}");
    let patched =
        api.patch("t", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"b": "3"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "3");
    // Server-side apply creates, then updates; dry-run changes nothing.
    let apply = PatchParams::apply("harness-test").force();
    let ssa =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "1"}});
    assert_eq!(api.patch("s", &apply, &Patch::Apply(&ssa)).await.unwrap().data.unwrap()["x"], "1");
    let dry = PatchParams::apply("harness-test").force().dry_run();
    let ssa2 =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "2"}});
    assert_eq!(api.patch("s", &dry, &Patch::Apply(&ssa2)).await.unwrap().data.unwrap()["x"], "2");
    assert_eq!(api.get("s").await.unwrap().data.unwrap()["x"], "1", "dry-run is not stored");
    // Field ownership: another manager changing a field it does not own is a conflict.
    let other = PatchParams::apply("someone-else");
    let conflict = api.patch("s", &other, &Patch::Apply(&ssa2)).await.unwrap_err();
    match &conflict {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"harness-test\": .data.x"), "{}", s.message);
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        api.patch("s", &other.clone().force(), &Patch::Apply(&ssa2)).await.unwrap().data.unwrap()["x"],
        "2",
        "force takes the field over"
    );
    api.delete("t", &DeleteParams::default()).await.unwrap();
    let gone = api.get("t").await.unwrap_err();
    assert!(
        matches!(&gone, kube::Error::Api(s) if s.code == 404 && s.message == "configmaps \"t\" not found"),
        "{gone}"
    );
}

#[tokio::test]
async fn watcher_and_await_condition_follow_the_bootstrap_in_order() {
    let c = start(two_layers(), SimConfig::default(), 200.0).await;
    let client = client(&c).await;
    let api = ks_api(&client);
    let b = tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api.clone(), "b", |o: Option<&DynamicObject>| o.is_some_and(is_ready)),
    );
    let mut ready_order = vec![];
    let watch = watcher(api.clone(), watcher::Config::default()).applied_objects();
    futures::pin_mut!(watch);
    let collect = async {
        while let Some(o) = watch.try_next().await.unwrap() {
            let name = o.metadata.name.clone().unwrap();
            if is_ready(&o) && !ready_order.contains(&name) {
                ready_order.push(name);
            }
            if ready_order.len() == 3 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect).await.expect("all Ready within 30 s");
    assert_eq!(ready_order, vec!["flux-system", "a", "b"], "Ready in dependency order");
    b.await.unwrap().unwrap();
    // The status is what kubectl wait needs: generation == observedGeneration.
    let o = api.get("b").await.unwrap();
    assert_eq!(o.metadata.generation, Some(1));
    assert_eq!(o.data["status"]["observedGeneration"], 1);
}

#[tokio::test]
async fn dynamic_lists_page_and_select_fields() {
    let c = start(two_layers(), SimConfig::default(), 200.0).await;
    let client = client(&c).await;
    let api = ks_api(&client);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let token = first.metadata.continue_.clone().expect("a continue token");
    let second = api.list(&ListParams::default().limit(1).continue_token(&token)).await.unwrap();
    assert_ne!(first.items[0].metadata.name, second.items[0].metadata.name);
    let only_b = api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap();
    assert_eq!(only_b.items.iter().map(|o| o.metadata.name.clone().unwrap()).collect::<Vec<_>>(), vec!["b"]);
}

#[tokio::test]
async fn crd_kinds_appear_when_established_and_vanish_when_deleted() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    let client = client(&c).await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let widgets = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let wapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widgets);
    assert!(matches!(wapi.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404));
    let crd = harness::apiserver::store::synthetic_crd("example.com", "Widget", true);
    crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap()).await.unwrap();
    let w: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}})).unwrap();
    wapi.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(wapi.get("w1").await.unwrap().data["spec"]["size"], 3);
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    assert!(matches!(wapi.get("w1").await, Err(kube::Error::Api(s)) if s.code == 404));
}

#[tokio::test]
async fn a_watch_from_a_version_too_old_gets_410_in_the_stream() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    c.server.shared.store.lock().unwrap().set_log_cap(5);
    let api: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    for n in 0..10 {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("n{n}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut stream = api.watch(&WatchParams::default(), "101").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // kube-rs's watcher relists after that and keeps going.
    let mut w = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();
    assert!(tokio::time::timeout(Duration::from_secs(5), w.try_next()).await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn fail_closed_webhooks_refuse_writes_with_the_api_servers_words() {
    let repo = Repo::new()
        .file("clusters/test/repos.yaml", &helm_repo("charts"))
        .ks("kyverno", &[], "")
        .obj("kyverno", "ns.yaml", &ns("kyverno"))
        .obj("kyverno", "hr.yaml", &hr("kyverno", "kyverno", "kyverno", ""));
    let fault = Fault::parse("webhook-down:validate.kyverno.svc-fail@1m-100h").unwrap();
    let c = start(repo, SimConfig { faults: vec![fault], ..Default::default() }, 600.0).await;
    let client = client(&c).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "refused"}})).unwrap();
    let err = api.create(&PostParams::default(), &cm).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
            assert!(
                s.message.starts_with("Internal error occurred: failed calling webhook \"validate.kyverno.svc-fail\""),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
    // kube-system is exempt.
    let sys: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    sys.create(&PostParams::default(), &cm).await.unwrap();
}

async fn raw(client: &Client, method: &str, uri: &str, ctype: &str, body: Vec<u8>) -> u16 {
    let req = http::Request::builder().method(method).uri(uri).header("content-type", ctype).body(body).unwrap();
    match client.request_text(req).await {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    let client = client(&c).await;
    assert_eq!(
        raw(&client, "POST", "/api/v1/namespaces/default/configmaps", "application/json", b"{not json".to_vec()).await,
        400
    );
    assert_eq!(raw(&client, "GET", "/apis/example.com/v1/gizmos", "application/json", vec![]).await, 404);
    assert_eq!(
        raw(&client, "PUT", "/api/v1/namespaces/default/configmaps", "application/json", b"{}".to_vec()).await,
        405
    );
    assert_eq!(
        raw(&client, "PATCH", "/api/v1/namespaces/default/configmaps/c", "text/plain", b"{}".to_vec()).await,
        415
    );
    // A merge patch that is not an object: refused, not a crashed connection.
    assert_eq!(
        raw(&client, "PATCH", "/api/v1/namespaces/default", "application/merge-patch+json", b"[1,2]".to_vec()).await,
        400
    );
    assert_eq!(
        raw(&client, "PATCH", "/api/v1/namespaces/default", "application/strategic-merge-patch+json", b"[1]".to_vec())
            .await,
        400
    );
    let huge = format!("{{\"metadata\":{{\"name\":\"h\"}},\"data\":{{\"x\":\"{}\"}}}}", "a".repeat(4 * 1024 * 1024));
    assert_eq!(
        raw(&client, "POST", "/api/v1/namespaces/default/configmaps", "application/json", huge.into_bytes()).await,
        413
    );
    // Without the token: 401.
    let kc = c.server.kubeconfig().replace(&format!("token: {}", c.server.token), "token: wrong");
    let config = Config::from_custom_kubeconfig(Kubeconfig::from_yaml(&kc).unwrap(), &KubeConfigOptions::default())
        .await
        .unwrap();
    let anonymous = Client::try_from(config).unwrap();
    assert_eq!(raw(&anonymous, "GET", "/api/v1/namespaces", "application/json", vec![]).await, 401);
    // Still serving.
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.list(&ListParams::default()).await.unwrap();
}

/// Like [`raw`], with the Status message.
async fn raw_msg(client: &Client, method: &str, uri: &str, ctype: &str, body: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ctype)
        .body(body.as_bytes().to_vec())
        .unwrap();
    match client.request_text(req).await {
        Ok(t) => (200, t),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn the_server_refuses_what_a_real_api_server_refuses() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    let client = client(&c).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let json = "application/json";
    // Names: DNS-1123 subdomains of at most 253 characters.
    for bad in ["../../etc", "UPPER", &"a".repeat(70_000)] {
        let body = format!("{{\"metadata\":{{\"name\":\"{bad}\"}}}}");
        let (code, msg) = raw_msg(&client, "POST", cms, json, &body).await;
        assert_eq!(code, 422, "{bad:.20}: {msg}");
        assert!(msg.contains("metadata.name") && msg.contains("RFC 1123"), "{msg}");
    }
    // A Pod posted to the kustomizations endpoint is not stored as a Kustomization.
    let ks = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations";
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#;
    let (code, msg) = raw_msg(&client, "POST", ks, json, pod).await;
    assert_eq!(
        (code, msg.as_str()),
        (
            400,
            "the API version in the data (v1) does not match the expected API version (kustomize.toolkit.fluxcd.io/v1)"
        )
    );
    // The body's namespace must be the request's.
    let (code, msg) =
        raw_msg(&client, "POST", cms, json, r#"{"metadata":{"name":"x","namespace":"kube-system"}}"#).await;
    assert_eq!(code, 400, "{msg}");
    // A Kustomization its CRD schema refuses: 422 with the schema's words.
    let bad_ks = r#"{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","metadata":{"name":"bad"},"spec":{"interval":"10m","sourceRef":{"kind":"GitRepository","name":"flux-system"},"dependsOn":["x"]}}"#;
    let (code, msg) = raw_msg(&client, "POST", ks, json, bad_ks).await;
    assert_eq!(code, 422, "{msg}");
    assert!(
        msg.starts_with("Kustomization.kustomize.toolkit.fluxcd.io \"bad\" is invalid:")
            && msg.contains("spec.prune: Required value"),
        "{msg}"
    );
    // Identity cannot be patched: name, kind, uid.
    let (code, msg) = raw_msg(&client, "POST", cms, json, r#"{"metadata":{"name":"c"},"data":{"k":"v"}}"#).await;
    assert_eq!(code, 200, "{msg}");
    let cm = format!("{cms}/c");
    let patch = "application/json-patch+json";
    for (ops, want) in [
        (r#"[{"op":"replace","path":"/metadata/name","value":42}]"#, 400),
        (r#"[{"op":"replace","path":"/metadata/name","value":"other"}]"#, 400),
        (r#"[{"op":"replace","path":"/kind","value":"Secret"}]"#, 400),
        (r#"[{"op":"replace","path":"/metadata/uid","value":"forged"}]"#, 409),
    ] {
        let (code, msg) = raw_msg(&client, "PATCH", &cm, patch, ops).await;
        assert_eq!(code, want, "{ops}: {msg}");
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stored = api.get("c").await.unwrap();
    assert_eq!(stored.metadata.name.as_deref(), Some("c"), "nothing of the refused patches was stored");
    // resourceVersion: a number this server could have given out, else 400.
    for bad in ["abc", "-1"] {
        let (code, msg) = raw_msg(&client, "GET", &format!("{cms}?watch=true&resourceVersion={bad}"), json, "").await;
        assert_eq!(code, 400, "watch from {bad}: {msg}");
        let (code, _) = raw_msg(&client, "GET", &format!("{cms}?resourceVersion={bad}"), json, "").await;
        assert_eq!(code, 400, "list at {bad}");
    }
}

#[tokio::test]
async fn silent_and_lying_connections_are_closed_not_held() {
    use tokio::io::AsyncReadExt;
    // The server's own timeouts (10 s, 30 s, 30 s), shortened to keep the test short.
    let second = Duration::from_secs(1);
    let server = harness::apiserver::start_with(
        0,
        harness::apiserver::Timeouts { handshake: second, headers: second, body: second },
    )
    .await
    .unwrap();
    // A connection that never starts its TLS handshake is closed, not held.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the silent connection was not closed: {closed:?}");
    // 200 of them at once: all closed, and the server still answers.
    let mut many = vec![];
    for _ in 0..200 {
        many.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    for mut s in many {
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    // A Content-Length larger than the body sent: answered 408 once the body timeout
    // passes, not left hanging.
    let kc = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let client =
        Client::try_from(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap()).unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .header("content-length", "100000")
        .body(b"{\"metadata\":{}}".to_vec())
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.request_text(req)).await {
        Ok(Err(kube::Error::Api(s))) => assert_eq!(s.code, 408, "{s:?}"),
        Ok(Err(e)) => panic!("expected the server's 408, got {e}"),
        Ok(Ok(t)) => panic!("a lying Content-Length was accepted: {t}"),
        Err(_) => panic!("no answer within 10 s: the connection was held"),
    }
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_watches_all_see_an_event() {
    let c = start(two_layers(), SimConfig::default(), 1.0).await;
    let client = client(&c).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut watches = vec![];
    for _ in 0..1000 {
        watches.push(api.watch(&WatchParams::default(), &rv).await.unwrap().boxed());
    }
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "broadcast"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let seen = futures::future::join_all(watches.into_iter().map(|mut w| async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), w.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(o)))) if o.metadata.name.as_deref() == Some("broadcast") => return true,
                Ok(Ok(Some(_))) => continue,
                _ => return false,
            }
        }
    }))
    .await;
    assert_eq!(seen.iter().filter(|s| **s).count(), 1000);
}

#[tokio::test]
#[cfg_attr(
    not(have_kubectl),
    ignore = "kubectl is not installed: the client most users point at the simulated cluster"
)]
async fn kubectl_gets_tables_applies_server_side_and_waits() {
    let c = start(two_layers(), SimConfig::default(), 120.0).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, c.server.kubeconfig()).unwrap();
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, CM.replace("name: c", "name: from-kubectl")).unwrap();
    let kubectl = |args: Vec<String>| {
        let kc = kc.clone();
        let cache = dir.path().join("cache");
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("kubectl")
                    .args(&args)
                    .env("KUBECONFIG", &kc)
                    .env("KUBECACHEDIR", &cache)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let wait =
        kubectl(s(&["wait", "--for=condition=Ready", "kustomization/b", "-n", "flux-system", "--timeout=30s"])).await;
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    assert!(String::from_utf8_lossy(&wait.stdout).contains("condition met"));
    let get = kubectl(s(&["get", "kustomizations", "-A"])).await;
    let out = String::from_utf8_lossy(&get.stdout);
    assert!(out.contains("NAMESPACE") && out.contains("READY") && out.contains("Applied revision"), "{out}");
    let apply =
        kubectl(vec!["apply".into(), "--server-side".into(), "-f".into(), manifest.display().to_string()]).await;
    assert!(
        String::from_utf8_lossy(&apply.stdout).contains("configmap/from-kubectl serverside-applied"),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let res = kubectl(s(&["api-resources"])).await;
    assert!(res.status.success());
    assert!(String::from_utf8_lossy(&res.stdout).contains("kustomizations                      ks"));
    let get = kubectl(s(&["get", "gitrepositories,kustomizations,helmreleases", "-A"])).await;
    assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
    assert!(String::from_utf8_lossy(&get.stdout).contains("gitrepository.source.toolkit.fluxcd.io/"));
    // describe shows the controller's events about the object (matched by its uid).
    let describe = kubectl(s(&["describe", "kustomization", "b", "-n", "flux-system"])).await;
    let out = String::from_utf8_lossy(&describe.stdout);
    assert!(describe.status.success(), "{}", String::from_utf8_lossy(&describe.stderr));
    let events = out.split("Events:").nth(1).unwrap_or("");
    assert!(events.contains("kustomize-controller") && events.contains("ReconciliationSucceeded"), "{out}");
    assert!(events.contains("DependencyNotReady"), "b waited for a first: {out}");
    // explain reads the CRD's schema from the OpenAPI v3 documents.
    let explain = kubectl(s(&["explain", "kustomization.spec"])).await;
    let out = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    assert!(out.contains("KIND:       Kustomization") && out.contains("dependsOn\t<[]Object>"), "{out}");
    assert!(out.contains("sourceRef\t<Object> -required-"), "{out}");
}

/// The simulated controllers act on what clients change in the API server, as Flux's do:
/// `flux reconcile` (the requestedAt annotation) reconciles a Kustomization again even after
/// the bootstrap converged and is acknowledged in status.lastHandledReconcileAt; `flux
/// suspend` (spec.suspend) stops it handling requests, and the object keeps the client's
/// spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_reconcile_and_suspend_through_the_api_are_acted_on() {
    let c = start(two_layers(), SimConfig::default(), 600.0).await;
    let ks = ks_api(&client(&c).await);
    let ready = await_condition(ks.clone(), "b", |o: Option<&DynamicObject>| o.is_some_and(is_ready));
    tokio::time::timeout(Duration::from_secs(20), ready).await.expect("b Ready in time").unwrap();
    let handled = |token: &'static str| {
        move |o: Option<&DynamicObject>| o.is_some_and(|o| o.data["status"]["lastHandledReconcileAt"] == token)
    };
    let annotate = |token: &str| {
        Patch::Merge(serde_json::json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}))
    };
    ks.patch("a", &PatchParams::default(), &annotate("t1")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), await_condition(ks.clone(), "a", handled("t1")))
        .await
        .expect("the request is handled")
        .unwrap();
    ks.patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ks.patch("a", &PatchParams::default(), &annotate("t2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = ks.get("a").await.unwrap();
    assert_eq!(a.data["spec"]["suspend"], true, "the client's spec stays");
    assert_eq!(a.data["status"]["lastHandledReconcileAt"], "t1", "a suspended Kustomization handles no request");
    // Resumed: the pending request is handled.
    ks.patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"suspend": false}})))
        .await
        .unwrap();
    ks.patch("a", &PatchParams::default(), &annotate("t3")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), await_condition(ks.clone(), "a", handled("t3")))
        .await
        .expect("handled once resumed")
        .unwrap();
}
