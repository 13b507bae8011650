//! The bootstrap of a real cluster as a plan: every command and every manifest, in order,
//! from docs/real-cluster.md. Pure: `--dry-run` prints it, the runner executes it through
//! `exec`, and tests snapshot it.

use super::provider::ClusterProvider;
use crate::exec::Cmd;
use crate::model::RepoModel;
use serde_json::{Value, json};

/// Flux's version when the repo does not pin one (gotk-components.yaml).
pub const FLUX_VERSION: &str = "v2.7.3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Kind,
    K3d,
    Existing,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A command; `cleanup` steps run at the end whatever happened (reverse order).
    Run { what: String, cmd: Cmd, cleanup: bool },
    /// A file the plan writes before running the commands that read it.
    Write { what: String, path: String, content: String },
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

pub fn build(p: &PlanInput) -> Vec<Step> {
    let mut steps = vec![];
    let target = p.provider.target();
    let kubectl = |what: &str, args: &[&str]| -> Step {
        let t = target.kubectl_args();
        let mut a: Vec<&str> = t.iter().map(String::as_str).collect();
        a.extend_from_slice(args);
        Step::run(what, "kubectl", &a)
    };
    let helm_target = target.helm_args();
    for (what, cmd) in p.provider.create() {
        steps.push(Step::Run { what, cmd, cleanup: false });
    }
    for (what, cmd) in p.provider.delete() {
        steps.push(Step::Run { what, cmd, cleanup: true });
    }
    if let Some((url, version, values)) = cilium_values(p.model, p.provider) {
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
    match &p.gotk_components {
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
        // The key goes from the file into the cluster; its value is never on a command line.
        steps.push(kubectl(
            "create the sops-age secret from --age-key",
            &["-n", "flux-system", "create", "secret", "generic", "sops-age", &format!("--from-file=age.agekey={key}")],
        ));
    }
    let sources = rewritten_sources(p.model, &p.git_url, &p.run_branch);
    let entry = &p.model.kustomizations[p.model.entry].spec;
    let mut manifests: Vec<Value> = sources;
    manifests.push(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": entry.name, "namespace": entry.namespace},
        "spec": {"interval": "10m", "path": format!("./{}", entry.path), "prune": true,
                 "sourceRef": {"kind": "GitRepository", "name": p.model.self_source.name}}
    }));
    let mf = format!("{}/entry.yaml", p.artifacts);
    steps.push(Step::Write {
        what: "the cluster entry, its sources pointing at the harness's git server".into(),
        path: mf.clone(),
        content: crate::yaml::to_yaml_stream(manifests.iter()),
    });
    steps.push(kubectl("apply the cluster entry", &["apply", "--server-side", "-f", &mf]));
    steps
}

/// The plan as a user reads it in `--dry-run`.
pub fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    let (main, cleanup): (Vec<&Step>, Vec<&Step>) =
        steps.iter().partition(|s| !matches!(s, Step::Run { cleanup: true, .. }));
    for (n, s) in main.iter().enumerate() {
        match s {
            Step::Run { what, cmd, .. } => out.push_str(&format!("{:>2}. {what}\n    $ {}\n", n + 1, cmd.display())),
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
