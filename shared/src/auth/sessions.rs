//! Sessions: one per login, each with an opaque refresh token that rotates.
//!
//! A refresh token is `<user id>.<session id>.<256 random bits, base64url>`; only its SHA-256 is
//! stored, on the session item (`USER#<id>`/`SESSION#<sid>`). Rotating spends the presented
//! token and issues the next one in one conditional write. Presenting a spent token again is
//! reuse: someone holds a copy, so the whole session (every token descended from that login) is
//! revoked and a security audit event is written.
//!
//! A session is bound to its client: at login the session stores a fingerprint, an HMAC-SHA256
//! keyed with `SESSION_FINGERPRINT_SECRET` of the client's `User-Agent` with its digits, dots
//! and underscores removed (browser and OS family, not their versions, so a browser update does
//! not log anyone out). Never the IP address: a phone moving between networks keeps its
//! session. A rotation whose fingerprint differs is treated as a stolen token, like reuse: 401,
//! the session ends, and `auth.session_fingerprint_mismatch` is audited. Sessions stored before
//! fingerprints existed have none and are not checked. Rotating `SESSION_FINGERPRINT_SECRET`
//! ends every session at its next rotation.
//!
//! Besides each user's `sessions_valid_after_ms`, one global epoch (`SESSIONS`/`EPOCH`, written
//! by [`revoke_everyone`]) ends every session that started before it: "log everyone out" after
//! a key rotation. [`load_state`] reads it in the same BatchGetItem as the user and the session,
//! so the check costs no extra AWS call and takes effect at once in every container. (Every
//! authenticated request reads that one item: DynamoDB serves about 3,000 strongly consistent
//! reads per second of one key; far above this shop's traffic, and the limit to revisit, with
//! a short per-container cache, before exceeding it.)

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
    secrets::AppSecrets,
    store::{Db, Item, StoreError, Tx, from_item, key},
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
    /// [`fingerprint`] of the client that logged in; None for sessions older than fingerprints.
    #[serde(default)]
    pub fingerprint: Option<String>,
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
    /// Only for the session's fingerprint; never logged or stored as is.
    pub user_agent: Option<String>,
    /// The request's metrics (flushed by the edge), for what a use case counts itself.
    pub metrics: Option<crate::telemetry::metrics::MetricSet>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, ApiError> {
        use crate::http::{ClientIp, RequestId};
        Ok(Self {
            request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
            client_ip: parts.extensions.get::<ClientIp>().map(|ip| ip.0.clone()),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            metrics: parts
                .extensions
                .get::<crate::telemetry::metrics::MetricSet>()
                .cloned(),
        })
    }
}

/// What a login or a rotation returns.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedTokens {
    pub token_type: String,
    pub access_token: String,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
    /// RFC 3339: the session's absolute end.
    pub refresh_expires_at: String,
    /// The same instant in ms (for a cookie's `Max-Age`).
    #[serde(skip)]
    pub refresh_expires_ms: i64,
    pub session_id: String,
    pub user: User,
}

/// The `(user id, session id)` a refresh token names, if it has the shape of one.
pub fn refresh_token_ids(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.split('.');
    let (Some(user_id), Some(session_id), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let safe =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (safe(user_id) && safe(session_id)).then_some((user_id, session_id))
}

/// The stable traits of a client, keyed: see the module's documentation.
pub fn fingerprint(secrets: &AppSecrets, user_agent: Option<&str>) -> String {
    use hmac::{Hmac, Mac as _};
    use secrecy::ExposeSecret as _;
    let family: String = user_agent
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.' && *c != '_')
        .collect();
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(
        secrets
            .session_fingerprint_secret
            .expose_secret()
            .as_bytes(),
    )
    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"user-agent\0");
    mac.update(family.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    secrets: &AppSecrets,
    user: &UserItem,
    session: &SessionItem,
    refresh_token: String,
) -> Result<IssuedTokens, ApiError> {
    let settings = &platform.config.auth;
    let (access_token, _) = tokens::issue(
        secrets,
        settings,
        &user.user_id,
        &session.session_id,
        user.role,
        user.tier,
        now_ms() / 1000,
    )
    .map_err(ApiError::internal)?;
    Ok(IssuedTokens {
        token_type: "Bearer".to_owned(),
        access_token,
        expires_in: settings.access_token_ttl.as_secs(),
        refresh_token,
        refresh_expires_at: rfc3339_ms(session.absolute_expires_ms),
        refresh_expires_ms: session.absolute_expires_ms,
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
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
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
        fingerprint: Some(fingerprint(&secrets, meta.user_agent.as_deref())),
    };
    platform
        .db
        .put_new(&platform.config.tables.app, &session)
        .await?;
    issue(platform, &secrets, user, &session, refresh_token).await
}

/// Why a session can no longer be used, if it cannot. `everyone_valid_after_ms` is the global
/// epoch of [`SessionState`].
pub fn session_refusal(
    session: &SessionItem,
    user: &UserItem,
    everyone_valid_after_ms: i64,
    now: i64,
    idle_ms: i64,
) -> Option<&'static str> {
    if session.revoked {
        Some("the session has ended")
    } else if session.created_ms < user.sessions_valid_after_ms {
        Some("the session was revoked")
    } else if session.created_ms < everyone_valid_after_ms {
        Some("every session was ended; sign in again")
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
    let table = &platform.config.tables.app;
    let Current {
        user,
        session,
        everyone_valid_after_ms,
        presented,
    } = current_session(platform, refresh_token, meta).await?;
    let now = now_ms();
    let idle = platform.config.auth.refresh_idle_timeout.as_millis() as i64;
    if let Some(reason) = session_refusal(&session, &user, everyone_valid_after_ms, now, idle) {
        return Err(unauthorized(reason));
    }
    if user.locked {
        return Err(ApiError::Forbidden(
            "this account is locked; contact support".into(),
        ));
    }
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    if let Some(bound) = &session.fingerprint
        && *bound != fingerprint(&secrets, meta.user_agent.as_deref())
    {
        revoke_stolen(platform, &session, meta, Theft::OtherClient).await?;
        return Err(unauthorized(
            "the refresh token was presented by another client; the session is revoked",
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
        Ok(_) => issue(platform, &secrets, &user, &session, next).await,
        // Another request spent this token between our read and our write: two holders.
        Err(StoreError::ConditionFailed { .. }) => {
            revoke_stolen(platform, &session, meta, Theft::Reuse).await?;
            Err(unauthorized(
                "the refresh token was already used; the session is revoked",
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// A refresh token's session, as read for a rotation or a logout.
struct Current {
    user: UserItem,
    session: SessionItem,
    everyone_valid_after_ms: i64,
    /// The presented token's hash.
    presented: String,
}

/// The user and the session a refresh token names, when the token is that session's current
/// one; a spent token is reuse and ends the session.
async fn current_session(
    platform: &Platform,
    refresh_token: &str,
    meta: &RequestMeta,
) -> Result<Current, ApiError> {
    const INVALID: &str = "the refresh token is not valid";
    let table = &platform.config.tables.app;
    let (user_id, session_id) =
        refresh_token_ids(refresh_token).ok_or_else(|| unauthorized(INVALID))?;
    let state = load_state(&platform.db, table, user_id, session_id).await?;
    let (Some(user), Some(session)) = (state.user, state.session) else {
        return Err(unauthorized(INVALID));
    };
    let presented = hash_token(refresh_token);
    if presented != session.token_hash {
        if session.spent_hashes.contains(&presented) {
            revoke_stolen(platform, &session, meta, Theft::Reuse).await?;
            return Err(unauthorized(
                "the refresh token was already used; the session is revoked",
            ));
        }
        return Err(unauthorized(INVALID));
    }
    Ok(Current {
        user,
        session,
        everyone_valid_after_ms: state.everyone_valid_after_ms,
        presented,
    })
}

/// Ends the session whose current refresh token this is (logout in cookie mode). Idempotent.
pub async fn end_with_refresh_token(
    platform: &Platform,
    refresh_token: &str,
    meta: &RequestMeta,
) -> Result<(), ApiError> {
    let Current { session, .. } = current_session(platform, refresh_token, meta).await?;
    let table = &platform.config.tables.app;
    end(
        &platform.db,
        table,
        &session.user_id,
        &session.session_id,
        "logout",
    )
    .await?;
    Ok(())
}

/// Why a session's tokens are taken to be in a thief's hands.
#[derive(Debug, Clone, Copy)]
enum Theft {
    /// A spent refresh token came back.
    Reuse,
    /// The refresh token came from a client with another fingerprint.
    OtherClient,
}

impl Theft {
    fn reason(self) -> &'static str {
        match self {
            Theft::Reuse => "refresh token reuse",
            Theft::OtherClient => "client fingerprint mismatch",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Theft::Reuse => "auth.refresh_token_reuse",
            Theft::OtherClient => "auth.session_fingerprint_mismatch",
        }
    }
}

/// Ends the whole session (every token descended from its login) and audits why.
async fn revoke_stolen(
    platform: &Platform,
    session: &SessionItem,
    meta: &RequestMeta,
    theft: Theft,
) -> Result<(), ApiError> {
    let table = &platform.config.tables.app;
    end(
        &platform.db,
        table,
        &session.user_id,
        &session.session_id,
        theft.reason(),
    )
    .await?;
    tracing::warn!(
        user_id = %session.user_id,
        session_id = %session.session_id,
        reason = theft.reason(),
        "stolen refresh token: session revoked"
    );
    audit::record(
        &platform.db,
        table,
        AuditEvent {
            actor: format!("user:{}", session.user_id),
            action: theft.action().into(),
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

/// What the auth check needs to know about a session.
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    pub user: Option<UserItem>,
    pub session: Option<SessionItem>,
    /// The global epoch: sessions that started earlier are over (0: never set).
    pub everyone_valid_after_ms: i64,
}

/// The global epoch's item.
pub fn epoch_key() -> Item {
    key("SESSIONS", "EPOCH")
}

#[derive(Debug, Serialize, Deserialize)]
struct EpochItem {
    pk: String,
    sk: String,
    sessions_valid_after_ms: i64,
}

/// The user, one of their sessions and the global epoch, in one strongly consistent round trip.
pub async fn load_state(
    db: &Db,
    table: &str,
    user_id: &str,
    session_id: &str,
) -> Result<SessionState, StoreError> {
    let items = db
        .batch_get(
            table,
            vec![
                users::user_key(user_id),
                session_key(user_id, session_id),
                epoch_key(),
            ],
        )
        .await?;
    let mut state = SessionState::default();
    for item in items {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        match (text("pk").as_deref(), text("sk").as_deref()) {
            (Some("SESSIONS"), Some("EPOCH")) => {
                let epoch: EpochItem = from_item(table, item)?;
                state.everyone_valid_after_ms = epoch.sessions_valid_after_ms;
            }
            (_, Some("PROFILE")) => state.user = Some(from_item(table, item)?),
            (_, Some(sk)) if sk.starts_with("SESSION#") => {
                state.session = Some(from_item(table, item)?);
            }
            _ => {}
        }
    }
    Ok(state)
}

/// The outcome of [`revoke_everyone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EveryoneRevoked {
    /// The epoch before (0: never set).
    pub before_ms: i64,
    /// The epoch now: every session that started earlier is over.
    pub sessions_valid_after_ms: i64,
}

/// Logs everyone out: sets the global epoch to `now_ms` (never moving it back) and audits it
/// (`auth.revoke_all_everyone`, target `sessions:everyone`) in the same transaction. Every
/// access token and refresh token issued earlier is refused from its next use, in every
/// container; new logins work at once. Used by `POST /api/v1/admin/sessions/revoke-all` and
/// `lumi sessions revoke-all --everyone` (whose clock is the operator's: keep it synchronised).
pub async fn revoke_everyone(
    db: &Db,
    table: &str,
    actor: &str,
    meta: &RequestMeta,
    now_ms: i64,
) -> Result<EveryoneRevoked, StoreError> {
    let before_ms = db
        .get_consistent::<EpochItem>(table, epoch_key())
        .await?
        .map_or(0, |epoch| epoch.sessions_valid_after_ms);
    let after_ms = now_ms.max(before_ms);
    let mut tx = Tx::new(table);
    tx.update(
        epoch_key(),
        "SET sessions_valid_after_ms = :after",
        None,
        vec![(":after", AttributeValue::N(after_ms.to_string()))],
    )?;
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    audit::record_in(
        &mut tx,
        &AuditEvent {
            actor: actor.to_owned(),
            action: "auth.revoke_all_everyone".into(),
            target: "sessions:everyone".into(),
            summary: serde_json::json!({
                "before": { "sessions_valid_after_ms": before_ms },
                "after": { "sessions_valid_after_ms": after_ms },
            }),
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip.clone(),
            at,
        },
    )?;
    match db.commit(tx).await? {
        Ok(()) => Ok(EveryoneRevoked {
            before_ms,
            sessions_valid_after_ms: after_ms,
        }),
        // Only a concurrent write of the same item cancels it: worth a retry by the caller.
        Err(cancelled) => Err(StoreError::Service {
            op: "TransactWriteItems",
            table: table.to_owned(),
            code: "TransactionCanceledException".into(),
            message: format!("{cancelled:?}"),
        }),
    }
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
        assert_eq!(refresh_token_ids(&token), Some(("u1", "s1")));
        assert_eq!(refresh_token_ids("u1.s1"), None);
        assert_eq!(refresh_token_ids("u-1.s1.x"), None);
    }

    #[test]
    fn fingerprints_follow_the_browser_family_not_its_version() {
        let secrets =
            AppSecrets::parse(&crate::secrets::complete_secret_json(None).unwrap()).unwrap();
        let chrome = |v: &str| {
            format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{v} Safari/537.36")
        };
        let print = |ua: &str| fingerprint(&secrets, Some(ua));
        assert_eq!(print(&chrome("120.0.0.0")), print(&chrome("131.0.6778.85")));
        assert_ne!(
            print(&chrome("120.0.0.0")),
            print("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
        );
        assert_ne!(print("curl/8.5.0"), print(&chrome("120.0.0.0")));
        let other_key =
            AppSecrets::parse(&crate::secrets::complete_secret_json(None).unwrap()).unwrap();
        assert_ne!(
            fingerprint(&other_key, Some("curl/8.5.0")),
            print("curl/8.5.0")
        );
    }
}
