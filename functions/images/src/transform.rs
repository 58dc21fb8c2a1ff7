//! `POST /api/v1/images/transform`: the request body's image, transformed and answered as
//! binary (API Gateway base64-encodes it on the way out), with an `ETag` of the input and the
//! effective options and a year of `Cache-Control`, for a CDN in front. Nothing is stored.
//!
//! Not anonymous: the caller is an admin (access token) or holds a signed query (`signature`,
//! last, over `POST /api/v1/images/transform?` and the query before it, with the config
//! secret's `image_url_key`, as `url.rs` says), which a shop's server hands to a client with
//! the bytes in hand. Anonymous, or a signature that does not match, is 401 (a token, when
//! sent, decides: another role's is 403), before the body is looked at.

use std::{collections::BTreeMap, time::Instant};

use axum::{
    Extension,
    body::Bytes,
    extract::{FromRequestParts, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use lumi_imaging::{InputFormat, Transformed};
use lumi_shared::{ApiError, ApiResult, auth::AdminUser, telemetry::metrics::MetricSet};

use lumi_shared::openapi::{
    BadRequest, Forbidden, PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthorized,
    UnsupportedMediaType, ValidationFailed,
};

use crate::{ImageBytes, options::Requested, stored::ImagesState};

/// Content types a body may declare (or none: the bytes are sniffed either way).
const ACCEPTED_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "application/octet-stream",
];

/// A year: the same input and options always give the same bytes.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Who may transform the bytes of a request: an admin, or the holder of a signed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Signed,
}

/// The query before a last `signature` parameter, and the signature.
fn split_signature(query: &str) -> Option<(&str, &str)> {
    match query.strip_prefix("signature=") {
        Some(signature) => Some(("", signature)),
        None => query.rsplit_once("&signature="),
    }
}

impl FromRequestParts<ImagesState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ImagesState) -> Result<Self, ApiError> {
        // A token, when sent, decides (an admin's passes, anyone else's is 403); without one, the
        // signature is the credential, and one that does not verify is 401 like a bad token.
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            let Some((query, signature)) = split_signature(parts.uri.query().unwrap_or_default())
            else {
                return Err(ApiError::Unauthorized(
                    "send an admin's access token, or a query signed by the shop (`signature`)"
                        .into(),
                ));
            };
            let message = crate::url::transform_message(query);
            if crate::signed_by_shop(&state.platform, &message, signature).await? {
                return Ok(Self::Signed);
            }
            return Err(ApiError::Unauthorized(
                "the signature does not match this transform's query".into(),
            ));
        }
        AdminUser::from_request_parts(parts, state).await?;
        Ok(Self::Admin)
    }
}

/// Resize, fit and re-encode the body's image (ephemeral; nothing is stored)
///
/// For an admin (access token), or a caller the shop signed the query for: `signature`, the
/// last parameter, is the URL-safe base64 (no padding) of HMAC-SHA256 over
/// `POST /api/v1/images/transform?` followed by the query before `&signature=`, as sent, with
/// the config secret's `image_url_key`. Anonymous, or a signature that does not match, is 401;
/// a token other than an admin's 403.
/// To serve a stored original, use its signed URL (`GET /api/v1/images/{signature}/...`).
///
/// The body is the image (JPEG, PNG, WebP, or the first frame of a GIF), at most 4.4 MB
/// (Lambda's payload cap counts the base64 of a binary body). EXIF orientation is applied and
/// every metadata block stripped. Limits are checked from the header before decoding: more than
/// 50 MP is 413, an output side over 4096 px 422. The default quality of each format is the
/// runtime setting `imageQuality`. Any other query parameter is 422.
#[utoipa::path(
    post,
    path = "/api/v1/images/transform",
    tag = "images",
    operation_id = "transformImage",
    security(("accessToken" = [])),
    params(
        ("signature" = Option<String>, Query, description = "Instead of a token: the shop's signature of the method, path and the query before it (last parameter).", pattern = "^[A-Za-z0-9_-]{43}$"),
        ("w" = Option<u32>, Query, description = "Output width (px).", minimum = 1, maximum = 4096),
        ("h" = Option<u32>, Query, description = "Output height (px).", minimum = 1, maximum = 4096),
        ("fit" = Option<String>, Query, description = "`cover` crops to fill w × h; `contain` pads to w × h; `inside` (default) fits within; `fill` stretches.", pattern = "^(cover|contain|inside|fill)$"),
        ("format" = Option<String>, Query, description = "`auto` (default): WebP when `Accept` names image/webp, else PNG for PNG/GIF input, else JPEG.", pattern = "^(jpeg|png|webp|auto)$"),
        ("quality" = Option<u8>, Query, description = "Encoder quality (default: the `imageQuality` setting).", minimum = 1, maximum = 100),
        ("Accept" = Option<String>, Header, description = "Negotiates `format=auto`."),
        ("If-None-Match" = Option<String>, Header, description = "An earlier `ETag`: 304 when it is current."),
    ),
    request_body(description = "The image.", content(
        (ImageBytes = "image/jpeg"),
        (ImageBytes = "image/png"),
        (ImageBytes = "image/webp"),
        (ImageBytes = "image/gif"),
        (ImageBytes = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "The transformed image, with an `ETag` of the input and the effective options.",
            headers(
                ("ETag" = String, description = "Of the input and the effective options."),
                ("Cache-Control" = String, description = "A year, immutable."),
                ("Vary" = String, description = "`Accept` when the format was negotiated."),
            ),
            content(
                (ImageBytes = "image/jpeg"),
                (ImageBytes = "image/png"),
                (ImageBytes = "image/webp"),
            )),
        (status = 304, description = "The `If-None-Match` tag is current."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn transform(
    State(images): State<ImagesState>,
    caller: Caller,
    Extension(metrics): Extension<MetricSet>,
    Query(mut query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if caller == Caller::Signed {
        query.remove("signature");
    }
    let requested = Requested::parse(&query)?;
    check_content_type(&headers)?;
    let input_format = sniff(&body)?;
    let settings = images.platform.settings.get().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let options = requested.resolve(input_format, accept, &settings.image_quality);
    let etag = crate::etag(&body, &options);
    let vary_accept = requested.format.is_none();

    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if cached {
        return Ok(with_cache_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            &etag,
            vary_accept,
        ));
    }

    let limits = crate::limits(&images.platform);
    let started = Instant::now();
    let input = body.clone();
    let transformed =
        crate::off_runtime(move || lumi_imaging::transform(&input, &options, &limits))
            .await?
            .map_err(crate::api_error)?;
    record(&metrics, body.len(), &transformed, started);

    let mut response = (
        [(header::CONTENT_TYPE, transformed.format.mime())],
        transformed.bytes,
    )
        .into_response();
    response = with_cache_headers(response, &etag, vary_accept);
    Ok(response)
}

pub fn with_cache_headers(mut response: Response, etag: &str, vary_accept: bool) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if vary_accept {
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    response
}

pub fn check_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let Some(declared) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = declared
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ACCEPTED_TYPES.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            format!(
                "send the image itself as image/jpeg, image/png, image/webp, image/gif or \
                 application/octet-stream, not {media}"
            )
            .into(),
        ))
    }
}

pub fn sniff(body: &[u8]) -> ApiResult<InputFormat> {
    if body.is_empty() {
        return Err(ApiError::bad_request("send the image as the request body"));
    }
    lumi_imaging::sniff(body).ok_or_else(|| crate::api_error(lumi_imaging::ImageError::Unsupported))
}

/// The runbook's image metrics (EMF) and one log line per transform.
pub fn record(metrics: &MetricSet, input_bytes: usize, out: &Transformed, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let dims = [("function", "images"), ("format", out.format.as_str())];
    metrics.count("lumi_image_transforms_total", &dims, 1.0);
    metrics.count("lumi_image_transform_ms", &dims, ms);
    metrics.count("lumi_image_input_bytes", &dims, input_bytes as f64);
    metrics.count("lumi_image_output_bytes", &dims, out.bytes.len() as f64);
    metrics.count("lumi_image_input_pixels", &dims, out.input.pixels() as f64);
    tracing::info!(
        input_format = out.input.format.as_str(),
        input_bytes,
        input_width = out.input.width,
        input_height = out.input.height,
        output_format = out.format.as_str(),
        output_bytes = out.bytes.len(),
        output_width = out.width,
        output_height = out.height,
        decoded_pixels = out.decoded_pixels,
        ms,
        "image transformed"
    );
}
