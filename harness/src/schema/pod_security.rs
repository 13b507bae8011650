//! Pod Security admission (the Pod Security Standards, `latest`): what a namespace's
//! `pod-security.kubernetes.io/enforce` level refuses in a pod template. A refused Pod
//! object fails its Kustomization's dry-run; a refused Deployment, StatefulSet, DaemonSet,
//! Job or CronJob is admitted (Pod Security only warns on them) but never gets a pod, so
//! it is never Ready. The checks of the standard that repos meet in practice; the rest
//! (sysctls, AppArmor, SELinux options, /proc mount) are not checked.

use serde_json::Value;

/// Capabilities `baseline` allows a container to add.
const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types `restricted` allows.
const RESTRICTED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// The pod spec of a workload object (`spec` of a Pod, `spec.template.spec` of the
/// controllers, `spec.jobTemplate.spec.template.spec` of a CronJob).
pub fn pod_spec(v: &Value) -> Option<&Value> {
    let kind = v.get("kind")?.as_str()?;
    match kind {
        "Pod" => v.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => v.pointer("/spec/template/spec"),
        "CronJob" => v.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    v == Some(&Value::Bool(true))
}

/// The violations of `level` (`privileged`, `baseline`, `restricted`) by a pod spec, in
/// the API server's words where it has them.
pub fn violations(level: &str, spec: &Value) -> Vec<String> {
    if level != "baseline" && level != "restricted" {
        return vec![];
    }
    let restricted = level == "restricted";
    let mut out = vec![];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if truthy(spec.get(f)) {
            out.push(format!("host namespaces ({f}=true)"));
        }
    }
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten())
        .collect();
    let pod_sc = spec.get("securityContext");
    for c in &containers {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let sc = c.get("securityContext");
        let field = |p: &str| sc.and_then(|s| s.pointer(p));
        if truthy(field("/privileged")) {
            out.push(format!("privileged (container \"{name}\" must not set securityContext.privileged=true)"));
        }
        for port in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if port.get("hostPort").and_then(Value::as_u64).is_some_and(|p| p != 0) {
                out.push(format!("hostPort (container \"{name}\" uses hostPort)"));
            }
        }
        let added: Vec<&str> = field("/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let allowed = |cap: &str| if restricted { cap == "NET_BIND_SERVICE" } else { BASELINE_CAPS.contains(&cap) };
        let bad: Vec<&str> = added.iter().copied().filter(|c| !allowed(c)).collect();
        if !bad.is_empty() {
            out.push(format!("unrestricted capabilities (container \"{name}\" must not include {} in securityContext.capabilities.add)", bad.join(", ")));
        }
        if restricted {
            if field("/allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
                out.push(format!("allowPrivilegeEscalation != false (container \"{name}\" must set securityContext.allowPrivilegeEscalation=false)"));
            }
            let drops_all = field("/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")));
            if !drops_all {
                out.push(format!("unrestricted capabilities (container \"{name}\" must set securityContext.capabilities.drop=[\"ALL\"])"));
            }
            let non_root = field("/runAsNonRoot").or_else(|| pod_sc.and_then(|s| s.get("runAsNonRoot")));
            if !truthy(non_root) {
                out.push(format!(
                    "runAsNonRoot != true (pod or container \"{name}\" must set securityContext.runAsNonRoot=true)"
                ));
            }
            let seccomp = field("/seccompProfile/type")
                .or_else(|| pod_sc.and_then(|s| s.pointer("/seccompProfile/type")))
                .and_then(Value::as_str);
            if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
                out.push(format!("seccompProfile (pod or container \"{name}\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"));
            }
        }
    }
    for vol in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let Some(m) = vol.as_object() else { continue };
        let name = m.get("name").and_then(Value::as_str).unwrap_or("?");
        if m.contains_key("hostPath") {
            out.push(format!("hostPath volumes (volume \"{name}\")"));
        } else if restricted && !m.keys().any(|k| k == "name" || RESTRICTED_VOLUMES.contains(&k.as_str())) {
            out.push(format!("restricted volume types (volume \"{name}\")"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restricted_and_baseline() {
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "c", "configMap": {"name": "x"}}]});
        assert!(violations("restricted", &good).is_empty(), "{:?}", violations("restricted", &good));
        let plain = json!({"containers": [{"name": "app", "image": "nginx"}]});
        assert_eq!(violations("restricted", &plain).len(), 4, "{:?}", violations("restricted", &plain));
        assert!(violations("baseline", &plain).is_empty());
        let node = json!({"hostNetwork": true, "containers": [{"name": "agent", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}}}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]});
        let v = violations("baseline", &node);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].starts_with("host namespaces (hostNetwork=true)"));
        assert!(violations("privileged", &node).is_empty());
    }
}
