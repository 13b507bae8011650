//! `cargo xtask diff` as a reviewer runs it: a git repo built from the netcorp example in a
//! temp dir, changed the way pull requests change it.

use common::copy_dir as copy;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn netcorp() -> PathBuf {
    common::example("netcorp-infra")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The netcorp example as the first commit of a new git repo.
fn repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy(&netcorp(), d.path());
    git(d.path(), &["init", "--quiet", "--initial-branch=main"]);
    commit(d.path(), "base");
    d
}

fn commit(dir: &Path, msg: &str) {
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--allow-empty", "-m", msg]);
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let new = f(text.clone());
    assert_ne!(text, new, "the edit of {file} changed nothing");
    std::fs::write(p, new).unwrap();
}

mod common;
use common::Run;

fn diff(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["diff".as_ref(), "--repo".as_ref(), dir.as_os_str(), "--cluster".as_ref(), "staging".as_ref()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    common::xtask(all)
}

fn json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let r = diff(dir, &all);
    let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    (r.code, v)
}

const KYVERNO_CONFIG: &str = "  dependsOn:\n    - name: kyverno\n  interval: 5m\n  path: ./namespaces/kyverno-config";

const POLICY: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: reloader-egress\n  namespace: reloader\nspec:\n  endpointSelector: {}\n  egress:\n    - toEntities: [kube-apiserver]\n    - toEndpoints:\n        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: kube-system\n            k8s-app: kube-dns\n      toPorts:\n        - ports: [{port: \"53\", protocol: ANY}]\n    - toEndpoints: [{}]\n";

/// A CiliumNetworkPolicy in reloader, which does not depend on cilium: a CRD-ordering mistake.
fn add_crd_mistake(dir: &Path) {
    std::fs::write(dir.join("namespaces/reloader/policy.yaml"), POLICY).unwrap();
    edit(dir, "namespaces/reloader/kustomization.yaml", |t| format!("{t}  - policy.yaml\n"));
}

fn names(v: &Value, rule: &str) -> usize {
    v.as_array().unwrap().iter().filter(|f| f["rule"] == rule).count()
}

#[test]
fn no_change_says_so_and_exits_0() {
    let d = repo();
    let r = diff(d.path(), &["--base", "main"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no bootstrap change"), "{}", r.stdout);
    let (_, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(v["unchanged"], true);
    assert_eq!(v["base"]["commit"].as_str().unwrap().len(), 40, "the base commit is the full SHA");
    assert_eq!(v["head"]["revision"], "working tree");
}

#[test]
fn an_added_dependency_shows_the_edge_the_layer_move_and_the_time_it_costs() {
    let d = repo();
    edit(d.path(), "clusters/staging/infrastructure.yaml", |t| {
        t.replace(
            KYVERNO_CONFIG,
            &KYVERNO_CONFIG.replace("- name: kyverno\n", "- name: kyverno\n    - name: database-operators\n"),
        )
    });
    let (code, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(code, 0, "a slower bootstrap is not a failure: {v:#}");
    assert_eq!(v["unchanged"], false);
    let edge = &v["dependsOn"]["added"][0];
    assert_eq!((edge["from"].as_str(), edge["to"].as_str()), (Some("kyverno-config"), Some("database-operators")));
    let moved = v["layerMoves"].as_array().unwrap().iter().find(|m| m["name"] == "kyverno-config").expect("moves");
    assert_eq!(moved["head"].as_u64().unwrap(), moved["base"].as_u64().unwrap() + 1, "{moved}");
    let changed = &v["kustomizations"]["changed"][0];
    assert_eq!(changed["name"], "kyverno-config");
    assert_eq!(changed["fields"][0]["path"], "spec.dependsOn[1].name");
    assert_eq!(changed["fields"][0]["head"], "database-operators");
    let t = v["predicted"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "kyverno-config")
        .expect("the changed Kustomization's predicted time");
    assert!(t["head"].as_f64().unwrap() > t["base"].as_f64().unwrap(), "it is Ready later: {t}");
    let text = diff(d.path(), &["--base", "main"]).stdout;
    assert!(text.contains("kyverno-config: layer 1 → layer 2"), "{text}");
    assert!(text.contains("+ Kustomization kyverno-config -> database-operators"), "{text}");
}

#[test]
fn a_new_crd_ordering_mistake_fails_and_its_removal_is_shown_fixed() {
    let d = repo();
    add_crd_mistake(d.path());
    let (code, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(names(&v["findings"]["new"], "crd-dependency"), 1, "{:#}", v["findings"]);
    let text = diff(d.path(), &["--base", "main"]).stdout;
    assert!(text.contains("new   error namespaces/reloader/policy.yaml:1 [crd-dependency]"), "{text}");
    assert!(text.contains("head introduces 1 new error finding"), "{text}");

    // The mistake lands; the next change removes it.
    commit(d.path(), "a policy for reloader");
    edit(d.path(), "namespaces/reloader/kustomization.yaml", |t| t.replace("  - policy.yaml\n", ""));
    let (code, v) = json(d.path(), &["--base", "HEAD"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(names(&v["findings"]["fixed"], "crd-dependency"), 1, "{:#}", v["findings"]);
    assert_eq!(v["findings"]["new"].as_array().unwrap().len(), 0);
    // Both revisions by name: --head reads a commit, not the working tree.
    let (code, v) = json(d.path(), &["--base", "main~1", "--head", "main"]);
    assert_eq!((code, names(&v["findings"]["new"], "crd-dependency")), (1, 1), "{v:#}");
}

#[test]
fn a_finding_keeps_its_identity_when_unrelated_lines_move() {
    let d = repo();
    add_crd_mistake(d.path());
    commit(d.path(), "the mistake, already on main");
    edit(d.path(), "namespaces/reloader/policy.yaml", |t| {
        format!("# owned by the platform team\n# see RUNBOOK\n\n{t}")
    });
    edit(d.path(), "clusters/staging/infrastructure.yaml", |t| format!("# infrastructure\n# layers below\n{t}"));
    let (code, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(code, 0, "a problem that was there before is not blamed on the change: {v:#}");
    assert_eq!(v["findings"]["new"].as_array().unwrap().len(), 0, "{:#}", v["findings"]);
    assert_eq!(v["findings"]["fixed"].as_array().unwrap().len(), 0, "{:#}", v["findings"]);
    let before = v["findings"]["preExistingErrors"].as_array().unwrap();
    let f = before.iter().find(|f| f["rule"] == "crd-dependency").expect("listed as there before");
    assert_eq!(f["line"], 4, "shown at its line in head");
}

#[test]
fn a_base_that_does_not_load_exits_2_naming_the_base() {
    let d = repo();
    edit(d.path(), "clusters/staging/infrastructure.yaml", |t| format!("{t}\n  broken: [unclosed\n"));
    commit(d.path(), "broken");
    git(d.path(), &["tag", "broken"]);
    git(d.path(), &["revert", "--no-edit", "HEAD"]);
    let r = diff(d.path(), &["--base", "broken"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("the base side, broken ("), "{}", r.stderr);
    assert!(r.stderr.contains("clusters/staging/infrastructure.yaml"), "names the file: {}", r.stderr);
    let r = diff(d.path(), &["--base", "no-such-branch"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`no-such-branch` is not a commit"), "{}", r.stderr);
}

#[test]
fn secret_values_are_never_shown_and_the_users_tree_is_untouched() {
    let d = repo();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: reloader\nstringData:\n  token: hunter2-old\n";
    std::fs::write(d.path().join("namespaces/reloader/token.yaml"), secret).unwrap();
    edit(d.path(), "namespaces/reloader/kustomization.yaml", |t| format!("{t}  - token.yaml\n"));
    commit(d.path(), "a token");
    edit(d.path(), "namespaces/reloader/token.yaml", |t| t.replace("hunter2-old", "hunter2-new"));
    let status = |d: &Path| {
        String::from_utf8(Command::new("git").arg("-C").arg(d).args(["status", "--porcelain"]).output().unwrap().stdout)
            .unwrap()
    };
    let before = status(d.path());
    for format in ["text", "json", "markdown"] {
        let r = diff(d.path(), &["--base", "HEAD", "--fields", "--format", format]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("stringData.token"), "the changed field is named ({format}): {}", r.stdout);
        assert!(!r.stdout.contains("hunter2"), "a secret value was printed ({format}):\n{}", r.stdout);
    }
    assert_eq!(status(d.path()), before, "diff changed the user's index or working tree");
}

#[test]
fn a_directory_outside_git_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    copy(&netcorp(), d.path());
    let r = diff(d.path(), &["--base", "main"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not inside a git repository"), "{}", r.stderr);
}

#[test]
fn markdown_carries_the_marker_and_stays_within_a_comment() {
    let d = repo();
    // Many changes at once: every Kustomization's interval.
    edit(d.path(), "clusters/staging/infrastructure.yaml", |t| t.replace("interval: 5m", "interval: 7m"));
    let r = diff(d.path(), &["--base", "main", "--format", "markdown", "--fields"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("<!-- flux-harness-diff -->\n"), "{}", r.stdout);
    assert!(r.stdout.contains("| Kustomization | `cilium-config` | changed |"), "{}", r.stdout);
    assert!(r.stdout.contains("spec.interval: 5m → 7m"), "{}", r.stdout);
    assert!(r.stdout.len() <= 60_000);
}

#[test]
fn a_revision_with_symlinks_reads_as_a_checkout_would() {
    let d = repo();
    let ns = d.path().join("namespaces/reloader/namespace.yaml");
    std::fs::create_dir_all(d.path().join("bases")).unwrap();
    std::fs::rename(&ns, d.path().join("bases/reloader-namespace.yaml")).unwrap();
    std::os::unix::fs::symlink("../../bases/reloader-namespace.yaml", &ns).unwrap();
    commit(d.path(), "the namespace through a symlink");
    let (code, v) = json(d.path(), &["--base", "HEAD"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["unchanged"], true, "the base read the symlink's target, as the working tree does: {v:#}");
    let (_, v) = json(d.path(), &["--base", "HEAD~1"]);
    assert_eq!(v["unchanged"], true, "moving a file behind a symlink changes nothing Flux applies: {v:#}");
}

#[test]
fn a_new_cycle_fails_and_names_its_chain() {
    let d = repo();
    // kyverno now waits for kyverno-config, which waits for kyverno.
    edit(d.path(), "clusters/staging/infrastructure.yaml", |t| {
        t.replace(
            "  name: kyverno\n  namespace: flux-system\nspec:\n  interval: 5m\n",
            "  name: kyverno\n  namespace: flux-system\nspec:\n  dependsOn:\n    - name: kyverno-config\n  interval: 5m\n",
        )
    });
    let (code, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(code, 1, "{v:#}");
    let chain = v["loops"]["new"][0].as_array().expect("a new loop").iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let chain = chain.join(" ");
    assert!(chain.contains("kyverno-config") && chain.contains("kyverno"), "{chain}");
    let text = diff(d.path(), &["--base", "main"]).stdout;
    assert!(text.contains("Cycle or deadlock new:"), "{text}");
    assert!(text.contains("kyverno: layer 0 → no layer"), "{text}");
}

#[test]
fn an_existing_cycle_is_not_new_when_the_documents_move() {
    let d = repo();
    let infra = "clusters/staging/infrastructure.yaml";
    edit(d.path(), infra, |t| {
        t.replace(
            "  name: kyverno\n  namespace: flux-system\nspec:\n  interval: 5m\n",
            "  name: kyverno\n  namespace: flux-system\nspec:\n  dependsOn:\n    - name: kyverno-config\n  interval: 5m\n",
        )
    });
    commit(d.path(), "a cycle, already on main");
    // The same documents, in reverse order: the loop is found from another member.
    edit(d.path(), infra, |t| {
        let docs: Vec<&str> = t.split("\n---\n").collect();
        docs.into_iter().rev().collect::<Vec<_>>().join("\n---\n") + "\n"
    });
    let (code, v) = json(d.path(), &["--base", "main"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["loops"]["new"].as_array().unwrap().len(), 0, "{:#}", v["loops"]);
    assert_eq!(names(&v["findings"]["new"], "dependency-cycle"), 0, "{:#}", v["findings"]["new"]);
    assert!(names(&v["findings"]["preExistingErrors"], "dependency-cycle") == 1, "{:#}", v["findings"]);
}
