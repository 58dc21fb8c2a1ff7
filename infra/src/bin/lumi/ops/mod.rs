//! Operations commands, one module per concern. Each runs against the AWS account of the
//! default credentials, or the local stack when `AWS_ENDPOINT_URL` is set.

pub mod backup;
pub mod images;
pub mod queues;
pub mod schema;
pub mod secrets;
pub mod sessions;
pub mod settings;
pub mod users;

use lumi_shared::store::Db;

pub async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

pub async fn db() -> Db {
    Db::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(1),
    )
}

/// Who an operator command is audited as: `operator:<login>`.
pub fn operator() -> String {
    format!(
        "operator:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}
