//! Generated Flux repos for benchmarks and scale tests: `n` Flux Kustomizations in ten
//! tiers (each depends on up to three of the tier before, as platform repos are layered),
//! each with a small app.
//! Pure: returns the files; the caller writes them.

pub fn flux_repo(n: usize) -> Vec<(String, String)> {
    let mut files = vec![];
    files.push((
        "clusters/bench/flux-system/gotk-sync.yaml".to_string(),
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: https://git.example.com/bench.git\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./clusters/bench\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n".to_string(),
    ));
    files.push((
        "clusters/bench/namespace.yaml".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n".to_string(),
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
        let tier_size = n.div_ceil(10).max(1);
        let tier = i / tier_size;
        let mut deps = vec![];
        if tier > 0 {
            for _ in 0..(1 + next() % 3) {
                let d = (tier - 1) * tier_size + (next() as usize % tier_size);
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
        files.push((format!("{dir}/kustomization.yaml"), format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: apps\nlabels:\n  - pairs:\n      app.kubernetes.io/part-of: bench\nresources:\n  - deploy.yaml\nconfigMapGenerator:\n  - name: settings-{i:04}\n    literals:\n      - MODE=bench\n")));
        files.push((
            format!("{dir}/deploy.yaml"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${{APP}}\nspec:\n  selector:\n    matchLabels:\n      app: ${{APP}}\n  template:\n    metadata:\n      labels:\n        app: ${{APP}}\n    spec:\n      securityContext:\n        runAsNonRoot: true\n        seccompProfile:\n          type: RuntimeDefault\n      containers:\n        - name: app\n          image: registry.example/app:1.0\n          securityContext:\n            allowPrivilegeEscalation: false\n            capabilities:\n              drop: [ALL]\n          envFrom:\n            - configMapRef:\n                name: settings-{i:04}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: ${{APP}}\nspec:\n  selector:\n    app: ${{APP}}\n  ports:\n    - port: 80\n"),
        ));
    }
    files.push(("clusters/bench/apps.yaml".to_string(), ks));
    files
}

/// The per-app layout (`kubernetes/apps/<ns>/<app>/ks.yaml` with the manifests in
/// `app/`), `namespaces` × `apps` Flux Kustomizations synced from `kubernetes/flux/cluster`.
pub fn per_app_repo(namespaces: usize, apps: usize) -> Vec<(String, String)> {
    let mut files = vec![(
        "kubernetes/flux/cluster/ks.yaml".to_string(),
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: cluster-apps\n  namespace: flux-system\nspec:\n  interval: 1h\n  path: ./kubernetes/apps\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n".to_string(),
    )];
    let mut top = String::from("resources:\n");
    for n in 0..namespaces {
        top.push_str(&format!("  - ./ns{n}\n"));
        let mut nsk = format!("namespace: ns{n}\nresources:\n  - ./namespace.yaml\n");
        files.push((
            format!("kubernetes/apps/ns{n}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{n}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n"),
        ));
        for a in 0..apps {
            nsk.push_str(&format!("  - ./app{a}/ks.yaml\n"));
            files.push((
                format!("kubernetes/apps/ns{n}/app{a}/ks.yaml"),
                format!("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: app{a}\nspec:\n  interval: 1h\n  prune: true\n  path: ./kubernetes/apps/ns{n}/app{a}/app\n  targetNamespace: ns{n}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n    namespace: flux-system\n"),
            ));
            files.push((
                format!("kubernetes/apps/ns{n}/app{a}/app/kustomization.yaml"),
                "resources: [svc.yaml]\n".into(),
            ));
            files.push((
                format!("kubernetes/apps/ns{n}/app{a}/app/svc.yaml"),
                format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: app{a}\nspec:\n  ports: [{{port: 80}}]\n"),
            ));
        }
        files.push((format!("kubernetes/apps/ns{n}/kustomization.yaml"), nsk));
    }
    files.push(("kubernetes/apps/kustomization.yaml".into(), top));
    files
}

/// The shapes of the scale benchmark: `n` Flux Kustomizations in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each depends on the one before.
    Chain,
    /// A chain whose first depends on its last: one dependsOn cycle through all of them.
    Loop,
    /// All depend on the first: one wide layer.
    Wide,
}

/// `n` Kustomizations of `shape`, all syncing one empty directory, so the cost measured
/// is the graph's, the rules' and the simulator's, not rendering.
pub fn shaped_repo(n: usize, shape: Shape) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "clusters/bench/flux-system/gotk-sync.yaml".to_string(),
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  url: https://git.example.com/bench.git\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./clusters/bench\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n".to_string(),
        ),
        (
            "apps/empty/kustomization.yaml".to_string(),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n".to_string(),
        ),
    ];
    let mut ks = String::with_capacity(n * 270);
    for i in 0..n {
        ks.push_str(&format!(
            "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: k-{i:05}\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./apps/empty\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        ));
        let dep = match shape {
            Shape::Chain | Shape::Loop if i > 0 => Some(i - 1),
            Shape::Loop if n > 1 => Some(n - 1),
            Shape::Wide if i > 0 => Some(0),
            _ => None,
        };
        if let Some(d) = dep {
            ks.push_str(&format!("  dependsOn:\n    - name: k-{d:05}\n"));
        }
    }
    files.push(("clusters/bench/ks.yaml".to_string(), ks));
    files
}
