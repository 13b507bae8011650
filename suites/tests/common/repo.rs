//! A small in-memory Flux repo builder for the rule and model suites.

use harness::files::MemFiles;
use harness::findings::{Finding, Severity};
use harness::model::{self, Entry, LoadOptions, NativeRenderer};
use harness::plan::Plan;

pub const SYNC: &str = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: ssh://git@git.example.com/org/infra.git\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./clusters/test\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n";

pub struct Repo {
    files: MemFiles,
    ks: String,
}

impl Repo {
    pub fn new() -> Self {
        Repo { files: MemFiles::new().with("clusters/test/flux-system/gotk-sync.yaml", SYNC), ks: String::new() }
    }

    /// A Flux Kustomization `name` for `./apps/<name>` (extra: YAML lines under spec, 2-space indented).
    pub fn ks(mut self, name: &str, deps: &[&str], extra: &str) -> Self {
        self.ks.push_str(&format!(
            "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  path: ./apps/{name}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        ));
        // Defaults unless the test sets them.
        if !extra.contains("  interval:") {
            self.ks.push_str("  interval: 5m\n");
        }
        if !extra.contains("  prune:") {
            self.ks.push_str("  prune: false\n");
        }
        if !extra.contains("  wait:") {
            self.ks.push_str("  wait: true\n");
        }
        if !deps.is_empty() {
            self.ks.push_str("  dependsOn:\n");
            for d in deps {
                self.ks.push_str(&format!("    - name: {d}\n"));
            }
        }
        self.ks.push_str(extra);
        self
    }

    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path, text);
        self
    }

    /// A manifest in `apps/<ks>/`.
    pub fn obj(self, ks: &str, file: &str, text: &str) -> Self {
        self.file(&format!("apps/{ks}/{file}"), text)
    }

    /// Writes the repo to disk (for runs that read a directory).
    pub fn write_to(mut self, dir: &std::path::Path) {
        self.files.insert("clusters/test/ks.yaml", &self.ks);
        for (p, t) in self.files.entries() {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        }
    }

    pub fn load(mut self) -> (harness::model::RepoModel, harness::config::RepoConfig) {
        self.files.insert("clusters/test/ks.yaml", &self.ks);
        let opts = LoadOptions { entry: Entry::Cluster("test".into()), sources: vec![] };
        let m = model::load(&self.files, &opts, &NativeRenderer).unwrap_or_else(|e| panic!("load failed: {e}"));
        let cfg = harness::commands::load_config(&self.files).unwrap_or_else(|e| panic!("config: {e}"));
        (m, cfg)
    }

    /// The repo loaded once, as `plan`, `simulate` and the simulated cluster take it.
    pub fn loaded(self) -> harness::loaded::Loaded {
        let (m, cfg) = self.load();
        harness::loaded::Loaded::new(m, cfg)
    }

    pub fn plan(self) -> Plan {
        harness::commands::analyse(&self.loaded())
    }

    pub fn simulate(self, sim: harness::sim::SimConfig) -> harness::Result<harness::sim::report::SimReport> {
        harness::sim::simulate(&self.loaded(), sim)
    }
}

pub fn ns(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n"
    )
}

pub fn helm_repo(name: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  interval: 1h\n  url: https://charts.example.com/{name}\n"
    )
}

/// A HelmRelease of `chart` in namespace `ns`, from HelmRepository `charts`, with
/// remediation retries set; `values` is YAML indented by 4 spaces.
pub fn hr(name: &str, ns: &str, chart: &str, values: &str) -> String {
    format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  interval: 1h\n  chart:\n    spec:\n      chart: {chart}\n      sourceRef:\n        kind: HelmRepository\n        name: charts\n        namespace: flux-system\n  install:\n    remediation:\n      retries: 3\n  upgrade:\n    remediation:\n      retries: 3\n  values:\n{}",
        if values.is_empty() { "    {}\n".to_string() } else { values.to_string() }
    )
}

pub fn findings<'a>(p: &'a Plan, rule: &str) -> Vec<&'a Finding> {
    p.findings.iter().filter(|f| f.rule == rule).collect()
}

/// Exactly one finding of `rule`, with that severity; returns it.
pub fn one<'a>(p: &'a Plan, rule: &str, sev: Severity) -> &'a Finding {
    let f = findings(p, rule);
    assert_eq!(f.len(), 1, "expected one {rule} finding, got {:#?}\nall: {:#?}", f, p.findings);
    assert_eq!(f[0].severity, sev, "{:#?}", f[0]);
    f[0]
}

pub fn none(p: &Plan, rule: &str) {
    let f = findings(p, rule);
    assert!(f.is_empty(), "expected no {rule} finding, got {f:#?}");
}
