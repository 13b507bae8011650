//! The native renderer against `kubectl kustomize` (the reference kustomize): for every
//! kustomization directory of the examples and of a generated corpus of feature
//! combinations, both must produce the same objects with the same content (order aside).

mod common;

use harness::disk::DiskFiles;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn key(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    format!("{}|{}|{}|{}", s("/apiVersion"), s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn by_key(values: Vec<Value>) -> BTreeMap<String, Value> {
    values.into_iter().map(|v| (key(&v), v)).collect()
}

/// Compares the two renderings of `dir` (a path inside `root`); returns a description
/// of the first difference.
fn compare(root: &Path, dir: &str) -> Result<usize, String> {
    let files = DiskFiles::open(root).unwrap();
    let native = harness::kustomize::build(&files, dir);
    let text = harness::exec::kubectl_kustomize(&root.join(dir));
    // Both refusing a directory is agreement too (a base only the cluster assembles).
    let (native, text) = match (native, text) {
        (Err(_), Err(_)) => return Ok(0),
        (n, t) => {
            (n.map_err(|e| format!("native renderer failed: {e}"))?, t.map_err(|e| format!("kubectl failed: {e}"))?)
        }
    };
    let reference: Vec<Value> =
        harness::yaml::parse_docs("kubectl-output", &text).unwrap().into_iter().map(|d| d.value).collect();
    let native = by_key(native.into_iter().map(|o| o.value).collect());
    let reference = by_key(reference);
    let (nk, rk): (Vec<_>, Vec<_>) = (native.keys().collect(), reference.keys().collect());
    if nk != rk {
        return Err(format!("different objects:\n native:  {nk:?}\n kubectl: {rk:?}"));
    }
    for (k, rv) in &reference {
        let nv = &native[k];
        if nv != rv {
            return Err(format!(
                "{k} differs:\n--- native\n{}\n--- kubectl\n{}",
                serde_json::to_string_pretty(nv).unwrap(),
                serde_json::to_string_pretty(rv).unwrap()
            ));
        }
    }
    Ok(reference.len())
}

fn kustomization_dirs(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() == "kustomization.yaml" {
                let rel = p.parent().unwrap().strip_prefix(root).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn check_all(root: &Path, dirs: &[String]) {
    let mut failures = vec![];
    let mut objects = 0;
    for d in dirs {
        match compare(root, d) {
            Ok(n) => objects += n,
            Err(e) => failures.push(format!("== {d}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} directories differ:\n{}", failures.len(), dirs.len(), failures.join("\n"));
    assert!(objects > 0, "the corpus rendered no objects at all");
    eprintln!("{} directories, {objects} objects: native == kubectl", dirs.len());
}

#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: the oracle of the differential tests")]
fn examples_render_like_kubectl() {
    for ex in ["netcorp-infra", "envs-infra"] {
        let root = common::example(ex);
        let dirs = kustomization_dirs(&root);
        assert!(dirs.len() > 3, "{ex}: expected kustomization directories");
        check_all(&root, &dirs);
    }
}

#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: the oracle of the differential tests")]
fn generated_corpus_renders_like_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = corpus::generate(120);
    let mut dirs = vec![];
    for (i, case) in cases.iter().enumerate() {
        let dir = format!("case{i:03}");
        let files: Vec<(&str, String)> = vec![];
        common::write_tree(&tmp.path().join(&dir), &files);
        for (p, t) in case {
            let full = tmp.path().join(&dir).join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, t).unwrap();
        }
        dirs.push(format!("{dir}/overlay"));
    }
    check_all(tmp.path(), &dirs);
}

/// Kustomizations that are empty to kustomize (type meta alone, fields left null, comments
/// only) are refused by both, with kustomize's words; `resources: []` is not empty.
#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: the oracle of the differential tests")]
fn empty_kustomizations_are_refused_like_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let tm = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    let cases = [
        ("type-meta", tm.to_string(), true),
        ("null-resources", format!("{tm}resources:\n"), true),
        ("comments", "# nothing yet\n".to_string(), true),
        ("empty-list", format!("{tm}resources: []\n"), false),
    ];
    for (dir, text, _) in &cases {
        common::write_tree(&tmp.path().join(dir), &[("kustomization.yaml", text.clone())]);
    }
    let files = DiskFiles::open(tmp.path()).unwrap();
    for (dir, _, empty) in &cases {
        let native = harness::kustomize::build(&files, dir);
        assert_eq!(native.is_err(), *empty, "{dir}");
        if *empty {
            assert!(native.unwrap_err().message.contains("kustomization.yaml is empty"), "{dir}");
        }
    }
    for (dir, _, _) in &cases {
        compare(tmp.path(), dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    }
}

#[path = "corpus.rs"]
mod corpus;

/// Every kustomization directory of every layout fixture (the patterns of public repos:
/// replacements, configurations, labels with includeSelectors, generators with key=path and
/// JSON files, components, per-app layouts, the Flux Operator's generated values, remote
/// targets), against kubectl. Remote resources are dropped first: kubectl would fetch them,
/// the native renderer reports them instead (the layouts test checks that finding).
#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: the oracle of the differential tests")]
fn layout_fixtures_render_like_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let layouts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts");
    copy_dir(&layouts, tmp.path());
    let dirs = kustomization_dirs(tmp.path());
    for d in &dirs {
        let k = tmp.path().join(d).join("kustomization.yaml");
        let text = std::fs::read_to_string(&k).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.contains("https://")).collect();
        std::fs::write(&k, kept.join("\n") + "\n").unwrap();
    }
    assert!(dirs.len() >= 17, "only {} kustomization directories found", dirs.len());
    check_all(tmp.path(), &dirs);
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}
