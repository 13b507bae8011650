//! `misplaced-field`: a field of a Flux object outside `apiVersion`, `kind`, `metadata`,
//! `spec` (and `status`). The API server prunes it without a word, so a `dependsOn` or
//! `postBuild` indented one level too little silently does nothing.

use super::Ctx;
use crate::findings::{Finding, Severity};

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for (i, k) in ctx.rendered() {
        for o in &k.objects {
            if !o.group().ends_with(".toolkit.fluxcd.io") {
                continue;
            }
            for key in o.value.as_object().into_iter().flat_map(|m| m.keys()) {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                    continue;
                }
                out.push(
                    ctx.finding(
                        "misplaced-field",
                        Severity::Warning,
                        &o.origin,
                        Some(i),
                        format!(
                            "{} has a top-level field `{key}`: the API server drops it, so Flux never sees it",
                            o.display_id()
                        ),
                    )
                    .fix(format!("indent `{key}` under `spec:`")),
                );
            }
        }
    }
}
