//! The e2e profile of `.flux-harness.yaml`: what a test cluster cannot have (an NFS server
//! of the office network, a cloud API), handled in the served tree of e2e runs only, so the
//! rest of the repo still proves its ordering. `substitute` sets postBuild variables on
//! every Kustomization that substitutes; `skip` points a Kustomization at a stand-in
//! directory (`instead`) or at nothing, and says why. Every change is a reported rewrite;
//! the user's files and `plan` never see them. Pure: files come in through `read`.

use super::plan::Rewrite;
use crate::config::E2eProfile;
use crate::error::{Error, ErrorKind, Result};
use crate::model::RepoModel;
use serde_json::{Value, json};

/// Where a skip without a stand-in points: an empty kustomization added to the served tree.
pub const EMPTY: &str = ".flux-harness/e2e-skipped";

/// Adds the profile's changes to `rw` (merged into files other rewrites already changed).
/// An unknown Kustomization or a missing stand-in directory is an error: a profile that
/// silently does nothing would let a run pass for the wrong reason.
pub fn apply(
    model: &RepoModel,
    profile: &E2eProfile,
    read: &dyn Fn(&str) -> Option<String>,
    is_dir: &dyn Fn(&str) -> bool,
    rw: &mut Vec<Rewrite>,
) -> Result<()> {
    // (Kustomization, the directory it applies instead when skipped, why).
    type Target = (usize, Option<String>, String);
    let mut targets: Vec<Target> = vec![];
    for s in &profile.skip {
        let (ns, name) = s.kustomization.split_once('/').unwrap_or(("", s.kustomization.as_str()));
        let Some(i) =
            model.kustomizations.iter().position(|k| k.spec.name == name && (ns.is_empty() || k.spec.namespace == ns))
        else {
            return Err(Error::in_file(
                ErrorKind::BadObject,
                crate::config::FILE,
                format!("e2e.skip names Kustomization {}, which the repository does not define", s.kustomization),
            ));
        };
        let instead = match &s.instead {
            Some(d) => {
                let d = d.trim_start_matches("./").trim_end_matches('/').to_string();
                if !is_dir(&d) {
                    return Err(Error::in_file(
                        ErrorKind::MissingPath,
                        crate::config::FILE,
                        format!("e2e.skip of {}: instead: ./{d} is not a directory of the repository", s.kustomization),
                    ));
                }
                d
            }
            None => EMPTY.to_string(),
        };
        targets.push((i, Some(instead), s.reason.clone()));
    }
    if targets.iter().any(|(_, d, _)| d.as_deref() == Some(EMPTY)) {
        rw.push(Rewrite {
            path: format!("{EMPTY}/kustomization.yaml"),
            what: "added: an empty kustomization for the Kustomizations the e2e profile skips".into(),
            content: "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n".into(),
        });
    }
    // Every Kustomization object that substitutes gets the profile's variables.
    if !profile.substitute.is_empty() {
        for (i, k) in model.kustomizations.iter().enumerate() {
            let post = k.spec.raw.pointer("/spec/postBuild");
            if post.is_some_and(|p| !p.is_null()) && !targets.iter().any(|(t, _, _)| *t == i) {
                targets.push((i, None, String::new()));
            }
        }
    }
    let mut by_file: Vec<(&str, Vec<Target>)> = vec![];
    for t in targets {
        let k = &model.kustomizations[t.0];
        if k.synthesized {
            continue;
        }
        let file = k.spec.origin.file.as_str();
        match by_file.iter_mut().find(|(f, _)| *f == file) {
            Some((_, v)) => v.push(t),
            None => by_file.push((file, vec![t])),
        }
    }
    for (file, items) in by_file {
        let at = rw.iter().position(|r| r.path == file);
        let Some(text) = at.map(|i| rw[i].content.clone()).or_else(|| read(file)) else { continue };
        let mut docs = crate::yaml::parse_docs(file, &text)?;
        let (mut said, mut substituted) = (vec![], vec![]);
        for (i, instead, reason) in items {
            let k = &model.kustomizations[i].spec;
            let Some(v) = docs.iter_mut().map(|d| &mut d.value).find(|v| {
                v["kind"] == "Kustomization"
                    && v["apiVersion"].as_str().is_some_and(|a| a.starts_with("kustomize.toolkit.fluxcd.io/"))
                    && v["metadata"]["name"] == k.name.as_str()
            }) else {
                continue;
            };
            match instead {
                Some(dir) => {
                    v["spec"]["path"] = json!(format!("./{dir}"));
                    let what = if dir == EMPTY { "nothing".to_string() } else { format!("./{dir}") };
                    said.push(format!(
                        "Kustomization {}/{} skipped ({reason}): applies {what} instead",
                        k.namespace, k.name
                    ));
                }
                None => {
                    let sub = &mut v["spec"]["postBuild"]["substitute"];
                    if !sub.is_object() {
                        *sub = json!({});
                    }
                    for (var, value) in &profile.substitute {
                        sub[var] = Value::String(value.clone());
                    }
                    substituted.push(format!("{}/{}", k.namespace, k.name));
                }
            }
        }
        if !substituted.is_empty() {
            said.push(format!("postBuild.substitute {} on Kustomization {}", vars(profile), substituted.join(", ")));
        }
        if said.is_empty() {
            continue;
        }
        let content = crate::yaml::to_yaml_stream(docs.iter().map(|d| &d.value));
        let what = format!("e2e profile: {}", said.join("; "));
        match at {
            Some(i) => {
                rw[i].content = content;
                rw[i].what = format!("{}; {what}", rw[i].what);
            }
            None => rw.push(Rewrite { path: file.to_string(), what, content }),
        }
    }
    Ok(())
}

fn vars(p: &E2eProfile) -> String {
    p.substitute.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}
