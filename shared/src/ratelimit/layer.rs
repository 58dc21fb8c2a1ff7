//! The rate-limit middleware every HTTP function runs (inside the edge, so 429s carry the request
//! id), and [`enforce`], which handlers call for the scopes only they can name (the `auth` scope
//! needs the email of the body).
//!
//! Scopes of a request: `ip` always; `customer` under `/api/v1/orders`, `/api/v1/cart` and
//! `/api/v1/checkout` (per user, per IP when anonymous); `admin` under `/api/v1/admin`, charged
//! only to a request whose access token proves an admin (anonymous or customer traffic there
//! spends its IP budget, so nobody can spend the admins' budget for them); `quota` for every
//! authenticated request. The user is read from the access token's signature alone (no I/O
//! while the keys are cached), so every scope is decided in the same round trip; the
//! authentication layer checks the account afterwards. Liveness is never limited; readiness
//! spends the IP budget only (it calls AWS).
//!
//! The signed image GET is decided alongside its work rather than before it
//! ([`decided_alongside`]): the S3 read of its original does not wait behind the limiter's
//! write, and the answer still waits for the decision.
//!
//! Sign-in attempts follow OWASP's authentication guidance ([`admit_login`]): a budget per
//! (account, client), one per client, and a much larger ceiling per account; the client that
//! last signed in to an account is exempt from that account's ceiling, so an attacker who
//! spends it from many addresses does not lock the owner out. Client-supplied values (the
//! email) are validated before they become keys and enter keys only as digests.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, header};
use sha2::{Digest, Sha256};

use super::{Check, Decision, Scope, ScopeState};
use crate::{
    auth::{Role, Tier, tokens},
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

/// Liveness does no I/O and must answer under any load; readiness (which calls AWS) is limited.
fn is_exempt(path: &str) -> bool {
    path == "/api/v1/health/live" || path == "/api/health/liveness"
}

/// Readiness spends the IP budget only: a probe is anonymous and names no customer.
fn is_probe(path: &str) -> bool {
    under(path, "/api/v1/health") || under(path, "/api/health")
}

/// A client-supplied value as it enters a bucket key: a digest (bounded length, and no
/// customer's email sits in the rate-limit table).
fn digest(value: &str) -> String {
    let hash = Sha256::digest(value.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The client's address as a key part: the gateway's `sourceIp`, parsed (anything else is one
/// `unknown` client, never a key of the caller's choosing).
pub fn client_key(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>()
        .map_or_else(|_| "unknown".to_owned(), |ip| ip.to_string())
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
    let decision = platform.limiter.check(checks).await;
    answer(platform, decision, metrics)
}

/// A decision as the caller sees it: headers, 429 or 503, each counted.
fn answer(
    platform: &Platform,
    decision: Decision,
    metrics: Option<&MetricSet>,
) -> Result<Headers, ApiError> {
    let count = |name: &str, dims: &[(&str, &str)]| {
        if let Some(metrics) = metrics {
            metrics.count(name, dims, 1.0);
        }
    };
    match decision {
        Decision::Allowed(states) => Ok(headers_for(&states)),
        Decision::Limited {
            states,
            violated,
            retry_after_secs,
            ..
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
    let ip = client_key(ip);
    let mut checks = vec![Check::rolling(Scope::Ip, format!("ip#{ip}"), limits.ip)];
    if is_probe(path) {
        return checks;
    }
    let identity = token_identity(platform, authorization).await;
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
    let proven_admin = identity.as_ref().is_some_and(|c| c.role == Role::Admin);
    if under(path, "/api/v1/admin") && proven_admin {
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

/// A client's budget of sign-in attempts (over every account) is this many times the
/// (account, client) budget: one address may serve a household or an office.
pub const AUTH_CLIENT_FACTOR: u32 = 3;
/// An account's ceiling over every client is this many times the (account, client) budget:
/// high enough that one attacker cannot reach it from a few addresses, low enough to stop a
/// distributed guess of one password.
pub const AUTH_ACCOUNT_FACTOR: u32 = 10;
/// How long the client that last signed in stays exempt from its account's ceiling.
pub const TRUSTED_CLIENT_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The buckets of one sign-in attempt (login or registration), by OWASP's guidance.
pub struct AuthAttempt {
    /// The account: a digest of the normalised email.
    account: String,
    /// The client: a digest of its address.
    client: String,
    checks: Vec<Check>,
}

impl AuthAttempt {
    /// `email` must be normalised and bounded already (`users::normalize_email`): only its
    /// digest enters a key.
    pub async fn new(platform: &Platform, email: &str, ip: &str) -> Self {
        let settings = platform.settings.get().await;
        let budget = settings.rate_limits.auth;
        let scaled = |factor: u32| {
            let mut b = budget;
            b.limit = b.limit.saturating_mul(factor);
            b
        };
        let account = digest(email);
        let client = digest(&client_key(ip));
        let checks = vec![
            Check::rolling(
                Scope::Auth,
                format!("auth#pair:{}", digest(&format!("{account}|{client}"))),
                budget,
            ),
            Check::rolling(
                Scope::Auth,
                format!("auth#client:{client}"),
                scaled(AUTH_CLIENT_FACTOR),
            ),
            Check::rolling(
                Scope::Auth,
                format!("auth#account:{account}"),
                scaled(AUTH_ACCOUNT_FACTOR),
            ),
        ];
        Self {
            account,
            client,
            checks,
        }
    }

    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
}

/// Admits a sign-in attempt or answers 429 (503 when the store fails: the scope fails closed
/// by default). When only the account's ceiling refuses and this client is the one that last
/// signed in to the account, the attempt is decided on its other two budgets (one read, paid
/// only by a request that would otherwise be refused).
pub async fn admit_login(
    platform: &Platform,
    attempt: &AuthAttempt,
    metrics: Option<&MetricSet>,
) -> Result<Headers, ApiError> {
    let mut decision = platform.limiter.check(&attempt.checks).await;
    if let Decision::Limited { violated_key, .. } = &decision
        && *violated_key == attempt.checks[2].key
    {
        match platform.limiter.trusted_client(&attempt.account).await {
            Ok(Some(trusted)) if trusted == attempt.client => {
                decision = platform.limiter.check(&attempt.checks[..2]).await;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "trusted sign-in client unreadable; the ceiling applies");
            }
        }
    }
    answer(platform, decision, metrics)
}

/// After a successful sign-in: this client becomes the account's trusted one. A failure to
/// record it is logged, not the caller's problem.
pub async fn login_succeeded(platform: &Platform, attempt: &AuthAttempt) {
    if let Err(error) = platform
        .limiter
        .trust(&attempt.account, &attempt.client, TRUSTED_CLIENT_TTL)
        .await
    {
        tracing::warn!(error = %error, "trusted sign-in client not recorded");
    }
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
    if starts_before_decision(request.method(), &path) && !platform.limiter.foresees_denial(&checks)
    {
        return decided_alongside(&platform, &checks, metrics.as_ref(), next.run(request)).await;
    }
    match enforce(&platform, &checks, metrics.as_ref()).await {
        Ok(headers) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(headers);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Requests whose work starts while the limiter decides ([`decided_alongside`]): the signed
/// image GET, a CDN miss whose first step is a read of the original from S3 that would
/// otherwise queue behind the limiter's DynamoDB write. Only a GET: it changes nothing, so work
/// dropped half-way by a refusal leaves nothing behind.
fn starts_before_decision(method: &Method, path: &str) -> bool {
    method == Method::GET && under(path, "/api/v1/images")
}

/// Runs `work` (the rest of the stack) while `checks` are decided, and answers only once they
/// are: the work's response with the limiter's headers when admitted; the 429 (or 503) when
/// not, `work` then dropped wherever it is (a handler stops its work when dropped: see the
/// images function's `OriginalStream`). The work is polled first, so its first AWS call goes
/// out before the limiter's. Only for requests the container does not already know it will
/// refuse ([`super::RateLimiter::foresees_denial`]): a flood past a budget is refused before
/// any work, as on every other route.
async fn decided_alongside(
    platform: &Platform,
    checks: &[Check],
    metrics: Option<&MetricSet>,
    work: impl Future<Output = Response>,
) -> Response {
    let decision = enforce(platform, checks, metrics);
    let (mut work, mut decision) = (std::pin::pin!(work), std::pin::pin!(decision));
    let mut done = None;
    let decided = loop {
        tokio::select! {
            biased;
            response = &mut work, if done.is_none() => done = Some(response),
            decided = &mut decision => break decided,
        }
    };
    match decided {
        Ok(headers) => {
            let mut response = match done {
                Some(response) => response,
                None => work.await,
            };
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
        assert!(is_exempt("/api/v1/health/live") && is_exempt("/api/health/liveness"));
        assert!(!is_exempt("/api/v1/health/ready") && is_probe("/api/v1/health/ready"));
        assert!(!is_exempt("/api/health") && is_probe("/api/health"));
    }

    #[test]
    fn client_values_enter_keys_bounded() {
        assert_eq!(client_key("203.0.113.7"), "203.0.113.7");
        assert_eq!(client_key("::1"), "::1");
        assert_eq!(client_key(&"x".repeat(10_000)), "unknown");
        let long = digest(&"a".repeat(200_000));
        assert_eq!(long.len(), 32);
        assert_ne!(digest("a@example.com"), digest("b@example.com"));
    }
}
