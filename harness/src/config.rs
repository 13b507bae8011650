//! The repo's own configuration: `.flux-harness.yaml` at its root.
//!
//! ```yaml
//! catalogue:            # charts and groups, same format as harness/data/catalogue.yaml
//!   charts: {}
//! preinstalledCRDs:     # API groups installed before Flux (cluster creation, a CRD helmfile)
//!   - monitoring.coreos.com
//! severity:             # rule id -> error | warning | info
//!   pss-missing: info
//! isolation:            # the namespace-isolation suite (default: namespaces labelled
//!   environments: [dev, staging, prod]   #   `environment: <their own name>`, not system)
//!   namespaces: [system]                 # more rows of the matrix (flux-system, DNS always)
//! sops:                 # the age key the cluster's decryption Secret holds (test keys only:
//!   ageKeyFile: test-keys/age.agekey   #   a real key never belongs in a repository)
//! e2e:                  # what a test cluster cannot have, applied to the served tree of
//!   substitute:         #   e2e runs only (never to plan, nor to the user's files)
//!     NFS_SERVER: nfs.invalid        # postBuild variables, on Kustomizations with postBuild
//!   skip:
//!     - kustomization: nfs-provisioner   # name or namespace/name
//!       reason: the NFS server is outside any test cluster
//!       instead: test/e2e/nfs-client      # optional: a directory applied in its place
//! suppress:             # each needs a reason
//!   - rule: webhook-ordering
//!     kustomization: flux-system/apps   # optional
//!     file: apps/x.yaml                 # optional
//!     reason: the webhook exempts this namespace through a label set at runtime
//! ```

use crate::catalogue::{Catalogue, parse_typed};
use crate::error::{Error, ErrorKind, Result};
use crate::findings::{Finding, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const FILE: &str = ".flux-harness.yaml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    #[serde(default)]
    pub catalogue: Catalogue,
    #[serde(default, rename = "preinstalledCRDs")]
    pub preinstalled_crds: Vec<String>,
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
    #[serde(default)]
    pub suppress: Vec<Suppression>,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default)]
    pub sops: Sops,
    #[serde(default)]
    pub e2e: E2eProfile,
    /// What the cluster can decrypt with: from `sops.ageKeyFile`, or set by the e2e runner
    /// (`--age-key`, or a cluster the harness made without a decryption Secret).
    #[serde(skip)]
    pub decryption: Decryption,
    /// A bootstrap helmfile installs the primary CNI before Flux (found, not configured).
    #[serde(skip)]
    pub cni_preinstalled: bool,
    /// HelmReleases (namespace, name) a bootstrap helmfile installs before Flux: Flux only
    /// adopts them, and their webhooks serve from the start.
    #[serde(skip)]
    pub preinstalled_releases: std::collections::BTreeSet<(String, String)>,
}

/// The e2e profile: substitutions and skipped Kustomizations for test clusters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2eProfile {
    #[serde(default)]
    pub substitute: BTreeMap<String, String>,
    #[serde(default)]
    pub skip: Vec<Skip>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skip {
    pub kustomization: String,
    pub reason: String,
    pub instead: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sops {
    /// An age identity file, relative to the repo root.
    pub age_key_file: Option<String>,
}

/// What the decryption Secret of a Kustomization with `spec.decryption` holds.
#[derive(Debug, Clone, Default)]
pub enum Decryption {
    /// Not known: it is created out of band (as `flux bootstrap` users do), and assumed to
    /// hold the right key. Nothing is decrypted.
    #[default]
    Assumed,
    /// These identities: every SOPS-encrypted object is decrypted with them, as
    /// kustomize-controller would, and one that cannot be is a failed build.
    Keys(crate::sops::AgeKeys),
    /// There is none (a cluster the harness created without a key): Flux fails to get it.
    NoSecret,
}

/// The intent the namespace-isolation suite holds the repo's network policies to: deny
/// across environments, allow within one, allow flux-system in and DNS out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    pub environments: Option<Vec<String>>,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    pub rule: String,
    pub kustomization: Option<String>,
    pub file: Option<String>,
    pub reason: String,
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            other => Err(serde::de::Error::custom(format!("unknown severity '{other}' (error, warning, info)"))),
        }
    }
}

impl RepoConfig {
    pub fn parse(text: &str) -> Result<RepoConfig> {
        let c: RepoConfig = parse_typed(FILE, text)?;
        for s in &c.e2e.skip {
            if s.reason.trim().is_empty() {
                return Err(Error::in_file(
                    ErrorKind::BadObject,
                    FILE,
                    format!("e2e.skip of '{}' needs a reason", s.kustomization),
                ));
            }
        }
        for s in &c.suppress {
            if s.reason.trim().is_empty() {
                return Err(Error::in_file(
                    ErrorKind::BadObject,
                    FILE,
                    format!("suppression of '{}' needs a reason", s.rule),
                ));
            }
        }
        Ok(c)
    }

    /// Applies severity overrides and suppressions. Suppressed findings are kept as info
    /// findings that say who suppressed them and why, so nothing disappears silently.
    pub fn apply(&self, findings: Vec<Finding>) -> Vec<Finding> {
        findings
            .into_iter()
            .map(|mut f| {
                if let Some(s) = self.severity.get(&f.rule) {
                    f.severity = *s;
                }
                let sup = self.suppress.iter().find(|s| {
                    s.rule == f.rule
                        && s.kustomization.as_ref().is_none_or(|k| f.kustomization.as_ref() == Some(k))
                        && s.file.as_ref().is_none_or(|p| &f.file == p)
                });
                if let Some(s) = sup {
                    f.severity = Severity::Info;
                    f.message = format!("(suppressed in {FILE}: {}) {}", s.reason, f.message);
                }
                f
            })
            .collect()
    }
}
