//! The nodes as the simulation leaves them: what `/etc/cni/net.d` holds on each, for the
//! `cni-chaining` suite. Derived from the simulator's CNI state, the same on every node
//! (the simulated cluster has the three nodes of `kind-configs/kind.yaml`).

use super::Simulator;
use serde::Serialize;

pub const NODES: [&str; 3] = ["sim-control-plane", "sim-worker", "sim-worker2"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCni {
    pub node: String,
    /// File names in /etc/cni/net.d, sorted (the kubelet takes the first conflist).
    pub files: Vec<String>,
    /// The `type` of each plugin of the first conflist, in order.
    pub chain: Vec<String>,
}

impl Simulator<'_> {
    pub fn nodes_cni(&self) -> Vec<NodeCni> {
        let mut files = vec![];
        let mut chain = vec![];
        let primary_up = self.network && (self.sim.cni_preinstalled || self.primary_cni.is_some());
        if primary_up {
            match self.primary_cni {
                Some(_) => {
                    files.push("05-cilium.conflist".to_string());
                    chain.push("cilium-cni".to_string());
                }
                // The provider's own CNI (kind's kindnet, k3s's flannel).
                None => {
                    files.push("10-default.conflist".to_string());
                    chain.push("default".to_string());
                }
            }
        }
        if let Some(c) = self.chained_cni
            && self.h_ready(c)
        {
            if self.chain_ok {
                chain.push("linkerd-cni".into());
                files.push("ZZZ-linkerd-cni-kubeconfig".into());
            } else if self.primary_exclusive() {
                // Cilium's cni.exclusive renames every configuration that is not its own.
                files.push("ZZZ-linkerd-cni-kubeconfig.cilium_bak".into());
            } else {
                files.push("ZZZ-linkerd-cni-kubeconfig".into());
            }
        }
        files.sort();
        NODES.iter().map(|n| NodeCni { node: n.to_string(), files: files.clone(), chain: chain.clone() }).collect()
    }
}
