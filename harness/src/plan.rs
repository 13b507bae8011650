//! The `plan` report: the model, the graph and the findings in one serialisable value,
//! written as text for people, JSON for machines (a stable contract, see README) and
//! GitHub workflow annotations.

use crate::findings::{Finding, Severity};
use crate::graph::{self, Graph};
use crate::model::{Origin, RepoModel};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct ObjectRow {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Serialize)]
pub struct KustomizationRow {
    pub name: String,
    pub namespace: String,
    pub path: String,
    #[serde(rename = "dependsOn")]
    pub depends_on: Vec<String>,
    pub layer: Option<usize>,
    pub entry: bool,
    pub source: String,
    /// `rendered`, or why the manifests were not read.
    pub rendered: String,
    pub wait: bool,
    pub file: String,
    pub line: u32,
    pub objects: Vec<ObjectRow>,
}

#[derive(Debug, Serialize)]
pub struct HelmReleaseRow {
    pub name: String,
    pub namespace: String,
    pub kustomization: String,
    pub chart: String,
    pub version: Option<String>,
    #[serde(rename = "sourceRef")]
    pub source_ref: Option<String>,
    #[serde(rename = "dependsOn")]
    pub depends_on: Vec<String>,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub entry: String,
    #[serde(rename = "entryPath")]
    pub entry_path: String,
    pub kustomizations: Vec<KustomizationRow>,
    #[serde(rename = "helmReleases")]
    pub helm_releases: Vec<HelmReleaseRow>,
    pub layers: Vec<Vec<String>>,
    #[serde(rename = "criticalPath")]
    pub critical_path: Vec<String>,
    pub cycles: Vec<Vec<String>>,
    pub findings: Vec<Finding>,
}

impl Plan {
    pub fn build(model: &RepoModel, graph: &Graph, mut findings: Vec<Finding>) -> Plan {
        let show = |i: usize| graph::display_k(model, i);
        let kustomizations = model
            .kustomizations
            .iter()
            .enumerate()
            .map(|(i, k)| KustomizationRow {
                name: k.spec.name.clone(),
                namespace: k.spec.namespace.clone(),
                path: format!("./{}", k.spec.path),
                depends_on: k
                    .spec
                    .depends_on
                    .iter()
                    .map(|d| {
                        if d.namespace == k.spec.namespace {
                            d.name.clone()
                        } else {
                            format!("{}/{}", d.namespace, d.name)
                        }
                    })
                    .collect(),
                layer: graph.layer_of[i],
                entry: i == model.entry,
                source: format!("{}/{}/{}", k.spec.source.kind, k.spec.source.namespace, k.spec.source.name),
                rendered: match &k.origin {
                    Origin::Repo => "rendered".into(),
                    Origin::Mapped(key) => format!("rendered from --source {key}"),
                    Origin::NotRendered(why) => format!("not rendered: {why}"),
                    Origin::BuildFailed(why) => format!("build failed: {why}"),
                    Origin::Refused => "not created: the API server refuses it (see schema-invalid)".into(),
                },
                wait: k.spec.wait,
                file: k.spec.origin.file.clone(),
                line: k.spec.origin.line,
                objects: k
                    .objects
                    .iter()
                    .map(|o| ObjectRow {
                        api_version: o.api_version().into(),
                        kind: o.kind().into(),
                        namespace: o.namespace().map(str::to_string),
                        name: o.name().into(),
                        file: o.origin.file.clone(),
                        line: o.origin.line,
                    })
                    .collect(),
            })
            .collect();
        let helm_releases = model
            .helm_releases
            .iter()
            .map(|h| HelmReleaseRow {
                name: h.spec.name.clone(),
                namespace: h.spec.namespace.clone(),
                kustomization: show(h.owner),
                chart: h.spec.chart.clone(),
                version: h.spec.version.clone(),
                source_ref: h.spec.source.as_ref().map(|s| format!("{}/{}/{}", s.kind, s.namespace, s.name)),
                depends_on: h.spec.depends_on.iter().map(|d| format!("{}/{}", d.namespace, d.name)).collect(),
                file: h.spec.origin.file.clone(),
                line: h.spec.origin.line,
            })
            .collect();
        findings.sort_by(|a, b| (a.severity, &a.file, a.line, &a.rule).cmp(&(b.severity, &b.file, b.line, &b.rule)));
        findings.dedup();
        let mut findings = crate::findings::fold_repeats(findings);
        findings.sort_by(|a, b| (a.severity, &a.file, a.line, &a.rule).cmp(&(b.severity, &b.file, b.line, &b.rule)));
        Plan {
            entry: show(model.entry),
            entry_path: format!("./{}", model.entry_path),
            kustomizations,
            helm_releases,
            layers: graph.layers.iter().map(|l| l.iter().map(|&i| show(i)).collect()).collect(),
            critical_path: graph.critical_path.iter().map(|&i| show(i)).collect(),
            cycles: graph.cycles.clone(),
            findings,
        }
    }

    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }

    /// 0: no error finding; 1: error findings.
    pub fn exit_code(&self) -> i32 {
        if self.errors() > 0 { 1 } else { 0 }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serialises")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let nobj: usize = self.kustomizations.iter().map(|k| k.objects.len()).sum();
        let _ = writeln!(
            out,
            "entry: {} ({})   {} Flux Kustomizations, {} HelmReleases, {} objects",
            self.entry,
            self.entry_path,
            self.kustomizations.len(),
            self.helm_releases.len(),
            nobj
        );
        let _ = writeln!(out, "\nBootstrap layer order");
        let _ = writeln!(out, "  layer  Kustomizations");
        for (i, l) in self.layers.iter().enumerate() {
            let _ = writeln!(out, "  {:<5}  {}", i, l.join(", "));
        }
        if !self.critical_path.is_empty() {
            let _ = writeln!(
                out,
                "\nCritical path ({} layers): {}",
                self.critical_path.len(),
                self.critical_path.join(" -> ")
            );
        }
        let _ = writeln!(out, "\nKustomizations");
        let mut rows: Vec<&KustomizationRow> = self.kustomizations.iter().collect();
        rows.sort_by_key(|k| {
            (k.layer.map(|l| l as i64).unwrap_or(if k.entry { -1 } else { i64::MAX }), k.name.clone())
        });
        for k in rows {
            let layer = match (k.entry, k.layer) {
                (true, _) => "entry".to_string(),
                (_, Some(l)) => format!("layer {l}"),
                (_, None) => "no layer".to_string(),
            };
            let deps = if k.depends_on.is_empty() { "-".to_string() } else { k.depends_on.join(", ") };
            let _ = writeln!(out, "  {} [{layer}] {}  depends on: {deps}", k.name, k.path);
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for o in &k.objects {
                *counts.entry(o.kind.as_str()).or_default() += 1;
            }
            let objs: Vec<String> = counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            if k.rendered != "rendered" {
                let _ = writeln!(out, "      {}", k.rendered);
            } else if objs.is_empty() {
                let _ = writeln!(out, "      no objects");
            } else {
                let _ = writeln!(out, "      {}", objs.join(", "));
            }
        }
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let _ = writeln!(
            out,
            "\nFindings: {} errors, {} warnings, {} info",
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        );
        // Errors first: they are what fails the bootstrap; then warnings, then info. Within
        // each, by Kustomization.
        for sev in [Severity::Error, Severity::Warning, Severity::Info] {
            let mut groups: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
            for f in self.findings.iter().filter(|f| f.severity == sev) {
                groups.entry(f.kustomization.as_deref().unwrap_or("(repository)")).or_default().push(f);
            }
            for (k, fs) in groups {
                let _ = writeln!(out, "  {k}");
                for f in fs {
                    let _ = writeln!(
                        out,
                        "    {:<7} {}:{} [{}] {}",
                        f.severity.as_str(),
                        f.file,
                        f.line,
                        f.rule,
                        f.message
                    );
                    if let Some(fix) = &f.fix {
                        let _ = writeln!(out, "            fix: {fix}");
                    }
                }
            }
        }
        out
    }

    /// `::error file=…,line=…::message` lines for GitHub Actions. `prefix` is the repo's
    /// directory relative to the workflow's checkout (`infra/` when the Flux repo sits in a
    /// subfolder), so each annotation lands on the file. A folded finding annotates every
    /// place it stands for.
    pub fn to_github_annotations(&self, prefix: &str) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "notice",
            };
            let esc = |m: &str| m.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
            let msg = esc(&f.message);
            let _ = writeln!(out, "::{level} file={prefix}{},line={},title={}::{msg}", f.file, f.line, f.rule);
            for a in &f.also {
                let (place, subject) = a.split_once(' ').unwrap_or((a.as_str(), ""));
                let (file, line) = place.rsplit_once(':').unwrap_or((place, "1"));
                let _ = writeln!(
                    out,
                    "::{level} file={prefix}{file},line={line},title={}::{}",
                    f.rule,
                    esc(&format!("{subject}: as {}:{}: {}", f.file, f.line, f.message))
                );
            }
        }
        out
    }
}
