//! The figures each benchmark leaves for `make bench`'s table (issue 15).
//!
//! A benchmark makes one [`Report`] for its scenario, adds the figures it already
//! computed (each with the target, if it has one) and the checks it already
//! makes, and [`Report::write`]s them before it exits, also when a check failed. Each
//! figure is one JSON line appended to the results file: `BENCH_RESULTS`, or
//! `target/bench-results.jsonl` under the workspace root. `scripts/bench.sh` empties it
//! first and `scripts/bench-report.py table` prints it as one table.
//!
//! A line: `{"scenario", "params", "below_target_size", "metric", "value", "unit",
//! "target", "pass", "at"}`; `target` is the target as shown (`null` when there is
//! none), `pass` whether the figure meets it (`null` without a target, or when the
//! figure cannot tell).

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::{Value, json};

/// What a figure must be to meet its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// No numeric target (shown as "—").
    None,
    /// `≥ n`.
    AtLeast(f64),
    /// `< n`.
    Below(f64),
    /// `≤ n`.
    AtMost(f64),
    /// Exactly `n` (0 oversold, 0 errors).
    Exactly(f64),
}

impl Target {
    /// The target as the table shows it, and whether `value` meets it.
    fn judge(self, value: f64, unit: &str) -> (Option<String>, Option<bool>) {
        let (sign, n, pass) = match self {
            Target::None => return (None, None),
            Target::AtLeast(n) => ("≥ ", n, value >= n),
            Target::Below(n) => ("< ", n, value < n),
            Target::AtMost(n) => ("≤ ", n, value <= n),
            Target::Exactly(n) => ("", n, value == n),
        };
        let unit = if unit.is_empty() || unit.starts_with('/') || unit == "×" {
            unit.to_owned()
        } else {
            format!(" {unit}")
        };
        (Some(format!("{sign}{}{unit}", number(n))), Some(pass))
    }
}

/// `n` with thousands separators, without decimals when it is whole.
fn number(n: f64) -> String {
    if n.fract() != 0.0 {
        return n.to_string();
    }
    let digits = format!("{:.0}", n.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if n < 0.0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// Where the figures go: `BENCH_RESULTS`, else `target/bench-results.jsonl` under the
/// workspace root.
pub fn results_path() -> PathBuf {
    match std::env::var_os("BENCH_RESULTS") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/bench-results.jsonl"
        )),
    }
}

/// One scenario's figures, written together.
#[derive(Debug)]
pub struct Report {
    scenario: String,
    params: String,
    below_target_size: Option<String>,
    lines: Vec<Value>,
}

impl Report {
    /// A report for `scenario` (the table's name for it) run with `params` (its sizes,
    /// as the table shows them under the scenario).
    pub fn new(scenario: &str, params: impl Into<String>) -> Self {
        Self {
            scenario: scenario.to_owned(),
            params: params.into(),
            below_target_size: None,
            lines: Vec::new(),
        }
    }

    /// Marks the run as smaller than the size the targets are stated at (`size`, e.g.
    /// "10,000 clients") when `smaller` holds: its figures are not the targets' figures.
    pub fn below_target_size(mut self, smaller: bool, size: &str) -> Self {
        self.below_target_size = smaller.then(|| size.to_owned());
        self
    }

    /// A figure and its target.
    pub fn figure(&mut self, metric: &str, value: f64, unit: &str, target: Target) -> &mut Self {
        let (shown, pass) = target.judge(value, unit);
        let value = if value.is_finite() {
            json!(value)
        } else {
            Value::Null
        };
        self.push(metric, value, unit, shown, pass)
    }

    /// A check the benchmark makes: must be true.
    pub fn check(&mut self, metric: &str, ok: bool) -> &mut Self {
        self.push(metric, json!(ok), "", Some("yes".to_owned()), Some(ok))
    }

    /// A figure against a target the [`Target`]s cannot state (e.g. a bound on part of
    /// what was measured); `pass` is `None` when the figure cannot tell (shown "n/a").
    pub fn figure_against(
        &mut self,
        metric: &str,
        value: f64,
        unit: &str,
        target: &str,
        pass: Option<bool>,
    ) -> &mut Self {
        self.push(metric, json!(value), unit, Some(target.to_owned()), pass)
    }

    fn push(
        &mut self,
        metric: &str,
        value: Value,
        unit: &str,
        target: Option<String>,
        pass: Option<bool>,
    ) -> &mut Self {
        self.lines.push(json!({
            "scenario": self.scenario,
            "params": self.params,
            "below_target_size": self.below_target_size,
            "metric": metric,
            "value": value,
            "unit": unit,
            "target": target,
            "pass": pass,
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
        self
    }

    /// Appends the figures to the results file. A file that cannot be written is
    /// reported on stderr, not fatal: the benchmark's own output and exit status stand.
    pub fn write(&self) {
        let path = results_path();
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        match written {
            Ok(()) => println!(
                "report: {} figures of \"{}\" appended to {}",
                self.lines.len(),
                self.scenario,
                path.display()
            ),
            Err(e) => eprintln!(
                "report: could not append the figures of \"{}\" to {}: {e}",
                self.scenario,
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_shown_and_judged() {
        assert_eq!(
            Target::AtLeast(20_000.0).judge(19_999.0, "/s"),
            (Some("≥ 20,000/s".to_owned()), Some(false))
        );
        assert_eq!(
            Target::Below(25.0).judge(24.9, "ms"),
            (Some("< 25 ms".to_owned()), Some(true))
        );
        assert_eq!(
            Target::Exactly(0.0).judge(0.0, ""),
            (Some("0".to_owned()), Some(true))
        );
        assert_eq!(
            Target::AtMost(2.5).judge(3.0, "×"),
            (Some("≤ 2.5×".to_owned()), Some(false))
        );
        assert_eq!(Target::None.judge(1.0, "ms"), (None, None));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(number(100_000.0), "100,000");
        assert_eq!(number(999.0), "999");
        assert_eq!(number(-1_000.0), "-1,000");
        assert_eq!(number(0.5), "0.5");
    }
}
