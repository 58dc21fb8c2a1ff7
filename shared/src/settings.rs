//! Runtime settings: the runbooks' `SystemSettings`, one item of the application table
//! (`SETTINGS`/`SYSTEM`), read through a short per-container cache so an edit takes effect
//! everywhere within `SETTINGS_CACHE_TTL_SECONDS` (default 30), with no redeploy.
//!
//! A missing item means the defaults below (the runbooks' budgets). A store that cannot be read
//! leaves the last value in force, or the defaults on a cold container: settings never take a
//! request down. Keys this version does not know are kept as they are (later features add theirs).

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    cache::TtlCache,
    store::{Db, StoreError, key},
};

/// What a scope does when the rate-limit store cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit, log a warning, count `lumi_rate_limit_store_errors_total`.
    Open,
    /// Refuse with 503.
    Closed,
}

/// One scope's budget: `limit` requests per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub limit: u32,
    pub window_seconds: u32,
    pub fail: FailMode,
}

/// Every scope's budget (defaults from the runbooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    /// Every route, per client IP, before authentication.
    pub ip: Budget,
    /// `/api/v1/orders`, `/api/v1/cart`, checkout: per user, per IP when anonymous.
    pub customer: Budget,
    /// `/api/v1/admin/*`: one budget shared by all admin tooling.
    pub admin: Budget,
    /// Login and register: per account and per IP.
    pub auth: Budget,
    /// Every authenticated request: per user per clock hour (kept as usage records).
    pub quota: Budget,
    /// Premium users' quota is multiplied by this.
    pub premium_multiplier: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        let budget = |limit, window_seconds, fail| Budget {
            limit,
            window_seconds,
            fail,
        };
        Self {
            ip: budget(600, 300, FailMode::Open),
            customer: budget(60, 300, FailMode::Open),
            admin: budget(300, 300, FailMode::Open),
            auth: budget(10, 900, FailMode::Closed),
            quota: budget(1000, 3600, FailMode::Open),
            premium_multiplier: 2,
        }
    }
}

/// Feature flags (the runbook's `featureFlags`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureFlags {
    /// `featureFlags.orderPayments`: online payment providers; off means every order is paid
    /// manually (on pickup or by invoice).
    #[serde(rename = "orderPayments")]
    pub order_payments: bool,
    /// `featureFlags.orderPaymentsRolloutPercent`: with `orderPayments` on, the share of customers
    /// (a stable bucket per user) who get it; absent means everyone.
    #[serde(
        rename = "orderPaymentsRolloutPercent",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_payments_rollout_percent: Option<u8>,
}

impl FeatureFlags {
    /// Whether `user` gets online payments: the flag, then the user's stable bucket (0 to 99)
    /// against the rollout percentage.
    pub fn order_payments_for(&self, user: &str) -> bool {
        use sha2::Digest as _;
        if !self.order_payments {
            return false;
        }
        let Some(percent) = self.order_payments_rollout_percent else {
            return true;
        };
        let digest = sha2::Sha256::digest(user.as_bytes());
        let bucket = u16::from_be_bytes([digest[0], digest[1]]) % 100;
        bucket < u16::from(percent)
    }
}

/// Default output quality per format of the images function, 1 to 100 (the runbook's "reduce
/// quality factors via settings" when image processing is slow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageQuality {
    pub jpeg: u8,
    pub webp: u8,
}

impl Default for ImageQuality {
    fn default() -> Self {
        Self { jpeg: 80, webp: 80 }
    }
}

/// The settings document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemSettings {
    #[serde(default)]
    pub rate_limits: RateLimits,
    #[serde(default, rename = "featureFlags")]
    pub feature_flags: FeatureFlags,
    #[serde(default, rename = "imageQuality")]
    pub image_quality: ImageQuality,
    /// `slowQueryThresholdMs`: overrides `DATABASE_SLOW_QUERY_THRESHOLD_MS` at run time.
    #[serde(
        default,
        rename = "slowQueryThresholdMs",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_query_threshold_ms: Option<u64>,
    /// `errorReportingDsn`: the Sentry DSN internal errors go to; overrides `ERROR_REPORTING_DSN`,
    /// and the empty string turns reporting off.
    #[serde(
        default,
        rename = "errorReportingDsn",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_reporting_dsn: Option<String>,
    /// Keys of later features, kept untouched.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SettingsItem {
    pk: String,
    sk: String,
    version: u64,
    /// JSON text: the document's shape is ours to evolve without DynamoDB type juggling.
    document: String,
}

pub fn settings_key() -> crate::store::Item {
    key("SETTINGS", "SYSTEM")
}

/// The container's view of the settings.
pub struct SettingsStore {
    db: Db,
    table: String,
    timeout: Duration,
    cache: TtlCache<SystemSettings>,
}

impl SettingsStore {
    pub fn new(db: Db, table: String, ttl: Duration, timeout: Duration) -> Self {
        Self {
            db,
            table,
            timeout,
            cache: TtlCache::new(ttl),
        }
    }

    /// The settings in force.
    pub async fn get(&self) -> Arc<SystemSettings> {
        let fetched = self.cache.get_with(|| self.fetch()).await;
        let settings = fetched.unwrap_or_else(|error| {
            tracing::warn!(%error, "settings unreadable; using the defaults");
            Arc::new(SystemSettings::default())
        });
        // The slow-call threshold applies to every DynamoDB call of this container.
        self.db
            .set_slow_threshold(settings.slow_query_threshold_ms.map(Duration::from_millis));
        settings
    }

    async fn fetch(&self) -> Result<SystemSettings, StoreError> {
        let read = self
            .db
            .get_consistent::<SettingsItem>(&self.table, settings_key());
        let item = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| StoreError::Timeout {
                op: "GetItem",
                table: self.table.clone(),
                after: self.timeout,
            })??;
        match item {
            None => Ok(SystemSettings::default()),
            Some(item) => serde_json::from_str(&item.document).map_err(|e| StoreError::Service {
                op: "GetItem",
                table: self.table.clone(),
                code: "InvalidSettings".into(),
                message: e.to_string(),
            }),
        }
    }

    /// The settings as stored now and their version (0: never written), bypassing the cache.
    pub async fn read_versioned(&self) -> Result<(SystemSettings, u64), StoreError> {
        match self
            .db
            .get_consistent::<SettingsItem>(&self.table, settings_key())
            .await?
        {
            None => Ok((SystemSettings::default(), 0)),
            Some(item) => {
                let settings =
                    serde_json::from_str(&item.document).map_err(|e| StoreError::Service {
                        op: "GetItem",
                        table: self.table.clone(),
                        code: "InvalidSettings".into(),
                        message: e.to_string(),
                    })?;
                Ok((settings, item.version))
            }
        }
    }

    /// Writes the settings only if they are still at `expected` (optimistic concurrency):
    /// `ConditionFailed` otherwise. Returns the new version.
    pub async fn put_if_version(
        &self,
        settings: &SystemSettings,
        expected: u64,
    ) -> Result<u64, StoreError> {
        let document = serde_json::to_string(settings).map_err(|e| StoreError::Service {
            op: "PutItem",
            table: self.table.clone(),
            code: "InvalidSettings".into(),
            message: e.to_string(),
        })?;
        let item = SettingsItem {
            pk: "SETTINGS".into(),
            sk: "SYSTEM".into(),
            version: expected + 1,
            document,
        };
        let request = self
            .db
            .client()
            .put_item()
            .table_name(&self.table)
            .set_item(Some(crate::store::to_item(&self.table, &item)?))
            .condition_expression("attribute_not_exists(pk) OR version = :expected")
            .expression_attribute_values(
                ":expected",
                aws_sdk_dynamodb::types::AttributeValue::N(expected.to_string()),
            )
            .send();
        self.db.call("PutItem", &self.table, request).await?;
        self.cache.invalidate();
        Ok(expected + 1)
    }

    /// Writes the settings (the admin API validates first; tests and tools use this directly).
    pub async fn put(&self, settings: &SystemSettings, version: u64) -> Result<(), StoreError> {
        let document = serde_json::to_string(settings).map_err(|e| StoreError::Service {
            op: "PutItem",
            table: self.table.clone(),
            code: "InvalidSettings".into(),
            message: e.to_string(),
        })?;
        let item = SettingsItem {
            pk: "SETTINGS".into(),
            sk: "SYSTEM".into(),
            version,
            document,
        };
        self.db.put(&self.table, &item).await?;
        self.cache.invalidate();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_runbooks_budgets_and_unknown_keys_survive() {
        let limits = RateLimits::default();
        assert_eq!(
            (limits.customer.limit, limits.customer.window_seconds),
            (60, 300)
        );
        assert_eq!(
            (limits.admin.limit, limits.admin.window_seconds),
            (300, 300)
        );
        assert_eq!(limits.auth.fail, FailMode::Closed);
        let doc = r#"{"rate_limits":{"customer":{"limit":5,"window_seconds":60,"fail":"open"}},"featureFlags":{"orderPayments":true},"siteContent":{"banner":"hi"}}"#;
        let settings: SystemSettings = serde_json::from_str(doc).unwrap();
        assert_eq!(settings.rate_limits.customer.limit, 5);
        assert_eq!(
            settings.rate_limits.admin.limit, 300,
            "unnamed scopes keep their defaults"
        );
        assert!(settings.feature_flags.order_payments);
        let back = serde_json::to_value(&settings).unwrap();
        assert_eq!(back["featureFlags"]["orderPayments"], true);
        assert_eq!(back["siteContent"]["banner"], "hi");
    }

    #[test]
    fn the_rollout_percentage_picks_a_stable_share_of_users() {
        let flags = |percent| FeatureFlags {
            order_payments: true,
            order_payments_rollout_percent: percent,
        };
        let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        let share = |f: &FeatureFlags| users.iter().filter(|u| f.order_payments_for(u)).count();
        assert_eq!(share(&flags(None)), 1000);
        assert_eq!(share(&flags(Some(0))), 0);
        assert_eq!(share(&flags(Some(100))), 1000);
        let half = share(&flags(Some(50)));
        assert!((400..600).contains(&half), "{half}");
        assert_eq!(
            flags(Some(50)).order_payments_for("user-7"),
            flags(Some(50)).order_payments_for("user-7")
        );
        let off = FeatureFlags {
            order_payments: false,
            order_payments_rollout_percent: Some(100),
        };
        assert!(!off.order_payments_for("user-1"));
    }
}
