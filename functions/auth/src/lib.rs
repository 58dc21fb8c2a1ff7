//! The auth function: accounts and sessions over HTTP. The work is in `lumi_shared::auth`
//! (the admin function and the `lumi` CLI use the same code); these handlers parse, call it, and
//! shape the answer.
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/auth/register` `{email, password, name}` | none | 201 the account |
//! | `POST /api/v1/auth/login` `{email, password, mode?}` | none | 200 access + refresh token |
//!
//! Register and login also spend the `auth` rate-limit scope, which only these handlers can
//! name, since the account is in the body: the email is validated first (422 when it is not
//! an address of at most 254 bytes, or the password is over 128 characters), then the
//! attempt spends its (account, client), client and account budgets (`layer::admit_login`).
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/auth/rotate` (also `/api/auth/rotate`) | Bearer refresh token, or the refresh cookie + `X-CSRF-Token` | 200 the next pair |
//! | `POST /api/v1/auth/revoke-all` (also `/api/auth/revoke-all`) | Bearer access token | 200; every session ends |
//! | `POST /api/v1/auth/logout` | Bearer access token, or the refresh cookie + `X-CSRF-Token` | 204; this session ends |
//! | `GET /api/v1/auth/me` | Bearer access token | 200 the account |
//!
//! `mode` at login is `bearer` (the default: the refresh token in the body) or `cookie` (for a
//! browser: the refresh token only in a sealed `__Host-lumi-refresh` cookie, and a `csrf_token`
//! in the body; see `lumi_shared::auth::browser`). A request with an `Authorization` header is
//! a bearer request; one without it but with the refresh cookie is a cookie request.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    audit::{self, AuditEvent},
    auth::{
        Authenticated, Role, Tier,
        browser::{self, BrowserRequest, BrowserTokens, SessionMode},
        extract::{authenticate, bearer},
        now_ms, password,
        sessions::{self, RequestMeta},
        users::{self, NewUser},
    },
    error::FieldError,
    http::Json,
    ratelimit::layer::{self, AuthAttempt, Headers},
    telemetry::metrics::MetricSet,
};
use lumi_shared::{
    auth::{User, sessions::IssuedTokens},
    openapi::{
        BadRequest, Conflict, Forbidden, PayloadTooLarge, ServiceUnavailable, TooManyRequests,
        Unauthorized, UnsupportedMediaType, ValidationFailed,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

/// This function's operations (`lumi_infra::openapi` merges every function's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(register, login, rotate, revoke_all, logout, me))]
    struct Doc;
    let mut doc = Doc::openapi();
    lumi_shared::openapi::alias(&mut doc, "/api/v1/auth/rotate", "/api/auth/rotate", "Alias");
    lumi_shared::openapi::alias(
        &mut doc,
        "/api/v1/auth/revoke-all",
        "/api/auth/revoke-all",
        "Alias",
    );
    doc
}

/// A session's tokens: in the body (`bearer` mode), or the refresh token in the sealed cookie
/// and a CSRF token in the body (`cookie` mode).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Session {
    Bearer(IssuedTokens),
    Cookie(BrowserTokens),
}

/// Every session of the caller ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    #[schema(example = true)]
    pub revoked: bool,
    /// Every token issued before this instant (ms since the epoch) is refused.
    #[schema(example = 1764684000000_i64)]
    pub sessions_valid_after_ms: i64,
}

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/rotate", post(rotate))
        .route("/api/auth/rotate", post(rotate))
        .route("/api/v1/auth/revoke-all", post(revoke_all))
        .route("/api/auth/revoke-all", post(revoke_all))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .with_state(platform)
}

/// A new customer account.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct Register {
    /// One `@`, printable ASCII before it, a dotted domain of letters, digits and `-` after it
    /// (what `users::normalize_email` accepts).
    #[schema(format = Email, max_length = 254,
        pattern = r"^[!-?A-~]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        example = "ada@example.com")]
    pub email: String,
    /// 12 to 128 characters mixing letters with digits or symbols; not the email address.
    #[schema(
        min_length = 12,
        max_length = 128,
        pattern = r"^(?=.*[A-Za-z])(?=.*[0-9 !-/:-@\[-`{-~]).*$",
        example = "correct-horse-42"
    )]
    pub password: String,
    /// 1 to 100 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"\S",
        example = "Ada Lovelace"
    )]
    pub name: String,
}

/// Bounds the body's client-supplied values before any of them becomes a key or reaches
/// argon2: the normalised email, or 422.
fn checked_credentials(email: &str, password: &str) -> ApiResult<String> {
    let email = users::normalize_email(email).map_err(|field| ApiError::Validation {
        detail: "the email is not valid".into(),
        errors: vec![field],
    })?;
    if password.chars().count() > password::MAX_LEN {
        return Err(ApiError::Validation {
            detail: "the password is too long".into(),
            errors: vec![FieldError {
                field: "password".into(),
                message: format!("must be at most {} characters", password::MAX_LEN),
            }],
        });
    }
    Ok(email)
}

/// The `auth` scope of a login or registration: the attempt, and its headers once admitted.
async fn limit_attempts(
    platform: &Platform,
    email: &str,
    meta: &RequestMeta,
    metrics: &MetricSet,
) -> ApiResult<(Option<AuthAttempt>, Headers)> {
    if !platform.config.rate_limit.enabled {
        return Ok((None, Vec::new()));
    }
    let ip = meta.client_ip.as_deref().unwrap_or("unknown");
    let attempt = AuthAttempt::new(platform, email, ip).await;
    let headers = layer::admit_login(platform, &attempt, Some(metrics)).await?;
    Ok((Some(attempt), headers))
}

/// Create a customer account
///
/// Every field is checked at once (422 names each), before the attempt spends the `auth`
/// rate-limit scope of the address and the client.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    operation_id = "authRegister",
    request_body(content = Register, content_type = "application/json",
        example = json!({ "email": "ada@example.com", "password": "correct-horse-42", "name": "Ada Lovelace" })),
    responses(
        (status = 201, description = "The account.", body = User),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn register(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    metrics: MetricSet,
    Json(body): Json<Register>,
) -> ApiResult<Response> {
    let new = NewUser {
        email: body.email,
        name: body.name,
        password: body.password,
        role: Role::Customer,
        tier: Tier::Standard,
    };
    let email = users::validate_new(&new).map_err(|errors| ApiError::Validation {
        detail: "the account is not valid".into(),
        errors,
    })?;
    let (_, headers) = limit_attempts(&platform, &email, &meta, &metrics).await?;
    let user = users::create(&platform.db, &platform.config.tables.app, new).await?;
    let mut response = (StatusCode::CREATED, axum::Json(user)).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

/// Credentials, and where the refresh token goes.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct Login {
    /// The account's address (checked as at registration before the attempt is counted).
    #[schema(format = Email, max_length = 254,
        pattern = r"^[!-?A-~]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        example = "ada@example.com")]
    pub email: String,
    #[schema(max_length = 128, example = "correct-horse-42")]
    pub password: String,
    /// `bearer` (default): the refresh token in the body; `cookie`: in the sealed
    /// `__Host-lumi-refresh` cookie, with a `csrf_token` in the body.
    #[serde(default)]
    #[schema(default = "bearer")]
    pub mode: SessionMode,
}

/// A cookie-mode answer: the body, and the cookie set beside it.
fn with_cookie(tokens: BrowserTokens) -> Response {
    let cookie = tokens.set_cookie.clone();
    let mut response = axum::Json(tokens).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Start a session
///
/// Wrong credentials and an unknown address answer the same 401 in the same time; the attempt
/// spends the `auth` scope's (account, client), client and account budgets.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    operation_id = "authLogin",
    request_body(content = Login, content_type = "application/json",
        example = json!({ "email": "ada@example.com", "password": "correct-horse-42" })),
    responses(
        (status = 200, description = "The session's tokens (cookie mode also sets `__Host-lumi-refresh`).",
            body = Session,
            headers(("Set-Cookie" = String, description = "Cookie mode: the sealed refresh cookie."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn login(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    metrics: MetricSet,
    Json(body): Json<Login>,
) -> ApiResult<Response> {
    let email = checked_credentials(&body.email, &body.password)?;
    let (attempt, headers) = limit_attempts(&platform, &email, &meta, &metrics).await?;
    let mut response = match body.mode {
        SessionMode::Bearer => {
            let tokens = sessions::login(&platform, &email, &body.password, &meta).await?;
            axum::Json(tokens).into_response()
        }
        SessionMode::Cookie => {
            with_cookie(browser::login(&platform, &email, &body.password, &meta).await?)
        }
    };
    if let Some(attempt) = &attempt {
        layer::login_succeeded(&platform, attempt).await;
    }
    response.headers_mut().extend(headers);
    Ok(response)
}

/// Spend the refresh token for the next pair (reuse revokes the session)
///
/// `Authorization: Bearer <refresh token>`, or (cookie mode) the refresh cookie with
/// `X-CSRF-Token`; a cookie request from another site is 403.
#[utoipa::path(
    post,
    path = "/api/v1/auth/rotate",
    tag = "auth",
    operation_id = "authRotate",
    security(("refreshToken" = []), ("refreshCookie" = [], "csrfToken" = [])),
    responses(
        (status = 200, description = "The next pair (cookie mode also sets the next cookie).",
            body = Session,
            headers(("Set-Cookie" = String, description = "Cookie mode: the next sealed refresh cookie."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn rotate(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    parts: Parts,
) -> ApiResult<Response> {
    if let Some(request) = BrowserRequest::from_headers(&parts.headers) {
        return Ok(with_cookie(
            browser::rotate(&platform, &request, &meta).await?,
        ));
    }
    let tokens = sessions::rotate(&platform, bearer(&parts)?, &meta).await?;
    Ok(axum::Json(tokens).into_response())
}

/// End every session of the caller at once
#[utoipa::path(
    post,
    path = "/api/v1/auth/revoke-all",
    tag = "auth",
    operation_id = "authRevokeAll",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "Every session of the caller is over.", body = Revoked),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn revoke_all(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    user: Authenticated,
) -> ApiResult<Response> {
    let table = &platform.config.tables.app;
    let now = now_ms();
    users::end_all_sessions(&platform.db, table, &user.user.id, now).await?;
    audit::record(
        &platform.db,
        table,
        AuditEvent {
            actor: format!("user:{}", user.user.id),
            action: "auth.revoke_all".into(),
            target: format!("user:{}", user.user.id),
            summary: json!({
                "before": { "sessions_valid_after_ms": user.account.sessions_valid_after_ms },
                "after": { "sessions_valid_after_ms": now },
            }),
            request_id: meta.request_id,
            client_ip: meta.client_ip,
            at: String::new(),
        },
    )
    .await?;
    Ok(axum::Json(Revoked {
        revoked: true,
        sessions_valid_after_ms: now,
    })
    .into_response())
}

/// End the current session
///
/// The access token's session, or (cookie mode) the cookie's with `X-CSRF-Token`; the refresh
/// cookie is cleared either way.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    operation_id = "authLogout",
    security(("accessToken" = []), ("refreshCookie" = [], "csrfToken" = [])),
    responses(
        (status = 204, description = "The session is over.",
            headers(("Set-Cookie" = String, description = "Clears the refresh cookie."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn logout(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    parts: Parts,
) -> ApiResult<Response> {
    let cleared: HeaderValue = match BrowserRequest::from_headers(&parts.headers) {
        Some(request) => browser::logout(&platform, &request, &meta).await?,
        None => {
            let user = authenticate(&platform, bearer(&parts)?).await?;
            sessions::end(
                &platform.db,
                &platform.config.tables.app,
                &user.user.id,
                &user.session_id,
                "logout",
            )
            .await?;
            // A browser that also holds the cookie of this or an older session drops it.
            browser::clear_refresh_cookie()
        }
    };
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared)]).into_response())
}

/// The signed-in account
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    operation_id = "authMe",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "The account.", body = User),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn me(user: Authenticated) -> axum::Json<lumi_shared::auth::User> {
    axum::Json(user.user)
}
