//! The shared store and secret cache against real DynamoDB and Secrets Manager calls (moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lumi_shared::{
    Config, Platform,
    store::{Db, StoreError, key},
    telemetry::{CapturedLines, log::JsonLogLayer},
};
use lumi_tests::{bootstrap_stack, hanging_endpoint, shared_moto};
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    pk: String,
    sk: String,
    name: String,
    price_minor: i64,
    tags: Vec<String>,
}

async fn platform(endpoint_override: Option<&str>) -> (Arc<Platform>, String) {
    let stack = bootstrap_stack(shared_moto()).await;
    let mut env = stack.function_env("health").unwrap();
    if let Some(endpoint) = endpoint_override {
        env.set("AWS_ENDPOINT_URL", endpoint);
        env.set("QUERY_TIMEOUT_MS", "300");
    }
    let table = stack.names.refs["AppTable"].clone();
    (
        Platform::new(Config::from_env("health", &env).unwrap()).await,
        table,
    )
}

#[tokio::test]
async fn typed_items_round_trip_and_put_new_refuses_a_second_write() {
    let (platform, table) = platform(None).await;
    let product = Product {
        pk: "PRODUCT#p-1".into(),
        sk: "PRODUCT".into(),
        name: "Yaki onigiri".into(),
        price_minor: 450,
        tags: vec!["grill".into()],
    };
    platform.db.put_new(&table, &product).await.unwrap();
    let read: Option<Product> = platform
        .db
        .get(&table, key("PRODUCT#p-1", "PRODUCT"))
        .await
        .unwrap();
    assert_eq!(read, Some(product.clone()));
    let again = platform.db.put_new(&table, &product).await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed { .. })),
        "{again:?}"
    );
    let missing: Option<Product> = platform
        .db
        .get(&table, key("PRODUCT#none", "PRODUCT"))
        .await
        .unwrap();
    assert_eq!(missing, None);
}

#[tokio::test]
async fn a_hung_database_times_out_at_query_timeout() {
    let hung = hanging_endpoint().await;
    let (platform, table) = platform(Some(&hung)).await;
    let started = Instant::now();
    let result: Result<Option<Product>, _> = platform.db.get(&table, key("a", "b")).await;
    assert!(
        matches!(result, Err(StoreError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let api: lumi_shared::ApiError = result.unwrap_err().into();
    assert_eq!(api.status(), 503);
}

#[tokio::test(flavor = "current_thread")]
async fn slow_calls_are_logged_as_warnings() {
    let (platform, table) = platform(None).await;
    let lines = CapturedLines::default();
    let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(
        "test",
        false,
        Arc::new(lines.clone()),
    ));
    let _guard = tracing::subscriber::set_default(subscriber);
    // Every call is slower than a threshold of one nanosecond.
    let db = Db::new(
        platform.db.client().clone(),
        Duration::from_secs(5),
        Duration::from_nanos(1),
    );
    let _: Option<Product> = db.get(&table, key("a", "b")).await.unwrap();
    let warning = lines
        .json()
        .into_iter()
        .find(|l| l["message"] == "slow DynamoDB call")
        .unwrap();
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["op"], "GetItem");
    assert_eq!(warning["table"], table.as_str());
}

#[tokio::test]
async fn the_secret_is_cached_for_its_ttl_and_refresh_reads_it_again() {
    let (platform, _) = platform(None).await;
    let first = platform.secrets.get().await.unwrap();
    let rotated = lumi_infra::stack::complete_secret_value(None).unwrap();
    let client = aws_sdk_secretsmanager::Client::new(
        &lumi_infra::stack::local_sdk_config(shared_moto()).await,
    );
    client
        .put_secret_value()
        .secret_id(platform.secrets.secret_id())
        .secret_string(&rotated)
        .send()
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    let cached = platform.secrets.get().await.unwrap();
    assert_eq!(
        cached.cookie_secret.expose_secret(),
        first.cookie_secret.expose_secret()
    );
    let fresh = platform.secrets.refresh().await.unwrap();
    assert_ne!(
        fresh.cookie_secret.expose_secret(),
        first.cookie_secret.expose_secret()
    );
    assert!(rotated.contains(fresh.cookie_secret.expose_secret()));
}
