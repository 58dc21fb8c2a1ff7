//! `GET /api/v1/metrics`: the stack's metrics in the Prometheus text exposition format (the
//! runbook's "structured metrics endpoint (Prometheus) /metrics").
//!
//! A Lambda container holds only the counts of the requests it served, and only until its
//! invocation flushed them, so the endpoint does not count anything itself: it reads back what
//! every container published (EMF lines, turned into CloudWatch metrics by CloudWatch Logs) from
//! the stack's namespace, `Lumi/<stack name>`:
//!
//! 1. `ListMetrics` in the namespace, paged, at most [`MAX_LIST_PAGES`] pages; the roll-up
//!    dimension sets every EMF line also publishes for the alarms (`[function]`, `[]`, ...) are
//!    left out (a series whose dimensions are a strict part of another series' of the same name
//!    with the same values), so a PromQL `sum` counts each value once;
//! 2. `GetMetricData`, at most [`QUERIES_PER_CALL`] queries a call, one period covering the
//!    window (`METRICS_WINDOW_MINUTES`, default 60, ending at the next whole minute): `Sum` of
//!    every counter; `SampleCount`, `Sum`, `p50`, `p90` and `p99` of every `_ms` metric;
//! 3. rendered: a counter as a **gauge** of the same name (`order_created_total`) whose value is
//!    the CloudWatch sum over the window, since a sum over a sliding window goes down as well as
//!    up and Prometheus's `rate()` would read every decrease as a counter reset (the `HELP`
//!    says so); an `_ms` metric as a summary (quantiles, `_sum`, `_count`, over the window).
//!
//! Every container keeps its last answer for `METRICS_SCRAPE_INTERVAL_SECONDS` (the scrape
//! interval, default 60 s; a `TtlCache`, one reader at a time), so scrapes cost CloudWatch calls
//! at most once an interval per container; when CloudWatch cannot be read the last answer is
//! served, and without one the answer is 503.

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc, time::Duration};

use aws_sdk_cloudwatch::{
    Client,
    primitives::DateTime,
    types::{Dimension, Metric, MetricDataQuery, MetricStat, RecentlyActive},
};
use axum::{
    extract::Extension,
    response::{IntoResponse, Response},
};
use http::header;
use lumi_shared::openapi::{Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized};
use lumi_shared::{
    ApiError, ApiResult, Platform, auth::MetricsReader, aws::LazyClient, cache::TtlCache,
};

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `ListMetrics` pages read at most (500 metrics a page).
pub const MAX_LIST_PAGES: usize = 10;
/// Queries in one `GetMetricData` call (CloudWatch's limit).
pub const QUERIES_PER_CALL: usize = 500;
/// `GetMetricData` pages of one batch read at most (one period per query: one page is usual).
const MAX_DATA_PAGES: usize = 5;
/// The whole reading, every call included.
const READ_DEADLINE: Duration = Duration::from_secs(6);
/// The percentiles of a summary: CloudWatch's statistic and Prometheus's quantile label.
const QUANTILES: [(&str, &str); 3] = [("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99")];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The endpoint's per-container state: the CloudWatch client and the last answer.
pub struct MetricsEndpoint {
    client: LazyClient<Client>,
    namespace: String,
    window: Duration,
    cache: TtlCache<String>,
}

impl MetricsEndpoint {
    /// Built at cold start without I/O (the client is built on the first scrape).
    pub fn new(platform: &Platform) -> Arc<Self> {
        let config = &platform.config;
        Arc::new(Self {
            client: LazyClient::new(&platform.sdk_config, Client::new),
            namespace: config.metrics_namespace.clone(),
            window: config.metrics_endpoint.window,
            cache: TtlCache::new(config.metrics_endpoint.scrape_interval),
        })
    }

    /// The exposition text, from this container's last reading while it is fresh.
    pub async fn text(&self) -> Result<Arc<String>, BoxError> {
        self.cache
            .get_with(|| async {
                tokio::time::timeout(READ_DEADLINE, self.read())
                    .await
                    .map_err(|_| BoxError::from("reading CloudWatch took too long"))?
            })
            .await
    }

    async fn read(&self) -> Result<String, BoxError> {
        let series = own_series(self.list().await?);
        let window_secs = self.window.as_secs() as i64;
        let end = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 1) * 60;
        let start = end - window_secs;
        let queries: Vec<(usize, Stat, MetricDataQuery)> = series
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                Stat::of(&s.name)
                    .iter()
                    .map(|stat| (i, *stat, self.query(i, s, *stat, window_secs)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for batch in queries.chunks(QUERIES_PER_CALL) {
            let mut next_token = None;
            for _ in 0..MAX_DATA_PAGES {
                let answer = self
                    .client
                    .get()
                    .get_metric_data()
                    .start_time(DateTime::from_secs(start))
                    .end_time(DateTime::from_secs(end))
                    .set_metric_data_queries(Some(batch.iter().map(|q| q.2.clone()).collect()))
                    .set_next_token(next_token)
                    .send()
                    .await
                    .map_err(aws_sdk_cloudwatch::Error::from)?;
                for result in answer.metric_data_results.unwrap_or_default() {
                    if let Some(id) = result.id {
                        values
                            .entry(id)
                            .or_default()
                            .extend(result.values.unwrap_or_default());
                    }
                }
                next_token = answer.next_token;
                if next_token.is_none() {
                    break;
                }
            }
        }
        let readings = series
            .into_iter()
            .enumerate()
            .map(|(i, series)| {
                let stats = Stat::of(&series.name)
                    .iter()
                    .map(|stat| {
                        let got = values.get(&stat.id(i)).map_or(&[][..], Vec::as_slice);
                        (*stat, stat.combine(got))
                    })
                    .collect();
                Reading { series, stats }
            })
            .collect::<Vec<_>>();
        Ok(render(&self.namespace, self.window, &readings))
    }

    /// Every metric of the namespace with data in the last 3 hours (or 2 weeks, for a longer
    /// window), at most [`MAX_LIST_PAGES`] pages.
    async fn list(&self) -> Result<Vec<Series>, BoxError> {
        let mut out = Vec::new();
        let mut next_token = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut request = self
                .client
                .get()
                .list_metrics()
                .namespace(&self.namespace)
                .set_next_token(next_token);
            if self.window <= Duration::from_secs(3 * 3600) {
                request = request.recently_active(RecentlyActive::Pt3H);
            }
            let page = request
                .send()
                .await
                .map_err(aws_sdk_cloudwatch::Error::from)?;
            for metric in page.metrics.unwrap_or_default() {
                let Some(name) = metric.metric_name else {
                    continue;
                };
                let mut labels: Vec<(String, String)> = metric
                    .dimensions
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|d| Some((d.name?, d.value?)))
                    .collect();
                labels.sort();
                out.push(Series { name, labels });
            }
            next_token = page.next_token;
            if next_token.is_none() {
                break;
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn query(&self, i: usize, series: &Series, stat: Stat, period: i64) -> MetricDataQuery {
        let dimensions = series
            .labels
            .iter()
            .map(|(name, value)| Dimension::builder().name(name).value(value).build())
            .collect();
        let metric = Metric::builder()
            .namespace(&self.namespace)
            .metric_name(&series.name)
            .set_dimensions(Some(dimensions))
            .build();
        MetricDataQuery::builder()
            .id(stat.id(i))
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(period as i32)
                    .stat(stat.cloudwatch())
                    .build(),
            )
            .return_data(true)
            .build()
    }
}

/// `GET /api/v1/metrics`: the scrape token (Prometheus) or an admin's access token.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "admin",
    operation_id = "prometheusMetrics",
    summary = "The stack's metrics in the Prometheus text exposition format",
    description = "Read back from CloudWatch (the stack's namespace `Lumi/<stack name>`) over the \
        last `METRICS_WINDOW_MINUTES`, cached per container for `METRICS_SCRAPE_INTERVAL_SECONDS`. \
        Counters are gauges of their sum over the window (never use `rate()` on them); `_ms` \
        metrics are summaries (p50, p90, p99, `_sum`, `_count`).",
    security(("scrapeToken" = []), ("accessToken" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String,
            example = "# HELP order_created_total ...\n# TYPE order_created_total gauge\norder_created_total{function=\"orders\",provider=\"manual\"} 3\n"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn scrape(
    _reader: MetricsReader,
    Extension(endpoint): Extension<Arc<MetricsEndpoint>>,
) -> ApiResult<Response> {
    let text = endpoint.text().await.map_err(|error| {
        ApiError::unavailable("the metrics store cannot be read; retry shortly", error)
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.as_str().to_owned(),
    )
        .into_response())
}

/// A CloudWatch metric: its name and dimensions (sorted by name), Prometheus's labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// The series that are not roll-ups: a series whose labels are a strict part of another
/// series' of the same name, with the same values, is the EMF roll-up of that one.
pub fn own_series(all: Vec<Series>) -> Vec<Series> {
    let mut by_name: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for series in &all {
        by_name.entry(&series.name).or_default().push(series);
    }
    let is_rollup = |series: &Series| {
        by_name[series.name.as_str()].iter().any(|other| {
            other.labels.len() > series.labels.len()
                && series
                    .labels
                    .iter()
                    .all(|label| other.labels.contains(label))
        })
    };
    all.iter().filter(|s| !is_rollup(s)).cloned().collect()
}

/// One statistic read for a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Sum,
    Count,
    Quantile(usize),
}

impl Stat {
    /// What is read of a metric: a summary of an `_ms` metric, the sum of any other.
    fn of(name: &str) -> &'static [Stat] {
        if name.ends_with("_ms") {
            &[
                Stat::Count,
                Stat::Sum,
                Stat::Quantile(0),
                Stat::Quantile(1),
                Stat::Quantile(2),
            ]
        } else {
            &[Stat::Sum]
        }
    }

    fn cloudwatch(self) -> &'static str {
        match self {
            Stat::Sum => "Sum",
            Stat::Count => "SampleCount",
            Stat::Quantile(i) => QUANTILES[i].0,
        }
    }

    /// The query id: a lowercase letter first, then letters, digits and `_`.
    fn id(self, series: usize) -> String {
        match self {
            Stat::Sum => format!("m{series}_sum"),
            Stat::Count => format!("m{series}_count"),
            Stat::Quantile(i) => format!("m{series}_{}", QUANTILES[i].0),
        }
    }

    /// The window's value from its datapoints: sums add up (a window may straddle two
    /// periods); a percentile is the newest datapoint's (CloudWatch answers newest first);
    /// none is `None` (a quantile is then left out, a sum is 0).
    fn combine(self, values: &[f64]) -> Option<f64> {
        match self {
            Stat::Sum | Stat::Count => Some(values.iter().sum()),
            Stat::Quantile(_) => values.first().copied(),
        }
    }
}

/// A series and what was read of it.
#[derive(Debug, Clone)]
pub struct Reading {
    pub series: Series,
    pub stats: Vec<(Stat, Option<f64>)>,
}

impl Reading {
    fn get(&self, stat: Stat) -> Option<f64> {
        self.stats
            .iter()
            .find(|(s, _)| *s == stat)
            .and_then(|s| s.1)
    }
}

/// The exposition text: per metric name its `HELP` and `TYPE`, then its series; first the
/// window itself, `lumi_metrics_window_seconds`.
pub fn render(namespace: &str, window: Duration, readings: &[Reading]) -> String {
    let minutes = window.as_secs() / 60;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP lumi_metrics_window_seconds Every other value here is what CloudWatch holds in {} for this many seconds before the scrape (ending at the next whole minute).",
        escape_help(namespace)
    );
    let _ = writeln!(out, "# TYPE lumi_metrics_window_seconds gauge");
    let _ = writeln!(out, "lumi_metrics_window_seconds {}", window.as_secs());
    let mut by_name: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
    for reading in readings {
        by_name
            .entry(metric_name(&reading.series.name))
            .or_default()
            .push(reading);
    }
    for (name, readings) in by_name {
        let summary = name.ends_with("_ms");
        if summary {
            let _ = writeln!(
                out,
                "# HELP {name} {name} over the last {minutes} minutes in CloudWatch ({}): percentiles as quantiles, _sum and _count of the window's values (sliding-window values, not monotonic).",
                escape_help(namespace)
            );
            let _ = writeln!(out, "# TYPE {name} summary");
        } else {
            let _ = writeln!(
                out,
                "# HELP {name} {name}: the sum over the last {minutes} minutes in CloudWatch ({}); a gauge over a sliding window, not a monotonic counter: read it as it is, not with rate().",
                escape_help(namespace)
            );
            let _ = writeln!(out, "# TYPE {name} gauge");
        }
        for reading in readings {
            let labels = &reading.series.labels;
            if summary {
                for (i, (_, quantile)) in QUANTILES.iter().enumerate() {
                    if let Some(value) = reading.get(Stat::Quantile(i)) {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            label_set(labels, Some(quantile)),
                            number(value)
                        );
                    }
                }
                let sum = reading.get(Stat::Sum).unwrap_or(0.0);
                let count = reading.get(Stat::Count).unwrap_or(0.0);
                let _ = writeln!(out, "{name}_sum{} {}", label_set(labels, None), number(sum));
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    label_set(labels, None),
                    number(count)
                );
            } else {
                let value = reading.get(Stat::Sum).unwrap_or(0.0);
                let _ = writeln!(out, "{name}{} {}", label_set(labels, None), number(value));
            }
        }
    }
    out
}

/// `{a="1",b="2"}` (with `quantile` last), or nothing without labels.
fn label_set(labels: &[(String, String)], quantile: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{}=\"{}\"", label_name(name), escape_label(value)))
        .collect();
    if let Some(quantile) = quantile {
        parts.push(format!("quantile=\"{quantile}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A metric name as Prometheus allows it: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colons: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[(&str, &str)]) -> Series {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        Series {
            name: name.into(),
            labels,
        }
    }

    #[test]
    fn rollups_are_left_out() {
        let full = series(
            "lumi_http_requests_total",
            &[
                ("function", "orders"),
                ("route", "GET /x"),
                ("status_class", "2xx"),
            ],
        );
        let other = series(
            "lumi_http_requests_total",
            &[
                ("function", "health"),
                ("route", "GET /y"),
                ("status_class", "2xx"),
            ],
        );
        let all = vec![
            full.clone(),
            other.clone(),
            series("lumi_http_requests_total", &[("function", "orders")]),
            series(
                "lumi_http_requests_total",
                &[("function", "orders"), ("status_class", "2xx")],
            ),
            series("lumi_http_requests_total", &[("status_class", "2xx")]),
            series("lumi_http_requests_total", &[]),
            series("lumi_backup_runs_total", &[("outcome", "success")]),
            series("lumi_backup_runs_total", &[]),
        ];
        assert_eq!(
            own_series(all),
            [
                full,
                other,
                series("lumi_backup_runs_total", &[("outcome", "success")])
            ]
        );
    }

    #[test]
    fn counters_are_window_gauges_and_latencies_summaries() {
        let readings = [
            Reading {
                series: series(
                    "order_created_total",
                    &[("function", "orders"), ("provider", "manual")],
                ),
                stats: vec![(Stat::Sum, Some(2.0))],
            },
            Reading {
                series: series("lumi_image_transform_ms", &[("function", "images")]),
                stats: vec![
                    (Stat::Count, Some(4.0)),
                    (Stat::Sum, Some(50.5)),
                    (Stat::Quantile(0), Some(10.0)),
                    (Stat::Quantile(1), Some(20.0)),
                    (Stat::Quantile(2), None),
                ],
            },
            Reading {
                series: series("odd name", &[("we\"ird", "a\\b\nc")]),
                stats: vec![(Stat::Sum, None)],
            },
        ];
        let text = render("Lumi/s1", Duration::from_secs(3600), &readings);
        assert!(text.contains("# TYPE order_created_total gauge\n"));
        assert!(text.contains("order_created_total{function=\"orders\",provider=\"manual\"} 2\n"));
        assert!(text.contains("not a monotonic counter"));
        assert!(text.contains("# TYPE lumi_image_transform_ms summary\n"));
        assert!(
            text.contains("lumi_image_transform_ms{function=\"images\",quantile=\"0.5\"} 10\n")
        );
        assert!(
            !text.contains("quantile=\"0.99\""),
            "no datapoint, no quantile"
        );
        assert!(text.contains("lumi_image_transform_ms_sum{function=\"images\"} 50.5\n"));
        assert!(text.contains("lumi_image_transform_ms_count{function=\"images\"} 4\n"));
        assert!(
            text.contains("odd_name{we_ird=\"a\\\\b\\nc\"} 0\n"),
            "{text}"
        );
        assert!(text.starts_with("# HELP lumi_metrics_window_seconds"));
        assert!(text.contains("lumi_metrics_window_seconds 3600\n"));
    }

    #[test]
    fn query_ids_are_valid_and_windows_combine() {
        for stat in Stat::of("x_ms") {
            let id = stat.id(12);
            assert!(
                id.starts_with('m') && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            );
        }
        assert_eq!(Stat::Sum.combine(&[1.0, 2.0]), Some(3.0));
        assert_eq!(Stat::Sum.combine(&[]), Some(0.0));
        assert_eq!(Stat::Quantile(2).combine(&[7.0, 9.0]), Some(7.0));
        assert_eq!(Stat::Quantile(2).combine(&[]), None);
    }
}
