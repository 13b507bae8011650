//! `cni-chaining`: on every node, `/etc/cni/net.d` holds the chained configuration (the
//! primary CNI's conflist with linkerd-cni as its last plugin, no `*.cilium_bak`, no file
//! but the expected ones), still after the Cilium agents restart; a Cilium that owns the
//! directory exclusively is caught. On sim the node state is the simulator's; on kind/k3d
//! the same checks read what the nodes hold ([`check_nodes`] over [`NodeCni`]). Pure.

use super::{Check, Status, SuiteName, SuiteResult, Table};
use crate::catalogue::CniRole;
use crate::error::Result;
use crate::loaded::Loaded;
use crate::sim::nodes::NodeCni;
use crate::sim::{SimConfig, Simulator};

/// What a node must show once linkerd-cni is chained: one conflist whose plugins end with
/// `linkerd-cni`, no configuration renamed away, nothing unexpected.
pub fn check_nodes(nodes: &[NodeCni]) -> Vec<String> {
    let mut bad = vec![];
    for n in nodes {
        let conflists: Vec<&String> =
            n.files.iter().filter(|f| f.ends_with(".conflist") || f.ends_with(".conf")).collect();
        if conflists.is_empty() {
            bad.push(format!("{}: no CNI configuration in /etc/cni/net.d (pods get no network)", n.node));
            continue;
        }
        if n.chain.last().map(String::as_str) != Some("linkerd-cni") {
            bad.push(format!(
                "{}: the first conflist ({}) chains [{}]: linkerd-cni is not its last plugin, so meshed pods start without the iptables redirect",
                n.node,
                conflists[0],
                n.chain.join(", ")
            ));
        }
        for f in n.files.iter().filter(|f| f.ends_with(".cilium_bak")) {
            bad.push(format!(
                "{}: /etc/cni/net.d/{f}: Cilium renamed a configuration it does not own (cni.exclusive)",
                n.node
            ));
        }
        if conflists.len() > 1 {
            bad.push(format!(
                "{}: {} CNI configurations ({}): the kubelet uses only the first",
                n.node,
                conflists.len(),
                conflists.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        for f in n.files.iter().filter(|f| {
            !(f.ends_with(".conflist")
                || f.ends_with(".conf")
                || f.ends_with(".cilium_bak")
                || f.contains("linkerd-cni"))
        }) {
            bad.push(format!("{}: /etc/cni/net.d/{f} is not a file the CNIs of the repo write", n.node));
        }
    }
    bad
}

fn rows(table: &mut Table, when: &str, nodes: &[NodeCni]) {
    for n in nodes {
        table.row(vec![when.into(), n.node.clone(), n.files.join(" "), n.chain.join(" → ")]);
    }
}

pub fn run(loaded: &Loaded, sim: &SimConfig) -> Result<SuiteResult> {
    let (model, cat) = (&loaded.model, &loaded.catalogue);
    let role = |r: CniRole| {
        model
            .helm_releases
            .iter()
            .find(|h| cat.chart(&h.spec.chart).and_then(|c| c.cni.as_ref()).is_some_and(|c| c.role == r))
    };
    let mut table = Table::new(&["when", "node", "/etc/cni/net.d", "plugin chain"]);
    let Some(chained) = role(CniRole::Chained) else {
        let check = Check::new(
            "chained",
            "linkerd-cni chained into the primary CNI",
            Status::Skip,
            "the repository installs no chained CNI (linkerd2-cni): nothing to chain".into(),
        );
        return Ok(SuiteResult { suite: SuiteName::CniChaining, checks: vec![check], table, snapshot: None });
    };
    let mut checks = vec![];
    // The rule that reads the values: an exclusive primary is an error before any node.
    let findings = crate::rules::check(model, &loaded.graph, cat, &loaded.config);
    let exclusive: Vec<String> = findings
        .iter()
        .filter(|f| f.rule == "cni-exclusive" || f.rule == "cni-order")
        .map(|f| format!("{}:{}: {}", f.file, f.line, f.message))
        .collect();
    let primary = role(CniRole::Primary).map(|h| format!("{}/{}", h.spec.namespace, h.spec.name));
    checks.push(Check::from_problems(
        "not-exclusive",
        "the primary CNI leaves room for linkerd-cni",
        &exclusive,
        format!(
            "{} does not own /etc/cni/net.d exclusively, and {}/{} is installed after it",
            primary.as_deref().unwrap_or("the cluster's own CNI"),
            chained.spec.namespace,
            chained.spec.name
        ),
    ));
    let mut s = Simulator::of(loaded, sim.clone())?;
    s.run();
    let mut nodes_check = |id: &str, when: &str, title: &str, s: &Simulator, ok: &dyn Fn(&[NodeCni]) -> String| {
        let nodes = s.nodes_cni();
        rows(&mut table, when, &nodes);
        checks.push(Check::from_problems(id, title, &check_nodes(&nodes), ok(&nodes)));
    };
    let chain =
        |n: &[NodeCni]| format!("{} nodes: {}", n.len(), n.first().map(|x| x.chain.join(" → ")).unwrap_or_default());
    nodes_check(
        "chained-after-bootstrap",
        "after bootstrap",
        "every node chains linkerd-cni last after the bootstrap",
        &s,
        &chain,
    );
    let now = s.now_ms();
    s.cilium_restart(now);
    let again = |n: &[NodeCni]| format!("{} nodes: linkerd-cni appended itself again", n.len());
    nodes_check(
        "chained-after-restart",
        "after Cilium restart",
        "still chained after the Cilium agents restart",
        &s,
        &again,
    );
    let snapshot = table.rows.iter().map(|r| format!("{}  {}  [{}]  {}\n", r[0], r[1], r[2], r[3])).collect();
    Ok(SuiteResult { suite: SuiteName::CniChaining, checks, table, snapshot: Some(snapshot) })
}
