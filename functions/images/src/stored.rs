//! Stored images (admin only): an original kept in `IMAGES_BUCKET` with the configured variants
//! beside it (`IMAGE_VARIANTS`), answered with their keys and presigned GET URLs.
//!
//! ```text
//! originals/<id>.<ext>            the original as uploaded
//! variants/<id>/<name>.<ext>      one per configured variant
//! uploads/<id>                    a presigned PUT's landing place, deleted once processed
//! ```
//!
//! A request body is capped by API Gateway (and `MAX_BODY_BYTES`); a larger original is PUT to
//! S3 with a presigned URL (`POST .../uploads`) and processed from there (`.../{id}/process`),
//! up to `IMAGE_MAX_INPUT_BYTES`, so the payload cap that users of AWS's own image handler keep
//! hitting does not apply.
//!
//! An upload is bounded and used once:
//! - A presigned PUT cannot bound its body (S3 checks a size only in a POST policy), so the
//!   size is enforced when the object is read: HEAD first (an oversize upload is never read),
//!   then a GET of exactly that version (`If-Match` its ETag: an object replaced in between is
//!   refused, 409) with a byte range of at most the limit, read with a running count.
//! - Each id is recorded when issued (`IMAGE_UPLOAD#<id>`, `issued`) and claimed by one
//!   conditional write before anything is stored (`processed`): a second process, or one after
//!   a re-upload to the same URL, is 409 and cannot overwrite the stored image. A failure after
//!   the claim gives the id back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use aws_sdk_s3::{presigning::PresigningConfig, primitives::ByteStream};
use axum::{
    Extension,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use lumi_imaging::{Fit, OutputFormat, TransformOptions};
use lumi_shared::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    audit::{self, AuditEvent},
    auth::{AdminUser, sessions::RequestMeta},
    aws::LazyClient,
    error::error_chain,
    telemetry::{metrics::MetricSet, trace},
};
use serde::Serialize;
use serde_json::json;

use crate::ImageBytes;

pub struct Images {
    pub platform: Arc<Platform>,
    s3: LazyClient<aws_sdk_s3::Client>,
}

impl Images {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            s3: LazyClient::new(&platform.sdk_config, lumi_shared::aws::s3_client),
            platform,
        }
    }

    fn bucket(&self) -> ApiResult<&str> {
        self.platform
            .config
            .images
            .bucket
            .as_deref()
            .ok_or_else(|| ApiError::internal(std::io::Error::other("IMAGES_BUCKET is not set")))
    }

    fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.get()
    }
}

fn s3_unavailable(op: &str, error: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::unavailable(
        format!("image storage is unavailable ({op}); retry shortly"),
        error,
    )
}

/// One stored object, as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredImage {
    pub key: String,
    /// A presigned GET URL (for `url_expires_in` seconds).
    #[schema(format = "uri")]
    pub url: String,
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
}

/// One configured variant of a stored image.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VariantImage {
    pub name: String,
    #[serde(flatten)]
    pub image: StoredImage,
}

/// A stored original and its variants.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StoredImageSet)]
pub struct StoredSet {
    pub id: String,
    pub original: StoredImage,
    pub variants: Vec<VariantImage>,
    pub url_expires_in: u64,
}

/// Store the body's image in S3 with the configured variants
///
/// The body is the original (at most the request body limit; larger ones go through an upload).
#[utoipa::path(
    post,
    path = "/api/v1/admin/images",
    tags = ["admin", "images"],
    operation_id = "adminCreateImage",
    security(("accessToken" = [])),
    request_body(description = "The original image.", content(
        (ImageBytes = "image/jpeg"),
        (ImageBytes = "image/png"),
        (ImageBytes = "image/webp"),
        (ImageBytes = "image/gif"),
        (ImageBytes = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "The original and its variants, with presigned GET URLs.", body = StoredSet),
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
pub async fn create(
    State(images): State<ImagesState>,
    Extension(metrics): Extension<MetricSet>,
    admin: AdminUser,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    crate::transform::check_content_type(&headers)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let set = store_set(&images, &metrics, &id, body).await?;
    audit_created(&images, &admin, &meta, &set, "body").await?;
    Ok((StatusCode::CREATED, axum::Json(set)).into_response())
}

/// The record of an issued upload id (single use).
#[derive(Debug, Serialize, serde::Deserialize)]
struct UploadRecord {
    pk: String,
    sk: String,
    status: String,
    /// Seconds; kept a day past the URL's expiry (the code checks the status, not the TTL).
    expires_at: i64,
}

fn upload_key(id: &str) -> lumi_shared::store::Item {
    lumi_shared::store::key(format!("IMAGE_UPLOAD#{id}"), "IMAGE_UPLOAD")
}

impl Images {
    fn table(&self) -> &str {
        &self.platform.config.tables.app
    }

    async fn issue_upload(&self, id: &str, ttl: std::time::Duration) -> ApiResult<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expires_at = (now + ttl.as_secs() + 86_400) as i64;
        let record = UploadRecord {
            pk: format!("IMAGE_UPLOAD#{id}"),
            sk: "IMAGE_UPLOAD".into(),
            status: "issued".into(),
            expires_at,
        };
        self.platform.db.put_new(self.table(), &record).await?;
        Ok(())
    }

    /// Moves an upload id from `from` to `to` in one conditional write; false when it was not
    /// in `from` (unknown, or already claimed).
    async fn move_upload(&self, id: &str, from: &str, to: &str) -> ApiResult<bool> {
        use lumi_shared::store::{StoreError, s};
        let request = self
            .platform
            .db
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(upload_key(id)))
            .update_expression("SET #status = :to")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .send();
        match self
            .platform
            .db
            .call("UpdateItem", self.table(), request)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The state of an upload id: `issued`, `processed`, or `None` when never issued.
    async fn upload_status(&self, id: &str) -> ApiResult<Option<String>> {
        let record: Option<UploadRecord> =
            self.platform.db.get(self.table(), upload_key(id)).await?;
        Ok(record.map(|r| r.status))
    }

    /// The uploaded object, read only if its size is within `limit` and it is the object
    /// that HEAD saw (see the module's doc).
    async fn read_upload(&self, bucket: &str, key: &str, limit: usize) -> ApiResult<Bytes> {
        let head = self.s3().head_object().bucket(bucket).key(key).send();
        let head = trace::aws_call("S3", "HeadObject", None, head).await;
        let head = match head {
            Ok(head) => head,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Err(ApiError::not_found("nothing was uploaded for this id yet"));
            }
            Err(error) => return Err(s3_unavailable("HeadObject", error)),
        };
        let size = head.content_length().unwrap_or_default();
        if size < 0 || size as u64 > limit as u64 {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let mut request = self
            .s3()
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes=0-{limit}"));
        if let Some(etag) = head.e_tag() {
            request = request.if_match(etag);
        }
        let object = match trace::aws_call("S3", "GetObject", None, request.send()).await {
            Ok(object) => object,
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 412) =>
            {
                return Err(ApiError::Conflict(
                    "the upload changed while it was being processed; process it again".into(),
                ));
            }
            Err(error) => return Err(s3_unavailable("GetObject", error)),
        };
        read_capped(object.body, limit, size as usize).await
    }
}

impl Images {
    /// A stored original's bytes (a signed image URL's source): one GET, at most the input
    /// limit read; none stored under the key is 404.
    pub async fn read_original(&self, source: &crate::url::SourceKey) -> ApiResult<Bytes> {
        let limit = self.platform.config.images.max_input_bytes;
        let object = self.get_original(source).await?;
        // Sized from the answer's length (capped: it is S3's word, not ours), so the body is
        // copied once into one buffer instead of through a dozen doublings.
        let length = object
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(limit);
        read_capped(object.body, limit, length).await
    }

    /// The original at `source` as a stream for [`lumi_imaging::transform_streamed`]: one
    /// GetObject (404 when there is none), whose body a task on the runtime hands over chunk by
    /// chunk to the codec on the blocking pool. The decode starts with the first chunk and the
    /// original is never held whole (a new container faults in no buffer for it); a decode
    /// that must start over reads it again, whole ([`OriginalStream`]).
    pub async fn stream_original(
        self: &Arc<Self>,
        source: &crate::url::SourceKey,
    ) -> ApiResult<OriginalStream> {
        let mut body = self.get_original(source).await?.body;
        // A few chunks ahead of the codec: enough to keep the download going, bounded.
        let (sender, chunks) = tokio::sync::mpsc::channel(4);
        let feeder = tokio::spawn(async move {
            loop {
                let chunk = match body.try_next().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(error) => Err(s3_unavailable("GetObject", error)),
                };
                let failed = chunk.is_err();
                // The codec hung up (done, or given up): the body is dropped, the connection closed.
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(OriginalStream {
            chunks: Chunks::new(chunks, feeder.abort_handle()),
            images: Arc::clone(self),
            source: source.clone(),
            runtime: tokio::runtime::Handle::current(),
            bytes_read: 0,
        })
    }

    /// GetObject of an original, at most the input limit and one byte more (a longer one is
    /// refused by the codec's limit check).
    async fn get_original(
        &self,
        source: &crate::url::SourceKey,
    ) -> ApiResult<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let bucket = self.bucket()?;
        let limit = self.platform.config.images.max_input_bytes;
        let request = self
            .s3()
            .get_object()
            .bucket(bucket)
            .key(source.as_str())
            .range(format!("bytes=0-{limit}"))
            .send();
        match trace::aws_call("S3", "GetObject", None, request).await {
            Ok(object) => Ok(object),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                Err(ApiError::not_found("no stored original has this key"))
            }
            Err(error) => Err(s3_unavailable("GetObject", error)),
        }
    }
}

/// The chunks of a body as a task on the runtime receives them, read on the blocking pool, until
/// the request they are for is gone ([`Chunks::stop_on_drop`]).
struct Chunks {
    receiver: tokio::sync::mpsc::Receiver<ApiResult<Bytes>>,
    /// What is left of the chunk being read.
    chunk: Bytes,
    stopped: Arc<AtomicBool>,
    feeder: tokio::task::AbortHandle,
}

impl Chunks {
    fn new(
        receiver: tokio::sync::mpsc::Receiver<ApiResult<Bytes>>,
        feeder: tokio::task::AbortHandle,
    ) -> Self {
        Self {
            receiver,
            chunk: Bytes::new(),
            stopped: Arc::default(),
            feeder,
        }
    }

    /// Like [`std::io::Read::read`]: 0 at the end of the body.
    fn read(&mut self, buf: &mut [u8]) -> ApiResult<usize> {
        self.check()?;
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                // The feeder ended: at the end of the body, or stopped.
                None => return self.check().map(|()| 0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }

    /// An error once the request is gone.
    fn check(&self) -> ApiResult<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(ApiError::unavailable(
                "the request ended before its image was read",
                "stopped",
            ));
        }
        Ok(())
    }

    fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop {
            stopped: Arc::clone(&self.stopped),
            feeder: self.feeder.clone(),
        }
    }
}

/// Held by the request that reads an [`OriginalStream`]; dropped with it (once answered, or
/// when its future is dropped: refused by the rate limiter that decided alongside, or its
/// client gone), it stops the download and the codec. The codec runs on the blocking pool,
/// which no dropped future stops: without this it would finish a transform nobody receives.
/// Its next read fails (at most a window of the scan later), and a decode that would start
/// over reads nothing.
#[must_use = "the stream stops when this is dropped"]
pub struct StopOnDrop {
    stopped: Arc<AtomicBool>,
    feeder: tokio::task::AbortHandle,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        self.feeder.abort();
    }
}

/// An original streaming in from S3, read by the codec on the blocking pool
/// ([`lumi_imaging::Source`]): the body's chunks as the runtime receives them, and for a decode
/// that must start over, the original again from a new GetObject.
pub struct OriginalStream {
    chunks: Chunks,
    images: Arc<Images>,
    source: crate::url::SourceKey,
    runtime: tokio::runtime::Handle,
    /// Bytes handed to the codec, a re-read's included (the input size metric).
    pub bytes_read: usize,
}

impl OriginalStream {
    /// The guard that stops this stream when the request reading it is gone ([`StopOnDrop`]).
    pub fn stop_on_drop(&self) -> StopOnDrop {
        self.chunks.stop_on_drop()
    }
}

impl lumi_imaging::Source for OriginalStream {
    type Error = ApiError;

    /// Blocks the (blocking pool's) thread until a chunk is in.
    fn read(&mut self, buf: &mut [u8]) -> ApiResult<usize> {
        let n = self.chunks.read(buf)?;
        self.bytes_read += n;
        Ok(n)
    }

    fn reread(&mut self, limit: usize) -> ApiResult<Vec<u8>> {
        self.chunks.check()?;
        let whole = self
            .runtime
            .block_on(self.images.read_original(&self.source))?;
        self.bytes_read = whole.len();
        Ok(whole[..whole.len().min(limit)].to_vec())
    }
}

/// Where to PUT an original larger than a request body may be.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadTicket {
    /// 32 hexadecimal digits: process it with `process`, once.
    pub id: String,
    pub key: String,
    /// The presigned S3 URL.
    #[schema(format = "uri")]
    pub upload_url: String,
    #[schema(value_type = String, example = "PUT")]
    pub method: &'static str,
    /// Seconds.
    pub expires_in: u64,
    pub max_bytes: usize,
    /// The path to POST once the upload is done.
    pub process: String,
}

/// A presigned S3 PUT for an original larger than a request body may be
#[utoipa::path(
    post,
    path = "/api/v1/admin/images/uploads",
    tags = ["admin", "images"],
    operation_id = "adminCreateImageUpload",
    security(("accessToken" = [])),
    responses(
        (status = 201, description = "Where and how to upload.", body = UploadTicket),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn create_upload(
    State(images): State<ImagesState>,
    _admin: AdminUser,
) -> ApiResult<Response> {
    let bucket = images.bucket()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("uploads/{id}");
    let ttl = images.platform.config.images.url_ttl;
    images.issue_upload(&id, ttl).await?;
    let presigned = images
        .s3()
        .put_object()
        .bucket(bucket)
        .key(&key)
        .presigned(PresigningConfig::expires_in(ttl).map_err(ApiError::internal)?)
        .await
        .map_err(|e| s3_unavailable("presign", e))?;
    let process = format!("/api/v1/admin/images/uploads/{id}/process");
    Ok((
        StatusCode::CREATED,
        axum::Json(UploadTicket {
            id,
            key,
            upload_url: presigned.uri().to_owned(),
            method: "PUT",
            expires_in: ttl.as_secs(),
            max_bytes: images.platform.config.images.max_input_bytes,
            process,
        }),
    )
        .into_response())
}

/// Make and store the variants of an uploaded original
///
/// An upload id is processed once (409 after); nothing uploaded yet is 404.
#[utoipa::path(
    post,
    path = "/api/v1/admin/images/uploads/{id}/process",
    tags = ["admin", "images"],
    operation_id = "adminProcessImageUpload",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The upload id (32 hexadecimal digits).", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 201, description = "The original and its variants, with presigned GET URLs.", body = StoredSet),
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
pub async fn process_upload(
    State(images): State<ImagesState>,
    Extension(metrics): Extension<MetricSet>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("no upload has this id"));
    }
    let bucket = images.bucket()?.to_owned();
    let key = format!("uploads/{id}");
    let limit = images.platform.config.images.max_input_bytes;
    match images.upload_status(&id).await?.as_deref() {
        None => return Err(ApiError::not_found("no upload has this id")),
        Some("issued") => {}
        Some(_) => {
            return Err(ApiError::Conflict(
                "this upload was already processed; an upload id is used once".into(),
            ));
        }
    }
    let body = images.read_upload(&bucket, &key, limit).await?;
    // Claimed before anything is stored: of two concurrent processes one stores, and a
    // re-upload to the same URL can never overwrite the image made from the first.
    if !images.move_upload(&id, "issued", "processed").await? {
        return Err(ApiError::Conflict(
            "this upload was already processed; an upload id is used once".into(),
        ));
    }
    let set = match store_set(&images, &metrics, &id, body).await {
        Ok(set) => set,
        Err(error) => {
            // Nothing (or only variants, overwritten by the next attempt) was stored: the id
            // can be processed again, e.g. after uploading a valid image.
            if let Err(release) = images.move_upload(&id, "processed", "issued").await {
                tracing::warn!(error = %release, id, "upload id not given back after a failure");
            }
            return Err(error);
        }
    };
    // The upload is now the original; a failure here leaves a stray upload, not a lost image.
    let delete = images.s3().delete_object().bucket(&bucket).key(&key).send();
    if let Err(error) = trace::aws_call("S3", "DeleteObject", None, delete).await {
        tracing::warn!(error = %error_chain(&error), key, "processed upload not deleted");
    }
    audit_created(&images, &admin, &meta, &set, "upload").await?;
    Ok((StatusCode::CREATED, axum::Json(set)).into_response())
}

async fn audit_created(
    images: &Images,
    admin: &AdminUser,
    meta: &RequestMeta,
    set: &StoredSet,
    source: &str,
) -> ApiResult<()> {
    audit::record(
        &images.platform.db,
        &images.platform.config.tables.app,
        AuditEvent {
            actor: format!("admin:{}", admin.0.user.id),
            action: "image.create".into(),
            target: format!("image:{}", set.id),
            summary: json!({
                "after": {
                    "original": set.original.key,
                    "bytes": set.original.bytes,
                    "variants": set.variants.iter().map(|v| &v.image.key).collect::<Vec<_>>(),
                    "source": source,
                }
            }),
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip.clone(),
            at: String::new(),
        },
    )
    .await?;
    Ok(())
}

/// Validates the original, makes every variant, then stores them all (variants first, the
/// original last: an original in `originals/` always has its variants).
async fn store_set(
    images: &Images,
    metrics: &MetricSet,
    id: &str,
    original: Bytes,
) -> ApiResult<StoredSet> {
    let bucket = images.bucket()?.to_owned();
    let input_format = crate::transform::sniff(&original)?;
    let probe = lumi_imaging::probe(&original).map_err(crate::api_error)?;
    let settings = images.platform.settings.get().await;
    let limits = crate::limits(&images.platform);
    let specs = images.platform.config.images.variants.clone();
    let mut made = Vec::new();
    for spec in specs {
        let format = OutputFormat::from_name(&spec.format).unwrap_or(OutputFormat::Jpeg);
        let fit = Fit::from_name(&spec.fit).unwrap_or(Fit::Inside);
        // A stored variant never enlarges: an `inside` side beyond the original's is dropped
        // (sharp's `withoutEnlargement`), so "large" of a small original is the original's size.
        let (dw, dh) = probe.display_size();
        let keep = |side: u32, original: u32| {
            (side > 0 && (fit != Fit::Inside || side < original)).then_some(side)
        };
        let options = TransformOptions {
            width: keep(spec.width, dw),
            height: keep(spec.height, dh),
            fit,
            format,
            quality: crate::options::default_quality(format, &settings.image_quality),
        };
        let input = original.clone();
        let started = Instant::now();
        let out = crate::off_runtime(move || lumi_imaging::transform(&input, &options, &limits))
            .await?
            .map_err(crate::api_error)?;
        crate::transform::record(metrics, original.len(), &out, started);
        made.push((spec.name, out));
    }

    let ttl = images.platform.config.images.url_ttl;
    let mut variants = Vec::new();
    for (name, out) in made {
        let key = format!("variants/{id}/{name}.{}", out.format.extension());
        let url =
            put_and_presign(images, &bucket, &key, out.format.mime(), out.bytes.clone()).await?;
        variants.push(VariantImage {
            name,
            image: StoredImage {
                key,
                url,
                format: out.format.as_str().into(),
                width: out.width,
                height: out.height,
                bytes: out.bytes.len(),
            },
        });
    }
    let key = format!("originals/{id}.{}", input_format.as_str());
    let bytes = original.len();
    let url = put_and_presign(
        images,
        &bucket,
        &key,
        input_format.mime(),
        original.to_vec(),
    )
    .await?;
    let (width, height) = probe.display_size();
    Ok(StoredSet {
        id: id.to_owned(),
        original: StoredImage {
            key,
            url,
            format: input_format.as_str().into(),
            width,
            height,
            bytes,
        },
        variants,
        url_expires_in: ttl.as_secs(),
    })
}

async fn put_and_presign(
    images: &Images,
    bucket: &str,
    key: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> ApiResult<String> {
    let put = images
        .s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .cache_control("public, max-age=31536000, immutable")
        .body(ByteStream::from(bytes))
        .send();
    trace::aws_call("S3", "PutObject", None, put)
        .await
        .map_err(|e| s3_unavailable("PutObject", e))?;
    let presigned = images
        .s3()
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(
            PresigningConfig::expires_in(images.platform.config.images.url_ttl)
                .map_err(ApiError::internal)?,
        )
        .await
        .map_err(|e| s3_unavailable("presign", e))?;
    Ok(presigned.uri().to_owned())
}

/// The router's state: the images context, shared.
#[derive(Clone)]
pub struct ImagesState(pub Arc<Images>);

impl std::ops::Deref for ImagesState {
    type Target = Images;
    fn deref(&self) -> &Images {
        &self.0
    }
}

/// The auth extractors read the platform from the state.
impl axum::extract::FromRef<ImagesState> for Arc<Platform> {
    fn from_ref(state: &ImagesState) -> Self {
        state.0.platform.clone()
    }
}

/// An S3 object's body, counted while read: more than `limit` bytes is 413, whatever its
/// headers said.
async fn read_capped(mut body: ByteStream, limit: usize, capacity: usize) -> ApiResult<Bytes> {
    let mut bytes = bytes::BytesMut::with_capacity(capacity);
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_unavailable("GetObject", e))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A body of `chunks` chunks of `len` bytes (`None`: endless) fed by a task on the runtime,
    /// as `Images::stream_original` feeds one.
    fn fed(chunks: Option<usize>, len: usize) -> (Chunks, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let feeder = tokio::spawn(async move {
            let mut sent = 0;
            while chunks.is_none_or(|n| sent < n) {
                if sender.send(Ok(Bytes::from(vec![7u8; len]))).await.is_err() {
                    // Only an abort ends a feeder whose reader is gone, so that a test can
                    // tell a stopped download from one that noticed the closed channel.
                    std::future::pending::<()>().await;
                }
                sent += 1;
            }
        });
        (Chunks::new(receiver, feeder.abort_handle()), feeder)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_codec_reads_the_whole_body_then_its_end() {
        let (mut chunks, feeder) = fed(Some(10), 1000);
        let _stop = chunks.stop_on_drop();
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 768];
            let mut total = 0;
            loop {
                match chunks.read(&mut buf).unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        assert_eq!(read.await.unwrap(), 10_000);
        feeder.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_gone_stops_the_download_and_the_codec_at_its_next_read() {
        let (mut chunks, feeder) = fed(None, 1000);
        let stop = chunks.stop_on_drop();
        let (first, read_once) = std::sync::mpsc::channel();
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 768];
            let mut total = 0;
            // Bounded, so that a codec that is not stopped fails the test rather than hangs it.
            while total < 100_000_000 {
                match chunks.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(error) => return (total, Some(error)),
                }
                let _ = first.send(());
            }
            (total, None)
        });
        // The codec is reading an endless body; the request's future is dropped.
        tokio::task::spawn_blocking(move || read_once.recv().unwrap())
            .await
            .unwrap();
        drop(stop);
        let (total, error) = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the codec stopped")
            .unwrap();
        assert!(total > 0);
        assert!(
            matches!(error, Some(ApiError::Unavailable { .. })),
            "{error:?} after {total} bytes"
        );
        let feeder = tokio::time::timeout(Duration::from_secs(10), feeder)
            .await
            .expect("the download stopped");
        assert!(feeder.unwrap_err().is_cancelled());
    }
}
