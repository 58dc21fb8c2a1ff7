//! JSON-line logging: one object per event with `timestamp`, `level`, `message`, the process's
//! [`Tags`] (`service`, `stage`, `region`), the fields of the enclosing spans (the edge's request
//! span brings `request_id`, `function`, `cold_start`) and the event's own fields.
//!
//! Values of sensitive keys (password, token, secret, authorization, cookie, ...) are replaced by
//! `[REDACTED]` before the line is written, also inside JSON-looking string values and in
//! `Bearer` credentials embedded in text. With `TRACING_ENABLED=1` every closed span is written
//! too, with its duration: the runbook's "lightweight spans".

use std::{fmt, sync::Arc, time::Instant};

use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tracing::{
    Event, Id, Level, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Record},
};
use tracing_subscriber::{
    Layer, filter::LevelFilter, layer::Context, prelude::*, registry::LookupSpan,
};

use super::{LineSink, Tags};

pub const REDACTED: &str = "[REDACTED]";

/// Key fragments whose values never reach a log line.
const SENSITIVE_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "signature",
    // A Sentry DSN carries the reporter's key (`errorReportingDsn`).
    "dsn",
];

pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Redacts sensitive keys anywhere in a JSON value, and bearer credentials inside strings.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_sensitive_key(key) {
                    *value = Value::String(REDACTED.into());
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => {
            if let Some(clean) = redact_text(text) {
                *text = clean;
            }
        }
        _ => {}
    }
}

/// A string field may itself be JSON (a logged body) or carry `Bearer <token>`.
fn redact_text(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(mut inner) = serde_json::from_str::<Value>(trimmed)
    {
        let before = inner.clone();
        redact(&mut inner);
        return (inner != before).then(|| inner.to_string());
    }
    let lower = text.to_ascii_lowercase();
    let at = lower.find("bearer ")?;
    let start = at + "bearer ".len();
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .map_or(text.len(), |n| start + n);
    Some(format!("{}{REDACTED}{}", &text[..start], &text[end..]))
}

/// Installs the JSON logger as the process's subscriber (once; later calls keep the first), with
/// the span exporter to `otlp_endpoint` when given ([`super::trace`]).
pub fn init(
    function_name: &str,
    tags: &Tags,
    level: Level,
    spans_enabled: bool,
    sink: Arc<dyn LineSink>,
    otlp_endpoint: Option<&str>,
) {
    let layer = JsonLogLayer::new(function_name, spans_enabled, sink).with_tags(tags);
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(LevelFilter::from_level(level)))
        .with(otlp_endpoint.and_then(|endpoint| super::trace::layer(function_name, endpoint)))
        .try_init();
}

/// The tracing layer that writes JSON lines.
pub struct JsonLogLayer {
    function_name: String,
    /// `service`, `stage`, `region` with their values, first on every line (none until
    /// [`JsonLogLayer::with_tags`]).
    tags: Vec<(&'static str, Value)>,
    spans_enabled: bool,
    sink: Arc<dyn LineSink>,
}

impl JsonLogLayer {
    pub fn new(function_name: &str, spans_enabled: bool, sink: Arc<dyn LineSink>) -> Self {
        Self {
            function_name: function_name.to_owned(),
            tags: Vec::new(),
            spans_enabled,
            sink,
        }
    }

    /// Every line carries these tags. One process serves one stage and region (the local
    /// gateway's functions share its stack), so they are the process's, like its function
    /// name; a request span's `function` still names the function that served it.
    pub fn with_tags(mut self, tags: &Tags) -> Self {
        self.tags = tags
            .fields()
            .iter()
            .map(|(key, value)| (*key, Value::String((*value).to_owned())))
            .collect();
        self
    }

    /// The first fields of every line: time, level, function, tags.
    fn head(&self, level: &str) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(now_rfc3339()));
        line.insert("level".into(), Value::String(level.to_owned()));
        line.insert("function".into(), Value::String(self.function_name.clone()));
        for (key, value) in &self.tags {
            line.insert((*key).to_owned(), value.clone());
        }
        line
    }

    fn write(&self, mut object: Map<String, Value>) {
        // The tags are the process's: no span or event field named like one replaces it.
        for (key, value) in &self.tags {
            object.insert((*key).to_owned(), value.clone());
        }
        let mut value = Value::Object(std::mem::take(&mut object));
        redact(&mut value);
        self.sink.write_line(&value.to_string());
    }
}

/// Span fields for the trace exporter only (`otel.name`, `otel.kind`): not logged.
const OTEL_ONLY: &str = "otel.";

/// The fields of a span, kept in its extensions.
struct SpanFields(Map<String, Value>);
struct SpanStarted(Instant);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let chain = crate::error::error_chain(value);
        self.0.insert(field.name().into(), Value::String(chain));
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl<S> Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        fields.retain(|key, _| !key.starts_with(OTEL_ONLY));
        let mut extensions = span.extensions_mut();
        extensions.insert(SpanFields(fields));
        if self.spans_enabled {
            extensions.insert(SpanStarted(Instant::now()));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
            fields.retain(|key, _| !key.starts_with(OTEL_ONLY));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = self.head(event.metadata().level().as_str());
        // Outer spans first, so inner spans' fields win.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.insert("message".into(), message);
        line.extend(fields);
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().into()),
        );
        self.write(line);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.spans_enabled {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(SpanStarted(started)) = extensions.get::<SpanStarted>() else {
            return;
        };
        let mut line = self.head("TRACE");
        line.insert("type".into(), Value::String("span".into()));
        line.insert("span".into(), Value::String(span.name().into()));
        line.insert(
            "duration_ms".into(),
            Value::from(started.elapsed().as_secs_f64() * 1e3),
        );
        if let Some(parent) = span.parent()
            && let Some(SpanFields(fields)) = parent.extensions().get::<SpanFields>()
            && let Some(request_id) = fields.get("request_id")
        {
            line.insert("request_id".into(), request_id.clone());
        }
        if let Some(SpanFields(fields)) = extensions.get::<SpanFields>() {
            line.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        line.insert(
            "message".into(),
            Value::String(format!("span {} closed", span.name())),
        );
        self.write(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CapturedLines;

    fn capture(spans: bool, f: impl FnOnce()) -> Vec<Value> {
        let lines = CapturedLines::default();
        let subscriber = tracing_subscriber::registry().with(
            JsonLogLayer::new("health", spans, Arc::new(lines.clone()))
                .with_tags(&Tags::new("staging", "eu-west-1")),
        );
        tracing::subscriber::with_default(subscriber, f);
        lines.json()
    }

    #[test]
    fn lines_carry_span_fields_and_redact_secrets() {
        let lines = capture(false, || {
            let span = tracing::info_span!("request", request_id = "req-42", cold_start = true);
            let _guard = span.enter();
            tracing::info!(
                password = "hunter2",
                authorization = "Bearer abc.def",
                body = r#"{"email":"a@b.c","refreshToken":"r-1","errorReportingDsn":"https://k1@h/1"}"#,
                note = "sent Bearer xyz to upstream",
                status = 200,
                "login attempt"
            );
        });
        let line = &lines[0];
        assert_eq!(line["message"], "login attempt");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["function"], "health");
        assert_eq!(line["service"], "lumi");
        assert_eq!(line["stage"], "staging");
        assert_eq!(line["region"], "eu-west-1");
        assert_eq!(line["request_id"], "req-42");
        assert_eq!(line["cold_start"], true);
        assert_eq!(line["status"], 200);
        assert_eq!(line["password"], REDACTED);
        assert_eq!(line["authorization"], REDACTED);
        let body: Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["refreshToken"], REDACTED);
        assert_eq!(body["errorReportingDsn"], REDACTED);
        assert_eq!(body["email"], "a@b.c");
        assert_eq!(line["note"], "sent Bearer [REDACTED] to upstream");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        let raw = line.to_string();
        assert!(!raw.contains("hunter2") && !raw.contains("abc.def") && !raw.contains("r-1"));
    }

    #[test]
    fn spans_are_written_only_when_tracing_is_enabled() {
        let emit = || {
            let span = tracing::info_span!("dynamodb", op = "GetItem");
            span.in_scope(|| tracing::debug!("inside"));
        };
        assert!(capture(false, emit).iter().all(|l| l.get("type").is_none()));
        let lines = capture(true, emit);
        let span = lines.iter().find(|l| l["type"] == "span").unwrap();
        assert_eq!(span["span"], "dynamodb");
        assert_eq!(
            (&span["service"], &span["stage"]),
            (&"lumi".into(), &"staging".into())
        );
        assert_eq!(span["op"], "GetItem");
        assert!(span["duration_ms"].as_f64().unwrap() >= 0.0);
    }

    #[test]
    fn span_fields_for_the_trace_exporter_are_not_logged() {
        let lines = capture(true, || {
            let span = tracing::info_span!("aws", op = "GetItem", otel.kind = "client");
            span.in_scope(|| tracing::info!("inside"));
        });
        assert!(
            lines.iter().all(|l| l.get("otel.kind").is_none()),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| l["op"] == "GetItem"));
    }
}
