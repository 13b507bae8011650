//! A self-contained HTML timeline of a bootstrap: one bar per Kustomization and
//! HelmRelease from its first reconcile to Ready, grouped by layer, the simulator's
//! predicted Ready time as a tick, failed reconciles as red dots, Flux's messages on hover
//! (SVG `<title>`). No script, no external resource: it opens from an artifact zip. Pure.

use crate::e2e::assert::{KRow, Observation};
use crate::e2e::report::E2eReport;
use std::fmt::Write;

const LABEL_W: f64 = 340.0;
const CHART_W: f64 = 820.0;
const ROW_H: f64 = 22.0;

fn esc(s: &str) -> String {
    crate::junit::xml(s)
}

struct Bar<'a> {
    kind: &'static str,
    row: &'a KRow,
    start: Option<f64>,
    predicted: Option<f64>,
    failures: Vec<&'a Observation>,
    last: Option<&'a Observation>,
}

/// Does the observation belong to the row? Rows name Kustomizations of the entry's
/// namespace by name alone, everything else as `namespace/name`.
fn is_row(o: &Observation, kind: &str, row: &KRow, entry_ns: &str) -> bool {
    o.kind == kind
        && (format!("{}/{}", o.namespace, o.name) == row.name
            || (kind == "Kustomization" && o.namespace == entry_ns && o.name == row.name))
}

fn step(max: f64) -> f64 {
    for s in [5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0] {
        if max / s <= 12.0 {
            return s;
        }
    }
    7200.0
}

pub fn timeline(e2e: &E2eReport, title: &str, entry_ns: &str) -> String {
    let mut bars: Vec<Bar> = vec![];
    for (kind, rows) in [("Kustomization", &e2e.kustomizations), ("HelmRelease", &e2e.helm_releases)] {
        for row in rows {
            let obs: Vec<&Observation> =
                e2e.timeline.iter().filter(|o| o.condition == "Ready" && is_row(o, kind, row, entry_ns)).collect();
            let predicted = e2e
                .predicted_vs_observed
                .iter()
                .find(|p| p.kind == kind && p.name == row.name)
                .and_then(|p| p.predicted_seconds);
            bars.push(Bar {
                kind,
                row,
                start: obs.first().map(|o| o.at_seconds),
                predicted,
                failures: obs
                    .iter()
                    .copied()
                    .filter(|o| crate::sim::report::is_failure(&o.status, &o.reason, &o.message))
                    .collect(),
                last: obs.last().copied(),
            });
        }
    }
    // By layer; in a layer the Kustomizations, then the HelmReleases they apply.
    bars.sort_by(|a, b| {
        let key = |x: &Bar| (x.row.layer.unwrap_or(usize::MAX), x.kind == "HelmRelease");
        key(a).cmp(&key(b)).then_with(|| a.row.name.cmp(&b.row.name))
    });
    let max = bars
        .iter()
        .flat_map(|b| [b.row.ready_at_seconds, b.predicted, b.start])
        .flatten()
        .chain([e2e.duration_seconds, 1.0])
        .fold(0.0, f64::max);
    let x = |t: f64| LABEL_W + t / max * CHART_W;
    let mut layers: Vec<Option<usize>> = bars.iter().map(|b| b.row.layer).collect();
    layers.dedup();
    let height = (bars.len() + layers.len() + 2) as f64 * ROW_H + 30.0;
    let mut svg = String::new();
    let mut y = 30.0;
    let s = step(max);
    let mut t = 0.0;
    while t <= max {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{0:.1}\" y=\"14\">{2}s</text>",
            x(t),
            height - 10.0,
            t
        );
        t += s;
    }
    let mut current: Option<Option<usize>> = None;
    for b in &bars {
        if current != Some(b.row.layer) {
            current = Some(b.row.layer);
            let name = b.row.layer.map(|l| format!("layer {l}")).unwrap_or_else(|| "not layered".into());
            let _ = write!(svg, "<text class=\"layer\" x=\"4\" y=\"{:.1}\">{name}</text>", y + 15.0);
            y += ROW_H;
        }
        let label = format!("{} {}", if b.kind == "Kustomization" { "ks" } else { "hr" }, b.row.name);
        let short: String =
            if label.chars().count() > 42 { label.chars().take(41).chain(['…']).collect() } else { label.clone() };
        let _ = write!(
            svg,
            "<text class=\"label\" x=\"16\" y=\"{:.1}\">{}<title>{}</title></text>",
            y + 15.0,
            esc(&short),
            esc(&label)
        );
        let start = b.start.unwrap_or(0.0);
        let (end, class) = match b.row.ready_at_seconds {
            Some(r) if b.failures.is_empty() => (r, "ready"),
            Some(r) => (r, "retried"),
            None => (max, "never"),
        };
        let mut tip = format!("{} {}\nfirst reconcile: {start:.0}s", b.kind, b.row.name);
        match b.row.ready_at_seconds {
            Some(r) => {
                let _ = write!(tip, "\nReady: {r:.0}s");
            }
            None => tip.push_str("\nnever Ready"),
        }
        if let Some(p) = b.predicted {
            let _ = write!(tip, "\npredicted Ready: {p:.0}s");
        }
        if let Some(l) = b.last {
            let _ = write!(tip, "\nlast: {} {}: {}", l.status, l.reason, l.message);
        }
        let _ = write!(
            svg,
            "<rect class=\"bar observed {class}\" data-kind=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
            b.kind,
            x(start),
            y + 4.0,
            (x(end) - x(start)).max(2.0),
            ROW_H - 8.0,
            esc(&tip)
        );
        // Waiting for dependencies (DependencyNotReady) is drawn lighter over the bar.
        if let Some(d) = b.row.dependencies_ready_at_seconds.filter(|d| *d > start && *d < end) {
            let _ = write!(
                svg,
                "<rect class=\"waiting\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>waiting for dependencies until {d:.0}s</title></rect>",
                x(start),
                y + 4.0,
                x(d) - x(start),
                ROW_H - 8.0
            );
        }
        if let Some(p) = b.predicted {
            let _ = write!(
                svg,
                "<line class=\"predicted\" x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\"><title>predicted Ready: {p:.0}s</title></line>",
                x(p),
                y + 1.0,
                y + ROW_H - 1.0
            );
        }
        for f in &b.failures {
            let _ = write!(
                svg,
                "<circle class=\"failure\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\"><title>{}</title></circle>",
                x(f.at_seconds),
                y + ROW_H / 2.0,
                esc(&format!("failed at {:.0}s: {}: {}", f.at_seconds, f.reason, f.message))
            );
        }
        y += ROW_H;
    }
    let violations: String =
        e2e.violations.iter().map(|v| format!("<li><b>{}</b> {}</li>", esc(&v.kind), esc(&v.message))).collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #1b1f24; }}
h1 {{ font-size: 18px; }} .pass {{ color: #1a7f37; }} .fail {{ color: #cf222e; }}
svg text {{ font: 12px ui-monospace, monospace; }} .layer {{ font-weight: bold; }}
.tick {{ fill: #57606a; text-anchor: middle; }} .grid {{ stroke: #d0d7de; stroke-width: 1; }}
.bar.ready {{ fill: #2da44e; }} .bar.retried {{ fill: #d4a72c; }} .bar.never {{ fill: #cf222e; opacity: .55; }}
.waiting {{ fill: white; opacity: .6; pointer-events: none; }}
.bar:hover {{ stroke: #1b1f24; stroke-width: 1.5; }}
.predicted {{ stroke: #0969da; stroke-width: 3; }} .failure {{ fill: #cf222e; stroke: white; }}
.legend span {{ margin-right: 16px; }}
</style></head><body>
<h1>{title}: <span class="{verdict_class}">{verdict}</span></h1>
<p>{provider}, {unit}; {n} Kustomizations and HelmReleases; hover a bar for Flux's messages.</p>
<p class="legend"><span style="color:#2da44e">&#9632; Ready</span><span style="color:#d4a72c">&#9632; Ready after a failed reconcile</span><span style="color:#cf222e">&#9632; never Ready / &#9679; failure</span><span style="color:#0969da">| predicted Ready</span><span style="color:#8c959f">light: waiting for dependencies</span></p>
<ul class="violations">{violations}</ul>
<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{height:.0}" viewBox="0 0 {w:.0} {height:.0}">{svg}</svg>
</body></html>
"#,
        title = esc(title),
        verdict_class = if e2e.passed { "pass" } else { "fail" },
        verdict = if e2e.passed { "PASSED" } else { "FAILED" },
        provider = esc(&e2e.provider),
        unit = esc(&e2e.time_unit),
        n = bars.len(),
        w = LABEL_W + CHART_W + 40.0,
    )
}
