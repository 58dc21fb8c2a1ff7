//! The rate-limit middleware every HTTP function runs (inside the edge, so 429s carry the request
//! id), and [`enforce`], which handlers call for the scopes only they can name (the `auth` scope
//! needs the email of the body).
//!
//! Scopes of a request: `ip` always; `customer` under `/api/v1/orders`, `/api/v1/cart` and
//! `/api/v1/checkout` (per user, per IP when anonymous); `admin` under `/api/v1/admin`; `quota`
//! for every authenticated request. The user is read from the access token's signature alone
//! (no I/O while the keys are cached), so every scope is decided in the same round trip; the
//! authentication layer checks the account afterwards. Health probes are never limited.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, header};

use super::{Check, Decision, Scope, ScopeState};
use crate::{
    auth::{Tier, tokens},
    error::ApiError,
    http::ClientIp,
    platform::Platform,
    telemetry::metrics::MetricSet,
};

/// 429s by scope: the "429 > 5% of requests" alarm divides this by `lumi_http_requests_total`.
pub const RATE_LIMITED_TOTAL: &str = "lumi_rate_limited_total";
/// Decisions taken without the store (timeout or error), by fail mode.
pub const STORE_ERRORS_TOTAL: &str = "lumi_rate_limit_store_errors_total";

pub type Headers = Vec<(HeaderName, HeaderValue)>;

fn is_exempt(path: &str) -> bool {
    path.starts_with("/api/v1/health/") || path == "/api/health" || path.starts_with("/api/health/")
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The `X-RateLimit-*` headers (of the scope with the fewest requests left) and the IETF draft's
/// `RateLimit-Policy` and `RateLimit` (of every scope).
pub fn headers_for(states: &[ScopeState]) -> Headers {
    let Some(tightest) = states
        .iter()
        .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_secs)))
    else {
        return Vec::new();
    };
    let policy = states
        .iter()
        .map(|s| format!("\"{}\";q={};w={}", s.scope.name(), s.limit, s.window_secs))
        .collect::<Vec<_>>()
        .join(", ");
    let current = states
        .iter()
        .map(|s| {
            format!(
                "\"{}\";r={};t={}",
                s.scope.name(),
                s.remaining,
                s.reset_secs
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut headers = vec![
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(tightest.limit),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(tightest.remaining),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(tightest.reset_secs),
        ),
    ];
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.push((HeaderName::from_static(name), value));
        }
    }
    headers
}

/// Decides `checks`; the headers to add when admitted, the 429 (or 503) otherwise.
pub async fn enforce(
    platform: &Platform,
    checks: &[Check],
    metrics: Option<&MetricSet>,
) -> Result<Headers, ApiError> {
    let count = |name: &str, dims: &[(&str, &str)]| {
        if let Some(metrics) = metrics {
            metrics.count(name, dims, 1.0);
        }
    };
    match platform.limiter.check(checks).await {
        Decision::Allowed(states) => Ok(headers_for(&states)),
        Decision::Limited {
            states,
            violated,
            retry_after_secs,
        } => {
            count(
                RATE_LIMITED_TOTAL,
                &[
                    ("function", &platform.config.function_name),
                    ("scope", violated.name()),
                ],
            );
            Err(ApiError::TooManyRequests {
                retry_after_secs,
                policy: violated.name().to_owned(),
                headers: headers_for(&states),
            })
        }
        Decision::Unavailable { scope } => {
            count(
                STORE_ERRORS_TOTAL,
                &[
                    ("function", &platform.config.function_name),
                    ("mode", "closed"),
                ],
            );
            Err(ApiError::Unavailable {
                detail: format!(
                    "rate limiting ({}) is unavailable; retry shortly",
                    scope.name()
                )
                .into(),
                source: None,
            })
        }
        Decision::FailedOpen => {
            count(
                STORE_ERRORS_TOTAL,
                &[
                    ("function", &platform.config.function_name),
                    ("mode", "open"),
                ],
            );
            Ok(Vec::new())
        }
    }
}

/// The signed-in user of a request as its access token says (signature and claims only).
async fn token_identity(
    platform: &Platform,
    authorization: Option<&str>,
) -> Option<tokens::Claims> {
    let (scheme, token) = authorization?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let secrets = platform.secrets.get().await.ok()?;
    tokens::verify(token.trim(), &secrets, &platform.config.auth).ok()
}

/// The checks of a request, by route and caller.
pub async fn checks_for(
    platform: &Platform,
    path: &str,
    ip: &str,
    authorization: Option<&str>,
) -> Vec<Check> {
    let settings = platform.settings.get().await;
    let limits = &settings.rate_limits;
    let identity = token_identity(platform, authorization).await;
    let mut checks = vec![Check::rolling(Scope::Ip, format!("ip#{ip}"), limits.ip)];
    if ["/api/v1/orders", "/api/v1/cart", "/api/v1/checkout"]
        .iter()
        .any(|p| under(path, p))
    {
        let who = identity
            .as_ref()
            .map_or_else(|| format!("ip:{ip}"), |c| format!("user:{}", c.sub));
        checks.push(Check::rolling(
            Scope::Customer,
            format!("customer#{who}"),
            limits.customer,
        ));
    }
    if under(path, "/api/v1/admin") {
        checks.push(Check::rolling(Scope::Admin, "admin#all", limits.admin));
    }
    if let Some(claims) = &identity {
        let multiplier = if claims.tier == Tier::Premium {
            limits.premium_multiplier
        } else {
            1
        };
        checks.push(Check::hourly_quota(
            &claims.sub,
            limits.quota,
            multiplier,
            platform.limiter.now_us(),
        ));
    }
    checks
}

/// The `auth` scope of a login or registration: per account and per IP (brute force).
pub async fn auth_checks(platform: &Platform, email: &str, ip: &str) -> Vec<Check> {
    let settings = platform.settings.get().await;
    let budget = settings.rate_limits.auth;
    let account = email.trim().to_lowercase();
    vec![
        Check::rolling(Scope::Auth, format!("auth#account:{account}"), budget),
        Check::rolling(Scope::Auth, format!("auth#ip:{ip}"), budget),
    ]
}

/// The middleware.
pub async fn rate_limit(
    State(platform): State<Arc<Platform>>,
    request: Request,
    next: Next,
) -> Response {
    if !platform.config.rate_limit.enabled
        || request.method() == Method::OPTIONS
        || is_exempt(request.uri().path())
    {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or_else(|| "unknown".to_owned(), |ip| ip.0.clone());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let checks = checks_for(&platform, &path, &ip, authorization.as_deref()).await;
    let metrics = request.extensions().get::<MetricSet>().cloned();
    match enforce(&platform, &checks, metrics.as_ref()).await {
        Ok(headers) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(headers);
            response
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_show_the_tightest_scope_and_every_policy() {
        let states = [
            ScopeState {
                scope: Scope::Ip,
                limit: 600,
                window_secs: 300,
                remaining: 590,
                reset_secs: 5,
            },
            ScopeState {
                scope: Scope::Customer,
                limit: 60,
                window_secs: 300,
                remaining: 12,
                reset_secs: 240,
            },
        ];
        let headers: std::collections::HashMap<_, _> = headers_for(&states)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(headers["x-ratelimit-limit"], "60");
        assert_eq!(headers["x-ratelimit-remaining"], "12");
        assert_eq!(headers["x-ratelimit-reset"], "240");
        assert_eq!(
            headers["ratelimit-policy"],
            r#""ip";q=600;w=300, "customer";q=60;w=300"#
        );
        assert_eq!(
            headers["ratelimit"],
            r#""ip";r=590;t=5, "customer";r=12;t=240"#
        );
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/api/v1/orders", "/api/v1/orders"));
        assert!(under("/api/v1/orders/LUMI-1/track", "/api/v1/orders"));
        assert!(!under("/api/v1/ordersx", "/api/v1/orders"));
        assert!(is_exempt("/api/v1/health/ready") && is_exempt("/api/health"));
    }
}
