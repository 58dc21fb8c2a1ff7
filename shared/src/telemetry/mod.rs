//! Telemetry: JSON-line logs ([`log`]) and CloudWatch Embedded Metric Format metrics
//! ([`metrics`]), internal errors sent to a Sentry-compatible reporter ([`report`]), and, with
//! `TRACING_ENABLED=1`, spans exported over OTLP ([`trace`]); logs and metrics are both written as lines to stdout, which Lambda ships to CloudWatch Logs (where
//! EMF lines become metrics without any API call).

pub mod log;
pub mod metrics;
pub mod report;
pub mod trace;

use std::sync::{Arc, Mutex};

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
