//! The few lines between a function's `main` and the Lambda runtime:
//!
//! ```no_run
//! # fn routes(_: std::sync::Arc<lumi_shared::Platform>) -> axum::Router { axum::Router::new() }
//! #[tokio::main]
//! async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
//!     lumi_shared::bootstrap::run_http("health", routes).await
//! }
//! ```
//!
//! Once per cold start: JSON logging, the typed config (a bad one stops the container with a
//! message naming the variable), the AWS clients; then the router, behind the shared edge, is
//! handed to `lambda_http::run`. The local gateway builds the same router with [`app`]. Queue-fed
//! and event-fed functions get the same start-up through [`run_sqs`] and [`run_events`]. With
//! `TRACING_ENABLED=1` each invocation's spans are exported before it ends
//! ([`telemetry::trace::flush`]).

use std::sync::Arc;

use axum::Router;
use tracing::Instrument as _;

use crate::{
    config::{Config, ConfigError, Env},
    platform::Platform,
    telemetry::{self, Stdout},
};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the Lambda runtime stopped: {0}")]
    Runtime(lambda_http::Error),
}

/// Builds a function's platform from its environment, with logging installed.
pub async fn platform(function_name: &str, env: &Env) -> Result<Arc<Platform>, BootError> {
    let config = match Config::from_env(function_name, env) {
        Ok(config) => config,
        Err(error) => {
            let tags = telemetry::Tags::new(
                env.get("STAGE").unwrap_or("local"),
                env.get("AWS_REGION")
                    .or_else(|| env.get("AWS_DEFAULT_REGION"))
                    .unwrap_or("us-east-1"),
            );
            telemetry::log::init(
                function_name,
                &tags,
                tracing::Level::INFO,
                false,
                Arc::new(Stdout),
                None,
            );
            tracing::error!(%error, "invalid configuration; the function cannot start");
            return Err(error.into());
        }
    };
    telemetry::log::init(
        function_name,
        &config.tags(),
        config.log_level,
        config.tracing_enabled,
        Arc::new(Stdout),
        config
            .tracing_enabled
            .then_some(config.otlp_endpoint.as_str()),
    );
    Ok(Platform::new(config).await)
}

/// A function's routes behind the shared edge, its start-up marked complete.
pub fn app(platform: Arc<Platform>, routes: impl FnOnce(Arc<Platform>) -> Router) -> Router {
    let router = crate::http::serve(platform.clone(), routes(platform.clone()));
    platform.mark_started();
    router
}

/// Runs an HTTP function on Lambda: the whole of its `main`.
pub async fn run_http(
    function_name: &str,
    routes: impl FnOnce(Arc<Platform>) -> Router,
) -> Result<(), BootError> {
    let platform = platform(function_name, &Env::from_process()).await?;
    let router = app(platform, routes);
    // The invocation's spans leave before Lambda freezes the container.
    let service = tower::service_fn(move |request: lambda_http::Request| {
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, request).await;
            telemetry::trace::flush().await;
            response
        }
    });
    lambda_http::run(service).await.map_err(BootError::Runtime)
}

/// An SQS-fed function: one batch in, the failed records out (`ReportBatchItemFailures`).
pub trait SqsHandler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
    ) -> impl std::future::Future<Output = aws_lambda_events::sqs::SqsBatchResponse> + Send;
}

/// Runs an SQS-fed function on Lambda: the whole of its `main`.
pub async fn run_sqs<H: SqsHandler>(
    function_name: &str,
    make: impl FnOnce(Arc<Platform>) -> H,
) -> Result<(), BootError> {
    let platform = platform(function_name, &Env::from_process()).await?;
    platform.mark_started();
    let handler = make(platform);
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
            let handler = handler.clone();
            async move {
                let response = handler.handle(event.payload).await;
                telemetry::trace::flush().await;
                Ok::<_, lambda_runtime::Error>(response)
            }
        },
    );
    lambda_runtime::run(service)
        .await
        .map_err(BootError::Runtime)
}

/// A function fed whole events (EventBridge schedules, direct invocations): one event in, one
/// JSON answer out; an `Err` fails the invocation, so Lambda's `Errors` metric and the
/// schedule's retries see it.
pub trait EventHandler: Clone + Send + Sync + 'static {
    type Event: serde::de::DeserializeOwned + Send + 'static;
    type Output: serde::Serialize + Send + 'static;
    fn handle(
        &self,
        event: Self::Event,
    ) -> impl std::future::Future<Output = Result<Self::Output, lambda_runtime::Error>> + Send;
}

/// Runs an event-fed function on Lambda: the whole of its `main`.
pub async fn run_events<H: EventHandler>(
    function_name: &str,
    make: impl FnOnce(Arc<Platform>) -> H,
) -> Result<(), BootError> {
    let platform = platform(function_name, &Env::from_process()).await?;
    platform.mark_started();
    let handler = make(platform.clone());
    let service =
        lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<H::Event>| {
            let handler = handler.clone();
            let span = telemetry::trace::event_span(&platform.config.function_name);
            async move {
                // Boxed: a backup job's future is too large to sit inside the runtime's.
                let outcome = Box::pin(handler.handle(event.payload))
                    .instrument(span)
                    .await;
                telemetry::trace::flush().await;
                outcome
            }
        });
    lambda_runtime::run(service)
        .await
        .map_err(BootError::Runtime)
}
