//! Users: the account item and the writes that change it.
//!
//! An account is two items written in one transaction: `USER#<id>`/`PROFILE` and the email claim
//! `EMAIL#<email>`/`EMAIL`, each conditional on not existing yet, so two concurrent
//! registrations of one email cannot both win.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::password;
use crate::{
    error::{ApiError, FieldError},
    store::{Db, StoreError, key, to_item},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Standard,
    /// Rate-limit quotas are multiplied for premium users.
    Premium,
}

/// The stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserItem {
    pub pk: String,
    pub sk: String,
    /// `USERS` / email: lists and searches accounts by email.
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    #[serde(default)]
    pub tier: Tier,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub locked_reason: Option<String>,
    /// Sessions started before this instant (ms) are over: revoke-all and lock set it.
    #[serde(default)]
    pub sessions_valid_after_ms: i64,
    pub created_at: String,
}

/// What callers may see of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub tier: Tier,
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_reason: Option<String>,
    pub created_at: String,
}

impl From<&UserItem> for User {
    fn from(item: &UserItem) -> Self {
        Self {
            id: item.user_id.clone(),
            email: item.email.clone(),
            name: item.name.clone(),
            role: item.role,
            tier: item.tier,
            locked: item.locked,
            locked_reason: item.locked_reason.clone(),
            created_at: item.created_at.clone(),
        }
    }
}

pub fn user_key(user_id: &str) -> crate::store::Item {
    key(format!("USER#{user_id}"), "PROFILE")
}

fn email_key(email: &str) -> crate::store::Item {
    key(format!("EMAIL#{email}"), "EMAIL")
}

#[derive(Debug, Serialize, Deserialize)]
struct EmailClaim {
    pk: String,
    sk: String,
    user_id: String,
}

/// Trimmed and lower-cased, or why it is not an email address.
pub fn normalize_email(raw: &str) -> Result<String, FieldError> {
    let email = raw.trim().to_lowercase();
    let invalid = |message: &str| FieldError {
        field: "email".into(),
        message: message.into(),
    };
    if email.len() > 254 {
        return Err(invalid("must be at most 254 characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid("is not an email address"));
    };
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    // The local part is a dot-atom (RFC 5322): letters, digits and `!#$%&'*+-/=?^_`{|}~`, in
    // dot-separated runs; what the OpenAPI document's `format: email` admits, nothing more.
    let local_ok = local.len() <= 64
        && local.split('.').all(|run| {
            !run.is_empty()
                && run
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        });
    if !local_ok || !domain_ok {
        return Err(invalid("is not an email address"));
    }
    Ok(email)
}

/// A new account, as submitted.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password: String,
    pub role: Role,
    pub tier: Tier,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("invalid account details")]
    Invalid(Vec<FieldError>),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

impl From<CreateUserError> for ApiError {
    fn from(error: CreateUserError) -> Self {
        match error {
            CreateUserError::Invalid(errors) => ApiError::Validation {
                detail: format!("{} field(s) are invalid", errors.len()).into(),
                errors,
            },
            CreateUserError::EmailTaken => {
                ApiError::Conflict("an account with this email already exists".into())
            }
            CreateUserError::Store(error) => error.into(),
            CreateUserError::Hash(reason) => ApiError::internal(reason),
        }
    }
}

/// Every field of a new account checked at once: its normalised email, or every field's error
/// (the register handler asks before the rate limiter sees the email).
pub fn validate_new(new: &NewUser) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = normalize_email(&new.email)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError {
            field: "name".into(),
            message: "must be 1 to 100 characters".into(),
        });
    }
    if let Err(error) = password::check_policy(&new.password, &email) {
        errors.push(error);
    }
    if errors.is_empty() {
        Ok(email)
    } else {
        Err(errors)
    }
}

/// Validates, hashes and writes a new account.
pub async fn create(db: &Db, table: &str, new: NewUser) -> Result<User, CreateUserError> {
    let email = validate_new(&new).map_err(CreateUserError::Invalid)?;
    let name = new.name.trim().to_owned();
    let password = new.password;
    let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| CreateUserError::Hash(e.to_string()))?
        .map_err(|e| CreateUserError::Hash(e.to_string()))?;
    let user_id = uuid::Uuid::new_v4().simple().to_string();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let item = UserItem {
        pk: format!("USER#{user_id}"),
        sk: "PROFILE".into(),
        gsi1pk: "USERS".into(),
        gsi1sk: email.clone(),
        user_id: user_id.clone(),
        email: email.clone(),
        name,
        password_hash,
        role: new.role,
        tier: new.tier,
        locked: false,
        locked_reason: None,
        sessions_valid_after_ms: 0,
        created_at: now,
    };
    let claim = EmailClaim {
        pk: format!("EMAIL#{email}"),
        sk: "EMAIL".into(),
        user_id,
    };
    let put = |item: crate::store::Item| -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Service {
                op: "TransactWriteItems",
                table: table.to_owned(),
                code: "InvalidRequest".into(),
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().put(put).build())
    };
    let writes = vec![put(to_item(table, &item)?)?, put(to_item(table, &claim)?)?];
    match db.transact(table, writes).await {
        Ok(()) => Ok(User::from(&item)),
        Err(StoreError::ConditionFailed { .. }) => Err(CreateUserError::EmailTaken),
        Err(error) => Err(error.into()),
    }
}

pub async fn get(db: &Db, table: &str, user_id: &str) -> Result<Option<UserItem>, StoreError> {
    db.get_consistent(table, user_key(user_id)).await
}

/// The account of a (normalized) email address.
pub async fn find_by_email(
    db: &Db,
    table: &str,
    email: &str,
) -> Result<Option<UserItem>, StoreError> {
    let Some(claim) = db
        .get_consistent::<EmailClaim>(table, email_key(email))
        .await?
    else {
        return Ok(None);
    };
    get(db, table, &claim.user_id).await
}

/// Ends every session of the user at once: sessions started before `now_ms` are refused from
/// their next use, in every container. Returns false when the user does not exist.
pub async fn end_all_sessions(
    db: &Db,
    table: &str,
    user_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(user_key(user_id)))
        .update_expression("SET sessions_valid_after_ms = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
        .send();
    match db.call("UpdateItem", table, request).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Locks (with a reason, ending every session) or unlocks an account. Returns the account as it
/// was before, or None when it does not exist.
pub async fn set_locked(
    db: &Db,
    table: &str,
    user_id: &str,
    lock: Option<&str>,
    now_ms: i64,
) -> Result<Option<UserItem>, StoreError> {
    let mut request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(user_key(user_id)))
        .condition_expression("attribute_exists(pk)")
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
    request = match lock {
        Some(reason) => request
            .update_expression(
                "SET locked = :t, locked_reason = :r, sessions_valid_after_ms = :now",
            )
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":r", AttributeValue::S(reason.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string())),
        None => request
            .update_expression("SET locked = :f REMOVE locked_reason")
            .expression_attribute_values(":f", AttributeValue::Bool(false)),
    };
    match db.call("UpdateItem", table, request.send()).await {
        Ok(output) => output
            .attributes
            .map(|item| crate::store::from_item(table, item))
            .transpose(),
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Accounts whose email starts with `prefix` (all of them for ""), by email; at most `limit`.
/// One page of accounts by email (a prefix, or all), from `start`; the next page's start.
pub async fn list_by_email(
    db: &Db,
    table: &str,
    prefix: &str,
    limit: i32,
    start: Option<crate::store::Item>,
) -> Result<(Vec<User>, Option<crate::store::Item>), StoreError> {
    use crate::store::s;
    let prefix = prefix.trim().to_lowercase();
    let mut request = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .expression_attribute_values(":users", s("USERS"))
        .limit(limit)
        .set_exclusive_start_key(start);
    request = if prefix.is_empty() {
        request.key_condition_expression("gsi1pk = :users")
    } else {
        request
            .key_condition_expression("gsi1pk = :users AND begins_with(gsi1sk, :email)")
            .expression_attribute_values(":email", s(prefix))
    };
    let (items, next) = db.query_page(table, request).await?;
    let users = items
        .into_iter()
        .map(|item| crate::store::from_item::<UserItem>(table, item).map(|u| User::from(&u)))
        .collect::<Result<_, _>>()?;
    Ok((users, next))
}

/// A user id as accounts are created with (32 lowercase hexadecimal digits: a simple UUID),
/// checked before anything is read with it (the exact format, above the edge's identifier
/// floor, `http::path_ids`): anything else names nobody.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let well_formed = raw.len() == 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(UserError::MalformedId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Premium => "premium",
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = UserError;

    fn from_str(raw: &str) -> Result<Self, UserError> {
        match raw {
            "standard" => Ok(Self::Standard),
            "premium" => Ok(Self::Premium),
            _ => Err(UserError::UnknownTier),
        }
    }
}

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no user has this id (a user id is 32 hexadecimal digits)")]
    MalformedId,
    #[error("no user {0}")]
    NotFound(String),
    #[error("the tier is unknown: standard or premium")]
    UnknownTier,
    #[error("the account changed meanwhile; retry")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::DomainError for UserError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            // Like a malformed path identifier at the edge: it names nothing that exists.
            Self::MalformedId | Self::NotFound(_) => ErrorClass::NotFound,
            Self::UnknownTier => ErrorClass::Invalid(vec![FieldError {
                field: "tier".into(),
                message: "must be standard or premium".into(),
            }]),
            Self::Changed => ErrorClass::Conflict,
            Self::Store(store) => store.class(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Store(store) => store.public_detail(),
            other => other.to_string(),
        }
    }
}

/// Who changes an account, for its audit event.
#[derive(Debug, Clone, Default)]
pub struct ChangedBy {
    /// `admin:<id>`, `operator:<login>` (the CLI), ...
    pub actor: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

/// What a tier change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierChange {
    pub user_id: String,
    pub before: Tier,
    pub after: Tier,
    /// False when the account had that tier already (nothing written, nothing audited).
    pub changed: bool,
}

/// Sets a user's tier (the rate limiter's premium multiplier), with its audit event
/// (`user.tier`, target `user:<id>`) in the same transaction. It applies from the user's next
/// access token (the next login or refresh): tokens carry the tier.
pub async fn set_tier(
    db: &Db,
    table: &str,
    user: &UserId,
    tier: Tier,
    by: ChangedBy,
) -> Result<TierChange, UserError> {
    use crate::{
        audit::{self, AuditEvent},
        store::{Tx, s},
    };
    let item = get(db, table, user.as_str())
        .await?
        .ok_or_else(|| UserError::NotFound(user.to_string()))?;
    let before = item.tier;
    let change = TierChange {
        user_id: item.user_id,
        before,
        after: tier,
        changed: before != tier,
    };
    if !change.changed {
        return Ok(change);
    }
    let mut tx = Tx::new(table);
    // Under the tier read (absent on accounts older than tiers: standard), so the audit event's
    // `before` is what was replaced.
    let condition = if before == Tier::Standard {
        "attribute_exists(pk) AND (attribute_not_exists(#tier) OR #tier = :before)"
    } else {
        "attribute_exists(pk) AND #tier = :before"
    };
    tx.update(
        user_key(user.as_str()),
        "SET #tier = :tier",
        Some(condition),
        vec![(":tier", s(tier.as_str())), (":before", s(before.as_str()))],
    )?;
    audit::record_in(
        &mut tx,
        &AuditEvent {
            actor: by.actor,
            action: "user.tier".into(),
            target: format!("user:{user}"),
            summary: serde_json::json!({ "before": { "tier": before }, "after": { "tier": tier } }),
            request_id: by.request_id,
            client_ip: by.client_ip,
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        },
    )?;
    match db.commit(tx).await? {
        Ok(()) => Ok(change),
        Err(_) => Err(UserError::Changed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_and_tiers_are_parsed() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(UserId::parse(&id).unwrap().as_str(), id);
        for bad in [
            "",
            "USER#1",
            &id.to_uppercase(),
            &id[..31],
            &format!("{id}0"),
            "../etc",
        ] {
            assert!(
                matches!(UserId::parse(bad), Err(UserError::MalformedId)),
                "{bad}"
            );
        }
        assert_eq!("premium".parse::<Tier>().unwrap(), Tier::Premium);
        assert_eq!("standard".parse::<Tier>().unwrap(), Tier::Standard);
        for bad in ["gold", "Premium", ""] {
            assert!(
                matches!(bad.parse::<Tier>(), Err(UserError::UnknownTier)),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Yuki@Example.COM ").unwrap(),
            "yuki@example.com"
        );
        for bad in [
            "",
            "yuki",
            "yuki@",
            "@example.com",
            "yuki@example",
            "yu ki@example.com",
            "a@.com",
            "$v,`i>f<mf?k>07@0.4bbcu",
            ".yuki@example.com",
            "yu..ki@example.com",
            "yuki@exa..mple.com",
            "yuki@-example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        for good in ["o'brien+shop@example.co.uk", "a.b-c_d@sub.example.com"] {
            assert!(normalize_email(good).is_ok(), "{good}");
        }
    }
}
