//! Generated Flux repos for benchmarks and scale tests: `n` Flux Kustomizations in a
//! layered DAG (each depends on up to three earlier ones), each with a small app.
//! Pure: returns the files; the caller writes them.

pub fn flux_repo(n: usize) -> Vec<(String, String)> {
    let mut files = vec![];
    files.push((
        "clusters/bench/flux-system/gotk-sync.yaml".to_string(),
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: https://git.example.com/bench.git\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./clusters/bench\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n".to_string(),
    ));
    let mut ks = String::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..n {
        let mut deps = vec![];
        if i > 0 {
            for _ in 0..(next() % 4) {
                // Mostly recent ones, so the DAG has depth as well as width.
                let back = 1 + (next() % 40) as usize;
                let d = i.saturating_sub(back);
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        ks.push_str(&format!(
            "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: app-{i:04}\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./apps/app-{i:04}\n  prune: true\n  wait: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n  postBuild:\n    substitute:\n      APP: app-{i:04}\n"
        ));
        if !deps.is_empty() {
            ks.push_str("  dependsOn:\n");
            for d in deps {
                ks.push_str(&format!("    - name: app-{d:04}\n"));
            }
        }
        let dir = format!("apps/app-{i:04}");
        files.push((format!("{dir}/kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: apps\nlabels:\n  - pairs:\n      app.kubernetes.io/part-of: bench\nresources:\n  - deploy.yaml\nconfigMapGenerator:\n  - name: settings\n    literals:\n      - MODE=bench\n".to_string()));
        files.push((
            format!("{dir}/deploy.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${APP}\nspec:\n  selector:\n    matchLabels:\n      app: ${APP}\n  template:\n    metadata:\n      labels:\n        app: ${APP}\n    spec:\n      containers:\n        - name: app\n          image: registry.example/app:1.0\n          envFrom:\n            - configMapRef:\n                name: settings\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: ${APP}\nspec:\n  selector:\n    app: ${APP}\n  ports:\n    - port: 80\n".to_string(),
        ));
    }
    files.push(("clusters/bench/apps.yaml".to_string(), ks));
    files
}
