//! `GET`/`PUT /api/v1/admin/settings`: the runtime settings (rate-limit budgets, feature flags
//! with the `orderPayments` rollout share, image quality, the slow-call threshold, the error-reporting
//! DSN), validated against their schema
//! (unknown keys and out-of-range values are 422 naming them), written with optimistic
//! concurrency (`ETag` on read, `If-Match` required on write, 412 when stale), audited.
//!
//! Sensitive settings (`errorReportingDsn`) are sealed before they are stored and shown masked
//! (`SystemSettings::masked`), in answers and in the audit event alike. A `PUT` that sends a
//! masked value back exactly as it was shown keeps the stored value, so a client can send back
//! the whole document it read.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use lumi_shared::openapi::{
    BadRequest, Forbidden, PayloadTooLarge, PreconditionFailed, PreconditionRequired,
    ServiceUnavailable, TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    auth::{AdminUser, sessions::RequestMeta},
    error::FieldError,
    http::Json,
    secrets::AppSecrets,
    settings::{ERROR_REPORTING_DSN, Sensitive, SettingsStore, SystemSettings, secrets_for},
    store::StoreError,
    telemetry::report::Dsn,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// What a scope does when the rate-limit store cannot answer in time: `open` admits, `closed`
/// refuses with 503.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum FailMode {
    Open,
    Closed,
}

/// One scope's budget: `limit` requests per `window_seconds`.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Budget {
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000, example = 600)]
    limit: u32,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400, example = 300)]
    window_seconds: u32,
    #[serde(default)]
    #[schema(nullable = false)]
    fail: Option<FailMode>,
}

/// Every scope's budget; a scope left out keeps its own.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RateLimits {
    /// Every route, per client IP.
    #[serde(default)]
    ip: Budget,
    /// Orders, cart and checkout: per user (per IP when anonymous).
    #[serde(default)]
    customer: Budget,
    /// `/api/v1/admin/*`: one budget for all admin tooling.
    #[serde(default)]
    admin: Budget,
    /// Login and register: per account and per IP.
    #[serde(default)]
    auth: Budget,
    /// Every authenticated request: per user per clock hour.
    #[serde(default)]
    quota: Budget,
    /// Premium users' quota is multiplied by this.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100, example = 2)]
    premium_multiplier: u32,
}

/// Feature flags.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct FeatureFlags {
    /// Online payment providers; off: every order is paid manually.
    #[serde(default, rename = "orderPayments")]
    order_payments: bool,
    /// With `orderPayments` on, the share of customers (a stable bucket per user) who get it;
    /// absent: everyone.
    #[serde(default, rename = "orderPaymentsRolloutPercent")]
    #[schema(minimum = 0, maximum = 100)]
    order_payments_rollout_percent: u8,
}

/// The images function's default quality per format.
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ImageQuality {
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100, example = 80)]
    jpeg: u8,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100, example = 80)]
    webp: u8,
}

/// The runtime settings as they are read (the `errorReportingDsn` masked).
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = SystemSettings)]
#[allow(dead_code)]
struct SettingsDoc {
    rate_limits: RateLimits,
    #[serde(rename = "featureFlags")]
    feature_flags: FeatureFlags,
    #[serde(rename = "imageQuality")]
    image_quality: ImageQuality,
    /// Overrides `DATABASE_SLOW_QUERY_THRESHOLD_MS`.
    #[serde(default, rename = "slowQueryThresholdMs")]
    #[schema(nullable = false)]
    slow_query_threshold_ms: Option<u64>,
    /// The Sentry DSN internal errors go to, masked.
    #[serde(default, rename = "errorReportingDsn")]
    #[schema(nullable = false)]
    error_reporting_dsn: Option<String>,
}

/// A settings change: any part of the document; what it leaves out keeps its value. Unknown
/// keys and out-of-range values are 422, naming each.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SettingsUpdate)]
#[allow(dead_code)]
struct SettingsPatch {
    #[serde(default)]
    rate_limits: RateLimits,
    #[serde(default, rename = "featureFlags")]
    feature_flags: FeatureFlags,
    #[serde(default, rename = "imageQuality")]
    image_quality: ImageQuality,
    #[serde(default, rename = "slowQueryThresholdMs")]
    #[schema(minimum = 1, maximum = 60_000, nullable = false)]
    slow_query_threshold_ms: Option<u64>,
    /// A Sentry DSN, `""` (reporting off) or `null` (the environment's); the masked value as
    /// it was read keeps the stored one.
    #[serde(default, rename = "errorReportingDsn")]
    #[schema(pattern = "^(|https?://[A-Za-z0-9]+@[A-Za-z0-9.-]+/[0-9]+)$")]
    error_reporting_dsn: Option<String>,
}

fn store(platform: &Platform) -> SettingsStore {
    SettingsStore::new(
        platform.db.clone(),
        platform.config.tables.app.clone(),
        std::time::Duration::ZERO,
        platform.config.query_timeout,
    )
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{version}\"")).unwrap_or(HeaderValue::from_static("\"v0\""))
}

/// The keys that seal and open `settings`' sensitive values.
async fn secrets(platform: &Platform, settings: &SystemSettings) -> ApiResult<Arc<AppSecrets>> {
    secrets_for(&platform.secrets, settings)
        .await
        .map_err(|e| ApiError::unavailable("the key store is unavailable; retry shortly", e))
}

fn answer(settings: Value, version: u64) -> Response {
    let mut response = axum::Json(settings).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// The runtime settings, with their version as `ETag`
#[utoipa::path(
    get,
    path = "/api/v1/admin/settings",
    tag = "admin",
    operation_id = "adminGetSettings",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "The settings (sensitive values masked).", body = SettingsDoc,
            headers(("ETag" = String, description = "`\"v<version>\"`: send it back in `If-Match`."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn get_settings(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
) -> ApiResult<Response> {
    let (settings, version) = store(&platform).read_versioned().await?;
    let keys = &secrets(&platform, &settings).await?.config_encryption_key;
    Ok(answer(settings.masked(keys), version))
}

const SCOPES: &[&str] = &["ip", "customer", "admin", "auth", "quota"];

/// Every problem of a settings document, by path.
pub fn validate(document: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: String, message: &str| {
        errors.push(FieldError {
            field,
            message: message.into(),
        })
    };
    let Some(root) = document.as_object() else {
        error(".".into(), "must be an object");
        return errors;
    };
    for (key, value) in root {
        match key.as_str() {
            "rate_limits" => {
                let Some(limits) = value.as_object() else {
                    error(key.clone(), "must be an object");
                    continue;
                };
                for (scope, budget) in limits {
                    let path = format!("rate_limits.{scope}");
                    if scope == "premium_multiplier" {
                        if !budget.as_u64().is_some_and(|m| (1..=100).contains(&m)) {
                            error(path, "must be an integer from 1 to 100");
                        }
                        continue;
                    }
                    if !SCOPES.contains(&scope.as_str()) {
                        error(path, "is not a rate-limit scope");
                        continue;
                    }
                    let Some(budget) = budget.as_object() else {
                        error(path, "must be an object");
                        continue;
                    };
                    for (field, value) in budget {
                        let path = format!("rate_limits.{scope}.{field}");
                        match field.as_str() {
                            "limit"
                                if !value
                                    .as_u64()
                                    .is_some_and(|v| (1..=1_000_000).contains(&v)) =>
                            {
                                error(path, "must be an integer from 1 to 1000000")
                            }
                            "window_seconds"
                                if !value.as_u64().is_some_and(|v| (1..=86_400).contains(&v)) =>
                            {
                                error(path, "must be an integer from 1 to 86400")
                            }
                            "fail" if !matches!(value.as_str(), Some("open" | "closed")) => {
                                error(path, "must be open or closed")
                            }
                            "limit" | "window_seconds" | "fail" => {}
                            _ => error(path, "is not a budget field"),
                        }
                    }
                }
            }
            "featureFlags" => {
                let Some(flags) = value.as_object() else {
                    error(key.clone(), "must be an object");
                    continue;
                };
                for (flag, value) in flags {
                    let path = format!("featureFlags.{flag}");
                    match flag.as_str() {
                        "orderPayments" if !value.is_boolean() => {
                            error(path, "must be true or false")
                        }
                        "orderPaymentsRolloutPercent" if value.as_u64().is_none_or(|p| p > 100) => {
                            error(path, "must be an integer from 0 to 100")
                        }
                        "orderPayments" | "orderPaymentsRolloutPercent" => {}
                        _ => error(path, "is not a feature flag"),
                    }
                }
            }
            "imageQuality" => {
                let Some(quality) = value.as_object() else {
                    error(key.clone(), "must be an object");
                    continue;
                };
                for (format, value) in quality {
                    let path = format!("imageQuality.{format}");
                    if !["jpeg", "webp"].contains(&format.as_str()) {
                        error(path, "is not an image format (jpeg, webp)");
                    } else if !value.as_u64().is_some_and(|q| (1..=100).contains(&q)) {
                        error(path, "must be an integer from 1 to 100");
                    }
                }
            }
            "slowQueryThresholdMs" => {
                if !value.as_u64().is_some_and(|ms| (1..=60_000).contains(&ms)) {
                    error(key.clone(), "must be an integer from 1 to 60000");
                }
            }
            "errorReportingDsn" => match value {
                Value::Null => {}
                Value::String(dsn) if dsn.is_empty() => {}
                Value::String(dsn) => {
                    if let Err(problem) = Dsn::parse(dsn) {
                        error(key.clone(), &problem.to_string());
                    }
                }
                _ => error(
                    key.clone(),
                    "must be a DSN, \"\" (off) or null (use the environment's)",
                ),
            },
            other => error(other.to_owned(), "is not a setting"),
        }
    }
    errors
}

/// Change the runtime settings (validated, audited), under `If-Match`
#[utoipa::path(
    put,
    path = "/api/v1/admin/settings",
    tag = "admin",
    operation_id = "adminPutSettings",
    security(("accessToken" = [])),
    params(
        ("If-Match" = String, Header, description = "The `ETag` of the settings edited: missing is 428, not an ETag 400, stale 412.", pattern = "^\"?v[0-9]+\"?$"),
    ),
    request_body(content = SettingsPatch, content_type = "application/json",
        example = json!({ "rate_limits": { "customer": { "limit": 120 } }, "imageQuality": { "webp": 70 } })),
    responses(
        (status = 200, description = "The settings after the change (sensitive values masked).", body = SettingsDoc,
            headers(("ETag" = String, description = "The new version."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 428, response = PreconditionRequired),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn put_settings(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    headers: HeaderMap,
    Json(document): Json<Value>,
) -> ApiResult<Response> {
    let if_match = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::PreconditionRequired(
            "send If-Match with the ETag of the settings you edited".into(),
        )
    })?;
    let digits = if_match
        .to_str()
        .ok()
        .and_then(|v| v.trim().trim_matches('"').strip_prefix('v'))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::bad_request("If-Match is the settings' ETag, \"v<version>\""))?;
    // An ETag too large for any version is well-formed but not the one in force: 412 below.
    let expected: Option<u64> = digits.parse().ok();
    // The patch's own shape first: a bad body is 422 whatever the version, before any read.
    // (The error-reporting DSN is checked below, once a masked value sent back is recognised.)
    let mut shape = document.clone();
    if let Some(patch) = shape.as_object_mut() {
        patch.remove(ERROR_REPORTING_DSN);
    }
    invalid_settings(&shape)?;
    let store = store(&platform);
    let (mut before, version) = store.read_versioned().await?;
    let keys = &secrets(&platform, &before).await?.config_encryption_key;
    let shown = before.masked(keys);
    let mut document = document;
    // A sensitive value sent back as it was shown (masked) means "unchanged".
    if let (Some(patch), Some(sent)) = (document.as_object_mut(), shown.get(ERROR_REPORTING_DSN))
        && patch.get(ERROR_REPORTING_DSN) == Some(sent)
    {
        patch.remove(ERROR_REPORTING_DSN);
    }
    invalid_settings(&document)?;
    // A valid patch of another version than the one in force.
    if Some(version) != expected {
        return Err(ApiError::PreconditionFailed(
            "the settings changed since you read them; reload".into(),
        ));
    }
    // Sealed here, before it goes anywhere: never merged, stored or audited in plain text.
    match document
        .as_object_mut()
        .and_then(|patch| patch.remove(ERROR_REPORTING_DSN))
    {
        None => {}
        Some(Value::String(text)) => {
            before.error_reporting_dsn = Some(
                Sensitive::seal(keys, ERROR_REPORTING_DSN, &text).map_err(ApiError::internal)?,
            );
        }
        // `null` (validated): the environment's DSN.
        Some(_) => before.error_reporting_dsn = None,
    }
    // Values an earlier version stored in plain text, or sealed under a key since rotated out
    // of first place, are sealed under the newest key by this write.
    before.seal_all(keys).map_err(ApiError::internal)?;
    // Scopes and flags left out keep their current values.
    let mut merged = serde_json::to_value(&before).map_err(ApiError::internal)?;
    merge(&mut merged, document);
    let settings: SystemSettings =
        serde_json::from_value(merged).map_err(|e| ApiError::Validation {
            detail: format!("the settings do not fit their schema: {e}").into(),
            errors: Vec::new(),
        })?;
    let version = match store.put_if_version(&settings, version).await {
        Ok(version) => version,
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(ApiError::PreconditionFailed(
                "the settings changed since you read them; reload".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let after = settings.masked(keys);
    let summary = json!({ "before": shown, "after": after });
    crate::record(
        &platform,
        &admin,
        &meta,
        "settings.update",
        "settings:system".into(),
        summary,
    )
    .await?;
    Ok(answer(after, version))
}

/// 422 naming every invalid setting of `patch`.
fn invalid_settings(patch: &Value) -> Result<(), ApiError> {
    let errors = validate(patch);
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::Validation {
        detail: format!("{} setting(s) are invalid", errors.len()).into(),
        errors,
    })
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}
