//! Rule 14 `substitution-disabled`: `${VAR}` in a Kustomization without postBuild is applied
//! literally. Rule 15 `sops-decryption`: SOPS-encrypted files without `spec.decryption`.
//! Rule 17 (environment policy): production images pinned (`env-image-unpinned`),
//! production replicas at least 2 (`env-replicas`).

use super::Ctx;
use crate::findings::{Finding, Severity};
use serde_json::Value;

fn contains_var(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let i = s.find("${")?;
            let j = s[i..].find('}').map(|j| i + j + 1).unwrap_or(s.len());
            Some(s[i..j].to_string())
        }
        Value::Array(a) => a.iter().find_map(contains_var),
        Value::Object(m) => m.values().find_map(contains_var),
        _ => None,
    }
}

fn is_production(ctx: &Ctx, i: usize) -> bool {
    let k = &ctx.model.kustomizations[i].spec;
    let prod = |s: &str| matches!(s, "prod" | "production" | "prd");
    k.path.split('/').any(prod)
        || k.overlay.target_namespace.as_deref().is_some_and(prod)
        || prod(&k.name)
        || k.name.ends_with("-prod")
        || k.name.ends_with("-production")
}

fn containers(o: &crate::object::Object) -> Vec<&Value> {
    let spec = match o.kind() {
        "Pod" => o.value.get("spec"),
        "CronJob" => o.value.pointer("/spec/jobTemplate/spec/template/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => o.value.pointer("/spec/template/spec"),
        _ => None,
    };
    let Some(spec) = spec else { return vec![] };
    ["containers", "initContainers"]
        .iter()
        .flat_map(|f| spec.get(*f).and_then(Value::as_array).into_iter().flatten())
        .collect()
}

/// The tag of an image reference (`None` when pinned by digest or when there is no tag).
fn unpinned(image: &str) -> Option<&'static str> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some("no tag (latest)"),
        Some((_, "latest")) => Some("latest"),
        Some((_, t)) if t.ends_with("-latest") => Some("a *-latest tag"),
        _ => None,
    }
}

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for (i, k) in ctx.rendered() {
        let post_build = !k.spec.substitute.is_empty() || !k.spec.substitute_from.is_empty();
        if !post_build
            && let Some((o, var)) = k
                .objects
                .iter()
                .filter(|o| crate::flux::Kustomization::substitution_enabled(o))
                .find_map(|o| contains_var(&o.value).map(|v| (o, v)))
        {
            out.push(
                ctx.finding(
                    "substitution-disabled",
                    Severity::Warning,
                    &o.origin,
                    Some(i),
                    format!("{} contains {var}, but Kustomization {} has no postBuild: Flux applies the text `{var}` literally", o.display_id(), ctx.name(i)),
                )
                .fix(format!("add postBuild.substitute / substituteFrom to {}, or escape it as $${{...}} if it is meant literally", ctx.name(i))),
            );
        }
        if let Some((x, why)) = crate::sops::undecrypted_secret(k) {
            let o = &k.objects[x];
            out.push(
                ctx.finding(
                    "sops-decryption",
                    Severity::Error,
                    &o.origin,
                    Some(i),
                    format!("{} is SOPS-encrypted, but Kustomization {} has no spec.decryption: Flux refuses to apply anything of it (`{why}`) and nothing that depends on it becomes Ready", o.display_id(), ctx.name(i)),
                )
                .fix(format!("add `decryption: {{provider: sops, secretRef: {{name: sops-age}}}}` to {}", ctx.name(i))),
            );
        } else if !k.spec.decryption
            && let Some(o) =
                k.objects.iter().find(|o| o.kind() != "Secret" && o.value.get("sops").is_some_and(|s| s.is_object()))
        {
            // Only Secrets are refused; anything else is applied with its ciphertext.
            out.push(
                ctx.finding(
                    "sops-decryption",
                    Severity::Warning,
                    &o.origin,
                    Some(i),
                    format!("{} is SOPS-encrypted, but Kustomization {} has no spec.decryption: Flux applies the ciphertext as its content", o.display_id(), ctx.name(i)),
                )
                .fix(format!("add `decryption: {{provider: sops, secretRef: {{name: sops-age}}}}` to {}", ctx.name(i))),
            );
        }
        if let Some((x, why)) = crate::sops::build_failure(k, &ctx.cfg.decryption) {
            let (loc, what) = match x {
                Some(x) => (&k.objects[x].origin, k.objects[x].display_id()),
                None => (&k.spec.origin, format!("the decryption Secret of {}", ctx.name(i))),
            };
            let fix = match &ctx.cfg.decryption {
                crate::config::Decryption::Keys(keys) => format!(
                    "encrypt it for one of the keys given (recipients {}), or give the key it was encrypted for",
                    keys.recipients().join(", ")
                ),
                _ => "give the age key with --age-key (the harness then creates the Secret), or create it in the cluster first".into(),
            };
            out.push(
                ctx.finding(
                    "sops-decrypt-failed",
                    Severity::Error,
                    loc,
                    Some(i),
                    format!("{what} cannot be decrypted: Kustomization {} fails its build with `{why}` and nothing that depends on it becomes Ready", ctx.name(i)),
                )
                .fix(fix),
            );
        }
        if !is_production(ctx, i) {
            continue;
        }
        for o in &k.objects {
            for c in containers(o) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                if let Some(why) = unpinned(image) {
                    out.push(
                        ctx.finding(
                            "env-image-unpinned",
                            Severity::Error,
                            &o.origin,
                            Some(i),
                            format!("{} runs image {image} with {why} in production (Kustomization {}): what runs changes without a commit, and a rollback cannot restore it", o.display_id(), ctx.name(i)),
                        )
                        .fix("pin a version tag or a digest in the production overlay's images:"),
                    );
                }
            }
            if matches!(o.kind(), "Deployment" | "StatefulSet") {
                let replicas = o.value.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
                if replicas < 2 {
                    out.push(
                        ctx.finding(
                            "env-replicas",
                            Severity::Error,
                            &o.origin,
                            Some(i),
                            format!("{} has {replicas} replica(s) in production (Kustomization {}): one node drain or rollout takes it down", o.display_id(), ctx.name(i)),
                        )
                        .fix("set replicas: 2 or more in the production overlay"),
                    );
                }
            }
        }
    }
}
