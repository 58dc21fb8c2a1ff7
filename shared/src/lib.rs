//! The common crate every Lumi function stands on.
//!
//! A function's `main.rs` calls [`bootstrap::run_http`] with its name and its router builder;
//! everything around the router is here, so every function behaves the same at the edge:
//!
//! - [`config`]: typed configuration from the environment, validated once per cold start.
//! - [`aws`]: SDK settings and clients built on first use.
//! - [`platform`]: what a container builds once (config, AWS clients, secret cache, store) and
//!   shares with every request.
//! - [`secrets`]: the Secrets Manager secret, cached per container with a TTL and refreshed by one
//!   caller at a time.
//! - [`ratelimit`]: DynamoDB token buckets shared by every container, and their middleware.
//! - [`usage`]: the hourly quota counters read back per user (the admin's usage report).
//! - [`settings`]: the runtime settings (`SystemSettings`), cached briefly.
//! - [`clock`]: time, injectable for tests.
//! - [`idempotency`]: the `Idempotency-Key` mechanism every idempotent write uses.
//! - [`store`]: DynamoDB calls with a per-call timeout, slow-call warnings and serde_dynamo items.
//! - [`http`]: the edge layers (request id, API version, CORS, security headers, body limit,
//!   problem+json for every error, metrics) and extractors (JSON, client IP, request id).
//! - [`error`]: the one error type the edge maps to `application/problem+json` (RFC 9457), and
//!   `DomainError`, how domain crates classify their errors without naming a status.
//! - [`telemetry`]: JSON-line logs with redaction, and CloudWatch Embedded Metric Format metrics.
//! - [`auth`]: accounts, sessions, access tokens and the extractors that check them.
//! - [`audit`]: the append-only audit log.
//! - [`bootstrap`]: the few lines between `main` and `lambda_http::run`.

pub mod audit;
pub mod auth;
pub mod aws;
pub mod bootstrap;
pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod openapi;
pub mod platform;
pub mod ratelimit;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod usage;

pub use config::{Config, Env};
pub use error::{ApiError, ApiResult};
pub use platform::Platform;

/// The API contract version sent as `X-API-Version` on every response; the OpenAPI document's
/// `info.version` is the same string (a test holds them together).
pub const API_VERSION: &str = "1.0.0";
