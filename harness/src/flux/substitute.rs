//! Flux's `postBuild` variable substitution (fluxcd/pkg envsubst): `${VAR}`, the defaults
//! `${VAR:-x}`, `${VAR:=x}`, `${VAR=x}` (and `:+`/`:?`, which Flux treats as `:-`), length
//! `${#VAR}`, case `${VAR^}` `${VAR^^}` `${VAR,}` `${VAR,,}`, substrings `${VAR:pos[:len]}`
//! (bytes), glob trims `${VAR#p}` `${VAR##p}` `${VAR%p}` `${VAR%%p}`, and literal replaces
//! `${VAR/p/r}` `${VAR//p/r}` `${VAR/#p/r}` `${VAR/%p/r}`. Arguments may hold `${...}`.
//! `$$` is a literal `$`; only the braced form is substituted (`$VAR` stays). `${VAR-x}`,
//! `${VAR+x}` and `${VAR?x}` do not parse in Flux and fail the build, as here.
//! Undefined variables become empty (non-strict mode) and are reported.

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
        if b[i] == b'$' && input[i..].starts_with("$$") {
            out.push('$');
            i += 2;
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
    c.next().is_some_and(|f| f == '_' || f.is_alphabetic()) && c.all(|x| x == '_' || x.is_alphanumeric())
}

/// The largest char boundary at or below `i` (byte offsets as Flux's Go code uses them,
/// without splitting a character).
fn floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Glob match of the whole `s` (`*` and `?` also match `/`, `[a-z]`, `[^x]`, `\c`).
fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|k| glob(&p[1..], &s[k..])),
        Some('?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(1).position(|&c| c == ']').map(|x| x + 1) else {
                return s.first() == Some(&'[') && glob(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let (neg, class) = match p[1] {
                '^' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let mut hit = false;
            let mut k = 0;
            while k < class.len() {
                if k + 2 < class.len() && class[k + 1] == '-' {
                    hit |= class[k] <= c && c <= class[k + 2];
                    k += 3;
                } else {
                    hit |= class[k] == c;
                    k += 1;
                }
            }
            hit != neg && glob(&p[close + 1..], &s[1..])
        }
        Some(&lit) => s.first() == Some(&lit) && glob(&p[1..], &s[1..]),
    }
}

/// `#`/`##` (prefix) and `%`/`%%` (suffix) trims: only non-empty parts are tried, as Flux does.
fn trim(v: &str, pattern: &str, prefix: bool, longest: bool) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let c: Vec<char> = v.chars().collect();
    let n = c.len();
    let cut = |k: usize| -> Option<String> {
        if prefix {
            glob(&p, &c[..k]).then(|| c[k..].iter().collect())
        } else {
            glob(&p, &c[n - k..]).then(|| c[..n - k].iter().collect())
        }
    };
    let found = if longest { (1..=n).rev().find_map(cut) } else { (1..=n).find_map(cut) };
    found.unwrap_or_else(|| v.to_string())
}

/// Splits `pattern/replacement` at the first `/` not escaped by `\`; `\/` and `\\` unescape.
fn split_replace(arg: &str) -> Option<(String, String)> {
    let mut pat = String::new();
    let mut chars = arg.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('/' | '\\')) => pat.push(n),
                Some(n) => {
                    pat.push('\\');
                    pat.push(n);
                }
                None => pat.push('\\'),
            },
            '/' => {
                let rest: String = chars.collect();
                return Some((pat, rest.replace("\\/", "/").replace("\\\\", "\\")));
            }
            c => pat.push(c),
        }
    }
    None
}

fn eval(
    body: &str,
    vars: &BTreeMap<String, String>,
    unresolved: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    // `${#VAR}`: the length in bytes.
    if let Some(name) = body.strip_prefix('#') {
        if !is_name(name) {
            return Err(format!("'${{{body}}}' is not a valid variable reference"));
        }
        return Ok(lookup(name, vars, unresolved).len().to_string());
    }
    let name_end = body.find(|c: char| !(c == '_' || c.is_alphanumeric())).unwrap_or(body.len());
    let name = &body[..name_end];
    if !is_name(name) {
        return Err(format!("'${{{body}}}' is not a valid variable reference"));
    }
    let rest = &body[name_end..];
    let arg = |a: &str, unresolved: &mut Vec<String>| expand(a, vars, unresolved, depth + 1);
    for op in [":-", ":=", ":+", ":?", "="] {
        if let Some(d) = rest.strip_prefix(op) {
            // Flux's envsubst uses the default when the value is unset or empty, for every
            // one of these (it has no assignment, no alternative value and no error form).
            let d = arg(d, unresolved)?;
            return Ok(match vars.get(name) {
                Some(v) if !v.is_empty() => v.clone(),
                // Unset with an empty default (`${HOME:?}` in a script): silently gone.
                None if d.is_empty() => {
                    unresolved.push(name.to_string());
                    d
                }
                _ => d,
            });
        }
    }
    if rest.is_empty() {
        return Ok(lookup(name, vars, unresolved));
    }
    let v = lookup(name, vars, unresolved);
    let out = match rest {
        "^^" => v.to_uppercase(),
        ",," => v.to_lowercase(),
        "^" | "," => {
            let mut c = v.chars();
            match c.next() {
                Some(f) if rest == "^" => f.to_uppercase().chain(c).collect(),
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => v,
            }
        }
        r if r.starts_with(':') => {
            let a = arg(&r[1..], unresolved)?;
            let (pos, len) = match a.split_once(':') {
                Some((p, l)) => (p.to_string(), Some(l.to_string())),
                None => (a, None),
            };
            match pos.trim().parse::<i64>() {
                // A position that is not a number leaves the value whole, as in Flux.
                Err(_) => v,
                Ok(p) => {
                    let start = if p < 0 { v.len().saturating_sub(p.unsigned_abs() as usize) } else { p as usize };
                    let start = floor(&v, start);
                    match len.map(|l| l.trim().parse::<i64>()) {
                        None => v[start..].to_string(),
                        Some(Err(_)) => v,
                        Some(Ok(l)) if l < 0 => {
                            return Err(format!("'${{{body}}}': a negative length makes Flux's envsubst fail"));
                        }
                        Some(Ok(l)) => v[start..floor(&v, start + l as usize)].to_string(),
                    }
                }
            }
        }
        r if r.starts_with("##") => trim(&v, &arg(&r[2..], unresolved)?, true, true),
        r if r.starts_with('#') => trim(&v, &arg(&r[1..], unresolved)?, true, false),
        r if r.starts_with("%%") => trim(&v, &arg(&r[2..], unresolved)?, false, true),
        r if r.starts_with('%') => trim(&v, &arg(&r[1..], unresolved)?, false, false),
        r if r.starts_with('/') => {
            let (kind, a) = match &r[1..] {
                x if x.starts_with('/') => ("all", &x[1..]),
                x if x.starts_with('#') => ("prefix", &x[1..]),
                x if x.starts_with('%') => ("suffix", &x[1..]),
                x => ("first", x),
            };
            let Some((pat, rep)) = split_replace(a) else {
                return Err(format!("'${{{body}}}': bad substitution (a replace needs ${{VAR/pattern/replacement}})"));
            };
            let (pat, rep) = (arg(&pat, unresolved)?, arg(&rep, unresolved)?);
            match kind {
                "all" if !pat.is_empty() => v.replace(&pat, &rep),
                "first" if !pat.is_empty() => v.replacen(&pat, &rep, 1),
                // Flux needs both arguments for the anchored forms: an empty replacement
                // leaves the value as it is.
                "prefix" if !rep.is_empty() && v.starts_with(&pat) => format!("{rep}{}", &v[pat.len()..]),
                "suffix" if !rep.is_empty() && v.ends_with(&pat) => format!("{}{rep}", &v[..v.len() - pat.len()]),
                _ => v,
            }
        }
        // Case operators combined (`^,`) leave the value unchanged in Flux.
        r if r.chars().all(|c| c == '^' || c == ',') => v,
        _ => {
            return Err(format!(
                "'${{{body}}}': Flux's envsubst cannot parse it (missing closing brace); `-`, `+` and `?` need a colon before them"
            ));
        }
    };
    Ok(out)
}

fn lookup(name: &str, vars: &BTreeMap<String, String>, unresolved: &mut Vec<String>) -> String {
    match vars.get(name) {
        Some(v) => v.clone(),
        None => {
            unresolved.push(name.to_string());
            String::new()
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
        let r = substitute("${A} ${B:=two} ${E:-dflt} ${E=set} ${C:=${A}x} $${A} $$HOME $HOME ${MISSING}", &v).unwrap();
        assert_eq!(r.text, "1 two dflt set 1x ${A} $HOME $HOME ");
        assert_eq!(r.unresolved, vec!["MISSING".to_string()]);
    }

    #[test]
    fn string_operations_as_flux_s_envsubst_does_them() {
        let v = vars(&[("D", "home.example.com"), ("N", "Grafana"), ("P", "/a/b/c.tar.gz")]);
        let cases = [
            ("${D/./-}", "home-example.com"),
            ("${D//./-}", "home-example-com"),
            ("${D/#home/work}", "work.example.com"),
            ("${D/%com/org}", "home.example.org"),
            ("${D/./}", "homeexample.com"),
            ("${D/#home/}", "home.example.com"),
            ("${#D}", "16"),
            ("${N^^}", "GRAFANA"),
            ("${N,,}", "grafana"),
            ("${N,}", "grafana"),
            ("${D^}", "Home.example.com"),
            ("${D:5}", "example.com"),
            ("${D:5:7}", "example"),
            ("${D:x}", "home.example.com"),
            ("${P#*/}", "a/b/c.tar.gz"),
            ("${P##*/}", "c.tar.gz"),
            ("${P%.*}", "/a/b/c.tar"),
            ("${P%%.*}", "/a/b/c"),
            ("${D#[a-h]}", "ome.example.com"),
            ("${D#*}", "ome.example.com"),
            ("${E:+alt}", "alt"),
            ("${D:?msg}", "home.example.com"),
            ("${D/${N,,}/x}", "home.example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(input, &v).unwrap().text, want, "{input}");
        }
        for bad in ["${D-x}", "${D+x}", "${D?x}", "${D/x}", "${D:1:-1}", "${a.b}"] {
            assert!(substitute(bad, &v).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_clear() {
        assert!(substitute("${", &BTreeMap::new()).unwrap_err().contains("unclosed"));
        assert!(substitute("${1A}", &BTreeMap::new()).unwrap_err().contains("not a valid"));
    }
}
