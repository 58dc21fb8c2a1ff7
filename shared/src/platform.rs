//! What a container builds once, at cold start, and shares with every request: the validated
//! config, the AWS SDK config and clients, the secret cache and the store.
//!
//! Nothing here does I/O while being built: the SDK clients are built on their first call (see
//! [`crate::aws`]), so a cold start that serves a route without I/O (liveness) pays for none.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use aws_config::SdkConfig;

use crate::{
    aws::LazyClient,
    clock::{Clock, SystemClock},
    config::Config,
    ratelimit::RateLimiter,
    secrets::{CdnOriginTokens, SecretStore},
    settings::SettingsStore,
    store::Db,
    telemetry::{LineSink, Stdout, metrics::MetricSet},
};

pub struct Platform {
    pub config: Config,
    /// For functions that build further clients (S3, SQS, SES) from the same settings.
    pub sdk_config: SdkConfig,
    pub db: Db,
    pub secrets: SecretStore,
    /// The CDN origin secret's tokens, when the function has one (`CDN_ORIGIN_SECRET_ID`).
    pub cdn_origin: Option<CdnOriginTokens>,
    pub settings: SettingsStore,
    pub limiter: RateLimiter,
    /// What time it is for domain rules (reservation expiry, rate limits); tests move it.
    pub clock: Arc<dyn Clock>,
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
        Self::build(config, metrics_sink, Arc::new(SystemClock))
    }

    /// Everything explicit: where metrics go and what time it is (tests move a manual clock).
    pub fn build(
        config: Config,
        metrics_sink: Arc<dyn LineSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let sdk_config = crate::aws::sdk_config(&config);
        let dynamodb = LazyClient::new(&sdk_config, aws_sdk_dynamodb::Client::new);
        let secretsmanager = LazyClient::new(&sdk_config, aws_sdk_secretsmanager::Client::new);
        let db = Db::lazy(dynamodb, config.query_timeout, config.slow_query_threshold);
        Arc::new(Self {
            cdn_origin: config.cdn_origin_secret_id.clone().map(|secret_id| {
                CdnOriginTokens::new(
                    secretsmanager.clone(),
                    secret_id,
                    config.secrets_cache_ttl,
                    config.query_timeout,
                )
            }),
            secrets: SecretStore::new(
                secretsmanager,
                config.config_secret_id.clone(),
                config.secrets_cache_ttl,
                config.query_timeout,
            ),
            settings: SettingsStore::new(
                db.clone(),
                config.tables.app.clone(),
                config.settings_cache_ttl,
                config.rate_limit.timeout,
            ),
            limiter: RateLimiter::new(
                db.clone(),
                config.tables.rate_limit.clone(),
                config.rate_limit.timeout,
                clock.clone(),
            ),
            clock,
            db,
            sdk_config,
            metrics_sink,
            config,
            cold_start: AtomicBool::new(true),
            started: AtomicBool::new(false),
        })
    }

    /// Writes a set's counts as EMF lines in the stack's namespace, tagged with the service,
    /// stage and region (and `properties`, such as the request id), to the metrics sink.
    pub fn flush_metrics(&self, metrics: &MetricSet, properties: &[(&str, &str)]) {
        metrics.flush(
            self.metrics_sink.as_ref(),
            &self.config.metrics_namespace,
            &self.config.tags(),
            properties,
        );
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
