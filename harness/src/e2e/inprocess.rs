//! The bootstrap plan's steps on the simulated cluster: the steps kind gets, minus those
//! that need a container runtime, each executed in-process through the cluster's API with
//! kube-rs as kubectl and flux would execute it (no kubectl, flux or helm is needed). A step
//! the simulated cluster cannot run is an error naming it, never skipped.
//!
//! What the simulated cluster has no process for is said where it happens: Flux's
//! controllers run inside the harness, so `flux install` registers Flux's CRDs and creates
//! the controllers' Deployments, and waiting for them marks them Available.

use super::execute::{Cleanup, execute_step};
use super::plan::Step;
use super::run::{E2eRequest, Progress};
use super::served::Served;
use crate::config::Decryption;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::Cmd;
use crate::loaded::Loaded;
use crate::model::RepoModel;
use crate::sim::SimConfig;
use crate::sops::AgeKeys;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};

fn api_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("while trying to {what}: {e}"))
}

/// Runs `steps` against the simulated cluster behind `client`.
pub async fn execute(steps: &[Step], client: &kube::Client, progress: Progress<'_>) -> Result<()> {
    // Nothing to clean up on a cluster that goes with the process.
    let mut guard = Cleanup::new(vec![], true);
    for s in steps {
        match s {
            Step::Write { .. } => execute_step(s, &mut guard, progress)?,
            Step::Run { cleanup: true, .. } => {}
            Step::Run { what, cmd, .. } => {
                progress(what);
                run(what, cmd, client).await?;
            }
            Step::Save { what, .. } | Step::IfAbsent { what, .. } => {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "the simulated cluster cannot {what}: that step is for a cluster the harness did not create"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The arguments after the cluster target (`--kubeconfig FILE`, `--context=NAME`), with
/// `-n NS` taken out.
fn args_of(cmd: &Cmd) -> (Vec<&str>, Option<&str>) {
    let mut out = vec![];
    let mut ns = None;
    let mut it = cmd.args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "--kubeconfig" | "--context" => {
                it.next();
            }
            "-n" | "--namespace" => ns = it.next(),
            _ if a.starts_with("--context=") || a.starts_with("--kubeconfig=") => {}
            _ => out.push(a),
        }
    }
    (out, ns)
}

async fn run(what: &str, cmd: &Cmd, client: &kube::Client) -> Result<()> {
    let (args, ns) = args_of(cmd);
    let unsupported =
        || Error::new(ErrorKind::Usage, format!("the simulated cluster cannot run `{}` (to {what})", cmd.display()));
    match (cmd.program.as_str(), args.as_slice()) {
        ("flux", ["install", "--version", version]) => {
            apply(what, client, &flux_install(version), "flux install").await
        }
        ("kubectl", ["apply", "--server-side", "-f", file]) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::in_file(ErrorKind::MissingPath, file, format!("while trying to {what}: {e}")))?;
            let objects: Vec<Value> =
                crate::yaml::parse_docs(file, &text)?.into_iter().map(|d| d.value).filter(Value::is_object).collect();
            apply(what, client, &objects, file).await
        }
        ("kubectl", ["wait", "--for=condition=Available", "deployment", "--all", _timeout]) => {
            controllers_available(what, client, ns.unwrap_or("default")).await
        }
        ("kubectl", ["create", "namespace", name]) => {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let api: Api<DynamicObject> =
                Api::all_with(client.clone(), &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()));
            let obj: DynamicObject = serde_json::from_value(ns).map_err(|e| api_error(what, e))?;
            api.create(&PostParams::default(), &obj).await.map(|_| ()).map_err(|e| api_error(what, e))
        }
        ("kubectl", ["create", "secret", "generic", name, from]) => {
            let (key, file) =
                from.strip_prefix("--from-file=").and_then(|f| f.split_once('=')).ok_or_else(unsupported)?;
            // The key file's content goes into the Secret; it is never printed.
            let bytes = std::fs::read(file)
                .map_err(|e| Error::in_file(ErrorKind::MissingPath, file, format!("while trying to {what}: {e}")))?;
            let ns = ns.unwrap_or("default");
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                                "type": "Opaque", "data": {key: crate::kustomize::generate::base64(&bytes)}});
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                ns,
                &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            );
            let obj: DynamicObject = serde_json::from_value(secret).map_err(|e| api_error(what, e))?;
            api.create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
                .map_err(|e| api_error(what, format!("failed to create secret {e}")))
        }
        _ => Err(unsupported()),
    }
}

/// Server-side apply of `objects` in order, as `kubectl apply --server-side` does: each
/// kind resolved by discovery (again after a CRD is applied), one not served refused in
/// kubectl's words.
async fn apply(what: &str, client: &kube::Client, objects: &[Value], from: &str) -> Result<()> {
    let mut discovery = Discovery::new(client.clone()).run().await.map_err(|e| api_error(what, e))?;
    let params = PatchParams::apply("kubectl").force();
    for o in objects {
        let av = o["apiVersion"].as_str().unwrap_or("");
        let kind = o["kind"].as_str().unwrap_or("");
        let (group, version) = crate::object::split_api_version(av);
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let mut found = discovery.resolve_gvk(&gvk);
        if found.is_none() {
            discovery = Discovery::new(client.clone()).run().await.map_err(|e| api_error(what, e))?;
            found = discovery.resolve_gvk(&gvk);
        }
        let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        let Some((ar, caps)) = found else {
            return Err(Error::in_file(
                ErrorKind::BadObject,
                from,
                format!(
                    "while trying to {what}: resource mapping not found for name: \"{name}\" namespace: \"{ns}\": no matches for kind \"{kind}\" in version \"{av}\"; ensure CRDs are installed first"
                ),
            ));
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &ar),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(name, &params, &Patch::Apply(o)).await.map_err(|e| {
            Error::in_file(ErrorKind::BadObject, from, format!("while trying to {what}: {kind} {name}: {e}"))
        })?;
    }
    Ok(())
}

/// The controllers `flux install` starts, in the order Flux lists them.
const CONTROLLERS: [&str; 4] =
    ["source-controller", "kustomize-controller", "helm-controller", "notification-controller"];

/// What `flux install` applies, as the simulated cluster has it: the flux-system
/// namespace, Flux's CRDs with their schemas, and a Deployment per controller (their pods
/// are the harness's simulated controllers).
pub fn flux_install(version: &str) -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/instance": "flux-system", "app.kubernetes.io/part-of": "flux", "app.kubernetes.io/version": version});
    let mut out =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system", "labels": labels}})];
    out.extend(crate::apiserver::discovery::flux_crds());
    for c in CONTROLLERS {
        out.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": c, "namespace": "flux-system", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": c}},
                     "template": {"metadata": {"labels": {"app": c}},
                                  "spec": {"containers": [{"name": "manager", "image": format!("ghcr.io/fluxcd/{c}:{version}")}]}}}
        }));
    }
    out
}

/// `kubectl wait --for=condition=Available deployment --all`: the namespace's Deployments
/// are Flux's controllers, which run in the harness, so they are marked Available; a
/// namespace without Deployments fails as kubectl does.
async fn controllers_available(what: &str, client: &kube::Client, ns: &str) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()));
    let list = api.list(&Default::default()).await.map_err(|e| api_error(what, e))?;
    if list.items.is_empty() {
        return Err(Error::new(ErrorKind::Io, format!("while trying to {what}: error: no matching resources found")));
    }
    for d in list.items {
        let name = d.metadata.name.clone().unwrap_or_default();
        let replicas = d.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let status = json!({"status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}]}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| api_error(what, e))?;
    }
    Ok(())
}

/// The object at `kind` `ns/name` as the API server holds it, without its status.
async fn read(client: &kube::Client, ar: &ApiResource, ns: &str, name: &str) -> Result<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let o = api.get(name).await.map_err(|e| {
        Error::new(ErrorKind::Io, format!("the applied entry's {} {ns}/{name} cannot be read back: {e}", ar.kind))
    })?;
    let mut v = serde_json::to_value(&o).map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    Ok(v)
}

/// The simulated source- and kustomize-controller's first reconcile of the entry, from
/// what the API server holds: the entry Kustomization's `sourceRef` and `spec.path`, its
/// GitRepository's `spec.url` and branch (fetched over git: only the harness's server
/// answers), and the decryption Secrets the Kustomizations name (their age keys, as
/// kustomize-controller reads them; none there and Flux fails to get it). Returns the repo
/// loaded from what was fetched and the simulation's configuration.
pub async fn reconcile_entry(
    req: &E2eRequest,
    model: &RepoModel,
    served: &Served,
    client: &kube::Client,
    progress: Progress<'_>,
) -> Result<(Loaded, SimConfig)> {
    let entry = &model.kustomizations[model.entry].spec;
    let ks = super::run::ar("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations");
    let k = read(client, &ks, &entry.namespace, &entry.name).await?;
    let source_name = k.pointer("/spec/sourceRef/name").and_then(Value::as_str).unwrap_or("");
    let source_ns = k.pointer("/spec/sourceRef/namespace").and_then(Value::as_str).unwrap_or(&entry.namespace);
    let path = k.pointer("/spec/path").and_then(Value::as_str).unwrap_or("./").to_string();
    let git = super::run::ar("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories");
    let source = read(client, &git, source_ns, source_name).await?;
    let url = source.pointer("/spec/url").and_then(Value::as_str).unwrap_or("").to_string();
    let branch = source.pointer("/spec/ref/branch").and_then(Value::as_str).unwrap_or("master").to_string();
    progress(&format!("source-controller (simulated): fetching {url} at branch {branch}"));
    let (mut fetched, sha) = super::served::fetch(req, served, &url, &branch, &path).await?;
    fetched.config.decryption = decryption(req, &fetched.model, client).await?;
    let mut applied = vec![k];
    applied.push(source);
    let sim = SimConfig {
        // The simulated nodes run the repo's CNI before Flux starts, as the real plan
        // pre-installs it.
        cni_preinstalled: true,
        seed: req.seed,
        revision: format!("{branch}@sha1:{sha}"),
        unfetchable: super::served::unfetchable(&fetched.model, &url),
        self_url: url,
        applied,
        ..Default::default()
    };
    Ok((fetched, sim))
}

/// What kustomize-controller decrypts with: the age keys in the decryption Secrets the
/// Kustomizations name, as the cluster holds them.
async fn decryption(req: &E2eRequest, model: &RepoModel, client: &kube::Client) -> Result<Decryption> {
    if req.assume_decryption {
        return Ok(Decryption::Assumed);
    }
    let mut refs: Vec<(String, String)> = model
        .kustomizations
        .iter()
        .filter_map(|k| {
            let name = k.spec.raw.pointer("/spec/decryption/secretRef/name")?.as_str()?;
            Some((k.spec.namespace.clone(), name.to_string()))
        })
        .collect();
    refs.sort();
    refs.dedup();
    let mut text = String::new();
    for (ns, name) in refs {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()));
        let Ok(Some(secret)) = api.get_opt(&name).await else { continue };
        for (key, v) in secret.data["data"].as_object().into_iter().flatten() {
            if key.ends_with(".agekey")
                && let Some(bytes) = v.as_str().and_then(crate::kustomize::generate::base64_decode)
            {
                text.push_str(&String::from_utf8_lossy(&bytes));
                text.push('\n');
            }
        }
    }
    if text.trim().is_empty() {
        return Ok(Decryption::NoSecret);
    }
    // The Secret was made from a key file the run read: a key that does not parse is the
    // file's problem, said without its content.
    AgeKeys::parse(&text)
        .map(Decryption::Keys)
        .map_err(|why| Error::new(ErrorKind::Usage, format!("the decryption Secret's age key: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_and_namespace_are_taken_out_of_the_arguments() {
        let cmd = Cmd::new("kubectl", &["--kubeconfig", "/a/kc", "-n", "flux-system", "wait", "deployment"]);
        assert_eq!(args_of(&cmd), (vec!["wait", "deployment"], Some("flux-system")));
    }

    #[test]
    fn flux_install_registers_every_flux_kind() {
        let objects = flux_install("v2.7.3");
        let crds = objects.iter().filter(|o| o["kind"] == "CustomResourceDefinition").count();
        assert_eq!(crds, crate::apiserver::discovery::FLUX_KINDS.len());
        assert_eq!(objects.iter().filter(|o| o["kind"] == "Deployment").count(), CONTROLLERS.len());
    }
}
