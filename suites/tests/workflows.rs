//! The workflows under `.github/workflows` and the scripts they call: every `run:` step
//! names commands that exist in the project (xtask verbs, `.ci/` scripts, nextest
//! profiles), and the pull-request comment script edits its one comment instead of adding
//! one per push (against a fake `gh`).

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn workflows() -> Vec<(String, Value)> {
    let dir = common::project_root().join(".github/workflows");
    let mut out = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc = harness::yaml::parse_one(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, doc.value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "pre-merge and nightly at least");
    out
}

/// Every step of every job: (workflow, job, step).
fn steps(all: &[(String, Value)]) -> Vec<(String, String, Value)> {
    let mut out = vec![];
    for (name, wf) in all {
        for (job, j) in wf["jobs"].as_object().unwrap_or_else(|| panic!("{name}: no jobs")) {
            for s in j["steps"].as_array().into_iter().flatten() {
                out.push((name.clone(), job.clone(), s.clone()));
            }
        }
    }
    out
}

/// The verbs of `cargo xtask`: the variants of its `Command` enum, as clap names them.
fn xtask_verbs() -> Vec<String> {
    let main = std::fs::read_to_string(common::project_root().join("xtask/src/main.rs")).unwrap();
    let body = main.split("enum Command {").nth(1).expect("xtask has a Command enum");
    let body = &body[..body.find("\n}").unwrap()];
    let verbs: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .filter_map(|l| {
            let name: String = l.trim().chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            name.chars().next().filter(|c| c.is_ascii_uppercase()).map(|_| name)
        })
        .map(|name| {
            let mut kebab = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            kebab
        })
        .collect();
    assert!(verbs.iter().any(|v| v == "plan") && verbs.iter().any(|v| v == "sim-cluster"), "{verbs:?}");
    verbs
}

#[test]
fn every_run_step_names_commands_the_project_has() {
    let root = common::project_root();
    let verbs = xtask_verbs();
    let nextest = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
    let all = workflows();
    let mut checked = 0;
    for (wf, job, step) in steps(&all) {
        let Some(run) = step["run"].as_str() else { continue };
        let at = format!("{wf} job {job} step {:?}", step["name"].as_str().unwrap_or(run));
        for line in run.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                if *w == "xtask" && i > 0 && words[i - 1] == "cargo" {
                    let verb = words.get(i + 1).expect("a verb after cargo xtask");
                    assert!(verbs.iter().any(|v| v == verb), "{at}: `cargo xtask {verb}` is not a command");
                    checked += 1;
                }
                if let Some(script) = w.trim_matches('"').strip_prefix(".ci/") {
                    let p = root.join(".ci").join(script);
                    let meta = std::fs::metadata(&p).unwrap_or_else(|_| panic!("{at}: .ci/{script} does not exist"));
                    use std::os::unix::fs::PermissionsExt;
                    assert!(meta.permissions().mode() & 0o111 != 0, "{at}: .ci/{script} is not executable");
                    checked += 1;
                }
                if *w == "--profile" {
                    let profile = words[i + 1];
                    assert!(nextest.contains(&format!("[profile.{profile}]")), "{at}: no nextest profile {profile}");
                }
            }
        }
        // A multi-line script stops at its first failure.
        if run.trim().lines().count() > 1 && !run.contains("set -e") && !run.contains("set -o pipefail") {
            panic!("{at}: a multi-line run step without `set -euo pipefail`");
        }
    }
    assert!(checked >= 6, "only {checked} commands checked: the parser no longer sees the steps");
}

#[test]
fn pre_merge_runs_ci_run_and_diffs_pull_requests() {
    let all = workflows();
    let runs: Vec<String> = steps(&all)
        .into_iter()
        .filter(|(wf, _, _)| wf.starts_with("pre-merge"))
        .filter_map(|(_, _, s)| s["run"].as_str().map(str::to_string))
        .collect();
    assert!(runs.iter().any(|r| r.trim() == ".ci/run"), "pre-merge runs what CI runs on a clean clone");
    assert!(runs.iter().any(|r| r.contains(".ci/diff-examples")), "pre-merge diffs the pull request");
    assert!(runs.iter().any(|r| r.contains(".ci/pr-comment")), "and keeps its comment up to date");
}

/// A fake `gh` that logs its arguments and answers the comment listing with `existing`.
fn fake_gh(dir: &Path, existing: &str) {
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {log}\ncase \"$*\" in *--paginate*) printf '%s' '{existing}';; esac\n",
        log = dir.join("gh.log").display()
    );
    let p = dir.join("gh");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn pr_comment(dir: &Path, body: &str) -> (i32, String) {
    let file = dir.join("comment.md");
    std::fs::write(&file, body).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new(common::project_root().join(".ci/pr-comment"))
        .arg(&file)
        .env("PATH", path)
        .env("GH_TOKEN", "x")
        .env("GITHUB_REPOSITORY", "team/infra")
        .env("PR", "42")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("gh.log")).unwrap_or_default();
    (out.status.code().unwrap_or(-1), log)
}

#[test]
fn the_pull_request_comment_is_edited_not_repeated() {
    let d = tempfile::tempdir().unwrap();
    fake_gh(d.path(), "");
    let (code, log) = pr_comment(d.path(), "<!-- flux-harness-diff -->\n## Bootstrap diff\n");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("--method POST repos/team/infra/issues/42/comments"), "first push adds it: {log}");

    let d = tempfile::tempdir().unwrap();
    fake_gh(d.path(), "987\n");
    let (code, log) = pr_comment(d.path(), "<!-- flux-harness-diff -->\n## Bootstrap diff\n");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("--method PATCH repos/team/infra/issues/comments/987"), "later pushes edit it: {log}");
    assert!(!log.contains("POST"), "{log}");

    let d = tempfile::tempdir().unwrap();
    fake_gh(d.path(), "");
    let (code, log) = pr_comment(d.path(), "## no marker\n");
    assert_eq!(code, 2, "a body without the marker could never be found again");
    assert!(log.is_empty(), "nothing posted: {log}");
}

#[test]
fn every_action_is_pinned_by_commit_with_its_version() {
    let dir = common::project_root().join(".github/workflows");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().trim_start_matches("- ").strip_prefix("uses: ") else { continue };
            seen += 1;
            let at = format!("{}:{}", p.file_name().unwrap().to_string_lossy(), i + 1);
            let (action, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
            let sha = action.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{at}: `{action}` is not pinned by a commit SHA (a tag or branch can move)"
            );
            assert!(comment.starts_with('v'), "{at}: say which version the SHA is (`# vX.Y.Z`)");
        }
    }
    assert!(seen >= 10, "only {seen} `uses:` lines found");
}
