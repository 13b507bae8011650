//! Real-world repo layouts and Flux features: one small fixture repo per item, and what
//! `plan` finds in it (objects, namespaces, layers, findings).

mod common;

use harness::commands::{PlanRequest, RendererChoice, load, plan};
use harness::findings::Severity;
use harness::model::{Entry, RepoModel};
use harness::plan::Plan;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/layouts").join(name)
}

fn req(name: &str, entry: Entry) -> PlanRequest {
    PlanRequest { repo: fixture(name), entry: Some(entry), sources: vec![], renderer: RendererChoice::Native }
}

fn plan_of(name: &str, cluster: &str) -> Plan {
    plan(&req(name, Entry::Cluster(cluster.into()))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn model_of(name: &str, cluster: &str) -> RepoModel {
    load(&req(name, Entry::Cluster(cluster.into()))).unwrap_or_else(|e| panic!("{name}: {e}")).model
}

fn rules(p: &Plan) -> Vec<String> {
    p.findings.iter().map(|f| format!("{} {}", f.severity.as_str(), f.rule)).collect()
}

fn object<'a>(m: &'a RepoModel, k: &str, kind: &str, name: &str) -> &'a serde_json::Value {
    let kn = m.kustomizations.iter().find(|x| x.spec.name == k).unwrap_or_else(|| panic!("no Kustomization {k}"));
    &kn.objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| {
            panic!("no {kind}/{name} in {k}: {:?}", kn.objects.iter().map(|o| o.display_id()).collect::<Vec<_>>())
        })
        .value
}

#[test]
fn placeholder_gotk_files_give_a_synthesized_entry() {
    let p = plan_of("placeholder-gotk", "home");
    assert_eq!(p.entry, "flux-system");
    assert_eq!(p.entry_path, "./clusters/home");
    assert_eq!(p.layers, vec![vec!["apps"]]);
    assert!(rules(&p).contains(&"info entry-synthesized".to_string()));
    assert_eq!(p.errors(), 0);
    // --path DIR does the same without the clusters/ layout.
    let by_path = plan(&req("placeholder-gotk", Entry::Path("clusters/home".into()))).unwrap();
    assert_eq!(by_path.layers, p.layers);
}

#[test]
fn a_flux_instance_says_what_the_cluster_syncs() {
    let p = plan_of("flux-operator", "home");
    assert_eq!(p.entry_path, "./kubernetes/flux/cluster");
    assert_eq!(p.layers, vec![vec!["apps"]]);
    let apps = p.kustomizations.iter().find(|k| k.name == "apps").unwrap();
    assert_eq!(apps.rendered, "rendered");
    assert_eq!(apps.objects[0].name, "media");
    let f = p.findings.iter().find(|f| f.rule == "entry-flux-operator").unwrap();
    assert!(f.message.contains("https://git.example.com/home/ops.git"));
    assert_eq!(p.errors(), 0);
}

#[test]
fn the_flux_instance_chart_values_and_an_oci_sync() {
    let p = plan_of("flux-instance-chart", "home");
    assert_eq!(p.entry_path, "./deploy/cluster");
    let apps = p.kustomizations.iter().find(|k| k.name == "apps").unwrap();
    assert_eq!(apps.source, "OCIRepository/flux-system/flux-system");
    assert_eq!(apps.rendered, "rendered", "the OCI artifact is this repository");
    assert_eq!(apps.objects[0].name, "games");
}

#[test]
fn syncing_from_an_oci_artifact_with_older_api_versions() {
    let p = plan_of("oci-entry", "prod");
    assert_eq!(p.layers, vec![vec!["infra"]]);
    assert_eq!(p.kustomizations.iter().find(|k| k.name == "infra").unwrap().objects.len(), 1);
    assert_eq!(p.errors(), 0, "{:?}", rules(&p));
}

#[test]
fn one_kustomization_per_app_with_namespace_inheritance() {
    let p = plan(&req("per-app", Entry::Path("kubernetes/flux/cluster".into()))).unwrap();
    let ns_of = |n: &str| p.kustomizations.iter().find(|k| k.name == n).unwrap().namespace.clone();
    assert_eq!(ns_of("postgres"), "database", "metadata.namespace from the parent's kustomize namespace");
    assert_eq!(ns_of("jellyfin"), "media");
    assert_eq!(p.layers, vec![vec!["cluster-apps", "database/postgres", "media/sonarr"], vec!["media/jellyfin"]]);
    let jellyfin = p.kustomizations.iter().find(|k| k.name == "jellyfin").unwrap();
    assert_eq!(jellyfin.depends_on, vec!["database/postgres", "sonarr"], "explicit namespace, and the dependent's own");
    assert_eq!(jellyfin.objects[0].namespace.as_deref(), Some("media"), "targetNamespace");
    assert_eq!(p.errors(), 0, "{:?}", rules(&p));
}

#[test]
fn several_clusters_in_one_repo_reuse_names() {
    let s = model_of("multi-cluster", "staging");
    let p = model_of("multi-cluster", "production");
    let path = |m: &RepoModel| m.kustomizations.iter().find(|k| k.spec.name == "apps").unwrap().spec.path.clone();
    assert_eq!(path(&s), "apps/staging");
    assert_eq!(path(&p), "apps/production");
    assert_eq!(object(&s, "apps", "Namespace", "staging")["metadata"]["name"], "staging");
}

#[test]
fn a_root_kustomization_patches_its_children() {
    let m = model_of("root-patches", "home");
    let child = m.kustomizations.iter().find(|k| k.spec.name == "secret-app").unwrap();
    assert!(child.spec.decryption, "decryption injected by the root's spec.patches (name `_`)");
    assert!(child.spec.wait, "wait injected by a JSON patch selected by label");
    assert_eq!(child.spec.substitute_from[0].name, "cluster-settings");
    let secret = object(&m, "secret-app", "Secret", "token");
    assert_eq!(secret["stringData"]["host"], "api.home.example.com");
    assert_eq!(
        secret["stringData"]["token"], "ENC[AES256_GCM,data:Zml4dHVyZQ==,iv:aXY=,tag:dGFn,type:str]",
        "SOPS values stay encrypted"
    );
    let p = plan_of("root-patches", "home");
    assert!(!rules(&p).iter().any(|r| r.ends_with("sops-decryption")), "{:?}", rules(&p));
}

#[test]
fn flux_components_and_kustomize_components() {
    let m = model_of("components", "home");
    let d = object(&m, "web", "Deployment", "web");
    assert_eq!(d["spec"]["replicas"], 3, "spec.components (relative to spec.path) applied");
    object(&m, "web", "ConfigMap", "tls-settings");
}

#[test]
fn substitution_in_full() {
    let m = model_of("substitution", "home");
    let cm = object(&m, "app", "ConfigMap", "app-home");
    let data = &cm["data"];
    assert_eq!(data["tier"], "gold", "inline substitute overrides substituteFrom");
    assert_eq!(data["region"], "eu-west", "from a Secret (base64)");
    assert_eq!(data["size"], "small");
    assert_eq!(data["zone"], "a");
    assert_eq!(data["nested"], "home-x");
    assert_eq!(data["literal"], "${CLUSTER}");
    assert_eq!(data["empty"], "[]");
    assert_eq!(object(&m, "app", "ConfigMap", "raw")["data"]["script"], "echo ${HOME:?}");
    let p = plan_of("substitution", "home");
    let unresolved: Vec<&String> =
        p.findings.iter().filter(|f| f.rule == "substitution-unresolved").map(|f| &f.message).collect();
    assert!(unresolved.iter().any(|m| m.contains("${UNDEFINED}")), "{unresolved:?}");
    // A generated script with ${TARGET:?}: Flux's envsubst treats `:?` as `:-` (no error),
    // so the script silently loses the variable; the plan says so at the object.
    assert!(
        unresolved.iter().any(|m| m.starts_with("ConfigMap/default/scripts-") && m.contains("${TARGET}")),
        "{unresolved:?}"
    );
    assert!(!p.findings.iter().any(|f| f.rule == "substitution-failed"), "nothing here fails Flux's envsubst");
    assert!(!p.findings.iter().any(|f| f.rule == "substitute-from-missing"), "optional sources are not required");
}

#[test]
fn helm_release_features_and_older_api_versions() {
    let m = model_of("helm-features", "home");
    let podinfo = m.helm_releases.iter().find(|h| h.spec.name == "podinfo").unwrap();
    assert_eq!(podinfo.spec.source.as_ref().unwrap().kind, "OCIRepository");
    assert_eq!(podinfo.spec.values["replicaCount"], 3, "spec.values wins over valuesFrom");
    assert_eq!(podinfo.spec.values["serviceMonitor"]["enabled"], true, "valuesFrom merged");
    let vf = podinfo.spec.raw["spec"]["valuesFrom"][0]["name"].as_str().unwrap();
    assert!(
        vf.starts_with("podinfo-values-") && vf.len() > "podinfo-values-".len(),
        "the hashed name flows through configurations: {vf}"
    );
    let redis = m.helm_releases.iter().find(|h| h.spec.name == "redis").unwrap();
    assert_eq!(redis.spec.source.as_ref().unwrap().kind, "HelmChart");
    assert_eq!(redis.spec.depends_on[0].namespace, "default");
    let p = plan_of("helm-features", "home");
    assert_eq!(p.layers, vec![vec!["sources"], vec!["apps"]]);
    // The values from the generated ConfigMap are seen by the rules.
    assert!(rules(&p).contains(&"error helm-servicemonitor".to_string()), "{:?}", rules(&p));
    assert!(
        !rules(&p).iter().any(|r| r.contains("values-from-missing") || r.contains("helm-source-missing")),
        "{:?}",
        rules(&p)
    );
}

#[test]
fn resource_sets_are_expanded_or_reported() {
    let p = plan_of("resource-set", "home");
    let names: Vec<&str> = p.kustomizations.iter().map(|k| k.name.as_str()).collect();
    assert!(names.contains(&"team-a-apps") && names.contains(&"team-b-apps"), "{names:?}");
    let a = p.kustomizations.iter().find(|k| k.name == "team-a-apps").unwrap();
    assert_eq!(a.objects[0].namespace.as_deref(), Some("team-a"));
    let infos: Vec<&str> =
        p.findings.iter().filter(|f| f.rule == "not-analysable").map(|f| f.message.as_str()).collect();
    assert!(
        infos.iter().any(|m| m.contains("ResourceSet/flux-system/previews") && m.contains("inputsFrom")),
        "{infos:?}"
    );
    assert!(infos.iter().any(|m| m.contains("ArtifactGenerator")), "{infos:?}");
    assert!(infos.iter().any(|m| m.contains("ExternalArtifact/flux-system/frontend")), "{infos:?}");
    assert!(p.findings.iter().filter(|f| f.rule == "not-analysable").all(|f| f.severity == Severity::Info));
}

#[test]
fn kustomize_features() {
    let m = model_of("kustomize-features", "home");
    let d = object(&m, "app", "Deployment", "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/example/web:1.2.3",
        "replacement with delimiter"
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["owner"], "web",
        "replacement from a file holding a list"
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"], "web", "labels includeSelectors");
    let cm_name =
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"].as_str().unwrap();
    let cm = object(&m, "app", "ConfigMap", cm_name);
    assert!(cm["data"]["settings.json"].as_str().unwrap().contains("\"enabled\": true"));
    assert!(cm["data"]["entrypoint"].as_str().unwrap().contains("${PORT:?}"));
    object(&m, "app", "ConfigMap", "static");
    let p = plan_of("kustomize-features", "home");
    let remote = p.findings.iter().find(|f| f.rule == "remote-resource").unwrap();
    assert!(
        remote.message.contains("https://github.com/example/shared//base?ref=v1.0.0")
            && remote.message.contains("offline")
    );
}

#[test]
fn yaml_as_committed() {
    let m = model_of("yaml-as-committed", "home");
    let hr = m.helm_releases.iter().find(|h| h.spec.name == "app").unwrap();
    assert_eq!(hr.spec.values["replicaCount"], 2, "the patch file is a patch, not an object");
    assert_eq!(hr.spec.raw["spec"]["interval"], "1h", "a redefined anchor: the later one wins");
    assert_eq!(hr.spec.raw["spec"]["upgrade"]["remediation"]["retries"], 3, "<<: merge keys and aliases");
    let chart_app = m.kustomizations.iter().find(|k| k.spec.name == "chart-app").unwrap();
    assert_eq!(chart_app.objects.len(), 1, "values.yaml and helmfile.yaml next to a kustomization are not objects");
    let p = plan_of("yaml-as-committed", "home");
    let build =
        p.findings.iter().find(|f| f.rule == "flux-build-failed").expect("values.yaml in a generated directory");
    assert_eq!((build.file.as_str(), build.severity), ("apps/loose/values.yaml", Severity::Error));
    let tpl = p.findings.iter().find(|f| f.rule == "template-ignored").expect(".j2 reported");
    assert_eq!(tpl.file, "apps/loose/deployment.yaml.j2");
    let loose = p.kustomizations.iter().find(|k| k.name == "loose").unwrap();
    assert_eq!(loose.objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), vec!["loose"]);
}

#[test]
fn a_bootstrap_crd_helmfile_counts_as_pre_installed() {
    let p = plan_of("crd-helmfile", "home");
    assert!(!rules(&p).iter().any(|r| r.contains("crd-dependency") || r.contains("unknown-kind")), "{:?}", rules(&p));
    let f = p.findings.iter().find(|f| f.rule == "bootstrap-helmfile").unwrap();
    assert_eq!(f.file, "bootstrap/helmfile.yaml");
    assert!(
        f.message.contains("monitoring.coreos.com") && f.message.contains("external-crds are not in the catalogue"),
        "{}",
        f.message
    );
}

#[test]
fn three_hundred_per_app_kustomizations_load() {
    // Timing is the benchmark's job; this checks the layout loads and is complete.
    let tmp = tempfile::tempdir().unwrap();
    let files = harness::generate::per_app_repo(30, 10);
    for (p, t) in &files {
        let f = tmp.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    let p = plan(&PlanRequest {
        repo: tmp.path().into(),
        entry: Some(Entry::Path("kubernetes/flux/cluster".into())),
        sources: vec![],
        renderer: RendererChoice::Native,
    })
    .unwrap();
    assert_eq!(p.kustomizations.len(), 302, "entry, cluster-apps and 300 apps");
    assert_eq!(p.errors(), 0);
    assert_eq!(
        p.kustomizations.iter().filter(|k| k.namespace.starts_with("ns")).count(),
        300,
        "scoped by namespace: 30 × app0..app9"
    );
}

/// Patterns of home-ops repos that bootstrap in real life and once drew error findings:
/// helmfiles recognised by content (releases whose charts a template sets, resolved
/// through the HelmRelease of the same name, whose values enable cert-manager's CRDs),
/// charts installed before Flux (their webhooks serve from the start), envsubst string
/// operations, a substituteFrom Secret applied by the bootstrap script.
#[test]
fn home_ops_patterns_come_out_clean_in_plan_and_simulate() {
    let r = req("home-ops-patterns", Entry::Path("kubernetes/flux/cluster".into()));
    let p = plan(&r).unwrap();
    assert_eq!(p.errors(), 0, "{:?}", rules(&p));
    let helmfile = p.findings.iter().find(|f| f.file == "bootstrap/helmfile/apps.yaml").expect("found by content");
    assert!(
        helmfile.message.contains("installs cert-manager") && helmfile.message.contains("cert-manager.io"),
        "{}",
        helmfile.message
    );
    assert!(
        p.findings
            .iter()
            .any(|f| f.rule == "bootstrap-object" && f.message.contains("bootstrap/secrets/tunnel.yaml:3"))
    );
    let m = load(&r).unwrap().model;
    let certs = m.kustomizations.iter().find(|k| k.spec.name == "certs").unwrap();
    assert_eq!(certs.objects[0].name(), "home-example.com-production", "${{SECRET_DOMAIN/./-}}");
    assert_eq!(certs.objects[0].value["spec"]["secretName"], "home-example-com-tls");
    let sim = harness::commands::simulate(&r, harness::sim::SimConfig::default()).unwrap();
    assert!(sim.converged && sim.failures.is_empty(), "{:?}", sim.failures);

    // Without the helmfile that installs cert-manager first, the Certificate does race it.
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&fixture("home-ops-patterns"), tmp.path());
    std::fs::remove_file(tmp.path().join("bootstrap/helmfile/apps.yaml")).unwrap();
    let p = plan(&PlanRequest { repo: tmp.path().into(), ..r }).unwrap();
    assert!(
        p.findings.iter().any(|f| f.severity == Severity::Error && f.kustomization.as_deref() == Some("network/certs")),
        "{:?}",
        rules(&p)
    );
}

#[test]
fn an_artifact_generator_s_external_artifacts_are_sources() {
    let p = plan_of("artifact-generator", "staging");
    assert_eq!(p.errors(), 0, "{:?}", rules(&p));
    let apps = p.kustomizations.iter().find(|k| k.name == "apps").unwrap();
    assert!(apps.rendered.starts_with("not rendered"), "{}", apps.rendered);
    assert!(
        p.findings
            .iter()
            .any(|f| f.rule == "not-analysable" && f.message.contains("ExternalArtifacts infrastructure, apps"))
    );
    let sim = harness::commands::simulate(
        &req("artifact-generator", Entry::Cluster("staging".into())),
        harness::sim::SimConfig::default(),
    )
    .unwrap();
    assert!(sim.converged && sim.failures.is_empty(), "{:?}", sim.failures);
}

/// plan and simulate are two views of one model: over every fixture, a failed reconcile or
/// a stall in the simulation is an error finding of plan, and an ordering error of plan
/// shows in the simulation as a failure or a stall.
#[test]
fn plan_and_simulate_agree_on_every_fixture() {
    const ORDERING: [&str; 12] = [
        "crd-dependency",
        "dependency-cycle",
        "blocked-by-cycle",
        "namespace-missing",
        "webhook-race",
        "input-race",
        "predicted-failure",
        "predicted-stall",
        "values-from-deadlock",
        "health-check-missing",
        "depends-on-suspended",
        "provider-not-ready",
    ];
    let mut checked = 0;
    for e in std::fs::read_dir(fixture("")).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let entries: Vec<Entry> = if dir.join("clusters").is_dir() {
            std::fs::read_dir(dir.join("clusters"))
                .unwrap()
                .map(|c| Entry::Cluster(c.unwrap().file_name().to_string_lossy().to_string()))
                .collect()
        } else if dir.join("kubernetes/flux/cluster").is_dir() {
            vec![Entry::Path("kubernetes/flux/cluster".into())]
        } else {
            continue;
        };
        for entry in entries {
            let r = req(&name, entry.clone());
            let Ok(p) = plan(&r) else { continue };
            let sim = harness::commands::simulate(&r, harness::sim::SimConfig::default()).unwrap();
            let sim_bad = !sim.converged || !sim.failures.is_empty();
            let errors: Vec<&str> =
                p.findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.rule.as_str()).collect();
            if sim_bad {
                assert!(
                    !errors.is_empty(),
                    "{name} {entry:?}: simulate fails ({:?}) but plan has no error",
                    sim.failures
                );
            }
            if errors.iter().any(|r| ORDERING.contains(r)) {
                assert!(
                    sim_bad,
                    "{name} {entry:?}: plan has ordering errors {errors:?} but simulate bootstraps cleanly"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} fixture entries checked");
}

#[test]
fn the_flux_instance_sync_through_values_from_or_a_resource_set() {
    // The chart's sync values come from a generated ConfigMap (valuesFrom); the other
    // cluster's FluxInstance is generated by a ResourceSet. Both sync ./kubernetes/cluster.
    for cluster in ["home", "fleet"] {
        let p = plan_of("flux-instance-indirect", cluster);
        assert_eq!(p.entry_path, "./kubernetes/cluster", "{cluster}");
        let apps = p.kustomizations.iter().find(|k| k.name == "apps").unwrap();
        assert_eq!(apps.rendered, "rendered", "{cluster}");
        assert_eq!(apps.objects[0].name, "shop");
        let f = p.findings.iter().find(|f| f.rule == "entry-flux-operator").unwrap();
        assert!(f.message.contains("https://github.com/example/indirect"), "{}", f.message);
        assert_eq!(p.errors(), 0, "{cluster}: {:?}", rules(&p));
        assert!(!p.findings.iter().any(|f| f.rule == "entry-synthesized"), "{cluster}");
    }
}

#[test]
fn objects_applied_to_another_cluster_and_remote_crds_are_not_errors() {
    let p = plan_of("remote-targets", "home");
    // spec.kubeConfig: the HelmRelease, its HelmRepository and the Certificate live in the
    // edge cluster, whose namespace `shop` and cert-manager this cluster knows nothing of.
    let warnings = p.findings.iter().filter(|f| f.severity == Severity::Warning).count();
    assert_eq!((p.errors(), warnings), (0, 0), "{:?}", rules(&p));
    let remote = p.findings.iter().find(|f| f.rule == "remote-target").unwrap();
    assert_eq!(remote.severity, Severity::Info);
    assert!(remote.message.contains("3 object(s)") && remote.message.contains("Secret flux-system/edge-kubeconfig"));
    let edge = p.kustomizations.iter().find(|k| k.name == "edge-apps").unwrap();
    assert!(edge.objects.is_empty(), "not part of this cluster's bootstrap");
    // The Gateway's CRD may come from the remote URL its dependency applies: unknown, info.
    let gw = p.findings.iter().find(|f| f.rule == "unknown-kind").unwrap();
    assert_eq!(gw.severity, Severity::Info);
    assert!(gw.message.contains("gateway-crds"), "{}", gw.message);
    let sim =
        harness::commands::simulate(&req("remote-targets", Entry::Cluster("home".into())), Default::default()).unwrap();
    assert!(sim.converged && sim.failures.is_empty(), "{:?}", sim.failures);

    // Without the dependency, nothing says the remote CRDs come first: a warning again.
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&fixture("remote-targets"), tmp.path());
    let infra = tmp.path().join("clusters/home/infra.yaml");
    let text = std::fs::read_to_string(&infra).unwrap().replace("  dependsOn:\n    - name: gateway-crds\n", "");
    std::fs::write(&infra, text).unwrap();
    let p =
        plan(&PlanRequest { repo: tmp.path().to_path_buf(), ..req("remote-targets", Entry::Cluster("home".into())) })
            .unwrap();
    let gw = p.findings.iter().find(|f| f.rule == "unknown-kind").unwrap();
    assert_eq!(gw.severity, Severity::Warning, "{}", gw.message);
}
