//! Flux's `postBuild` variable substitution: `${VAR}`, `${VAR:=default}`, `${VAR:-default}`,
//! `${VAR=default}` and `${VAR-default}` (defaults may themselves hold `${...}`), and `$${VAR}`
//! for a literal `${VAR}`. Only the braced form is substituted: Flux documents `$VAR` as the
//! way to keep shell variables in scripts untouched. Undefined variables become empty
//! (Flux's default, non-strict mode) and are reported.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub text: String,
    /// Variables referenced without a value and without a default.
    pub unresolved: Vec<String>,
}

pub fn substitute(input: &str, vars: &BTreeMap<String, String>) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    out.text = expand(input, vars, &mut out.unresolved, 0)?;
    out.unresolved.sort();
    out.unresolved.dedup();
    Ok(out)
}

fn expand(
    input: &str,
    vars: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > 16 {
        return Err("variable defaults nested more than 16 deep".into());
    }
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && input[i..].starts_with("$${") {
            out.push_str("${");
            i += 3;
            continue;
        }
        if b[i] == b'$' && input[i..].starts_with("${") {
            let end = matching_brace(input, i + 2).ok_or_else(|| format!("unclosed '${{' at byte {i}"))?;
            let body = &input[i + 2..end];
            out.push_str(&eval(body, vars, unresolved, depth)?);
            i = end + 1;
            continue;
        }
        let ch = input[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

fn matching_brace(s: &str, from: usize) -> Option<usize> {
    let mut depth = 1;
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f == '_' || f.is_ascii_alphabetic()) && c.all(|x| x == '_' || x.is_ascii_alphanumeric())
}

fn eval(
    body: &str,
    vars: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    let name_end = body.find(|c: char| !(c == '_' || c.is_ascii_alphanumeric())).unwrap_or(body.len());
    let name = &body[..name_end];
    if !is_name(name) {
        return Err(format!("'${{{body}}}' is not a valid variable reference"));
    }
    let rest = &body[name_end..];
    let val = vars.get(name);
    let (op, default) = [":-", ":=", "-", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(*op).map(|d| (Some(*op), d)))
        .unwrap_or((None, rest));
    match op {
        None if !rest.is_empty() => {
            // Other operators of the bash-like grammar (substring, case ...): not used by
            // Flux repos in practice; say so rather than guess.
            Err(format!("'${{{body}}}': only ${{VAR}}, ${{VAR:=default}} and ${{VAR:-default}} are supported"))
        }
        None => Ok(match val {
            Some(v) => v.clone(),
            None => {
                unresolved.push(name.to_string());
                String::new()
            }
        }),
        Some(o) => {
            // `:-`/`:=` use the default when unset or empty, `-`/`=` only when unset.
            match val {
                Some(v) if !(v.is_empty() && o.starts_with(':')) => Ok(v.clone()),
                _ => expand(default, vars, unresolved, depth + 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn forms() {
        let v = vars(&[("A", "1"), ("E", "")]);
        let r = substitute("${A} ${B:=two} ${E:-dflt} ${E-kept} ${C:=${A}x} $${A} $HOME ${MISSING}", &v).unwrap();
        assert_eq!(r.text, "1 two dflt  1x ${A} $HOME ");
        assert_eq!(r.unresolved, vec!["MISSING".to_string()]);
    }

    #[test]
    fn errors_are_clear() {
        assert!(substitute("${", &BTreeMap::new()).unwrap_err().contains("unclosed"));
        assert!(substitute("${1A}", &BTreeMap::new()).unwrap_err().contains("not a valid"));
    }
}
