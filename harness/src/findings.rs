//! Findings: problems in a repo that loads. Each has a stable rule id, a severity, the
//! file and line to fix, and (where one exists) how to fix it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    /// `namespace/name` of the Flux Kustomization the finding is about, if any.
    pub kustomization: Option<String>,
    pub file: String,
    pub line: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(rule: &str, severity: Severity, loc: &crate::Loc, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.into(),
            severity,
            kustomization: None,
            file: loc.file.clone(),
            line: loc.line,
            message: message.into(),
            fix: None,
        }
    }
    pub fn for_kustomization(mut self, k: &str) -> Self {
        self.kustomization = Some(k.into());
        self
    }
    pub fn fix(mut self, hint: impl Into<String>) -> Self {
        self.fix = Some(hint.into());
        self
    }
}
