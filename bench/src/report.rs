//! Figures from the samples: median and p90 per binary, the ratio to the reference, the binary
//! size and the two goals; printed as a table and optionally written as JSON.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Goal: a function's median cold start is at most this many times hello-world's.
pub const COLD_START_RATIO_MAX: f64 = 1.5;
/// Goal: a function's stripped `bootstrap` is under this many bytes (8 MB, decimal).
pub const SIZE_BYTES_MAX: u64 = 8_000_000;

/// Everything measured for one binary.
#[derive(Debug)]
pub struct Measured {
    pub name: String,
    pub is_reference: bool,
    pub event: Option<String>,
    pub size_bytes: u64,
    pub samples: Vec<Duration>,
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub is_reference: bool,
    pub event: Option<String>,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub reference_median_ms: f64,
    pub ratio: f64,
    pub size_bytes: u64,
    pub size_mb: f64,
    pub cold_start_ok: bool,
    pub size_ok: bool,
    pub samples_ms: Vec<f64>,
}

/// The whole report; the reference's row comes first.
#[derive(Debug)]
pub struct Report {
    pub reference: String,
    pub runs: usize,
    pub warmup: usize,
    pub rows: Vec<Row>,
}

impl Report {
    /// `measured` holds the reference first, then the functions.
    pub fn new(measured: Vec<Measured>, runs: usize, warmup: usize) -> Result<Self> {
        let reference = measured
            .iter()
            .find(|m| m.is_reference)
            .context("no reference among the measured binaries")?;
        let reference_name = reference.name.clone();
        let reference_median_ms = median(&millis(&reference.samples));
        let rows = measured
            .into_iter()
            .map(|m| {
                let samples_ms = millis(&m.samples);
                let median_ms = median(&samples_ms);
                let ratio = round2(median_ms / reference_median_ms);
                Row {
                    median_ms,
                    p90_ms: p90(&samples_ms),
                    reference_median_ms,
                    ratio,
                    size_mb: round2(m.size_bytes as f64 / 1e6),
                    // Judged on the ratio as shown, so the table never reads "1.50 over".
                    cold_start_ok: ratio <= COLD_START_RATIO_MAX,
                    size_ok: m.size_bytes < SIZE_BYTES_MAX,
                    name: m.name,
                    is_reference: m.is_reference,
                    event: m.event,
                    size_bytes: m.size_bytes,
                    samples_ms,
                }
            })
            .collect();
        Ok(Report {
            reference: reference_name,
            runs,
            warmup,
            rows,
        })
    }

    /// The table `make bench` prints.
    pub fn table(&self) -> String {
        let headers = [
            "function",
            "median ms",
            "p90 ms",
            "ref median ms",
            "ratio",
            "size MB",
            "cold <=1.5x",
            "size <8 MB",
        ];
        let cells: Vec<[String; 8]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    if row.is_reference {
                        format!("{} (reference)", row.name)
                    } else {
                        row.name.clone()
                    },
                    format!("{:.2}", row.median_ms),
                    format!("{:.2}", row.p90_ms),
                    format!("{:.2}", row.reference_median_ms),
                    format!("{:.2}", row.ratio),
                    format!("{:.2}", row.size_mb),
                    verdict(row.cold_start_ok).to_owned(),
                    verdict(row.size_ok).to_owned(),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }

        let mut out = format!(
            "cold start: time from exec to the first response at a local Runtime API, \
             {} runs per binary (after {} warm-up), interleaved\n\
             goals: median cold start within {COLD_START_RATIO_MAX}x of {}, bootstrap under \
             {} MB\n\n",
            self.runs,
            self.warmup,
            self.reference,
            SIZE_BYTES_MAX / 1_000_000
        );
        let mut line = |cells: &[&str]| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // Name and verdicts read left to right; numbers line up on the right.
                let _ = match i {
                    0 => write!(text, "{cell:<width$}"),
                    6 | 7 => write!(text, "  {cell:<width$}"),
                    _ => write!(text, "  {cell:>width$}"),
                };
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&headers);
        let rule = widths.map(|width| "-".repeat(width));
        line(&rule.each_ref().map(String::as_str));
        for row in &cells {
            line(&row.each_ref().map(String::as_str));
        }
        out
    }

    /// The same figures as JSON, plus the raw samples.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "name": row.name,
                    "reference": row.is_reference,
                    "event": row.event,
                    "median_ms": round2(row.median_ms),
                    "p90_ms": round2(row.p90_ms),
                    "reference_median_ms": round2(row.reference_median_ms),
                    "ratio": row.ratio,
                    "size_bytes": row.size_bytes,
                    "size_mb": row.size_mb,
                    "cold_start_goal": verdict(row.cold_start_ok),
                    "size_goal": verdict(row.size_ok),
                    "samples_ms": row.samples_ms.iter().map(|ms| (ms * 1e3).round() / 1e3).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "reference": self.reference,
            "runs": self.runs,
            "warmup": self.warmup,
            "goals": {
                "cold_start_ratio_max": COLD_START_RATIO_MAX,
                "size_bytes_max": SIZE_BYTES_MAX,
            },
            "functions": rows,
        })
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "over" }
}

fn millis(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Middle sample; mean of the two middle ones for an even count. 0 for no samples.
fn median(samples: &[f64]) -> f64 {
    let sorted = sorted(samples);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank 90th percentile: the smallest sample with at least 90 % of samples at or below.
fn p90(samples: &[f64]) -> f64 {
    let sorted = sorted(samples);
    let rank = (sorted.len() * 9).div_ceil(10);
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let twenty: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(p90(&twenty), 18.0);
        assert_eq!(p90(&[5.0]), 5.0);
        assert_eq!(p90(&[]), 0.0);
    }

    #[test]
    fn ratio_goals_and_output() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        let report = Report::new(
            vec![
                Measured {
                    name: "hello-lambda".into(),
                    is_reference: true,
                    event: None,
                    size_bytes: 1_500_000,
                    samples: ms(&[10, 10, 10]),
                },
                Measured {
                    name: "fast".into(),
                    is_reference: false,
                    event: Some("e.json".into()),
                    size_bytes: 7_990_000,
                    samples: ms(&[15, 15, 15]),
                },
                Measured {
                    name: "slow".into(),
                    is_reference: false,
                    event: Some("e.json".into()),
                    size_bytes: 8_000_000,
                    samples: ms(&[16, 16, 16]),
                },
            ],
            3,
            0,
        )
        .unwrap();
        let verdicts: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.ratio, r.cold_start_ok, r.size_ok))
            .collect();
        assert_eq!(
            verdicts,
            [(1.0, true, true), (1.5, true, true), (1.6, false, false)]
        );
        let table = report.table();
        assert!(table.contains("hello-lambda (reference)"), "{table}");
        let slow: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with("slow"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            slow,
            [
                "slow", "16.00", "16.00", "10.00", "1.60", "8.00", "over", "over"
            ],
            "{table}"
        );
        println!("{table}");
        let json = report.json();
        assert_eq!(json["functions"][2]["size_goal"], "over");
        assert_eq!(json["functions"][1]["median_ms"], 15.0);
    }
}
