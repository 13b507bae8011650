//! What the simulated API server does with a request body before storing it: the JSON,
//! the endpoint checks, admission (names, Flux schemas), and the three patch kinds applied
//! to a stored object. The input is two JSON values separated by a NUL: the body, then a
//! patch.
#![no_main]
use harness::apiserver::store::{Resource, merge_patch};
use harness::apiserver::validate;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(body), patch) = (parts.next(), parts.next()) else { return };
    let Ok(obj) = serde_json::from_slice::<Value>(body) else { return };
    let res = Resource {
        group: "kustomize.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        kind: "Kustomization".into(),
        plural: "kustomizations".into(),
        namespaced: true,
        ..Default::default()
    };
    let _ = validate::body(&res, "flux-system", Some("x"), &obj);
    let _ = validate::admit(&res, &obj);
    let _ = validate::resource_version(obj.get("rv").and_then(Value::as_str));
    if let Some(p) = patch.and_then(|p| serde_json::from_slice::<Value>(p).ok()) {
        let mut a = obj.clone();
        if let Some(ops) = p.as_array() {
            let _ = harness::kustomize::patch::json_patch(&mut a, ops);
        }
        let mut b = obj.clone();
        harness::kustomize::patch::strategic_merge(&mut b, &p, false, false);
        let mut c = obj.clone();
        merge_patch(&mut c, &p);
        let _ = validate::identity(&obj, &c);
    }
});
