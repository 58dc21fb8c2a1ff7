//! Figures from the samples: median and p90 per binary, the ratio to the reference, the binary
//! size and the two goals; printed as a table and optionally written as JSON. And the load
//! figures ([`LoadReport`]): requests per second, p50 and p99 against the goal at 8 clients. And
//! the signed image GET's ([`ImageGetReport`]): its overhead over the bare transform, in parts.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::load::Step;

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

/// Goal of the load benchmark: at [`LOAD_GOAL_CLIENTS`] clients, p99 under this.
pub const LOAD_P99_MAX_MS: f64 = 1000.0;
/// The number of clients the load goal is set for.
pub const LOAD_GOAL_CLIENTS: usize = 8;

/// One timed request of the load.
#[derive(Debug, Clone)]
pub struct Sample {
    pub step: Step,
    pub status: u16,
    pub latency: Duration,
    /// The start of the body of an answer of 400 or more.
    pub detail: Option<String>,
}

/// One AWS call from moto's request log, with where its time went (absent in an old log).
#[derive(Debug, Clone)]
pub struct AwsCall {
    /// `X-Amz-Target` (`DynamoDB_20120810.UpdateItem`), else service, method and path.
    pub name: String,
    pub read_ms: Option<f64>,
    pub wait_ms: Option<f64>,
    pub handle_ms: Option<f64>,
}

/// The load figures.
#[derive(Debug)]
pub struct LoadReport {
    pub clients: usize,
    /// Every client from one address (else each from its own).
    pub one_address: bool,
    pub window: Duration,
    pub requests: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_errors: usize,
    pub client_errors: usize,
    pub ratio: f64,
    pub p99_ok: bool,
    pub no_5xx_ok: bool,
    pub steps: Vec<StepFigures>,
    /// A few answers of 400 or more, to say what went wrong.
    pub errors: Vec<String>,
    pub aws: Option<AwsFigures>,
}

/// One kind of request.
#[derive(Debug)]
pub struct StepFigures {
    pub label: &'static str,
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub not_2xx: usize,
}

/// moto's side of the window.
#[derive(Debug)]
pub struct AwsFigures {
    pub calls: usize,
    /// Whether the log has the timings (a log of an older launcher has only the calls).
    pub timed: bool,
    pub per_request: f64,
    pub wait_p50_ms: f64,
    pub wait_p99_ms: f64,
    pub handle_p50_ms: f64,
    pub handle_p99_ms: f64,
    pub read_p99_ms: f64,
    /// Share of the window moto spent handling calls (the lock held): 1.0 is saturated.
    pub busy: f64,
    /// Per call name: count, mean handling ms, total handling s; most time first.
    pub by_call: Vec<(String, usize, f64, f64)>,
}

impl LoadReport {
    pub fn new(
        clients: usize,
        one_address: bool,
        window: Duration,
        samples: Vec<Sample>,
        aws: Option<Vec<AwsCall>>,
    ) -> Self {
        let all: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
        let p99_ms = percentile(&all, 99);
        let server_errors = samples.iter().filter(|s| s.status >= 500).count();
        let client_errors = samples
            .iter()
            .filter(|s| (400..500).contains(&s.status))
            .count();
        let steps = Step::ROUND
            .iter()
            .map(|&step| {
                let of: Vec<&Sample> = samples.iter().filter(|s| s.step == step).collect();
                let lat: Vec<f64> = of.iter().map(|s| ms(s.latency)).collect();
                StepFigures {
                    label: step.label(),
                    count: of.len(),
                    p50_ms: percentile(&lat, 50),
                    p99_ms: percentile(&lat, 99),
                    max_ms: percentile(&lat, 100),
                    not_2xx: of
                        .iter()
                        .filter(|s| !(200..300).contains(&s.status))
                        .count(),
                }
            })
            .collect();
        let mut errors: Vec<String> = samples
            .iter()
            .filter_map(|s| {
                s.detail
                    .as_ref()
                    .map(|d| format!("{} {}: {d}", s.status, s.step.label()))
            })
            .collect();
        errors.dedup();
        errors.truncate(5);
        let ratio = round2(p99_ms / LOAD_P99_MAX_MS);
        let aws = aws.map(|calls| AwsFigures::new(&calls, samples.len(), window));
        LoadReport {
            clients,
            one_address,
            window,
            requests: samples.len(),
            per_second: samples.len() as f64 / window.as_secs_f64().max(1e-9),
            p50_ms: percentile(&all, 50),
            p99_ms,
            max_ms: percentile(&all, 100),
            server_errors,
            client_errors,
            ratio,
            p99_ok: p99_ms < LOAD_P99_MAX_MS,
            no_5xx_ok: server_errors == 0,
            steps,
            errors,
            aws,
        }
    }

    /// What `make bench` and `make bench-load` print.
    pub fn table(&self) -> String {
        let round: Vec<&str> = Step::ROUND.iter().map(|s| s.label()).collect();
        let mut out = format!(
            "load: {} clients ({}) against `lumi dev` (make dev's stack), {:.1} s measured \
             after a warm-up round per client; each client repeats: {} (manual payment)\n\
             goal at {LOAD_GOAL_CLIENTS} clients: p99 under {LOAD_P99_MAX_MS:.0} ms, no 5xx \
             (ratio: p99 over the goal's p99)\n\n",
            self.clients,
            if self.one_address {
                "all from one address"
            } else {
                "each from its own address"
            },
            self.window.as_secs_f64(),
            round.join(", "),
        );
        let headers = [
            "clients",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "5xx",
            "4xx",
            "goal p99 ms",
            "ratio",
            "p99 <1 s",
            "no 5xx",
        ];
        let cells = [
            self.clients.to_string(),
            self.requests.to_string(),
            format!("{:.1}", self.per_second),
            format!("{:.0}", self.p50_ms),
            format!("{:.0}", self.p99_ms),
            format!("{:.0}", self.max_ms),
            self.server_errors.to_string(),
            self.client_errors.to_string(),
            format!("{LOAD_P99_MAX_MS:.0}"),
            format!("{:.2}", self.ratio),
            verdict(self.p99_ok).to_owned(),
            verdict(self.no_5xx_ok).to_owned(),
        ];
        push_table(&mut out, &headers, &[cells.to_vec()], &[10, 11]);

        out.push_str("\nby request:\n");
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|s| {
                vec![
                    s.label.to_owned(),
                    s.count.to_string(),
                    format!("{:.0}", s.p50_ms),
                    format!("{:.0}", s.p99_ms),
                    format!("{:.0}", s.max_ms),
                    s.not_2xx.to_string(),
                ]
            })
            .collect();
        push_table(
            &mut out,
            &["request", "count", "p50 ms", "p99 ms", "max ms", "not 2xx"],
            &rows,
            &[],
        );
        for error in &self.errors {
            let _ = writeln!(out, "  answer: {error}");
        }

        if let Some(aws) = &self.aws {
            let _ = writeln!(
                out,
                "\nAWS calls in the window (moto's request log): {} calls, {:.1} per request",
                aws.calls, aws.per_request,
            );
            if aws.timed {
                let _ = writeln!(
                    out,
                    "moto busy (the lock held) {:.0} % of the window; per call: lock wait p50 \
                     {:.1} ms, p99 {:.1} ms; moto's handling p50 {:.1} ms, p99 {:.1} ms; \
                     reading the body p99 {:.1} ms",
                    aws.busy * 100.0,
                    aws.wait_p50_ms,
                    aws.wait_p99_ms,
                    aws.handle_p50_ms,
                    aws.handle_p99_ms,
                    aws.read_p99_ms,
                );
            }
            let rows: Vec<Vec<String>> = aws
                .by_call
                .iter()
                .take(10)
                .map(|(name, count, mean, total)| {
                    vec![
                        name.clone(),
                        count.to_string(),
                        format!("{mean:.1}"),
                        format!("{total:.1}"),
                    ]
                })
                .collect();
            push_table(
                &mut out,
                &["call", "count", "mean handling ms", "total handling s"],
                &rows,
                &[],
            );
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "one_address": self.one_address,
            "window_s": round2(self.window.as_secs_f64()),
            "requests": self.requests,
            "requests_per_s": round2(self.per_second),
            "p50_ms": round2(self.p50_ms),
            "p99_ms": round2(self.p99_ms),
            "max_ms": round2(self.max_ms),
            "5xx": self.server_errors,
            "4xx": self.client_errors,
            "goal": { "clients": LOAD_GOAL_CLIENTS, "p99_ms_max": LOAD_P99_MAX_MS, "5xx": 0 },
            "ratio": self.ratio,
            "p99_goal": verdict(self.p99_ok),
            "no_5xx_goal": verdict(self.no_5xx_ok),
            "by_request": self.steps.iter().map(|s| json!({
                "request": s.label, "count": s.count, "p50_ms": round2(s.p50_ms),
                "p99_ms": round2(s.p99_ms), "max_ms": round2(s.max_ms), "not_2xx": s.not_2xx,
            })).collect::<Vec<_>>(),
            "aws": self.aws.as_ref().map(|aws| json!({
                "calls": aws.calls,
                "per_request": round2(aws.per_request),
                "busy": round2(aws.busy),
                "wait_p50_ms": round2(aws.wait_p50_ms),
                "wait_p99_ms": round2(aws.wait_p99_ms),
                "handle_p50_ms": round2(aws.handle_p50_ms),
                "handle_p99_ms": round2(aws.handle_p99_ms),
                "read_p99_ms": round2(aws.read_p99_ms),
                "by_call": aws.by_call.iter().map(|(name, count, mean, total)| json!({
                    "call": name, "count": count, "mean_handle_ms": round2(*mean),
                    "total_handle_s": round2(*total),
                })).collect::<Vec<_>>(),
            })),
        })
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

impl AwsFigures {
    fn new(calls: &[AwsCall], requests: usize, window: Duration) -> Self {
        let field =
            |f: fn(&AwsCall) -> Option<f64>| -> Vec<f64> { calls.iter().filter_map(f).collect() };
        let (read, wait, handle) = (
            field(|c| c.read_ms),
            field(|c| c.wait_ms),
            field(|c| c.handle_ms),
        );
        let mut by_name: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        for call in calls {
            let entry = by_name.entry(&call.name).or_default();
            entry.0 += 1;
            entry.1 += call.handle_ms.unwrap_or(0.0);
        }
        let mut by_call: Vec<(String, usize, f64, f64)> = by_name
            .into_iter()
            .map(|(name, (count, total))| {
                (name.to_owned(), count, total / count as f64, total / 1e3)
            })
            .collect();
        by_call.sort_by(|a, b| b.3.total_cmp(&a.3));
        AwsFigures {
            calls: calls.len(),
            timed: !handle.is_empty(),
            per_request: calls.len() as f64 / requests.max(1) as f64,
            wait_p50_ms: percentile(&wait, 50),
            wait_p99_ms: percentile(&wait, 99),
            handle_p50_ms: percentile(&handle, 50),
            handle_p99_ms: percentile(&handle, 99),
            read_p99_ms: percentile(&read, 99),
            busy: handle.iter().sum::<f64>() / 1e3 / window.as_secs_f64().max(1e-9),
            by_call,
        }
    }
}

/// Goal (issue 19): the signed image GET's own overhead is under this fraction of the bare
/// transform it serves.
pub const IMAGE_GET_OVERHEAD_MAX: f64 = 0.05;

/// The samples of `lumi-bench image-get`, one of each per measured round.
#[derive(Debug, Default)]
pub struct ImageGetSamples {
    /// `lumi_imaging::transform` of the bytes in memory.
    pub bare: Vec<Duration>,
    /// The signed GET through the images function's router, body collected.
    pub get: Vec<Duration>,
    /// The S3 GetObject of the original alone, body read.
    pub s3: Vec<Duration>,
    /// The same GetObject until its answer's headers are in (the first chunk of the body, which
    /// the codec waits for, comes with them or right after).
    pub s3_headers: Vec<Duration>,
    /// The signed GET through a second instance of the function with the rate limiter off.
    pub get_unlimited: Vec<Duration>,
    /// The signed GET answered 304 (`If-None-Match`): no S3, no transform.
    pub not_modified: Vec<Duration>,
    /// The same 304 with the rate limiter off.
    pub not_modified_unlimited: Vec<Duration>,
    /// A GetObject of a 1-byte object until its headers: what the local S3 takes to answer any
    /// read, the floor under the GET's overhead whatever the function does.
    pub s3_floor: Vec<Duration>,
}

/// The figures of `lumi-bench image-get`: medians, the overhead and its parts.
#[derive(Debug)]
pub struct ImageGetReport {
    /// The photo: path, size, bytes.
    pub photo: String,
    pub output_bytes: usize,
    pub runs: usize,
    pub warmup: usize,
    pub bare_ms: f64,
    pub get_ms: f64,
    pub s3_ms: f64,
    pub s3_headers_ms: f64,
    pub get_unlimited_ms: f64,
    pub not_modified_ms: f64,
    pub not_modified_unlimited_ms: f64,
    pub s3_floor_ms: f64,
    /// GET minus bare.
    pub overhead_ms: f64,
    /// The 304 minus the 304 with the limiter off.
    pub limiter_ms: f64,
    /// The overhead minus the parts measured alone (S3, limiter, the 304's own work).
    pub rest_ms: f64,
    /// The overhead over the bare transform, rounded to 3 decimals; the goal is judged on it.
    pub ratio: f64,
    pub ok: bool,
    pub samples: ImageGetSamples,
}

impl ImageGetReport {
    pub fn new(
        samples: ImageGetSamples,
        photo: String,
        output_bytes: usize,
        runs: usize,
        warmup: usize,
    ) -> Self {
        let of = |samples: &[Duration]| median(&millis(samples));
        let bare_ms = of(&samples.bare);
        let get_ms = of(&samples.get);
        let s3_ms = of(&samples.s3);
        let s3_headers_ms = of(&samples.s3_headers);
        let get_unlimited_ms = of(&samples.get_unlimited);
        let not_modified_ms = of(&samples.not_modified);
        let not_modified_unlimited_ms = of(&samples.not_modified_unlimited);
        let s3_floor_ms = of(&samples.s3_floor);
        let overhead_ms = get_ms - bare_ms;
        let limiter_ms = not_modified_ms - not_modified_unlimited_ms;
        let ratio = (overhead_ms / bare_ms * 1000.0).round() / 1000.0;
        ImageGetReport {
            photo,
            output_bytes,
            runs,
            warmup,
            bare_ms,
            get_ms,
            s3_ms,
            s3_headers_ms,
            get_unlimited_ms,
            not_modified_ms,
            not_modified_unlimited_ms,
            s3_floor_ms,
            overhead_ms,
            limiter_ms,
            rest_ms: overhead_ms - s3_ms - limiter_ms - not_modified_unlimited_ms,
            ratio,
            ok: ratio < IMAGE_GET_OVERHEAD_MAX,
            samples,
        }
    }

    /// What `make bench` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "signed image GET: GET /api/v1/images/<signature>/{options}/originals/<id>.jpeg through \
             the images function's router (edge, rate limiter, signature, S3 read from moto, \
             transform, headers; body collected) against the bare lumi_imaging::transform of the \
             same bytes in memory (resize800_jpeg)\n\
             photo {} -> {} bytes; {} rounds after {} warm-up, alternating\n\
             goal: the GET's overhead under {IMAGE_GET_OVERHEAD_MAX} of the bare transform\n\n",
            self.photo,
            self.output_bytes,
            self.runs,
            self.warmup,
            options = crate::image_get::OPTIONS,
        );
        let p90_of = |samples: &[Duration]| format!("{:.2}", p90(&millis(samples)));
        let rows = vec![
            vec![
                "bare transform (reference)".to_owned(),
                format!("{:.2}", self.bare_ms),
                p90_of(&self.samples.bare),
            ],
            vec![
                "signed GET".to_owned(),
                format!("{:.2}", self.get_ms),
                p90_of(&self.samples.get),
            ],
            vec![
                "signed GET, rate limiter off".to_owned(),
                format!("{:.2}", self.get_unlimited_ms),
                p90_of(&self.samples.get_unlimited),
            ],
            vec![
                "S3 GetObject of the original alone".to_owned(),
                format!("{:.2}", self.s3_ms),
                p90_of(&self.samples.s3),
            ],
            vec![
                "  of which until its headers".to_owned(),
                format!("{:.2}", self.s3_headers_ms),
                p90_of(&self.samples.s3_headers),
            ],
            vec![
                "S3 GetObject of a 1-byte object, until its headers".to_owned(),
                format!("{:.2}", self.s3_floor_ms),
                p90_of(&self.samples.s3_floor),
            ],
            vec![
                "signed GET answered 304".to_owned(),
                format!("{:.2}", self.not_modified_ms),
                p90_of(&self.samples.not_modified),
            ],
            vec![
                "signed GET answered 304, rate limiter off".to_owned(),
                format!("{:.2}", self.not_modified_unlimited_ms),
                p90_of(&self.samples.not_modified_unlimited),
            ],
        ];
        push_table(&mut out, &["measured", "median ms", "p90 ms"], &rows, &[]);
        out.push('\n');
        let part = |label: &str, ms: f64| {
            vec![
                label.to_owned(),
                format!("{ms:.2}"),
                format!("{:.3}", ms / self.bare_ms),
                String::new(),
                String::new(),
            ]
        };
        let rows = vec![
            vec![
                "overhead: GET - bare".to_owned(),
                format!("{:.2}", self.overhead_ms),
                format!("{:.3}", self.ratio),
                format!("<{IMAGE_GET_OVERHEAD_MAX}"),
                if self.ok { "ok" } else { "MISSED" }.to_owned(),
            ],
            part("  S3 GetObject (moto)", self.s3_ms),
            part(
                "  rate limiter's DynamoDB call (moto; 304 - 304 off), alongside",
                self.limiter_ms,
            ),
            part(
                "  signature, caches, ETag, edge, headers (304, limiter off)",
                self.not_modified_unlimited_ms,
            ),
            part(
                "  left: what ran alongside (< 0), blocking pool, caches, noise",
                self.rest_ms,
            ),
        ];
        push_table(
            &mut out,
            &["", "ms", "of bare", "goal", "verdict"],
            &rows,
            &[3, 4],
        );
        let _ = writeln!(
            out,
            "floor: the local S3 answers any read, 1 byte, in {:.2} ms to its headers, {:.3} of \
             the bare transform; a GET that reads its original from it cannot be under {} \
             while this is over it",
            self.s3_floor_ms,
            self.s3_floor_ms / self.bare_ms,
            IMAGE_GET_OVERHEAD_MAX
        );
        out
    }

    /// The same figures as JSON, plus the raw samples.
    pub fn json(&self) -> Value {
        json!({
            "photo": self.photo,
            "output_bytes": self.output_bytes,
            "options": crate::image_get::OPTIONS,
            "runs": self.runs,
            "warmup": self.warmup,
            "bare_median_ms": round2(self.bare_ms),
            "get_median_ms": round2(self.get_ms),
            "s3_get_object_median_ms": round2(self.s3_ms),
            "s3_get_object_headers_median_ms": round2(self.s3_headers_ms),
            "get_rate_limiter_off_median_ms": round2(self.get_unlimited_ms),
            "not_modified_median_ms": round2(self.not_modified_ms),
            "not_modified_rate_limiter_off_median_ms": round2(self.not_modified_unlimited_ms),
            "s3_one_byte_headers_median_ms": round2(self.s3_floor_ms),
            "overhead_ms": round2(self.overhead_ms),
            "rate_limiter_ms": round2(self.limiter_ms),
            "rest_ms": round2(self.rest_ms),
            "overhead_ratio": self.ratio,
            "goal_ratio_max": IMAGE_GET_OVERHEAD_MAX,
            "ok": self.ok,
            "samples_ms": {
                "bare": millis(&self.samples.bare),
                "get": millis(&self.samples.get),
                "s3_get_object": millis(&self.samples.s3),
                "s3_get_object_headers": millis(&self.samples.s3_headers),
                "get_rate_limiter_off": millis(&self.samples.get_unlimited),
                "not_modified": millis(&self.samples.not_modified),
                "not_modified_rate_limiter_off": millis(&self.samples.not_modified_unlimited),
                "s3_one_byte_headers": millis(&self.samples.s3_floor),
            },
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A left-aligned first column, numbers on the right, the `left` columns (verdicts) on the left.
fn push_table(out: &mut String, headers: &[&str], rows: &[Vec<String>], left: &[usize]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let width = *width;
            let _ = match i {
                0 => write!(text, "{cell:<width$}"),
                _ if left.contains(&i) => write!(text, "  {cell:<width$}"),
                _ => write!(text, "  {cell:>width$}"),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
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
    percentile(samples, 90)
}

/// Nearest-rank percentile: the smallest sample with at least `p` % of samples at or below.
/// 0 for no samples.
fn percentile(samples: &[f64], p: usize) -> f64 {
    let sorted = sorted(samples);
    let rank = (sorted.len() * p).div_ceil(100);
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_get_overhead_and_its_parts() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        let report = ImageGetReport::new(
            ImageGetSamples {
                bare: ms(&[100, 101, 99]),
                get: ms(&[130, 131, 129]),
                s3: ms(&[20, 21, 19]),
                s3_headers: ms(&[4, 5, 6]),
                get_unlimited: ms(&[126, 127, 125]),
                not_modified: ms(&[6, 7, 8]),
                not_modified_unlimited: ms(&[1, 2, 3]),
                s3_floor: ms(&[2, 3, 4]),
            },
            "p.jpg: 4x3, 10 bytes".into(),
            5,
            3,
            1,
        );
        assert_eq!(
            (report.bare_ms, report.get_ms, report.overhead_ms),
            (100.0, 130.0, 30.0)
        );
        assert_eq!(
            (
                report.limiter_ms,
                report.not_modified_unlimited_ms,
                report.rest_ms
            ),
            (5.0, 2.0, 3.0)
        );
        assert_eq!(report.ratio, 0.3);
        assert_eq!(
            (report.s3_headers_ms, report.get_unlimited_ms),
            (5.0, 126.0)
        );
        assert!(!report.ok);
        let table = report.table();
        assert!(table.contains("MISSED"), "{table}");
        assert_eq!(report.s3_floor_ms, 3.0);
        assert!(
            table.contains("in 3.00 ms to its headers, 0.030 of"),
            "{table}"
        );
        let fast = ImageGetReport::new(
            ImageGetSamples {
                bare: ms(&[100]),
                get: ms(&[104]),
                s3: ms(&[2]),
                s3_headers: ms(&[1]),
                get_unlimited: ms(&[103]),
                not_modified: ms(&[2]),
                not_modified_unlimited: ms(&[1]),
                s3_floor: ms(&[1]),
            },
            "p.jpg".into(),
            5,
            1,
            0,
        );
        assert!(fast.ok && fast.table().contains(" ok"));
        assert_eq!(fast.json()["overhead_ratio"], 0.04);
    }

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

    #[test]
    fn load_figures_against_the_goal() {
        let sample = |step, status, millis| Sample {
            step,
            status,
            latency: Duration::from_millis(millis),
            detail: (status >= 400).then(|| "boom".to_owned()),
        };
        let mut samples: Vec<Sample> = (1..=99).map(|m| sample(Step::Catalog, 200, m)).collect();
        samples.push(sample(Step::Checkout, 503, 1500));
        let calls = vec![
            AwsCall {
                name: "DynamoDB_20120810.UpdateItem".into(),
                read_ms: Some(0.1),
                wait_ms: Some(2.0),
                handle_ms: Some(3.0),
            };
            4
        ];
        let report = LoadReport::new(8, false, Duration::from_secs(10), samples, Some(calls));
        assert_eq!(report.requests, 100);
        assert_eq!(report.per_second, 10.0);
        assert_eq!(
            (report.p50_ms, report.p99_ms, report.max_ms),
            (50.0, 99.0, 1500.0)
        );
        assert_eq!((report.server_errors, report.client_errors), (1, 0));
        assert_eq!(
            (report.ratio, report.p99_ok, report.no_5xx_ok),
            (0.1, true, false)
        );
        let table = report.table();
        let figures: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with("8 "))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            figures,
            [
                "8", "100", "10.0", "50", "99", "1500", "1", "0", "1000", "0.10", "ok", "over"
            ],
            "{table}"
        );
        assert!(table.contains("503 POST /api/v1/orders: boom"), "{table}");
        let aws = report.aws.as_ref().unwrap();
        assert_eq!((aws.calls, aws.per_request), (4, 0.04));
        assert!((aws.busy - 0.0012).abs() < 1e-9);
        println!("{table}");
        assert_eq!(report.json()["5xx"], 1);
    }
}
