//! The suites a user points at a repo (`cargo xtask suite`): `bootstrap-order`,
//! `webhook-bootstrap`, `cni-chaining`, `namespace-isolation`. Each is a list of checks
//! (pass, fail, or skip with the reason) and a table, plus the text compared with the
//! repo's reviewed snapshot. Pure: the run on a cluster happens in `e2e`, the files are read
//! and written by the caller; these modules turn a model, simulations and an e2e report into
//! verdicts.

pub mod cni;
pub mod html;
pub mod isolation;
pub mod order;
pub mod ports;
pub mod report;
pub mod snapshot;
pub mod webhook;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteName {
    BootstrapOrder,
    WebhookBootstrap,
    CniChaining,
    NamespaceIsolation,
}

impl SuiteName {
    pub const ALL: [SuiteName; 4] =
        [SuiteName::BootstrapOrder, SuiteName::WebhookBootstrap, SuiteName::CniChaining, SuiteName::NamespaceIsolation];

    pub fn id(self) -> &'static str {
        match self {
            SuiteName::BootstrapOrder => "bootstrap-order",
            SuiteName::WebhookBootstrap => "webhook-bootstrap",
            SuiteName::CniChaining => "cni-chaining",
            SuiteName::NamespaceIsolation => "namespace-isolation",
        }
    }

    pub fn parse(s: &str) -> Option<SuiteName> {
        SuiteName::ALL.into_iter().find(|n| n.id() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable within its suite (what `--rerun-failed` selects by).
    pub id: String,
    pub title: String,
    pub status: Status,
    /// Why it failed or was skipped, or what it covered.
    pub message: String,
}

impl Check {
    pub fn new(id: &str, title: &str, status: Status, message: String) -> Check {
        Check { id: id.into(), title: title.into(), status, message }
    }
    /// Pass with `ok` when `bad` is empty, else fail listing `bad`.
    pub fn from_problems(id: &str, title: &str, bad: &[String], ok: String) -> Check {
        if bad.is_empty() {
            Check::new(id, title, Status::Pass, ok)
        } else {
            Check::new(id, title, Status::Fail, bad.join("\n"))
        }
    }
}

/// A table printed under the suite's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: vec![] }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteResult {
    pub suite: SuiteName,
    pub checks: Vec<Check>,
    pub table: Table,
    /// What the reviewed snapshot holds (times and durations left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl SuiteResult {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
    /// `--rerun-failed`: the checks that failed last time, and any that fails now (a check
    /// skipped last time may fail once what blocked it is fixed).
    pub fn keep_rerun(&mut self, failed_before: &[String]) {
        self.checks.retain(|c| failed_before.contains(&c.id) || c.status == Status::Fail);
    }
}
