//! Sessions: one per login, each with an opaque refresh token that rotates.
//!
//! A refresh token is `<user id>.<session id>.<256 random bits, base64url>`; only its SHA-256 is
//! stored, on the session item (`USER#<id>`/`SESSION#<sid>`). Rotating spends the presented
//! token and issues the next one in one conditional write. Presenting a spent token again is
//! reuse: someone holds a copy, so the whole session (every token descended from that login) is
//! revoked and a security audit event is written.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    now_ms, password, tokens,
    users::{self, User, UserItem},
};
use crate::{
    audit::{self, AuditEvent},
    error::ApiError,
    platform::Platform,
    store::{Db, Item, StoreError, from_item, key},
};

/// Spent token hashes kept per session for reuse detection.
const SPENT_KEPT: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionItem {
    pub pk: String,
    pub sk: String,
    pub session_id: String,
    pub user_id: String,
    pub created_ms: i64,
    pub last_used_ms: i64,
    pub absolute_expires_ms: i64,
    /// DynamoDB TTL (seconds); readers check expiry themselves, as TTL deletion may lag.
    pub expires_at: i64,
    pub generation: u64,
    pub token_hash: String,
    #[serde(default)]
    pub spent_hashes: Vec<String>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub revoked_reason: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
}

pub fn session_key(user_id: &str, session_id: &str) -> Item {
    key(format!("USER#{user_id}"), format!("SESSION#{session_id}"))
}

/// Who is calling: for audit events and session records. An extractor too (from what the edge
/// put on the request).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, ApiError> {
        use crate::http::{ClientIp, RequestId};
        Ok(Self {
            request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
            client_ip: parts.extensions.get::<ClientIp>().map(|ip| ip.0.clone()),
        })
    }
}

/// What a login or a rotation returns.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedTokens {
    pub token_type: &'static str,
    pub access_token: String,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
    /// RFC 3339: the session's absolute end.
    pub refresh_expires_at: String,
    pub session_id: String,
    pub user: User,
}

fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_refresh_token(user_id: &str, session_id: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    format!("{user_id}.{session_id}.{secret}")
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn unauthorized(detail: &'static str) -> ApiError {
    ApiError::Unauthorized(detail.into())
}

async fn issue(
    platform: &Platform,
    user: &UserItem,
    session: &SessionItem,
    refresh_token: String,
) -> Result<IssuedTokens, ApiError> {
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    let settings = &platform.config.auth;
    let (access_token, _) = tokens::issue(
        &secrets,
        settings,
        &user.user_id,
        &session.session_id,
        user.role,
        user.tier,
        now_ms() / 1000,
    )
    .map_err(ApiError::internal)?;
    Ok(IssuedTokens {
        token_type: "Bearer",
        access_token,
        expires_in: settings.access_token_ttl.as_secs(),
        refresh_token,
        refresh_expires_at: rfc3339_ms(session.absolute_expires_ms),
        session_id: session.session_id.clone(),
        user: User::from(user),
    })
}

pub(crate) fn secrets_unavailable(error: crate::secrets::SecretsError) -> ApiError {
    ApiError::unavailable("the key store is unavailable; retry shortly", error)
}

/// Checks email and password; the same 401 (after the same work) for an unknown email and a
/// wrong password; 403 for a locked account. Starts a session.
pub async fn login(
    platform: &Platform,
    email: &str,
    password_attempt: &str,
    meta: &RequestMeta,
) -> Result<IssuedTokens, ApiError> {
    const REFUSED: &str = "the email or the password is wrong";
    let table = &platform.config.tables.app;
    let user = match users::normalize_email(email) {
        Ok(email) => users::find_by_email(&platform.db, table, &email).await?,
        Err(_) => None,
    };
    let attempt = password_attempt.to_owned();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => password::verify(&attempt, &hash),
        None => {
            password::verify_dummy(&attempt);
            false
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(unauthorized(REFUSED)),
    };
    if user.locked {
        return Err(ApiError::Forbidden(
            "this account is locked; contact support".into(),
        ));
    }
    start(platform, &user, meta).await
}

/// Starts a session for `user` and issues its first tokens.
pub async fn start(
    platform: &Platform,
    user: &UserItem,
    meta: &RequestMeta,
) -> Result<IssuedTokens, ApiError> {
    let settings = &platform.config.auth;
    let now = now_ms();
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let refresh_token = new_refresh_token(&user.user_id, &session_id);
    let absolute_expires_ms = now + settings.refresh_token_ttl.as_millis() as i64;
    let session = SessionItem {
        pk: format!("USER#{}", user.user_id),
        sk: format!("SESSION#{session_id}"),
        session_id,
        user_id: user.user_id.clone(),
        created_ms: now,
        last_used_ms: now,
        absolute_expires_ms,
        expires_at: absolute_expires_ms / 1000,
        generation: 0,
        token_hash: hash_token(&refresh_token),
        spent_hashes: Vec::new(),
        revoked: false,
        revoked_reason: None,
        client_ip: meta.client_ip.clone(),
    };
    platform
        .db
        .put_new(&platform.config.tables.app, &session)
        .await?;
    issue(platform, user, &session, refresh_token).await
}

/// Why a session can no longer be used, if it cannot.
pub fn session_refusal(
    session: &SessionItem,
    user: &UserItem,
    now: i64,
    idle_ms: i64,
) -> Option<&'static str> {
    if session.revoked {
        Some("the session has ended")
    } else if session.created_ms < user.sessions_valid_after_ms {
        Some("the session was revoked")
    } else if now >= session.absolute_expires_ms {
        Some("the session has expired")
    } else if idle_ms > 0 && now - session.last_used_ms > idle_ms {
        Some("the session expired after inactivity")
    } else {
        None
    }
}

/// Spends `refresh_token` and issues the next pair; reuse of a spent token revokes the session.
pub async fn rotate(
    platform: &Platform,
    refresh_token: &str,
    meta: &RequestMeta,
) -> Result<IssuedTokens, ApiError> {
    const INVALID: &str = "the refresh token is not valid";
    let table = &platform.config.tables.app;
    let mut parts = refresh_token.split('.');
    let (Some(user_id), Some(session_id), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized(INVALID));
    };
    let safe =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !safe(user_id) || !safe(session_id) {
        return Err(unauthorized(INVALID));
    }
    let (user, session) = load_state(&platform.db, table, user_id, session_id).await?;
    let (Some(user), Some(session)) = (user, session) else {
        return Err(unauthorized(INVALID));
    };
    let presented = hash_token(refresh_token);
    if presented != session.token_hash {
        if session.spent_hashes.contains(&presented) {
            revoke_for_reuse(platform, &session, meta).await?;
            return Err(unauthorized(
                "the refresh token was already used; the session is revoked",
            ));
        }
        return Err(unauthorized(INVALID));
    }
    let now = now_ms();
    let idle = platform.config.auth.refresh_idle_timeout.as_millis() as i64;
    if let Some(reason) = session_refusal(&session, &user, now, idle) {
        return Err(unauthorized(reason));
    }
    if user.locked {
        return Err(ApiError::Forbidden(
            "this account is locked; contact support".into(),
        ));
    }
    let next = new_refresh_token(&user.user_id, &session.session_id);
    let mut spent = vec![presented.clone()];
    spent.extend(session.spent_hashes.iter().take(SPENT_KEPT - 1).cloned());
    let request = platform
        .db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(session_key(&session.user_id, &session.session_id)))
        .update_expression(
            "SET token_hash = :next, spent_hashes = :spent, last_used_ms = :now, generation = generation + :one",
        )
        .condition_expression("token_hash = :presented AND revoked = :false")
        .expression_attribute_values(":next", AttributeValue::S(hash_token(&next)))
        .expression_attribute_values(
            ":spent",
            AttributeValue::L(spent.into_iter().map(AttributeValue::S).collect()),
        )
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":presented", AttributeValue::S(presented))
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .send();
    match platform.db.call("UpdateItem", table, request).await {
        Ok(_) => issue(platform, &user, &session, next).await,
        // Another request spent this token between our read and our write: two holders.
        Err(StoreError::ConditionFailed { .. }) => {
            revoke_for_reuse(platform, &session, meta).await?;
            Err(unauthorized(
                "the refresh token was already used; the session is revoked",
            ))
        }
        Err(error) => Err(error.into()),
    }
}

async fn revoke_for_reuse(
    platform: &Platform,
    session: &SessionItem,
    meta: &RequestMeta,
) -> Result<(), ApiError> {
    let table = &platform.config.tables.app;
    end(
        &platform.db,
        table,
        &session.user_id,
        &session.session_id,
        "refresh token reuse",
    )
    .await?;
    tracing::warn!(
        user_id = %session.user_id,
        session_id = %session.session_id,
        "refresh token reuse: session revoked"
    );
    audit::record(
        &platform.db,
        table,
        AuditEvent {
            actor: format!("user:{}", session.user_id),
            action: "auth.refresh_token_reuse".into(),
            target: format!("session:{}", session.session_id),
            summary: serde_json::json!({
                "user_id": session.user_id,
                "session_id": session.session_id,
                "generation": session.generation,
                "before": { "revoked": session.revoked },
                "after": { "revoked": true },
            }),
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip.clone(),
            at: String::new(),
        },
    )
    .await?;
    Ok(())
}

/// Ends one session (logout, reuse). Idempotent.
pub async fn end(
    db: &Db,
    table: &str,
    user_id: &str,
    session_id: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(session_key(user_id, session_id)))
        .update_expression("SET revoked = :true, revoked_reason = :reason")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":true", AttributeValue::Bool(true))
        .expression_attribute_values(":reason", AttributeValue::S(reason.to_owned()))
        .send();
    match db.call("UpdateItem", table, request).await {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The user and one of their sessions, in one strongly consistent round trip.
pub async fn load_state(
    db: &Db,
    table: &str,
    user_id: &str,
    session_id: &str,
) -> Result<(Option<UserItem>, Option<SessionItem>), StoreError> {
    let items = db
        .batch_get(
            table,
            vec![users::user_key(user_id), session_key(user_id, session_id)],
        )
        .await?;
    let (mut user, mut session) = (None, None);
    for item in items {
        match item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
        {
            Some("PROFILE") => user = Some(from_item(table, item)?),
            Some(_) => session = Some(from_item(table, item)?),
            None => {}
        }
    }
    Ok((user, session))
}

/// Deletes every session row of a user (the runbook's "force delete by userId"). Returns how
/// many were deleted.
pub async fn purge(db: &Db, table: &str, user_id: &str) -> Result<usize, StoreError> {
    let mut deleted = 0;
    let mut start: Option<Item> = None;
    loop {
        let request = db
            .client()
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :session)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("USER#{user_id}")))
            .expression_attribute_values(":session", AttributeValue::S("SESSION#".into()))
            .projection_expression("pk, sk")
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send();
        let page = db.call("Query", table, request).await?;
        for item in page.items.unwrap_or_default() {
            let request = db
                .client()
                .delete_item()
                .table_name(table)
                .set_key(Some(item))
                .send();
            db.call("DeleteItem", table, request).await?;
            deleted += 1;
        }
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_ids_and_256_random_bits() {
        let token = new_refresh_token("u1", "s1");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts[..2], ["u1", "s1"]);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        assert_eq!(secret.len(), 32);
        assert_ne!(token, new_refresh_token("u1", "s1"));
        assert_eq!(hash_token(&token).len(), 64);
    }
}
