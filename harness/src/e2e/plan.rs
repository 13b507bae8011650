//! The bootstrap of a real cluster as a plan: every command and every manifest, in order,
//! from docs/real-cluster.md. Pure: `--dry-run` prints it, the runner executes it through
//! `exec`, and tests snapshot it.

use super::provider::ClusterProvider;
use crate::exec::Cmd;
use crate::model::RepoModel;
use serde_json::{Value, json};

/// The decryption Secret the harness makes from the age key where the repo names none.
pub const DECRYPTION_SECRET: &str = "sops-age";

/// Flux's version when the repo does not pin one (gotk-components.yaml).
pub const FLUX_VERSION: &str = "v2.7.3";

/// Where a run bootstraps the repo. One type for every provider: the simulated cluster
/// takes the same plan as the others, minus the steps that need a container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Sim,
    Kind,
    K3d,
    Existing,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Sim => "sim",
            Provider::Kind => "kind",
            Provider::K3d => "k3d",
            Provider::Existing => "existing",
        }
    }
}

pub struct PlanInput<'a> {
    pub provider: &'a dyn ClusterProvider,
    pub artifacts: String,
    pub model: &'a RepoModel,
    /// `clusters/ENV/flux-system/gotk-components.yaml` when the repo pins Flux.
    pub gotk_components: Option<String>,
    /// Where pods reach the harness's git server.
    pub git_url: String,
    pub run_branch: String,
    pub age_key: Option<String>,
    /// A cluster the harness did not create (`--provider existing`): nothing is installed
    /// unless asked, the entry does not prune, and the entry's objects are restored after.
    pub existing: bool,
    /// `--install-cni`: pre-install the repo's Cilium on an existing cluster too.
    pub install_cni: bool,
    /// `--install-flux`: install Flux on an existing cluster that has none.
    pub install_flux: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A command; `cleanup` steps run at the end whatever happened (reverse order).
    Run { what: String, cmd: Cmd, cleanup: bool },
    /// A file the plan writes before running the commands that read it.
    Write { what: String, path: String, content: String },
    /// Saves what `cmd` prints (objects as YAML, server-set fields dropped) to `path`, and
    /// the same with every Kustomization's `prune` off to `path_no_prune`; registers the
    /// cleanup: `restore` (run in order) when something was saved, else `otherwise`.
    Save { what: String, cmd: Cmd, path: String, path_no_prune: String, restore: Vec<Cmd>, otherwise: Vec<Cmd> },
    /// On a cluster the harness did not create: when `check` prints nothing (a `get
    /// --ignore-not-found -o name`), runs `then` and registers `undo`; when it prints
    /// something, leaves it as it is; when it fails (forbidden, unreachable), stops the
    /// run: an unanswered question is not an absence.
    IfAbsent { what: String, check: Cmd, then: Vec<Cmd>, undo: Vec<Cmd> },
}

impl Step {
    fn run(what: &str, program: &str, args: &[&str]) -> Step {
        Step::Run { what: what.into(), cmd: Cmd::new(program, args), cleanup: false }
    }
}

/// The values the repo's Cilium HelmRelease installs with, plus only what kind/k3d need.
pub fn cilium_values(model: &RepoModel, provider: &dyn ClusterProvider) -> Option<(String, Option<String>, Value)> {
    let h = model.helm_releases.iter().find(|h| h.spec.chart == "cilium")?;
    let url = h
        .spec
        .source
        .as_ref()
        .and_then(|s| model.source(s))
        .and_then(|s| model.sources[s].spec.url.clone())
        .unwrap_or_else(|| "https://helm.cilium.io/".into());
    let mut values = h.spec.values.clone();
    if !values.is_object() {
        values = json!({});
    }
    if let Some(host) = provider.api_server_host() {
        // The repo's values point at the production API server; the test cluster's differ.
        // Only these leaves change; the rest of the repo's values stay as they are.
        for (path, v) in [
            ("k8sServiceHost", json!(host)),
            ("k8sServicePort", json!(6443)),
            ("ipam.mode", json!("kubernetes")),
            ("kubeProxyReplacement", json!(true)),
            ("image.pullPolicy", json!("IfNotPresent")),
        ] {
            crate::kustomize::replace::set(&mut values, &crate::kustomize::replace::parse_path(path), v, true);
        }
    }
    Some((url, h.spec.version.clone(), values))
}

/// Every GitRepository that points at the repo's own remote, rewritten to the git server.
pub fn rewritten_sources(model: &RepoModel, git_url: &str, branch: &str) -> Vec<Value> {
    let self_url = model
        .sources
        .iter()
        .find(|s| s.spec.kind == model.self_source.kind && s.spec.name == model.self_source.name)
        .and_then(|s| s.spec.url.clone());
    let mut out = vec![json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": model.self_source.name, "namespace": model.self_source.namespace},
        "spec": {"interval": "1m", "url": git_url, "ref": {"branch": branch}}
    })];
    for s in &model.sources {
        if s.spec.kind != "GitRepository"
            || (s.spec.name == model.self_source.name && s.spec.namespace == model.self_source.namespace)
        {
            continue;
        }
        let same = matches!((&s.spec.url, &self_url), (Some(a), Some(b)) if crate::flux::same_repo_url(a, b));
        if same {
            out.push(json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": s.spec.name, "namespace": s.spec.namespace}, "spec": {"interval": "1m", "url": git_url, "ref": {"branch": branch}}}));
        }
    }
    out
}

/// A file of the served snapshot that differs from the working tree, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rewrite {
    pub path: String,
    pub what: String,
    #[serde(skip)]
    pub content: String,
}

/// The files of the served tree that would re-point the harness's GitRepositories when
/// Flux reconciles them: the entry directory's `gotk-sync.yaml` (or any committed
/// GitRepository that is this repo) names the user's remote, often over ssh with a deploy
/// key, and the first reconcile of the entry would apply it over the harness's. Each such
/// document gets the harness's URL and branch and loses its `secretRef` (the local server
/// needs none); the rest of the file is kept. Only the served snapshot changes, never the
/// user's tree. `read` gives a repo file's text.
pub fn served_rewrites(
    model: &RepoModel,
    read: &dyn Fn(&str) -> Option<String>,
    git_url: &str,
    branch: &str,
) -> Vec<Rewrite> {
    let ours = rewritten_sources(model, git_url, branch);
    let is_ours = |name: &str, ns: Option<&str>| {
        ours.iter().any(|o| {
            o["metadata"]["name"] == name && ns.is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
        })
    };
    let mut files: Vec<&str> = model
        .sources
        .iter()
        .filter(|s| s.spec.kind == "GitRepository" && is_ours(&s.spec.name, Some(&s.spec.namespace)))
        .map(|s| s.spec.origin.file.as_str())
        .collect();
    files.sort();
    files.dedup();
    let mut out = vec![];
    for file in files {
        let Some(text) = read(file) else { continue };
        let Ok(mut docs) = crate::yaml::parse_docs(file, &text) else { continue };
        let mut changed = vec![];
        for d in &mut docs {
            let v = &mut d.value;
            let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
            if v["kind"] != "GitRepository"
                || !v["apiVersion"].as_str().is_some_and(|a| a.starts_with("source.toolkit.fluxcd.io/"))
                || !is_ours(&name, v["metadata"]["namespace"].as_str())
            {
                continue;
            }
            let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) else { continue };
            let from = format!(
                "{} ({})",
                spec.get("url").and_then(Value::as_str).unwrap_or("no url"),
                spec.get("ref").map(|r| r.to_string()).unwrap_or_else(|| "no ref".into())
            );
            spec.insert("url".into(), json!(git_url));
            spec.insert("ref".into(), json!({"branch": branch}));
            let secret = spec.remove("secretRef").is_some();
            changed.push(format!(
                "GitRepository {name}: {from} -> {git_url} (branch {branch}){}",
                if secret { ", secretRef dropped" } else { "" }
            ));
        }
        if !changed.is_empty() {
            out.push(Rewrite {
                path: file.to_string(),
                what: changed.join("; "),
                content: crate::yaml::to_yaml_stream(docs.iter().map(|d| &d.value)),
            });
        }
    }
    out
}

/// A bootstrap plan: what runs before the entry (cluster, CNI, Flux, decryption Secrets)
/// and the entry itself, which needs the git server's URL and so is built last.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub before_entry: Vec<Step>,
    pub entry: Vec<Step>,
}

impl Plan {
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.before_entry.iter().chain(&self.entry)
    }
}

/// What the entry applies: the repo's own GitRepositories pointed at the harness's git
/// server, and the entry Kustomization (pruning only on a cluster the harness created).
/// The same objects on every provider: kubectl applies them on kind/k3d/existing, the run
/// applies them through the API on sim.
pub fn entry_manifests(model: &RepoModel, git_url: &str, branch: &str, existing: bool) -> Vec<Value> {
    let entry = &model.kustomizations[model.entry].spec;
    let mut manifests = rewritten_sources(model, git_url, branch);
    let mut k = json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": entry.name, "namespace": entry.namespace},
        // On a cluster the harness did not create, the tree under test must not prune what
        // the cluster runs and the tree lacks.
        "spec": {"interval": "10m", "path": format!("./{}", entry.path), "prune": !existing,
                 "sourceRef": {"kind": "GitRepository", "name": model.self_source.name}}
    });
    // The entry decrypts as the repo's own entry does (an encrypted Secret beside
    // gotk-sync.yaml is otherwise refused before the tree's entry is applied).
    if let Some(d) = entry.raw.pointer("/spec/decryption").filter(|d| d.is_object()) {
        k["spec"]["decryption"] = d.clone();
    }
    manifests.push(k);
    manifests
}

pub fn build(p: &PlanInput) -> Plan {
    let mut steps = vec![];
    let target = p.provider.target();
    let target_args = target.kubectl_args();
    // kubectl against the run's cluster, as a command and as a step.
    let kc = |args: &[&str]| -> Cmd {
        let mut a: Vec<&str> = target_args.iter().map(String::as_str).collect();
        a.extend_from_slice(args);
        Cmd::new("kubectl", &a)
    };
    let kubectl =
        |what: &str, args: &[&str]| -> Step { Step::Run { what: what.into(), cmd: kc(args), cleanup: false } };
    let helm_target = target.helm_args();
    for (path, content, executable) in p.provider.config_files() {
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        steps.push(Step::Write {
            what: format!("the cluster's config (kind-configs/{name}){}", if executable { ", executable" } else { "" }),
            path,
            content: content.to_string(),
        });
    }
    for (what, cmd) in p.provider.create() {
        steps.push(Step::Run { what, cmd, cleanup: false });
    }
    for (what, cmd) in p.provider.delete() {
        steps.push(Step::Run { what, cmd, cleanup: true });
    }
    let cilium =
        cilium_values(p.model, p.provider).filter(|_| !p.provider.cni_preinstalled() && (!p.existing || p.install_cni));
    if p.existing && !p.install_cni {
        steps.push(kubectl(
            "check the nodes are Ready with the cluster's own CNI (--install-cni pre-installs the repo's Cilium)",
            &["wait", "--for=condition=Ready", "nodes", "--all", "--timeout=60s"],
        ));
    }
    if let Some((url, version, values)) = cilium {
        let vf = format!("{}/cilium-values.yaml", p.artifacts);
        steps.push(Step::Write {
            what: "Cilium values: the repo's HelmRelease values plus the test cluster's API server".into(),
            path: vf.clone(),
            content: crate::yaml::to_yaml(&values),
        });
        steps.push(Step::run(
            "add the Cilium chart repository",
            "helm",
            &["repo", "add", "cilium", &url, "--force-update"],
        ));
        let mut args: Vec<String> = [
            "upgrade",
            "--install",
            "cilium",
            "cilium/cilium",
            "--namespace",
            "kube-system",
            "--values",
            &vf,
            "--wait",
            "--timeout",
            "10m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(helm_target.iter().cloned());
        if let Some(v) = version {
            args.insert(4, "--version".into());
            args.insert(5, v);
        }
        steps.push(Step::Run {
            what: "pre-install Cilium with the repo's chart version and values (Flux adopts the release later)".into(),
            cmd: Cmd { program: "helm".into(), args, dir: None, env: vec![] },
            cleanup: false,
        });
        steps.push(kubectl(
            "wait for the Cilium agents",
            &["-n", "kube-system", "rollout", "status", "daemonset/cilium", "--timeout=10m"],
        ));
        steps.push(kubectl(
            "wait for the Cilium operator",
            &["-n", "kube-system", "rollout", "status", "deployment/cilium-operator", "--timeout=10m"],
        ));
    }
    let flux_check =
        ["-n", "flux-system", "get", "deployment", "source-controller", "kustomize-controller", "helm-controller"];
    match &p.gotk_components {
        _ if p.existing && !p.install_flux => steps.push(kubectl(
            "check Flux is installed (the harness installs it on a cluster it did not create only with --install-flux)",
            &flux_check,
        )),
        // --install-flux on a cluster that already runs Flux: its Flux is left as it is.
        gotk if p.existing => {
            let install = match gotk {
                Some(f) => kc(&["apply", "--server-side", "-f", f]),
                None => {
                    let mut a: Vec<String> = ["install", "--version", FLUX_VERSION].map(String::from).to_vec();
                    a.extend(target.flux_args());
                    Cmd::new("flux", &a.iter().map(String::as_str).collect::<Vec<_>>())
                }
            };
            // Flux is there when its CRDs are, whichever namespace and controllers it runs.
            steps.push(Step::IfAbsent {
                what: "install Flux unless the cluster runs it already (--install-flux)".into(),
                check: kc(&[
                    "get",
                    "crd",
                    "kustomizations.kustomize.toolkit.fluxcd.io",
                    "--ignore-not-found",
                    "-o",
                    "name",
                ]),
                then: vec![install],
                undo: vec![],
            });
        }
        Some(f) => steps.push(kubectl(
            "install Flux as the repo pins it (gotk-components.yaml)",
            &["apply", "--server-side", "-f", f],
        )),
        None => {
            let mut a = vec!["install", "--version", FLUX_VERSION];
            let flux_target = target.flux_args();
            a.extend(flux_target.iter().map(String::as_str));
            steps.push(Step::run("install Flux (the harness's pinned version)", "flux", &a));
        }
    }
    steps.push(kubectl(
        "wait for Flux's controllers",
        &["-n", "flux-system", "wait", "--for=condition=Available", "deployment", "--all", "--timeout=5m"],
    ));
    if let Some(key) = &p.age_key {
        // One Secret per decryption secretRef the repo's Kustomizations name (sops-age when
        // none does), in their namespace. The key goes from the file into the cluster; its
        // value is never on a command line.
        // A Kustomization that decrypts without a secretRef gets this one in the served
        // tree (`served`), on clusters the harness makes.
        let mut secrets: Vec<(String, String)> = p
            .model
            .kustomizations
            .iter()
            .filter(|k| k.spec.decryption)
            .filter_map(|k| match k.spec.raw.pointer("/spec/decryption/secretRef/name") {
                Some(name) => Some((k.spec.namespace.clone(), name.as_str()?.to_string())),
                None => (!p.existing).then(|| (k.spec.namespace.clone(), DECRYPTION_SECRET.to_string())),
            })
            .collect();
        secrets.sort();
        secrets.dedup();
        if secrets.is_empty() {
            secrets.push(("flux-system".into(), DECRYPTION_SECRET.into()));
        }
        let mut namespaces: Vec<&str> = secrets
            .iter()
            .map(|(ns, _)| ns.as_str())
            .filter(|ns| !crate::rules::ALWAYS_NAMESPACES.contains(ns))
            .collect();
        namespaces.dedup();
        // A tenant namespace the repo itself creates does not exist yet: the Secret goes
        // into it before Flux applies it (which then adopts the namespace).
        for ns in namespaces {
            let what = format!("create the {ns} namespace for its decryption secret");
            if !p.existing {
                steps.push(kubectl(&what, &["create", "namespace", ns]));
                continue;
            }
            steps.push(Step::IfAbsent {
                what: format!("{what}, unless the cluster has it"),
                check: kc(&["get", "namespace", ns, "--ignore-not-found", "-o", "name"]),
                then: vec![kc(&["create", "namespace", ns])],
                undo: vec![kc(&["delete", "namespace", ns, "--ignore-not-found", "--wait=false"])],
            });
        }
        for (ns, name) in secrets {
            let what = format!("create the {ns}/{name} decryption secret from the age key");
            let create = ["-n", &ns, "create", "secret", "generic", &name, &format!("--from-file=age.agekey={key}")];
            if !p.existing {
                steps.push(kubectl(&what, &create));
                continue;
            }
            // A cluster of the user's keeps its own Secret; one the harness made goes after.
            steps.push(Step::IfAbsent {
                what: format!("{what}, unless the cluster has one"),
                check: kc(&["-n", &ns, "get", "secret", &name, "--ignore-not-found", "-o", "name"]),
                then: vec![kc(&create)],
                undo: vec![kc(&["-n", &ns, "delete", "secret", &name, "--ignore-not-found"])],
            });
        }
    }
    let before_entry = std::mem::take(&mut steps);
    let entry = &p.model.kustomizations[p.model.entry].spec;
    let manifests = entry_manifests(p.model, &p.git_url, &p.run_branch, p.existing);
    let mf = format!("{}/entry.yaml", p.artifacts);
    if p.existing {
        // What the entry replaces, so that cleanup puts the cluster's own sync back.
        let backup = format!("{}/entry-before.yaml", p.artifacts);
        let names: Vec<String> = manifests
            .iter()
            .map(|m| {
                let kind = if m["kind"] == "Kustomization" {
                    "kustomization.kustomize.toolkit.fluxcd.io"
                } else {
                    "gitrepository.source.toolkit.fluxcd.io"
                };
                format!("{kind}/{}", m["metadata"]["name"].as_str().unwrap_or(""))
            })
            .collect();
        let mut get: Vec<&str> = vec!["-n", &entry.namespace, "get", "--ignore-not-found", "-o", "yaml"];
        get.extend(names.iter().map(String::as_str));
        let no_prune = format!("{}/entry-before-no-prune.yaml", p.artifacts);
        let ks = format!("kustomization.kustomize.toolkit.fluxcd.io/{}", entry.name);
        let mark = format!("flux-harness-restore-{}", p.run_branch.rsplit('-').next().unwrap_or("run"));
        // Put the cluster's own sync back without letting it prune by the run's inventory:
        // first with prune off, one reconcile from its own source, then as it was.
        let restore = vec![
            kc(&["apply", "--server-side", "--force-conflicts", "-f", &no_prune]),
            kc(&[
                "-n",
                &entry.namespace,
                "annotate",
                "--overwrite",
                &ks,
                &format!("reconcile.fluxcd.io/requestedAt={mark}"),
            ]),
            kc(&[
                "-n",
                &entry.namespace,
                "wait",
                &ks,
                &format!("--for=jsonpath={{.status.lastHandledReconcileAt}}={mark}"),
                "--timeout=10m",
            ]),
            kc(&["apply", "--server-side", "--force-conflicts", "-f", &backup]),
        ];
        // Nothing there before: remove exactly what the entry created (it does not prune).
        let mut delete = vec!["-n", entry.namespace.as_str(), "delete", "--ignore-not-found"];
        delete.extend(names.iter().map(String::as_str));
        steps.push(Step::Save {
            what: "save the cluster's own sync objects that the entry replaces (restored after the run)".into(),
            cmd: kc(&get),
            path: backup.clone(),
            path_no_prune: no_prune,
            restore,
            otherwise: vec![kc(&delete)],
        });
    }
    steps.push(Step::Write {
        what: "the cluster entry, its sources pointing at the harness's git server".into(),
        path: mf.clone(),
        content: crate::yaml::to_yaml_stream(manifests.iter()),
    });
    steps.push(kubectl("apply the cluster entry", &["apply", "--server-side", "-f", &mf]));
    Plan { before_entry, entry: steps }
}

/// The plan as a user reads it in `--dry-run`.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let (main, cleanup): (Vec<&Step>, Vec<&Step>) =
        plan.steps().partition(|s| !matches!(s, Step::Run { cleanup: true, .. }));
    for (n, s) in main.iter().enumerate() {
        match s {
            Step::Run { what, cmd, .. } => out.push_str(&format!("{:>2}. {what}\n    $ {}\n", n + 1, cmd.display())),
            Step::Save { what, cmd, path, restore, otherwise, .. } => {
                out.push_str(&format!("{:>2}. {what}\n    $ {} > {path}\n    after the run:\n", n + 1, cmd.display()));
                for c in restore {
                    out.push_str(&format!("      $ {}\n", c.display()));
                }
                out.push_str("    or, when there was nothing:\n");
                for c in otherwise {
                    out.push_str(&format!("      $ {}\n", c.display()));
                }
            }
            Step::IfAbsent { what, check, then, undo } => {
                out.push_str(&format!("{:>2}. {what}\n    unless this finds it: $ {}\n", n + 1, check.display()));
                for c in then {
                    out.push_str(&format!("    $ {}\n", c.display()));
                }
                for c in undo {
                    out.push_str(&format!("    and after the run: $ {}\n", c.display()));
                }
            }
            Step::Write { what, path, content } => {
                out.push_str(&format!("{:>2}. write {path}: {what}\n", n + 1));
                for l in content.lines() {
                    out.push_str(&format!("    | {l}\n"));
                }
            }
        }
    }
    if !cleanup.is_empty() {
        out.push_str("on success, failure or Ctrl-C (unless --keep):\n");
        for s in cleanup {
            if let Step::Run { what, cmd, .. } = s {
                out.push_str(&format!("    {what}\n    $ {}\n", cmd.display()));
            }
        }
    }
    out
}
