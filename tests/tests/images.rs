//! The images function end to end: transforms over HTTP (formats, negotiation, quality from the
//! settings, ETags, every limit and bad input; an admin's or a signed request only), stored
//! variants in S3 with presigned URLs, the presigned-upload path for originals larger than a
//! request body, and signed image URLs of stored originals (cache headers, 304, Accept, every
//! bad signature refused before S3 is read, and a CDN miss's rate limit kept per viewer only
//! with the CDN origin token).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use image::{ImageEncoder as _, RgbImage, codecs::png::PngEncoder};
use lumi_imaging::{Fit, InputFormat, Limits, OutputFormat, TransformOptions};
use lumi_shared::settings::{ImageQuality, SystemSettings};
use lumi_tests::{TestApp, assert_problem};
use reqwest::header;
use serde_json::Value;

/// A photo-like test card: gradients and blocks, so encoders have something to do.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        let block = ((x / 16 + y / 16) % 2) as u8 * 60;
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            block.wrapping_add((x ^ y) as u8 / 4),
        ])
    });
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&image, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Random pixels: a PNG that does not compress (for size limits).
fn noise_png(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let image = RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [a, b, c, ..] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&image, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn encode(source: &[u8], format: OutputFormat) -> Vec<u8> {
    let options = TransformOptions {
        width: None,
        height: None,
        fit: Fit::Inside,
        format,
        quality: 90,
    };
    lumi_imaging::transform(source, &options, &Limits::default())
        .unwrap()
        .bytes
}

fn gif(width: u32, height: u32) -> Vec<u8> {
    let frame = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x * 4) as u8, (y * 4) as u8, 90, 255])
    });
    let mut out = Vec::new();
    let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
    encoder
        .encode_frame(image::Frame::new(frame.clone()))
        .unwrap();
    encoder.encode_frame(image::Frame::new(frame)).unwrap();
    drop(encoder);
    out
}

/// Every input format, 120x90.
fn inputs() -> Vec<(InputFormat, Vec<u8>)> {
    let source = png(120, 90);
    vec![
        (InputFormat::Jpeg, encode(&source, OutputFormat::Jpeg)),
        (InputFormat::Webp, encode(&source, OutputFormat::Webp)),
        (InputFormat::Gif, gif(120, 90)),
        (InputFormat::Png, source),
    ]
}

/// `POST /api/v1/images/transform?{query}` as an admin (`token`).
async fn transform(
    app: &TestApp,
    token: &str,
    query: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url(&format!("/api/v1/images/transform?{query}")))
        .bearer_auth(token)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_format_in_and_out_with_its_content_type_and_size() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (input_format, input) in inputs() {
        for output in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let query = format!("w=40&format={}", output.as_str());
            let response = transform(&app, &admin, &query, input.clone(), &[]).await;
            assert_eq!(response.status(), 200, "{input_format:?} -> {output:?}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], output.mime());
            let bytes = response.bytes().await.unwrap();
            let probe = lumi_imaging::probe(&bytes).unwrap();
            assert_eq!(
                (probe.width, probe.height),
                (40, 30),
                "{input_format:?} -> {output:?}"
            );
            assert_eq!(probe.format.as_str(), output.as_str());
        }
    }
    // Each fit, to 60x60 from 120x90.
    let source = png(120, 90);
    for (fit, size) in [
        ("cover", (60, 60)),
        ("contain", (60, 60)),
        ("inside", (60, 45)),
        ("fill", (60, 60)),
    ] {
        let response = transform(
            &app,
            &admin,
            &format!("w=60&h=60&fit={fit}&format=png"),
            source.clone(),
            &[],
        )
        .await;
        assert_eq!(response.status(), 200, "{fit}");
        let probe = lumi_imaging::probe(&response.bytes().await.unwrap()).unwrap();
        assert_eq!((probe.width, probe.height), size, "{fit}");
    }
    let metrics = app.metrics.json();
    assert!(
        metrics
            .iter()
            .any(|m| m.get("lumi_image_transform_ms").is_some()
                && m["function"] == "images"
                && m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Milliseconds"),
        "each transform emits its milliseconds"
    );
    assert!(
        metrics
            .iter()
            .any(|m| m.get("lumi_image_output_bytes").is_some())
    );
}

#[tokio::test]
async fn accept_picks_the_format_when_none_is_asked_for() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let source = png(64, 48);
    let jpeg = encode(&source, OutputFormat::Jpeg);
    let webp = transform(
        &app,
        &admin,
        "w=32",
        jpeg.clone(),
        &[("accept", "image/avif,image/webp,*/*")],
    )
    .await;
    assert_eq!(webp.headers()[header::CONTENT_TYPE], "image/webp");
    assert_eq!(webp.headers()[header::VARY], "Accept");
    let plain = transform(&app, &admin, "w=32", jpeg, &[("accept", "image/*")]).await;
    assert_eq!(plain.headers()[header::CONTENT_TYPE], "image/jpeg");
    let png_kept = transform(&app, &admin, "w=32", source, &[]).await;
    assert_eq!(
        png_kept.headers()[header::CONTENT_TYPE],
        "image/png",
        "PNG input may be transparent: it stays PNG"
    );
    let explicit = transform(
        &app,
        &admin,
        "w=32&format=jpeg",
        png(64, 48),
        &[("accept", "image/webp")],
    )
    .await;
    assert_eq!(explicit.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(
        explicit
            .headers()
            .get_all(header::VARY)
            .iter()
            .all(|v| !v.to_str().unwrap().contains("Accept")),
        "an explicit format does not vary by Accept"
    );
}

#[tokio::test]
async fn a_quality_setting_change_takes_effect_without_a_redeploy() {
    let app = TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let photo = encode(&png(400, 300), OutputFormat::Jpeg);
    let at_default = transform(&app, &admin, "w=300&format=jpeg", photo.clone(), &[]).await;
    let etag_default = at_default.headers()[header::ETAG].clone();
    let size_default = at_default.bytes().await.unwrap().len();

    app.put_settings(&SystemSettings {
        image_quality: ImageQuality { jpeg: 20, webp: 80 },
        ..SystemSettings::default()
    })
    .await;
    let lowered = transform(&app, &admin, "w=300&format=jpeg", photo, &[]).await;
    assert_ne!(
        lowered.headers()[header::ETAG],
        etag_default,
        "another output, another tag"
    );
    let size_lowered = lowered.bytes().await.unwrap().len();
    assert!(
        size_lowered < size_default * 3 / 4,
        "quality 20 is smaller: {size_lowered} vs {size_default}"
    );
}

#[tokio::test]
async fn the_etag_is_stable_and_if_none_match_answers_304() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let source = png(64, 48);
    let first = transform(&app, &admin, "w=20&format=webp", source.clone(), &[]).await;
    let second = transform(&app, &admin, "w=20&format=webp", source.clone(), &[]).await;
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(second.headers()[header::ETAG], etag.as_str());
    assert!(
        first.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let other = transform(&app, &admin, "w=21&format=webp", source.clone(), &[]).await;
    assert_ne!(other.headers()[header::ETAG], etag.as_str());
    let cached = transform(
        &app,
        &admin,
        "w=20&format=webp",
        source,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.unwrap().is_empty());
}

/// A PNG whose header claims 100 000 x 100 000 pixels (10 gigapixels), with a valid CRC and a
/// tiny body: decoding it would need 30 GB.
fn png_bomb() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc.to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(b"IEND");
    out.extend(crc32(b"IEND").to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn bad_input_gets_the_right_problem_never_a_500() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let bomb = assert_problem(transform(&app, &admin, "w=100", png_bomb(), &[]).await, 413).await;
    assert!(
        bomb["detail"].as_str().unwrap().contains("100000x100000"),
        "{bomb}"
    );

    let oversize = noise_png(1400, 1200);
    assert!(oversize.len() > 4_400_000);
    assert_problem(transform(&app, &admin, "w=100", oversize, &[]).await, 413).await;

    assert_problem(
        transform(&app, &admin, "w=10", b"BM6\0\0\0 a bitmap".to_vec(), &[]).await,
        415,
    )
    .await;
    assert_problem(
        transform(
            &app,
            &admin,
            "w=10",
            png(20, 20),
            &[("content-type", "text/plain")],
        )
        .await,
        415,
    )
    .await;
    assert_problem(transform(&app, &admin, "w=10", Vec::new(), &[]).await, 400).await;

    let jpeg = encode(&png(200, 150), OutputFormat::Jpeg);
    let truncated = jpeg[..jpeg.len() / 3].to_vec();
    let corrupt = assert_problem(transform(&app, &admin, "w=50", truncated, &[]).await, 422).await;
    assert_eq!(corrupt["errors"][0]["field"], "body");

    let options = assert_problem(
        transform(
            &app,
            &admin,
            "w=0&fit=squash&quality=0&colour=red",
            png(20, 20),
            &[],
        )
        .await,
        422,
    )
    .await;
    let fields: Vec<&str> = options["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["w", "fit", "quality", "colour"] {
        assert!(fields.contains(&field), "{fields:?}");
    }
    assert_problem(
        transform(&app, &admin, "w=100000&h=100000&fit=fill", png(20, 20), &[]).await,
        422,
    )
    .await;
}

/// `POST /api/v1/admin/images` with `body` as the original.
async fn store(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/admin/images"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn stored_images_keep_the_original_and_variants_with_presigned_urls() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in_admin().await;
    let admin = admin["access_token"].as_str().unwrap();
    let customer = app.quick_customer().await;
    let customer = customer["access_token"].as_str().unwrap();
    let source = encode(&png(1000, 750), OutputFormat::Jpeg);

    let refused = store(&app, customer, "image/jpeg", source.clone()).await;
    assert_problem(refused, 403).await;

    let created = store(&app, admin, "image/jpeg", source.clone()).await;
    assert_eq!(created.status(), 201);
    let set: Value = created.json().await.unwrap();
    let id = set["id"].as_str().unwrap();
    assert_eq!(set["original"]["key"], format!("originals/{id}.jpeg"));
    let original = app
        .http
        .get(set["original"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_eq!(original.bytes().await.unwrap().as_ref(), source.as_slice());
    let variants = set["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["thumb", "medium", "large"]);
    for (variant, size, format) in [
        (&variants[0], (200, 200), "jpeg"),
        (&variants[1], (800, 600), "webp"),
        (&variants[2], (1000, 750), "jpeg"),
    ] {
        let bytes = app
            .http
            .get(variant["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let probe = lumi_imaging::probe(&bytes).unwrap();
        assert_eq!((probe.width, probe.height), size, "{variant}");
        assert_eq!(probe.format.as_str(), format);
        assert_eq!(variant["bytes"], bytes.len());
    }
    let audit: Value = app
        .http
        .get(app.url(&format!("/api/v1/admin/audit-logs?target=image:{id}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"][0]["action"], "image.create");
}

#[tokio::test]
async fn an_original_larger_than_a_request_goes_through_a_presigned_upload() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in_admin().await;
    let admin = admin["access_token"].as_str().unwrap();
    let large = noise_png(1400, 1200);
    assert!(large.len() > 4_400_000, "beyond the request body cap");

    let direct = store(&app, admin, "image/png", large.clone()).await;
    assert_problem(direct, 413).await;

    let upload: Value = app
        .http
        .post(app.url("/api/v1/admin/images/uploads"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = app
        .http
        .put(upload["upload_url"].as_str().unwrap())
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let process = upload["process"].as_str().unwrap();
    let processed = app
        .http
        .post(app.url(process))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(processed.status(), 201);
    let set: Value = processed.json().await.unwrap();
    assert_eq!(set["original"]["bytes"], large.len());
    assert_eq!(set["original"]["width"], 1400);
    assert_eq!(set["variants"][0]["width"], 200);

    let again = app
        .http
        .post(app.url(process))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_problem(again, 409).await;

    // The presigned URL is still valid: a re-upload under the same id must not replace the
    // stored original.
    let other = noise_png(300, 200);
    let put = app
        .http
        .put(upload["upload_url"].as_str().unwrap())
        .body(other)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let replayed = app
        .http
        .post(app.url(process))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    let body = assert_problem(replayed, 409).await;
    assert!(
        body["detail"].as_str().unwrap().contains("used once"),
        "{body}"
    );
    let stored = app
        .s3()
        .head_object()
        .bucket(app.resource("ImagesBucket"))
        .key(set["original"]["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stored.content_length(), Some(large.len() as i64));

    let unknown = app
        .http
        .post(app.url("/api/v1/admin/images/uploads/not-an-id/process"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404).await;
}

#[tokio::test]
async fn an_oversize_upload_is_refused_unread_and_the_id_stays_usable() {
    let app = TestApp::builder()
        .env("IMAGE_MAX_INPUT_BYTES", "100000")
        .spawn()
        .await;
    let admin = app.signed_in_admin().await;
    let admin = admin["access_token"].as_str().unwrap();
    let upload: Value = app
        .http
        .post(app.url("/api/v1/admin/images/uploads"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upload["max_bytes"], 100_000);
    let put = |body: Vec<u8>| {
        app.http
            .put(upload["upload_url"].as_str().unwrap())
            .body(body)
            .send()
    };
    let process = || {
        app.http
            .post(app.url(upload["process"].as_str().unwrap()))
            .bearer_auth(admin)
            .send()
    };
    let big = noise_png(300, 200);
    assert!(big.len() > 100_000);
    assert!(put(big).await.unwrap().status().is_success());
    assert_problem(process().await.unwrap(), 413).await;
    // Refused before the claim: the same id takes a valid upload.
    let small = noise_png(60, 40);
    assert!(put(small.clone()).await.unwrap().status().is_success());
    let processed = process().await.unwrap();
    assert_eq!(processed.status(), 201);
    let set: Value = processed.json().await.unwrap();
    assert_eq!(set["original"]["bytes"], small.len());
}

// ------------------------------------------------------------------ signed image URLs

/// The README's recipe, written independently of the function's code: URL-safe base64 (no
/// padding) of HMAC-SHA256 of `message` with `key`.
fn sign(key: &str, message: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The signed path of `source` with `options`, under `key`.
fn image_path(key: &str, options: &str, source: &str) -> String {
    let signature = sign(key, &format!("/{options}/{source}"));
    format!("/api/v1/images/{signature}/{options}/{source}")
}

/// The config secret's image URL keys (one, or a list while rotating), the signing one first.
async fn url_keys(app: &TestApp) -> Vec<String> {
    let secret: Value = serde_json::from_str(&app.secret_json().await).unwrap();
    match &secret["image_url_key"] {
        Value::String(key) => vec![key.clone()],
        Value::Array(keys) => keys
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("no image_url_key: {other}"),
    }
}

/// Writes the config secret's `image_url_key` (a new AWSCURRENT version).
async fn set_url_keys(app: &TestApp, keys: &[&str]) {
    let mut secret: Value = serde_json::from_str(&app.secret_json().await).unwrap();
    secret["image_url_key"] = serde_json::json!(keys);
    app.secrets_manager()
        .put_secret_value()
        .secret_id(app.resource("ConfigSecret"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
}

/// An original stored straight in the bucket, as the admin API stores one; its key.
async fn put_original(app: &TestApp, bytes: Vec<u8>, ext: &str) -> String {
    let key = format!("originals/{}.{ext}", uuid::Uuid::new_v4().simple());
    app.s3()
        .put_object()
        .bucket(app.resource("ImagesBucket"))
        .key(&key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    key
}

/// S3 reads (GET and HEAD of objects) so far; needs `counting_aws_calls()`.
fn s3_reads(app: &TestApp) -> usize {
    app.aws_call_log()
        .iter()
        .filter(|call| {
            let mut parts = call.split(' ');
            parts.next() == Some("s3") && matches!(parts.nth(1), Some("GET" | "HEAD"))
        })
        .count()
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_signed_url_serves_a_stored_original_with_cache_headers_and_304_reads_nothing() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let admin = app.admin_token().await;
    let key = url_keys(&app).await.remove(0);
    let created = store(
        &app,
        &admin,
        "image/jpeg",
        encode(&png(400, 300), OutputFormat::Jpeg),
    )
    .await;
    assert_eq!(created.status(), 201);
    let set: Value = created.json().await.unwrap();
    let source = set["original"]["key"].as_str().unwrap();

    let path = image_path(&key, "w_200-format_webp", source);
    // What `lumi images url` prints is the README's recipe.
    let requested = images::url::parse_options("w_200-format_webp").unwrap();
    let cli = images::url::signed_path(
        &secrecy::SecretString::from(key.clone()),
        &requested,
        &images::url::SourceKey::parse(source).unwrap(),
    );
    assert_eq!(cli, path);
    let reads = s3_reads(&app);
    let response = get(&app, &path, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(s3_reads(&app) - reads, 1, "one GET of the original");
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "image/webp");
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong tag: {etag}"
    );
    assert!(
        headers
            .get_all(header::VARY)
            .iter()
            .all(|v| !v.to_str().unwrap().contains("Accept")),
        "an explicit format does not vary by Accept"
    );
    let body = response.bytes().await.unwrap();
    let probe = lumi_imaging::probe(&body).unwrap();
    assert_eq!((probe.width, probe.height), (200, 150));
    assert_eq!(probe.format, InputFormat::Webp);

    let again = get(&app, &path, &[]).await;
    assert_eq!(again.headers()[header::ETAG], etag.as_str(), "stable");

    // HEAD (CloudFront passes it; template.yaml routes it): the GET's headers and length, no body.
    let head = app.http.head(app.url(&path)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    for name in [header::ETAG, header::CONTENT_TYPE, header::CACHE_CONTROL] {
        assert_eq!(head.headers()[&name], headers[&name], "{name}");
    }
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let head_cached = app
        .http
        .head(app.url(&path))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(head_cached.status(), 304);

    let reads = s3_reads(&app);
    let cached = get(&app, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()[header::ETAG], etag.as_str());
    assert!(cached.bytes().await.unwrap().is_empty());
    assert_eq!(s3_reads(&app), reads, "a 304 reads nothing from S3");
    let stale = get(&app, &path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(stale.status(), 200);

    // An original nobody stored: 404, signed or not.
    let unknown = format!("originals/{}.jpeg", uuid::Uuid::new_v4().simple());
    assert_problem(
        get(&app, &image_path(&key, "w_200-format_webp", &unknown), &[]).await,
        404,
    )
    .await;
    // Only originals are sources: a variant's or an upload's key is nothing here.
    let variant = set["variants"][0]["key"].as_str().unwrap();
    assert_problem(
        get(&app, &image_path(&key, "w_20-format_jpeg", variant), &[]).await,
        404,
    )
    .await;

    // Options as the POST transform's: 422 naming each bad one, and the canonical order.
    let bad = assert_problem(
        get(
            &app,
            &image_path(&key, "w_0-fit_squash-colour_red", source),
            &[],
        )
        .await,
        422,
    )
    .await;
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["w", "fit", "colour"] {
        assert!(fields.contains(&field), "{fields:?}");
    }
    let order = assert_problem(
        get(&app, &image_path(&key, "format_webp-w_200", source), &[]).await,
        422,
    )
    .await;
    assert_eq!(order["errors"][0]["field"], "w", "{order}");
}

#[tokio::test]
async fn a_large_original_streams_into_the_codec_and_gives_the_bytes_of_a_whole_transform() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let key = url_keys(&app).await.remove(0);
    // A photo-like JPEG (4:2:0, noisy: a scan of many 64 KiB windows) that the GET resizes to a
    // quarter: the path that streams.
    let photo = encode(&noise_png(1200, 900), OutputFormat::Jpeg);
    assert!(photo.len() > 8 * 65_536, "{} bytes", photo.len());
    let options = TransformOptions {
        width: Some(300),
        height: None,
        fit: Fit::Inside,
        format: OutputFormat::Jpeg,
        quality: 80,
    };
    let whole = lumi_imaging::transform(&photo, &options, &Limits::default()).unwrap();
    let path = |source: &str| image_path(&key, "w_300-format_jpeg-quality_80", source);

    let source = put_original(&app, photo.clone(), "jpeg").await;
    let reads = s3_reads(&app);
    let response = get(&app, &path(&source), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), whole.bytes);
    assert_eq!(s3_reads(&app) - reads, 1, "one GET, streamed");

    // Cut short in its scan: our decoder gives up where the data ends, the original is read
    // again, whole, and libjpeg-turbo's verdict is the POST transform's (422).
    let cut = photo[..photo.len() * 2 / 3].to_vec();
    let source = put_original(&app, cut, "jpeg").await;
    let reads = s3_reads(&app);
    let problem = assert_problem(get(&app, &path(&source), &[]).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "body", "{problem}");
    assert_eq!(s3_reads(&app) - reads, 2, "streamed, then read again whole");
}

#[tokio::test]
async fn a_wrong_truncated_tampered_or_retired_signature_is_403_before_s3_is_read() {
    let app = TestApp::builder()
        .counting_aws_calls()
        .env("SECRETS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let old = url_keys(&app).await.remove(0);
    let source = put_original(&app, png(80, 60), "png").await;
    let options = "w_40-format_png";
    let good = image_path(&old, options, &source);
    assert_eq!(get(&app, &good, &[]).await.status(), 200);

    let signature = good.split('/').nth(4).unwrap().to_owned();
    assert_eq!(signature.len(), 43);
    let forged = image_path(&"f".repeat(64), options, &source);
    let truncated = good.replace(&signature, &signature[..42]);
    let tampered = good.replace(options, "w_4000-format_png");
    let reads = s3_reads(&app);
    for path in [&forged, &truncated, &tampered] {
        let refused = assert_problem(get(&app, path, &[]).await, 403).await;
        assert!(
            refused["detail"].as_str().unwrap().contains("signature"),
            "{refused}"
        );
    }
    assert_eq!(s3_reads(&app), reads, "no S3 read for a bad signature");

    // Rotation: a new key staged second verifies; promoted first, the old one still verifies.
    let new = "n".repeat(64);
    set_url_keys(&app, &[&old, &new]).await;
    assert_eq!(
        get(&app, &image_path(&new, options, &source), &[])
            .await
            .status(),
        200
    );
    set_url_keys(&app, &[&new, &old]).await;
    assert_eq!(
        get(&app, &good, &[]).await.status(),
        200,
        "old key, rotating"
    );
    // Retired: URLs it signed are refused, without reading S3.
    set_url_keys(&app, &[&new]).await;
    let reads = s3_reads(&app);
    assert_problem(get(&app, &good, &[]).await, 403).await;
    assert_eq!(s3_reads(&app), reads);
    assert_eq!(
        get(&app, &image_path(&new, options, &source), &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn format_auto_follows_accept_and_varies_by_it() {
    let app = TestApp::spawn().await;
    let key = url_keys(&app).await.remove(0);
    let photo = put_original(&app, encode(&png(64, 48), OutputFormat::Jpeg), "jpeg").await;
    let path = image_path(&key, "w_32-format_auto", &photo);

    let chrome = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
    let webp = get(&app, &path, &[("accept", chrome)]).await;
    assert_eq!(webp.status(), 200);
    assert_eq!(webp.headers()[header::CONTENT_TYPE], "image/webp");
    assert_eq!(webp.headers()[header::VARY], "Accept");
    let webp_tag = webp.headers()[header::ETAG].clone();

    let plain = get(&app, &path, &[("accept", "image/*")]).await;
    assert_eq!(plain.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(plain.headers()[header::VARY], "Accept");
    assert_ne!(
        plain.headers()[header::ETAG],
        webp_tag,
        "one tag per format"
    );
    // A WebP tag does not answer 304 to a client that gets JPEG.
    let webp_tag = webp_tag.to_str().unwrap();
    let other = get(
        &app,
        &path,
        &[("accept", "image/*"), ("if-none-match", webp_tag)],
    )
    .await;
    assert_eq!(other.status(), 200);
    let same = get(
        &app,
        &path,
        &[("accept", chrome), ("if-none-match", webp_tag)],
    )
    .await;
    assert_eq!(same.status(), 304);
    assert_eq!(same.headers()[header::VARY], "Accept");

    // PNG may be transparent: it stays PNG when WebP is not accepted.
    let logo = put_original(&app, png(64, 48), "png").await;
    let kept = get(&app, &image_path(&key, "w_32-format_auto", &logo), &[]).await;
    assert_eq!(kept.headers()[header::CONTENT_TYPE], "image/png");
}

#[tokio::test]
async fn an_anonymous_transform_is_refused_and_a_signed_one_served() {
    let app = TestApp::spawn().await;
    let key = url_keys(&app).await.remove(0);
    let body = png(40, 30);
    let post = |query: String, token: Option<String>| {
        let mut request = app
            .http
            .post(app.url(&format!("/api/v1/images/transform?{query}")))
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let anonymous = post("w=20&format=png".into(), None).await.unwrap();
    assert_eq!(
        anonymous.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_problem(anonymous, 401).await;
    let customer = app.customer_token().await;
    assert_problem(
        post("w=20&format=png".into(), Some(customer))
            .await
            .unwrap(),
        403,
    )
    .await;

    let query = "w=20&format=png";
    let signature = sign(&key, &format!("POST /api/v1/images/transform?{query}"));
    let signed = post(format!("{query}&signature={signature}"), None)
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let probe = lumi_imaging::probe(&signed.bytes().await.unwrap()).unwrap();
    assert_eq!((probe.width, probe.height), (20, 15));
    // A token, when sent, decides: a customer's is 403 whatever the signature.
    let customer = app.customer_token().await;
    assert_problem(
        post(format!("{query}&signature={signature}"), Some(customer))
            .await
            .unwrap(),
        403,
    )
    .await;
    // The signature covers the query: other options, or another key, are refused as a bad
    // credential (401, as a bad token is).
    assert_problem(
        post(format!("w=2000&format=png&signature={signature}"), None)
            .await
            .unwrap(),
        401,
    )
    .await;
    let forged = sign(
        &"f".repeat(64),
        &format!("POST /api/v1/images/transform?{query}"),
    );
    assert_problem(
        post(format!("{query}&signature={forged}"), None)
            .await
            .unwrap(),
        401,
    )
    .await;
    // A GET URL's signature is no transform's.
    let get_signature = sign(&key, &format!("/{query}"));
    assert_problem(
        post(format!("{query}&signature={get_signature}"), None)
            .await
            .unwrap(),
        401,
    )
    .await;
}

#[tokio::test]
async fn the_rate_limit_is_decided_alongside_a_signed_get_and_a_known_refusal_reads_nothing() {
    let clock = lumi_shared::clock::ManualClock::starting_now();
    let app = TestApp::builder()
        .counting_aws_calls()
        .clock(&clock)
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.ip.limit = 3;
    app.put_settings(&settings).await;
    let key = url_keys(&app).await.remove(0);
    let source = put_original(&app, encode(&png(400, 300), OutputFormat::Jpeg), "jpeg").await;
    let path = image_path(&key, "w_200-format_jpeg", &source);
    // Two containers of the images function (started after the settings changed), each
    // remembering the buckets it has seen.
    let a = app
        .serve_routes_as("images", "images", images::routes)
        .await;
    let b = app
        .serve_routes_as("images", "images", images::routes)
        .await;
    let client = reqwest::Client::new();
    let get = |base: &str, headers: &[(&str, &str)]| {
        let mut request = client
            .get(format!("{base}{path}"))
            .header("x-test-source-ip", "203.0.113.40");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    // Admitted: the image, with the limiter's headers.
    let reads = s3_reads(&app);
    let first = get(&a, &[]).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("x-ratelimit-remaining"));
    assert_eq!(first.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(s3_reads(&app) - reads, 1);
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    // The other container spends the rest of the IP's budget.
    for _ in 0..2 {
        let spent = get(&b, &[]).await.unwrap();
        assert_eq!(spent.status(), 200);
        assert!(spent.headers().contains_key("x-ratelimit-remaining"));
    }
    // The first container still sees budget left, so the request's work runs while the
    // limiter decides. The work (a 304: no I/O) is done first; the store refuses; the answer
    // is the refusal.
    let refused = get(&a, &[("if-none-match", &etag)]).await.unwrap();
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(assert_problem(refused, 429).await["policy"], "ip");
    // Both now know the budget is spent: refused before any work, nothing read from S3.
    let reads = s3_reads(&app);
    for base in [&a, &b] {
        let known = get(base, &[]).await.unwrap();
        assert_eq!(assert_problem(known, 429).await["policy"], "ip");
    }
    assert_eq!(
        s3_reads(&app),
        reads,
        "a refusal known in advance reads nothing"
    );
    // Once the budget refills (a third of the window: one request), admitted again.
    clock.advance_secs(i64::from(settings.rate_limits.ip.window_seconds) / 3 + 1);
    assert_eq!(get(&a, &[]).await.unwrap().status(), 200);
}

/// The `r` of the `ip` scope in a response's `RateLimit` header: what that client has left.
fn ip_remaining(response: &reqwest::Response) -> u32 {
    let value = response.headers()["ratelimit"].to_str().unwrap();
    value
        .split(", ")
        .find_map(|scope| scope.strip_prefix("\"ip\";r="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no ip scope in {value}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_cdn_miss_spends_its_viewers_budget_and_only_with_the_origin_token() {
    let clock = lumi_shared::clock::ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.ip.limit = 3;
    app.put_settings(&settings).await;
    let key = url_keys(&app).await.remove(0);
    let source = put_original(&app, encode(&png(400, 300), OutputFormat::Jpeg), "jpeg").await;
    let path = image_path(&key, "w_100-format_jpeg", &source);
    // The token CloudFront sends, as CloudFormation generated it into CdnOriginSecret.
    let origin_secret = app
        .secrets_manager()
        .get_secret_value()
        .secret_id(app.resource("CdnOriginSecret"))
        .send()
        .await
        .unwrap();
    let origin_secret: Value =
        serde_json::from_str(origin_secret.secret_string().unwrap()).unwrap();
    let token = origin_secret["token"].as_str().unwrap().to_owned();
    let images = app
        .serve_routes_as("images", "images", images::routes)
        .await;
    let client = reqwest::Client::new();
    // `source`: API Gateway's sourceIp (a CloudFront edge server, or a direct caller).
    let get = |source: &str, token: Option<&str>, viewer: &str| {
        let mut request = client
            .get(format!("{images}{path}"))
            .header("x-test-source-ip", source)
            .header("cloudfront-viewer-address", viewer);
        if let Some(token) = token {
            request = request.header("x-origin-verify", token);
        }
        request.send()
    };
    let edge_server = "130.176.0.10";
    let (viewer_a, viewer_b) = ("198.51.100.7:40001", "2001:db8::7:40002");

    // Through the CDN: each viewer has a budget of its own, though all come from one address.
    let first = get(edge_server, Some(&token), viewer_a).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(ip_remaining(&first), 2);
    let again = get(edge_server, Some(&token), viewer_a).await.unwrap();
    assert_eq!(ip_remaining(&again), 1);
    let other = get(edge_server, Some(&token), viewer_b).await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(
        ip_remaining(&other),
        2,
        "viewer B does not spend A's budget"
    );
    assert_eq!(
        ip_remaining(&get(edge_server, Some(&token), viewer_a).await.unwrap()),
        0
    );
    let refused = get(edge_server, Some(&token), viewer_a).await.unwrap();
    assert_eq!(assert_problem(refused, 429).await["policy"], "ip");
    let still = get(edge_server, Some(&token), viewer_b).await.unwrap();
    assert_eq!(still.status(), 200, "A's refusal is not B's");
    assert_eq!(ip_remaining(&still), 1);

    // Directly, or with a wrong token: the viewer header is the caller's to forge, so the
    // budget is the source address's, whatever viewer it names (A's is spent, this one's not).
    let wrong = "x".repeat(token.len());
    for (source, token) in [
        ("203.0.113.50", None),
        ("203.0.113.51", Some(wrong.as_str())),
    ] {
        for (n, viewer) in ["198.51.100.7:1", "198.51.100.8:2", "198.51.100.9:3"]
            .into_iter()
            .enumerate()
        {
            let direct = get(source, token, viewer).await.unwrap();
            assert_eq!(direct.status(), 200, "{source} request {n}");
            assert_eq!(ip_remaining(&direct), 2 - n as u32, "{source} request {n}");
        }
        let refused = get(source, token, "198.51.100.10:4").await.unwrap();
        assert_eq!(
            assert_problem(refused, 429).await["policy"],
            "ip",
            "{source}"
        );
    }

    // A new token, put before the distribution sends it: a container reading the secret now
    // accepts the new one and the one the distribution still sends (AWSPREVIOUS).
    let new_token = "n".repeat(64);
    app.secrets_manager()
        .put_secret_value()
        .secret_id(app.resource("CdnOriginSecret"))
        .secret_string(serde_json::json!({ "token": new_token }).to_string())
        .send()
        .await
        .unwrap();
    let images = app
        .serve_routes_as("images", "images", images::routes)
        .await;
    let get = |token: &str, viewer: &str| {
        client
            .get(format!("{images}{path}"))
            .header("x-test-source-ip", edge_server)
            .header("cloudfront-viewer-address", viewer)
            .header("x-origin-verify", token)
            .send()
    };
    // Two viewers a token: keyed on the edge server instead, the second would have 1 left.
    for (token, viewers) in [
        (&token, ["192.0.2.1:1", "192.0.2.2:2"]),
        (&new_token, ["192.0.2.3:3", "192.0.2.4:4"]),
    ] {
        for viewer in viewers {
            let rotated = get(token, viewer).await.unwrap();
            assert_eq!(rotated.status(), 200, "{viewer}");
            assert_eq!(ip_remaining(&rotated), 2, "{viewer}: its own budget");
        }
    }
}
