//! The refund-email worker against the real local queue, SES and table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lumi_commerce::outbox::RefundEmail;
use lumi_shared::bootstrap::SqsHandler;
use lumi_tests::{TestApp, assert_problem, unique_prefix};
use reqwest::Method;
use serde_json::Value;

fn refund(id: &str, amount_minor: i64) -> RefundEmail {
    RefundEmail {
        schema: 1,
        kind: "order_refund".into(),
        idempotency_id: id.into(),
        order_reference: format!("LUMI-{}", &id[..4.min(id.len())].to_uppercase()),
        payment_id: format!("pay_{id}"),
        amount_minor,
        currency: "EUR".into(),
        recipient: format!("{id}@example.com"),
        locale: "en".into(),
        reason: "damaged".into(),
    }
}

fn record(message_id: &str, body: &str, receives: u32) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.into());
    record.body = Some(body.into());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    record
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

async fn sent_to(app: &TestApp, recipient: &str) -> Vec<Value> {
    app.sent_emails()
        .await
        .into_iter()
        .filter(|e| e["destinations"].to_string().contains(recipient))
        .collect()
}

#[tokio::test]
async fn nine_good_messages_and_one_poison_nine_sent_one_failure() {
    let app = TestApp::spawn().await;
    let worker = app.refund_worker(&[]);
    let prefix = unique_prefix();
    let mut records: Vec<SqsMessage> = (0..9)
        .map(|i| {
            record(
                &format!("m{i}"),
                &serde_json::to_string(&refund(&format!("{prefix}-{i}"), 100 + i)).unwrap(),
                1,
            )
        })
        .collect();
    records.insert(
        4,
        record(
            "poison",
            r#"{"schema":1,"kind":"order_refund","recipient":"#,
            1,
        ),
    );
    let response = worker.handle(batch(records)).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["poison"]);
    for i in 0..9 {
        assert_eq!(
            sent_to(&app, &format!("{prefix}-{i}@example.com"))
                .await
                .len(),
            1,
            "{i}"
        );
    }
    let unreadable =
        lumi_commerce::deliveries::get(&app.db(), &app.resource("AppTable"), "unreadable:poison")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(unreadable.status, "failed");
}

#[tokio::test]
async fn the_same_message_twice_sends_one_email() {
    let app = TestApp::spawn().await;
    let worker = app.refund_worker(&[]);
    let id = unique_prefix();
    let body = serde_json::to_string(&refund(&id, 2100)).unwrap();
    for receives in 1..=2 {
        let response = worker
            .handle(batch(vec![record("m", &body, receives)]))
            .await;
        assert!(response.batch_item_failures.is_empty());
    }
    let emails = sent_to(&app, &format!("{id}@example.com")).await;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0]["body"].to_string().contains("21.00 EUR"),
        "{}",
        emails[0]
    );
    let delivery = lumi_commerce::deliveries::get(&app.db(), &app.resource("AppTable"), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((delivery.status.as_str(), delivery.attempts), ("sent", 1));
}

#[tokio::test]
async fn a_failing_ses_is_retried_then_dead_lettered_listed_for_the_admin_and_redriven() {
    let app = TestApp::spawn().await;
    // Every receive at once: the test stands in for the visibility timeout's wait.
    let sqs = aws_sdk_sqs::Client::new(&app.stack.sdk_config);
    sqs.set_queue_attributes()
        .queue_url(app.resource("RefundEmailQueue"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap();
    let broken = app.refund_worker(&[("REFUND_EMAIL_FROM", "unverified@nowhere.example")]);
    let id = unique_prefix();
    sqs.send_message()
        .queue_url(app.resource("RefundEmailQueue"))
        .message_body(serde_json::to_string(&refund(&id, 990)).unwrap())
        .send()
        .await
        .unwrap();
    let deliveries = async |status: &'static str| {
        lumi_commerce::deliveries::get(&app.db(), &app.resource("AppTable"), &id)
            .await
            .unwrap()
            .unwrap()
            .status
            == status
    };
    for receive in 1..=5 {
        let polled = app.poll_refund_emails(&broken).await;
        assert_eq!(
            (polled.received, polled.failed),
            (1, 1),
            "receive {receive}"
        );
        assert!(
            deliveries(if receive < 5 { "retrying" } else { "failed" }).await,
            "receive {receive}"
        );
    }
    // The sixth receive finds it in the dead-letter queue instead.
    assert_eq!(app.poll_refund_emails(&broken).await.received, 0);
    let dead_letters = app.resource("RefundEmailDeadLetterQueue");
    let dead = sqs
        .receive_message()
        .queue_url(&dead_letters)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    // Looked at, and put back for the redrive.
    sqs.change_message_visibility()
        .queue_url(&dead_letters)
        .receipt_handle(dead[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();

    let admin = app.signed_in_admin().await;
    let listed: Value = app
        .with_bearer(
            Method::GET,
            "/api/v1/admin/email-deliveries?status=failed",
            admin["access_token"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str() && d["attempts"] == 5)
    );
    let customer = app.quick_customer().await;
    assert_problem(
        app.with_bearer(
            Method::GET,
            "/api/v1/admin/email-deliveries",
            customer["access_token"].as_str().unwrap(),
        )
        .await,
        403,
    )
    .await;

    // The cause fixed, the documented redrive sends it.
    let moved = lumi_infra::poller::redrive(
        &sqs,
        &app.resource("RefundEmailDeadLetterQueue"),
        &app.resource("RefundEmailQueue"),
    )
    .await
    .unwrap();
    assert_eq!(moved, 1);
    let fixed = app.refund_worker(&[]);
    assert_eq!(app.poll_refund_emails(&fixed).await.failed, 0);
    assert!(deliveries("sent").await);
    assert_eq!(sent_to(&app, &format!("{id}@example.com")).await.len(), 1);
}

#[tokio::test]
async fn a_refund_made_through_the_admin_api_arrives_as_an_email_with_the_right_amount() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1250, 5)]).await;
    let customer = app.quick_customer().await;
    let token = customer["access_token"].as_str().unwrap();
    let order = app.place_order_json(token, &[(&sku, 2)]).await;
    let reference = order["reference"].as_str().unwrap();
    app.admin_pay(&admin, &order).await;
    let refunded = app
        .admin_refund(&admin, reference, "r1", &[(1, 2, "cancel")], "wrong glaze")
        .await;
    assert_eq!(refunded.status(), 201);
    let refunded: Value = refunded.json().await.unwrap();
    assert_eq!(refunded["refund"]["amount_minor"], 2500);
    let polled = app.poll_refund_emails(&app.refund_worker(&[])).await;
    assert_eq!((polled.received, polled.failed), (1, 0));
    let emails = sent_to(&app, customer["user"]["email"].as_str().unwrap()).await;
    assert_eq!(emails.len(), 1);
    let email = emails[0].to_string();
    assert!(
        email.contains("25.00 EUR") && email.contains(reference) && email.contains("wrong glaze"),
        "{email}"
    );
    let delivery = lumi_commerce::deliveries::get(
        &app.db(),
        &app.resource("AppTable"),
        &format!("refund:{}", refunded["refund"]["id"].as_str().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(delivery.status, "sent");
}
