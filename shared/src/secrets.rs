//! The application secret: one Secrets Manager secret holding a JSON object of keys, read through
//! a per-container [`TtlCache`] (TTL `SECRETS_CACHE_TTL_SECONDS`, default 300 s).
//!
//! Values are [`SecretString`]s: they print as `[REDACTED]` and are only exposed where used.

use std::{sync::Arc, time::Duration};

use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{aws::LazyClient, cache::TtlCache};

/// Fewest characters a key may have: 256 bits of base64.
pub const MIN_KEY_LEN: usize = 43;
/// The online payment providers whose webhooks Lumi accepts.
pub const PAYMENT_PROVIDERS: &[&str] = &["stripe"];
/// JWT keys kept in the secret: the current one signs, the previous one still verifies.
pub const JWT_KEYS_KEPT: usize = 2;

/// One JWT signing key (HS256), named by its `kid`.
#[derive(Debug, Deserialize)]
pub struct JwtKey {
    pub kid: String,
    pub secret: SecretString,
}

/// `config_encryption_key`, the runbook's `CONFIG_ENCRYPTION_KEY`, which seals sensitive settings
/// (`crate::settings::sealed`): one key, or during a rotation a list of keys, newest first. The
/// newest seals; every key in the list still opens what it sealed (each sealed value names its
/// key by a key id derived from the key, so the list needs no names of its own).
#[derive(Debug)]
pub struct ConfigKeys(Vec<SecretString>);

impl ConfigKeys {
    /// Never empty (`AppSecrets::parse` refuses an empty list).
    pub fn new(keys: Vec<SecretString>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self(keys))
    }

    /// The key that seals new values.
    pub fn newest(&self) -> &SecretString {
        &self.0[0]
    }

    /// Every key, newest first.
    pub fn all(&self) -> &[SecretString] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ConfigKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(SecretString),
            Many(Vec<SecretString>),
        }
        let keys = match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(key) => vec![key],
            OneOrMany::Many(keys) => keys,
        };
        Self::new(keys).ok_or_else(|| serde::de::Error::custom("config_encryption_key is empty"))
    }
}

/// The keys of the config secret: the runbook's `COOKIE_SECRET`, `SESSION_FINGERPRINT_SECRET`,
/// `CONFIG_ENCRYPTION_KEY` (one key, or a list newest first while rotating) and `JWT_*_SECRET`
/// (as a key list, newest first, for rotation).
#[derive(Debug, Deserialize)]
pub struct AppSecrets {
    pub cookie_secret: SecretString,
    pub session_fingerprint_secret: SecretString,
    pub config_encryption_key: ConfigKeys,
    pub jwt_keys: Vec<JwtKey>,
    /// HMAC keys of the payment providers' webhooks, by provider (`stripe`: the endpoint's
    /// `whsec_…` signing secret).
    #[serde(default)]
    pub payment_webhook_secrets: std::collections::HashMap<String, SecretString>,
    /// Stripe's secret API key (`sk_live_…`/`sk_test_…`); without it online payments are
    /// unavailable (503) and checkout falls back to nothing: set it before turning them on.
    #[serde(default)]
    pub stripe_secret_key: Option<SecretString>,
    /// `metrics_scrape_token`: what Prometheus sends as `Authorization: Bearer` to
    /// `GET /api/v1/metrics`; one token, or during a rotation a list (every one is accepted).
    /// Absent: only an admin's access token reads the metrics.
    #[serde(
        default,
        rename = "metrics_scrape_token",
        deserialize_with = "one_or_many"
    )]
    pub metrics_scrape_tokens: Vec<SecretString>,
    /// `image_url_key`: the HMAC-SHA256 key of signed image URLs
    /// (`GET /api/v1/images/{signature}/{options}/{source+}`); one key, or during a rotation a
    /// list: the first signs (`lumi images url`, a storefront's server), every one verifies.
    /// Absent: every signed image URL is refused (403).
    #[serde(default, rename = "image_url_key", deserialize_with = "one_or_many")]
    pub image_url_keys: Vec<SecretString>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(SecretString),
        Many(Vec<SecretString>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(token) => vec![token],
        OneOrMany::Many(tokens) => tokens,
    })
}

impl AppSecrets {
    /// The names of the single-value keys.
    pub const KEYS: &'static [&'static str] = &[
        "cookie_secret",
        "session_fingerprint_secret",
        "config_encryption_key",
        "metrics_scrape_token",
        "image_url_key",
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
        ] {
            if value.expose_secret().len() < MIN_KEY_LEN {
                return Err(SecretsError::Invalid(format!(
                    "{name} is shorter than {MIN_KEY_LEN} characters"
                )));
            }
        }
        let config_keys = secrets.config_encryption_key.all();
        for (i, key) in config_keys.iter().enumerate() {
            if key.expose_secret().len() < MIN_KEY_LEN {
                return Err(SecretsError::Invalid(format!(
                    "config_encryption_key[{i}] is shorter than {MIN_KEY_LEN} characters"
                )));
            }
            if config_keys[..i]
                .iter()
                .any(|k| k.expose_secret() == key.expose_secret())
            {
                return Err(SecretsError::Invalid(format!(
                    "config_encryption_key[{i}] repeats an earlier key"
                )));
            }
        }
        for (name, values) in [
            ("metrics_scrape_token", &secrets.metrics_scrape_tokens),
            ("image_url_key", &secrets.image_url_keys),
        ] {
            for (i, value) in values.iter().enumerate() {
                if value.expose_secret().len() < MIN_KEY_LEN {
                    return Err(SecretsError::Invalid(format!(
                        "{name}[{i}] is shorter than {MIN_KEY_LEN} characters"
                    )));
                }
            }
        }
        if secrets.jwt_keys.is_empty() {
            return Err(SecretsError::Invalid("jwt_keys is empty".into()));
        }
        for (i, key) in secrets.jwt_keys.iter().enumerate() {
            if key.secret.expose_secret().len() < MIN_KEY_LEN || key.kid.is_empty() {
                return Err(SecretsError::Invalid(format!(
                    "jwt_keys[{i}] is too short or has no kid"
                )));
            }
            if secrets.jwt_keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(SecretsError::Invalid(format!(
                    "jwt_keys has kid {} twice",
                    key.kid
                )));
            }
        }
        Ok(secrets)
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &JwtKey {
        // parse() refuses an empty list.
        &self.jwt_keys[0]
    }

    pub fn jwt_key(&self, kid: &str) -> Option<&JwtKey> {
        self.jwt_keys.iter().find(|k| k.kid == kid)
    }
}

fn random_key() -> String {
    use rand::distr::{Alphanumeric, SampleString as _};
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

fn new_jwt_key() -> serde_json::Value {
    let kid = format!(
        "k{}-{}",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    serde_json::json!({ "kid": kid, "secret": random_key() })
}

fn as_object(
    existing: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, SecretsError> {
    match existing.map(serde_json::from_str::<serde_json::Value>) {
        None => Ok(serde_json::Map::new()),
        Some(Ok(serde_json::Value::Object(map))) => Ok(map),
        Some(_) => Err(SecretsError::Invalid(
            "the secret's value is not a JSON object".into(),
        )),
    }
}

/// The secret's JSON with every key the functions need: keys already present and long enough are
/// kept; missing ones get 64 random alphanumerics (the local stack and `lumi secrets init`).
pub fn complete_secret_json(existing: Option<&str>) -> Result<String, SecretsError> {
    let mut object = as_object(existing)?;
    object.entry("schema").or_insert(serde_json::json!(1));
    let long_enough = |v: &serde_json::Value| v.as_str().is_some_and(|v| v.len() >= MIN_KEY_LEN);
    for key in AppSecrets::KEYS {
        let present = object.get(*key).is_some_and(|v| match v {
            // A config key, scrape token or image URL key list being rotated is kept as it is.
            serde_json::Value::Array(keys)
                if [
                    "config_encryption_key",
                    "metrics_scrape_token",
                    "image_url_key",
                ]
                .contains(key) =>
            {
                !keys.is_empty() && keys.iter().all(long_enough)
            }
            v => long_enough(v),
        });
        if !present {
            object.insert((*key).to_owned(), serde_json::Value::String(random_key()));
        }
    }
    let webhooks = object
        .entry("payment_webhook_secrets")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(webhooks) = webhooks.as_object_mut() {
        for provider in PAYMENT_PROVIDERS {
            webhooks
                .entry(*provider)
                .or_insert_with(|| serde_json::Value::String(random_key()));
        }
    }
    let has_jwt_keys = object
        .get("jwt_keys")
        .and_then(|v| v.as_array())
        .is_some_and(|k| !k.is_empty());
    if !has_jwt_keys {
        object.insert("jwt_keys".into(), serde_json::json!([new_jwt_key()]));
    }
    Ok(serde_json::Value::Object(object).to_string())
}

/// The secret's JSON with a new `config_encryption_key` first and the former ones after it (a
/// string becomes a list), so values sealed under them still open until they are sealed again
/// (`SettingsStore::reseal`; every backup run does it). Drop the old keys by hand once nothing
/// names them (`lumi settings show` lists each sealed value's `kid`).
pub fn rotate_config_key_json(existing: &str) -> Result<String, SecretsError> {
    let mut object = as_object(Some(existing))?;
    let mut keys = vec![serde_json::Value::String(random_key())];
    match object.remove("config_encryption_key") {
        Some(serde_json::Value::Array(old)) => keys.extend(old),
        Some(old @ serde_json::Value::String(_)) => keys.push(old),
        _ => {}
    }
    object.insert(
        "config_encryption_key".into(),
        serde_json::Value::Array(keys),
    );
    Ok(serde_json::Value::Object(object).to_string())
}

/// The secret's JSON with a new `image_url_key` second (`stage`: verified, not yet signing) or
/// first (`promote`: the key that was second signs; the others are dropped but the former
/// first, which still verifies). See the README's "Image URLs" for the order of the steps.
pub fn rotate_image_url_key_json(existing: &str, promote: bool) -> Result<String, SecretsError> {
    let mut object = as_object(Some(existing))?;
    let mut keys = match object.remove("image_url_key") {
        Some(serde_json::Value::Array(old)) => old,
        Some(old @ serde_json::Value::String(_)) => vec![old],
        _ => Vec::new(),
    };
    if promote {
        if keys.len() < 2 {
            return Err(SecretsError::Invalid(
                "image_url_key has no staged key to promote: stage one first".into(),
            ));
        }
        keys.swap(0, 1);
        keys.truncate(2);
    } else {
        keys.truncate(1);
        keys.push(serde_json::Value::String(random_key()));
    }
    object.insert("image_url_key".into(), serde_json::Value::Array(keys));
    Ok(serde_json::Value::Object(object).to_string())
}

/// The secret's JSON with a new current JWT key; the former current key stays as the previous
/// one (tokens it signed verify until they expire), older ones are dropped. Returns the new kid.
pub fn rotate_jwt_key_json(existing: &str) -> Result<(String, String), SecretsError> {
    let mut object = as_object(Some(existing))?;
    let key = new_jwt_key();
    let kid = key["kid"].as_str().unwrap_or_default().to_owned();
    let mut keys = vec![key];
    if let Some(serde_json::Value::Array(old)) = object.remove("jwt_keys") {
        keys.extend(old.into_iter().take(JWT_KEYS_KEPT - 1));
    }
    object.insert("jwt_keys".into(), serde_json::Value::Array(keys));
    Ok((serde_json::Value::Object(object).to_string(), kid))
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

/// Forced refreshes for an unknown `kid` happen at most this often per container.
const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// One secret's versions, read by stage, each call within the deadline and in an `aws_call` span.
struct SecretReader {
    client: LazyClient<Client>,
    secret_id: String,
    timeout: Duration,
}

impl SecretReader {
    fn new(client: LazyClient<Client>, secret_id: String, timeout: Duration) -> Self {
        Self {
            client,
            secret_id,
            timeout,
        }
    }

    /// The string value of the version labelled `stage`; `None` when no version has the label
    /// (a secret never changed has no `AWSPREVIOUS`).
    async fn read(&self, stage: &str) -> Result<Option<String>, SecretsError> {
        let call = self
            .client
            .get()
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send();
        let call =
            crate::telemetry::trace::aws_call("SecretsManager", "GetSecretValue", None, call);
        match tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SecretsError::Timeout(self.timeout))?
        {
            Ok(output) => output
                .secret_string
                .map(Some)
                .ok_or_else(|| SecretsError::Invalid("the secret has no string value".into())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                    && stage != "AWSCURRENT" =>
            {
                Ok(None)
            }
            Err(e) => Err(SecretsError::Unavailable(crate::error::error_chain(&e))),
        }
    }
}

/// The config secret of this container.
pub struct SecretStore {
    reader: SecretReader,
    cache: TtlCache<AppSecrets>,
    last_forced: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl SecretStore {
    pub fn new(
        client: LazyClient<Client>,
        secret_id: String,
        ttl: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            reader: SecretReader::new(client, secret_id, timeout),
            cache: TtlCache::new(ttl),
            last_forced: std::sync::Mutex::new(None),
        }
    }

    /// Builds the client now (a long-running local server; Lambda builds it on first use).
    pub fn warm(&self) {
        let _ = self.reader.client.get();
    }

    pub fn secret_id(&self) -> &str {
        &self.reader.secret_id
    }

    /// The secrets, from the cache when fresh.
    pub async fn get(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        self.cache.get_with(|| self.fetch()).await
    }

    /// Fetches now (readiness, or after a rotation) and refreshes the cache.
    pub async fn refresh(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        self.cache.refresh_with(|| self.fetch()).await
    }

    /// A token named a key this container does not know: the secret may have been rotated.
    /// Reads it again, but at most once per 30 s, so a flood of forged `kid`s costs one read.
    pub async fn refresh_for_unknown_key(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        let due = {
            let now = tokio::time::Instant::now();
            let mut last = self
                .last_forced
                .lock()
                .map_err(|_| SecretsError::Invalid("lock poisoned".into()))?;
            let due = last.is_none_or(|at| now.duration_since(at) >= UNKNOWN_KID_REFRESH_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.refresh().await
        } else {
            self.get().await
        }
    }

    async fn fetch(&self) -> Result<AppSecrets, SecretsError> {
        // What Secrets Manager answers by default, said explicitly: during a rotation the
        // pending version is never read by mistake (and the local stack agrees).
        // (`read` answers `None` for no other label: a missing AWSCURRENT is an error.)
        let raw = self.reader.read("AWSCURRENT").await?.unwrap_or_default();
        AppSecrets::parse(&raw)
    }
}

/// Whether `presented` is one of `known`: every one is compared, each in constant time, so the
/// time taken says neither which matched nor how much of one did.
pub fn is_one_of(known: &[SecretString], presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    known
        .iter()
        .fold(subtle::Choice::from(0), |found, k| {
            found | k.expose_secret().as_bytes().ct_eq(presented.as_bytes())
        })
        .into()
}

/// The CDN origin secret (`CDN_ORIGIN_SECRET_ID`, template.yaml's `CdnOriginSecret`): the
/// token CloudFront sends the images origin as `X-Origin-Verify`, so that the function knows a
/// request came through the distribution and may believe its `CloudFront-Viewer-Address`.
/// Both the current and the previous version are accepted: a new token is put first, the
/// distribution sends it after its next deploy, and neither step refuses the other's requests.
pub struct CdnOriginTokens {
    reader: SecretReader,
    cache: TtlCache<Vec<SecretString>>,
}

impl CdnOriginTokens {
    pub fn new(
        client: LazyClient<Client>,
        secret_id: String,
        ttl: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            reader: SecretReader::new(client, secret_id, timeout),
            cache: TtlCache::new(ttl),
        }
    }

    /// Whether `presented` is the current or the previous token (cached like the config secret).
    pub async fn verify(&self, presented: &str) -> Result<bool, SecretsError> {
        let tokens = self.cache.get_with(|| self.fetch()).await?;
        Ok(is_one_of(&tokens, presented))
    }

    /// Both versions at once: a container's first CDN request waits for one round trip.
    async fn fetch(&self) -> Result<Vec<SecretString>, SecretsError> {
        let (current, previous) = tokio::join!(
            self.reader.read("AWSCURRENT"),
            self.reader.read("AWSPREVIOUS")
        );
        [current?, previous?]
            .into_iter()
            .flatten()
            .map(|raw| parse_cdn_origin_token(&raw))
            .collect()
    }
}

/// The `token` of the CDN origin secret's JSON (`{"token": "…"}`, as CloudFormation generates
/// it), at least [`MIN_KEY_LEN`] characters.
fn parse_cdn_origin_token(raw: &str) -> Result<SecretString, SecretsError> {
    #[derive(Deserialize)]
    struct Value {
        token: SecretString,
    }
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        SecretsError::Invalid(format!(
            "the CDN origin secret is not {{\"token\": …}}: {e}"
        ))
    })?;
    if value.token.expose_secret().len() < MIN_KEY_LEN {
        return Err(SecretsError::Invalid(format!(
            "the CDN origin token is shorter than {MIN_KEY_LEN} characters"
        )));
    }
    Ok(value.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdn_origin_token_is_one_of_the_known_ones_and_long_enough() {
        let token = "t".repeat(MIN_KEY_LEN);
        let parsed =
            parse_cdn_origin_token(&serde_json::json!({ "token": token }).to_string()).unwrap();
        let known = [SecretString::from("o".repeat(64)), parsed];
        assert!(is_one_of(&known, &token));
        assert!(!is_one_of(&known, &token[1..]), "a prefix is not the token");
        assert!(!is_one_of(&known, ""));
        assert!(!is_one_of(&[], &token));
        assert!(parse_cdn_origin_token(r#"{"token":"short"}"#).is_err());
        assert!(parse_cdn_origin_token(r#"{"cookie_secret":"x"}"#).is_err());
    }

    #[test]
    fn secrets_are_validated_and_never_printed() {
        let key = "k".repeat(MIN_KEY_LEN);
        let raw = serde_json::json!({
            "cookie_secret": key, "session_fingerprint_secret": key, "config_encryption_key": key,
            "jwt_keys": [{ "kid": "a", "secret": key }],
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

    #[test]
    fn the_config_key_may_be_a_list_newest_first_and_rotation_keeps_the_old_ones() {
        let first = complete_secret_json(None).unwrap();
        let one = AppSecrets::parse(&first).unwrap();
        assert_eq!(one.config_encryption_key.all().len(), 1);
        let rotated = rotate_config_key_json(&first).unwrap();
        let two = AppSecrets::parse(&rotated).unwrap();
        let keys = two.config_encryption_key.all();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[1].expose_secret(),
            one.config_encryption_key.newest().expose_secret(),
            "the former key follows the new one"
        );
        assert_ne!(keys[0].expose_secret(), keys[1].expose_secret());
        // Completion keeps a list as it is.
        let again = complete_secret_json(Some(&rotated)).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&again).unwrap()["config_encryption_key"],
            serde_json::from_str::<serde_json::Value>(&rotated).unwrap()["config_encryption_key"]
        );
        let mut value: serde_json::Value = serde_json::from_str(&rotated).unwrap();
        value["config_encryption_key"] = serde_json::json!([]);
        assert!(AppSecrets::parse(&value.to_string()).is_err(), "empty");
        value["config_encryption_key"] = serde_json::json!([keys[0].expose_secret(), "short"]);
        assert!(AppSecrets::parse(&value.to_string()).is_err(), "short");
        let dup = keys[0].expose_secret();
        value["config_encryption_key"] = serde_json::json!([dup, dup]);
        assert!(AppSecrets::parse(&value.to_string()).is_err(), "repeated");
    }

    #[test]
    fn image_url_keys_are_staged_then_promoted_and_the_former_one_still_verifies() {
        let first = complete_secret_json(None).unwrap();
        let one = AppSecrets::parse(&first).unwrap();
        assert_eq!(one.image_url_keys.len(), 1, "init creates one");
        let original = one.image_url_keys[0].expose_secret().to_owned();
        assert!(
            rotate_image_url_key_json(&first, true).is_err(),
            "nothing staged"
        );
        let staged = AppSecrets::parse(&rotate_image_url_key_json(&first, false).unwrap()).unwrap();
        assert_eq!(staged.image_url_keys.len(), 2);
        assert_eq!(
            staged.image_url_keys[0].expose_secret(),
            original,
            "still signs"
        );
        let raw =
            rotate_image_url_key_json(&rotate_image_url_key_json(&first, false).unwrap(), true)
                .unwrap();
        let promoted = AppSecrets::parse(&raw).unwrap();
        assert_eq!(promoted.image_url_keys.len(), 2);
        assert_eq!(
            promoted.image_url_keys[1].expose_secret(),
            original,
            "still verifies"
        );
        let again = complete_secret_json(Some(&raw)).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&again).unwrap()["image_url_key"],
            serde_json::from_str::<serde_json::Value>(&raw).unwrap()["image_url_key"]
        );
        let mut value: serde_json::Value = serde_json::from_str(&raw).unwrap();
        value["image_url_key"] = serde_json::json!(["short"]);
        assert!(AppSecrets::parse(&value.to_string()).is_err(), "short");
    }

    #[test]
    fn completion_keeps_existing_keys_and_rotation_keeps_one_previous() {
        let first = complete_secret_json(None).unwrap();
        let secrets = AppSecrets::parse(&first).unwrap();
        let again = complete_secret_json(Some(&first)).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&again).unwrap(),
            serde_json::from_str::<serde_json::Value>(&first).unwrap()
        );
        let original_kid = secrets.signing_key().kid.clone();

        let (rotated, kid) = rotate_jwt_key_json(&first).unwrap();
        let rotated_secrets = AppSecrets::parse(&rotated).unwrap();
        assert_eq!(rotated_secrets.signing_key().kid, kid);
        assert!(rotated_secrets.jwt_key(&original_kid).is_some());
        let (twice, _) = rotate_jwt_key_json(&rotated).unwrap();
        let twice = AppSecrets::parse(&twice).unwrap();
        assert_eq!(twice.jwt_keys.len(), JWT_KEYS_KEPT);
        assert!(
            twice.jwt_key(&original_kid).is_none(),
            "the oldest key is dropped"
        );
    }
}
