//! What the e2e's cluster decrypts SOPS with: the age key given with `--age-key`, or the
//! test key a repo names in `.flux-harness.yaml` (`sops.ageKeyFile`). The harness makes the
//! decryption Secret from that file on clusters it creates; a cluster it creates without
//! one has none, and Flux then fails as it would (`secrets "sops-age" not found`). An
//! `existing` cluster keeps its own Secret, which is assumed right. The key's value is
//! never printed or put on a command line.

use super::run::{E2eRequest, Provider};
use crate::config::{Decryption, RepoConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::sops::AgeKeys;
use std::path::PathBuf;

/// The age identity file the decryption Secret is made from, if any.
pub fn age_key_file(req: &E2eRequest) -> Result<Option<PathBuf>> {
    if let Some(p) = &req.age_key {
        return Ok(Some(p.clone()));
    }
    let cfg = crate::commands::load_config(&crate::disk::DiskFiles::open(&req.plan.repo)?)?;
    Ok(cfg.sops.age_key_file.map(|p| req.plan.repo.join(p)))
}

/// Sets what the run's cluster decrypts with in the loaded repo's config, so that the
/// preflight plan, the simulated cluster and the verdicts agree about it.
pub fn apply(req: &E2eRequest, config: &mut RepoConfig) -> Result<()> {
    if req.assume_decryption {
        if matches!(req.provider, Provider::Kind | Provider::K3d) {
            return Err(Error::new(
                ErrorKind::Usage,
                "--assume-decryption is for sim (and existing clusters, which keep their own Secrets): a kind or k3d cluster gets only the Secrets the harness can make, so give the key with --age-key",
            ));
        }
        config.decryption = Decryption::Assumed;
        return Ok(());
    }
    if let Some(p) = &req.age_key {
        let shown = p.display().to_string();
        let text = std::fs::read_to_string(p)
            .map_err(|e| Error::in_file(ErrorKind::MissingPath, &shown, format!("--age-key: {e}")))?;
        let keys = AgeKeys::parse(&text)
            .map_err(|why| Error::in_file(ErrorKind::Usage, &shown, format!("--age-key: {why}")))?;
        config.decryption = Decryption::Keys(keys);
    } else if matches!(config.decryption, Decryption::Assumed) && req.provider != Provider::Existing {
        config.decryption = Decryption::NoSecret;
    }
    Ok(())
}
