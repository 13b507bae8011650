//! A deterministic generator of kustomize cases: a base with a mix of built-in kinds and a
//! custom resource, generators, and an overlay using a random subset of the features the
//! native renderer implements. Each case is a list of (path, content) under one directory;
//! the directory to build is `overlay`.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn coin(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      serviceAccountName: runner
      containers:
        - name: app
          image: registry.example/app:1.0
          env:
            - name: LOG_LEVEL
              value: info
            - name: FROM_CM
              valueFrom:
                configMapKeyRef:
                  name: app-config
                  key: mode
          envFrom:
            - configMapRef:
                name: app-config
          ports:
            - containerPort: 8080
              name: http
          volumeMounts:
            - name: config
              mountPath: /etc/app
        - name: sidecar
          image: registry.example/proxy@sha256:0123456789abcdef
      volumes:
        - name: config
          configMap:
            name: app-config
        - name: creds
          secret:
            secretName: app-secret
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: http
    - name: metrics
      port: 9090
      targetPort: 9090
"#;

const CRONJOB: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: job
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: run
              image: busybox:1.36
              envFrom:
                - secretRef:
                    name: app-secret
"#;

const STATEFULSET: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: web
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
        - name: db
          image: postgres:16
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: 1Gi
"#;

const HELMRELEASE: &str = r#"apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
spec:
  interval: 10m
  chart:
    spec:
      chart: podinfo
      version: "6.x"
      sourceRef:
        kind: HelmRepository
        name: podinfo
  values:
    replicaCount: 1
    extraEnvs:
      - name: A
        value: "1"
      - name: B
        value: "2"
    ports: [80, 443]
"#;

const RBAC: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: runner
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: runner
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
  - kind: ServiceAccount
    name: runner
"#;

const NETPOL: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app: web
"#;

const NAMESPACE: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: team
"#;

pub fn generate(n: usize) -> Vec<Vec<(String, String)>> {
    (0..n).map(|i| case(i as u64)).collect()
}

fn case(seed: u64) -> Vec<(String, String)> {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut files: Vec<(String, String)> = vec![];
    let mut add = |p: &str, t: String| files.push((p.to_string(), t));

    // Base: always the Deployment (patch target), the rest by chance.
    let mut base_res = vec!["deployment.yaml"];
    add("base/deployment.yaml", DEPLOYMENT.into());
    let mut has = std::collections::BTreeSet::new();
    for (file, text, name) in [
        ("service.yaml", SERVICE, "service"),
        ("cronjob.yaml", CRONJOB, "cronjob"),
        ("statefulset.yaml", STATEFULSET, "statefulset"),
        ("helmrelease.yaml", HELMRELEASE, "helmrelease"),
        ("rbac.yaml", RBAC, "rbac"),
        ("netpol.yaml", NETPOL, "netpol"),
        ("namespace.yaml", NAMESPACE, "namespace"),
    ] {
        if r.coin(55) {
            base_res.push(file);
            add(&format!("base/{file}"), text.into());
            has.insert(name);
        }
    }
    let mut base = String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n");
    for f in &base_res {
        base.push_str(&format!("  - {f}\n"));
    }
    // Generators in the base: the names the Deployment refers to.
    base.push_str(
        "configMapGenerator:\n  - name: app-config\n    literals:\n      - mode=prod\n      - \"quoted=\\\"a b\\\"\"\n",
    );
    if r.coin(50) {
        base.push_str("    files:\n      - app.properties\n      - custom-key=extra.json\n");
        add("base/app.properties", "color=blue\nsize=<large> & more\n".into());
        add("base/extra.json", "{\"a\": [1, 2]}\n".into());
    }
    if r.coin(40) {
        base.push_str("    envs:\n      - app.env\n");
        add("base/app.env", "# comment\nLEVEL=3\nNAME=web app\n".into());
    }
    base.push_str("secretGenerator:\n  - name: app-secret\n    literals:\n      - password=fixture-not-secret\n");
    if r.coin(30) {
        base.push_str("    type: kubernetes.io/basic-auth\n");
    }
    if r.coin(30) {
        base.push_str("generatorOptions:\n  labels:\n    generated: \"true\"\n");
        if r.coin(40) {
            base.push_str("  disableNameSuffixHash: true\n");
        }
    }
    if r.coin(30) {
        base.push_str("commonLabels:\n  tier: backend\n");
    }
    add("base/kustomization.yaml", base);

    // Overlay.
    let mut ov =
        String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../base\n");
    if r.coin(50) {
        ov.push_str(&format!("namespace: {}\n", r.pick(&["prod", "staging", "team-a"])));
    }
    if r.coin(40) {
        ov.push_str(&format!("namePrefix: {}\n", r.pick(&["pre-", "x-"])));
    }
    if r.coin(30) {
        ov.push_str("nameSuffix: -v2\n");
    }
    if r.coin(35) {
        ov.push_str("commonLabels:\n  env: prod\n");
    }
    if r.coin(45) {
        let sel = r.pick(&["true", "false"]);
        let tpl = r.pick(&["true", "false"]);
        ov.push_str(&format!(
            "labels:\n  - pairs:\n      team: platform\n    includeSelectors: {sel}\n    includeTemplates: {tpl}\n"
        ));
    }
    if r.coin(40) {
        ov.push_str("commonAnnotations:\n  owner: platform-team\n  note: \"a: b\"\n");
    }
    if r.coin(50) {
        ov.push_str("images:\n");
        match r.next() % 3 {
            0 => ov.push_str("  - name: registry.example/app\n    newTag: \"2.0\"\n"),
            1 => ov.push_str("  - name: registry.example/app\n    newName: mirror.example/app\n  - name: busybox\n    newTag: \"1.37\"\n"),
            _ => ov.push_str("  - name: registry.example/proxy\n    digest: sha256:fedcba9876543210\n  - name: postgres\n    newName: mirror.example/postgres\n    newTag: \"17\"\n"),
        }
    }
    if r.coin(35) {
        ov.push_str("replicas:\n  - name: web\n    count: 3\n");
    }
    if r.coin(40) && has.contains("service") {
        ov.push_str("configMapGenerator:\n  - name: app-config\n    behavior: merge\n    literals:\n      - mode=staging\n      - added=yes\n");
    }
    let mut patches = vec![];
    if r.coin(60) {
        add(
            "overlay/deploy-patch.yaml",
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          env:
            - name: LOG_LEVEL
              value: debug
            - name: NEW_VAR
              value: "1"
          ports:
            - containerPort: 8080
              protocol: TCP
        - name: extra
          image: registry.example/extra:1
      volumes:
        - name: creds
          $patch: delete
"#
            .into(),
        );
        patches.push("  - path: deploy-patch.yaml\n".to_string());
    }
    if r.coin(40) {
        patches.push(
            "  - target:\n      kind: Deployment\n      labelSelector: app=web\n    patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n      metadata:\n        name: ignored\n        annotations:\n          patched: by-selector\n".into(),
        );
    }
    if r.coin(40) {
        patches.push(
            "  - target:\n      group: apps\n      kind: Deployment\n      name: \"w.*\"\n    patch: |-\n      - op: add\n        path: /metadata/labels/json\n        value: patched\n      - op: replace\n        path: /spec/template/spec/containers/0/name\n        value: application\n".into(),
        );
    }
    if r.coin(50) && has.contains("helmrelease") {
        add(
            "overlay/hr-patch.yaml",
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\nspec:\n  values:\n    replicaCount: 2\n    extraEnvs:\n      - name: B\n        value: \"3\"\n      - name: C\n        value: \"4\"\n    ports: [8080]\n".into(),
        );
        patches.push("  - path: hr-patch.yaml\n".into());
    }
    if r.coin(40) && has.contains("service") {
        add(
            "overlay/svc-patch.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n    - port: 80\n      targetPort: 8080\n".into(),
        );
        patches.push("  - path: svc-patch.yaml\n".into());
    }
    if !patches.is_empty() {
        ov.push_str("patches:\n");
        for p in patches {
            ov.push_str(&p);
        }
    }
    if r.coin(30) {
        add("overlay/smp-old.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      annotations:\n        legacy: smp\n".into());
        ov.push_str("patchesStrategicMerge:\n  - smp-old.yaml\n");
    }
    if r.coin(30) {
        add("overlay/json-old.yaml", "- op: add\n  path: /spec/paused\n  value: true\n".into());
        ov.push_str("patchesJson6902:\n  - target:\n      group: apps\n      version: v1\n      kind: Deployment\n      name: \".*web.*\"\n    path: json-old.yaml\n");
    }
    if r.coin(35) {
        add(
            "comp/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n  - extra.yaml\ncommonAnnotations:\n  component: enabled\npatches:\n  - target:\n      kind: Deployment\n    patch: |-\n      - op: add\n        path: /metadata/annotations/from-component\n        value: \"yes\"\n".into(),
        );
        add(
            "comp/extra.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: component-extra\ndata:\n  k: v\n".into(),
        );
        ov.push_str("components:\n  - ../comp\n");
    }
    add("overlay/kustomization.yaml", ov);
    files
}
