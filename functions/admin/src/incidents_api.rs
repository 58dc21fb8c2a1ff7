//! Security incidents (the fraud or chargeback procedure's step 3): record one for an order (its
//! tracking payload, the request ids given and its audit events' keys, kept as they were), list
//! them newest first, read one, open or resolve one with a note. Each handler parses, calls one
//! `lumi_commerce::incidents` use case (which audits its own writes) and shapes the answer.

use axum::response::Response;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use lumi_commerce::incidents::{Incident, NewIncident, StatusChange};
use lumi_shared::{
    ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::{Json, extract::idempotent},
    idempotency::{Guard, IdempotencyKey, hash_request},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Shared, actor};

/// `POST /api/v1/admin/incidents` (Idempotency-Key) `{order_reference, summary, severity,
/// request_ids?}`: 201 and the incident; a retry with the same key and body gets the same
/// incident (`Idempotency-Replayed: true`), not a second one; 422 naming every wrong field; 404
/// for an unknown order.
pub async fn create_incident(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    key: IdempotencyKey,
    Json(body): Json<NewIncident>,
) -> ApiResult<Response> {
    // The parsed body, re-serialised: the same incident asked twice hashes the same whatever
    // its whitespace or field order.
    let canonical = serde_json::to_vec(&body).unwrap_or_default();
    let guard = Guard::new(
        &format!("incident:{}", admin.0.user.id),
        &key,
        hash_request(&[b"incident", &canonical]),
    );
    let done = shop
        .record_incident(&body, &actor(&admin, meta), &guard)
        .await?;
    Ok(idempotent(StatusCode::CREATED, done))
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i32>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/incidents?limit=&cursor=`: newest first (`limit` 1 to 200, default 50).
pub async fn list_incidents(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Value>> {
    let limit = crate::page_limit(query.limit, 50)?;
    let (incidents, next) = shop.incidents(limit, query.cursor.as_deref()).await?;
    Ok(axum::Json(
        json!({ "incidents": incidents, "next_cursor": next }),
    ))
}

/// `GET /api/v1/admin/incidents/{id}`: the whole incident, with its snapshot and links.
pub async fn get_incident(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Incident>> {
    Ok(axum::Json(shop.incident(&id).await?))
}

/// `PATCH /api/v1/admin/incidents/{id}` `{status, note}`: `open` or `resolved`, audited.
pub async fn set_incident_status(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<StatusChange>,
) -> ApiResult<axum::Json<Incident>> {
    Ok(axum::Json(
        shop.set_incident_status(&id, &body, &actor(&admin, meta))
            .await?,
    ))
}
