//! The suites' checks on a real cluster, after its bootstrap passed and before it is torn
//! down: what each node's `/etc/cni/net.d` holds, before and after the Cilium agents
//! restart (`cni-chaining`), and the namespace-isolation matrix probed with pods
//! (`namespace-isolation`). The commands go through `exec`; building them, parsing what
//! they print and comparing it with the computed verdicts are pure functions below.

use super::provider::ClusterProvider;
use crate::exec::Cmd;
use crate::sim::nodes::NodeCni;
use crate::suite::{Check, Status};
use serde_json::{Value, json};

/// Separates the directory listing from the first configuration in what a node prints.
const MARK: &str = "---flux-harness---";

/// What a node is asked: the files of /etc/cni/net.d, then the first configuration the
/// kubelet would take (the first `*.conflist`/`*.conf` in name order).
pub const NODE_SCRIPT: &str = "cd /etc/cni/net.d && ls -1 && echo ---flux-harness--- && f=$(ls -1 | grep -E '\\.(conflist|conf)$' | head -n 1) && [ -n \"$f\" ] && cat \"$f\"; true";

/// A node's answer to [`NODE_SCRIPT`] as the suite's node state.
pub fn parse_node(node: &str, out: &str) -> NodeCni {
    let (listing, conf) = out.split_once(MARK).unwrap_or((out, ""));
    let mut files: Vec<String> = listing.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    files.sort();
    let chain = match serde_json::from_str::<Value>(conf.trim()) {
        // A conflist chains its plugins; a single .conf is one plugin.
        Ok(v) => match v.get("plugins").and_then(Value::as_array) {
            Some(ps) => ps.iter().filter_map(|p| p["type"].as_str().map(String::from)).collect(),
            None => v["type"].as_str().map(String::from).into_iter().collect(),
        },
        Err(_) => vec![],
    };
    NodeCni { node: node.to_string(), files, chain }
}

/// Every node's CNI state, read from the node itself.
pub fn read_nodes(prov: &dyn ClusterProvider) -> Result<Vec<NodeCni>, String> {
    let names = prov
        .nodes()
        .ok_or_else(|| format!("{} has no nodes to read", prov.name()))?
        .output()
        .map_err(|e| format!("listing the nodes: {e}"))?;
    let mut out = vec![];
    for n in names.split_whitespace() {
        let cmd =
            prov.on_node(n, NODE_SCRIPT).ok_or_else(|| format!("{} cannot run a command on node {n}", prov.name()))?;
        let text = cmd.output().map_err(|e| format!("reading /etc/cni/net.d on {n}: {e}"))?;
        out.push(parse_node(n, &text));
    }
    if out.is_empty() {
        return Err("the cluster lists no node".into());
    }
    Ok(out)
}

fn kubectl(prov: &dyn ClusterProvider, args: &[&str]) -> Cmd {
    let mut a = prov.target().kubectl_args();
    a.extend(args.iter().map(|s| s.to_string()));
    Cmd::new("kubectl", &a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The Cilium agents restarted as an operator would (`rollout restart`), waited for.
pub fn restart_cilium(prov: &dyn ClusterProvider) -> Result<(), String> {
    for args in [
        &["-n", "kube-system", "rollout", "restart", "daemonset/cilium"][..],
        &["-n", "kube-system", "rollout", "status", "daemonset/cilium", "--timeout=5m"][..],
    ] {
        kubectl(prov, args).output().map_err(|e| format!("restarting the Cilium agents: {e}"))?;
    }
    Ok(())
}

/// `cni-chaining` on the nodes: the same node checks as on sim, after the bootstrap and
/// after the Cilium agents restart.
pub fn cni_checks(prov: &dyn ClusterProvider, cilium: bool) -> Vec<Check> {
    let check = |id: &str, title: &str, nodes: Result<Vec<NodeCni>, String>| match nodes {
        Ok(n) => Check::from_problems(
            id,
            title,
            &crate::suite::cni::check_nodes(&n),
            format!("{} nodes read: {}", n.len(), n.first().map(|x| x.chain.join(" → ")).unwrap_or_default()),
        ),
        Err(e) => Check::new(id, title, Status::Fail, e),
    };
    let mut out =
        vec![check("live-after-bootstrap", "the nodes chain linkerd-cni last (read from the nodes)", read_nodes(prov))];
    if cilium && !crate::exec::stopping() {
        let after = restart_cilium(prov).and_then(|_| read_nodes(prov));
        out.push(check("live-after-restart", "still chained after the Cilium agents restart (on the cluster)", after));
    }
    out
}

pub const PROBE: &str = "flux-harness-probe";
const PROBE_PORT: u32 = 8080;
const IMAGE: &str = "busybox:1.36";

/// A probe pod as `kubectl run --overrides` takes it: unprivileged (it runs under the
/// restricted Pod Security level), outside any mesh, with no labels an app policy selects.
fn probe_pod(name: &str, args: &[&str]) -> String {
    json!({"apiVersion": "v1", "metadata": {"annotations": {"linkerd.io/inject": "disabled"}},
        "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": name, "image": IMAGE, "args": args,
                                 "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
    .to_string()
}

/// The commands that start a server pod in each namespace (all at once, then waited for).
pub fn probe_servers(prov: &dyn ClusterProvider, namespaces: &[String]) -> Vec<Cmd> {
    let port = PROBE_PORT.to_string();
    let overrides = probe_pod(PROBE, &["httpd", "-f", "-p", &port, "-h", "/tmp"]);
    let mut out: Vec<Cmd> = namespaces
        .iter()
        .map(|ns| {
            kubectl(
                prov,
                &[
                    "-n",
                    ns,
                    "run",
                    PROBE,
                    "--image",
                    IMAGE,
                    "--restart=Never",
                    "--port",
                    &port,
                    "--overrides",
                    &overrides,
                ],
            )
        })
        .collect();
    out.extend(namespaces.iter().map(|ns| {
        kubectl(prov, &["-n", ns, "wait", "--for=condition=Ready", &format!("pod/{PROBE}"), "--timeout=3m"])
    }));
    out
}

/// What a client pod runs: one line per target, `open` or `closed`, and DNS last.
pub fn client_script(targets: &[(String, String)]) -> String {
    let mut s = String::new();
    for (label, ip) in targets {
        let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        s.push_str(&format!(
            "if wget -q -T 3 -O /dev/null http://{ip}:{PROBE_PORT}/ 2>/dev/null; then echo '{label} open'; else echo '{label} closed'; fi; "
        ));
    }
    s.push_str("if nslookup -timeout=3 kubernetes.default.svc.cluster.local >/dev/null 2>&1; then echo 'dns open'; else echo 'dns closed'; fi");
    s
}

/// `from \ to` pairs whose probe disagrees with the computed matrix (`expected[i][j]`).
pub fn disagreements(labels: &[String], expected: &[Vec<bool>], observed: &[Vec<Option<bool>>]) -> Vec<String> {
    let mut out = vec![];
    for (i, from) in labels.iter().enumerate() {
        for (j, to) in labels.iter().enumerate() {
            if from == "dns" {
                continue;
            }
            match (expected[i][j], observed.get(i).and_then(|r| r.get(j)).copied().flatten()) {
                // A probe that gave no answer is no agreement.
                (_, None) => out.push(format!("{from} → {to}: the probe gave no answer")),
                (e, Some(o)) if e == o => {}
                (e, Some(o)) => out.push(format!(
                    "{from} → {to}: the policies say {}, the probe found it {}",
                    if e { "open" } else { "closed" },
                    if o { "open" } else { "closed" }
                )),
            }
        }
    }
    out
}

/// Runs the probe: a server pod per namespace, a client pod per namespace that tries every
/// server and DNS, the answers compared with `expected`. The probe pods are deleted after,
/// whatever happened.
pub fn probe(prov: &dyn ClusterProvider, labels: &[String], namespaces: &[String], expected: &[Vec<bool>]) -> Check {
    let title = "the matrix holds on the cluster (probed with pods)";
    // A server in every namespace probed (DNS is CoreDNS itself).
    let mut servers: Vec<String> =
        labels.iter().zip(namespaces).filter(|(l, _)| *l != "dns").map(|(_, ns)| ns.clone()).collect();
    servers.sort();
    servers.dedup();
    if servers.is_empty() {
        return Check::new("live-probe", title, Status::Skip, "no namespace to probe".into());
    }
    let cleanup = Cleanup { prov, namespaces: &servers };
    // Probe pods a killed run left would make `kubectl run` fail: gone first.
    cleanup.delete();
    let observed = (|| -> Result<Vec<Vec<Option<bool>>>, String> {
        for c in probe_servers(prov, &servers) {
            c.output().map_err(|e| format!("starting the probe pods: {e}"))?;
        }
        let mut targets = vec![];
        for (label, ns) in labels.iter().zip(namespaces) {
            if label == "dns" {
                continue;
            }
            let ip = kubectl(prov, &["-n", ns, "get", "pod", PROBE, "-o", "jsonpath={.status.podIP}"])
                .output()
                .map_err(|e| format!("reading the probe pod's address in {ns}: {e}"))?;
            targets.push((label.clone(), ip.trim().to_string()));
        }
        let script = client_script(&targets);
        let mut rows = vec![];
        for (label, ns) in labels.iter().zip(namespaces) {
            if crate::exec::stopping() {
                return Err("interrupted".into());
            }
            if label == "dns" {
                rows.push(vec![None; labels.len()]);
                continue;
            }
            // Not attached (`run -i` can lose early output): run to completion, then read
            // its log.
            let client = format!("{PROBE}-client");
            let overrides = probe_pod(&client, &["sh", "-c", &script]);
            let pod = format!("pod/{client}");
            let steps: [&[&str]; 3] = [
                &["-n", ns, "run", &client, "--image", IMAGE, "--restart=Never", "--overrides", &overrides],
                &["-n", ns, "wait", &pod, "--for=jsonpath={.status.phase}=Succeeded", "--timeout=3m"],
                &["-n", ns, "logs", &pod],
            ];
            let mut out = String::new();
            for args in steps {
                out = kubectl(prov, args).output().map_err(|e| format!("probing from {label}: {e}"))?;
            }
            let _ = kubectl(prov, &["-n", ns, "delete", &pod, "--ignore-not-found", "--wait=false"]).output();
            let seen =
                |to: &str| out.lines().find_map(|l| l.strip_prefix(&format!("{to} ")).map(|r| r.trim() == "open"));
            rows.push(labels.iter().map(|to| seen(to)).collect());
        }
        Ok(rows)
    })();
    drop(cleanup);
    match observed {
        Ok(rows) => Check::from_problems(
            "live-probe",
            title,
            &disagreements(labels, expected, &rows),
            format!("{} namespaces probed on TCP {PROBE_PORT} and DNS: as computed", servers.len()),
        ),
        Err(e) => Check::new("live-probe", title, Status::Fail, e),
    }
}

/// Deletes the probe pods when dropped.
struct Cleanup<'a> {
    prov: &'a dyn ClusterProvider,
    namespaces: &'a [String],
}

impl Cleanup<'_> {
    fn delete(&self) {
        let client = format!("{PROBE}-client");
        for ns in self.namespaces {
            let _ =
                kubectl(self.prov, &["-n", ns, "delete", "pod", PROBE, &client, "--ignore-not-found", "--wait=false"])
                    .output();
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

/// How long a webhook's pods stay down on a real cluster.
pub const WEBHOOK_DOWN: std::time::Duration = std::time::Duration::from_secs(60);

/// The Service behind a webhook, from the cluster's webhook configurations.
fn webhook_service(prov: &dyn ClusterProvider, webhook: &str) -> Result<Option<(String, String)>, String> {
    let text = kubectl(prov, &["get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "json"])
        .output()
        .map_err(|e| format!("listing the webhook configurations: {e}"))?;
    let list: Value = serde_json::from_str(&text).map_err(|e| format!("the webhook configurations: {e}"))?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["webhooks"].as_array().into_iter().flatten())
        .find_map(|w| {
            let svc = &w["clientConfig"]["service"];
            (w["name"] == webhook)
                .then(|| Some((svc["namespace"].as_str()?.to_string(), svc["name"].as_str()?.to_string())))?
        }))
}

/// The Deployments (name, replicas) whose pods a Service selects.
fn backing_deployments(
    prov: &dyn ClusterProvider,
    ns: &str,
    svc: &str,
) -> Result<(String, Vec<(String, i64)>), String> {
    let s: Value = serde_json::from_str(
        &kubectl(prov, &["-n", ns, "get", "service", svc, "-o", "json"])
            .output()
            .map_err(|e| format!("service {ns}/{svc}: {e}"))?,
    )
    .map_err(|e| format!("service {ns}/{svc}: {e}"))?;
    let selector: Vec<String> = s["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect();
    if selector.is_empty() {
        return Err(format!("service {ns}/{svc} selects no pods"));
    }
    let sel = selector.join(",");
    let d: Value = serde_json::from_str(
        &kubectl(prov, &["-n", ns, "get", "deployments", "-o", "json"])
            .output()
            .map_err(|e| format!("deployments behind {ns}/{svc}: {e}"))?,
    )
    .map_err(|e| format!("deployments behind {ns}/{svc}: {e}"))?;
    // The Service selects pods: matched on each Deployment's pod template, not its own labels.
    let wanted = s["spec"]["selector"].as_object().cloned().unwrap_or_default();
    let deps: Vec<(String, i64)> = d["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            let labels = &i["spec"]["template"]["metadata"]["labels"];
            wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter_map(|i| {
            Some((i["metadata"]["name"].as_str()?.to_string(), i["spec"]["replicas"].as_i64().unwrap_or(1)))
        })
        .collect();
    if deps.is_empty() {
        return Err(format!("no Deployment runs the pods of service {ns}/{svc} ({sel})"));
    }
    Ok((sel, deps))
}

/// Scales the webhook's Deployments back when dropped (also when a step failed).
struct ScaleBack<'a> {
    prov: &'a dyn ClusterProvider,
    ns: String,
    deps: Vec<(String, i64)>,
}

impl Drop for ScaleBack<'_> {
    fn drop(&mut self) {
        for (d, n) in &self.deps {
            let _ =
                kubectl(self.prov, &["-n", &self.ns, "scale", &format!("deployment/{d}"), &format!("--replicas={n}")])
                    .output();
        }
    }
}

/// Asks each of the repo's Kustomizations to reconcile now (as `flux reconcile` does), with
/// a mark unique to the run (Flux acts only on a new value).
fn reconcile(prov: &dyn ClusterProvider, ks: &[(String, String)], mark: &str) -> Result<(), String> {
    for (ns, name) in ks {
        kubectl(
            prov,
            &[
                "-n",
                ns,
                "annotate",
                "--overwrite",
                &format!("kustomization.kustomize.toolkit.fluxcd.io/{name}"),
                &format!("reconcile.fluxcd.io/requestedAt={mark}"),
            ],
        )
        .output()
        .map_err(|e| format!("requesting a reconcile of {ns}/{name}: {e}"))?;
    }
    Ok(())
}

/// Waits until each of the repo's Kustomizations has handled request `mark` and is Ready
/// (an old Ready=True does not count).
fn wait_handled(prov: &dyn ClusterProvider, ks: &[(String, String)], mark: &str) -> Result<(), String> {
    for (ns, name) in ks {
        let k = format!("kustomization.kustomize.toolkit.fluxcd.io/{name}");
        for cond in
            [format!("--for=jsonpath={{.status.lastHandledReconcileAt}}={mark}"), "--for=condition=Ready".into()]
        {
            kubectl(prov, &["-n", ns, "wait", &k, &cond, "--timeout=10m"])
                .output()
                .map_err(|e| format!("Kustomization {ns}/{name} is not Ready again after the request: {e}"))?;
        }
    }
    Ok(())
}

/// A fail-closed webhook as the live check takes it down.
pub struct LiveHook {
    pub name: String,
    /// It refuses its own new pods: taken down, it would never come back (the simulator's
    /// and plan's verdict), so it is not taken down on a real cluster.
    pub self_blocks: bool,
}

/// `webhook-bootstrap` on the cluster: each fail-closed webhook's pods taken down (its
/// Deployments scaled to 0) while the repo's Kustomizations (`ks`, not suspended) reconcile,
/// then restored; its pods must come back and each of `ks` handle a new request and be
/// Ready. `run` makes the reconcile marks unique to the run.
pub fn webhook_checks(
    prov: &dyn ClusterProvider,
    hooks: &[LiveHook],
    ks: &[(String, String)],
    down: std::time::Duration,
    run: &str,
) -> Vec<Check> {
    let mut out = vec![];
    for (n, hook) in hooks.iter().enumerate() {
        let webhook = &hook.name;
        if crate::exec::stopping() {
            break;
        }
        let id = format!("live-down-{webhook}");
        let title = format!("the cluster converges after {webhook}'s pods were down");
        if hook.self_blocks {
            out.push(Check::new(
                &id,
                &title,
                Status::Skip,
                format!("not taken down: {webhook} refuses its own new pods (webhook-self-block), so it would never come back and the cluster would stay broken; the simulator's check above is the verdict"),
            ));
            continue;
        }
        let result = (|| -> Result<String, String> {
            let Some((ns, svc)) = webhook_service(prov, webhook)? else {
                return Err(format!("no webhook configuration on the cluster names {webhook}"));
            };
            let (sel, deps) = backing_deployments(prov, &ns, &svc)?;
            let guard = ScaleBack { prov, ns: ns.clone(), deps: deps.clone() };
            for (d, _) in &deps {
                kubectl(prov, &["-n", &ns, "scale", &format!("deployment/{d}"), "--replicas=0"])
                    .output()
                    .map_err(|e| format!("scaling {ns}/{d} to 0: {e}"))?;
            }
            kubectl(prov, &["-n", &ns, "wait", "--for=delete", "pod", "-l", &sel, "--timeout=2m"])
                .output()
                .map_err(|e| format!("waiting for {webhook}'s pods to stop: {e}"))?;
            reconcile(prov, ks, &format!("flux-harness-{run}-down-{n}"))?;
            // Down for `down`, but back at once when the run is interrupted.
            let until = std::time::Instant::now() + down;
            while std::time::Instant::now() < until && !crate::exec::stopping() {
                std::thread::sleep(std::time::Duration::from_millis(100).min(down));
            }
            drop(guard);
            if crate::exec::stopping() {
                return Err("interrupted: its pods were scaled back, the rest not checked".into());
            }
            let back = std::time::Instant::now();
            for (d, _) in &deps {
                kubectl(prov, &["-n", &ns, "rollout", "status", &format!("deployment/{d}"), "--timeout=5m"])
                    .output()
                    .map_err(|e| {
                    format!("{webhook}'s pods did not come back (a webhook refusing its own pods is a deadlock): {e}")
                })?;
            }
            let up = format!("flux-harness-{run}-up-{n}");
            reconcile(prov, ks, &up)?;
            wait_handled(prov, ks, &up)?;
            Ok(format!(
                "{} of {ns} down for {}s; every Kustomization Ready {}s after they came back",
                deps.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", "),
                down.as_secs(),
                back.elapsed().as_secs()
            ))
        })();
        out.push(match result {
            Ok(msg) => Check::new(&id, &title, Status::Pass, msg),
            Err(e) => Check::new(&id, &title, Status::Fail, e),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_s_answer_is_its_files_and_the_first_conflist_s_chain() {
        let out = "05-cilium.conflist\nZZZ-linkerd-cni-kubeconfig\n---flux-harness---\n{\"cniVersion\":\"0.3.1\",\"name\":\"cilium\",\"plugins\":[{\"type\":\"cilium-cni\"},{\"type\":\"linkerd-cni\"}]}\n";
        let n = parse_node("kind-worker", out);
        assert_eq!(n.files, ["05-cilium.conflist", "ZZZ-linkerd-cni-kubeconfig"]);
        assert_eq!(n.chain, ["cilium-cni", "linkerd-cni"]);
        assert!(crate::suite::cni::check_nodes(&[n]).is_empty());
        let bare =
            parse_node("kind-worker", "10-kindnet.conflist\n05-cilium.conflist.cilium_bak\n---flux-harness---\n");
        assert!(bare.chain.is_empty());
        assert!(!crate::suite::cni::check_nodes(&[bare]).is_empty(), "no chain read is not a pass");
    }

    #[test]
    fn disagreements_name_the_pair_and_both_verdicts() {
        let labels = vec!["dev".to_string(), "prod".to_string()];
        let expected = vec![vec![true, false], vec![false, true]];
        let observed = vec![vec![Some(true), Some(true)], vec![Some(false), None]];
        assert_eq!(
            disagreements(&labels, &expected, &observed),
            ["dev → prod: the policies say closed, the probe found it open", "prod → prod: the probe gave no answer"]
        );
    }
}
