//! The suites' report: a table per suite for the terminal, JSON (read back by
//! `--rerun-failed`), JUnit (one case per check, and per Kustomization and HelmRelease of
//! the bootstrap), and Markdown for `$GITHUB_STEP_SUMMARY`. Pure.

use super::{Status, SuiteName, SuiteResult, Table};
use crate::e2e::report::E2eReport;
use crate::junit::{Case, Outcome, Suite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub provider: String,
    pub repo: String,
    /// What Flux syncs (`clusters/staging`).
    pub entry: String,
    /// The entry Kustomization's namespace (rows name its Kustomizations by name alone).
    #[serde(default)]
    pub entry_namespace: String,
    pub passed: bool,
    pub suites: Vec<SuiteResult>,
    /// The bootstrap run behind `bootstrap-order` (and the HTML timeline).
    #[serde(skip_deserializing)]
    pub e2e: Option<E2eReport>,
    /// Files written next to the report.
    pub artifacts: Vec<String>,
}

impl SuiteReport {
    /// The checks that failed, by suite: what `--rerun-failed` runs again.
    pub fn failed(&self) -> BTreeMap<SuiteName, Vec<String>> {
        let mut out: BTreeMap<SuiteName, Vec<String>> = BTreeMap::new();
        for s in &self.suites {
            let ids: Vec<String> = s.failed_checks().map(|c| c.id.clone()).collect();
            if !ids.is_empty() {
                out.insert(s.suite, ids);
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.suites {
            let _ = writeln!(out, "{}: {}  ({})", s.suite.id(), verdict(s), counts(s));
            if !s.table.rows.is_empty() {
                out.push_str(&table_text(&s.table, "  "));
            }
            for c in &s.checks {
                let mut lines = c.message.lines();
                let first = lines.next().unwrap_or("");
                let _ = writeln!(out, "  {} {:<24} {}: {first}", c.status.word(), c.id, c.title);
                for l in lines {
                    let _ = writeln!(out, "  {:<29} {l}", "");
                }
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} on {}: {} of {} suites passed",
            if self.passed { "PASSED" } else { "FAILED" },
            self.provider,
            self.suites.iter().filter(|s| s.passed()).count(),
            self.suites.len()
        );
        for a in &self.artifacts {
            let _ = writeln!(out, "  wrote {a}");
        }
        out
    }

    pub fn to_junit(&self) -> String {
        let unit = self.e2e.as_ref().map(|e| e.time_unit.clone()).unwrap_or_else(|| "seconds".into());
        let mut suites = vec![];
        for s in &self.suites {
            let mut cases: Vec<Case> = s
                .checks
                .iter()
                .map(|c| Case {
                    classname: s.suite.id().into(),
                    name: format!("{}: {}", c.id, c.title),
                    seconds: 0.0,
                    outcome: match c.status {
                        Status::Pass => Outcome::Pass,
                        Status::Skip => Outcome::Skip(c.message.clone()),
                        Status::Fail => {
                            Outcome::Fail { kind: c.id.clone(), message: c.message.clone(), text: c.message.clone() }
                        }
                    },
                })
                .collect();
            let mut seconds = 0.0;
            if s.suite == SuiteName::BootstrapOrder
                && let Some(e) = &self.e2e
            {
                seconds = e.duration_seconds;
                cases.extend(e.junit_cases().into_iter().map(|mut c| {
                    c.classname = format!("bootstrap-order.{}", c.classname);
                    c
                }));
            }
            suites.push(Suite { name: s.suite.id().into(), seconds, time_unit: unit.clone(), cases });
        }
        crate::junit::write("flux-harness-suites", &suites)
    }

    /// For `$GITHUB_STEP_SUMMARY`: a line per suite, the failures, and each suite's table
    /// folded away.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "## Flux bootstrap suites: {} on {} ({})\n\n| suite | result | checks |\n|---|---|---|\n",
            if self.passed { "passed" } else { "FAILED" },
            self.provider,
            md(&self.entry)
        );
        for s in &self.suites {
            let _ = writeln!(out, "| `{}` | {} | {} |", s.suite.id(), verdict(s), counts(s));
        }
        for s in &self.suites {
            let failed: Vec<_> = s.failed_checks().collect();
            if !failed.is_empty() {
                let _ = writeln!(out, "\n### `{}` failed\n", s.suite.id());
                for c in failed {
                    let _ = writeln!(out, "- **{}** ({}):", md(&c.title), c.id);
                    for l in c.message.lines() {
                        let _ = writeln!(out, "  - {}", md(l));
                    }
                }
            }
        }
        for s in &self.suites {
            if s.table.rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n<details><summary><code>{}</code></summary>\n", s.suite.id());
            let _ = writeln!(out, "| {} |", s.table.headers.iter().map(|h| md(h)).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(s.table.headers.len()));
            for r in &s.table.rows {
                let _ = writeln!(out, "| {} |", r.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
            }
            out.push_str("\n</details>\n");
        }
        out
    }
}

fn verdict(s: &SuiteResult) -> &'static str {
    if !s.passed() {
        "FAIL"
    } else if s.checks.iter().all(|c| c.status == Status::Skip) {
        "SKIP"
    } else {
        "PASS"
    }
}

fn counts(s: &SuiteResult) -> String {
    let n = |st: Status| s.checks.iter().filter(|c| c.status == st).count();
    let mut parts = vec![format!("{} passed", n(Status::Pass))];
    if n(Status::Fail) > 0 {
        parts.push(format!("{} failed", n(Status::Fail)));
    }
    if n(Status::Skip) > 0 {
        parts.push(format!("{} skipped", n(Status::Skip)));
    }
    parts.join(", ")
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;")
}

/// A table with columns as wide as their widest cell.
pub fn table_text(t: &Table, indent: &str) -> String {
    let cols = t.headers.len();
    let mut w: Vec<usize> = t.headers.iter().map(|h| h.chars().count()).collect();
    for r in &t.rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = indent.to_string();
        for (i, c) in cells.iter().enumerate().take(cols) {
            let pad = w[i].saturating_sub(c.chars().count());
            l.push_str(c);
            l.push_str(&" ".repeat(pad + 2));
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&t.headers);
    for r in &t.rows {
        out.push_str(&line(r));
    }
    out
}
