//! SOPS decryption against the real `sops` (the oracle, as `kubectl kustomize` is for
//! rendering): files encrypted by sops with keys made by `age-keygen` must decrypt here to
//! what `sops -d` prints, and refuse a wrong key. Then what a user sees: the example's
//! secrets decrypt with its test key in plan, simulate and the sim e2e, and without a key
//! the e2e fails naming cluster-secrets and Flux's error.

mod common;

use harness::sops::{AgeKeys, decrypt, is_encrypted};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen").arg("-o").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_string();
    (path, public)
}

fn sops(args: &[&str], key_file: Option<&Path>, input: &str) -> Result<String, String> {
    let mut cmd = Command::new("sops");
    cmd.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped()).env_remove("SOPS_AGE_KEY").env_remove("SOPS_AGE_KEY_FILE");
    if let Some(k) = key_file {
        cmd.env("SOPS_AGE_KEY_FILE", k);
    }
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn yaml(text: &str) -> Value {
    harness::yaml::parse_one("t.yaml", text).unwrap().value
}

const PLAIN: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: app
  namespace: shop
  labels:
    team: web
type: Opaque
stringData:
  password: s3cr3t-value
  empty: ""
  user_unencrypted: visible
  config.yaml: |
    port: 8080
    debug: true
data:
  token: dG9rZW4=
extra:
  replicas: 3
  ratio: 0.25
  enabled: true
  hosts:
    - a.example.com
    - b.example.com
  nested:
    deep:
      key: inner
"#;

#[test]
#[cfg_attr(not(all(have_sops, have_age)), ignore = "sops and age-keygen are not installed: the oracles of this test")]
fn decrypts_what_sops_encrypts_as_sops_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path(), "k.agekey");
    let (other, _) = keygen(tmp.path(), "other.agekey");
    let keys = AgeKeys::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let wrong = AgeKeys::parse(&std::fs::read_to_string(&other).unwrap()).unwrap();
    // Every value encrypted (sops' default), only data/stringData (Flux's advice), and a
    // suffix rule: three ways of choosing what is encrypted, each with its AAD paths.
    for rule in [
        vec![],
        vec!["--encrypted-regex", "^(data|stringData)$"],
        vec!["--encrypted-suffix", "word"],
        // A comment rule alone: sops then applies no default `_unencrypted` suffix.
        vec!["--encrypted-comment-regex", "secret:"],
    ] {
        let mut args = vec!["--encrypt", "--age", &public, "--input-type", "yaml", "--output-type", "yaml"];
        args.extend(rule.iter().copied());
        args.push("/dev/stdin");
        // The comment rule encrypts only the value under a matching comment.
        let by_comment = rule.iter().any(|r| r.contains("comment"));
        let input = if by_comment {
            PLAIN.replace("  password:", "  # secret: the one value encrypted\n  password:")
        } else {
            PLAIN.to_string()
        };
        let encrypted = sops(&args, None, &input).unwrap();
        if by_comment {
            assert!(encrypted.contains("apiVersion: v1") && encrypted.contains("password: ENC["), "{encrypted}");
        }
        let enc = yaml(&encrypted);
        assert!(is_encrypted(&enc), "{rule:?}");
        let expected = yaml(
            &sops(
                &["--decrypt", "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
                Some(&key),
                &encrypted,
            )
            .unwrap(),
        );
        let ours = decrypt(&enc, &keys).unwrap_or_else(|e| panic!("{rule:?}: {e}"));
        assert_eq!(ours, expected, "{rule:?}: decrypted like sops -d");
        assert_eq!(ours["stringData"]["password"], "s3cr3t-value");
        assert_eq!(ours["extra"]["replicas"], 3, "{rule:?}: types come back");

        // A wrong key: both refuse, and the message names the recipient, not a value.
        assert!(sops(&["--decrypt", "--input-type", "yaml", "/dev/stdin"], Some(&other), &encrypted).is_err());
        let e = decrypt(&enc, &wrong).unwrap_err();
        assert!(e.contains("cannot get sops data key") && e.contains(&public), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");

        // A value tampered with (its path is its authenticated data): refused, path named.
        let moved = encrypted.replacen("password:", "xpassword:", 1);
        let e = decrypt(&yaml(&moved), &keys).unwrap_err();
        assert!(e.contains("stringData.xpassword") && e.contains("message authentication failed"), "{rule:?}: {e}");
    }
}

/// Key groups (a `.sops.yaml` with `key_groups`): one group is written as plain `age`
/// entries and opens with its key, as with sops; two groups need a Shamir threshold of at
/// least 2, shares the harness does not combine, so such a file is not analysed (never a
/// false failure), while one key is not enough for sops either.
#[test]
#[cfg_attr(not(all(have_sops, have_age)), ignore = "sops and age-keygen are not installed: the oracles of this test")]
fn key_groups_decrypt_like_sops_or_are_left_unanalysed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, pa) = keygen(tmp.path(), "a.agekey");
    let (_, pb) = keygen(tmp.path(), "b.agekey");
    let keys = AgeKeys::parse(&std::fs::read_to_string(&a).unwrap()).unwrap();
    for (groups, rule) in [(vec![&pa], ""), (vec![&pa, &pb], "    shamir_threshold: 2\n")] {
        let config = tmp.path().join(format!(".sops-{}.yaml", groups.len()));
        let listed: String = groups.iter().map(|p| format!("      - age: [{p}]\n")).collect();
        std::fs::write(&config, format!("creation_rules:\n  - key_groups:\n{listed}{rule}")).unwrap();
        let c = config.display().to_string();
        let args = [
            "--config",
            &c,
            "--encrypt",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "--filename-override",
            "s.yaml",
            "/dev/stdin",
        ];
        let encrypted = sops(&args, None, PLAIN).unwrap();
        let enc = yaml(&encrypted);
        let by_sops =
            sops(&["--decrypt", "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"], Some(&a), &encrypted);
        if groups.len() == 1 {
            assert!(harness::sops::analysable(&enc));
            assert_eq!(decrypt(&enc, &keys).unwrap(), yaml(&by_sops.unwrap()));
        } else {
            assert!(enc["sops"].get("key_groups").is_some(), "{encrypted}");
            assert!(by_sops.is_err(), "one group's key is not enough for sops either");
            assert!(!harness::sops::analysable(&enc));
        }
    }
}

#[test]
#[cfg_attr(not(have_sops), ignore = "sops is not installed: the oracle of this test")]
fn the_examples_secrets_decrypt_with_their_test_key_like_sops() {
    let root = common::example("netcorp-infra");
    let key = root.join("test-keys/age.agekey");
    let keys = AgeKeys::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let mut n = 0;
    for env in ["staging", "production", "local-kube"] {
        for e in std::fs::read_dir(root.join("clusters").join(env).join("secrets")).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            if !text.contains("\nsops:") {
                continue;
            }
            let v = yaml(&text);
            if !is_encrypted(&v) {
                continue;
            }
            let expected = yaml(
                &sops(&["--decrypt", "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"], Some(&key), &text)
                    .unwrap(),
            );
            assert_eq!(decrypt(&v, &keys).unwrap(), expected, "{}", p.display());
            n += 1;
        }
    }
    assert_eq!(n, 15, "five encrypted Secrets per cluster");
}

/// netcorp with its key in .flux-harness.yaml removed: plan and simulate assume the
/// cluster's sops-age Secret (made out of band), the sim e2e has none unless given one.
#[tokio::test]
#[cfg_attr(not(have_git), ignore = "git is not installed: the sim provider serves the tree with git")]
async fn without_the_key_the_e2e_fails_on_cluster_secrets_and_passes_with_age_key() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("netcorp-infra"), tmp.path());
    std::fs::remove_file(tmp.path().join(".flux-harness.yaml")).unwrap();
    let key = tmp.path().join("test-keys/age.agekey");
    let moved = tempfile::tempdir().unwrap();
    let outside = moved.path().join("age.agekey");
    std::fs::rename(&key, &outside).unwrap();
    let art = tempfile::tempdir().unwrap();
    let req = common::e2e_request(tmp.path().to_path_buf(), "staging", harness::e2e::run::Provider::Sim, art.path());

    let plan = harness::commands::plan(&req.plan).unwrap();
    assert_eq!(plan.errors(), 0, "no key given: the cluster's own Secret is assumed");

    let r = harness::e2e::run::run(&req, &|_| {}).await.unwrap();
    assert!(!r.passed);
    let v = r.violations.iter().find(|v| v.message.contains("cluster-secrets")).unwrap();
    assert!(v.message.contains("secrets \"sops-age\" not found"), "{}", v.message);
    // A decryption error is a build error to kustomize-controller.
    assert!(v.message.contains("BuildFailed"), "{}", v.message);
    assert!(r.preflight.iter().any(|f| f.rule == "sops-decrypt-failed"), "the cause heads the report");

    // Without the key, the ordering can still be proved on sim by assuming the Secret.
    let assumed = harness::e2e::run::E2eRequest { assume_decryption: true, ..req.clone() };
    let r = harness::e2e::run::run(&assumed, &|_| {}).await.unwrap();
    assert!(r.passed, "{:?}", r.violations);
    // A kind cluster cannot be given a Secret the harness does not have.
    let kind = harness::e2e::run::E2eRequest { provider: harness::e2e::run::Provider::Kind, ..assumed };
    let e = harness::e2e::run::run(&kind, &|_| {}).await.unwrap_err();
    assert!(e.message.contains("--assume-decryption") && e.message.contains("--age-key"), "{e}");

    let with_key = harness::e2e::run::E2eRequest { age_key: Some(outside), ..req };
    let r = harness::e2e::run::run(&with_key, &|_| {}).await.unwrap();
    assert!(r.passed, "{:?}", r.violations);
}

/// A Kustomization that decrypts without a `secretRef` uses its controller's own keys in
/// production (KMS, a mounted key). On a test cluster the harness makes, its controller has
/// only the harness's key: the served tree names the Secret made from it (a reported
/// rewrite), and with no key at all the build fails as Flux's would, not silently passes.
#[tokio::test]
#[cfg_attr(not(have_git), ignore = "git is not installed: the sim provider serves the tree with git")]
async fn a_decryption_without_secret_ref_gets_the_harness_s_key_on_its_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&common::example("netcorp-infra"), tmp.path());
    let file = tmp.path().join("clusters/staging/infrastructure.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let without =
        text.replacen("    provider: sops\n    secretRef:\n      name: sops-age\n", "    provider: sops\n", 1);
    assert_ne!(text, without);
    std::fs::write(&file, without).unwrap();
    let art = tempfile::tempdir().unwrap();
    let req = common::e2e_request(tmp.path().to_path_buf(), "staging", harness::e2e::run::Provider::Sim, art.path());
    let r = harness::e2e::run::run(&req, &|_| {}).await.unwrap();
    assert!(r.passed, "{:?}", r.violations);
    let rw = r.rewritten.iter().find(|w| w.path == "clusters/staging/infrastructure.yaml").unwrap();
    assert!(rw.what.contains("decryption.secretRef sops-age on Kustomization cluster-secrets"), "{}", rw.what);

    // No key (the config that names the test key removed): nothing opens the secrets.
    std::fs::remove_file(tmp.path().join(".flux-harness.yaml")).unwrap();
    let r = harness::e2e::run::run(&req, &|_| {}).await.unwrap();
    assert!(!r.passed);
    let v = r.violations.iter().find(|v| v.message.contains("cluster-secrets")).unwrap();
    assert!(v.message.contains("cannot get sops data key"), "{}", v.message);
}
