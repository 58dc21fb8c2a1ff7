//! The auth function: accounts and sessions over HTTP. The work is in `lumi_shared::auth`
//! (the admin function and the `lumi` CLI use the same code); these handlers parse, call it, and
//! shape the answer.
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/auth/register` `{email, password, name}` | none | 201 the account |
//! | `POST /api/v1/auth/login` `{email, password}` | none | 200 access + refresh token |
//!
//! Register and login also spend the `auth` rate-limit scope, which only these handlers can
//! name, since the account is in the body: the email is validated first (422 when it is not
//! an address of at most 254 bytes, or the password is over 128 characters), then the
//! attempt spends its (account, client), client and account budgets (`layer::admit_login`).
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/auth/rotate` (also `/api/auth/rotate`) | Bearer refresh token | 200 the next pair |
//! | `POST /api/v1/auth/revoke-all` (also `/api/auth/revoke-all`) | Bearer access token | 200; every session ends |
//! | `POST /api/v1/auth/logout` | Bearer access token | 204; this session ends |
//! | `GET /api/v1/auth/me` | Bearer access token | 200 the account |

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    audit::{self, AuditEvent},
    auth::{
        Authenticated, Role, Tier,
        extract::bearer,
        now_ms, password,
        sessions::{self, IssuedTokens, RequestMeta},
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
    let email = checked_credentials(&body.email, &body.password)?;
    let (_, headers) = limit_attempts(&platform, &email, &meta, &metrics).await?;
    let user = users::create(
        &platform.db,
        &platform.config.tables.app,
        NewUser {
            email,
            name: body.name,
            password: body.password,
            role: Role::Customer,
            tier: Tier::Standard,
        },
    )
    .await?;
    let mut response = (StatusCode::CREATED, axum::Json(user)).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

async fn login(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    metrics: MetricSet,
    Json(body): Json<Login>,
) -> ApiResult<Response> {
    let email = checked_credentials(&body.email, &body.password)?;
    let (attempt, headers) = limit_attempts(&platform, &email, &meta, &metrics).await?;
    let tokens = sessions::login(&platform, &email, &body.password, &meta).await?;
    if let Some(attempt) = &attempt {
        layer::login_succeeded(&platform, attempt).await;
    }
    let mut response = axum::Json(tokens).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}

async fn rotate(
    State(platform): State<Arc<Platform>>,
    meta: RequestMeta,
    parts: Parts,
) -> ApiResult<axum::Json<IssuedTokens>> {
    let refresh_token = bearer(&parts)?;
    let tokens = sessions::rotate(&platform, refresh_token, &meta).await?;
    Ok(axum::Json(tokens))
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
    user: Authenticated,
) -> ApiResult<StatusCode> {
    sessions::end(
        &platform.db,
        &platform.config.tables.app,
        &user.user.id,
        &user.session_id,
        "logout",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(user: Authenticated) -> axum::Json<lumi_shared::auth::User> {
    axum::Json(user.user)
}
