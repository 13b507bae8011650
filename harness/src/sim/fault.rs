//! Faults to reproduce incidents, parsed from `--fault` arguments:
//!
//! - `webhook-down:NAME@FROM-TO`   a webhook's pods are down from FROM to TO (e.g. `@60s-5m`)
//! - `cilium-restart@T`            the Cilium agents restart at T (network down ~20 s, the
//!   conflist is rewritten)
//! - `chart-fail:NS/NAME=N`        the HelmRelease's install fails N times
//! - `slow-chart:NS/NAME=DURATION` the HelmRelease's install takes DURATION
//! - `node-late@T`                 a node joins at T: DaemonSet charts roll out on it again

use crate::error::{Error, ErrorKind, Result};

/// A Flux/Go duration (`1h2m3s`, `90s`, `5m`, `500ms`) in milliseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n * 1000);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let (unit, len) = if s[i..].starts_with("ms") {
            (1.0, 2)
        } else {
            match c {
                'h' => (3_600_000.0, 1),
                'm' => (60_000.0, 1),
                's' => (1000.0, 1),
                _ => return None,
            }
        };
        let n: f64 = num.parse().ok()?;
        total += n * unit;
        num.clear();
        i += len;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total.round() as u64)
}

/// Milliseconds as Go prints a duration (`5m0s`, `1m30s`, `45s`).
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    WebhookDown { name: String, from: u64, to: u64 },
    CiliumRestart { at: u64 },
    ChartFail { release: String, times: u32 },
    SlowChart { release: String, ms: u64 },
    NodeLate { at: u64 },
}

fn bad(spec: &str, why: &str) -> Error {
    Error::new(ErrorKind::Usage, format!("--fault {spec}: {why}"))
}

impl Fault {
    pub fn parse(spec: &str) -> Result<Fault> {
        let dur = |s: &str| {
            parse_duration(s).ok_or_else(|| bad(spec, &format!("'{s}' is not a duration (e.g. 90s, 5m, 1h30m)")))
        };
        if let Some(rest) = spec.strip_prefix("webhook-down:") {
            let (name, window) = rest.split_once('@').ok_or_else(|| bad(spec, "expected webhook-down:NAME@FROM-TO"))?;
            let (from, to) = window.split_once('-').ok_or_else(|| bad(spec, "expected a window FROM-TO"))?;
            let (from, to) = (dur(from)?, dur(to)?);
            if to <= from {
                return Err(bad(spec, "the window ends before it starts"));
            }
            return Ok(Fault::WebhookDown { name: name.into(), from, to });
        }
        if let Some(at) = spec.strip_prefix("cilium-restart@") {
            return Ok(Fault::CiliumRestart { at: dur(at)? });
        }
        if let Some(at) = spec.strip_prefix("node-late@") {
            return Ok(Fault::NodeLate { at: dur(at)? });
        }
        if let Some(rest) = spec.strip_prefix("chart-fail:") {
            let (release, n) = rest.split_once('=').ok_or_else(|| bad(spec, "expected chart-fail:NS/NAME=N"))?;
            let times = n.parse().map_err(|_| bad(spec, &format!("'{n}' is not a number")))?;
            return Ok(Fault::ChartFail { release: release.into(), times });
        }
        if let Some(rest) = spec.strip_prefix("slow-chart:") {
            let (release, d) = rest.split_once('=').ok_or_else(|| bad(spec, "expected slow-chart:NS/NAME=DURATION"))?;
            return Ok(Fault::SlowChart { release: release.into(), ms: dur(d)? });
        }
        Err(bad(
            spec,
            "unknown fault (webhook-down:NAME@FROM-TO, cilium-restart@T, chart-fail:NS/NAME=N, slow-chart:NS/NAME=DURATION, node-late@T)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1h2m3s"), Some(3_723_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("1.5s"), Some(1500));
        assert_eq!(parse_duration("90"), Some(90_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(format_duration(300_000), "5m0s");
        assert_eq!(format_duration(45_000), "45s");
    }

    #[test]
    fn faults() {
        assert_eq!(
            Fault::parse("webhook-down:validate.kyverno.svc-fail@1m-3m").unwrap(),
            Fault::WebhookDown { name: "validate.kyverno.svc-fail".into(), from: 60_000, to: 180_000 }
        );
        assert_eq!(
            Fault::parse("chart-fail:kyverno/kyverno=2").unwrap(),
            Fault::ChartFail { release: "kyverno/kyverno".into(), times: 2 }
        );
        assert!(Fault::parse("webhook-down:x@3m-1m").unwrap_err().message.contains("ends before"));
        assert!(Fault::parse("meteor@1m").unwrap_err().message.contains("unknown fault"));
    }
}
