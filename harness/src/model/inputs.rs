//! What a Kustomization and a HelmRelease read besides their source: postBuild
//! substitution (inline, from repo ConfigMaps/Secrets, from bootstrap Secrets committed
//! outside Flux) and HelmRelease `valuesFrom`, merged as the controllers merge them.

use super::*;
use crate::object::deep_merge;

/// The variables a ConfigMap or Secret provides. Secret `data` is base64; values that are
/// SOPS ciphertext are kept as they are (never decrypted, never printed).
pub(super) fn var_values(o: &Object) -> Vec<(String, String)> {
    let mut out = vec![];
    if let Some(m) = o.value.get("data").and_then(|d| d.as_object()) {
        for (k, v) in m {
            let s = crate::kustomize::transform::scalar_string(v);
            let val = if o.kind() == "Secret" && !s.starts_with("ENC[") {
                crate::kustomize::generate::base64_decode(&s)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            } else {
                s
            };
            out.push((k.clone(), val));
        }
    }
    if let Some(m) = o.value.get("stringData").and_then(|d| d.as_object()) {
        out.extend(m.iter().map(|(k, v)| (k.clone(), crate::kustomize::transform::scalar_string(v))));
    }
    out.retain(|(_, v)| !v.starts_with("ENC["));
    out
}

/// Substitutes in every string of a value (keys are left alone).
pub(super) fn substitute_value(
    v: &mut serde_json::Value,
    vars: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::String(s) if s.contains("${") => {
            let r = flux::substitute::substitute(s, vars)?;
            unresolved.extend(r.unresolved);
            *s = r.text;
        }
        serde_json::Value::Array(a) => {
            for x in a {
                substitute_value(x, vars, unresolved)?;
            }
        }
        serde_json::Value::Object(m) => {
            for x in m.values_mut() {
                substitute_value(x, vars, unresolved)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Loader<'_> {
    pub(super) fn merge_values_from(&mut self) {
        for j in 0..self.model.helm_releases.len() {
            let h = self.model.helm_releases[j].spec.clone();
            let Some(list) = h.raw.pointer("/spec/valuesFrom").and_then(|v| v.as_array()) else { continue };
            let hid = format!("{}/{}", h.namespace, h.name);
            let owner = format!(
                "{}/{}",
                self.model.kustomizations[self.model.helm_releases[j].owner].spec.namespace,
                self.model.kustomizations[self.model.helm_releases[j].owner].spec.name
            );
            let mut merged = serde_json::Value::Object(serde_json::Map::new());
            for vf in list {
                let kind = vf.get("kind").and_then(|v| v.as_str()).unwrap_or("ConfigMap");
                let name = vf.get("name").and_then(|v| v.as_str()).unwrap_or("");
                let key = vf.get("valuesKey").and_then(|v| v.as_str()).unwrap_or("values.yaml");
                let optional = vf.get("optional").and_then(|v| v.as_bool()).unwrap_or(false);
                let Some(o) = self.var_sources.get(&(kind.to_string(), h.namespace.clone(), name.to_string())) else {
                    if !optional {
                        self.model.findings.push(
                            Finding::new(
                                "values-from-missing",
                                Severity::Error,
                                &h.origin,
                                format!("HelmRelease {hid} takes values from {kind} {}/{name}, which the repository does not define: helm-controller fails with ValuesError", h.namespace),
                            )
                            .for_kustomization(&owner)
                            .fix("create it (a configMapGenerator with a `configurations:` nameReference for HelmRelease spec/valuesFrom/name keeps hashed names in step), or mark it optional"),
                        );
                    }
                    continue;
                };
                if o.value.get("sops").is_some() {
                    continue;
                }
                let Some(text) = var_values(o).into_iter().find(|(k, _)| k == key).map(|(_, v)| v) else { continue };
                let Ok(doc) = crate::yaml::parse_one(&o.origin.file, &text) else { continue };
                match vf.get("targetPath").and_then(|v| v.as_str()) {
                    Some(tp) => {
                        let path = crate::kustomize::replace::parse_path(tp);
                        crate::kustomize::replace::set(
                            &mut merged,
                            &path,
                            serde_json::Value::String(text.trim().to_string()),
                            true,
                        );
                    }
                    None => deep_merge(&mut merged, &doc.value),
                }
            }
            deep_merge(&mut merged, &h.values);
            self.model.helm_releases[j].spec.values = merged;
        }
    }

    /// Where the repo commits a Secret or ConfigMap that Flux does not apply (a bootstrap
    /// directory applied by hand or by a script before Flux starts).
    pub(super) fn out_of_band(&mut self, kind: &str, name: &str) -> Option<Loc> {
        if self.out_of_band.is_none() {
            let mut index = BTreeMap::new();
            let files = self.files;
            files::walk(files, 8, |path, name| {
                if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                    return;
                }
                let Ok(text) = files.read(path) else { return };
                if !(text.contains("kind: Secret") || text.contains("kind: ConfigMap")) {
                    return;
                }
                for d in crate::yaml::parse_docs(path, &text).unwrap_or_default() {
                    let (Some(k), Some(nm)) =
                        (d.value["kind"].as_str(), d.value.pointer("/metadata/name").and_then(|v| v.as_str()))
                    else {
                        continue;
                    };
                    if matches!(k, "Secret" | "ConfigMap") {
                        index.entry((k.to_string(), nm.to_string())).or_insert(Loc::new(path, d.line));
                    }
                }
            });
            self.out_of_band = Some(index);
        }
        self.out_of_band.as_ref()?.get(&(kind.to_string(), name.to_string())).cloned()
    }

    /// postBuild substitution, as kustomize-controller runs it after the build.
    pub(super) fn substitute(&mut self, spec: &Kustomization, kid: &str, objects: &mut [Object]) -> Result<()> {
        if spec.substitute.is_empty() && spec.substitute_from.is_empty() {
            return Ok(());
        }
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut encrypted = vec![];
        for from in &spec.substitute_from {
            let key = (from.kind.clone(), spec.namespace.clone(), from.name.clone());
            let found = self.var_sources.get(&key).cloned();
            // Its own objects are not out of band: Flux reads the variables before applying
            // them (the `input-order` rule reports that it never builds).
            let own = objects.iter().any(|o| {
                o.kind() == from.kind && o.name() == from.name && crate::flux::namespace_of(o) == spec.namespace
            });
            let at =
                if found.is_none() && !from.optional && !own { self.out_of_band(&from.kind, &from.name) } else { None };
            match found.as_ref() {
                None if from.optional || own => {}
                None if let Some(at) = at => {
                    self.model.preapplied.insert((from.kind.clone(), from.name.clone()));
                    self.model.findings.push(
                    Finding::new(
                        "bootstrap-object",
                        Severity::Info,
                        &spec.origin,
                        format!(
                            "Kustomization {kid} substitutes from {} {}, which nothing Flux applies defines; it is committed at {at}, outside the Flux tree, and taken as applied before Flux (its values are not known here)",
                            from.kind, from.name
                        ),
                    )
                    .for_kustomization(kid),
                    )
                }
                None => self.model.findings.push(
                    Finding::new(
                        "substitute-from-missing",
                        Severity::Error,
                        &spec.origin,
                        format!(
                            "Kustomization {kid} substitutes from {} {}/{}, which the repository does not define; Flux fails the build",
                            from.kind, spec.namespace, from.name
                        ),
                    )
                    .for_kustomization(kid)
                    .fix("create it in a Kustomization applied before this one, or mark it `optional: true`"),
                ),
                Some(o) => {
                    if o.value.get("sops").is_some() {
                        encrypted.push(format!("{} {}", from.kind, from.name));
                    }
                    vars.extend(var_values(o));
                }
            }
        }
        vars.extend(spec.substitute.iter().cloned());
        for o in objects.iter_mut() {
            if !Kustomization::substitution_enabled(o) {
                continue;
            }
            let mut unresolved = vec![];
            if let Err(m) = substitute_value(&mut o.value, &vars, &mut unresolved) {
                self.model.findings.push(
                    Finding::new(
                        "substitution-failed",
                        Severity::Error,
                        &o.origin,
                        format!("postBuild substitution in {} fails: {m}; Flux fails the build of Kustomization {kid}", o.display_id()),
                    )
                    .for_kustomization(kid)
                    .fix("escape shell expressions as $${...}, or label the object kustomize.toolkit.fluxcd.io/substitute: disabled"),
                );
                continue;
            }
            unresolved.sort();
            unresolved.dedup();
            if !unresolved.is_empty() {
                let why = if encrypted.is_empty() {
                    String::new()
                } else {
                    format!(" (values of SOPS-encrypted {} cannot be read offline)", encrypted.join(", "))
                };
                self.model.findings.push(
                    Finding::new(
                        "substitution-unresolved",
                        Severity::Warning,
                        &o.origin,
                        format!(
                            "{} uses {} that postBuild of Kustomization {kid} does not set{why}; Flux substitutes an empty string",
                            o.display_id(),
                            unresolved.iter().map(|v| format!("${{{v}}}")).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .for_kustomization(kid)
                    .fix("add the variable to postBuild.substitute or to a substituteFrom ConfigMap, or give it a default with ${VAR:=value}"),
                );
            }
        }
        Ok(())
    }
}
