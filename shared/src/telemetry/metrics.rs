//! Metrics as CloudWatch Embedded Metric Format: each invocation collects its counts in a
//! [`MetricSet`] and flushes them as EMF lines when it ends, so CloudWatch derives the metrics
//! from the log stream with no API call on the request path.
//!
//! Each value is published under its own dimensions and the roll-ups alarms need (see
//! [`dimension_sets`]): one EMF line, several metrics, still no API call.
//!
//! Names are the runbooks' (`lumi_http_requests_total`, `order_created_total`, ...); the
//! namespace is the stack's own, `Lumi/<stack name>` (`METRICS_NAMESPACE`), so two stacks in one
//! account and region never add up each other's counts, and every alarm reads its own stack's.
//! Each line also carries the [`Tags`] (`service`, `stage`, `region`) as properties.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde_json::{Map, Value, json};

use super::{LineSink, Tags};

/// Every stack's namespace starts with this: `Lumi/<stack name>`.
pub const NAMESPACE_PREFIX: &str = "Lumi";

/// Every HTTP request, by function, route and status class.
pub const HTTP_REQUESTS_TOTAL: &str = "lumi_http_requests_total";

type Dimensions = BTreeMap<String, String>;

/// The counts of one invocation. Cheap to clone: clones share the same set.
#[derive(Debug, Clone, Default)]
pub struct MetricSet {
    counts: Arc<Mutex<BTreeMap<(String, Dimensions), f64>>>,
}

impl MetricSet {
    /// Adds `value` to the counter `name` with these dimensions.
    pub fn count(&self, name: &str, dimensions: &[(&str, &str)], value: f64) {
        let dims = dimensions
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((name.to_owned(), dims)).or_insert(0.0) += value;
        }
    }

    /// Writes one EMF document per counter and dimension set in `namespace`, then empties the
    /// set. The `tags` and `properties` (the request id, say) are added to each document for
    /// search, not as dimensions.
    pub fn flush(
        &self,
        sink: &dyn LineSink,
        namespace: &str,
        tags: &Tags,
        properties: &[(&str, &str)],
    ) {
        let drained = match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return,
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        for ((name, dims), value) in drained {
            let mut doc = Map::new();
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp as i64,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": dimension_sets(&dims),
                        "Metrics": [{ "Name": name, "Unit": unit_of(&name) }],
                    }],
                }),
            );
            for (key, value) in tags.fields().iter().chain(properties) {
                doc.insert((*key).to_owned(), Value::String((*value).to_owned()));
            }
            for (key, value) in dims {
                doc.insert(key, Value::String(value));
            }
            doc.insert(name, Value::from(value));
            sink.write_line(&Value::Object(doc).to_string());
        }
    }
}

/// One value of an EMF line, as CloudWatch Logs extracts it: a metric in a namespace, under one
/// of the line's dimension sets (so a line with its roll-ups gives several).
#[derive(Debug, Clone, PartialEq)]
pub struct EmfDatum {
    pub namespace: String,
    pub name: String,
    /// The dimension set's names with the line's values, in the set's order.
    pub dimensions: Vec<(String, String)>,
    pub value: f64,
    /// `Count`, `Milliseconds`, `Bytes`, ...
    pub unit: String,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// The values of one EMF line (`[]` for any other line): what CloudWatch Logs would publish.
/// A directive naming a value or dimension the line does not carry is skipped, as CloudWatch
/// skips it.
pub fn parse_emf(line: &str) -> Vec<EmfDatum> {
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let Some(aws) = doc.get("_aws") else {
        return Vec::new();
    };
    let timestamp_ms = aws.get("Timestamp").and_then(Value::as_i64).unwrap_or(0);
    let mut out = Vec::new();
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array);
    for directive in directives.into_iter().flatten() {
        let Some(namespace) = directive.get("Namespace").and_then(Value::as_str) else {
            continue;
        };
        let sets = directive.get("Dimensions").and_then(Value::as_array);
        let metrics = directive.get("Metrics").and_then(Value::as_array);
        for metric in metrics.into_iter().flatten() {
            let Some(name) = metric.get("Name").and_then(Value::as_str) else {
                continue;
            };
            let Some(value) = doc.get(name).and_then(Value::as_f64) else {
                continue;
            };
            let unit = metric.get("Unit").and_then(Value::as_str).unwrap_or("None");
            for set in sets.into_iter().flatten().filter_map(Value::as_array) {
                let dimensions: Option<Vec<(String, String)>> = set
                    .iter()
                    .map(|key| {
                        let key = key.as_str()?;
                        let value = doc.get(key)?.as_str()?;
                        Some((key.to_owned(), value.to_owned()))
                    })
                    .collect();
                if let Some(dimensions) = dimensions {
                    out.push(EmfDatum {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        dimensions,
                        value,
                        unit: unit.to_owned(),
                        timestamp_ms,
                    });
                }
            }
        }
    }
    out
}

/// The unit, from the name's suffix: `_ms` milliseconds, `_bytes` bytes, else a count. A
/// set adds up what one invocation records under a name (one transform: one value).
fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_ms") {
        "Milliseconds"
    } else if name.ends_with("_bytes") {
        "Bytes"
    } else {
        "Count"
    }
}

/// The dimension sets each value is published under: its own, then the roll-ups alarms and
/// the dashboard read (CloudWatch cannot sum across dimension values in an alarm):
/// `[function]`, `[function, status_class]`, `[status_class]` and `[]` (the whole API).
fn dimension_sets(dims: &Dimensions) -> Vec<Vec<&str>> {
    let full: Vec<&str> = dims.keys().map(String::as_str).collect();
    let has = |name: &str| dims.contains_key(name);
    let mut sets = vec![full];
    let mut add = |set: Vec<&'static str>| {
        if !sets.contains(&set) {
            sets.push(set);
        }
    };
    if has("function") {
        add(vec!["function"]);
        if has("status_class") {
            add(vec!["function", "status_class"]);
        }
    }
    if has("status_class") {
        add(vec!["status_class"]);
    }
    add(Vec::new());
    sets
}

/// `2xx`, `4xx`, ...: the status class dimension.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CapturedLines;

    #[test]
    fn flush_writes_emf_and_empties_the_set() {
        let set = MetricSet::default();
        let dims = [
            ("function", "health"),
            ("route", "GET /x"),
            ("status_class", "2xx"),
        ];
        set.count(HTTP_REQUESTS_TOTAL, &dims, 1.0);
        set.count(HTTP_REQUESTS_TOTAL, &dims, 1.0);
        set.count("order_created_total", &[("function", "orders")], 1.0);
        let sink = CapturedLines::default();
        let tags = Tags::new("prod", "eu-west-1");
        set.flush(&sink, "Lumi/lumi-prod", &tags, &[("request_id", "r-1")]);
        let docs = sink.json();
        assert_eq!(docs.len(), 2);
        let http = docs
            .iter()
            .find(|d| d.get(HTTP_REQUESTS_TOTAL).is_some())
            .unwrap();
        assert_eq!(http[HTTP_REQUESTS_TOTAL], 2.0);
        assert_eq!(http["route"], "GET /x");
        assert_eq!(http["request_id"], "r-1");
        let directive = &http["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Lumi/lumi-prod");
        assert_eq!(
            (&http["service"], &http["stage"], &http["region"]),
            (&json!("lumi"), &json!("prod"), &json!("eu-west-1")),
            "tags as properties"
        );
        assert_eq!(
            directive["Dimensions"][0],
            json!(["function", "route", "status_class"])
        );
        assert_eq!(directive["Metrics"][0]["Name"], HTTP_REQUESTS_TOTAL);
        assert_eq!(
            directive["Dimensions"],
            json!([
                ["function", "route", "status_class"],
                ["function"],
                ["function", "status_class"],
                ["status_class"],
                []
            ]),
            "roll-ups for alarms"
        );
        let orders = docs
            .iter()
            .find(|d| d.get("order_created_total").is_some())
            .unwrap();
        assert_eq!(
            orders["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"], []])
        );

        set.flush(&sink, "Lumi/lumi-prod", &tags, &[]);
        assert_eq!(sink.json().len(), 2, "a flushed set writes nothing again");
    }

    #[test]
    fn an_emf_line_gives_one_value_per_dimension_set() {
        let set = MetricSet::default();
        set.count(
            "order_created_total",
            &[("function", "orders"), ("provider", "manual")],
            2.0,
        );
        let sink = CapturedLines::default();
        set.flush(&sink, "Lumi/s1", &Tags::new("local", "us-east-1"), &[]);
        let data = parse_emf(&sink.lines()[0]);
        let sets: Vec<_> = data.iter().map(|d| d.dimensions.len()).collect();
        assert_eq!(sets, [2, 1, 0], "own dimensions, [function], []");
        assert!(data.iter().all(|d| d.namespace == "Lumi/s1"
            && d.name == "order_created_total"
            && d.value == 2.0
            && d.unit == "Count"
            && d.timestamp_ms > 0));
        assert_eq!(
            data[0].dimensions,
            [
                ("function".to_owned(), "orders".to_owned()),
                ("provider".to_owned(), "manual".to_owned())
            ]
        );
        assert!(parse_emf(r#"{"message":"not a metric"}"#).is_empty());
        assert!(parse_emf("plain text").is_empty());
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
