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
        let refuse = |why: String| {
            Err(Error::in_file(
                ErrorKind::BadObject,
                crate::config::FILE,
                format!("e2e.skip of {}: {why}", s.kustomization),
            ))
        };
        let found: Vec<usize> = (0..model.kustomizations.len())
            .filter(|&i| {
                let k = &model.kustomizations[i].spec;
                k.name == name && (ns.is_empty() || k.namespace == ns)
            })
            .collect();
        let i = match found.as_slice() {
            [] => return refuse("the repository does not define that Kustomization".into()),
            [i] => *i,
            many => {
                let names: Vec<String> = many.iter().map(|&i| model.kustomizations[i].spec.namespace.clone()).collect();
                return refuse(format!(
                    "several Kustomizations have that name (namespaces {}): name it NAMESPACE/NAME",
                    names.join(", ")
                ));
            }
        };
        let k = &model.kustomizations[i];
        if i == model.entry {
            return refuse("it is the entry Kustomization: skipping it skips the whole bootstrap".into());
        }
        // A skip the served tree cannot carry would let the run pass for the wrong reason.
        if k.synthesized {
            return refuse("no file defines it (the harness synthesized it), so there is nothing to rewrite".into());
        }
        if read(&k.spec.origin.file).is_none() {
            return refuse(format!(
                "it is defined in {}, which is not in the served tree (another source's file?)",
                k.spec.origin.file
            ));
        }
        let instead = match &s.instead {
            Some(d) => {
                let d = d.trim_start_matches("./").trim_end_matches('/').to_string();
                if d.starts_with('/') || d.split('/').any(|seg| seg == "..") {
                    return refuse(format!("instead: {d} must be a directory inside the repository"));
                }
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
        // Only substitutions reach here synthesized (a skip of one was refused above).
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
        // Only substitutions land here unread (a skip's file was checked above): a
        // Kustomization of another source keeps its own variables.
        let Some(text) = at.map(|i| rw[i].content.clone()).or_else(|| read(file)) else { continue };
        let mut docs = crate::yaml::parse_docs(file, &text)?;
        let (mut said, mut substituted) = (vec![], vec![]);
        for (i, instead, reason) in items {
            let k = &model.kustomizations[i].spec;
            let Some(v) = docs.iter_mut().map(|d| &mut d.value).find(|v| {
                v["kind"] == "Kustomization"
                    && v["apiVersion"].as_str().is_some_and(|a| a.starts_with("kustomize.toolkit.fluxcd.io/"))
                    && v["metadata"]["name"] == k.name.as_str()
                    && v["metadata"]["namespace"].as_str().is_none_or(|n| n == k.namespace)
            }) else {
                if instead.is_some() {
                    return Err(Error::in_file(
                        ErrorKind::BadObject,
                        file,
                        format!(
                            "e2e.skip of {}/{}: its document is not found in this file to rewrite",
                            k.namespace, k.name
                        ),
                    ));
                }
                continue;
            };
            match instead {
                Some(dir) => {
                    v["spec"]["path"] = json!(format!("./{dir}"));
                    // What belonged to the skipped content goes with it: health checks of
                    // objects it no longer applies, components and patches of its files.
                    let mut dropped = vec![];
                    if let Some(spec) = v["spec"].as_object_mut() {
                        for field in ["healthChecks", "components", "patches"] {
                            if spec.remove(field).is_some() {
                                dropped.push(field);
                            }
                        }
                    }
                    let what = if dir == EMPTY { "nothing".to_string() } else { format!("./{dir}") };
                    let dropped = if dropped.is_empty() {
                        String::new()
                    } else {
                        format!(", without its {}", dropped.join(", "))
                    };
                    said.push(format!(
                        "Kustomization {}/{} skipped ({reason}): applies {what} instead{dropped}",
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
