//! Accounts' tiers and quota usage: `PUT /api/v1/admin/users/{id}/tier` (audited `user.tier`,
//! effective from the user's next token) and `GET /api/v1/admin/users/{id}/usage` (the hourly
//! usage records). The id's format is checked before anything is read.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
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
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(crate) struct TierBody {
    tier: String,
}

/// `PUT /api/v1/admin/users/{id}/tier` `{"tier": "premium"}`.
pub(crate) async fn set_tier(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<TierBody>,
) -> ApiResult<axum::Json<Value>> {
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
    Ok(axum::Json(json!({
        "user_id": change.user_id,
        "tier": change.after,
        "before": change.before,
        "changed": change.changed,
        "effective": "from the user's next access token (next login or refresh)",
    })))
}

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    hours: Option<u32>,
    until: Option<String>,
}

/// `GET /api/v1/admin/users/{id}/usage?hours=24&until=<RFC 3339>`.
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
