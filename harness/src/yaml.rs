//! YAML in and out. Documents keep the line they start on so every object can be traced
//! back to its file and line. Scalars are typed the way kustomize's yaml.v3 reads them
//! (YAML 1.2 core: `on`/`yes` and `0755` stay strings), so the native renderer and
//! `kubectl kustomize` agree on what a manifest says.

use crate::error::{Error, ErrorKind, Result};
use serde_json::Value;

/// Files above this size are refused with a clear error instead of being parsed: a real
/// manifest (even a CRD bundle) is a few MiB; a larger file is a mistake or an artifact.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Documents in one file: the largest real bundles (CRDs, a rendered chart) hold a few
/// thousand; the scale benchmark's 10,000 Kustomizations fit.
pub const MAX_DOCUMENTS: usize = 50_000;

/// One YAML document: its value and the 1-based line its content starts on.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: Value,
    pub line: u32,
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.with_snippet = false;
    // Input size is capped by MAX_FILE_BYTES; within it, a generated Flux repo may hold
    // thousands of documents in one file. Alias and anchor limits (YAML bombs) stay.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_events = 50_000_000;
    budget.max_nodes = 20_000_000;
    o.budget = Some(budget);
    #[allow(unused_assignments)]
    {
        o.emit_comments = false;
    }
    o
}

/// Parses every non-empty document of a YAML stream. Comment-only and empty documents are
/// dropped, as kustomize and the API server drop them.
pub fn parse_docs(file: &str, text: &str) -> Result<Vec<Doc>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::in_file(
            ErrorKind::TooLarge,
            file,
            format!(
                "file is {:.1} MiB, larger than the {} MiB limit for one manifest file",
                text.len() as f64 / 1048576.0,
                MAX_FILE_BYTES / 1048576
            ),
        ));
    }
    // Counted before parsing, so a generated stream of 300,000 tiny documents is refused
    // in milliseconds instead of taking a gigabyte to build.
    let separators = text.lines().filter(|l| l.starts_with("---")).count();
    if separators > MAX_DOCUMENTS {
        return Err(Error::in_file(
            ErrorKind::TooLarge,
            file,
            format!(
                "file holds {separators} YAML documents, more than the {MAX_DOCUMENTS} allowed in one manifest file (split it, or generate fewer objects)"
            ),
        ));
    }
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_str_multiple_with_options(text, options()).map_err(|e| yaml_error(file, &e))?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .map(|d| Doc { line: d.referenced.line().max(1) as u32, value: d.value })
        .collect())
}

/// Parses exactly one document (a kustomization file, a patch); an empty file is `Null`.
pub fn parse_one(file: &str, text: &str) -> Result<Doc> {
    let mut docs = parse_docs(file, text)?;
    match docs.len() {
        0 => Ok(Doc { value: Value::Null, line: 1 }),
        1 => Ok(docs.remove(0)),
        _ => Err(Error::at(
            ErrorKind::Yaml,
            &crate::error::Loc::new(file, docs[1].line),
            "expected a single YAML document, found a second one",
        )),
    }
}

fn yaml_error(file: &str, e: &serde_saphyr::Error) -> Error {
    let mut err = Error::in_file(ErrorKind::Yaml, file, "");
    let mut msg = e.to_string();
    if let Some(loc) = e.location() {
        err.line = Some(loc.line() as u32);
        err.column = Some(loc.column() as u32);
        // The library prefixes "error: line L column C: "; we print the location ourselves.
        if let Some(i) = msg.find(&format!("column {}: ", loc.column())) {
            msg = msg[i + format!("column {}: ", loc.column()).len()..].to_string();
        }
    }
    err.message = format!("invalid YAML: {}", msg.lines().next().unwrap_or("").trim());
    err
}

/// The line of a field inside the document that starts at `doc_line` (1-based), following
/// `path` (keys, and list indexes as numbers) through block-style YAML; the deepest line
/// found on the way when the rest of the path is not written out (a field missing, a flow
/// collection, a value produced by a patch). A text scan, not a parse: it only points a
/// person at the field, it never reads values.
pub fn field_line(text: &str, doc_line: u32, path: &[String]) -> u32 {
    // Virtual lines (indent, text, line number): `- a: 1` is a dash at its column and
    // `a: 1` two columns deeper, so list items nest like maps.
    let mut v: Vec<(usize, &str, u32)> = vec![];
    for (n, l) in text.lines().enumerate().skip((doc_line.max(1) - 1) as usize) {
        let no = n as u32 + 1;
        if l.starts_with("---") && no != doc_line {
            break;
        }
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || t == "---" {
            continue;
        }
        let mut col = l.len() - t.len();
        let mut rest = t;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            v.push((col, "-", no));
            col += 2 + (r.len() - r.trim_start().len());
            rest = r.trim_start();
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            v.push((col, rest, no));
        }
    }
    let mut best = doc_line.max(1);
    let (mut from, mut to, mut parent): (usize, usize, Option<usize>) = (0, v.len(), None);
    for seg in path {
        let Some(first) = (from..to).find(|&i| parent.is_none_or(|p| v[i].0 > p)) else { return best };
        let level = v[first].0;
        let at = |i: &usize| v[*i].0 == level;
        let found = match seg.parse::<usize>() {
            Ok(n) => (from..to).filter(at).filter(|&i| v[i].1 == "-").nth(n),
            Err(_) => (from..to).filter(at).find(|&i| {
                let t = v[i].1;
                t.strip_prefix(seg.as_str())
                    .or_else(|| t.strip_prefix(&format!("\"{seg}\"")))
                    .is_some_and(|r| r.starts_with(':'))
            }),
        };
        let Some(i) = found else { return best };
        best = v[i].2;
        parent = Some(v[i].0);
        from = i + 1;
        to = (i + 1..to).find(|&j| v[j].0 <= v[i].0).unwrap_or(to);
    }
    best
}

/// Serialises a value as one YAML document (block style, keys in map order).
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
}

/// Serialises objects as a multi-document stream, the way `kustomize build` prints.
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_keep_their_start_line_and_drop_comment_only_documents() {
        let docs = parse_docs("f.yaml", "# c\n---\na: 1\n---\n# nothing\n---\n\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[1].line), (3, 8));
    }

    #[test]
    fn scalars_are_typed_like_kustomize() {
        let d = parse_one("f.yaml", "a: on\nb: yes\nc: 0755\nd: true\ne: 3\n<<: {m: 1}\n").unwrap();
        assert_eq!(d.value["a"], "on");
        assert_eq!(d.value["b"], "yes");
        assert_eq!(d.value["c"], "0755");
        assert_eq!(d.value["d"], true);
        assert_eq!(d.value["e"], 3);
        assert_eq!(d.value["m"], 1, "merge keys are expanded");
    }

    #[test]
    fn broken_yaml_names_file_line_and_column() {
        let e = parse_docs("dir/f.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Yaml);
        assert_eq!(e.location().unwrap(), "dir/f.yaml:3:2");
        assert!(e.to_string().starts_with("dir/f.yaml:3:2: invalid YAML: "), "{e}");
    }

    #[test]
    fn field_lines_follow_keys_and_list_items() {
        let text = "a: 1\n---\n# c\nkind: K\nspec:\n  interval: 5m\n  dependsOn:\n    - name: x\n    - name: y\n      namespace: n\n  sourceRef: {kind: G}\n---\nspec:\n  prune: yes\n";
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(field_line(text, 4, &p("spec.interval")), 6);
        assert_eq!(field_line(text, 4, &p("spec.dependsOn")), 7);
        assert_eq!(field_line(text, 4, &p("spec.dependsOn.1")), 9);
        assert_eq!(field_line(text, 4, &p("spec.dependsOn.1.namespace")), 10);
        assert_eq!(field_line(text, 4, &p("spec.dependsOn.0.name")), 8);
        assert_eq!(field_line(text, 4, &p("spec.sourceRef.kind")), 11, "flow style: the key's line");
        assert_eq!(field_line(text, 4, &p("spec.prune")), 5, "not in this document: the deepest line found");
        assert_eq!(field_line(text, 13, &p("spec.prune")), 14);
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = "a: b\n".repeat(MAX_FILE_BYTES / 4);
        let e = parse_docs("big.yaml", &big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("MiB"));
    }
}
