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
    /// The same finding about other objects (`file:line subject`), folded into this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
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
            also: vec![],
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

/// The object a message is about, and the message with it masked: `HelmRelease ns/name`,
/// `Namespace x`, `Kind/ns/name` ... the first one named.
fn subject(message: &str) -> Option<(String, String)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"\b(HelmRelease|Kustomization|Namespace|chart) ([^\s:;,()]+)|\b([A-Z][A-Za-z]+/[^\s:;,()]+)")
            .expect("valid regex")
    });
    let m = re.find(message)?;
    let masked = format!("{}<object>{}", &message[..m.start()], &message[m.end()..]);
    Some((m.as_str().to_string(), masked))
}

/// One finding per cause: when three or more findings say the same thing about different
/// objects (one root patch setting a field on every HelmRelease, every namespace without
/// a label), they fold into the first, which lists the others. Input order does not matter.
pub fn fold_repeats(findings: Vec<Finding>) -> Vec<Finding> {
    use std::collections::BTreeMap;
    // (rule, severity, masked message, masked fix) -> (subject, finding)
    type Key = (String, Severity, String, Option<String>);
    let mut groups: BTreeMap<Key, Vec<(String, Finding)>> = BTreeMap::new();
    let mut singles = vec![];
    for f in findings {
        match subject(&f.message) {
            Some((subj, masked)) => {
                let fix = f.fix.as_ref().map(|x| subject(x).map(|(_, m)| m).unwrap_or_else(|| x.clone()));
                groups.entry((f.rule.clone(), f.severity, masked, fix)).or_default().push((subj, f));
            }
            None => singles.push(f),
        }
    }
    for (_, mut v) in groups {
        v.sort_by(|a, b| (&a.1.file, a.1.line, &a.0).cmp(&(&b.1.file, b.1.line, &b.0)));
        if v.len() < 3 {
            singles.extend(v.into_iter().map(|(_, f)| f));
            continue;
        }
        let n = v.len();
        let mut first = v[0].1.clone();
        let names: Vec<&str> = v[1..].iter().map(|(s, _)| s.as_str()).collect();
        let shown = names.iter().take(8).copied().collect::<Vec<_>>().join(", ");
        let more = if names.len() > 8 { format!(", and {} more", names.len() - 8) } else { String::new() };
        first.message = format!("{} (the same for {} other objects: {shown}{more})", first.message, n - 1);
        if v.iter().any(|(_, f)| f.kustomization != first.kustomization) {
            first.kustomization = None;
        }
        first.also = v[1..].iter().map(|(s, f)| format!("{}:{} {s}", f.file, f.line)).collect();
        singles.push(first);
    }
    singles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(file: &str, msg: &str) -> Finding {
        Finding::new("pss-missing", Severity::Warning, &crate::Loc::new(file, 2), msg).fix("label it")
    }

    #[test]
    fn repeats_fold_into_one_finding_in_any_order() {
        let v = vec![
            f("c/ns.yaml", "Namespace c has no label"),
            f("a/ns.yaml", "Namespace a has no label"),
            f("b/ns.yaml", "Namespace b has no label"),
            f("d/ns.yaml", "Namespace d lacks something else"),
        ];
        let mut reversed = v.clone();
        reversed.reverse();
        let folded = fold_repeats(v);
        assert_eq!(folded.len(), 2);
        let one = folded.iter().find(|x| !x.also.is_empty()).unwrap();
        assert_eq!(one.file, "a/ns.yaml");
        assert_eq!(one.message, "Namespace a has no label (the same for 2 other objects: Namespace b, Namespace c)");
        assert_eq!(one.also, vec!["b/ns.yaml:2 Namespace b", "c/ns.yaml:2 Namespace c"]);
        let mut again = fold_repeats(reversed);
        again.sort_by(|a, b| a.file.cmp(&b.file));
        let mut first = folded.clone();
        first.sort_by(|a, b| a.file.cmp(&b.file));
        assert_eq!(again, first, "the same whatever the input order");
        // Two alike stay two.
        assert_eq!(fold_repeats(vec![f("a", "Namespace a x"), f("b", "Namespace b x")]).len(), 2);
    }
}
