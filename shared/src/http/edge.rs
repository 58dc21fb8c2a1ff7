//! The outermost layer of every function: see the [module above](super) for what it guarantees.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use http_body::Body as _;
use lambda_http::request::RequestContext;
use tracing::Instrument as _;

use super::{
    X_API_VERSION, X_REQUEST_ID,
    extract::{BodyLimit, ClientIp, ReceivedAt, RequestId},
};
use crate::{
    error::{ApiError, InternalError, PROBLEM_CONTENT_TYPE, Problem},
    platform::Platform,
    telemetry::{
        metrics::{HTTP_REQUESTS_TOTAL, MetricSet, status_class},
        report::{self, ErrorEvent, Source},
        trace,
    },
};

/// API Gateway's id, else the caller's if well-formed, else a new UUID.
pub fn resolve_request_id(request: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(context)) =
        request.extensions().get::<RequestContext>()
        && let Some(id) = context
            .request_id
            .as_deref()
            .filter(|id| is_valid_request_id(id))
    {
        return id.to_owned();
    }
    request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// 1 to 128 characters of letters, digits and `-_.:=+/` (API Gateway's ids are base64): safe in
/// a header and a log line.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'=' | b'+' | b'/')
        })
}

/// The header a CDN sends with the origin token (template.yaml's `ImagesDistribution`).
pub const X_ORIGIN_VERIFY: &str = "x-origin-verify";
/// The viewer's address and port, as CloudFront sends it to an origin that asks for it.
pub const CLOUDFRONT_VIEWER_ADDRESS: &str = "cloudfront-viewer-address";

/// The viewer's address of a request CloudFront forwarded: its `CloudFront-Viewer-Address`,
/// believed only when the request also carries the CDN origin secret's token as
/// `X-Origin-Verify` (so nobody calling the API directly can choose the address their budget
/// is kept under). Behind CloudFront, `sourceIp` is an edge server's address, which every
/// viewer that edge serves shares. `None` when the function has no origin secret, the request
/// does not carry both headers, the token is wrong, or the secret cannot be read (then the
/// request is keyed on `sourceIp`, as a direct one: nothing is refused for it).
async fn cdn_viewer_ip(platform: &Platform, headers: &http::HeaderMap) -> Option<std::net::IpAddr> {
    let tokens = platform.cdn_origin.as_ref()?;
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = header(X_ORIGIN_VERIFY)?;
    let viewer = parse_viewer_address(header(CLOUDFRONT_VIEWER_ADDRESS)?)?;
    match tokens.verify(presented).await {
        Ok(true) => Some(viewer),
        Ok(false) => {
            tracing::warn!(
                "X-Origin-Verify does not match the CDN origin secret; keyed on sourceIp"
            );
            None
        }
        Err(error) => {
            tracing::warn!(error = %error, "the CDN origin secret is unreadable; keyed on sourceIp");
            None
        }
    }
}

/// The address of a `CloudFront-Viewer-Address` value: `IPv4:port`, or an IPv6 address and
/// its port after the last colon (with or without brackets).
fn parse_viewer_address(value: &str) -> Option<std::net::IpAddr> {
    let (address, port) = value.trim().rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    address.parse().ok()
}

/// The caller's address as API Gateway saw it (`requestContext.http.sourceIp`); headers such as
/// `X-Forwarded-For` are the caller's to forge and are not read.
pub fn resolve_client_ip(request: &Request) -> String {
    match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .clone()
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "unknown".to_owned()),
        _ => "unknown".to_owned(),
    }
}

pub async fn edge(
    State(platform): State<Arc<Platform>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = resolve_request_id(&request);
    // The viewer's address when the request came through the CDN, else API Gateway's.
    let client_ip = match cdn_viewer_ip(&platform, request.headers()).await {
        Some(viewer) => viewer.to_string(),
        None => resolve_client_ip(&request),
    };
    let cold_start = platform.take_cold_start();
    // The route template, not the raw path: metric dimensions must stay few.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let metrics = MetricSet::default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        function = %platform.config.function_name,
        cold_start,
        method = %method,
        route = route.as_deref().unwrap_or("unmatched"),
        // The trace's span name (semantic conventions: `{method} {route}`); not logged.
        otel.name = %route.as_deref().map_or_else(|| method.to_string(), |r| format!("{method} {r}")),
        otel.kind = "server",
    );
    trace::start_request(&span, request.headers(), method.as_str(), route.as_deref());

    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(ClientIp(client_ip));
    request
        .extensions_mut()
        .insert(ReceivedAt(tokio::time::Instant::from_std(started)));
    request.extensions_mut().insert(metrics.clone());

    let limit = platform.config.max_body_bytes;
    request.extensions_mut().insert(BodyLimit(limit));
    let mut response = if body_exceeds(&request, limit) {
        ApiError::PayloadTooLarge { limit }.into_response()
    } else {
        next.run(request).instrument(span.clone()).await
    };

    finish_problem(&mut response, &request_id).await;
    if let Some(InternalError(chain)) = response.extensions_mut().remove::<InternalError>() {
        let route = route.as_deref().unwrap_or("unmatched");
        report_internal_error(&platform, &chain, &request_id, &format!("{method} {route}"))
            .instrument(span.clone())
            .await;
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers.insert(X_API_VERSION, HeaderValue::from_static(crate::API_VERSION));

    let status = response.status().as_u16();
    trace::finish_request(&span, status);
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "request completed"
        );
    });
    let route_label = route.map_or_else(|| "unmatched".to_owned(), |r| format!("{method} {r}"));
    metrics.count(
        HTTP_REQUESTS_TOTAL,
        &[
            ("function", &platform.config.function_name),
            ("route", &route_label),
            ("status_class", status_class(status)),
        ],
        1.0,
    );
    platform.flush_metrics(&metrics, &[("request_id", &request_id)]);
    response
}

/// Sends an internal error to the configured reporter, if any ([`report::report`]). A
/// failed report is logged and changes nothing else.
async fn report_internal_error(platform: &Platform, chain: &str, request_id: &str, route: &str) {
    let event = ErrorEvent {
        message: chain,
        source: Source::Request(request_id),
        function: &platform.config.function_name,
        route,
        stage: &platform.config.stage,
    };
    report::report(platform, &event).await;
}

/// By the declared length, or by the buffered body's exact size (Lambda bodies are buffered).
fn body_exceeds(request: &Request, limit: usize) -> bool {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let buffered = request.body().size_hint().lower();
    declared.unwrap_or(0).max(buffered) > limit as u64
}

/// Every error leaves as problem+json carrying the request id: problems made by our handlers are
/// re-rendered with it; bodiless errors from routing (404, 405) or layers become problems, and so
/// do axum's plain-text rejections (a path that does not parse, say). An error response with a
/// JSON body of its own (readiness's 503 report) is left alone.
async fn finish_problem(response: &mut Response, request_id: &str) {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if response.body().size_hint().exact() == Some(0) => Problem::for_status(status),
        None if is_text => {
            let body = std::mem::take(response.body_mut());
            let text = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text).into_owned();
            let mut problem = Problem::for_status(status);
            if status.is_server_error() {
                tracing::error!(error = %text, "request failed");
                response.extensions_mut().insert(InternalError(text));
            } else {
                problem.detail = text;
            }
            problem
        }
        None => return,
    };
    *response.body_mut() = Body::from(problem.to_json(Some(request_id)).to_string());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    headers.remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_address_is_an_ip_and_a_port() {
        let ip = |s: &str| parse_viewer_address(s).map(|ip| ip.to_string());
        assert_eq!(ip("198.51.100.10:46532").as_deref(), Some("198.51.100.10"));
        assert_eq!(ip("2001:db8::9:5100").as_deref(), Some("2001:db8::9"));
        assert_eq!(ip("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        for bad in [
            "198.51.100.10",
            "198.51.100.10:",
            "host:80",
            ":80",
            "1.2.3.4:99999",
            "",
        ] {
            assert_eq!(ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(is_valid_request_id("c6af9ac6-7b61-11e6-9a41-93e8deadbeef"));
        assert!(is_valid_request_id("Root=1-abc:2"));
        assert!(is_valid_request_id("JSfpaiXrIAMEa3w="));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("evil\nheader"));
        assert!(!is_valid_request_id("<script>"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
    }
}
