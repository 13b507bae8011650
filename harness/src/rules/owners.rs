//! Rule 12 `single-owner`: the same object rendered by two Flux Kustomizations. They fight
//! over its fields, and when either prunes, removing it from one deletes it for both.

use super::Ctx;
use crate::findings::{Finding, Severity};
use std::collections::BTreeMap;

pub fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    // (group, kind, namespace, name) -> the Kustomizations applying it.
    type Id = (String, String, String, String);
    let mut owners: BTreeMap<Id, Vec<(usize, crate::Loc)>> = BTreeMap::new();
    for (i, k) in ctx.rendered() {
        for o in &k.objects {
            // Flux objects applied twice are a load error already (duplicates).
            if o.group().ends_with(".toolkit.fluxcd.io") {
                continue;
            }
            let key = (o.group().to_string(), o.kind().to_string(), crate::flux::namespace_of(o), o.name().to_string());
            let e = owners.entry(key).or_default();
            if !e.iter().any(|(j, _)| *j == i) {
                e.push((i, o.origin.clone()));
            }
        }
    }
    for ((_, kind, ns, name), list) in owners {
        if list.len() < 2 {
            continue;
        }
        let prunes = list.iter().any(|(i, _)| ctx.model.kustomizations[*i].spec.prune);
        let mut who: Vec<String> = list.iter().take(3).map(|(i, loc)| format!("{} ({loc})", ctx.name(*i))).collect();
        if list.len() > 3 {
            who.push(format!("{} more", list.len() - 3));
        }
        let id = if crate::object::is_known_cluster_scoped("", &kind) && ns == "default" {
            format!("{kind}/{name}")
        } else {
            format!("{kind}/{ns}/{name}")
        };
        let id = if kind == "Namespace" { format!("Namespace/{name}") } else { id };
        let (first, loc) = &list[1];
        out.push(
            ctx.finding(
                "single-owner",
                if prunes { Severity::Error } else { Severity::Warning },
                loc,
                Some(*first),
                format!(
                    "{id} is applied by {}: the Kustomizations overwrite each other's fields{}",
                    who.join(" and "),
                    if prunes {
                        ", and since one prunes, removing it from that one deletes it from the cluster for both"
                    } else {
                        ""
                    }
                ),
            )
            .fix("keep the object in one Kustomization and make the others depend on it"),
        );
    }
}
