//! AWS SDK settings and clients, built so that a cold start does no AWS work it does not need.
//!
//! `aws_config::load` and `Client::new` each build the SDK's HTTPS client, which reads the
//! system's trust store (hundreds of files on some hosts): milliseconds a liveness probe should
//! not pay. So the settings are assembled directly ([`sdk_config`]), and each client is built on
//! its first use ([`LazyClient`]); credentials come from the environment, where Lambda puts them.

use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};

use crate::config::Config;

/// The SDK settings: the region from config; locally the moto endpoint and placeholder
/// credentials (moto accepts any), in Lambda the credentials of the environment.
pub fn sdk_config(config: &Config) -> SdkConfig {
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(1))
                .operation_timeout(config.query_timeout)
                .build(),
        );
    builder = match &config.aws_endpoint_url {
        Some(endpoint) => {
            builder
                .endpoint_url(endpoint)
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "lumi-local",
                    "lumi-local",
                    None,
                    None,
                    "local",
                )))
        }
        None => builder.credentials_provider(SharedCredentialsProvider::new(
            aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new(),
        )),
    };
    builder.build()
}

/// An S3 client for these settings: path-style addressing against a local endpoint (moto serves
/// buckets by path, not by host name), virtual-hosted in AWS. For [`LazyClient::new`].
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build(),
    )
}

/// An SDK client built on its first use, then shared by every clone.
#[derive(Clone)]
pub struct LazyClient<C> {
    cell: Arc<OnceLock<C>>,
    sdk: Option<SdkConfig>,
    make: fn(&SdkConfig) -> C,
}

impl<C> LazyClient<C> {
    pub fn new(sdk: &SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            cell: Arc::new(OnceLock::new()),
            sdk: Some(sdk.clone()),
            make,
        }
    }

    /// A client that already exists (tools and tests).
    pub fn ready(client: C, make: fn(&SdkConfig) -> C) -> Self {
        Self {
            cell: Arc::new(OnceLock::from(client)),
            sdk: None,
            make,
        }
    }

    pub fn get(&self) -> &C {
        self.cell.get_or_init(|| {
            let sdk = self
                .sdk
                .clone()
                .unwrap_or_else(|| SdkConfig::builder().build());
            (self.make)(&sdk)
        })
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.cell.get().is_some())
            .finish()
    }
}
