//! `lumi-bench image-get`: the signed image GET's own overhead over the bare transform.
//!
//! The question (issue 19): how much does `GET /api/v1/images/{signature}/{options}/{source+}`
//! add to the transform it serves: the edge and the rate limiter, the signature check, the S3
//! read of the original, the options, the ETag, the hop to the blocking pool and the headers?
//! Goal: under 5 % of a `resize800_jpeg` transform (the first pipeline of
//! `imaging/bench/run.sh`, against sharp).
//!
//! In one process, built `--release` (the transform is the optimised one Lambda ships) and
//! started with the images function's `GLIBC_TUNABLES` from `template.yaml` (as Lambda starts
//! it; `make bench-image-get` does, and the process warns when they are missing): a moto
//! server and a stack of the template of its own (lumi-infra, as the tests create theirs), the
//! bench photo stored as an original in `ImagesBucket` (`originals/<32 hex>.jpeg`, as the admin
//! API stores one) and its URL signed with the config secret's first `image_url_key` (as
//! `lumi images url` signs it). Then, after `--warmup` discarded rounds, `--runs` rounds of five
//! measurements one after another, so drift hits them alike:
//!
//! 1. the bare transform: [`lumi_imaging::transform`] of the photo's bytes in memory with the
//!    options the GET resolves (w=800, fit inside, JPEG, quality 80: `resize800_jpeg`);
//! 2. the signed GET through the images function's router as Lambda runs it
//!    ([`lumi_shared::bootstrap::app`] over [`images::routes`], with the request context API
//!    Gateway adds), by `tower::ServiceExt::oneshot`, the body collected; its bytes must be the
//!    bare transform's, so both did the same work;
//! 3. the S3 GetObject of the original alone: the function's client (`lumi_shared::aws::s3_client`
//!    of its SDK settings) and request (the same range), the body read to the end;
//! 4. the same GET with `If-None-Match` of the current ETag: a 304, the path without S3 and the
//!    transform (edge, rate limiter, signature, settings and secret from their caches, options,
//!    ETag, headers);
//! 5. that 304 through a second instance of the function with `RATE_LIMIT_ENABLED=false`: the
//!    path's own work alone; the difference to 4 is the rate limiter's DynamoDB call;
//! 6. the GET (2) through that instance: what the limiter, decided alongside, still adds.
//!
//! (3) is also timed until GetObject's answer has its headers: the first chunk of the body,
//! which the codec waits for, comes with them. And a GetObject of a 1-byte object, until its
//! headers: what the local S3 takes to answer any read, a floor under the overhead that no
//! work of the function's can go below.
//!
//! The overhead is the GET's median minus the bare transform's. Its parts are measured alone:
//! the S3 read (3), the rate limiter (4 − 5) and the path's own work (5). They do not add up:
//! the GET's rate limit is decided alongside its work (`lumi_shared::ratelimit::layer`), so
//! moto serves the limiter's write while the codec decodes, and the body of the S3 read streams
//! into the codec as it arrives; a 304 has no work to overlap, so it still waits the limiter's
//! whole call. What is left of the overhead after the parts (the overlap, negative; the hop to
//! the blocking pool; caches the S3 read evicted) is a difference of medians, within the
//! transform's run-to-run noise.
//!
//! Not measured: Lambda's own invocation path (API Gateway, the Runtime API, base64 of the
//! body), and AWS's S3 and DynamoDB: here both are moto, a Python server on loopback serving
//! one request at a time, whose latency says little about AWS's.

use std::{path::PathBuf, sync::Arc, time::Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::{
    Router,
    body::{Body, Bytes},
    http::{Method, Request, StatusCode, header},
};
use lambda_http::{
    aws_lambda_events::apigw::ApiGatewayV2httpRequestContext, request::RequestContext,
};
use lumi_imaging::{Fit, Limits, OutputFormat, TransformOptions};
use lumi_infra::{
    gateway::{GatewayOptions, function_platform},
    moto::{MotoOptions, MotoServer},
    stack::{self, LocalStack},
    template::Template,
};
use lumi_shared::telemetry::LineSink;

use crate::{
    cli::ImageGet,
    report::{ImageGetReport, ImageGetSamples},
};

/// The GET's options segment: `resize800_jpeg` of `imaging-bench` (w=800, fit inside by
/// default, JPEG, quality 80), spelled as a signed URL spells it.
pub const OPTIONS: &str = "w_800-format_jpeg-quality_80";

/// `resize800_jpeg` as `imaging/src/bin/imaging-bench.rs` runs it.
const RESIZE800_JPEG: TransformOptions = TransformOptions {
    width: Some(800),
    height: None,
    fit: Fit::Inside,
    format: OutputFormat::Jpeg,
    quality: 80,
};

/// The caller's address in the request context (TEST-NET-2).
const SOURCE_IP: &str = "198.51.100.1";

/// The bench photo `imaging/bench/run.sh` uses, beside the repository.
fn default_photo() -> PathBuf {
    lumi_infra::workspace_root().join("../shared/bench/photo_4000x3000.jpg")
}

/// The functions' EMF lines are not the figures: dropped.
struct Discard;

impl LineSink for Discard {
    fn write_line(&self, _line: &str) {}
}

pub async fn run(opts: ImageGet) -> Result<()> {
    let photo_path = opts.photo.clone().unwrap_or_else(default_photo);
    let photo_path = photo_path.canonicalize().unwrap_or(photo_path);
    let photo = Bytes::from(
        std::fs::read(&photo_path)
            .with_context(|| format!("reading the photo {}", photo_path.display()))?,
    );
    let probe = lumi_imaging::probe(&photo)
        .map_err(|e| anyhow!("{} is not an image: {e}", photo_path.display()))?;
    ensure!(
        probe.format == lumi_imaging::InputFormat::Jpeg,
        "{} is not a JPEG (the bench stores it as originals/<id>.jpeg)",
        photo_path.display()
    );

    eprintln!("lumi-bench: starting moto and a stack of template.yaml");
    let moto = MotoServer::start(&MotoOptions {
        tie_to_parent: true,
        ..MotoOptions::default()
    })
    .context("starting moto (run `make venv` first)")?;
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let stack = LocalStack::bootstrap(
        Template::project()?,
        &moto.endpoint,
        &prefix,
        stack::local_parameters(),
    )
    .await
    .context("bootstrapping the stack from template.yaml")?;

    // Lambda starts the images function with template.yaml's glibc tunables; glibc reads them
    // at process start, so this process has them only if it was started with them (as `make
    // bench-image-get` does).
    let tunables = stack
        .function_env("images")?
        .get("GLIBC_TUNABLES")
        .map(str::to_owned);
    if std::env::var("GLIBC_TUNABLES").ok() != tunables {
        eprintln!(
            "lumi-bench: warning: not started with the images function's GLIBC_TUNABLES ({}), \
             as `make bench-image-get` starts it: its allocations behave otherwise than in Lambda",
            tunables.as_deref().unwrap_or("none")
        );
    }

    let options = GatewayOptions {
        metrics_sink: Some(Arc::new(Discard) as Arc<dyn LineSink>),
        ..GatewayOptions::default()
    };
    let platform = function_platform(&stack, "images", &options)?;
    let app = lumi_shared::bootstrap::app(platform.clone(), images::routes);
    let unlimited = function_platform(
        &stack,
        "images",
        &GatewayOptions {
            env_overrides: vec![("RATE_LIMIT_ENABLED".into(), "false".into())],
            ..options.clone()
        },
    )?;
    let app_unlimited = lumi_shared::bootstrap::app(unlimited, images::routes);

    // The original, stored as the admin API stores one.
    let bucket = platform
        .config
        .images
        .bucket
        .clone()
        .context("the images function has no IMAGES_BUCKET")?;
    let key = format!("originals/{}.jpeg", uuid::Uuid::new_v4().simple());
    let source = images::url::SourceKey::parse(&key).context("not an original's key")?;
    let s3 = lumi_shared::aws::s3_client(&platform.sdk_config);
    s3.put_object()
        .bucket(&bucket)
        .key(source.as_str())
        .body(photo.to_vec().into())
        .send()
        .await
        .context("storing the original")?;
    // A 1-byte object beside it, whose read measures the local S3's floor.
    let floor_key = format!("bench/{}.bin", uuid::Uuid::new_v4().simple());
    s3.put_object()
        .bucket(&bucket)
        .key(&floor_key)
        .body(vec![0u8].into())
        .send()
        .await
        .context("storing the 1-byte object")?;

    // Its URL, signed as `lumi images url` signs it.
    let secret = stack.config_secret_json().await?;
    let secrets = lumi_shared::secrets::AppSecrets::parse(&secret.to_string())?;
    let url_key = secrets
        .image_url_keys
        .first()
        .context("the config secret has no image_url_key")?;
    let requested = images::url::parse_options(OPTIONS)
        .map_err(|errors| anyhow!("{OPTIONS} does not parse: {errors:?}"))?;
    let path = images::url::signed_path(url_key, &requested, &source);
    let settings = platform.settings.get().await;
    let transform_options = requested.resolve(source.format(), None, &settings.image_quality);
    ensure!(
        transform_options == RESIZE800_JPEG,
        "the GET resolves {OPTIONS} to {transform_options:?}, not resize800_jpeg"
    );
    let range = format!("bytes=0-{}", platform.config.images.max_input_bytes);

    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    eprintln!(
        "lumi-bench: {} warm-up + {} measured rounds of bare transform, GET, S3 read, \
         304, 304 without the rate limiter, GET without it, a 1-byte S3 read",
        opts.warmup, opts.runs
    );
    let mut samples = ImageGetSamples::default();
    let mut output_bytes = 0;
    for round in 0..opts.warmup + opts.runs {
        if live {
            eprint!(
                "\r\x1b[Klumi-bench: round {}/{}",
                round + 1,
                opts.warmup + opts.runs
            );
        }
        let started = Instant::now();
        let bare = tokio::task::block_in_place(|| {
            lumi_imaging::transform(&photo, &transform_options, &Limits::default())
        })
        .map_err(|e| anyhow!("the bare transform failed: {e}"))?;
        let bare_time = started.elapsed();

        let started = Instant::now();
        let (etag, answer) = signed_get(&app, &path, None).await?;
        let get_time = started.elapsed();
        ensure!(
            answer == bare.bytes,
            "the GET answered {} bytes that are not the bare transform's {}: not the same work",
            answer.len(),
            bare.bytes.len()
        );

        let started = Instant::now();
        let object = s3
            .get_object()
            .bucket(&bucket)
            .key(source.as_str())
            .range(&range)
            .send()
            .await
            .context("S3 GetObject of the original")?;
        let s3_headers_time = started.elapsed();
        let read = object
            .body
            .collect()
            .await
            .context("reading the original's body")?
            .into_bytes();
        let s3_time = started.elapsed();
        ensure!(read.len() == photo.len(), "S3 answered a partial original");

        // The local S3's floor: any read, however small, until its answer's headers.
        let started = Instant::now();
        let tiny = s3
            .get_object()
            .bucket(&bucket)
            .key(&floor_key)
            .send()
            .await
            .context("S3 GetObject of the 1-byte object")?;
        let s3_floor_time = started.elapsed();
        ensure!(
            tiny.content_length() == Some(1),
            "the 1-byte object is not 1 byte"
        );

        // The same path without S3 or the transform: a 304 (the ETag is current), with the rate
        // limiter and without.
        let started = Instant::now();
        signed_get(&app, &path, Some(&etag)).await?;
        let not_modified_time = started.elapsed();
        let started = Instant::now();
        signed_get(&app_unlimited, &path, Some(&etag)).await?;
        let not_modified_unlimited_time = started.elapsed();
        // The GET again without the limiter: what deciding alongside still costs.
        let started = Instant::now();
        let (_, unlimited) = signed_get(&app_unlimited, &path, None).await?;
        let get_unlimited_time = started.elapsed();
        ensure!(
            unlimited == bare.bytes,
            "the GET without the limiter answered other bytes"
        );

        output_bytes = bare.bytes.len();
        if round >= opts.warmup {
            samples.bare.push(bare_time);
            samples.get.push(get_time);
            samples.s3.push(s3_time);
            samples.s3_headers.push(s3_headers_time);
            samples.get_unlimited.push(get_unlimited_time);
            samples.not_modified.push(not_modified_time);
            samples
                .not_modified_unlimited
                .push(not_modified_unlimited_time);
            samples.s3_floor.push(s3_floor_time);
        }
    }
    if live {
        eprint!("\r\x1b[K");
    }
    drop(moto);

    let report = ImageGetReport::new(
        samples,
        format!(
            "{}: {}x{}, {} bytes",
            photo_path.display(),
            probe.width,
            probe.height,
            photo.len()
        ),
        output_bytes,
        opts.runs,
        opts.warmup,
    );
    print!("{}", report.table());
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("lumi-bench: figures written to {}", path.display());
    }
    Ok(())
}

/// `GET path` through `app` as Lambda hands it over (API Gateway's request context added), with
/// `If-None-Match: etag` when given; the answer's ETag and its body, collected. It must be 200
/// (304 with an `etag`) and carry the signed image's ETag and Cache-Control.
async fn signed_get(app: &Router, path: &str, etag: Option<&str>) -> Result<(String, Bytes)> {
    let mut request = Request::get(path);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let mut request = request.body(Body::empty())?;
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http.method = Method::GET;
    context.http.path = Some(path.to_owned());
    context.http.source_ip = Some(SOURCE_IP.to_owned());
    context.route_key = Some("GET /api/v1/images/{signature}/{options}/{source+}".to_owned());
    context.stage = Some("$default".to_owned());
    request
        .extensions_mut()
        .insert(RequestContext::ApiGatewayV2(context));
    let response = match tower::ServiceExt::oneshot(app.clone(), request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let answered_etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cached = response.headers().contains_key(header::CACHE_CONTROL);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .context("collecting the GET's body")?;
    let expected = match etag {
        None => StatusCode::OK,
        Some(_) => StatusCode::NOT_MODIFIED,
    };
    if status != expected {
        bail!(
            "the signed GET answered {status}, not {expected}: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
    }
    let answered_etag = answered_etag
        .filter(|_| cached)
        .context("the signed GET answered without its ETag or Cache-Control")?;
    Ok((answered_etag, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_resize800_jpeg_in_canonical_order() {
        let requested = images::url::parse_options(OPTIONS).unwrap();
        assert_eq!(images::url::options_segment(&requested), OPTIONS);
        let quality = lumi_shared::settings::ImageQuality::default();
        assert_eq!(
            requested.resolve(lumi_imaging::InputFormat::Jpeg, None, &quality),
            RESIZE800_JPEG
        );
    }

    #[test]
    fn the_default_photo_is_run_sh_s() {
        assert!(default_photo().ends_with("shared/bench/photo_4000x3000.jpg"));
    }
}
