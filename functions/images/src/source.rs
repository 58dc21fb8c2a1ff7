//! `GET /api/v1/images/{signature}/{options}/{source+}`: a stored original, transformed, at a
//! URL a storefront puts in `<img src>` and a CDN caches (the format in `url.rs`).
//!
//! In this order, each step before any of the next's work: the source key's shape (404, no AWS
//! call), the signature (403: only the config secret is read, from its cache), the options
//! (422 naming each bad one), the ETag from the key and the effective options (`If-None-Match`:
//! 304, nothing read from S3), then one S3 GET of the original (404 when there is none), its
//! body streamed into the codecs on the blocking pool as it arrives
//! ([`crate::stored::Images::stream_original`]). The rate limiter decides alongside this work
//! (`lumi_shared::ratelimit::layer`); a refusal drops this future, and the codec stops with it.

use std::time::Instant;

use axum::{
    Extension,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use lumi_imaging::StreamError;
use lumi_shared::openapi::{
    Forbidden, NotFound, ServiceUnavailable, TooManyRequests, ValidationFailed,
};
use lumi_shared::{ApiError, ApiResult, telemetry::metrics::MetricSet};

use crate::{
    ImageBytes,
    stored::ImagesState,
    transform::with_cache_headers,
    url::{self, SourceKey},
};

/// A stored original, transformed, at a signed URL (cacheable, for `<img src>`)
///
/// The path is signed by the shop (`lumi images url`, or a storefront's server with the config
/// secret's `image_url_key`; see "Image URLs" in docs/operations.md): `signature` is the URL-safe base64
/// (no padding) of HMAC-SHA256 over `/{options}/{source}`. `options` are `name_value` pairs
/// joined by `-` in the order `w`, `h`, `fit`, `format`, `quality` (`w_800-format_webp`), with
/// the POST transform's meanings. Answers are immutable: a year of `Cache-Control`, a strong
/// `ETag`, and `Vary: Accept` only with `format_auto`.
///
/// HEAD answers the same headers without the body (the transform runs: its length is a header).
#[utoipa::path(
    method(get, head),
    path = "/api/v1/images/{signature}/{options}/{source+}",
    tag = "images",
    operation_id = "getSignedImage",
    params(
        ("signature" = String, Path, description = "HMAC-SHA256 of `/{options}/{source}` with the config secret's `image_url_key`, URL-safe base64 without padding.", pattern = "^[A-Za-z0-9_-]{43}$"),
        ("options" = String, Path, description = "`w_<px>`, `h_<px>`, `fit_<cover|contain|inside|fill>`, `format_<jpeg|png|webp|auto>`, `quality_<1-100>`, joined by `-`, in that order, each at most once.", pattern = "^[a-z]+_[a-z0-9]+(-[a-z]+_[a-z0-9]+)*$", example = "w_800-format_webp"),
        ("source+" = String, Path, description = "The original's key in the images bucket, as the admin API answers it (`original.key`).", pattern = "^originals/[0-9a-f]{32}\\.(jpeg|png|webp|gif)$"),
        ("Accept" = Option<String>, Header, description = "Negotiates `format_auto`: WebP when it names image/webp, else PNG for PNG/GIF originals, else JPEG."),
        ("If-None-Match" = Option<String>, Header, description = "An earlier `ETag`: 304 when it is current, without reading the original."),
    ),
    responses(
        (status = 200, description = "The transformed image.",
            headers(
                ("ETag" = String, description = "Strong: of the source key and the effective options."),
                ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`."),
                ("Vary" = String, description = "`Accept`, only with `format_auto`."),
            ),
            content(
                (ImageBytes = "image/jpeg"),
                (ImageBytes = "image/png"),
                (ImageBytes = "image/webp"),
            )),
        (status = 304, description = "The `If-None-Match` tag is current."),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn get(
    State(images): State<ImagesState>,
    Extension(metrics): Extension<MetricSet>,
    Path((signature, options, source)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let source = SourceKey::parse(&source)
        .ok_or_else(|| ApiError::not_found("no stored original has this key"))?;
    let message = url::signed_message(&options, source.as_str());
    if !crate::signed_by_shop(&images.platform, &message, &signature).await? {
        return Err(ApiError::Forbidden(
            "the signature does not match this URL".into(),
        ));
    }
    let requested = url::parse_options(&options).map_err(|errors| ApiError::Validation {
        detail: format!("{} option(s) are invalid", errors.len()).into(),
        errors,
    })?;
    let settings = images.platform.settings.get().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let options = requested.resolve(source.format(), accept, &settings.image_quality);
    let etag = url::etag(&source, &options);
    let vary_accept = requested.format.is_none();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if url::none_match(if_none_match, &etag) {
        return Ok(with_cache_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            &etag,
            vary_accept,
        ));
    }

    let mut original = images.0.stream_original(&source).await?;
    // Dropped with this future: a refusal by the rate limiter deciding alongside stops the codec.
    let _stop = original.stop_on_drop();
    let limits = crate::limits(&images.platform);
    let started = Instant::now();
    let (transformed, input_bytes) = crate::off_runtime(move || {
        let transformed = lumi_imaging::transform_streamed(&mut original, &options, &limits);
        (transformed, original.bytes_read)
    })
    .await?;
    let transformed = transformed.map_err(|error| match error {
        StreamError::Image(error) => crate::api_error(error),
        StreamError::Source(error) => error,
    })?;
    crate::transform::record(&metrics, input_bytes, &transformed, started);
    let response = (
        [(header::CONTENT_TYPE, transformed.format.mime())],
        transformed.bytes,
    )
        .into_response();
    Ok(with_cache_headers(response, &etag, vary_accept))
}
