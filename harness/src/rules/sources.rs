//! Rule 11: a HelmRelease's chart source (HelmRepository, OCIRepository, GitRepository,
//! HelmChart) must exist (`helm-source-missing`) and be applied by the same Kustomization
//! or one applied before it (`helm-source-order`); Kustomizations' own sources are checked
//! by the model (`source-missing`).

use super::{Ctx, Standing};
use crate::findings::{Finding, Severity};

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for h in &ctx.model.helm_releases {
        let Some(src) = &h.spec.source else { continue };
        let id = format!("HelmRelease {}/{}", h.spec.namespace, h.spec.name);
        match ctx.model.source(src) {
            None => out.push(
                ctx.finding(
                    "helm-source-missing",
                    Severity::Error,
                    &h.spec.origin,
                    Some(h.owner),
                    format!("{id} installs chart {} from {src}, which the repository does not define: helm-controller reports SourceNotReady forever", h.spec.chart),
                )
                .fix(format!("define {src} in {} or in a Kustomization it depends on, or fix spec.chart.spec.sourceRef", ctx.name(h.owner))),
            ),
            Some(s) => {
                let Some(owner) = ctx.model.sources[s].owner else { continue };
                if let Standing::Met(_) = ctx.standing(h.owner, &[(owner, true)]) {
                    continue;
                }
                out.push(
                    ctx.finding(
                        "helm-source-order",
                        Severity::Warning,
                        &h.spec.origin,
                        Some(h.owner),
                        format!(
                            "{id} installs from {src}, which Kustomization {} applies, but {} does not depend on it: until that source exists and is Ready the release waits in SourceNotReady, and {} may be Ready without it",
                            ctx.name(owner),
                            ctx.name(h.owner),
                            ctx.name(h.owner)
                        ),
                    )
                    .fix(format!("apply {src} from {} or add `- name: {}` to its dependsOn", ctx.name(h.owner), ctx.model.kustomizations[owner].spec.name)),
                );
            }
        }
    }
}
