//! Traces (`TRACING_ENABLED=1`): the spans the functions export over OTLP/HTTP, as the collector
//! of the AWS Distro for OpenTelemetry layer receives them (here the harness's receiver,
//! decoding them with the OpenTelemetry proto types). A checkout is one server span with a
//! client span per DynamoDB call under it, in the caller's trace; the refund email a refund
//! queues is sent in a consumer span that is a child of that refund's request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_shared::telemetry::trace;
use lumi_tests::{
    TestApp,
    otlp::{ReceivedSpan, Receiver},
    traces, unique_prefix,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The request span of the request that answered with `request_id`.
async fn request_span(traces: &Receiver, request_id: &str) -> ReceivedSpan {
    traces
        .wait_for(&format!("request span of {request_id}"), |spans| {
            spans
                .iter()
                .find(|s| s.attribute("request_id").as_deref() == Some(request_id))
                .cloned()
        })
        .await
}

/// The spans whose parent is `parent`, once one of them is named `name`.
async fn children_with(traces: &Receiver, parent: &ReceivedSpan, name: &str) -> Vec<ReceivedSpan> {
    traces
        .wait_for(&format!("{name} under {}", parent.name()), |spans| {
            let children: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|s| s.parent_id() == parent.span_id())
                .cloned()
                .collect();
            children
                .iter()
                .any(|s| s.name() == name)
                .then_some(children)
        })
        .await
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_checkout_continues_the_callers_trace_with_a_client_span_per_dynamodb_call() {
    let traces = traces();
    let app = TestApp::spawn().await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1250, 5)]).await;
    let token = app.customer_token().await;
    assert_eq!(
        app.add_to_cart_response(&token, &sku, 2).await.status(),
        200
    );

    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let placed = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", unique_prefix())
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let checkout_id = request_id(&placed);
    // What the Lambda path does after every invocation.
    trace::flush().await;

    let request = request_span(traces, &checkout_id).await;
    assert_eq!(request.name(), "POST /api/v1/orders");
    assert_eq!(request.kind(), SpanKind::Server);
    assert_eq!(request.trace_id(), trace_id);
    assert_eq!(request.parent_id(), caller_span);
    assert_eq!(request.attribute("http.route").unwrap(), "/api/v1/orders");
    assert_eq!(request.attribute("http.request.method").unwrap(), "POST");
    assert_eq!(
        request.attribute("http.response.status_code").unwrap(),
        "201"
    );
    assert!(!request.is_error());

    let children = children_with(traces, &request, "DynamoDB.TransactWriteItems").await;
    let app_table = app.resource("AppTable");
    let dynamodb: Vec<&ReceivedSpan> = children
        .iter()
        .filter(|s| s.name().starts_with("DynamoDB."))
        .collect();
    assert!(dynamodb.len() >= 2, "{children:#?}");
    for call in &dynamodb {
        assert_eq!(call.trace_id(), trace_id);
        assert_eq!(call.kind(), SpanKind::Client);
        assert_eq!(call.attribute("rpc.system").unwrap(), "aws-api");
        assert_eq!(call.attribute("rpc.service").unwrap(), "DynamoDB");
        assert_eq!(
            format!("DynamoDB.{}", call.attribute("rpc.method").unwrap()),
            call.name()
        );
        assert!(call.attribute("aws.dynamodb.table_names").is_some());
        assert!(call.span.end_time_unix_nano >= call.span.start_time_unix_nano);
    }
    assert!(dynamodb.iter().any(|call| {
        call.name() == "DynamoDB.TransactWriteItems"
            && call.attribute("aws.dynamodb.table_names").as_deref() == Some(app_table.as_str())
    }));
    // Only Lumi's spans: the request and its calls, none of the SDK's own spans under them.
    let in_trace: Vec<ReceivedSpan> = traces
        .spans()
        .into_iter()
        .filter(|s| s.trace_id() == trace_id)
        .collect();
    assert!(
        in_trace.iter().all(|s| s.span_id() == request.span_id()
            || (s.parent_id() == request.span_id() && s.attribute("sdk_invocation_id").is_none())),
        "{in_trace:#?}"
    );

    // X-Ray's header names the trace too (Root and Parent).
    let (epoch, unique, parent) = (random_hex(4), random_hex(12), random_hex(8));
    let cart = app
        .http
        .get(app.url("/api/v1/cart"))
        .bearer_auth(&token)
        .header(
            "x-amzn-trace-id",
            format!("Root=1-{epoch}-{unique};Parent={parent};Sampled=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cart.status(), 200);
    let cart_id = request_id(&cart);
    trace::flush().await;
    let request = request_span(traces, &cart_id).await;
    assert_eq!(request.trace_id(), format!("{epoch}{unique}"));
    assert_eq!(request.parent_id(), parent);
    assert_eq!(request.attribute("http.route").unwrap(), "/api/v1/cart");
}

#[tokio::test]
async fn the_refund_email_is_sent_in_the_trace_of_the_refund_that_queued_it() {
    let traces = traces();
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1250, 5)]).await;
    let token = app.customer_token().await;
    let order = app.place_order_json(&token, &[(&sku, 2)]).await;
    let reference = order["reference"].as_str().unwrap();
    app.admin_pay(&admin, &order).await;
    let refunded = app
        .admin_refund(&admin, reference, "r1", &[(1, 2, "cancel")], "wrong glaze")
        .await;
    assert_eq!(refunded.status(), 201);
    let refund_id = request_id(&refunded);
    let polled = app.poll_refund_emails(&app.refund_worker(&[])).await;
    assert_eq!((polled.received, polled.failed), (1, 0));
    trace::flush().await;

    let refund = request_span(traces, &refund_id).await;
    assert_eq!(
        refund.parent_id(),
        "",
        "a request without trace headers starts a trace"
    );
    // The message is queued within the refund's request.
    let queued = children_with(traces, &refund, "SQS.SendMessage").await;
    let send = queued
        .iter()
        .find(|s| s.name() == "SQS.SendMessage")
        .unwrap();
    assert_eq!(send.attribute("rpc.service").unwrap(), "SQS");
    assert!(!send.is_error());

    // The worker's span for the record is a child of the request that queued it.
    let message = traces
        .wait_for("the refund email's consumer span", |spans| {
            spans
                .iter()
                .find(|s| s.kind() == SpanKind::Consumer && s.trace_id() == refund.trace_id())
                .cloned()
        })
        .await;
    assert_eq!(message.parent_id(), refund.span_id());
    assert_eq!(message.attribute("messaging.system").unwrap(), "aws_sqs");
    assert!(message.attribute("messaging.message.id").is_some());
    assert!(!message.is_error());
    // And the worker's AWS calls (the delivery claim, SES) are its children.
    let calls = children_with(traces, &message, "SESv2.SendEmail").await;
    assert!(
        calls
            .iter()
            .all(|call| call.trace_id() == refund.trace_id() && call.kind() == SpanKind::Client)
    );
    assert!(
        calls
            .iter()
            .any(|call| call.name().starts_with("DynamoDB.")),
        "{calls:#?}"
    );
}
