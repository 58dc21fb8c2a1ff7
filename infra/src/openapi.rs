//! The OpenAPI 3.1 document of the whole API (`docs/openapi.yaml`), generated from the
//! functions' own handlers and types: each HTTP function's `openapi()` (its `#[utoipa::path]`
//! operations and the `ToSchema` types they name), merged with the shared error responses and
//! security schemes (`lumi_shared::openapi::components`), the info, servers and tags.
//! `lumi openapi` writes it; a test fails when the checked-in file differs.

use utoipa::openapi::{
    InfoBuilder, OpenApi, OpenApiBuilder, RefOr, ServerBuilder, Tag,
    path::{Operation, ParameterIn, PathItem},
    schema::{Schema, SchemaType, Type},
};

/// Every HTTP function's own document, by binary name.
pub fn function_documents() -> Vec<(&'static str, OpenApi)> {
    let mut documents = vec![
        ("health", health::openapi()),
        ("auth", auth::openapi()),
        ("orders", orders::openapi()),
        ("admin", admin::openapi()),
        ("images", images::openapi()),
    ];
    for (_, document) in &mut documents {
        distinct_head_operation_ids(document);
    }
    documents
}

const DESCRIPTION: &str = "The Lumi e-commerce backend. Every response carries `X-Request-Id` and \
`X-API-Version`; every error is `application/problem+json` (RFC 9457) with the request id to \
quote. Every route but liveness is rate limited: its responses carry `X-RateLimit-*`, \
`RateLimit-Policy` and `RateLimit`, and any of them may be 429 (`TooManyRequests`) or, when the \
limiter's store fails closed, 503. Every path identifier is 1 to 64 ASCII letters, digits, `-` \
or `_`; any other value is 404 before the handler runs. A method a path does not serve is 405 \
(`MethodNotAllowed`) with `Allow`.";

fn tag(name: &str, description: &str) -> Tag {
    let mut tag = Tag::new(name);
    tag.description = Some(description.to_owned());
    tag
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Lumi API")
                .version(lumi_shared::API_VERSION)
                .description(Some(DESCRIPTION))
                .build(),
        )
        .servers(Some([ServerBuilder::new()
            .url("http://127.0.0.1:3000")
            .description(Some("make dev"))
            .build()]))
        .tags(Some([
            tag("health", "Probes for the load balancer and operators."),
            tag("auth", "Accounts and sessions."),
            tag(
                "orders",
                "Catalog, cart, checkout and the customer's orders; the payment provider's webhook.",
            ),
            tag(
                "admin",
                "The admin role's tools (the runbooks' procedures). A customer gets 403.",
            ),
            tag(
                "images",
                "Image transforms and stored variants (the images function).",
            ),
        ]))
        .components(Some(lumi_shared::openapi::components()))
        .build();
    for (_, function) in function_documents() {
        document.merge(function);
    }
    constrain_path_parameters(&mut document);
    mark_public_operations(&mut document);
    document
}

/// A handler documented for GET and HEAD at once (`method(get, head)`) gives both operations its
/// one `operationId`, which must be unique: HEAD's becomes `head…` (`getSignedImage`:
/// `headSignedImage`).
fn distinct_head_operation_ids(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        let get_id = item.get.as_ref().and_then(|op| op.operation_id.clone());
        if let Some(head) = item.head.as_mut()
            && head.operation_id.is_some()
            && head.operation_id == get_id
        {
            let id = head.operation_id.take().unwrap_or_default();
            let rest = id.strip_prefix("get").unwrap_or(&id);
            head.operation_id = Some(format!("head{rest}"));
        }
    }
}

/// A path's operations, for every method the API serves.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.head,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// An operation that names no security requirement is public: say so (`security: []`), so a
/// reader (or a generated client) never wonders whether a document-wide default applies.
fn mark_public_operations(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            operation.security.get_or_insert_with(Vec::new);
        }
    }
}

/// Every path parameter is an identifier (`http::path_ids` answers 404 before the handler
/// otherwise): its schema says so, unless the operation gave it a stricter pattern.
fn constrain_path_parameters(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                if parameter.parameter_in != ParameterIn::Path {
                    continue;
                }
                if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema
                    && object.schema_type == SchemaType::Type(Type::String)
                    && object.pattern.is_none()
                {
                    object.pattern = Some(lumi_shared::openapi::ID_PATTERN.to_owned());
                }
            }
        }
    }
}

/// The document as `docs/openapi.yaml` holds it.
pub fn yaml() -> anyhow::Result<String> {
    Ok(document().to_yaml()?)
}
