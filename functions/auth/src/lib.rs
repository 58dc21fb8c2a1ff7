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
use serde::Deserialize;
use serde_json::json;

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

#[derive(Deserialize)]
struct Register {
    email: String,
    password: String,
    name: String,
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

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
    #[serde(default)]
    mode: SessionMode,
}

/// A cookie-mode answer: the body, and the cookie set beside it.
fn with_cookie(tokens: BrowserTokens) -> Response {
    let cookie = tokens.set_cookie.clone();
    let mut response = axum::Json(tokens).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

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
    Ok(axum::Json(json!({ "revoked": true, "sessions_valid_after_ms": now })).into_response())
}

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

async fn me(user: Authenticated) -> axum::Json<lumi_shared::auth::User> {
    axum::Json(user.user)
}
