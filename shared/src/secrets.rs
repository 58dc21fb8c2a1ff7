//! The application secret: one Secrets Manager secret holding a JSON object of keys, read through
//! a per-container [`TtlCache`] (TTL `SECRETS_CACHE_TTL_SECONDS`, default 300 s).
//!
//! Values are [`SecretString`]s: they print as `[REDACTED]` and are only exposed where used.

use std::{sync::Arc, time::Duration};

use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::cache::TtlCache;

/// Fewest characters a key may have: 256 bits of base64.
pub const MIN_KEY_LEN: usize = 43;

/// The keys of the config secret (the runbook's `COOKIE_SECRET`, `SESSION_FINGERPRINT_SECRET`,
/// `CONFIG_ENCRYPTION_KEY`; the auth issue adds the JWT signing keys).
#[derive(Debug, Deserialize)]
pub struct AppSecrets {
    pub cookie_secret: SecretString,
    pub session_fingerprint_secret: SecretString,
    pub config_encryption_key: SecretString,
}

impl AppSecrets {
    /// The names of the keys, for the bootstrap and the secrets-init command.
    pub const KEYS: &'static [&'static str] = &[
        "cookie_secret",
        "session_fingerprint_secret",
        "config_encryption_key",
    ];

    /// Parses and validates the secret's JSON.
    pub fn parse(raw: &str) -> Result<Self, SecretsError> {
        let secrets: Self = serde_json::from_str(raw)
            .map_err(|e| SecretsError::Invalid(format!("not the expected JSON object: {e}")))?;
        for (name, value) in [
            ("cookie_secret", &secrets.cookie_secret),
            (
                "session_fingerprint_secret",
                &secrets.session_fingerprint_secret,
            ),
            ("config_encryption_key", &secrets.config_encryption_key),
        ] {
            if value.expose_secret().len() < MIN_KEY_LEN {
                return Err(SecretsError::Invalid(format!(
                    "{name} is shorter than {MIN_KEY_LEN} characters"
                )));
            }
        }
        Ok(secrets)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager is unavailable: {0}")]
    Unavailable(String),
    #[error("Secrets Manager did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the config secret is invalid: {0}")]
    Invalid(String),
}

/// The config secret of this container.
pub struct SecretStore {
    client: Client,
    secret_id: String,
    timeout: Duration,
    cache: TtlCache<AppSecrets>,
}

impl SecretStore {
    pub fn new(client: Client, secret_id: String, ttl: Duration, timeout: Duration) -> Self {
        Self {
            client,
            secret_id,
            timeout,
            cache: TtlCache::new(ttl),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secrets, from the cache when fresh.
    pub async fn get(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        self.cache.get_with(|| self.fetch()).await
    }

    /// Fetches now (readiness, or after a rotation) and refreshes the cache.
    pub async fn refresh(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        self.cache.refresh_with(|| self.fetch()).await
    }

    async fn fetch(&self) -> Result<AppSecrets, SecretsError> {
        let call = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send();
        let output = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SecretsError::Timeout(self.timeout))?
            .map_err(|e| SecretsError::Unavailable(crate::error::error_chain(&e)))?;
        let raw = output
            .secret_string()
            .ok_or_else(|| SecretsError::Invalid("the secret has no string value".into()))?;
        AppSecrets::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_validated_and_never_printed() {
        let key = "k".repeat(MIN_KEY_LEN);
        let raw = serde_json::json!({
            "cookie_secret": key, "session_fingerprint_secret": key, "config_encryption_key": key,
        })
        .to_string();
        let secrets = AppSecrets::parse(&raw).unwrap();
        assert!(!format!("{secrets:?}").contains(&key));

        let short = raw.replace(&key, "short");
        assert!(matches!(
            AppSecrets::parse(&short),
            Err(SecretsError::Invalid(_))
        ));
        assert!(AppSecrets::parse(r#"{"cookie_secret":"x"}"#).is_err());
    }
}
