//! The extractors handlers use to require a signed-in user ([`Authenticated`]) or an admin
//! ([`AdminUser`]). Each request costs the token check (no I/O while the keys are cached) and one
//! strongly consistent BatchGetItem of the user, the session and the global sessions epoch.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use http::{header, request::Parts};

use super::{
    now_ms,
    sessions::{self, secrets_unavailable},
    tokens::{self, Claims, TokenError},
    users::{Role, User, UserItem},
};
use crate::{error::ApiError, platform::Platform};

/// A request from a signed-in user whose account and session are in good standing.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub account: UserItem,
    pub session_id: String,
    pub claims: Claims,
}

/// A signed-in admin; a customer gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Authenticated);

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized("sign in: send Authorization: Bearer <token>".into())
        })?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header is not a Bearer token".into(),
        )),
    }
}

fn refused(error: TokenError) -> ApiError {
    // Which check failed is for our logs, not for whoever holds a forged token.
    tracing::info!(reason = %error, "access token refused");
    ApiError::Unauthorized("the access token is not valid".into())
}

/// Verifies an access token and the state of its user and session.
pub async fn authenticate(platform: &Platform, token: &str) -> Result<Authenticated, ApiError> {
    let kid = tokens::key_id(token).map_err(refused)?;
    let mut secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    if secrets.jwt_key(&kid).is_none() {
        // Perhaps the keys were rotated since this container read them.
        secrets = platform
            .secrets
            .refresh_for_unknown_key()
            .await
            .map_err(secrets_unavailable)?;
    }
    let claims = tokens::verify(token, &secrets, &platform.config.auth).map_err(refused)?;
    let table = &platform.config.tables.app;
    let state = sessions::load_state(&platform.db, table, &claims.sub, &claims.sid).await?;
    let (Some(account), Some(session)) = (state.user, state.session) else {
        return Err(ApiError::Unauthorized("the session does not exist".into()));
    };
    if account.locked {
        return Err(ApiError::Forbidden(
            "this account is locked; contact support".into(),
        ));
    }
    // Idle time is a refresh-token rule; an access token lives its 15 minutes.
    if let Some(reason) = sessions::session_refusal(
        &session,
        &account,
        state.everyone_valid_after_ms,
        now_ms(),
        0,
    ) {
        return Err(ApiError::Unauthorized(reason.into()));
    }
    Ok(Authenticated {
        user: User::from(&account),
        account,
        session_id: claims.sid.clone(),
        claims,
    })
}

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let platform = Arc::<Platform>::from_ref(state);
        let authenticated = authenticate(&platform, bearer(parts)?).await?;
        parts.extensions.insert(authenticated.clone());
        Ok(authenticated)
    }
}

/// Who may read the stack's metrics (`GET /api/v1/metrics`): Prometheus, with a scrape token
/// of the config secret (`metrics_scrape_token`), or a signed-in admin.
#[derive(Debug, Clone)]
pub enum MetricsReader {
    ScrapeToken,
    Admin(Box<AdminUser>),
}

/// Whether `token` is one of the secret's scrape tokens; compared in constant time.
fn is_scrape_token(secrets: &crate::secrets::AppSecrets, token: &str) -> bool {
    crate::secrets::is_one_of(&secrets.metrics_scrape_tokens, token)
}

impl<S> FromRequestParts<S> for MetricsReader
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// A JWT goes the admin's way (401 invalid, 403 not an admin); anything else must be a
    /// scrape token. A token the container does not know may be a rotated one: the secret is
    /// read again, at most once per 30 s (as for an unknown JWT key), then 401.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let platform = Arc::<Platform>::from_ref(state);
        let token = bearer(parts)?;
        if tokens::key_id(token).is_ok() {
            return Ok(Self::Admin(Box::new(
                AdminUser::from_request_parts(parts, state).await?,
            )));
        }
        let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
        if is_scrape_token(&secrets, token) {
            return Ok(Self::ScrapeToken);
        }
        let secrets = platform
            .secrets
            .refresh_for_unknown_key()
            .await
            .map_err(secrets_unavailable)?;
        if is_scrape_token(&secrets, token) {
            return Ok(Self::ScrapeToken);
        }
        tracing::info!("metrics scrape token refused");
        Err(ApiError::Unauthorized(
            "send the metrics scrape token or an admin's access token".into(),
        ))
    }
}

impl<S> FromRequestParts<S> for AdminUser
where
    Arc<Platform>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let user = Authenticated::from_request_parts(parts, state).await?;
        if user.user.role != Role::Admin {
            return Err(ApiError::Forbidden("this needs an admin account".into()));
        }
        Ok(Self(user))
    }
}
