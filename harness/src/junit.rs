//! JUnit XML, as CI systems read it: `testsuites` > `testsuite` > `testcase`, with
//! `failure` (message attribute, full text in the body) and `skipped`. Times are seconds;
//! a suite whose times are virtual says so in a `time_unit` property. Pure.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail { kind: String, message: String, text: String },
    Skip(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub classname: String,
    pub name: String,
    pub seconds: f64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub seconds: f64,
    pub time_unit: String,
    pub cases: Vec<Case>,
}

pub fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn write(name: &str, suites: &[Suite]) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| suites.iter().flat_map(|s| &s.cases).filter(|c| f(&c.outcome)).count();
    let tests = count(&|_| true);
    let failures = count(&|o| matches!(o, Outcome::Fail { .. }));
    let skipped = count(&|o| matches!(o, Outcome::Skip(_)));
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\">\n",
        xml(name)
    );
    for s in suites {
        let f = s.cases.iter().filter(|c| matches!(c.outcome, Outcome::Fail { .. })).count();
        let k = s.cases.iter().filter(|c| matches!(c.outcome, Outcome::Skip(_))).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" skipped=\"{k}\" time=\"{:.3}\">",
            xml(&s.name),
            s.cases.len(),
            s.seconds
        );
        let _ = writeln!(
            out,
            "    <properties>\n      <property name=\"time_unit\" value=\"{}\"/>\n    </properties>",
            xml(&s.time_unit)
        );
        for c in &s.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&c.classname),
                xml(&c.name),
                c.seconds
            );
            match &c.outcome {
                Outcome::Pass => out.push_str("/>\n"),
                Outcome::Fail { kind, message, text } => {
                    let _ = write!(
                        out,
                        ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                        xml(kind),
                        xml(message.lines().next().unwrap_or("")),
                        xml(text)
                    );
                }
                Outcome::Skip(why) => {
                    let _ = write!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>\n", xml(why));
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
