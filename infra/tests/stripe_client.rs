//! The Stripe client's transport against a scripted loopback server: what every request
//! carries (key, version, idempotency key, form body), which answers are retried, that every
//! retry is the same request, timeouts, and when it gives up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use lumi_commerce::stripe::{
    API_VERSION, CreatePaymentIntent, PaymentIntentStatus, PaymentMethods, StripeClient,
    StripeConfig, StripeError,
};

/// One scripted answer: status, extra headers, body, and how long to wait before answering.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    delay: Duration,
}

fn answer(status: u16, body: &'static str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    }
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
}

const INTENT: &str = r#"{"id":"pi_123","object":"payment_intent","amount":4599,"amount_received":0,
  "currency":"eur","status":"requires_payment_method","client_secret":"pi_123_secret_abc",
  "latest_charge":null,"metadata":{"order_reference":"LUM-1","payment_id":"pay_1"},"created":1}"#;

async fn serve(answers: Vec<Answer>) -> (String, Arc<Script>) {
    async fn handle(
        State(script): State<Arc<Script>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        script.seen.lock().unwrap().push(Seen {
            method,
            path: uri.to_string(),
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        });
        let next = script.answers.lock().unwrap().pop_front();
        let Some(next) = next else {
            return (StatusCode::IM_A_TEAPOT, "script exhausted").into_response();
        };
        if !next.delay.is_zero() {
            // The client gives up on this attempt first (its timeout is shorter).
            tokio::time::sleep(next.delay).await;
        }
        let mut response = (StatusCode::from_u16(next.status).unwrap(), next.body).into_response();
        for (name, value) in next.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
    let script = Arc::new(Script {
        answers: Mutex::new(answers.into()),
        seen: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, script)
}

fn client(base: &str) -> StripeClient {
    let mut config = StripeConfig::new(base, "sk_test_scripted_key");
    config.attempt_timeout = Duration::from_millis(300);
    config.deadline = Duration::from_secs(5);
    config.initial_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(40);
    StripeClient::new(config).unwrap()
}

fn params() -> CreatePaymentIntent {
    CreatePaymentIntent::for_order("LUM-1", "pay_1", 4599, "EUR", PaymentMethods::Card)
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_create_is_retried_on_5xx_and_429_as_the_very_same_request() {
    let (base, script) = serve(vec![
        answer(500, r#"{"error":{"type":"api_error","message":"boom"}}"#),
        Answer {
            headers: vec![("retry-after", "0")],
            ..answer(
                429,
                r#"{"error":{"type":"invalid_request_error","code":"rate_limit"}}"#,
            )
        },
        answer(200, INTENT),
    ])
    .await;
    let intent = client(&base)
        .create_payment_intent(&params(), "lumi-pi-LUM-1-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_123");
    assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);

    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/v1/payment_intents");
        assert_eq!(header(request, "idempotency-key"), Some("lumi-pi-LUM-1-1"));
        assert_eq!(
            header(request, "authorization"),
            Some("Bearer sk_test_scripted_key")
        );
        assert_eq!(header(request, "stripe-version"), Some(API_VERSION));
        assert_eq!(
            header(request, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(request.body, seen[0].body);
    }
    assert_eq!(
        seen[0].body,
        "amount=4599&currency=eur&payment_method_types%5B%5D=card\
         &metadata%5Border_reference%5D=LUM-1&metadata%5Bpayment_id%5D=pay_1"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried_with_the_same_key() {
    let (base, script) = serve(vec![
        Answer {
            delay: Duration::from_secs(3),
            ..answer(200, INTENT)
        },
        answer(200, INTENT),
    ])
    .await;
    let started = std::time::Instant::now();
    let intent = client(&base)
        .create_payment_intent(&params(), "lumi-pi-LUM-1-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_123");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        header(&seen[1], "idempotency-key"),
        header(&seen[0], "idempotency-key")
    );
}

#[tokio::test]
async fn refusals_are_not_retried_and_keep_stripe_s_words() {
    let (base, script) = serve(vec![
        Answer {
            headers: vec![("request-id", "req_abc")],
            ..answer(
                400,
                r#"{"error":{"type":"invalid_request_error","code":"parameter_unknown","param":"foo","message":"Received unknown parameter: foo"}}"#,
            )
        },
        answer(
            402,
            r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#,
        ),
    ])
    .await;
    let client = client(&base);
    let Err(StripeError::InvalidRequest { status, error }) =
        client.create_payment_intent(&params(), "k1").await
    else {
        panic!()
    };
    assert_eq!(status.as_u16(), 400);
    assert_eq!(error.code.as_deref(), Some("parameter_unknown"));
    assert_eq!(error.param.as_deref(), Some("foo"));
    assert_eq!(error.request_id.as_deref(), Some("req_abc"));
    let Err(StripeError::Card { error, .. }) = client.create_payment_intent(&params(), "k2").await
    else {
        panic!()
    };
    assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(script.seen.lock().unwrap().len(), 2, "one request each");
}

#[tokio::test]
async fn stripe_unavailable_after_the_retries_is_unavailable_with_the_last_answer() {
    let (base, script) = serve(vec![answer(503, "upstream down"); 5]).await;
    let error = client(&base)
        .create_payment_intent(&params(), "k")
        .await
        .unwrap_err();
    let StripeError::Unavailable {
        attempts, status, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*attempts, status.map(|s| s.as_u16())), (3, Some(503)));
    assert_eq!(script.seen.lock().unwrap().len(), 3);
    assert!(!error.to_string().contains("scripted_key"), "{error}");
}

#[tokio::test]
async fn stripe_should_retry_false_stops_at_the_first_answer() {
    let (base, script) = serve(vec![
        Answer {
            headers: vec![("stripe-should-retry", "false")],
            ..answer(500, r#"{"error":{"type":"api_error"}}"#)
        },
        answer(200, INTENT),
    ])
    .await;
    let error = client(&base)
        .create_payment_intent(&params(), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(error, StripeError::Unavailable { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(script.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_post_without_a_key_gets_one_that_its_retries_share_and_a_get_has_none() {
    let (base, script) = serve(vec![
        answer(502, ""),
        answer(200, "{}"),
        answer(200, INTENT),
    ])
    .await;
    let client = client(&base);
    let _: serde_json::Value = client
        .post("/v1/anything", &lumi_commerce::stripe::Form::new(), None)
        .await
        .unwrap();
    client.retrieve_payment_intent("pi_123").await.unwrap();
    let seen = script.seen.lock().unwrap().clone();
    let key = header(&seen[0], "idempotency-key").unwrap();
    assert!(key.starts_with("lumi-"), "{key}");
    assert_eq!(header(&seen[1], "idempotency-key"), Some(key));
    assert_eq!(
        (seen[2].method.clone(), seen[2].path.as_str()),
        (Method::GET, "/v1/payment_intents/pi_123")
    );
    assert_eq!(header(&seen[2], "idempotency-key"), None);
    assert_eq!(header(&seen[2], "content-type"), None);
    assert_eq!(header(&seen[2], "stripe-version"), Some(API_VERSION));
}

#[tokio::test]
async fn unsafe_ids_never_reach_the_network() {
    let (base, script) = serve(Vec::new()).await;
    let client = client(&base);
    for id in ["", "pi_1/../../v1/charges", "pi_1?expand[]=x"] {
        assert!(matches!(
            client.retrieve_payment_intent(id).await,
            Err(StripeError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        client.create_payment_intent(&params(), "two words").await,
        Err(StripeError::InvalidArgument(_))
    ));
    assert!(script.seen.lock().unwrap().is_empty());
}
