//! What `plan` finds on small repos that each exercise one behaviour of the model and
//! the graph. Repos are built in memory; the same code reads disk repos.

use harness::files::MemFiles;
use harness::findings::Severity;
use harness::model::{self, Entry, LoadOptions, MappedSource, NativeRenderer};
use harness::plan::Plan;

const SYNC: &str = r#"apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  url: ssh://git@git.example.com/org/infra.git
  ref:
    branch: main
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 10m
  path: ./clusters/test
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"#;

fn ks(name: &str, path: &str, deps: &[&str], extra: &str) -> String {
    let mut s = format!(
        "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  interval: 5m\n  path: {path}\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
    );
    if !deps.is_empty() {
        s.push_str("  dependsOn:\n");
        for d in deps {
            s.push_str(&format!("    - name: {d}\n"));
        }
    }
    s.push_str(extra);
    s
}

fn repo(infra: &str, extra: &[(&str, &str)]) -> MemFiles {
    let mut fs = MemFiles::new()
        .with("clusters/test/flux-system/gotk-sync.yaml", SYNC)
        .with("clusters/test/flux-system/kustomization.yaml", "resources: [gotk-sync.yaml]\n");
    fs.insert("clusters/test/infrastructure.yaml", infra);
    for (p, t) in extra {
        fs.insert(p, t);
    }
    fs
}

fn plan_of(fs: &MemFiles) -> Plan {
    plan_with(fs, vec![])
}

fn plan_with(fs: &MemFiles, sources: Vec<MappedSource>) -> Plan {
    let opts = LoadOptions { entry: Entry::Cluster("test".into()), sources };
    let m = model::load(fs, &opts, &NativeRenderer).unwrap_or_else(|e| panic!("load failed: {e}"));
    let (g, mut f) = harness::graph::analyse(&m);
    f.extend(m.findings.iter().cloned());
    Plan::build(&m, &g, f)
}

fn objects_of<'a>(p: &'a Plan, k: &str) -> &'a Vec<harness::plan::ObjectRow> {
    &p.kustomizations.iter().find(|x| x.name == k).unwrap_or_else(|| panic!("no Kustomization {k}")).objects
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n";

#[test]
fn layers_follow_depends_on_and_the_entry_is_not_a_layer() {
    let infra = [
        ks("a", "./apps/a", &[], ""),
        ks("b", "./apps/b", &["a"], ""),
        ks("c", "./apps/c", &["a", "b"], ""),
        ks("d", "./apps/d", &[], ""),
    ]
    .concat();
    let fs =
        repo(&infra, &[("apps/a/ns.yaml", NS), ("apps/b/x.yaml", NS), ("apps/c/x.yaml", NS), ("apps/d/x.yaml", NS)]);
    let p = plan_of(&fs);
    assert_eq!(p.entry, "flux-system");
    assert_eq!(p.layers, vec![vec!["a", "d"], vec!["b"], vec!["c"]]);
    assert_eq!(p.critical_path, vec!["a", "b", "c"]);
    assert_eq!(p.errors(), 0);
    // Flux generated a kustomization for apps/a (no kustomization.yaml): the file is found.
    assert_eq!(objects_of(&p, "a")[0].file, "apps/a/ns.yaml");
    assert_eq!(objects_of(&p, "a")[0].line, 1);
}

#[test]
fn a_missing_dependency_is_an_error_at_the_dependents_file_and_line() {
    let infra = [ks("a", "./apps/a", &["nope"], "")].concat();
    let p = plan_of(&repo(&infra, &[("apps/a/ns.yaml", NS)]));
    let f = p.findings.iter().find(|f| f.rule == "dependency-missing").expect("finding");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!((f.file.as_str(), f.line), ("clusters/test/infrastructure.yaml", 2));
    assert!(f.message.contains("flux-system/nope"), "{}", f.message);
    assert_eq!(p.exit_code(), 1);
}

#[test]
fn a_depends_on_cycle_prints_the_whole_path_and_blocks_its_dependents() {
    let infra = [
        ks("a", "./apps/a", &["c"], ""),
        ks("b", "./apps/b", &["a"], ""),
        ks("c", "./apps/c", &["b"], ""),
        ks("d", "./apps/d", &["c"], ""),
        ks("e", "./apps/e", &[], ""),
    ]
    .concat();
    let fs = repo(
        &infra,
        &[
            ("apps/a/x.yaml", NS),
            ("apps/b/x.yaml", NS),
            ("apps/c/x.yaml", NS),
            ("apps/d/x.yaml", NS),
            ("apps/e/x.yaml", NS),
        ],
    );
    let p = plan_of(&fs);
    let cyc = p.findings.iter().find(|f| f.rule == "dependency-cycle").expect("cycle finding");
    assert!(
        cyc.message.contains("Kustomization flux-system/a depends on Kustomization flux-system/c depends on Kustomization flux-system/b depends on Kustomization flux-system/a"),
        "{}",
        cyc.message
    );
    assert!(p.findings.iter().any(|f| f.rule == "blocked-by-cycle" && f.message.contains("flux-system/d")));
    assert_eq!(p.layers, vec![vec!["e"]], "only e can be layered");
}

#[test]
fn a_deadlock_across_kinds_is_found() {
    // k1 waits for its HelmRelease a; a depends on HelmRelease b; b is applied by k2;
    // k2 depends on k1. No dependsOn cycle among Kustomizations, yet nothing can start.
    let hr = |name: &str, dep: Option<&str>| {
        let mut s = format!(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  interval: 1h\n  chart:\n    spec:\n      chart: {name}\n      sourceRef:\n        kind: HelmRepository\n        name: charts\n        namespace: flux-system\n"
        );
        if let Some(d) = dep {
            s.push_str(&format!("  dependsOn:\n    - name: {d}\n"));
        }
        s
    };
    let repo_src = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  namespace: flux-system\nspec:\n  url: https://charts.example.com\n";
    let infra = [ks("k1", "./apps/k1", &[], "  wait: true\n"), ks("k2", "./apps/k2", &["k1"], "")].concat();
    let a = hr("a", Some("b"));
    let b = hr("b", None);
    let fs = repo(&infra, &[("apps/k1/hr.yaml", &a), ("apps/k1/repo.yaml", repo_src), ("apps/k2/hr.yaml", &b)]);
    let p = plan_of(&fs);
    let f = p.findings.iter().find(|f| f.rule == "dependency-cycle").expect("deadlock finding");
    assert!(f.message.starts_with("deadlock:"), "{}", f.message);
    for part in [
        "Kustomization flux-system/k1 waits for",
        "HelmRelease apps/a depends on",
        "HelmRelease apps/b is applied by",
        "Kustomization flux-system/k2 depends on",
    ] {
        assert!(f.message.contains(part), "missing '{part}' in {}", f.message);
    }
    // Without wait on k1 the same repo is fine.
    let infra_ok = [ks("k1", "./apps/k1", &[], ""), ks("k2", "./apps/k2", &["k1"], "")].concat();
    let fs_ok = repo(&infra_ok, &[("apps/k1/hr.yaml", &a), ("apps/k1/repo.yaml", repo_src), ("apps/k2/hr.yaml", &b)]);
    assert_eq!(plan_of(&fs_ok).errors(), 0);
}

#[test]
fn a_kustomization_depending_on_a_helmrelease_gets_a_hint() {
    let hr = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: cilium\n  namespace: flux-system\nspec:\n  chart:\n    spec:\n      chart: cilium\n      sourceRef:\n        kind: HelmRepository\n        name: cilium\n";
    let infra = [ks("net", "./apps/net", &[], ""), ks("app", "./apps/app", &["cilium"], "")].concat();
    let p = plan_of(&repo(&infra, &[("apps/net/hr.yaml", hr), ("apps/app/x.yaml", NS)]));
    let f = p.findings.iter().find(|f| f.rule == "dependency-missing").unwrap();
    assert!(f.message.contains("is a HelmRelease"), "{}", f.message);
}

#[test]
fn post_build_substitution_uses_repo_configmaps_inline_values_and_defaults() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-vars\n  namespace: flux-system\ndata:\n  ENV: staging\n  REGION: eu-1\n";
    let extra = "  postBuild:\n    substitute:\n      REGION: override\n    substituteFrom:\n      - kind: ConfigMap\n        name: cluster-vars\n";
    let infra = [cm.to_string(), ks("app", "./apps/app", &[], extra)].concat();
    let app = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-${ENV}\n  namespace: apps\ndata:\n  region: ${REGION}\n  tier: ${TIER:=gold}\n  escaped: $${ENV}\n  missing: \"[${NOPE}]\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: untouched\n  namespace: apps\n  labels:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  raw: ${ENV}\n";
    let fs = repo(&infra, &[("apps/app/cm.yaml", app)]);
    let opts = LoadOptions { entry: Entry::Cluster("test".into()), sources: vec![] };
    let m = model::load(&fs, &opts, &NativeRenderer).unwrap();
    let k = m.kustomizations.iter().find(|k| k.spec.name == "app").unwrap();
    let cm = &k.objects[0].value;
    assert_eq!(cm["metadata"]["name"], "app-staging", "object names built from variables");
    assert_eq!(cm["data"]["region"], "override", "inline substitute overrides substituteFrom");
    assert_eq!(cm["data"]["tier"], "gold");
    assert_eq!(cm["data"]["escaped"], "${ENV}");
    assert_eq!(cm["data"]["missing"], "[]");
    assert_eq!(k.objects[1].value["data"]["raw"], "${ENV}", "substitute: disabled is honoured");
    let f = m.findings.iter().find(|f| f.rule == "substitution-unresolved").expect("unresolved finding");
    assert!(f.message.contains("${NOPE}") && !f.message.contains("${ENV}"), "{}", f.message);
    assert_eq!((f.file.as_str(), f.line), ("apps/app/cm.yaml", 1));
}

#[test]
fn substitute_from_a_configmap_the_repo_does_not_define_is_an_error() {
    let extra = "  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: absent\n      - kind: Secret\n        name: also-absent\n        optional: true\n";
    let p = plan_of(&repo(&ks("app", "./apps/app", &[], extra), &[("apps/app/x.yaml", NS)]));
    let missing: Vec<_> = p.findings.iter().filter(|f| f.rule == "substitute-from-missing").collect();
    assert_eq!(missing.len(), 1, "the optional one is not reported");
    assert!(missing[0].message.contains("ConfigMap flux-system/absent"));
}

#[test]
fn flux_overlay_fields_are_applied_after_kustomize() {
    let extra = "  targetNamespace: team\n  namePrefix: pre-\n  commonMetadata:\n    labels:\n      owner: platform\n  images:\n    - name: nginx\n      newTag: \"1.27\"\n  patches:\n    - target:\n        kind: Deployment\n      patch: |\n        - op: add\n          path: /spec/replicas\n          value: 3\n";
    let dep = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.25\n";
    let fs = repo(
        &ks("app", "./apps/app", &[], extra),
        &[("apps/app/kustomization.yaml", "resources: [d.yaml]\n"), ("apps/app/d.yaml", dep)],
    );
    let opts = LoadOptions { entry: Entry::Cluster("test".into()), sources: vec![] };
    let m = model::load(&fs, &opts, &NativeRenderer).unwrap();
    let d = &m.kustomizations.iter().find(|k| k.spec.name == "app").unwrap().objects[0].value;
    assert_eq!(d["metadata"]["namespace"], "team");
    assert_eq!(d["metadata"]["name"], "pre-web");
    assert_eq!(d["metadata"]["labels"]["owner"], "platform");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
}

#[test]
fn sources_same_url_is_the_repo_others_are_mapped_or_reported() {
    let git = |name: &str, url: &str| {
        format!(
            "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: {url}\n"
        )
    };
    let with_src = |name: &str, path: &str, src: &str| {
        ks(name, path, &[], "").replace("name: flux-system\n", &format!("name: {src}\n"))
    };
    let infra = [
        git("same", "https://git.example.com/org/infra"),
        git("other", "https://git.example.com/org/apps.git"),
        git("mapped", "https://git.example.com/org/lib.git"),
        with_src("via-same", "./apps/a", "same"),
        with_src("via-other", "./deploy", "other"),
        with_src("via-mapped", "./deploy", "mapped"),
        with_src("via-missing", "./deploy", "ghost"),
    ]
    .concat();
    // Fix the metadata name that the replace above also touched.
    let infra = infra.replace(
        "  name: same\n  namespace: flux-system\nspec:\n  interval: 5m",
        "  name: via-same\n  namespace: flux-system\nspec:\n  interval: 5m",
    );
    let fs = repo(&infra, &[("apps/a/x.yaml", NS)]);
    let lib = MemFiles::new()
        .with("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-lib\n  namespace: apps\n");
    let p = plan_with(&fs, vec![MappedSource { key: "mapped".into(), files: &lib }]);
    let row = |n: &str| {
        p.kustomizations.iter().find(|k| k.name == n).unwrap_or_else(|| {
            panic!("{n} missing: {:?}", p.kustomizations.iter().map(|k| &k.name).collect::<Vec<_>>())
        })
    };
    assert_eq!(row("via-same").rendered, "rendered");
    assert_eq!(row("via-mapped").rendered, "rendered from --source mapped");
    assert_eq!(row("via-mapped").objects[0].name, "from-lib");
    assert!(row("via-other").rendered.starts_with("not rendered"));
    let unmapped = p.findings.iter().find(|f| f.rule == "source-unmapped").expect("unmapped finding");
    assert!(
        unmapped.message.contains("org/apps.git") && unmapped.fix.as_deref().unwrap().contains("--source other=DIR")
    );
    let missing = p.findings.iter().find(|f| f.rule == "source-missing").expect("missing finding");
    assert_eq!(missing.severity, Severity::Error);
    assert!(missing.message.contains("GitRepository/flux-system/ghost"));
}

#[test]
fn a_placeholder_gotk_sync_gives_a_synthesized_entry() {
    let fs = MemFiles::new()
        .with("clusters/test/flux-system/gotk-sync.yaml", "# generated by flux bootstrap; placeholder\n")
        .with("clusters/test/apps.yaml", &ks("a", "./apps/a", &[], ""))
        .with("apps/a/x.yaml", NS);
    let p = plan_of(&fs);
    assert_eq!(p.entry, "flux-system");
    assert_eq!(p.layers, vec![vec!["a"]]);
    assert!(p.findings.iter().any(|f| f.rule == "entry-synthesized" && f.severity == Severity::Info));
}

#[test]
fn child_kustomizations_inherit_the_parents_kustomize_namespace() {
    let child = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: app\nspec:\n  interval: 5m\n  path: ./apps/a\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n    namespace: flux-system\n  dependsOn:\n    - name: base\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: base\nspec:\n  interval: 5m\n  path: ./apps/a\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n    namespace: flux-system\n";
    let fs = repo(
        "",
        &[
            ("clusters/test/team/kustomization.yaml", "namespace: team-ns\nresources: [ks.yaml]\n"),
            ("clusters/test/team/ks.yaml", child),
            ("apps/a/x.yaml", NS),
        ],
    )
    .with("clusters/test/kustomization.yaml", "resources: [flux-system, team]\n");
    let p = plan_of(&fs);
    let app = p.kustomizations.iter().find(|k| k.name == "app").unwrap();
    assert_eq!(app.namespace, "team-ns");
    assert_eq!(
        p.layers,
        vec![vec!["team-ns/base"], vec!["team-ns/app"]],
        "dependsOn without namespace resolves in the dependent's"
    );
}

/// A repo of `n` Kustomizations in `shape`, planned as `cargo xtask plan` does.
fn shaped(n: usize, shape: harness::generate::Shape) -> Plan {
    let mut files = MemFiles::new();
    for (p, t) in harness::generate::shaped_repo(n, shape) {
        files.insert(&p, &t);
    }
    let req = harness::commands::PlanRequest {
        repo: "unused".into(),
        entry: Some(Entry::Cluster("bench".into())),
        sources: vec![],
        renderer: harness::commands::RendererChoice::Native,
    };
    harness::commands::analyse(&harness::commands::load_files(&files, &req).unwrap())
}

#[test]
fn a_loop_through_a_thousand_kustomizations_is_one_finding_a_person_can_read() {
    let p = shaped(1000, harness::generate::Shape::Loop);
    let errors: Vec<_> = p.findings.iter().filter(|f| f.severity == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "one cause, one finding: {:#?}", &errors[..errors.len().min(3)]);
    let f = errors[0];
    assert_eq!(f.rule, "dependency-cycle");
    assert!(
        f.message.starts_with("dependsOn cycle (1000 in the loop): Kustomization flux-system/k-00000 depends on"),
        "{}",
        f.message
    );
    assert!(f.message.contains("... (988 more) ..."), "{}", f.message);
    assert!(f.message.len() < 1000, "{} characters", f.message.len());
    assert_eq!(p.cycles[0].len(), 1001, "the JSON report keeps every step");
    assert!(p.layers.iter().all(|l| l.is_empty()) || p.layers.is_empty(), "nothing in a loop has a layer");
}

#[test]
fn a_chain_of_a_thousand_has_a_thousand_layers_and_no_finding() {
    let p = shaped(1000, harness::generate::Shape::Chain);
    assert_eq!(p.layers.len(), 1000);
    assert_eq!(p.critical_path.len(), 1000);
    assert!(p.findings.iter().all(|f| f.severity != Severity::Error), "{:#?}", p.findings.first());
}
