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
    let native = harness::kustomize::build(&files, dir).map_err(|e| format!("native renderer failed: {e}"))?;
    let text = harness::exec::kubectl_kustomize(&root.join(dir)).map_err(|e| format!("kubectl failed: {e}"))?;
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

#[path = "corpus.rs"]
mod corpus;

/// replacements (inline, from a list file, delimiter/index, create), configurations
/// (nameReference into HelmRelease valuesFrom), labels with includeSelectors, generators
/// with key=path and JSON files: the layout fixtures, against kubectl.
#[test]
#[cfg_attr(not(have_kubectl), ignore = "kubectl is not installed: the oracle of the differential tests")]
fn layout_fixtures_render_like_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let layouts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts");
    let mut dirs = vec![];
    for (fixture, dir) in [
        ("kustomize-features", "apps/app"),
        ("helm-features", "apps/apps"),
        ("components", "apps/web/app"),
        ("yaml-as-committed", "apps/chart-app"),
    ] {
        let src = layouts.join(fixture).join(dir);
        let dst = tmp.path().join(fixture);
        copy_dir(&src, &dst);
        // kubectl would fetch a remote base; the native renderer reports it instead.
        let k = dst.join("kustomization.yaml");
        let text = std::fs::read_to_string(&k)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("https://"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&k, text + "\n").unwrap();
        dirs.push(fixture.to_string());
    }
    // The components fixture refers to ../components: bring it along.
    copy_dir(&layouts.join("components/apps/web/components"), &tmp.path().join("components"));
    std::fs::rename(tmp.path().join("components"), tmp.path().join("components-app")).unwrap();
    std::fs::create_dir_all(tmp.path().join("c")).unwrap();
    copy_dir(&layouts.join("components/apps/web/app"), &tmp.path().join("c/app"));
    copy_dir(&layouts.join("components/apps/web/components"), &tmp.path().join("c/components"));
    dirs.retain(|d| d != "components");
    dirs.push("c/app".into());
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
