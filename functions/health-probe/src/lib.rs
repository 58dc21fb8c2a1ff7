//! The health probe: the runbook's "health checks every 30 s with a 2 s timeout", run by AWS
//! rather than by whoever happens to call readiness.
//!
//! An EventBridge schedule invokes the function every minute (`rate(1 minute)`, the finest a
//! schedule goes); each invocation runs two rounds `PROBE_INTERVAL_SECONDS` (30) apart, so the
//! API is probed every 30 s. A round calls, at once and through the public API
//! (`PROBE_BASE_URL`, the API Gateway endpoint: the same path a customer's request takes),
//!
//! - `GET /api/v1/health/ready` (`probe=ready`): DynamoDB, Secrets Manager, the rate-limit store;
//! - `GET /api/v1/health/live` (`probe=live`): the function answers at all;
//!
//! each with a 2 s deadline ([`TIMEOUT`]) on the whole exchange, and publishes the outcome as EMF
//! through the platform's metrics sink, like every other function:
//!
//! - `lumi_health_probe_total{probe, outcome}`: `ok` (a 2xx), `failed` (another status, or no
//!   connection), `timeout` (no whole answer within 2 s). Every round publishes all three outcomes
//!   of both probes, 1 for what happened and 0 for the others, so a failure series has a value
//!   exactly when the probe ran: `ReadinessAlarm` treats a missing value as breaching (no probe
//!   results is a failure too).
//! - `lumi_health_probe_latency_ms{probe}`: how long the answer took (about 2000 on a timeout).
//!
//! A failing readiness does not fail the invocation: the probe did its job, the metric says what
//! it found. The invocation fails only when the probe cannot run (no `PROBE_BASE_URL`, no HTTPS
//! client), which Lambda's `Errors` and the missing metrics both show.
//!
//! Why a scheduled function and not a CloudWatch Synthetics canary (the trade-off, honestly):
//!
//! - Cost. Synthetics bills per canary run (about $0.0012) and schedules at most once a minute:
//!   every 30 s means two runs a minute (two offset canaries), about 86,400 runs or some $100 a
//!   month per stack (still about $50 with one run a minute that waits 30 s inside its script).
//!   This function runs ~31 s a minute at 128 MB: about 43,200 invocations and 170,000
//!   GB-seconds a month, under $3 (and inside Lambda's free tier if the account has room),
//!   plus about ten custom metrics (some $3) and a few hundred MB of logs.
//! - Same code and tools: Rust, the shared bootstrap and metrics sink the alarms already read,
//!   tested against the local stack, run by `make dev`'s scheduler like the backup.
//! - What Synthetics would give that this does not: a runner managed outside this stack (a
//!   broken deploy of this function, or Lambda failing in the region, silences the probe; the
//!   alarm then fires on missing data but cannot say why), probes from other regions,
//!   screenshots and HAR files, multi-step browser journeys. For two GETs and a status check the
//!   function is enough; a browser journey would be Synthetics' job.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};
use lumi_shared::{Platform, bootstrap::EventHandler, telemetry::metrics::MetricSet};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub const PROBE_TOTAL: &str = "lumi_health_probe_total";
pub const PROBE_LATENCY_MS: &str = "lumi_health_probe_latency_ms";

/// Each probe's deadline: connection, request, status and body.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds per invocation: the schedule fires every minute, the runbook asks for every 30 s.
pub const ROUNDS: u32 = 2;

/// What is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Ready,
    Live,
}

impl Target {
    pub const ALL: [Self; 2] = [Self::Ready, Self::Live];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Live => "live",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Ready => "/api/v1/health/ready",
            Self::Live => "/api/v1/health/live",
        }
    }
}

/// How one probe went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Timeout,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Ok, Self::Failed, Self::Timeout];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub probe: Target,
    pub outcome: Outcome,
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why it failed (a connection error), for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the probe is not configured: {0}")]
    NotConfigured(&'static str),
    #[error("no HTTPS client: {0}")]
    Client(#[from] std::io::Error),
    #[error("PROBE_BASE_URL gives no valid URL for {path}: {message}")]
    BadUrl { path: &'static str, message: String },
}

/// The schedule's event: `{"detail": {"job": "probe"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    Probe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeDetail {
    pub job: Job,
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// The function's state: the platform (metrics sink, config) and an HTTPS client built on first
/// use (it reads the trust store: no I/O at cold start).
#[derive(Clone)]
pub struct Probe {
    pub platform: Arc<Platform>,
    client: Arc<OnceLock<HttpsClient>>,
}

impl Probe {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            platform,
            client: Arc::new(OnceLock::new()),
        }
    }

    fn client(&self) -> Result<&HttpsClient, ProbeError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        // Rounds are 30 s apart: each opens its own connection, as a new client would, rather
        // than finding one the API closed in between.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(self.client.get_or_init(|| client))
    }

    fn base_url(&self) -> Result<&str, ProbeError> {
        self.platform
            .config
            .probe
            .base_url
            .as_deref()
            .ok_or(ProbeError::NotConfigured("PROBE_BASE_URL is not set"))
    }

    /// One round: both probes at once, their outcomes published (one EMF flush).
    pub async fn round(&self) -> Result<Vec<ProbeResult>, ProbeError> {
        let base = self.base_url()?;
        let client = self.client()?;
        let uri = |target: Target| -> Result<http::Uri, ProbeError> {
            format!("{base}{}", target.path())
                .parse()
                .map_err(|e: http::uri::InvalidUri| ProbeError::BadUrl {
                    path: target.path(),
                    message: e.to_string(),
                })
        };
        let (ready, live) = (uri(Target::Ready)?, uri(Target::Live)?);
        let (ready, live) = tokio::join!(
            probe(client, Target::Ready, ready),
            probe(client, Target::Live, live)
        );
        let results = vec![ready, live];
        let metrics = MetricSet::default();
        for result in &results {
            for outcome in Outcome::ALL {
                let value = if outcome == result.outcome { 1.0 } else { 0.0 };
                metrics.count(
                    PROBE_TOTAL,
                    &[("probe", result.probe.name()), ("outcome", outcome.name())],
                    value,
                );
            }
            metrics.count(
                PROBE_LATENCY_MS,
                &[("probe", result.probe.name())],
                result.latency_ms as f64,
            );
            match result.outcome {
                Outcome::Ok => tracing::info!(
                    probe = result.probe.name(),
                    status = result.status,
                    latency_ms = result.latency_ms,
                    "probe ok"
                ),
                outcome => tracing::warn!(
                    probe = result.probe.name(),
                    outcome = outcome.name(),
                    status = result.status,
                    latency_ms = result.latency_ms,
                    error = result.error.as_deref(),
                    "probe did not pass"
                ),
            }
        }
        self.platform.flush_metrics(&metrics, &[]);
        Ok(results)
    }

    /// One invocation: [`ROUNDS`] rounds, `PROBE_INTERVAL_SECONDS` apart (counted from the first
    /// round's start, so a slow round does not push the next one back).
    pub async fn run(&self) -> Result<serde_json::Value, ProbeError> {
        let started = Instant::now();
        let interval = self.platform.config.probe.interval;
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            // The schedule's second half-minute: the function's own clock, not a retry loop.
            tokio::time::sleep_until(started + interval * round).await;
            rounds.push(self.round().await?);
        }
        Ok(serde_json::json!({ "job": "probe", "rounds": rounds }))
    }
}

/// One GET with the [`TIMEOUT`] on the whole exchange.
async fn probe(client: &HttpsClient, target: Target, uri: http::Uri) -> ProbeResult {
    let started = Instant::now();
    let exchange = async {
        let request = http::Request::get(uri)
            .header(
                http::header::USER_AGENT,
                concat!("lumi-health-probe/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        // The whole answer: a readiness that sends its headers and then hangs is not ready.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?;
        Ok::<_, String>(status)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (outcome, status, error) = match answer {
        Err(_) => (Outcome::Timeout, None, None),
        Ok(Err(error)) => (Outcome::Failed, None, Some(error)),
        Ok(Ok(status)) if status.is_success() => (Outcome::Ok, Some(status.as_u16()), None),
        Ok(Ok(status)) => (Outcome::Failed, Some(status.as_u16()), None),
    };
    ProbeResult {
        probe: target,
        outcome,
        status,
        latency_ms,
        error,
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    lumi_shared::error::error_chain(error)
}

impl EventHandler for Probe {
    type Event = EventBridgeEvent<ProbeDetail>;
    type Output = serde_json::Value;

    async fn handle(&self, event: Self::Event) -> Result<Self::Output, lambda_runtime::Error> {
        match event.detail.job {
            Job::Probe => Ok(self.run().await?),
        }
    }
}
