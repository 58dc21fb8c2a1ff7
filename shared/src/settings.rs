//! Runtime settings: the runbooks' `SystemSettings`, one item of the application table
//! (`SETTINGS`/`SYSTEM`), read through a short per-container cache so an edit takes effect
//! everywhere within `SETTINGS_CACHE_TTL_SECONDS` (default 30), with no redeploy.
//!
//! A missing item means the defaults below (the runbooks' budgets). A store that cannot be read
//! leaves the last value in force, or the defaults on a cold container: settings never take a
//! request down. Keys this version does not know are kept as they are (later features add theirs).
//!
//! Sensitive settings (the error-reporting DSN, a credential) are stored sealed ([`sealed`]):
//! encrypted under the config secret's `config_encryption_key`, opened only where the value is
//! used. A [`Sensitive`] value that is not sealed cannot be serialized at all, so it cannot reach
//! the table, an audit event, a log line or a backup; one stored in plain text by an earlier
//! version is still read, and sealed by the next write or [`SettingsStore::reseal`].

pub mod sealed;

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use secrecy::{ExposeSecret as _, SecretString};

use crate::{
    cache::TtlCache,
    secrets::ConfigKeys,
    store::{Db, StoreError, key},
};

use self::sealed::{SealError, Sealed};

/// The name of the error-reporting DSN in the settings document (and in its sealing's
/// associated data).
pub const ERROR_REPORTING_DSN: &str = "errorReportingDsn";

/// A sensitive setting's value: sealed, or (read from an item an earlier version wrote) plain
/// text waiting to be sealed. Only the sealed form serializes.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Sensitive {
    Sealed(Sealed),
    Plain(String),
}

impl Serialize for Sensitive {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sealed(sealed) => sealed.serialize(serializer),
            Self::Plain(_) => Err(serde::ser::Error::custom(
                "a sensitive setting must be sealed before it is written anywhere",
            )),
        }
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sealed(sealed) => sealed.fmt(f),
            Self::Plain(_) => f.write_str("Plain([REDACTED])"),
        }
    }
}

impl Sensitive {
    /// The value of `setting`, opened with the configured keys.
    pub fn reveal(&self, keys: &ConfigKeys, setting: &str) -> Result<SecretString, SealError> {
        match self {
            Self::Sealed(sealed) => sealed::open(keys, setting, sealed),
            Self::Plain(text) => Ok(SecretString::from(text.clone())),
        }
    }

    pub fn seal(keys: &ConfigKeys, setting: &str, plaintext: &str) -> Result<Self, SealError> {
        sealed::seal(keys, setting, plaintext).map(Self::Sealed)
    }

    /// The key id it is sealed under; `None` for plain text.
    pub fn kid(&self) -> Option<&str> {
        match self {
            Self::Sealed(sealed) => Some(&sealed.kid),
            Self::Plain(_) => None,
        }
    }
}

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
    /// `errorReportingDsn`: the Sentry DSN internal errors go to (sealed: it carries the
    /// reporter's key); overrides `ERROR_REPORTING_DSN`, and the empty string turns reporting off.
    #[serde(
        default,
        rename = "errorReportingDsn",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_reporting_dsn: Option<Sensitive>,
    /// Keys of later features, kept untouched.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl SystemSettings {
    /// Every sensitive value sealed under the newest key: plain text an earlier version stored,
    /// and values sealed under an older key (the end of a key rotation). A value no configured
    /// key opens stays as it is (sealed, so nothing leaks; only setting it again helps), with a
    /// warning. Whether anything changed.
    pub fn seal_all(&mut self, keys: &ConfigKeys) -> Result<bool, SealError> {
        let newest = sealed::key_id(keys.newest());
        let mut changed = false;
        for (setting, value) in [(ERROR_REPORTING_DSN, &mut self.error_reporting_dsn)] {
            if let Some(value) = value
                && value.kid() != Some(newest.as_str())
            {
                let plaintext = match value.reveal(keys, setting) {
                    Ok(plaintext) => plaintext,
                    Err(error) => {
                        tracing::warn!(setting, %error, "setting unreadable; set it again");
                        continue;
                    }
                };
                *value = Sensitive::seal(keys, setting, plaintext.expose_secret())?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The document as people may see it (the admin API, audit events, the backup's
    /// configuration export): every sensitive value masked (`mask_dsn`), never sealed or plain.
    pub fn masked(&self, keys: &ConfigKeys) -> serde_json::Value {
        let mut shown = self.clone();
        let dsn = shown.error_reporting_dsn.take();
        let mut document = serde_json::to_value(&shown).unwrap_or_default();
        if let (Some(dsn), Some(map)) = (dsn, document.as_object_mut()) {
            let text = match dsn.reveal(keys, ERROR_REPORTING_DSN) {
                Ok(plain) => crate::telemetry::report::mask_dsn(plain.expose_secret()),
                Err(error) => format!("[unreadable: {error}]"),
            };
            map.insert(ERROR_REPORTING_DSN.into(), serde_json::Value::String(text));
        }
        document
    }
}

impl SystemSettings {
    /// Whether a sensitive value names a key `keys` do not hold.
    fn names_unknown_key(&self, keys: &ConfigKeys) -> bool {
        let known: Vec<String> = keys.all().iter().map(sealed::key_id).collect();
        [&self.error_reporting_dsn]
            .into_iter()
            .flatten()
            .filter_map(Sensitive::kid)
            .any(|kid| !known.iter().any(|k| k == kid))
    }
}

/// The config secret to open `settings` with: the cached one, or, when a value names a key it
/// does not hold (another container already sealed under a key put first since this one read
/// the secret), the secret read again, at most every 30 s.
pub async fn secrets_for(
    store: &crate::secrets::SecretStore,
    settings: &SystemSettings,
) -> Result<Arc<crate::secrets::AppSecrets>, crate::secrets::SecretsError> {
    let secrets = store.get().await?;
    if settings.names_unknown_key(&secrets.config_encryption_key) {
        return store.refresh_for_unknown_key().await;
    }
    Ok(secrets)
}

/// Why sensitive settings could not be sealed again.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a sensitive setting cannot be sealed: {0}")]
    Seal(#[from] SealError),
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
        self.write_if(settings, expected, expected + 1).await?;
        Ok(expected + 1)
    }

    /// Seals every sensitive value under the newest key if one is plain or under an older key,
    /// keeping the version (the values mean the same, so an admin's `If-Match` stays good).
    /// Whether it wrote; a concurrent edit wins (it sealed its values itself).
    pub async fn reseal(&self, keys: &ConfigKeys) -> Result<bool, ResealError> {
        let (mut settings, version) = self.read_versioned().await?;
        if version == 0 || !settings.seal_all(keys)? {
            return Ok(false);
        }
        match self.write_if(&settings, version, version).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    fn item(&self, settings: &SystemSettings, version: u64) -> Result<SettingsItem, StoreError> {
        // Fails for a sensitive value that is not sealed: it never reaches the table.
        let document = serde_json::to_string(settings).map_err(|e| StoreError::Service {
            op: "PutItem",
            table: self.table.clone(),
            code: "InvalidSettings".into(),
            message: e.to_string(),
        })?;
        Ok(SettingsItem {
            pk: "SETTINGS".into(),
            sk: "SYSTEM".into(),
            version,
            document,
        })
    }

    async fn write_if(
        &self,
        settings: &SystemSettings,
        expected: u64,
        version: u64,
    ) -> Result<(), StoreError> {
        let item = self.item(settings, version)?;
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
        Ok(())
    }

    /// Writes the settings (the admin API validates first; tests and tools use this directly).
    pub async fn put(&self, settings: &SystemSettings, version: u64) -> Result<(), StoreError> {
        let item = self.item(settings, version)?;
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

    fn keys(list: &[&str]) -> ConfigKeys {
        ConfigKeys::new(list.iter().map(|k| SecretString::from(*k)).collect()).unwrap()
    }

    #[test]
    fn a_plain_dsn_is_read_never_written_and_sealing_follows_the_newest_key() {
        let dsn = "https://publickey@o1.ingest.sentry.io/7";
        // As an earlier version stored it.
        let doc = format!(r#"{{"errorReportingDsn":"{dsn}"}}"#);
        let mut settings: SystemSettings = serde_json::from_str(&doc).unwrap();
        assert!(matches!(
            settings.error_reporting_dsn,
            Some(Sensitive::Plain(_))
        ));
        assert!(
            serde_json::to_string(&settings).is_err(),
            "plain text never serializes"
        );
        assert!(!format!("{settings:?}").contains("publickey"));

        let (old, new) = ("o".repeat(43), "n".repeat(43));
        assert!(settings.seal_all(&keys(&[&old])).unwrap());
        assert!(
            !settings.seal_all(&keys(&[&old])).unwrap(),
            "sealed under the newest already"
        );
        let stored = serde_json::to_string(&settings).unwrap();
        assert!(!stored.contains("publickey"), "{stored}");
        let back: SystemSettings = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, settings);

        // A rotation: the next seal_all moves it to the new key, and the value stays.
        let rotated = keys(&[&new, &old]);
        assert!(settings.seal_all(&rotated).unwrap());
        let dsn_value = settings.error_reporting_dsn.as_ref().unwrap();
        assert_eq!(
            dsn_value.kid(),
            Some(sealed::key_id(rotated.newest()).as_str())
        );
        assert_eq!(
            dsn_value
                .reveal(&keys(&[&new]), ERROR_REPORTING_DSN)
                .unwrap()
                .expose_secret(),
            dsn
        );

        let masked = settings.masked(&rotated);
        assert_eq!(
            masked["errorReportingDsn"],
            "https://****@o1.ingest.sentry.io/7"
        );
        let mut stale = settings.clone();
        assert!(
            !stale.seal_all(&keys(&[&old])).unwrap(),
            "a value no key opens is left as it is"
        );
        assert_eq!(stale, settings);
        let unreadable = settings.masked(&keys(&[&old]));
        assert!(!unreadable.to_string().contains("publickey"));
        assert!(
            unreadable["errorReportingDsn"]
                .as_str()
                .unwrap()
                .starts_with("[unreadable")
        );
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
