//! A native kustomize: what `kustomize build` (as linked into Flux's kustomize-controller)
//! produces for a directory, with the file and line of every object kept. Flux builds with
//! no load restrictions inside the source, so files anywhere in the repo may be referenced.
//!
//! Order of work per kustomization (kustomize's own): resources, components, generators,
//! then transformers: patchesStrategicMerge, patches, namespace, namePrefix, nameSuffix,
//! labels, annotations, patchesJson6902, replicas, images. Only at the outermost level:
//! hash suffixes on generated names, then references to renamed objects are fixed.

pub mod generate;
pub mod patch;
pub mod replace;
pub mod transform;

use crate::error::{Error, ErrorKind, Loc, Result};
use crate::files::{self, EntryKind, Files};
use crate::object::{Object, is_builtin_cluster_scoped, split_api_version};
use crate::yaml;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use transform::ImageRule;

pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Fields of a kustomization file the native renderer implements.
const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "images",
    "replicas",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "sortOptions",
    "replacements",
    "configurations",
];

/// Fields kustomize knows that the native renderer does not implement yet.
const NOT_YET: &[&str] = &[
    "helmCharts",
    "helmGlobals",
    "helmChartInflationGenerator",
    "transformers",
    "generators",
    "validators",
    "vars",
    "crds",
    "openapi",
    "buildMetadata",
];

/// What Flux adds to the kustomization at `spec.path` before building it (it edits the
/// kustomization file in place, so these act at the outermost level).
#[derive(Debug, Clone, Default)]
pub struct FluxOverlay {
    pub target_namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    /// `spec.patches` entries: `{patch, target}`.
    pub patches: Vec<Value>,
    pub images: Vec<ImageRule>,
    pub common_labels: Map<String, Value>,
    pub common_annotations: Map<String, Value>,
    /// `spec.components`, relative to `spec.path`.
    pub components: Vec<String>,
    /// Where these came from, for error messages.
    pub origin: Option<Loc>,
}

impl FluxOverlay {
    /// No field set: the build is plain kustomize.
    pub fn is_empty(&self) -> bool {
        self.target_namespace.is_none()
            && self.name_prefix.is_none()
            && self.name_suffix.is_none()
            && self.patches.is_empty()
            && self.images.is_empty()
            && self.common_labels.is_empty()
            && self.common_annotations.is_empty()
            && self.components.is_empty()
    }
}

/// Something the renderer could not use but that does not stop the build, for the model
/// to turn into a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub rule: &'static str,
    pub error: bool,
    pub loc: Loc,
    pub message: String,
}

/// The output of a Flux build: objects and notes.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub objects: Vec<Object>,
    pub notes: Vec<Note>,
}

/// A resource while it is being built: the object plus what kustomize tracks about it.
#[derive(Debug, Clone)]
struct Res {
    obj: Object,
    /// Generated without `disableNameSuffixHash`: gets the content hash at the end.
    needs_hash: bool,
    /// Names and namespaces it had before transformers renamed it.
    previous: Vec<(String, String)>,
}

impl Res {
    fn new(obj: Object) -> Self {
        Res { obj, needs_hash: false, previous: vec![] }
    }
    fn remember_name(&mut self) {
        let cur = (self.obj.namespace().unwrap_or("").to_string(), self.obj.name().to_string());
        if self.previous.last() != Some(&cur) {
            self.previous.push(cur);
        }
    }
    fn had_name(&self, name: &str) -> bool {
        self.obj.name() == name || self.previous.iter().any(|(_, n)| n == name)
    }
    fn had_namespace(&self, ns: &str) -> bool {
        self.obj.namespace().unwrap_or("") == ns || self.previous.iter().any(|(n, _)| n == ns)
    }
}

/// A loaded kustomization file.
struct Kust {
    file: String,
    dir: String,
    text: String,
    v: Map<String, Value>,
}

impl Kust {
    /// The line a top-level field is written on, for messages.
    fn line_of(&self, field: &str) -> u32 {
        self.text.lines().position(|l| l.starts_with(&format!("{field}:"))).map(|i| i as u32 + 1).unwrap_or(1)
    }
    fn loc(&self, field: &str) -> Loc {
        Loc::new(&self.file, self.line_of(field))
    }
    fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::at(ErrorKind::Render, &self.loc(field), msg)
    }
    fn strings(&self, field: &str) -> Result<Vec<String>> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.err(field, format!("'{field}' must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(self.err(field, format!("'{field}' must be a list"))),
        }
    }
    fn str(&self, field: &str) -> Option<&str> {
        self.v.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    fn list(&self, field: &str) -> &[Value] {
        self.v.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
    fn map(&self, field: &str) -> Option<&Map<String, Value>> {
        self.v.get(field).and_then(Value::as_object)
    }
}

/// Builds `dir` the way Flux does for a Kustomization whose `spec.path` is `dir`: the
/// kustomization file there (or the one Flux generates when there is none), with the
/// Flux overlay applied at the outermost level.
pub fn build_flux_path(files: &dyn Files, dir: &str, overlay: &FluxOverlay) -> Result<Rendered> {
    let mut b = Builder { files, stack: vec![], notes: vec![], extra_refs: vec![], parsed: Default::default() };
    let mut kust = match b.find_kustomization(dir)? {
        Some(k) => k,
        None => b.generated_kustomization(dir)?,
    };
    // Flux appends spec.components to the kustomization's own.
    if !overlay.components.is_empty() {
        let mut list = kust.v.get("components").and_then(Value::as_array).cloned().unwrap_or_default();
        list.extend(overlay.components.iter().map(|c| Value::String(c.clone())));
        kust.v.insert("components".into(), Value::Array(list));
    }
    let mut res = b.build_target(&kust, vec![], Some(overlay))?;
    finish_with(&mut res, &b.extra_refs);
    Ok(Rendered { objects: res.into_iter().map(|r| r.obj).collect(), notes: b.notes })
}

/// Builds a kustomization directory exactly as `kustomize build DIR` would.
pub fn build(files: &dyn Files, dir: &str) -> Result<Vec<Object>> {
    let mut b = Builder { files, stack: vec![], notes: vec![], extra_refs: vec![], parsed: Default::default() };
    let kust = b.find_kustomization(dir)?.ok_or_else(|| missing_kustomization(dir))?;
    let mut res = b.build_target(&kust, vec![], None)?;
    finish_with(&mut res, &b.extra_refs);
    Ok(res.into_iter().map(|r| r.obj).collect())
}

/// Applies Flux's overlay to objects rendered elsewhere (the kubectl renderer).
pub fn apply_overlay(files: &dyn Files, objects: Vec<Object>, overlay: &FluxOverlay, dir: &str) -> Result<Vec<Object>> {
    let b = Builder { files, stack: vec![], notes: vec![], extra_refs: vec![], parsed: Default::default() };
    let kust = Kust {
        file: format!("{}/kustomization.yaml", files::display_dir(dir)),
        dir: dir.into(),
        text: String::new(),
        v: Map::new(),
    };
    let mut res: Vec<Res> = objects.into_iter().map(Res::new).collect();
    b.run_transformers(&kust, &mut res, Some(overlay))?;
    finish(&mut res);
    Ok(res.into_iter().map(|r| r.obj).collect())
}

fn missing_kustomization(dir: &str) -> Error {
    Error::in_file(
        ErrorKind::MissingPath,
        files::display_dir(dir),
        "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory",
    )
}

/// Hash suffixes on generated names, then every reference to a renamed object follows.
fn finish(res: &mut [Res]) {
    finish_with(res, &[]);
}

/// `finish` with extra name references from `configurations:` files.
fn finish_with(res: &mut [Res], extra: &[(String, Option<String>, String)]) {
    for r in res.iter_mut().filter(|r| r.needs_hash) {
        r.remember_name();
        let hash = generate::name_hash(&r.obj.value);
        let name = format!("{}-{hash}", r.obj.name());
        r.obj.set_name(&name);
    }
    let renamed: Vec<(String, String, Vec<String>, String)> = res
        .iter()
        .filter(|r| r.previous.iter().any(|(_, n)| n != r.obj.name()))
        .map(|r| {
            let olds = r.previous.iter().map(|(_, n)| n.clone()).filter(|n| n != r.obj.name()).collect();
            (r.obj.kind().to_string(), r.obj.namespace().unwrap_or("").to_string(), olds, r.obj.name().to_string())
        })
        .collect();
    if renamed.is_empty() {
        return;
    }
    let mut refs: Vec<(String, Option<String>, String)> = transform::name_refs().to_vec();
    refs.extend(extra.iter().cloned());
    for (kind, ns, olds, new) in &renamed {
        for referrer in res.iter_mut() {
            if !ns.is_empty() && referrer.obj.namespace().is_some_and(|n| n != ns) {
                continue;
            }
            for old in olds {
                transform::fix_reference(&mut referrer.obj.value, kind, old, new, &refs);
            }
        }
    }
}

/// How deep kustomizations may include one another.
pub const MAX_NESTING: usize = 256;

struct Builder<'a> {
    files: &'a dyn Files,
    /// Directories being built, outermost first: a repeat is a cycle.
    stack: Vec<String>,
    notes: Vec<Note>,
    /// Name references declared by `configurations:` files.
    extra_refs: Vec<(String, Option<String>, String)>,
    /// Files a generated kustomization already parsed to check them: the build takes
    /// them from here instead of parsing them again (a 2.6 MB file is 0.5 s of parsing).
    parsed: std::cell::RefCell<BTreeMap<String, Vec<Object>>>,
}

impl Builder<'_> {
    fn find_kustomization(&self, dir: &str) -> Result<Option<Kust>> {
        let found: Vec<&str> = KUSTOMIZATION_FILES
            .iter()
            .copied()
            .filter(|n| self.files.kind(&join_file(dir, n)) == Some(EntryKind::File))
            .collect();
        let Some(name) = found.first() else { return Ok(None) };
        if found.len() > 1 {
            return Err(Error::in_file(
                ErrorKind::Render,
                files::display_dir(dir),
                format!("found multiple kustomization files ({}); kustomize refuses to choose", found.join(", ")),
            ));
        }
        let file = join_file(dir, name);
        let text = self.files.read(&file)?;
        let doc = yaml::parse_one(&file, &text)?;
        let v = match doc.value {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                return Err(Error::at(
                    ErrorKind::NotObject,
                    &Loc::new(&file, doc.line),
                    "a kustomization must be a YAML mapping",
                ));
            }
        };
        // kustomize compares what it read with an empty Kustomization: type meta alone, or
        // fields left null (`resources:` with nothing under it), is "empty" and refused.
        if v.iter().all(|(key, val)| val.is_null() || key == "apiVersion" || key == "kind") {
            return Err(Error::at(ErrorKind::Render, &Loc::new(&file, doc.line), "kustomization.yaml is empty"));
        }
        let k = Kust { file, dir: dir.to_string(), text, v };
        for field in k.v.keys() {
            if NOT_YET.contains(&field.as_str()) {
                return Err(Error::at(
                    ErrorKind::Unsupported,
                    &k.loc(field),
                    format!(
                        "kustomize field '{field}' is not supported by the native renderer yet; run with --renderer kubectl"
                    ),
                ));
            }
            if !SUPPORTED.contains(&field.as_str()) {
                return Err(Error::at(
                    ErrorKind::Render,
                    &k.loc(field),
                    format!("unknown kustomization field '{field}'"),
                ));
            }
        }
        Ok(Some(k))
    }

    /// What Flux generates for a `spec.path` without a kustomization file: every `.yaml`
    /// and `.yml` file below it, and whole any subdirectory that has its own
    /// kustomization file.
    fn generated_kustomization(&mut self, dir: &str) -> Result<Kust> {
        match self.files.kind(dir) {
            Some(EntryKind::Dir) => {}
            Some(EntryKind::File) => {
                return Err(Error::in_file(
                    ErrorKind::MissingPath,
                    dir,
                    "spec.path must be a directory, this is a file",
                ));
            }
            None => {
                return Err(Error::in_file(
                    ErrorKind::MissingPath,
                    files::display_dir(dir),
                    "directory does not exist",
                ));
            }
        }
        let mut resources = vec![];
        let mut seen = vec![];
        let templates = std::cell::RefCell::new(vec![]);
        self.scan(dir, dir, &mut resources, &mut seen, &templates)?;
        for t in templates.into_inner() {
            self.notes.push(Note {
                rule: "template-ignored",
                error: false,
                loc: Loc::new(&t, 1),
                message: format!("{t} is a template: Flux does not render templates, so it is not applied (render it before committing, or list the output)"),
            });
        }
        // Flux refuses the whole build when a listed file is not Kubernetes YAML (a Helm
        // values file, a helmfile); report it at the file and keep analysing the rest.
        let mut keep = vec![];
        for r in resources {
            let path = join_file(dir, &r);
            if self.files.kind(&path) == Some(EntryKind::File) {
                let text = self.files.read(&path)?;
                let parsed = objects_from_text(&path, &text).map(|objects| {
                    self.parsed.borrow_mut().insert(path.clone(), objects);
                });
                if let Err(e) = parsed {
                    // Broken YAML is broken input; valid YAML that is not Kubernetes
                    // (values files, helmfiles) is what Flux trips over.
                    if matches!(e.kind, ErrorKind::Yaml | ErrorKind::TooLarge) {
                        return Err(e);
                    }
                    let loc = Loc::new(&path, e.line.unwrap_or(1));
                    self.notes.push(Note {
                        rule: "flux-build-failed",
                        error: true,
                        loc,
                        message: format!(
                            "{} has no kustomization.yaml, so Flux lists every YAML file in it, and fails the whole build: failed to decode Kubernetes YAML from {path}: {}",
                            files::display_dir(dir),
                            e.message
                        ),
                    });
                    continue;
                }
            }
            keep.push(r);
        }
        let resources = keep;
        let mut v = Map::new();
        v.insert("resources".into(), Value::Array(resources.into_iter().map(Value::String).collect()));
        Ok(Kust {
            file: format!("{}/kustomization.yaml (generated by Flux)", files::display_dir(dir)),
            dir: dir.into(),
            text: String::new(),
            v,
        })
    }

    fn scan(
        &self,
        root: &str,
        dir: &str,
        out: &mut Vec<String>,
        seen: &mut Vec<String>,
        templates: &std::cell::RefCell<Vec<String>>,
    ) -> Result<()> {
        let id = self.files.identity(dir);
        if seen.contains(&id) {
            return Err(Error::in_file(
                ErrorKind::SymlinkLoop,
                dir,
                "symlink loop: this directory leads back to one already being read",
            ));
        }
        seen.push(id);
        for (name, kind) in self.files.list(dir)? {
            let path = join_file(dir, &name);
            let rel = path.strip_prefix(root).map(|p| p.trim_start_matches('/')).unwrap_or(&path).to_string();
            match kind {
                EntryKind::Dir => {
                    if name.starts_with('.') {
                        continue;
                    }
                    if KUSTOMIZATION_FILES.iter().any(|k| self.files.kind(&join_file(&path, k)).is_some()) {
                        out.push(rel);
                    } else {
                        self.scan(root, &path, out, seen, templates)?;
                    }
                }
                EntryKind::File => {
                    if name.ends_with(".yaml") || name.ends_with(".yml") {
                        out.push(rel);
                    } else if name.ends_with(".j2") || name.ends_with(".tmpl") || name.ends_with(".gotmpl") {
                        templates.borrow_mut().push(path.clone());
                    }
                }
            }
        }
        seen.pop();
        Ok(())
    }

    fn build_target(&mut self, k: &Kust, mut acc: Vec<Res>, overlay: Option<&FluxOverlay>) -> Result<Vec<Res>> {
        let id = self.files.identity(&k.dir);
        if self.stack.contains(&id) {
            let mut chain = self.stack.clone();
            chain.push(id);
            return Err(Error::in_file(
                ErrorKind::ResourceCycle,
                &k.file,
                format!("kustomization includes itself: {}", chain.join(" -> ")),
            ));
        }
        // Real repos nest a few levels; thousands overflow the thread's stack (a crash with
        // no file named). Refuse well before, naming both ends of the chain.
        if self.stack.len() >= MAX_NESTING {
            return Err(Error::in_file(
                ErrorKind::ResourceCycle,
                &k.file,
                format!(
                    "kustomizations nested more than {MAX_NESTING} deep ({} -> ... -> {}): refused",
                    self.stack.first().map(String::as_str).unwrap_or(""),
                    k.dir
                ),
            ));
        }
        self.stack.push(id);
        let r = self.build_target_inner(k, &mut acc, overlay);
        self.stack.pop();
        r.map(|_| acc)
    }

    fn build_target_inner(&mut self, k: &Kust, acc: &mut Vec<Res>, overlay: Option<&FluxOverlay>) -> Result<()> {
        for c in k.strings("configurations")? {
            self.load_configuration(k, &c)?;
        }
        let mut refs = k.strings("resources")?;
        refs.extend(k.strings("bases")?);
        let mut seen: std::collections::HashMap<crate::object::ResId, usize> =
            acc.iter().enumerate().map(|(i, r)| (r.obj.id(), i)).collect();
        for r in &refs {
            let loaded = self.load_resource(k, r)?;
            for res in loaded {
                add_unique(acc, &mut seen, res, k)?;
            }
        }
        for c in k.strings("components")? {
            self.apply_component(k, &c, acc)?;
        }
        self.run_generators(k, acc)?;
        self.run_transformers(k, acc, overlay)
    }

    fn load_resource(&mut self, k: &Kust, reference: &str) -> Result<Vec<Res>> {
        if is_remote(reference) {
            self.notes.push(Note {
                rule: "remote-resource",
                error: false,
                loc: k.loc("resources"),
                message: format!("remote resource '{reference}' cannot be analysed offline: its objects are not in the plan (vendor it into the repository to check it)"),
            });
            return Ok(vec![]);
        }
        let path =
            files::join(&k.dir, reference).map_err(|m| Error::at(ErrorKind::MissingPath, &k.loc("resources"), m))?;
        match self.files.kind(&path) {
            Some(EntryKind::File) => self.load_file(&path),
            Some(EntryKind::Dir) => {
                let sub = self.find_kustomization(&path)?.ok_or_else(|| {
                    Error::at(
                        ErrorKind::MissingPath,
                        &k.loc("resources"),
                        format!("resource '{reference}' is a directory without a kustomization file"),
                    )
                })?;
                if sub.str("kind") == Some("Component") {
                    return Err(sub.err(
                        "kind",
                        format!("'{reference}' is a Component; list it under 'components', not 'resources'"),
                    ));
                }
                self.build_target(&sub, vec![], None)
            }
            None => Err(Error::at(
                ErrorKind::MissingPath,
                &k.loc("resources"),
                format!("resource '{reference}' does not exist ({})", files::display_dir(&path)),
            )),
        }
    }

    /// A `configurations:` file: transformer customisations. `nameReference` is
    /// implemented (the common use: HelmRelease valuesFrom, cert-manager issuers ...).
    fn load_configuration(&mut self, k: &Kust, reference: &str) -> Result<()> {
        let path = files::join(&k.dir, reference).map_err(|m| k.err("configurations", m))?;
        let text = self.files.read(&path).map_err(|e| e.context(format!("configuration listed in {}", k.file)))?;
        let doc = yaml::parse_one(&path, &text)?;
        for (key, v) in doc.value.as_object().into_iter().flatten() {
            match key.as_str() {
                "nameReference" => {
                    for nr in v.as_array().into_iter().flatten() {
                        let kind = nr.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
                        for fs in nr.get("fieldSpecs").and_then(Value::as_array).into_iter().flatten() {
                            let path = fs.get("path").and_then(Value::as_str).unwrap_or("").replace("\\/", "/");
                            let referrer = fs.get("kind").and_then(Value::as_str).map(str::to_string);
                            self.extra_refs.push((kind.clone(), referrer, path));
                        }
                    }
                }
                other => {
                    return Err(Error::at(
                        ErrorKind::Unsupported,
                        &Loc::new(&path, doc.line),
                        format!(
                            "configurations '{other}' is not supported by the native renderer yet (nameReference is); run with --renderer kubectl"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn load_file(&self, path: &str) -> Result<Vec<Res>> {
        if let Some(objects) = self.parsed.borrow_mut().remove(path) {
            return Ok(objects.into_iter().map(Res::new).collect());
        }
        let text = self.files.read(path)?;
        Ok(objects_from_text(path, &text)?.into_iter().map(Res::new).collect())
    }

    fn apply_component(&mut self, k: &Kust, reference: &str, acc: &mut Vec<Res>) -> Result<()> {
        let path =
            files::join(&k.dir, reference).map_err(|m| Error::at(ErrorKind::MissingPath, &k.loc("components"), m))?;
        let comp = self.find_kustomization(&path)?.ok_or_else(|| {
            Error::at(
                ErrorKind::MissingPath,
                &k.loc("components"),
                format!("component '{reference}' has no kustomization file"),
            )
        })?;
        if comp.str("kind") != Some("Component") {
            return Err(
                comp.err("kind", format!("'{reference}' is listed under 'components' but its kind is not Component"))
            );
        }
        let taken = std::mem::take(acc);
        *acc = self.build_target(&comp, taken, None)?;
        Ok(())
    }

    fn run_generators(&self, k: &Kust, acc: &mut Vec<Res>) -> Result<()> {
        let opts = k.map("generatorOptions").cloned().unwrap_or_default();
        for (field, kind) in [("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")] {
            for g in k.list(field) {
                let res = self.generate(k, field, kind, g, &opts)?;
                let behavior = g.get("behavior").and_then(Value::as_str).unwrap_or("create");
                let ns = res.obj.namespace().unwrap_or("").to_string();
                let pos = acc.iter().position(|r| {
                    r.obj.kind() == kind && r.obj.name() == res.obj.name() && r.obj.namespace().unwrap_or("") == ns
                });
                match (behavior, pos) {
                    ("create", None) => acc.push(res),
                    ("create", Some(_)) => {
                        return Err(k.err(
                            field,
                            format!("{kind} '{}' already exists; use behavior: merge or replace", res.obj.name()),
                        ));
                    }
                    ("merge", Some(i)) => merge_generated(&mut acc[i], res),
                    ("replace", Some(i)) => {
                        let prev = acc[i].previous.clone();
                        acc[i] = Res { previous: prev, ..res };
                    }
                    ("merge" | "replace", None) => {
                        return Err(k.err(
                            field,
                            format!("{kind} '{}' to {behavior} does not exist in the resources", res.obj.name()),
                        ));
                    }
                    (other, _) => return Err(k.err(field, format!("unknown generator behavior '{other}'"))),
                }
            }
        }
        Ok(())
    }

    fn generate(&self, k: &Kust, field: &str, kind: &str, g: &Value, opts: &Map<String, Value>) -> Result<Res> {
        let name = g
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| k.err(field, format!("a {field} entry has no name")))?;
        let mut data: Map<String, Value> = Map::new();
        let mut put = |key: String, val: String| {
            data.insert(key, Value::String(val));
        };
        for lit in g.get("literals").and_then(Value::as_array).into_iter().flatten() {
            let (key, val) = generate::parse_literal(lit.as_str().unwrap_or("")).map_err(|m| k.err(field, m))?;
            put(key, val);
        }
        let mut envs: Vec<&str> =
            g.get("envs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if let Some(e) = g.get("env").and_then(Value::as_str) {
            envs.push(e);
        }
        for env in envs {
            let path = files::join(&k.dir, env).map_err(|m| k.err(field, m))?;
            let text =
                self.files.read(&path).map_err(|e| e.context(format!("env file of {kind} '{name}' in {}", k.file)))?;
            for (key, val) in
                generate::parse_env_file(&text).map_err(|m| Error::in_file(ErrorKind::Render, &path, m))?
            {
                put(key, val);
            }
        }
        for f in g.get("files").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            let (key, rel) = match f.split_once('=') {
                Some((key, rel)) => (key.to_string(), rel),
                None => (files::file_name(f).to_string(), f),
            };
            let path = files::join(&k.dir, rel).map_err(|m| k.err(field, m))?;
            let text =
                self.files.read(&path).map_err(|e| e.context(format!("file of {kind} '{name}' in {}", k.file)))?;
            put(key, text);
        }
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), "v1".into());
        obj.insert("kind".into(), kind.into());
        let mut md = Map::new();
        md.insert("name".into(), name.into());
        if let Some(ns) = g.get("namespace").and_then(Value::as_str) {
            md.insert("namespace".into(), ns.into());
        }
        let local = g.get("options").and_then(Value::as_object);
        for (key, meta) in [("labels", "labels"), ("annotations", "annotations")] {
            let mut m = Map::new();
            for src in [Some(opts), local].into_iter().flatten() {
                if let Some(x) = src.get(key).and_then(Value::as_object) {
                    m.extend(x.iter().map(|(a, b)| (a.clone(), Value::String(transform::scalar_string(b)))));
                }
            }
            if !m.is_empty() {
                md.insert(meta.into(), Value::Object(m));
            }
        }
        obj.insert("metadata".into(), Value::Object(md));
        if kind == "Secret" {
            let encoded = data
                .into_iter()
                .map(|(key, v)| (key, Value::String(generate::base64(v.as_str().unwrap_or("").as_bytes()))))
                .collect();
            obj.insert("type".into(), g.get("type").cloned().unwrap_or_else(|| "Opaque".into()));
            obj.insert("data".into(), Value::Object(encoded));
        } else if !data.is_empty() {
            obj.insert("data".into(), Value::Object(data));
        }
        let flag = |src: Option<&Map<String, Value>>, key: &str| src.and_then(|m| m.get(key)).and_then(Value::as_bool);
        if flag(local, "immutable").or(flag(Some(opts), "immutable")) == Some(true) {
            obj.insert("immutable".into(), true.into());
        }
        let disable =
            flag(local, "disableNameSuffixHash").or(flag(Some(opts), "disableNameSuffixHash")).unwrap_or(false);
        let mut res = Res::new(Object::new(Value::Object(obj), k.loc(field)));
        res.needs_hash = !disable;
        Ok(res)
    }

    fn run_transformers(&self, k: &Kust, acc: &mut [Res], overlay: Option<&FluxOverlay>) -> Result<()> {
        // patchesStrategicMerge
        for p in k.list("patchesStrategicMerge") {
            let docs = self.patch_docs(k, "patchesStrategicMerge", p)?;
            for (doc, src) in docs {
                apply_smp(acc, &doc, None, &src)?;
            }
        }
        // patches (kustomization's, then Flux's spec.patches appended to them)
        let mut patches: Vec<(Value, Option<&FluxOverlay>)> =
            k.list("patches").iter().map(|p| (p.clone(), None)).collect();
        if let Some(o) = overlay {
            patches.extend(o.patches.iter().map(|p| (p.clone(), Some(o))));
        }
        for (p, from_flux) in &patches {
            let field = "patches";
            let target = p
                .get("target")
                .filter(|t| !t.is_null())
                .map(Selector::parse)
                .transpose()
                .map_err(|m| k.err(field, m))?;
            let docs = match from_flux {
                Some(o) => {
                    let text = p.get("patch").and_then(Value::as_str).unwrap_or("");
                    let loc = o.origin.clone().unwrap_or_else(|| k.loc(field));
                    yaml::parse_docs(&loc.file, text)
                        .map_err(|e| e.context("in spec.patches"))?
                        .into_iter()
                        .map(|d| (d.value, loc.clone()))
                        .collect()
                }
                None => self.patch_docs(k, field, p)?,
            };
            for (doc, src) in docs {
                if let Some(ops) = doc.as_array() {
                    let t = target
                        .as_ref()
                        .ok_or_else(|| Error::at(ErrorKind::Render, &src, "a JSON 6902 patch needs a target"))?;
                    apply_json6902(acc, ops, t, &src)?;
                } else {
                    apply_smp(acc, &doc, target.as_ref(), &src)?;
                }
            }
        }
        // namespace
        let ns = overlay.and_then(|o| o.target_namespace.as_deref()).or(k.str("namespace"));
        if let Some(ns) = ns {
            for r in acc.iter_mut() {
                r.remember_name();
                let old = r.obj.namespace().map(str::to_string);
                let cs = is_builtin_cluster_scoped(r.obj.group(), r.obj.kind());
                transform::set_namespace(&mut r.obj.value, ns, cs, old.as_deref());
                // kustomize's namespace transformer also renames Namespace objects to it.
                if r.obj.kind() == "Namespace" && r.obj.group().is_empty() {
                    r.obj.set_name(ns);
                }
            }
        }
        // namePrefix / nameSuffix (Flux's spec values go on top of the file's)
        let prefix = [k.str("namePrefix"), overlay.and_then(|o| o.name_prefix.as_deref())];
        let suffix = [k.str("nameSuffix"), overlay.and_then(|o| o.name_suffix.as_deref())];
        for (p, s) in prefix.iter().zip(suffix.iter()) {
            if p.is_none() && s.is_none() {
                continue;
            }
            // kustomize never renames CRDs (their name is fixed by group and plural) nor
            // Namespaces.
            for r in acc.iter_mut().filter(|r| !matches!(r.obj.kind(), "CustomResourceDefinition" | "Namespace")) {
                r.remember_name();
                let name = format!("{}{}{}", p.unwrap_or(""), r.obj.name(), s.unwrap_or(""));
                r.obj.set_name(&name);
            }
        }
        // labels
        if let Some(m) = k.map("commonLabels") {
            for r in acc.iter_mut() {
                transform::add_pairs(&mut r.obj.value, m, &transform::common_label_specs());
            }
        }
        for l in k.list("labels") {
            let pairs = l.get("pairs").and_then(Value::as_object).cloned().unwrap_or_default();
            let selectors = l.get("includeSelectors").and_then(Value::as_bool).unwrap_or(false);
            let templates = l.get("includeTemplates").and_then(Value::as_bool).unwrap_or(false);
            if l.get("fields").is_some() {
                return Err(Error::at(
                    ErrorKind::Unsupported,
                    &k.loc("labels"),
                    "labels[].fields is not supported by the native renderer yet; run with --renderer kubectl",
                ));
            }
            let specs = if selectors {
                transform::common_label_specs()
            } else if templates {
                transform::template_label_specs()
            } else {
                transform::metadata_label_specs()
            };
            for r in acc.iter_mut() {
                transform::add_pairs(&mut r.obj.value, &pairs, &specs);
            }
        }
        if let Some(o) = overlay.filter(|o| !o.common_labels.is_empty()) {
            for r in acc.iter_mut() {
                transform::add_pairs(&mut r.obj.value, &o.common_labels, &transform::metadata_label_specs());
            }
        }
        // annotations
        let mut ann = k.map("commonAnnotations").cloned().unwrap_or_default();
        if let Some(o) = overlay {
            ann.extend(o.common_annotations.clone());
        }
        if !ann.is_empty() {
            for r in acc.iter_mut() {
                transform::add_pairs(&mut r.obj.value, &ann, &transform::annotation_specs());
            }
        }
        // patchesJson6902
        for p in k.list("patchesJson6902") {
            let field = "patchesJson6902";
            let t = p.get("target").ok_or_else(|| k.err(field, "a patchesJson6902 entry needs a target"))?;
            let target = Selector::parse(t).map_err(|m| k.err(field, m))?;
            for (doc, src) in self.patch_docs(k, field, p)? {
                let ops = doc.as_array().ok_or_else(|| {
                    Error::at(ErrorKind::Render, &src, "a JSON 6902 patch must be a list of operations")
                })?;
                apply_json6902(acc, ops, &target, &src)?;
            }
        }
        // replicas
        for rep in k.list("replicas") {
            let name = rep.get("name").and_then(Value::as_str).unwrap_or("");
            let count = rep
                .get("count")
                .cloned()
                .ok_or_else(|| k.err("replicas", format!("replicas entry '{name}' has no count")))?;
            for r in acc.iter_mut().filter(|r| r.had_name(name)) {
                if matches!(r.obj.kind(), "Deployment" | "ReplicationController" | "ReplicaSet" | "StatefulSet")
                    && let Some(spec) = crate::object::map_at_mut(&mut r.obj.value, &["spec"], true)
                {
                    spec.insert("replicas".into(), count.clone());
                }
            }
        }
        // images
        let mut rules: Vec<ImageRule> = k
            .list("images")
            .iter()
            .map(|i| ImageRule {
                name: i.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                new_name: i.get("newName").and_then(Value::as_str).map(str::to_string),
                new_tag: i.get("newTag").map(transform::scalar_string),
                digest: i.get("digest").and_then(Value::as_str).map(str::to_string),
            })
            .collect();
        if let Some(o) = overlay {
            rules.extend(o.images.iter().cloned());
        }
        if !rules.is_empty() {
            for r in acc.iter_mut() {
                transform::set_images(&mut r.obj.value, &rules);
            }
        }
        // replacements
        for entry in k.list("replacements") {
            for (rep, loc) in self.replacement_entries(k, entry)? {
                apply_replacement(acc, &rep, &loc)?;
            }
        }
        Ok(())
    }

    /// A `replacements:` entry: inline, or `path:` to a file holding one replacement or a
    /// top-level list of them.
    fn replacement_entries(&self, k: &Kust, entry: &Value) -> Result<Vec<(Value, Loc)>> {
        match entry.get("path").and_then(Value::as_str) {
            Some(p) => {
                let path = files::join(&k.dir, p).map_err(|m| k.err("replacements", m))?;
                let text =
                    self.files.read(&path).map_err(|e| e.context(format!("replacement listed in {}", k.file)))?;
                let doc = yaml::parse_one(&path, &text)?;
                let loc = Loc::new(&path, doc.line);
                Ok(match doc.value {
                    Value::Array(a) => a.into_iter().map(|v| (v, loc.clone())).collect(),
                    v => vec![(v, loc)],
                })
            }
            None => Ok(vec![(entry.clone(), k.loc("replacements"))]),
        }
    }

    /// The documents of one patch entry (`path:` file or inline `patch:`), each with the
    /// place it came from.
    fn patch_docs(&self, k: &Kust, field: &str, entry: &Value) -> Result<Vec<(Value, Loc)>> {
        let (file, text) = match entry {
            Value::String(s)
                if field == "patchesStrategicMerge" && !s.contains('\n') && !s.trim_start().starts_with('{') =>
            {
                let path = files::join(&k.dir, s).map_err(|m| k.err(field, m))?;
                let text = self.files.read(&path).map_err(|e| e.context(format!("patch listed in {}", k.file)))?;
                (path, text)
            }
            Value::String(s) => (k.file.clone(), s.clone()),
            Value::Object(m) => match (m.get("path").and_then(Value::as_str), m.get("patch").and_then(Value::as_str)) {
                (Some(p), _) => {
                    let path = files::join(&k.dir, p).map_err(|m| k.err(field, m))?;
                    if self.files.kind(&path) != Some(EntryKind::File) {
                        return Err(k
                            .err(field, format!("patch file '{p}' does not exist"))
                            .with_kind(ErrorKind::MissingPath));
                    }
                    let text = self.files.read(&path)?;
                    (path, text)
                }
                (None, Some(p)) => (k.file.clone(), p.to_string()),
                (None, None) => return Err(k.err(field, "a patch entry needs 'path' or 'patch'")),
            },
            _ => return Err(k.err(field, format!("unexpected {field} entry"))),
        };
        let base_line = if file == k.file { k.line_of(field) } else { 0 };
        Ok(yaml::parse_docs(&file, &text)?
            .into_iter()
            .map(|d| {
                let line = if base_line > 0 { base_line } else { d.line };
                (d.value, Loc::new(&file, line))
            })
            .collect())
    }
}

impl Error {
    fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

fn join_file(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

fn is_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("github.com/")
        || reference.starts_with("gitlab.com/")
        || reference.starts_with("bitbucket.org/")
        || reference.starts_with("git@")
        || reference.contains("?ref=")
}

/// Splits a YAML stream into objects, expanding `kind: List`.
pub fn objects_from_text(path: &str, text: &str) -> Result<Vec<Object>> {
    let mut out = vec![];
    for d in yaml::parse_docs(path, text)? {
        let loc = Loc::new(path, d.line);
        let Value::Object(m) = &d.value else {
            return Err(Error::at(
                ErrorKind::NotObject,
                &loc,
                "expected a Kubernetes object (a YAML mapping) but found a scalar or list",
            ));
        };
        if m.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::at(ErrorKind::BadObject, &loc, "object has no 'kind'"));
        }
        if m.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) && m.get("items").is_some() {
            for item in m["items"].as_array().into_iter().flatten() {
                if item.is_object() {
                    out.push(Object::new(item.clone(), loc.clone()));
                }
            }
            continue;
        }
        if m.get("apiVersion").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::at(ErrorKind::BadObject, &loc, "object has no 'apiVersion'"));
        }
        if m.get("metadata").and_then(|md| md.get("name")).and_then(Value::as_str).is_none_or(str::is_empty)
            && m.get("metadata").and_then(|md| md.get("generateName")).is_none()
        {
            return Err(Error::at(
                ErrorKind::BadObject,
                &loc,
                format!("{} has no metadata.name", m["kind"].as_str().unwrap_or("")),
            ));
        }
        out.push(Object::new(d.value, loc));
    }
    Ok(out)
}

fn add_unique(
    acc: &mut Vec<Res>,
    seen: &mut std::collections::HashMap<crate::object::ResId, usize>,
    res: Res,
    k: &Kust,
) -> Result<()> {
    match seen.entry(res.obj.id()) {
        std::collections::hash_map::Entry::Occupied(e) => Err(Error::at(
            ErrorKind::Render,
            &res.obj.origin,
            format!(
                "{} is defined twice in {} (first at {}); kustomize refuses duplicate objects",
                res.obj.display_id(),
                k.file,
                acc[*e.get()].obj.origin
            ),
        )),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(acc.len());
            acc.push(res);
            Ok(())
        }
    }
}

fn merge_generated(into: &mut Res, from: Res) {
    for field in ["data", "binaryData"] {
        if let Some(m) = from.obj.value.get(field).and_then(Value::as_object) {
            let target = crate::object::map_at_mut(&mut into.obj.value, &[field], true).unwrap();
            target.extend(m.iter().map(|(a, b)| (a.clone(), b.clone())));
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(m) = from.obj.value.pointer(&format!("/metadata/{field}")).and_then(Value::as_object) {
            let target = crate::object::map_at_mut(&mut into.obj.value, &["metadata", field], true).unwrap();
            target.extend(m.iter().map(|(a, b)| (a.clone(), b.clone())));
        }
    }
    // A merge keeps a base that disabled the hash; it can also disable it itself.
    into.needs_hash = from.needs_hash && into.needs_hash;
}

/// A patch target: kustomize's selector, with `name`/`namespace` as anchored regexes.
#[derive(Debug)]
pub struct Selector {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<regex::Regex>,
    namespace: Option<regex::Regex>,
    label_selector: Option<String>,
    annotation_selector: Option<String>,
}

impl Selector {
    pub fn parse(v: &Value) -> std::result::Result<Self, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let re = |k: &str| -> std::result::Result<Option<regex::Regex>, String> {
            s(k).map(|p| {
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("target {k} '{p}' is not a valid regex: {e}"))
            })
            .transpose()
        };
        Ok(Selector {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
            name: re("name")?,
            namespace: re("namespace")?,
            label_selector: s("labelSelector"),
            annotation_selector: s("annotationSelector"),
        })
    }

    fn matches(&self, r: &Res) -> bool {
        let (g, v) = split_api_version(r.obj.api_version());
        if self.group.as_deref().is_some_and(|x| x != g) || self.version.as_deref().is_some_and(|x| x != v) {
            return false;
        }
        if self.kind.as_deref().is_some_and(|x| x != r.obj.kind()) {
            return false;
        }
        if let Some(re) = &self.name
            && !(re.is_match(r.obj.name()) || r.previous.iter().any(|(_, n)| re.is_match(n)))
        {
            return false;
        }
        if let Some(re) = &self.namespace {
            let cur = r.obj.namespace().unwrap_or("");
            if !(re.is_match(cur) || r.previous.iter().any(|(n, _)| re.is_match(n))) {
                return false;
            }
        }
        let meta = |field: &str| {
            r.obj.value.pointer(&format!("/metadata/{field}")).and_then(Value::as_object).cloned().unwrap_or_default()
        };
        if let Some(sel) = &self.label_selector
            && !crate::labels::selector_matches(sel, &meta("labels"))
        {
            return false;
        }
        if let Some(sel) = &self.annotation_selector
            && !crate::labels::selector_matches(sel, &meta("annotations"))
        {
            return false;
        }
        true
    }
}

fn apply_replacement(acc: &mut [Res], rep: &Value, loc: &Loc) -> Result<()> {
    let src = rep.get("source").ok_or_else(|| Error::at(ErrorKind::Render, loc, "a replacement needs a source"))?;
    let sel = Selector::parse(src).map_err(|m| Error::at(ErrorKind::Render, loc, m))?;
    let field = replace::parse_path(src.get("fieldPath").and_then(Value::as_str).unwrap_or("metadata.name"));
    let matches: Vec<usize> = (0..acc.len()).filter(|&i| sel.matches(&acc[i])).collect();
    let i = match matches.as_slice() {
        [i] => *i,
        [] => {
            return Err(Error::at(
                ErrorKind::Render,
                loc,
                format!("replacement source {} matches no resource", serde_json::to_string(src).unwrap_or_default()),
            ));
        }
        _ => {
            return Err(Error::at(
                ErrorKind::Render,
                loc,
                format!(
                    "replacement source {} matches {} resources; it must match one",
                    serde_json::to_string(src).unwrap_or_default(),
                    matches.len()
                ),
            ));
        }
    };
    let value = replace::get(&mut acc[i].obj.value, &field).cloned().ok_or_else(|| {
        Error::at(
            ErrorKind::Render,
            loc,
            format!("replacement source field '{}' does not exist in {}", field.join("."), acc[i].obj.display_id()),
        )
    })?;
    let value = replace::pick(value, src.get("options"));
    for t in rep.get("targets").and_then(Value::as_array).into_iter().flatten() {
        let select =
            t.get("select").map(Selector::parse).transpose().map_err(|m| Error::at(ErrorKind::Render, loc, m))?;
        let rejects: Vec<Selector> = t
            .get("reject")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(Selector::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| Error::at(ErrorKind::Render, loc, m))?;
        let opts = t.get("options");
        let create = opts.and_then(|o| o.get("create")).and_then(Value::as_bool).unwrap_or(false);
        for r in acc.iter_mut() {
            if select.as_ref().is_some_and(|s| !s.matches(r)) || rejects.iter().any(|s| s.matches(r)) {
                continue;
            }
            for fp in t.get("fieldPaths").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                let path = replace::parse_path(fp);
                let existing = replace::get(&mut r.obj.value, &path).cloned();
                if existing.is_none() && !create {
                    return Err(Error::at(
                        ErrorKind::Render,
                        loc,
                        format!(
                            "replacement target field '{fp}' does not exist in {} (set options.create to add it)",
                            r.obj.display_id()
                        ),
                    ));
                }
                let v = replace::splice(existing.as_ref(), value.clone(), opts);
                replace::set(&mut r.obj.value, &path, v, create);
            }
        }
    }
    Ok(())
}

fn apply_json6902(acc: &mut [Res], ops: &[Value], target: &Selector, src: &Loc) -> Result<()> {
    for r in acc.iter_mut().filter(|r| target.matches(r)) {
        patch::json_patch(&mut r.obj.value, ops)
            .map_err(|m| Error::at(ErrorKind::Render, src, format!("JSON patch on {}: {m}", r.obj.display_id())))?;
    }
    Ok(())
}

fn apply_smp(acc: &mut [Res], doc: &Value, target: Option<&Selector>, src: &Loc) -> Result<()> {
    if !doc.is_object() {
        return Err(Error::at(ErrorKind::Render, src, "a strategic merge patch must be a YAML mapping"));
    }
    let mut matched = 0;
    let p_kind = doc.get("kind").and_then(Value::as_str);
    let p_name = doc.pointer("/metadata/name").and_then(Value::as_str);
    let p_ns = doc.pointer("/metadata/namespace").and_then(Value::as_str);
    let p_group = doc.get("apiVersion").and_then(Value::as_str).map(|av| split_api_version(av).0);
    for r in acc.iter_mut() {
        let hit = match target {
            Some(t) => t.matches(r),
            None => {
                p_kind == Some(r.obj.kind())
                    && p_name.is_some_and(|n| r.had_name(n))
                    && p_ns.is_none_or(|ns| r.had_namespace(ns))
                    && p_group.is_none_or(|g| g == r.obj.group())
            }
        };
        if !hit {
            continue;
        }
        matched += 1;
        let mut p = doc.clone();
        if target.is_some() {
            // With a target, the patch's own name and kind do not rename what it selects.
            if let Some(md) = p.get_mut("metadata").and_then(Value::as_object_mut) {
                md.remove("name");
                md.remove("namespace");
            }
            if let Some(m) = p.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
        }
        let builtin = crate::object::is_builtin_kind(r.obj.group(), r.obj.kind());
        let service = r.obj.kind() == "Service" && r.obj.group().is_empty();
        patch::strategic_merge(&mut r.obj.value, &p, builtin, service);
    }
    if matched == 0 && target.is_none() {
        return Err(Error::at(
            ErrorKind::Render,
            src,
            format!(
                "patch for {}/{} matches no resource; kustomize fails the build when a patch finds no target",
                p_kind.unwrap_or("?"),
                p_name.unwrap_or("?")
            ),
        ));
    }
    Ok(())
}
