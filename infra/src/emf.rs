//! The local stack's CloudWatch Logs, as far as metrics go: in AWS, CloudWatch Logs turns the
//! EMF lines a function prints into CloudWatch metrics with no API call. Locally nothing reads
//! stdout, so [`EmfPublisher`], the metrics sink of `make dev` and of the tests that read
//! metrics back, prints each line as before (to the sink it wraps) and publishes its values to
//! the local stack's CloudWatch with `PutMetricData`: the Prometheus endpoint then reads the
//! same metrics locally as in AWS.
//!
//! Off the request path and bounded: `write_line` parses the line and queues its values on a
//! bounded channel (a full queue drops values and counts them, it never blocks a request); one
//! background task sends them in batches of at most [`BATCH`] values, one namespace per call,
//! one call at a time (moto serves one request at a time). [`EmfPublisher::flush`] waits until
//! everything queued before it has been sent: tests call it before they read the metrics back.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::{
    Client,
    primitives::DateTime,
    types::{Dimension, MetricDatum, StandardUnit},
};
use lumi_shared::telemetry::{
    LineSink,
    metrics::{EmfDatum, parse_emf},
};
use tokio::sync::{mpsc, oneshot};

/// Values queued and not yet sent, at most.
pub const QUEUE: usize = 10_000;
/// Values in one `PutMetricData` call, at most (CloudWatch takes 1 000).
pub const BATCH: usize = 500;

enum Message {
    Datum(EmfDatum),
    Flush(oneshot::Sender<()>),
}

/// A metrics sink that prints (through the sink it wraps) and publishes to CloudWatch.
pub struct EmfPublisher {
    inner: Arc<dyn LineSink>,
    queue: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl EmfPublisher {
    /// Starts the publishing task on the current runtime; lines are also written to `inner`.
    pub fn spawn(sdk_config: &SdkConfig, inner: Arc<dyn LineSink>) -> Arc<Self> {
        let (queue, received) = mpsc::channel(QUEUE);
        tokio::spawn(publish(Client::new(sdk_config), received));
        Arc::new(Self {
            inner,
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    /// Returns once every value queued before the call has been sent (or failed to send).
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = sent.await;
        }
    }

    /// Values dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl LineSink for EmfPublisher {
    fn write_line(&self, line: &str) {
        self.inner.write_line(line);
        for datum in parse_emf(line) {
            if self.queue.try_send(Message::Datum(datum)).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The background task: batches what is queued and sends it, until every sender is gone.
async fn publish(client: Client, mut received: mpsc::Receiver<Message>) {
    let mut pending: Vec<EmfDatum> = Vec::new();
    while let Some(message) = received.recv().await {
        let mut flushes = Vec::new();
        let mut next = Some(message);
        // Everything already queued, up to a batch, goes in this round.
        while let Some(message) = next.take() {
            match message {
                Message::Datum(datum) => pending.push(datum),
                Message::Flush(done) => flushes.push(done),
            }
            if pending.len() >= BATCH || !flushes.is_empty() {
                break;
            }
            next = received.try_recv().ok();
        }
        send(&client, std::mem::take(&mut pending)).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// One `PutMetricData` call per namespace and batch. A failed call is logged and its values
/// lost, as a local stack may be stopping.
async fn send(client: &Client, data: Vec<EmfDatum>) {
    let mut by_namespace: std::collections::BTreeMap<String, Vec<MetricDatum>> =
        std::collections::BTreeMap::new();
    for datum in data {
        let dimensions = datum
            .dimensions
            .iter()
            .map(|(name, value)| Dimension::builder().name(name).value(value).build())
            .collect();
        by_namespace.entry(datum.namespace).or_default().push(
            MetricDatum::builder()
                .metric_name(datum.name)
                .set_dimensions(Some(dimensions))
                .value(datum.value)
                .unit(StandardUnit::from(datum.unit.as_str()))
                .timestamp(DateTime::from_millis(datum.timestamp_ms))
                .build(),
        );
    }
    for (namespace, data) in by_namespace {
        for batch in data.chunks(BATCH) {
            let sent = client
                .put_metric_data()
                .namespace(&namespace)
                .set_metric_data(Some(batch.to_vec()))
                .send()
                .await;
            if let Err(error) = sent {
                tracing::warn!(
                    %namespace,
                    error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&error),
                    "publishing EMF values to the local CloudWatch failed"
                );
            }
        }
    }
}
