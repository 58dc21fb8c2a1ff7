//! An OTLP/HTTP trace receiver, the test's stand-in for the collector of the AWS Distro for
//! OpenTelemetry Lambda layer: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`,
//! decoded with the OpenTelemetry proto types and kept in memory. It runs on a thread and a
//! runtime of its own, for the whole test binary (the exporter is process-wide, like the logger).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::header, response::IntoResponse};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use prost::Message as _;
use tokio::sync::watch;

/// One received span, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id, 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent's span id (16 hex digits), or empty for a root span.
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    pub fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    pub fn is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }

    /// An attribute as text (strings as they are, numbers and booleans printed, arrays of
    /// strings joined with `,`).
    pub fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .span
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(text(value))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::ArrayValue(array) => array
            .values
            .iter()
            .filter_map(|v| v.value.as_ref())
            .map(text)
            .collect::<Vec<_>>()
            .join(","),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
struct Received {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    count: Arc<watch::Sender<usize>>,
}

/// The receiver: its endpoint (the exporter's `OTEL_EXPORTER_OTLP_ENDPOINT`) and what it got.
pub struct Receiver {
    pub endpoint: String,
    received: Received,
}

impl Receiver {
    /// Starts on `127.0.0.1` and a free port; it lives as long as the process.
    #[allow(clippy::expect_used)]
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let endpoint = format!(
            "http://{}",
            listener.local_addr().expect("the receiver's address")
        );
        let received = Received {
            spans: Arc::default(),
            count: Arc::new(watch::channel(0).0),
        };
        let state = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = Router::new()
                    .route("/v1/traces", axum::routing::post(export))
                    .with_state(state);
                axum::serve(listener, app).await.expect("the receiver");
            });
        });
        Self { endpoint, received }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .spans
            .lock()
            .map(|spans| spans.clone())
            .unwrap_or_default()
    }

    /// Waits (at most 20 s) until `found` answers for the spans received, and returns its
    /// answer; panics with what was received when the deadline passes.
    #[allow(clippy::expect_used)]
    pub async fn wait_for<T>(&self, what: &str, found: impl Fn(&[ReceivedSpan]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut changes = self.received.count.subscribe();
        loop {
            changes.mark_unchanged();
            if let Some(answer) = found(&self.spans()) {
                return answer;
            }
            let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
            if changed.is_err() {
                let names: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| format!("{} {} <- {}", s.name(), s.span_id(), s.parent_id()))
                    .collect();
                panic!("no {what} within 20 s; received: {names:#?}");
            }
        }
    }
}

async fn export(State(received): State<Received>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            b"not an ExportTraceServiceRequest".to_vec(),
        );
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| ReceivedSpan {
                service: service.clone(),
                span,
            }));
        }
    }
    if let Ok(mut all) = received.spans.lock() {
        all.extend(spans);
        received.count.send_replace(all.len());
    }
    (
        axum::http::StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}
