//! Telemetry: JSON-line logs ([`log`]) and CloudWatch Embedded Metric Format metrics
//! ([`metrics`]), internal errors sent to a Sentry-compatible reporter ([`report`]), and, with
//! `TRACING_ENABLED=1`, spans exported over OTLP ([`trace`]); logs and metrics are both written as lines to stdout, which Lambda ships to CloudWatch Logs (where
//! EMF lines become metrics without any API call).

pub mod log;
pub mod metrics;
pub mod report;
pub mod trace;

use std::sync::{Arc, Mutex};

/// The service every log line and metric line names (the runbook's "tag streams with service,
/// environment and region").
pub const SERVICE: &str = "lumi";

/// What every log line and every EMF line carries besides its own fields: the service, the
/// stage (`STAGE`: local, dev, staging, prod) and the AWS region. Properties, never metric
/// dimensions: the alarms read fixed dimension sets, and the stack's namespace already keeps
/// two stacks' metrics apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub stage: String,
    pub region: String,
}

impl Tags {
    pub fn new(stage: &str, region: &str) -> Self {
        Self {
            stage: stage.to_owned(),
            region: region.to_owned(),
        }
    }

    /// `service`, `stage`, `region`, in that order.
    pub fn fields(&self) -> [(&'static str, &str); 3] {
        [
            ("service", SERVICE),
            ("stage", &self.stage),
            ("region", &self.region),
        ]
    }
}

/// Where finished lines go: stdout in a function, a buffer in a test.
pub trait LineSink: Send + Sync + 'static {
    fn write_line(&self, line: &str);
}

/// Lambda's log stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl LineSink for Stdout {
    fn write_line(&self, line: &str) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // A log line that cannot be written has nowhere else to go.
        let _ = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
    }
}

/// Keeps lines in memory, for tests that assert what was logged or measured.
#[derive(Debug, Default, Clone)]
pub struct CapturedLines(Arc<Mutex<Vec<String>>>);

impl CapturedLines {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|lines| lines.clone()).unwrap_or_default()
    }

    /// The captured lines that parse as JSON objects.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl LineSink for CapturedLines {
    fn write_line(&self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line.to_owned());
        }
    }
}
