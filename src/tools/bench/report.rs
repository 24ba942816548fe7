//! What a scenario measured and checked, the ratios to the machine's baseline, and the two
//! renderings: a table for people and one JSON object for scripts.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort_unstable();
        Self::of_sorted_ms(
            &samples
                .iter()
                .map(|d| d.as_secs_f64() * 1e3)
                .collect::<Vec<_>>(),
        )
    }

    /// From milliseconds, sorted ascending.
    pub fn of_sorted_ms(ms: &[f64]) -> Percentiles {
        if ms.is_empty() {
            return Percentiles::default();
        }
        // Nearest rank: the smallest sample with at least p% of samples at or below it.
        let at = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Percentiles {
            count: ms.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

/// What the baseline ratio of a figure divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Requests per second of the baseline's closed loop.
    Throughput,
    /// The baseline's open-loop latency at the same percentile.
    LatencyP50,
    LatencyP99,
    LatencyMax,
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub basis: Basis,
    /// value ÷ the baseline's figure of the same basis.
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
}

/// A correctness check: the bench's figures only count when these hold.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: &'static str,
    /// `false` when the scenario could not run here (e.g. a route that does not exist yet).
    pub available: bool,
    pub note: String,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
    pub details: Value,
}

impl ScenarioResult {
    pub fn new(scenario: &'static str) -> ScenarioResult {
        ScenarioResult {
            scenario,
            available: true,
            note: String::new(),
            figures: Vec::new(),
            checks: Vec::new(),
            details: json!({}),
        }
    }

    /// A figure; `target` is (description, whether the value meets it).
    pub fn figure(
        &mut self,
        metric: &str,
        value: f64,
        unit: &'static str,
        basis: Basis,
        target: Option<(&str, bool)>,
    ) {
        self.figures.push(Figure {
            metric: metric.into(),
            value,
            unit,
            basis,
            ratio: None,
            target: target.map(|t| t.0.to_owned()),
            met: target.map(|t| t.1),
        });
    }

    /// p50/p99/max of one latency, in ms, against the baseline's latency.
    pub fn latency(&mut self, metric: &str, p: &Percentiles, targets: [Option<f64>; 3]) {
        let rows = [
            ("p50", p.p50, Basis::LatencyP50),
            ("p90", p.p90, Basis::None),
            ("p99", p.p99, Basis::LatencyP99),
            ("max", p.max, Basis::LatencyMax),
        ];
        let mut t = [targets[0], None, targets[1], targets[2]].into_iter();
        for (name, value, basis) in rows {
            let target = t.next().flatten();
            let desc = target.map(|ms| format!("≤ {ms} ms"));
            self.figure(
                &format!("{metric} {name}"),
                value,
                "ms",
                basis,
                desc.as_deref().zip(target.map(|ms| value <= ms)),
            );
        }
    }

    pub fn check(&mut self, name: &str, expected: impl ToString, actual: impl ToString) {
        let (expected, actual) = (expected.to_string(), actual.to_string());
        self.checks.push(Check {
            name: name.into(),
            ok: expected == actual,
            expected,
            actual,
        });
    }

    pub fn all_checks_pass(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The baseline's figures every other figure is divided by.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Baseline {
    pub requests_per_sec: f64,
    pub latency: Percentiles,
}

pub fn apply_ratios(results: &mut [ScenarioResult], base: &Baseline) {
    for f in results.iter_mut().flat_map(|r| r.figures.iter_mut()) {
        let by = match f.basis {
            Basis::Throughput => base.requests_per_sec,
            Basis::LatencyP50 => base.latency.p50,
            Basis::LatencyP99 => base.latency.p99,
            Basis::LatencyMax => base.latency.max,
            Basis::None => 0.0,
        };
        f.ratio = (by > 0.0).then(|| f.value / by);
    }
}

/// The human table: machine first, then one row per figure, then failed checks.
pub fn render_table(machine: &[(String, String)], results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for (k, v) in machine {
        out.push_str(&format!("{k:<22} {v}\n"));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<9} {:<44} {:>10} {:<13} {:>10} {:<16} {}\n",
        "scenario", "metric", "value", "unit", "×baseline", "target", "met"
    ));
    out.push_str(&format!("{}\n", "-".repeat(112)));
    for r in results {
        if !r.available {
            out.push_str(&format!("{:<9} not available: {}\n", r.scenario, r.note));
            continue;
        }
        for f in &r.figures {
            let ratio = f.ratio.map_or("-".into(), |x| format!("{x:.2}"));
            let met = match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            out.push_str(&format!(
                "{:<9} {:<44} {:>10} {:<13} {:>10} {:<16} {}\n",
                r.scenario,
                f.metric,
                number(f.value),
                f.unit,
                ratio,
                f.target.as_deref().unwrap_or(""),
                met
            ));
        }
        let failed: Vec<_> = r.checks.iter().filter(|c| !c.ok).collect();
        let line = if failed.is_empty() {
            format!("all {} correctness checks passed", r.checks.len())
        } else {
            failed
                .iter()
                .map(|c| {
                    format!(
                        "CHECK FAILED {}: expected {}, got {}",
                        c.name, c.expected, c.actual
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push_str(&format!("{:<9}   ({line})\n", ""));
        if !r.note.is_empty() {
            out.push_str(&format!("{:<9}   note: {}\n", "", r.note));
        }
    }
    out
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of_sorted_ms(&ms);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of_sorted_ms(&[]).count, 0);
    }
}
