//! Typed configuration, read once per cold start from an [`Env`] and validated before the first
//! request: a missing or malformed variable stops the container with a message naming it.
//!
//! The environment is passed in rather than read from the process so that the local gateway can
//! host several functions in one process, each with the environment `template.yaml` gives it.

use std::{collections::HashMap, str::FromStr, time::Duration};

use http::{HeaderName, HeaderValue};

/// A function's environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment (what Lambda gives a function).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(key.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        self.get(key)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing(key))
    }

    fn parsed<T: FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    var: key,
                    reason: e.to_string(),
                }),
        }
    }

    fn millis(&self, key: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parsed(key, default_ms)?;
        if ms == 0 {
            return Err(ConfigError::Invalid {
                var: key,
                reason: "must be greater than 0".into(),
            });
        }
        Ok(Duration::from_millis(ms))
    }

    fn flag(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    var: key,
                    reason: format!("`{v}` is not a boolean"),
                }),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// The DynamoDB tables a function may touch, by the logical id `template.yaml` gives them.
#[derive(Debug, Clone)]
pub struct Tables {
    /// `AppTable`: the single application table (users, catalog, orders, settings, ...).
    pub app: String,
    /// `RateLimitTable`: the token buckets and hourly usage records of the rate limiter.
    pub rate_limit: String,
}

impl Tables {
    /// Every table with its logical id: what readiness checks.
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AppTable", self.app.as_str()),
            ("RateLimitTable", self.rate_limit.as_str()),
        ]
    }
}

/// One stored variant the images function makes of every uploaded original
/// (`IMAGE_VARIANTS`: `name=WxH:fit:format,...`, a side of 0 follows the aspect ratio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVariantSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// cover, contain, inside or fill.
    pub fit: String,
    /// jpeg, png or webp.
    pub format: String,
}

/// The images function's limits and storage.
#[derive(Debug, Clone)]
pub struct ImagesConfig {
    /// `IMAGES_BUCKET`: originals, variants and presigned uploads.
    pub bucket: Option<String>,
    pub variants: Vec<ImageVariantSpec>,
    /// `IMAGE_MAX_INPUT_BYTES` (default 25 MiB): the largest image read from S3 (a request body
    /// is capped by `MAX_BODY_BYTES` first).
    pub max_input_bytes: usize,
    /// `IMAGE_MAX_PIXELS` (default 50 000 000): the decompression-bomb guard.
    pub max_pixels: u64,
    /// `IMAGE_MAX_OUTPUT_DIMENSION` (default 4096).
    pub max_output_dimension: u32,
    /// `IMAGE_URL_TTL_SECONDS` (default 900): lifetime of presigned URLs.
    pub url_ttl: Duration,
}

fn image_variants(raw: &str) -> Result<Vec<ImageVariantSpec>, ConfigError> {
    let invalid = |spec: &str| ConfigError::Invalid {
        var: "IMAGE_VARIANTS",
        reason: format!("`{spec}` is not name=WxH:fit:format (e.g. thumb=200x200:cover:jpeg)"),
    };
    csv(raw)
        .map(|spec| {
            let (name, rest) = spec.split_once('=').ok_or_else(|| invalid(spec))?;
            let mut parts = rest.split(':');
            let (Some(size), Some(fit), Some(format), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid(spec));
            };
            let (w, h) = size.split_once('x').ok_or_else(|| invalid(spec))?;
            let (width, height) = (
                w.parse().map_err(|_| invalid(spec))?,
                h.parse().map_err(|_| invalid(spec))?,
            );
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid_name
                || (width == 0 && height == 0)
                || !["cover", "contain", "inside", "fill"].contains(&fit)
                || !["jpeg", "png", "webp"].contains(&format)
            {
                return Err(invalid(spec));
            }
            Ok(ImageVariantSpec {
                name: name.to_owned(),
                width,
                height,
                fit: fit.to_owned(),
                format: format.to_owned(),
            })
        })
        .collect()
}

/// Where the backup function writes and what it exports.
#[derive(Debug, Clone, Default)]
pub struct BackupConfig {
    /// `BACKUP_BUCKET`: the bucket of exports, manifests and restore-check outcomes.
    pub bucket: Option<String>,
    /// `BACKUP_TABLES`: `LogicalId=table-name,...`, every application table.
    pub tables: Vec<(String, String)>,
}

/// What the health-probe function calls and how often (see `functions/health-probe`).
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// `PROBE_BASE_URL`: the public API's base URL (`https://<api>.execute-api.<region>...`; the
    /// local gateway's `http://127.0.0.1:<port>` under `make dev`).
    pub base_url: Option<String>,
    /// `PROBE_INTERVAL_SECONDS`, default 30, at most 40: between the two rounds of one
    /// invocation (the schedule fires every minute; the function's timeout holds two rounds).
    pub interval: Duration,
}

/// The rate limiter's switches (the budgets themselves are runtime settings).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_ENABLED`, default true: false turns every limit off.
    pub enabled: bool,
    /// `RATE_LIMIT_TIMEOUT_MS`, default 250: past it the store counts as unreachable and each
    /// scope follows its fail mode.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Exact origins allowed; empty means no cross-origin access at all.
    pub allowed_origins: Vec<HeaderValue>,
    pub exposed_headers: Vec<HeaderName>,
}

/// Sessions and tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of access tokens (`JWT_ISSUER`, default `lumi`).
    pub issuer: String,
    /// `aud` of access tokens (`JWT_AUDIENCE`, default `lumi-api`).
    pub audience: String,
    /// `ACCESS_TOKEN_TTL_SECONDS`, default 900 (15 minutes).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_DAYS`, default 30: a login's absolute lifetime.
    pub refresh_token_ttl: Duration,
    /// `REFRESH_IDLE_TIMEOUT_HOURS`, default 168 (7 days) without a rotation ends the session.
    pub refresh_idle_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "lumi".into(),
            audience: "lumi-api".into(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_idle_timeout: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Everything a function reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The function's name, as in `template.yaml` (`health`, `orders`, ...): logs and metrics.
    pub function_name: String,
    /// `local`, `dev`, `staging`, `prod`: tags logs and metrics.
    pub stage: String,
    pub region: String,
    /// `METRICS_NAMESPACE`: the stack's CloudWatch namespace, `Lumi/<stack name>` (the template
    /// gives it); unset, `Lumi/<stage>`. Every EMF line is published in it, every alarm reads it.
    pub metrics_namespace: String,
    pub metrics_endpoint: MetricsEndpointConfig,
    /// Set locally (the moto server); unset in AWS.
    pub aws_endpoint_url: Option<String>,
    pub tables: Tables,
    pub config_secret_id: String,
    /// `CDN_ORIGIN_SECRET_ID` (the images function's): the secret whose token a CDN sends as
    /// `X-Origin-Verify`; a request carrying it is keyed on its viewer's address
    /// (`crate::http::edge`). Unset: every request's client is API Gateway's `sourceIp`.
    pub cdn_origin_secret_id: Option<String>,
    pub secrets_cache_ttl: Duration,
    pub cors: CorsConfig,
    pub max_body_bytes: usize,
    pub query_timeout: Duration,
    pub slow_query_threshold: Duration,
    pub health_check_timeout: Duration,
    /// How long a container reuses its readiness report (each report costs an AWS call per
    /// dependency; a flood of probes must not become a flood of AWS calls).
    pub health_cache_ttl: Duration,
    /// `TRACING_ENABLED`, default off: every span written as a log line and exported over OTLP
    /// to `otlp_endpoint` (see [`crate::telemetry::trace`]).
    pub tracing_enabled: bool,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318` (the collector of the AWS
    /// Distro for OpenTelemetry Lambda layer): where spans go, as OTLP/HTTP protobuf to
    /// `<endpoint>/v1/traces`; plain HTTP (the collector is on the same host).
    pub otlp_endpoint: String,
    pub log_level: tracing::Level,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    /// `REFUND_EMAIL_QUEUE_URL`: the SQS queue of refund emails (functions that send them).
    pub refund_email_queue_url: Option<String>,
    /// `REFUND_EMAIL_FROM`: the sender of refund emails (a verified SES identity).
    pub refund_email_from: Option<String>,
    /// `REFUND_EMAIL_MAX_RECEIVES`, default 5: the queue's `maxReceiveCount`; at the last receive
    /// a failing delivery is recorded failed (the message moves to the dead-letter queue).
    pub refund_email_max_receives: u32,
    pub cart: CartConfig,
    pub stripe: StripeSettings,
    /// `SETTINGS_CACHE_TTL_SECONDS`, default 30: runtime settings changes reach every container
    /// within this (the runbook promises 60 s).
    pub settings_cache_ttl: Duration,
    /// `ERROR_REPORTING_DSN`: where internal errors are reported when the runtime settings name
    /// no `errorReportingDsn` (see [`crate::telemetry::report`]).
    pub error_reporting_dsn: Option<crate::telemetry::report::Dsn>,
    pub backup: BackupConfig,
    pub images: ImagesConfig,
    pub probe: ProbeConfig,
}

/// The Prometheus endpoint (`GET /api/v1/metrics`, the admin function): what it reads back
/// from CloudWatch and how long it reuses an answer.
#[derive(Debug, Clone)]
pub struct MetricsEndpointConfig {
    /// `METRICS_WINDOW_MINUTES`, default 60 (1 to 1440): every value is what CloudWatch holds
    /// for the last this many minutes (a sum, or a latency summary).
    pub window: Duration,
    /// `METRICS_SCRAPE_INTERVAL_SECONDS`, default 60 (at least 10): a container answers from its
    /// last reading for this long, so a scrape costs CloudWatch calls at most once an interval.
    pub scrape_interval: Duration,
}

/// Stripe, the online payment provider (its secret key and webhook key are in the config
/// secret: `stripe_secret_key`, `payment_webhook_secrets.stripe`).
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `STRIPE_API_BASE`, default `https://api.stripe.com` (locally the `localstripe` server).
    pub api_base: String,
    /// `STRIPE_PUBLISHABLE_KEY`: what the storefront's Stripe.js uses (public).
    pub publishable_key: Option<String>,
    /// `STRIPE_PAYMENT_METHODS`: `card` (default) or `automatic` (the methods enabled in the
    /// Stripe dashboard).
    pub payment_methods: String,
}

/// Carts and their stock reservations.
#[derive(Debug, Clone)]
pub struct CartConfig {
    /// `CART_RESERVATION_MINUTES`, default 15: how long a cart line holds its stock after its
    /// last change.
    pub reservation: Duration,
    /// `CART_RESERVATION_MAX_MINUTES`, default 60: the longest a line's reservation lasts from
    /// its first reservation, however often it is renewed.
    pub max_reservation: Duration,
    /// `CART_MAX_LINES`, default 25 (at most 30): lines in one cart.
    pub max_lines: usize,
}

impl Config {
    /// Reads and validates the configuration of `function_name`.
    pub fn from_env(function_name: &str, env: &Env) -> Result<Self, ConfigError> {
        let cors = CorsConfig {
            allowed_origins: csv(env.get("CORS_ALLOWED_ORIGINS").unwrap_or(""))
                .map(|origin| {
                    HeaderValue::from_str(origin).map_err(|_| ConfigError::Invalid {
                        var: "CORS_ALLOWED_ORIGINS",
                        reason: format!("`{origin}` is not a valid origin"),
                    })
                })
                .collect::<Result<_, _>>()?,
            exposed_headers: csv(env
                .get("CORS_EXPOSED_HEADERS")
                .unwrap_or("X-Request-Id,X-API-Version,ETag"))
            .map(|name| {
                HeaderName::from_str(name).map_err(|_| ConfigError::Invalid {
                    var: "CORS_EXPOSED_HEADERS",
                    reason: format!("`{name}` is not a header name"),
                })
            })
            .collect::<Result<_, _>>()?,
        };
        let log_level = env.get("LOG_LEVEL").unwrap_or("info");
        let health_check_timeout = env.millis("HEALTH_CHECK_TIMEOUT_MS", 1500)?;
        if health_check_timeout >= Duration::from_secs(2) {
            return Err(ConfigError::Invalid {
                var: "HEALTH_CHECK_TIMEOUT_MS",
                reason: "must stay under the 2 s health-check timeout of the load balancer".into(),
            });
        }
        let otlp_endpoint = env
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .unwrap_or("http://localhost:4318")
            .trim_end_matches('/')
            .to_owned();
        if !otlp_endpoint.starts_with("http://") || otlp_endpoint.len() == "http://".len() {
            return Err(ConfigError::Invalid {
                var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                reason: "an http:// URL (the collector runs beside the function)".into(),
            });
        }
        let defaults = AuthConfig::default();
        let auth = AuthConfig {
            issuer: env.get("JWT_ISSUER").unwrap_or(&defaults.issuer).to_owned(),
            audience: env
                .get("JWT_AUDIENCE")
                .unwrap_or(&defaults.audience)
                .to_owned(),
            access_token_ttl: Duration::from_secs(env.parsed("ACCESS_TOKEN_TTL_SECONDS", 900)?),
            refresh_token_ttl: Duration::from_secs(
                env.parsed::<u64>("REFRESH_TOKEN_TTL_DAYS", 30)? * 24 * 3600,
            ),
            refresh_idle_timeout: Duration::from_secs(
                env.parsed::<u64>("REFRESH_IDLE_TIMEOUT_HOURS", 168)? * 3600,
            ),
        };
        if auth.access_token_ttl.is_zero() || auth.refresh_token_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                var: "ACCESS_TOKEN_TTL_SECONDS",
                reason: "token lifetimes must be greater than 0".into(),
            });
        }
        let stage = env.get("STAGE").unwrap_or("local").to_owned();
        let metrics_namespace = match env.get("METRICS_NAMESPACE") {
            Some(namespace) => metrics_namespace(namespace.trim())?,
            None => format!("{}/{stage}", crate::telemetry::metrics::NAMESPACE_PREFIX),
        };
        let metrics_endpoint = MetricsEndpointConfig {
            window: {
                let minutes: u64 = env.parsed("METRICS_WINDOW_MINUTES", 60)?;
                if !(1..=1440).contains(&minutes) {
                    return Err(ConfigError::Invalid {
                        var: "METRICS_WINDOW_MINUTES",
                        reason: "between 1 and 1440 (a day)".into(),
                    });
                }
                Duration::from_secs(minutes * 60)
            },
            scrape_interval: {
                let seconds: u64 = env.parsed("METRICS_SCRAPE_INTERVAL_SECONDS", 60)?;
                if seconds < 10 {
                    return Err(ConfigError::Invalid {
                        var: "METRICS_SCRAPE_INTERVAL_SECONDS",
                        reason: "at least 10 (each reading costs CloudWatch calls)".into(),
                    });
                }
                Duration::from_secs(seconds)
            },
        };
        Ok(Self {
            auth,
            function_name: function_name.to_owned(),
            stage,
            metrics_namespace,
            metrics_endpoint,
            region: env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION"))
                .unwrap_or("us-east-1")
                .to_owned(),
            aws_endpoint_url: env.get("AWS_ENDPOINT_URL").map(str::to_owned),
            tables: Tables {
                app: env.required("APP_TABLE")?,
                rate_limit: env.required("RATE_LIMIT_TABLE")?,
            },
            rate_limit: RateLimitConfig {
                enabled: env.flag("RATE_LIMIT_ENABLED", true)?,
                timeout: env.millis("RATE_LIMIT_TIMEOUT_MS", 250)?,
            },
            refund_email_queue_url: env.get("REFUND_EMAIL_QUEUE_URL").map(str::to_owned),
            refund_email_from: env.get("REFUND_EMAIL_FROM").map(str::to_owned),
            refund_email_max_receives: env.parsed("REFUND_EMAIL_MAX_RECEIVES", 5)?,
            stripe: {
                let payment_methods = env
                    .get("STRIPE_PAYMENT_METHODS")
                    .unwrap_or("card")
                    .to_owned();
                if !["card", "automatic"].contains(&payment_methods.as_str()) {
                    return Err(ConfigError::Invalid {
                        var: "STRIPE_PAYMENT_METHODS",
                        reason: "card or automatic".into(),
                    });
                }
                let api_base = env
                    .get("STRIPE_API_BASE")
                    .unwrap_or("https://api.stripe.com")
                    .trim_end_matches('/')
                    .to_owned();
                if !(api_base.starts_with("https://") || api_base.starts_with("http://127.0.0.1:"))
                {
                    return Err(ConfigError::Invalid {
                        var: "STRIPE_API_BASE",
                        reason: "an https URL (plain http only on 127.0.0.1)".into(),
                    });
                }
                StripeSettings {
                    api_base,
                    publishable_key: env
                        .get("STRIPE_PUBLISHABLE_KEY")
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned),
                    payment_methods,
                }
            },
            cart: {
                let reservation = Duration::from_secs(
                    60 * env.parsed::<u64>("CART_RESERVATION_MINUTES", 15)?.max(1),
                );
                let max_reservation = Duration::from_secs(
                    60 * env
                        .parsed::<u64>("CART_RESERVATION_MAX_MINUTES", 60)?
                        .max(1),
                );
                if max_reservation < reservation {
                    return Err(ConfigError::Invalid {
                        var: "CART_RESERVATION_MAX_MINUTES",
                        reason: "must be at least CART_RESERVATION_MINUTES".into(),
                    });
                }
                let max_lines = env.parsed::<usize>("CART_MAX_LINES", 25)?;
                if !(1..=30).contains(&max_lines) {
                    return Err(ConfigError::Invalid {
                        var: "CART_MAX_LINES",
                        reason: "between 1 and 30 (a checkout writes every line in one transaction of at most 100 items)".into(),
                    });
                }
                CartConfig {
                    reservation,
                    max_reservation,
                    max_lines,
                }
            },
            settings_cache_ttl: {
                let ttl = env.parsed("SETTINGS_CACHE_TTL_SECONDS", 30)?;
                if ttl > 60 {
                    return Err(ConfigError::Invalid {
                        var: "SETTINGS_CACHE_TTL_SECONDS",
                        reason: "settings changes must reach every container within 60 s".into(),
                    });
                }
                Duration::from_secs(ttl)
            },
            error_reporting_dsn: match env.get("ERROR_REPORTING_DSN").filter(|d| !d.is_empty()) {
                None => None,
                Some(dsn) => Some(crate::telemetry::report::Dsn::parse(dsn).map_err(|e| {
                    ConfigError::Invalid {
                        var: "ERROR_REPORTING_DSN",
                        reason: e.to_string(),
                    }
                })?),
            },
            backup: BackupConfig {
                bucket: env
                    .get("BACKUP_BUCKET")
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned),
                tables: csv(env.get("BACKUP_TABLES").unwrap_or(""))
                    .map(|pair| {
                        pair.split_once('=')
                            .filter(|(id, name)| !id.is_empty() && !name.is_empty())
                            .map(|(id, name)| (id.to_owned(), name.to_owned()))
                            .ok_or_else(|| ConfigError::Invalid {
                                var: "BACKUP_TABLES",
                                reason: format!("`{pair}` is not LogicalId=table-name"),
                            })
                    })
                    .collect::<Result<_, _>>()?,
            },
            probe: ProbeConfig {
                base_url: env
                    .get("PROBE_BASE_URL")
                    .map(|url| url.trim().trim_end_matches('/').to_owned()),
                interval: {
                    let seconds: u64 = env.parsed("PROBE_INTERVAL_SECONDS", 30)?;
                    if seconds > 40 {
                        return Err(ConfigError::Invalid {
                            var: "PROBE_INTERVAL_SECONDS",
                            reason: "must be at most 40 (two rounds fit the function's timeout)"
                                .into(),
                        });
                    }
                    Duration::from_secs(seconds)
                },
            },
            images: ImagesConfig {
                bucket: env
                    .get("IMAGES_BUCKET")
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned),
                variants: image_variants(env.get("IMAGE_VARIANTS").unwrap_or(
                    "thumb=200x200:cover:jpeg,medium=800x0:inside:webp,large=1600x0:inside:jpeg",
                ))?,
                max_input_bytes: env.parsed("IMAGE_MAX_INPUT_BYTES", 25 * 1024 * 1024)?,
                max_pixels: env.parsed("IMAGE_MAX_PIXELS", 50_000_000)?,
                max_output_dimension: env.parsed("IMAGE_MAX_OUTPUT_DIMENSION", 4096)?,
                url_ttl: Duration::from_secs(env.parsed("IMAGE_URL_TTL_SECONDS", 900)?),
            },
            config_secret_id: env.required("CONFIG_SECRET_ID")?,
            cdn_origin_secret_id: env.get("CDN_ORIGIN_SECRET_ID").map(str::to_owned),
            secrets_cache_ttl: Duration::from_secs(env.parsed("SECRETS_CACHE_TTL_SECONDS", 300)?),
            cors,
            max_body_bytes: env.parsed("MAX_BODY_BYTES", 1024 * 1024)?,
            query_timeout: env.millis("QUERY_TIMEOUT_MS", 5000)?,
            slow_query_threshold: env.millis("DATABASE_SLOW_QUERY_THRESHOLD_MS", 100)?,
            health_check_timeout,
            health_cache_ttl: Duration::from_millis(env.parsed("HEALTH_CACHE_MS", 5000)?),
            tracing_enabled: env.flag("TRACING_ENABLED", false)?,
            otlp_endpoint,
            log_level: log_level.parse().map_err(|_| ConfigError::Invalid {
                var: "LOG_LEVEL",
                reason: format!("`{log_level}` is not one of trace, debug, info, warn, error"),
            })?,
        })
    }
}

impl Config {
    /// The tags of this function's log and metric lines.
    pub fn tags(&self) -> crate::telemetry::Tags {
        crate::telemetry::Tags::new(&self.stage, &self.region)
    }
}

/// A CloudWatch namespace of this stack: `Lumi/...`, at most 255 of CloudWatch's characters.
fn metrics_namespace(raw: &str) -> Result<String, ConfigError> {
    let prefix = format!("{}/", crate::telemetry::metrics::NAMESPACE_PREFIX);
    let valid = raw.len() <= 255
        && raw.len() > prefix.len()
        && raw.starts_with(&prefix)
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#' | b':')
        });
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::Invalid {
            var: "METRICS_NAMESPACE",
            reason: format!("`{raw}` is not Lumi/<stack name> (letters, digits, . - _ / # :)"),
        })
    }
}

fn csv(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Env {
        Env::from_pairs([
            ("APP_TABLE", "t-app"),
            ("RATE_LIMIT_TABLE", "t-rl"),
            ("CONFIG_SECRET_ID", "t-config"),
        ])
    }

    #[test]
    fn defaults_follow_the_runbook() {
        let config = Config::from_env("health", &minimal()).unwrap();
        assert_eq!(config.query_timeout, Duration::from_millis(5000));
        assert_eq!(config.slow_query_threshold, Duration::from_millis(100));
        assert_eq!(config.secrets_cache_ttl, Duration::from_secs(300));
        assert_eq!(
            config.cors.exposed_headers,
            ["x-request-id", "x-api-version", "etag"]
        );
        assert!(config.cors.allowed_origins.is_empty());
        assert!(!config.tracing_enabled);
        assert_eq!(config.otlp_endpoint, "http://localhost:4318");
        assert_eq!(config.metrics_namespace, "Lumi/local");
    }

    #[test]
    fn the_metrics_namespace_is_the_stacks() {
        let mut env = minimal();
        env.set("METRICS_NAMESPACE", "Lumi/lumi-staging");
        env.set("STAGE", "staging");
        env.set("AWS_REGION", "eu-west-1");
        let config = Config::from_env("orders", &env).unwrap();
        assert_eq!(config.metrics_namespace, "Lumi/lumi-staging");
        assert_eq!(
            config.tags(),
            crate::telemetry::Tags::new("staging", "eu-west-1")
        );
        for bad in ["Lumi", "Lumi/", "Other/x", "Lumi/a b"] {
            env.set("METRICS_NAMESPACE", bad);
            let err = Config::from_env("orders", &env).unwrap_err();
            assert!(
                err.to_string().contains("METRICS_NAMESPACE"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let err = Config::from_env("health", &Env::default()).unwrap_err();
        assert!(err.to_string().contains("APP_TABLE"), "{err}");

        let mut env = minimal();
        env.set("QUERY_TIMEOUT_MS", "soon");
        let err = Config::from_env("health", &env).unwrap_err();
        assert!(err.to_string().contains("QUERY_TIMEOUT_MS"), "{err}");

        let mut env = minimal();
        env.set("TRACING_ENABLED", "maybe");
        assert!(Config::from_env("health", &env).is_err());

        let mut env = minimal();
        env.set("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318");
        let err = Config::from_env("health", &env).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{err}"
        );
    }

    #[test]
    fn cors_origins_are_comma_separated() {
        let mut env = minimal();
        env.set(
            "CORS_ALLOWED_ORIGINS",
            "https://app.lumi-commerce.com, https://admin.lumi-commerce.com,",
        );
        let config = Config::from_env("health", &env).unwrap();
        assert_eq!(
            config.cors.allowed_origins,
            [
                "https://app.lumi-commerce.com",
                "https://admin.lumi-commerce.com"
            ]
        );
    }
}
