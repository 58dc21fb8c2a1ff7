//! The admin function: `/api/v1/admin/*`, for the admin role only (a customer gets 403), under
//! the shared admin rate-limit budget. Every mutation writes an audit event.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /api/v1/admin/orders` | every order, filtered by status, financial status, customer, date range; cursor |
//! | `GET /api/v1/admin/orders/{reference}` | one order: its three facets, payment, refunds, timeline |
//! | `POST /api/v1/admin/orders/{reference}/status` `{to, note}` | cancel (money back), complete, reopen |
//! | `POST /api/v1/admin/orders/{reference}/fulfillments` `{lines?, note}` | ship units of a paid order |
//! | `POST /api/v1/admin/orders/{reference}/refund` (Idempotency-Key) `{lines: [{line, quantity, restock_type}], reason}` | a refund record, restock per unit as chosen, refund email |
//! | `POST /api/v1/admin/orders/{reference}/refunds/{refund_id}/settle` | a pending refund was paid back |
//! | `GET /api/v1/admin/payments` | payments by provider and status: amounts captured and refunded |
//! | `POST /api/v1/admin/payments/{id}/capture` `{amount_minor, currency}` | money received for a manual payment |
//! | `POST /api/v1/admin/payments/{id}/fail` `{reason}` | marks a payment failed: order, stock, refund email |
//! | `GET /api/v1/admin/variants/{sku}/ledger` | a variant's counters and stock movements |
//! | `GET /api/v1/admin/audit-logs` | audit events by actor, target, action, days |
//! | `GET /api/v1/admin/users`, `POST .../{id}/lock` `{reason}`, `POST .../{id}/unlock`, `DELETE .../{id}/sessions` | accounts |
//! | `POST /api/v1/admin/sessions/revoke-all` | logs everyone out (the caller too): every earlier token is refused |
//! | `PUT /api/v1/admin/users/{id}/tier` `{tier}`, `GET .../{id}/usage?hours=&until=` | a user's tier (from the next token) and hourly quota usage (see `users_api`) |
//! | `GET`/`PUT /api/v1/admin/settings` | runtime settings, validated, with `ETag`/`If-Match` |
//! | `POST /api/v1/admin/products`, `PATCH .../{id}`, `POST /api/v1/admin/variants/{sku}/stock` | catalog and stock (see `catalog_api`) |
//! | `GET /api/v1/admin/inventory/mismatches`, `POST /api/v1/admin/inventory/rebalance` | the inventory-mismatch procedure |
//! | `GET`/`PUT /api/v1/admin/site-content/{key}` | the storefront's content blocks |
//! | `GET /api/v1/admin/email-deliveries?status=failed` | refund emails to send by hand |
//! | `POST /api/v1/admin/incidents` (Idempotency-Key), `GET` (list), `GET`/`PATCH .../{id}` | security incidents with an order's timeline (see `incidents_api`) |
//! | `GET /api/v1/metrics` (the scrape token, or an admin) | the stack's CloudWatch metrics in the Prometheus text format (see `metrics_api`) |

pub mod catalog_api;
pub mod incidents_api;
pub mod metrics_api;
pub mod orders_api;
pub mod settings_api;
pub mod users_api;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Query, State},
    routing::{delete, get, post},
};
use lumi_commerce::deliveries::Delivery;
use lumi_commerce::{Actor, Shop};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    audit::{self, AuditEvent, AuditFilter},
    auth::{
        AdminUser, now_ms,
        sessions::{self, RequestMeta},
        users,
    },
    http::{AppState, Json},
    store::{Item, decode_cursor, encode_cursor},
};
use lumi_shared::{
    audit::AuditPage,
    auth::{User, sessions::EveryoneRevoked},
    openapi::{
        BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, TooManyRequests,
        Unauthorized, UnsupportedMediaType, ValidationFailed,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// This function's operations (`lumi_infra::openapi` merges every function's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(
        orders_api::list_orders,
        orders_api::get_order,
        orders_api::change_status,
        orders_api::fulfil,
        orders_api::refund_order,
        orders_api::settle_refund,
        orders_api::list_payments,
        orders_api::list_refunds,
        orders_api::retry_refunds,
        orders_api::capture_payment,
        orders_api::fail_payment,
        audit_logs,
        catalog_api::create_product,
        catalog_api::update_product,
        catalog_api::adjust_stock,
        catalog_api::ledger,
        catalog_api::list_mismatches,
        catalog_api::rebalance,
        catalog_api::get_content,
        catalog_api::put_content,
        email_deliveries,
        incidents_api::list_incidents,
        incidents_api::create_incident,
        incidents_api::get_incident,
        incidents_api::set_incident_status,
        list_users,
        lock_user,
        unlock_user,
        delete_sessions,
        revoke_everyones_sessions,
        users_api::set_tier,
        users_api::usage,
        settings_api::get_settings,
        settings_api::put_settings,
        metrics_api::scrape,
    ))]
    struct Doc;
    Doc::openapi()
}

/// One page of accounts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A lock or unlock done.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserLock {
    pub id: String,
    pub locked: bool,
    /// Lock: every session of the account has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sessions_ended: Option<bool>,
}

/// A user's sessions deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionsDeleted {
    pub id: String,
    pub sessions_deleted: usize,
}

/// One page of refund-email deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

pub(crate) type Shared = AppState<Shop>;

pub fn routes(platform: Arc<Platform>) -> Router {
    let metrics = metrics_api::MetricsEndpoint::new(&platform);
    Router::new()
        .route(
            "/api/v1/metrics",
            get(metrics_api::scrape).layer(axum::Extension(metrics)),
        )
        .route("/api/v1/admin/orders", get(orders_api::list_orders))
        .route(
            "/api/v1/admin/orders/{reference}",
            get(orders_api::get_order),
        )
        .route(
            "/api/v1/admin/orders/{reference}/status",
            post(orders_api::change_status),
        )
        .route(
            "/api/v1/admin/orders/{reference}/fulfillments",
            post(orders_api::fulfil),
        )
        .route(
            "/api/v1/admin/orders/{reference}/refund",
            post(orders_api::refund_order),
        )
        .route(
            "/api/v1/admin/orders/{reference}/refunds/{refund_id}/settle",
            post(orders_api::settle_refund),
        )
        .route("/api/v1/admin/payments", get(orders_api::list_payments))
        .route("/api/v1/admin/refunds", get(orders_api::list_refunds))
        .route(
            "/api/v1/admin/refunds/retry",
            post(orders_api::retry_refunds),
        )
        .route(
            "/api/v1/admin/payments/{id}/capture",
            post(orders_api::capture_payment),
        )
        .route(
            "/api/v1/admin/payments/{id}/fail",
            post(orders_api::fail_payment),
        )
        .route("/api/v1/admin/audit-logs", get(audit_logs))
        .route("/api/v1/admin/products", post(catalog_api::create_product))
        .route(
            "/api/v1/admin/products/{id}",
            axum::routing::patch(catalog_api::update_product),
        )
        .route(
            "/api/v1/admin/variants/{sku}/stock",
            post(catalog_api::adjust_stock),
        )
        .route(
            "/api/v1/admin/variants/{sku}/ledger",
            get(catalog_api::ledger),
        )
        .route(
            "/api/v1/admin/inventory/mismatches",
            get(catalog_api::list_mismatches),
        )
        .route(
            "/api/v1/admin/inventory/rebalance",
            post(catalog_api::rebalance),
        )
        .route(
            "/api/v1/admin/site-content/{key}",
            get(catalog_api::get_content).put(catalog_api::put_content),
        )
        .route("/api/v1/admin/email-deliveries", get(email_deliveries))
        .route(
            "/api/v1/admin/incidents",
            get(incidents_api::list_incidents).post(incidents_api::create_incident),
        )
        .route(
            "/api/v1/admin/incidents/{id}",
            get(incidents_api::get_incident).patch(incidents_api::set_incident_status),
        )
        .route("/api/v1/admin/users", get(list_users))
        .route("/api/v1/admin/users/{id}/lock", post(lock_user))
        .route("/api/v1/admin/users/{id}/unlock", post(unlock_user))
        .route("/api/v1/admin/users/{id}/sessions", delete(delete_sessions))
        .route(
            "/api/v1/admin/sessions/revoke-all",
            post(revoke_everyones_sessions),
        )
        .route(
            "/api/v1/admin/users/{id}/tier",
            axum::routing::put(users_api::set_tier),
        )
        .route("/api/v1/admin/users/{id}/usage", get(users_api::usage))
        .route(
            "/api/v1/admin/settings",
            get(settings_api::get_settings).put(settings_api::put_settings),
        )
        .with_state(AppState::new(platform.clone(), Shop::new(platform)))
}

fn table(platform: &Platform) -> &str {
    &platform.config.tables.app
}

/// The page size of every admin listing: `limit` (1 to 200), else `default`.
pub(crate) fn page_limit(limit: Option<i32>, default: i32) -> ApiResult<i32> {
    let limit = limit.unwrap_or(default);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("limit must be between 1 and 200"))
    }
}

/// The admin as the actor of a domain change.
pub(crate) fn actor(admin: &AdminUser, meta: RequestMeta) -> Actor {
    Actor::new(format!("admin:{}", admin.0.user.id)).with_request(meta)
}

/// Appends an audit event of this admin's request.
pub(crate) async fn record(
    platform: &Platform,
    admin: &AdminUser,
    meta: &RequestMeta,
    action: &str,
    target: String,
    summary: Value,
) -> ApiResult<()> {
    audit::record(
        &platform.db,
        table(platform),
        AuditEvent {
            actor: format!("admin:{}", admin.0.user.id),
            action: action.into(),
            target,
            summary,
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip.clone(),
            at: String::new(),
        },
    )
    .await?;
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Who acted (`admin:<id>`, `user:<id>`, `system`).
    actor: Option<String>,
    /// What it was done to (`user:<id>`, `order:<reference>`, ...): read from the target index.
    target: Option<String>,
    /// `auth.revoke_all`, `user.lock`, `order.refund`, ...
    action: Option<String>,
    /// First day (`YYYY-MM-DD`), inclusive; at most 31 days before `to`. Default: today.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day (`YYYY-MM-DD`), inclusive. Default: today.
    #[param(format = Date)]
    to: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 100)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of audit events, newest first (at most 8 partitions read per page)
///
/// A page may hold fewer than `limit` events and still have a `next_cursor` (its query budget
/// ran out).
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit-logs",
    tag = "admin",
    operation_id = "adminAuditLogs",
    security(("accessToken" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page.", body = AuditPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn audit_logs(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    let filter = AuditFilter {
        actor: query.actor,
        target: query.target,
        action: query.action,
        from: query.from,
        to: query.to,
    };
    let limit = page_limit(query.limit, 100)? as usize;
    let page = audit::list(
        &platform.db,
        table(&platform),
        &filter,
        limit,
        query.cursor.as_deref(),
    )
    .await?;
    Ok(axum::Json(page))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Accounts whose email starts with this.
    #[param(max_length = 254)]
    email: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 100)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The start key of a listing's page from its `cursor` (400 when it is another listing's).
fn page_start(
    cursor: Option<&str>,
    partition_key: &str,
    partition: &str,
) -> ApiResult<Option<Item>> {
    cursor
        .map(|c| {
            decode_cursor(c, partition_key, partition)
                .map_err(|_| ApiError::bad_request("the cursor is not valid for this listing"))
        })
        .transpose()
}

/// Accounts by email prefix
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "adminListUsers",
    security(("accessToken" = [])),
    params(UserQuery),
    responses(
        (status = 200, description = "One page.", body = UserPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn list_users(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<UserQuery>,
) -> ApiResult<axum::Json<UserPage>> {
    let prefix = query.email.unwrap_or_default();
    if prefix.len() > 254 {
        return Err(ApiError::bad_request("email is at most 254 characters"));
    }
    let limit = page_limit(query.limit, 100)?;
    let start = page_start(query.cursor.as_deref(), "gsi1pk", "USERS")?;
    let (users, next) =
        users::list_by_email(&platform.db, table(&platform), &prefix, limit, start).await?;
    Ok(axum::Json(UserPage {
        users,
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}

/// Why an account is locked.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct Lock {
    /// Not only spaces.
    #[schema(min_length = 1, pattern = r"\S", example = "fraud review")]
    pub reason: String,
}

/// Lock an account: every session ends, sign-in is refused, audited
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/lock",
    tag = "admin",
    operation_id = "adminLockUser",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The user id (32 hexadecimal digits; anything else names nobody: 404).", pattern = "^[0-9a-f]{32}$")),
    request_body(content = Lock, content_type = "application/json"),
    responses(
        (status = 200, description = "Locked.", body = UserLock, example = json!({ "id": "0f8e7d6c5b4a39281706f5e4d3c2b1a0", "locked": true, "sessions_ended": true })),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn lock_user(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<Lock>,
) -> ApiResult<axum::Json<UserLock>> {
    // The exact user-id format first: a malformed one names nobody, and is not read.
    let id = users::UserId::parse(&id)?.to_string();
    if body.reason.trim().is_empty() {
        return Err(ApiError::Validation {
            detail: "give the reason".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "reason".into(),
                message: "is required".into(),
            }],
        });
    }
    let before = users::set_locked(
        &platform.db,
        table(&platform),
        &id,
        Some(&body.reason),
        now_ms(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let summary = json!({ "before": { "locked": before.locked }, "after": { "locked": true, "reason": body.reason } });
    record(
        &platform,
        &admin,
        &meta,
        "user.lock",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(UserLock {
        id,
        locked: true,
        sessions_ended: Some(true),
    }))
}

/// Unlock an account, audited
#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/unlock",
    tag = "admin",
    operation_id = "adminUnlockUser",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The user id (32 hexadecimal digits; anything else names nobody: 404).", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "Unlocked.", body = UserLock, example = json!({ "id": "0f8e7d6c5b4a39281706f5e4d3c2b1a0", "locked": false })),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn unlock_user(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UserLock>> {
    // The exact user-id format first: a malformed one names nobody, and is not read.
    let id = users::UserId::parse(&id)?.to_string();
    let before = users::set_locked(&platform.db, table(&platform), &id, None, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let summary = json!({ "before": { "locked": before.locked }, "after": { "locked": false } });
    record(
        &platform,
        &admin,
        &meta,
        "user.unlock",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(UserLock {
        id,
        locked: false,
        sessions_ended: None,
    }))
}

/// Delete every session row of a user (their tokens stop working), audited
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}/sessions",
    tag = "admin",
    operation_id = "adminDeleteSessions",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The user id (32 hexadecimal digits; anything else names nobody: 404).", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "Deleted.", body = SessionsDeleted),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn delete_sessions(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SessionsDeleted>> {
    // The exact user-id format first: a malformed one names nobody, and is not read.
    let id = users::UserId::parse(&id)?.to_string();
    if users::get(&platform.db, table(&platform), &id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no user {id}")));
    }
    let deleted = sessions::purge(&platform.db, table(&platform), &id).await?;
    let summary = json!({ "sessions_deleted": deleted });
    record(
        &platform,
        &admin,
        &meta,
        "user.sessions_delete",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(SessionsDeleted {
        id,
        sessions_deleted: deleted,
    }))
}

/// Log everyone out (after a key rotation)
///
/// The runbook's "force logout" after a key rotation: the global sessions epoch, audited with it.
/// The answer is the last thing the caller's own token gets: it was issued before the epoch.
#[utoipa::path(
    post,
    path = "/api/v1/admin/sessions/revoke-all",
    tag = "admin",
    operation_id = "adminRevokeEveryonesSessions",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "Every earlier token is refused from its next use.", body = EveryoneRevoked),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn revoke_everyones_sessions(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
) -> ApiResult<axum::Json<sessions::EveryoneRevoked>> {
    let revoked = sessions::revoke_everyone(
        &platform.db,
        table(&platform),
        &format!("admin:{}", admin.0.user.id),
        &meta,
        now_ms(),
    )
    .await?;
    Ok(axum::Json(revoked))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    #[param(value_type = Option<DeliveryStatus>, inline, default = "failed")]
    status: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 100)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A refund email's delivery status.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
enum DeliveryStatus {
    Failed,
    Retrying,
    Sent,
    Sending,
}

/// Refund emails by delivery status (failed ones are to be sent by hand)
///
/// `failed` (default): the refund emails that could not be delivered (the runbook's "notify
/// the customer manually"); also `retrying`, `sent`, `sending`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/email-deliveries",
    tag = "admin",
    operation_id = "adminEmailDeliveries",
    security(("accessToken" = [])),
    params(DeliveryQuery),
    responses(
        (status = 200, description = "One page.", body = DeliveryPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn email_deliveries(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<DeliveryPage>> {
    let status = query.status.unwrap_or_else(|| "failed".into());
    if !["failed", "retrying", "sent", "sending"].contains(&status.as_str()) {
        return Err(ApiError::bad_request(
            "status is one of failed, retrying, sent, sending",
        ));
    }
    let limit = page_limit(query.limit, 100)?;
    let partition = lumi_commerce::deliveries::list_partition(&status);
    let start = page_start(query.cursor.as_deref(), "gsi1pk", &partition)?;
    let (deliveries, next) =
        lumi_commerce::deliveries::list(&platform.db, table(&platform), &status, limit, start)
            .await?;
    Ok(axum::Json(DeliveryPage {
        deliveries,
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}
