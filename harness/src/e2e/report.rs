//! The e2e report: text for people, JSON (the contract in README), JUnit for CI.

use super::assert::{KRow, Observation, Violation};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    /// `Kustomization` or `HelmRelease`.
    pub kind: String,
    pub name: String,
    pub predicted_seconds: Option<f64>,
    pub observed_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub provider: String,
    pub passed: bool,
    pub duration_seconds: f64,
    pub kustomizations: Vec<KRow>,
    /// `namespace/name`, in the layer of the Kustomization that applies each.
    pub helm_releases: Vec<KRow>,
    pub violations: Vec<Violation>,
    /// Failures that a retry mended, under `--allow-retries`.
    pub warnings: Vec<Violation>,
    /// The error findings of `plan` on the same repo, found before the run.
    pub preflight: Vec<crate::findings::Finding>,
    /// Files of the served snapshot rewritten so Flux keeps pulling from the harness.
    pub rewritten: Vec<super::plan::Rewrite>,
    /// The commit the harness's git server served (`BRANCH@sha1:SHA`), the one Flux applied.
    pub revision: Option<String>,
    pub artifacts: Option<String>,
    /// The simulator's prediction next to what was observed.
    pub predicted_vs_observed: Vec<Predicted>,
    pub timeline: Vec<Observation>,
    /// For the sim provider: times are virtual seconds.
    pub time_unit: String,
}

impl E2eReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} on {} in {:.0} {} ({} Kustomizations)",
            if self.passed { "PASSED" } else { "FAILED" },
            self.provider,
            self.duration_seconds,
            self.time_unit,
            self.kustomizations.len()
        );
        if let Some(r) = &self.revision {
            let _ = writeln!(out, "served revision {r}");
        }
        for r in &self.rewritten {
            let _ = writeln!(out, "served {} rewritten: {}", r.path, r.what);
        }
        if !self.preflight.is_empty() {
            let _ = writeln!(out, "\nplan found {} error finding(s) before the run:", self.preflight.len());
            for f in &self.preflight {
                let _ = writeln!(out, "  {}:{}: [{}] {}", f.file, f.line, f.rule, f.message);
            }
        }
        if !self.violations.is_empty() {
            let _ = writeln!(out, "\nviolations ({}):", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(out, "  [{}] {}", v.kind, v.message);
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings (--allow-retries):");
            for v in &self.warnings {
                let _ = writeln!(out, "  [{}] {}", v.kind, v.message);
            }
        }
        let _ = writeln!(
            out,
            "\n  {:<34} {:>5} {:>10} {:>10} {:>10}",
            "Kustomization", "layer", "Ready", "deps Ready", "predicted"
        );
        let mut rows = self.kustomizations.clone();
        rows.sort_by(|a, b| a.layer.cmp(&b.layer).then_with(|| a.name.cmp(&b.name)));
        for r in &rows {
            let p = self.predicted_vs_observed.iter().find(|p| p.name == r.name).and_then(|p| p.predicted_seconds);
            let f = |x: Option<f64>| x.map(|v| format!("{v:.0}s")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {:<34} {:>5} {:>10} {:>10} {:>10}",
                r.name,
                r.layer.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                f(r.ready_at_seconds),
                f(r.dependencies_ready_at_seconds),
                f(p)
            );
        }
        if let Some(a) = &self.artifacts {
            let _ = writeln!(out, "\ndiagnostics: {a}");
        }
        out
    }

    /// One test case per Kustomization and per HelmRelease: its Ready time, and the
    /// violations about it as the failure. Virtual times say so in the `time_unit` property.
    pub fn junit_cases(&self) -> Vec<crate::junit::Case> {
        use crate::junit::{Case, Outcome};
        let about = |kind: &str, name: &str| -> Vec<&Violation> {
            let long = format!("{kind} {name}");
            self.violations.iter().filter(|v| v.objects.first().is_some_and(|o| o == name || *o == long)).collect()
        };
        let case = |class: &str, kind: &str, r: &KRow| {
            let vs = about(kind, &r.name);
            Case {
                classname: class.into(),
                name: r.name.clone(),
                seconds: r.ready_at_seconds.unwrap_or(self.duration_seconds),
                outcome: match vs.first() {
                    None => Outcome::Pass,
                    Some(v) => Outcome::Fail {
                        kind: v.kind.clone(),
                        message: v.message.clone(),
                        text: vs.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("\n"),
                    },
                },
            }
        };
        let mut out: Vec<Case> =
            self.kustomizations.iter().map(|r| case("kustomization", "Kustomization", r)).collect();
        out.extend(self.helm_releases.iter().map(|r| case("helmrelease", "HelmRelease", r)));
        out
    }

    pub fn to_junit(&self) -> String {
        let suite = crate::junit::Suite {
            name: format!("bootstrap-{}", self.provider),
            seconds: self.duration_seconds,
            time_unit: self.time_unit.clone(),
            cases: self.junit_cases(),
        };
        crate::junit::write("flux-bootstrap", &[suite])
    }
}
