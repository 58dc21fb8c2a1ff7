//! Traces: with `TRACING_ENABLED=1` the spans of the `lumi_*` crates are exported over OTLP/HTTP
//! (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`, the collector
//! the AWS Distro for OpenTelemetry Lambda layer runs beside the function), besides being written
//! as log lines ([`super::log`]). Off, no exporter exists and every function here returns at once.
//!
//! - One server span per request (the edge's `request` span): the route, method, status, request
//!   id and function; it continues the caller's trace when the request carries a W3C
//!   `traceparent` or X-Ray's `X-Amzn-Trace-Id` (`Root=…;Parent=…`) ([`remote_parent`]).
//! - One client span per AWS call ([`aws_span`], [`aws_call`]; `Db::call` for DynamoDB):
//!   `rpc.service`, `rpc.method`, `aws.dynamodb.table_names`, its duration, and on failure
//!   `error.type` and an error status.
//! - A message carries the trace of the request that queued it: the outbox keeps
//!   [`current_traceparent`] with the message and sends it as the SQS message attribute
//!   `traceparent`; the consumer's span per record ([`message_span`]) is its child.
//! - [`flush`] exports what is buffered before an invocation ends (Lambda freezes the container
//!   after it): `run_http`, `run_sqs` and `run_events` call it after each invocation. Spans also
//!   leave in the background every few seconds (the batch processor's own thread).
//!
//! Only spans of the `lumi_*` crates are exported (not the SDK's or hyper's own), and no events:
//! the log lines carry those.

use std::{
    future::Future,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use opentelemetry::{
    Context, KeyValue,
    trace::{
        SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    },
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{Layer, filter::LevelFilter, registry::LookupSpan};

/// The W3C trace-context header, and the SQS message attribute that carries it.
pub const TRACEPARENT: &str = "traceparent";
/// X-Ray's trace header (`Root=1-…-…;Parent=…;Sampled=…`).
pub const X_AMZN_TRACE_ID: &str = "x-amzn-trace-id";

/// How long one export may take: a flush delays the end of its invocation by at most this.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The layer that exports spans to `<endpoint>/v1/traces`, for [`super::log::init`]; `None` (with
/// a message on stderr) when the exporter cannot be built.
pub fn layer<S>(service: &str, endpoint: &str) -> Option<impl Layer<S> + use<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let provider = match provider(service, endpoint) {
        Ok(provider) => provider,
        Err(error) => {
            // The logger is not installed yet: this is the one place that writes to stderr.
            eprintln!("traces are not exported: {error}");
            return None;
        }
    };
    let tracer = PROVIDER.get_or_init(|| provider).tracer("lumi");
    ENABLED.store(true, Ordering::Relaxed);
    let only_ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("lumi_")
    })
    .with_max_level_hint(LevelFilter::DEBUG);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(only_ours),
    )
}

fn provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service.to_owned()),
            KeyValue::new("faas.name", service.to_owned()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(OwnRuntime {
            inner: exporter,
            runtime,
        })
        .build())
}

/// The OTLP exporter on a runtime of its own: the batch processor exports from its own thread,
/// outside the function's runtime, and hyper needs one (and the function's may be busy or, in a
/// test binary, gone).
#[derive(Debug)]
struct OwnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl SpanExporter for OwnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let result = self.runtime.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Exports every finished span before the invocation ends, on the blocking pool (never on the
/// runtime's threads); a failure is logged and changes nothing else.
pub async fn flush() {
    let Some(provider) = PROVIDER.get().cloned() else {
        return;
    };
    match tokio::task::spawn_blocking(move || provider.force_flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "spans not exported"),
        Err(error) => tracing::warn!(%error, "spans not exported"),
    }
}

/// The caller's trace a request continues: W3C `traceparent` first, else X-Ray's
/// `X-Amzn-Trace-Id` with both `Root` and `Parent`.
pub fn remote_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header(TRACEPARENT)
        .and_then(parse_traceparent)
        .or_else(|| header(X_AMZN_TRACE_ID).and_then(parse_xray))
}

/// `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>` (W3C Trace Context, version
/// 00; a later version is read by the same first four fields, as the standard says).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    if version.len() != 2
        || version.eq_ignore_ascii_case("ff")
        || (version == "00" && rest.is_some())
        || flags.len() != 2
    {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    remote_context(trace_id, span_id, flags & 1 == 1)
}

/// X-Ray's `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`: the root's two hex parts
/// are the trace id; a missing `Sampled` leaves the decision here (sampled).
pub fn parse_xray(value: &str) -> Option<SpanContext> {
    let (mut root, mut parent, mut sampled) = (None, None, true);
    for part in value.split(';') {
        let Some(pair) = part.trim().split_once('=') else {
            continue;
        };
        match pair {
            ("Root", root_id) => root = Some(root_id),
            ("Parent", id) => parent = Some(id),
            ("Sampled", flag) => sampled = flag != "0",
            _ => {}
        }
    }
    let mut root_parts = root?.split('-');
    let (version, epoch, unique) = (root_parts.next()?, root_parts.next()?, root_parts.next()?);
    if version != "1" || epoch.len() != 8 || unique.len() != 24 || root_parts.next().is_some() {
        return None;
    }
    remote_context(&format!("{epoch}{unique}"), parent?, sampled)
}

fn remote_context(trace_id: &str, span_id: &str, sampled: bool) -> Option<SpanContext> {
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(trace_id, 32) || !is_hex(span_id, 16) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// `span`'s own context as a `traceparent` value, when tracing is on and the span is exported.
pub fn traceparent(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The current span's `traceparent`: what a message queued now carries to its consumer.
pub fn current_traceparent() -> Option<String> {
    traceparent(&Span::current())
}

fn set_parent(span: &Span, parent: Option<SpanContext>) {
    if let Some(parent) = parent {
        // Only fails for a span already started or not exported: nothing to continue then.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
}

/// Gives the edge's request span its remote parent and its attributes (HTTP semantic
/// conventions); called before the span is entered.
pub fn start_request(span: &Span, headers: &http::HeaderMap, method: &str, route: Option<&str>) {
    if !enabled() {
        return;
    }
    set_parent(span, remote_parent(headers));
    span.set_attribute("http.request.method", method.to_owned());
    if let Some(route) = route {
        span.set_attribute("http.route", route.to_owned());
    }
}

/// The request's status on its span; a 5xx is an error.
pub fn finish_request(span: &Span, status: u16) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_attribute("error.type", status.to_string());
        span.set_status(Status::error(format!("{status}")));
    }
}

/// The span of one AWS call (a client span named `<service>.<operation>`); `table` for
/// DynamoDB. Record its outcome with [`aws_failed`].
pub fn aws_span(service: &'static str, operation: &'static str, table: Option<&str>) -> Span {
    let span = tracing::debug_span!(
        "aws",
        aws_service = service,
        op = operation,
        table,
        otel.name = %format_args!("{service}.{operation}"),
        otel.kind = "client",
    );
    if enabled() {
        span.set_attribute("rpc.system", "aws-api");
        span.set_attribute("rpc.service", service);
        span.set_attribute("rpc.method", operation);
        if let Some(table) = table {
            span.set_attribute(
                "aws.dynamodb.table_names",
                opentelemetry::Value::Array(
                    vec![opentelemetry::StringValue::from(table.to_owned())].into(),
                ),
            );
        }
    }
    span
}

/// Marks an AWS call's span failed: `error.type` is the service's error code (or `Timeout`,
/// `Unreachable`).
pub fn aws_failed(span: &Span, code: &str) {
    if !enabled() {
        return;
    }
    span.set_attribute("error.type", code.to_owned());
    span.set_status(Status::error(code.to_owned()));
}

/// Runs one AWS SDK call (other than `Db::call`'s) in its span, its failure recorded there. The
/// call is boxed: an SDK call's future is large, and this one stays small where it is awaited.
pub fn aws_call<T, E, R, F>(
    service: &'static str,
    operation: &'static str,
    table: Option<&str>,
    call: F,
) -> impl Future<Output = Result<T, SdkError<E, R>>> + use<T, E, R, F>
where
    E: ProvideErrorMetadata,
    F: Future<Output = Result<T, SdkError<E, R>>>,
{
    use tracing::Instrument as _;
    let span = aws_span(service, operation, table);
    let call = Box::pin(call).instrument(span.clone());
    async move {
        let outcome = call.await;
        if let Err(error) = &outcome {
            aws_failed(&span, &sdk_error_code(error));
        }
        outcome
    }
}

/// An SDK error's code as an `error.type`.
pub fn sdk_error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> String {
    match error {
        SdkError::TimeoutError(_) => "Timeout",
        SdkError::DispatchFailure(_) => "Unreachable",
        _ => error.code().unwrap_or("Unknown"),
    }
    .to_owned()
}

/// The consumer span of one SQS record of `function`: a child of the span that queued it when
/// the record carries its `traceparent` attribute.
pub fn message_span(function: &str, record: &aws_lambda_events::sqs::SqsMessage) -> Span {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let span = tracing::info_span!(
        "message",
        function,
        message_id,
        otel.name = %format_args!("{function} process"),
        otel.kind = "consumer",
    );
    if enabled() {
        let parent = record
            .message_attributes
            .get(TRACEPARENT)
            .and_then(|attribute| attribute.string_value.as_deref())
            .and_then(parse_traceparent);
        set_parent(&span, parent);
        span.set_attribute("messaging.system", "aws_sqs");
        span.set_attribute("messaging.operation.type", "process");
        span.set_attribute("messaging.message.id", message_id.to_owned());
        span.set_attribute("faas.trigger", "pubsub");
    }
    span
}

/// The span of one invocation of an event-fed function (a schedule, Secrets Manager).
pub fn event_span(function: &str) -> Span {
    tracing::info_span!(
        "event",
        function,
        otel.name = %format_args!("{function} invoke"),
        otel.kind = "server",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_and_xray_headers_name_the_parent() {
        let w3c =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            w3c.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(w3c.span_id().to_string(), "00f067aa0ba902b7");
        assert!(w3c.is_sampled() && w3c.is_remote());
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }

        let xray = parse_xray(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(
            xray.trace_id().to_string(),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(xray.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(xray.is_sampled());
        assert!(
            !parse_xray(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            )
            .unwrap()
            .is_sampled()
        );
        assert!(parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793").is_none());
        assert!(
            parse_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
                .is_none()
        );

        let mut headers = http::HeaderMap::new();
        headers.insert(
            X_AMZN_TRACE_ID,
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
                .parse()
                .unwrap(),
        );
        assert_eq!(remote_parent(&headers), Some(xray));
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(remote_parent(&headers), Some(w3c));
    }
}
