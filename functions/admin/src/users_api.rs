//! Accounts' tiers and quota usage: `PUT /api/v1/admin/users/{id}/tier` (audited `user.tier`,
//! effective from the user's next token) and `GET /api/v1/admin/users/{id}/usage` (the hourly
//! usage records). The id's format is checked before anything is read.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use lumi_shared::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiResult, Platform,
    auth::{
        AdminUser, Tier,
        sessions::RequestMeta,
        users::{self, ChangedBy, UserId},
    },
    http::Json,
    usage,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A tier set.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TierChanged {
    pub user_id: String,
    pub tier: Tier,
    pub before: Tier,
    /// `false` when the account had that tier already (nothing written, nothing audited).
    pub changed: bool,
    /// When the new tier applies.
    #[schema(value_type = String, example = "from the user's next access token (next login or refresh)")]
    pub effective: &'static str,
}

/// The tier to set.
#[derive(Deserialize, ToSchema)]
pub(crate) struct TierBody {
    #[schema(value_type = Tier)]
    tier: String,
}

/// Sets a user's tier (premium multiplies the hourly quota); audited as user.tier.
///
/// Effective from the user's next access token.
#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{id}/tier",
    tag = "admin",
    operation_id = "adminSetUserTier",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The user id (32 hexadecimal digits; anything else names nobody: 404).", pattern = "^[0-9a-f]{32}$")),
    request_body(content = TierBody, content_type = "application/json", example = json!({ "tier": "premium" })),
    responses(
        (status = 200, description = "The tier.", body = TierChanged),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub(crate) async fn set_tier(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<TierBody>,
) -> ApiResult<axum::Json<TierChanged>> {
    let id = UserId::parse(&id)?;
    let tier: Tier = body.tier.parse()?;
    let change = users::set_tier(
        &platform.db,
        super::table(&platform),
        &id,
        tier,
        ChangedBy {
            actor: format!("admin:{}", admin.0.user.id),
            request_id: meta.request_id,
            client_ip: meta.client_ip,
        },
    )
    .await?;
    Ok(axum::Json(TierChanged {
        user_id: change.user_id,
        tier: change.after,
        before: change.before,
        changed: change.changed,
        effective: "from the user's next access token (next login or refresh)",
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// Clock hours in the window.
    #[param(minimum = 1, maximum = 100, default = 24)]
    hours: Option<u32>,
    /// The window ends with this instant's hour (RFC 3339; default: now).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// A user's hourly quota usage (the usage records), newest hour first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}/usage",
    tag = "admin",
    operation_id = "adminUserUsage",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The user id (32 hexadecimal digits; anything else names nobody: 404).", pattern = "^[0-9a-f]{32}$"), UsageQuery),
    responses(
        (status = 200, description = "The hours with requests.", body = usage::Usage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

pub(crate) async fn usage(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Path(id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<axum::Json<usage::Usage>> {
    let id = UserId::parse(&id)?;
    let window = usage::Window::parse(query.hours, query.until.as_deref())?;
    Ok(axum::Json(usage::hourly(&platform, &id, window).await?))
}
