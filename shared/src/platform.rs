//! What a container builds once, at cold start, and shares with every request: the validated
//! config, the AWS SDK config and clients, the secret cache and the store.
//!
//! Nothing here does I/O while being built: the SDK resolves credentials and opens connections
//! on the first call, so a cold start that serves a route without I/O (liveness) pays for none.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use aws_credential_types::Credentials;

use crate::{
    config::Config,
    secrets::SecretStore,
    store::Db,
    telemetry::{LineSink, Stdout},
};

pub struct Platform {
    pub config: Config,
    /// For functions that build further clients (S3, SQS, SES) from the same settings.
    pub sdk_config: SdkConfig,
    pub db: Db,
    pub secrets: SecretStore,
    /// Where EMF metric lines go (stdout in Lambda).
    pub metrics_sink: Arc<dyn LineSink>,
    cold_start: AtomicBool,
    started: AtomicBool,
}

impl Platform {
    /// Builds the container's state; metrics go to stdout.
    pub async fn new(config: Config) -> Arc<Self> {
        Self::with_metrics_sink(config, Arc::new(Stdout)).await
    }

    pub async fn with_metrics_sink(config: Config, metrics_sink: Arc<dyn LineSink>) -> Arc<Self> {
        let sdk_config = sdk_config(&config).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config);
        let secretsmanager = aws_sdk_secretsmanager::Client::new(&sdk_config);
        Arc::new(Self {
            db: Db::new(dynamodb, config.query_timeout, config.slow_query_threshold),
            secrets: SecretStore::new(
                secretsmanager,
                config.config_secret_id.clone(),
                config.secrets_cache_ttl,
                config.query_timeout,
            ),
            sdk_config,
            metrics_sink,
            config,
            cold_start: AtomicBool::new(true),
            started: AtomicBool::new(false),
        })
    }

    /// True for the first request this container serves, false after.
    pub fn take_cold_start(&self) -> bool {
        self.cold_start.swap(false, Ordering::Relaxed)
    }

    /// Start-up has completed: readiness may report ready.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// The SDK settings: the region from config; locally the endpoint of the moto server and
/// placeholder credentials (moto accepts any), in AWS the default credential chain.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(1))
                .operation_timeout(config.query_timeout)
                .build(),
        );
    if let Some(endpoint) = &config.aws_endpoint_url {
        loader = loader
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "lumi-local",
                "lumi-local",
                None,
                None,
                "local",
            ));
    }
    loader.load().await
}
