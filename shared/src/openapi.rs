//! What every function's OpenAPI document shares: the `Problem` schema, the error responses
//! (`components.responses`, all `application/problem+json`), the bearer security scheme and the
//! identifier pattern of path parameters. Each function documents its own operations with
//! `#[utoipa::path]` next to its handlers and names these responses by type
//! (`(status = 429, response = TooManyRequests)`); `lumi_infra::openapi::document()` merges the
//! functions' documents with [`components`]. Nothing here runs in a Lambda: the document is built
//! only by `lumi openapi` and the tests.

use serde_json::json;
use utoipa::{
    ToResponse, ToSchema,
    openapi::{
        Components, ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder,
        schema::{ObjectBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::error::{FieldError, PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE};

/// Every path parameter matches it, or the edge answers 404 before the handler
/// (`http::path_ids`).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The name of the security scheme: `Authorization: Bearer <access token>`.
pub const ACCESS_TOKEN: &str = "accessToken";
/// `Authorization: Bearer <refresh token>` (rotate).
pub const REFRESH_TOKEN: &str = "refreshToken";
/// The sealed refresh cookie of a browser session, with [`CSRF_TOKEN`].
pub const REFRESH_COOKIE: &str = "refreshCookie";
pub const CSRF_TOKEN: &str = "csrfToken";
/// `Authorization: Bearer <metrics_scrape_token>` (`GET /api/v1/metrics`, for Prometheus).
pub const SCRAPE_TOKEN: &str = "scrapeToken";

/// Documents `alias` as the same operations as `canonical` (the runbooks' older paths), each
/// operation id with `suffix`.
pub fn alias(doc: &mut utoipa::openapi::OpenApi, canonical: &str, alias: &str, suffix: &str) {
    let Some(mut item) = doc.paths.paths.get(canonical).cloned() else {
        return;
    };
    for operation in [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
    {
        operation.operation_id = operation
            .operation_id
            .take()
            .map(|id| format!("{id}{suffix}"));
        operation.summary = Some(format!(
            "{} (the runbook's path; the same as `{canonical}`)",
            operation.summary.take().unwrap_or_default()
        ));
    }
    doc.paths.paths.insert(alias.to_owned(), item);
}

/// An RFC 9457 problem document, as the edge renders every error.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// `https://lumi-commerce.com/problems/<slug>`: stable, one per kind of failure.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        example = "https://lumi-commerce.com/problems/validation-failed"
    )]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    title: String,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    status: u16,
    /// What went wrong, for a person.
    detail: String,
    /// The request id to quote when reporting the problem (also in `X-Request-Id`).
    request_id: String,
    /// 422: every field that failed validation.
    #[schema(nullable = false)]
    errors: Option<Vec<FieldError>>,
    /// 429: the rate-limit scope whose budget is spent.
    #[schema(nullable = false)]
    policy: Option<String>,
}

fn problem_response(
    description: &str,
    slug: &str,
    status: u16,
    detail: &str,
    headers: &[(&str, &str)],
) -> RefOr<Response> {
    let title = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut example = json!({
        "type": format!("{PROBLEM_TYPE_BASE}{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": "3f1c2a9e-5b7d-4e21-9c0a-7d9e8f6a1b2c",
    });
    if status == 422 {
        example["errors"] = json!([{ "field": "quantity", "message": "between 1 and 99" }]);
    }
    if status == 429 {
        example["policy"] = json!("ip");
    }
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .example(Some(example))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_CONTENT_TYPE, content);
    for (name, about) in headers {
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(*about))
                .build(),
        );
    }
    response.build().into()
}

macro_rules! problem_responses {
    ($($name:ident: $status:literal, $slug:literal, $description:literal, $detail:literal, [$(($header:literal, $about:literal)),*];)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'s> ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    (
                        stringify!($name),
                        problem_response($description, $slug, $status, $detail, &[$(($header, $about)),*]),
                    )
                }
            }
        )*

        /// Every shared error response, by component name.
        pub fn responses() -> Vec<(String, RefOr<Response>)> {
            vec![$({
                let (name, response) = <$name as ToResponse>::response();
                (name.to_owned(), response)
            }),*]
        }
    };
}

problem_responses! {
    BadRequest: 400, "bad-request",
        "The request is malformed: a body that is not JSON, a bad query parameter or cursor, a missing or malformed header.",
        "limit must be between 1 and 100", [];
    Unauthorized: 401, "unauthorized",
        "No valid access token (missing, expired, revoked, or the account is locked).",
        "the access token has expired",
        [("WWW-Authenticate", "`Bearer realm=\"lumi\"`")];
    Forbidden: 403, "forbidden",
        "The token is valid but its role may not do this (a customer on an admin route).",
        "this route is for admins", [];
    NotFound: 404, "not-found",
        "Nothing has this identifier (also any path parameter that is not 1 to 64 letters, digits, `-` or `_`).",
        "no order LUMI-7K3F-9Q2M", [];
    MethodNotAllowed: 405, "method-not-allowed",
        "The path exists, not under this method.",
        "/api/v1/cart accepts GET, not PUT",
        [("Allow", "The methods the path accepts.")];
    Conflict: 409, "conflict",
        "The current state refuses the request, or it changed meanwhile (or a request with the same Idempotency-Key is still in flight).",
        "the order has shipped units and cannot be cancelled", [];
    PreconditionFailed: 412, "precondition-failed",
        "`If-Match` does not name the current version.",
        "the settings changed since they were read", [];
    PreconditionRequired: 428, "precondition-required",
        "The write must name the version it edits (`If-Match`), and the request has none.",
        "send If-Match with the ETag of the settings you edited", [];
    PayloadTooLarge: 413, "payload-too-large",
        "The body is larger than the limit (or, for an image, has too many pixels).",
        "the request body is larger than 1048576 bytes", [];
    UnsupportedMediaType: 415, "unsupported-media-type",
        "The body is not of a type this route reads (`application/json` for JSON routes).",
        "send the body as application/json", [];
    ValidationFailed: 422, "validation-failed",
        "The body is JSON of the wrong shape, or breaks a rule: `errors` names every field to fix.",
        "the account is not valid", [];
    TooManyRequests: 429, "rate-limited",
        "A rate-limit budget is spent: retry after `Retry-After` seconds.",
        "too many requests; retry after 12 s",
        [("Retry-After", "Seconds to wait."),
         ("X-RateLimit-Limit", "The tightest scope's budget."),
         ("X-RateLimit-Remaining", "Requests left in it."),
         ("X-RateLimit-Reset", "Seconds until it is whole again."),
         ("RateLimit-Policy", "Every scope's policy (IETF draft)."),
         ("RateLimit", "Every scope's state (IETF draft).")];
    ServiceUnavailable: 503, "service-unavailable",
        "A dependency (DynamoDB, Secrets Manager, the rate limiter's store, the payment provider) failed or timed out; nothing was written: retry later.",
        "the store is unavailable; retry shortly", [];
}

/// 502: only routes that ask the payment provider.
pub struct BadGateway;

impl<'s> ToResponse<'s> for BadGateway {
    fn response() -> (&'s str, RefOr<Response>) {
        (
            "BadGateway",
            problem_response(
                "The payment provider refused what was asked of it.",
                "bad-gateway",
                502,
                "the payment provider refused the refund",
                &[],
            ),
        )
    }
}

/// The components every document shares: the `Problem` and `FieldError` schemas, the error
/// responses and the bearer scheme.
pub fn components() -> Components {
    let mut components = Components::new();
    components.schemas.insert(
        "Problem".into(),
        <ProblemDoc as utoipa::PartialSchema>::schema(),
    );
    components.schemas.insert(
        "FieldError".into(),
        <FieldError as utoipa::PartialSchema>::schema(),
    );
    components.responses.extend(responses());
    let (name, response) = <BadGateway as ToResponse>::response();
    components.responses.insert(name.to_owned(), response);
    components.add_security_scheme(
        ACCESS_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "The access token of `POST /api/v1/auth/login` (15 minutes).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        REFRESH_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The opaque refresh token of login or of the previous rotate.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SCRAPE_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The config secret's `metrics_scrape_token` (Prometheus's `bearer_token`).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        REFRESH_COOKIE,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "__Host-lumi-refresh",
            "Cookie mode (`mode: cookie` at login): the browser sends it on its own.",
        ))),
    );
    components.add_security_scheme(
        CSRF_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-CSRF-Token",
            "The session's `csrf_token` of login or rotate: required with the refresh cookie.",
        ))),
    );
    components
}
