//! Cluster providers behind one trait: how a cluster is created, reached, inspected and
//! deleted. Every method returns commands (run through `exec`) rather than running them,
//! so a plan can be printed, snapshotted and executed the same way.

use crate::exec::Cmd;

/// How commands reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A kubeconfig the harness wrote for a cluster it created.
    Kubeconfig(String),
    /// A context of the user's kubeconfig, named with --context.
    Context(String),
}

impl Target {
    pub fn kubectl_args(&self) -> Vec<String> {
        match self {
            Target::Kubeconfig(p) => vec!["--kubeconfig".into(), p.clone()],
            Target::Context(c) => vec![format!("--context={c}")],
        }
    }
    pub fn helm_args(&self) -> Vec<String> {
        match self {
            Target::Kubeconfig(p) => vec!["--kubeconfig".into(), p.clone()],
            Target::Context(c) => vec!["--kube-context".into(), c.clone()],
        }
    }
    pub fn flux_args(&self) -> Vec<String> {
        match self {
            Target::Kubeconfig(p) => vec!["--kubeconfig".into(), p.clone()],
            Target::Context(c) => vec!["--context".into(), c.clone()],
        }
    }
}

pub trait ClusterProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Commands that create the cluster, with what each does (none for an existing one).
    fn create(&self) -> Vec<(String, Cmd)>;
    fn target(&self) -> Target;
    // What only a cluster of containers the harness made has (kind, k3d): none by default.
    /// The command that prints the cluster's node names.
    fn nodes(&self) -> Option<Cmd> {
        None
    }
    /// A shell command run on one node.
    fn on_node(&self, _node: &str, _command: &str) -> Option<Cmd> {
        None
    }
    /// Commands whose output is worth keeping when a run fails.
    fn logs(&self) -> Vec<(String, Cmd)> {
        vec![]
    }
    /// Commands that delete the cluster (none for a cluster the harness did not create).
    fn delete(&self) -> Vec<(String, Cmd)> {
        vec![]
    }
    /// The docker network whose gateway the cluster's pods reach this machine on.
    fn docker_network(&self) -> Option<String> {
        None
    }
    /// The API server as Cilium inside the cluster must address it (None: keep the repo's).
    fn api_server_host(&self) -> Option<String> {
        None
    }
    /// The command listing the clusters of this kind that exist (name first on each line),
    /// checked before creating one, so the harness never deletes a cluster it did not make.
    fn list_clusters(&self) -> Option<Cmd> {
        None
    }
    /// Deleting another cluster of this provider by name: only for the leftovers a dead
    /// run recorded (see `leftovers`).
    fn delete_named(&self, _name: &str) -> Vec<Cmd> {
        vec![]
    }
    /// The cluster's name (None for an existing cluster).
    fn cluster_name(&self) -> Option<&str> {
        None
    }
    /// Files the create commands read (path, content, executable), written by the plan
    /// first: the configs of `kind-configs/` are in the binary, so it runs from anywhere.
    fn config_files(&self) -> Vec<(String, &'static str, bool)> {
        vec![]
    }
    /// The nodes run a pod network before Flux starts without the plan installing one
    /// (the simulated cluster's nodes have the repo's CNI).
    fn cni_preinstalled(&self) -> bool {
        false
    }
}

/// The simulated cluster: nothing to create or delete (it lives in the harness's process,
/// and goes with it), no container runtime, the repo's CNI on its nodes from the start.
/// The plan's steps against it run in-process through its API (`e2e::inprocess`).
pub struct Sim {
    pub kubeconfig: String,
}

impl ClusterProvider for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn create(&self) -> Vec<(String, Cmd)> {
        vec![]
    }
    fn target(&self) -> Target {
        Target::Kubeconfig(self.kubeconfig.clone())
    }
    fn cni_preinstalled(&self) -> bool {
        true
    }
}

/// `kind-configs/`, embedded at build time (the binary needs no source tree at run time).
pub const KIND_CONFIGS: [(&str, &str, bool); 5] = [
    ("kind.yaml", include_str!("../../../kind-configs/kind.yaml"), false),
    ("kind-default-cni.yaml", include_str!("../../../kind-configs/kind-default-cni.yaml"), false),
    ("k3d.yaml", include_str!("../../../kind-configs/k3d.yaml"), false),
    ("k3d-default-cni.yaml", include_str!("../../../kind-configs/k3d-default-cni.yaml"), false),
    ("k3d-entrypoint-cilium.sh", include_str!("../../../kind-configs/k3d-entrypoint-cilium.sh"), true),
];

/// The embedded config `name`, to be written at `path`.
fn config_file(path: &str) -> Vec<(String, &'static str, bool)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    KIND_CONFIGS.iter().filter(|(n, _, _)| *n == name).map(|(_, c, x)| (path.to_string(), *c, *x)).collect()
}

pub struct Kind {
    pub name: String,
    pub config: String,
    pub kubeconfig: String,
    /// The repo brings its own CNI (pre-installed by the plan): kind's is off.
    pub repo_cni: bool,
}

impl ClusterProvider for Kind {
    fn config_files(&self) -> Vec<(String, &'static str, bool)> {
        config_file(&self.config)
    }
    fn list_clusters(&self) -> Option<Cmd> {
        Some(Cmd::new("kind", &["get", "clusters"]))
    }
    fn delete_named(&self, name: &str) -> Vec<Cmd> {
        // Its own throwaway kubeconfig: the user's is never edited.
        let kc = sweep_kubeconfig(name).display().to_string();
        vec![Cmd::new("kind", &["delete", "cluster", "--name", name, "--kubeconfig", &kc])]
    }
    fn cluster_name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn name(&self) -> &'static str {
        "kind"
    }
    fn create(&self) -> Vec<(String, Cmd)> {
        vec![(
            if self.repo_cni {
                "create the kind cluster (no CNI, no kube-proxy: the repo's Cilium replaces both)".into()
            } else {
                "create the kind cluster (kind's default CNI and kube-proxy: the repo brings no CNI)".into()
            },
            Cmd::new(
                "kind",
                &[
                    "create",
                    "cluster",
                    "--name",
                    &self.name,
                    "--config",
                    &self.config,
                    "--kubeconfig",
                    &self.kubeconfig,
                    "--wait",
                    "0s",
                ],
            ),
        )]
    }
    fn target(&self) -> Target {
        Target::Kubeconfig(self.kubeconfig.clone())
    }
    fn nodes(&self) -> Option<Cmd> {
        Some(Cmd::new("kind", &["get", "nodes", "--name", &self.name]))
    }
    fn on_node(&self, node: &str, command: &str) -> Option<Cmd> {
        Some(Cmd::new("docker", &["exec", node, "sh", "-c", command]))
    }
    fn logs(&self) -> Vec<(String, Cmd)> {
        vec![("kind-logs.txt".into(), Cmd::new("kind", &["export", "logs", "--name", &self.name]))]
    }
    fn delete(&self) -> Vec<(String, Cmd)> {
        vec![(
            "delete the kind cluster".into(),
            Cmd::new("kind", &["delete", "cluster", "--name", &self.name, "--kubeconfig", &self.kubeconfig]),
        )]
    }
    fn docker_network(&self) -> Option<String> {
        Some("kind".into())
    }
    fn api_server_host(&self) -> Option<String> {
        Some(format!("{}-control-plane", self.name))
    }
}

pub struct K3d {
    pub name: String,
    pub config_dir: String,
    pub kubeconfig: String,
    /// The repo brings its own CNI (pre-installed by the plan): flannel is off.
    pub repo_cni: bool,
}

impl ClusterProvider for K3d {
    fn config_files(&self) -> Vec<(String, &'static str, bool)> {
        let config = if self.repo_cni { "k3d.yaml" } else { "k3d-default-cni.yaml" };
        let mut out = config_file(&format!("{}/{config}", self.config_dir));
        if self.repo_cni {
            out.extend(config_file(&format!("{}/k3d-entrypoint-cilium.sh", self.config_dir)));
        }
        out
    }
    fn list_clusters(&self) -> Option<Cmd> {
        Some(Cmd::new("k3d", &["cluster", "list", "--no-headers"]))
    }
    fn delete_named(&self, name: &str) -> Vec<Cmd> {
        vec![k3d_delete(name, &sweep_kubeconfig(name).display().to_string())]
    }
    fn cluster_name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn name(&self) -> &'static str {
        "k3d"
    }
    fn create(&self) -> Vec<(String, Cmd)> {
        let config = format!("{}/{}", self.config_dir, if self.repo_cni { "k3d.yaml" } else { "k3d-default-cni.yaml" });
        let volume = format!("{}/k3d-entrypoint-cilium.sh:/bin/k3d-entrypoint-cilium.sh@all", self.config_dir);
        let mut args = vec!["cluster", "create", &self.name, "--config", &config];
        if self.repo_cni {
            args.extend(["--volume", &volume]);
        }
        args.extend(["--kubeconfig-update-default=false", "--kubeconfig-switch-context=false"]);
        vec![
            (
                if self.repo_cni {
                    "create the k3d cluster (no flannel, network policy, traefik or kube-proxy)".into()
                } else {
                    "create the k3d cluster (k3s's flannel and kube-proxy: the repo brings no CNI)".into()
                },
                Cmd::new("k3d", &args),
            ),
            (
                "write the k3d kubeconfig".into(),
                Cmd::new("k3d", &["kubeconfig", "write", &self.name, "--output", &self.kubeconfig]),
            ),
        ]
    }
    fn target(&self) -> Target {
        Target::Kubeconfig(self.kubeconfig.clone())
    }
    fn nodes(&self) -> Option<Cmd> {
        // The nodes as the API lists them (k3s names them after their containers); `docker
        // ps` of the cluster's label also lists its load balancer and tool containers.
        Some(Cmd::new(
            "kubectl",
            &["--kubeconfig", &self.kubeconfig, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"],
        ))
    }
    fn on_node(&self, node: &str, command: &str) -> Option<Cmd> {
        Some(Cmd::new("docker", &["exec", node, "sh", "-c", command]))
    }
    fn logs(&self) -> Vec<(String, Cmd)> {
        vec![(
            "k3d-server-0.log".into(),
            Cmd::new("docker", &["logs", "--tail", "2000", &format!("k3d-{}-server-0", self.name)]),
        )]
    }
    fn delete(&self) -> Vec<(String, Cmd)> {
        vec![("delete the k3d cluster".into(), k3d_delete(&self.name, &self.kubeconfig))]
    }
    fn docker_network(&self) -> Option<String> {
        Some(format!("k3d-{}", self.name))
    }
    fn api_server_host(&self) -> Option<String> {
        Some(format!("k3d-{}-server-0", self.name))
    }
}

/// `k3d cluster delete` removes the cluster from the kubeconfig KUBECONFIG names (the
/// user's default otherwise): pointed at the run's own, the user's is never rewritten.
fn k3d_delete(name: &str, kubeconfig: &str) -> Cmd {
    let mut c = Cmd::new("k3d", &["cluster", "delete", name]);
    c.env.push(("KUBECONFIG".into(), kubeconfig.into()));
    c
}

/// The throwaway kubeconfig a sweep deletes a dead run's cluster with (removed after).
pub fn sweep_kubeconfig(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flux-harness-sweep-{name}.kubeconfig"))
}

/// A cluster the user names: used as it is, never created nor deleted.
pub struct Existing {
    pub context: String,
}

impl ClusterProvider for Existing {
    fn name(&self) -> &'static str {
        "existing"
    }
    fn create(&self) -> Vec<(String, Cmd)> {
        vec![(
            "check the named context answers (the harness never creates nor deletes it)".into(),
            // An unreachable API server is a setup error within seconds, not a timeout.
            Cmd::new("kubectl", &["--context", &self.context, "--request-timeout=20s", "cluster-info"]),
        )]
    }
    fn target(&self) -> Target {
        Target::Context(self.context.clone())
    }
    fn nodes(&self) -> Option<Cmd> {
        Some(Cmd::new("kubectl", &["--context", &self.context, "get", "nodes", "-o", "name"]))
    }
}
