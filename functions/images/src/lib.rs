//! The images function: the runbook's image processing, on [`lumi_imaging`] (libjpeg-turbo's
//! scaled decode, Lanczos3 with SIMD, libjpeg-turbo and libwebp encoders), which beats sharp on
//! one core (see docs/benchmarks.md).
//!
//! | route | does |
//! | --- | --- |
//! | `GET /api/v1/images/{signature}/{options}/{source+}` | a stored original, transformed, at a signed URL a CDN caches (`url.rs`, `source.rs`) |
//! | `POST /api/v1/images/transform?w=&h=&fit=&format=&quality=` | the body's image, transformed; ephemeral; an admin or a signed query |
//! | `POST /api/v1/admin/images` | keeps the body's image in S3 with the configured variants |
//! | `POST /api/v1/admin/images/uploads` | a presigned S3 PUT for an original larger than a request body may be |
//! | `POST /api/v1/admin/images/uploads/{id}/process` | the uploaded original's variants, from S3 |
//!
//! Default qualities come from the runtime settings (`imageQuality`), so an operator lowers them
//! without a redeploy when processing is slow. Limits (bytes, pixels, output sides) are checked
//! from the header before any pixel is decoded. The codecs are CPU-bound: they run on the
//! blocking pool, never on the runtime's threads.

mod options;
mod source;
mod stored;
mod transform;
pub mod url;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use lumi_imaging::{ImageError, Limits};
use lumi_shared::{ApiError, Platform, error::FieldError};
use utoipa::{OpenApi, ToSchema};

/// This function's operations (`lumi_infra::openapi` merges every function's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(
        source::get,
        transform::transform,
        stored::create,
        stored::create_upload,
        stored::process_upload,
    ))]
    struct Doc;
    Doc::openapi()
}

/// An image's bytes, for the OpenAPI document.
pub struct ImageBytes;

impl utoipa::PartialSchema for ImageBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for ImageBytes {
    fn name() -> std::borrow::Cow<'static, str> {
        "ImageBytes".into()
    }
}

pub use options::{Requested, etag, negotiate_format};

pub fn routes(platform: Arc<Platform>) -> Router {
    let state = stored::ImagesState(Arc::new(stored::Images::new(platform)));
    Router::new()
        .route("/api/v1/images/transform", post(transform::transform))
        .route(
            "/api/v1/images/{signature}/{options}/{*source}",
            get(source::get),
        )
        .route("/api/v1/admin/images", post(stored::create))
        .route("/api/v1/admin/images/uploads", post(stored::create_upload))
        .route(
            "/api/v1/admin/images/uploads/{id}/process",
            post(stored::process_upload),
        )
        .with_state(state)
}

/// The limits of this container's configuration.
pub fn limits(platform: &Platform) -> Limits {
    let images = &platform.config.images;
    Limits {
        max_input_bytes: images.max_input_bytes,
        max_input_pixels: images.max_pixels,
        max_output_dimension: images.max_output_dimension,
    }
}

/// An image error as the API answers it: 413 for sizes, 415 for formats, 422 for the rest.
pub fn api_error(error: ImageError) -> ApiError {
    match error {
        ImageError::InputTooLarge { limit, .. } => ApiError::PayloadTooLarge { limit },
        ImageError::TooManyPixels { .. } => ApiError::ContentTooLarge(error.to_string().into()),
        ImageError::Unsupported => {
            ApiError::UnsupportedMediaType("the body must be a JPEG, PNG, WebP or GIF image".into())
        }
        ImageError::OutputTooLarge { .. } => ApiError::Validation {
            detail: error.to_string().into(),
            errors: vec![FieldError {
                field: "w".into(),
                message: error.to_string(),
            }],
        },
        ImageError::InvalidOptions(message) => ApiError::Validation {
            detail: format!("invalid options: {message}").into(),
            errors: Vec::new(),
        },
        ImageError::Corrupt(_) => ApiError::Validation {
            detail: error.to_string().into(),
            errors: vec![FieldError {
                field: "body".into(),
                message: "the image is truncated or corrupt".into(),
            }],
        },
    }
}

/// Runs the CPU-bound codec work on the blocking pool.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

/// Whether `signature` is the shop's over `message` under any of the config secret's image URL
/// keys (the first signs; the others verify while a rotation is under way): both signed
/// routes, the GET URL and the signed POST transform, ask here.
async fn signed_by_shop(
    platform: &Platform,
    message: &str,
    signature: &str,
) -> Result<bool, ApiError> {
    let secrets = platform.secrets.get().await.map_err(|e| {
        ApiError::unavailable("the image URL keys cannot be read; retry shortly", e)
    })?;
    Ok(url::verify(&secrets.image_url_keys, message, signature))
}
