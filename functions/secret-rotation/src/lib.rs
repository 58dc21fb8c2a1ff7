//! The config secret's rotation: the runbook's quarterly JWT key rotation, made to run by
//! itself.
//!
//! Secrets Manager's rotation schedule of `ConfigSecret` (`ConfigSecretRotation` in
//! `template.yaml`, every 90 days) starts a rotation by staging a new, empty version of the
//! secret as `AWSPENDING` under a token, then invokes this function four times with that token:
//!
//! - `createSecret`: the pending version is the current one with a new JWT signing key
//!   prepended, the former signing key kept as the previous one (`secrets::rotate_jwt_key_json`);
//!   every other key is kept as it is. Nothing is written when the token's pending version
//!   already has a value (a retried invocation).
//! - `setSecret`: nothing to do: no service outside Secrets Manager holds the keys (the
//!   functions read them from the secret).
//! - `testSecret`: the pending version parses, its new key signs a token that verifies, and a
//!   token signed by the current key still verifies with it.
//! - `finishSecret`: `AWSCURRENT` moves to the token's version (the former current becomes
//!   `AWSPREVIOUS`), and `AWSPENDING` leaves it.
//!
//! Before any step, as AWS documents for rotation functions: the secret must be enabled for
//! rotation and the token's version staged `AWSPENDING`; a version already `AWSCURRENT` means the
//! rotation is over and the step does nothing.
//!
//! `lumi secrets rotate-jwt` runs the same steps at once ([`rotate_now`]), with a token of its
//! own. Containers pick the new key up within `SECRETS_CACHE_TTL_SECONDS`, or at once when they
//! meet a token it signed; tokens the former key signed verify until they expire.

use std::{collections::HashMap, sync::Arc};

use aws_sdk_secretsmanager::Client;
use lumi_shared::{
    Platform,
    auth::{Role, Tier, tokens},
    aws::LazyClient,
    bootstrap::EventHandler,
    config::AuthConfig,
    error::error_chain,
    secrets::{AppSecrets, SecretsError, rotate_jwt_key_json},
};
use serde::{Deserialize, Serialize};

/// The staging label of the version every reader gets.
pub const CURRENT: &str = "AWSCURRENT";
/// The staging label of the version a rotation is building.
pub const PENDING: &str = "AWSPENDING";

/// The rotation step Secrets Manager asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

/// The event Secrets Manager invokes a rotation function with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "Step")]
    pub step: Step,
    /// The secret's ARN.
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The version the rotation builds.
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// `createSecret` put the pending version; `kid` signs from the end of the rotation,
    /// `previous` (the former signing key) still verifies.
    Created { kid: String, previous: String },
    /// `createSecret` again for the same token: its pending version exists, nothing written.
    AlreadyCreated { kid: String },
    /// `setSecret`: no service outside Secrets Manager holds the keys.
    NothingToSet,
    /// `testSecret`: the pending version signs and verifies, and keeps the current key.
    Tested { kid: String },
    /// `finishSecret`: the token's version is `AWSCURRENT` now.
    Finished { version: String },
    /// The token's version is `AWSCURRENT` already: the rotation is over, nothing to do.
    AlreadyCurrent,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("secret {0} is not enabled for rotation")]
    NotEnabled(String),
    #[error("version {token} of secret {secret} has no stage for rotation")]
    NotStaged { secret: String, token: String },
    #[error("version {token} of secret {secret} is not staged AWSPENDING for rotation")]
    NotPending { secret: String, token: String },
    #[error(
        "a rotation of {secret} is under way (version {version} is AWSPENDING): let Secrets Manager finish it, or abandon it with `aws secretsmanager update-secret-version-stage --secret-id {secret} --version-stage AWSPENDING --remove-from-version-id {version}`"
    )]
    InProgress { secret: String, version: String },
    #[error("the {stage} version of the secret is unusable: {source}")]
    Invalid {
        stage: &'static str,
        #[source]
        source: SecretsError,
    },
    #[error("the pending version failed its test: {0}")]
    TestFailed(String),
    #[error("Secrets Manager {op} on {secret} failed: {message}")]
    Aws {
        op: &'static str,
        secret: String,
        message: String,
    },
}

impl RotationError {
    fn aws(op: &'static str, secret: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Aws {
            op,
            secret: secret.to_owned(),
            message: error_chain(error),
        }
    }

    fn invalid(stage: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            stage,
            source: SecretsError::Invalid(reason.into()),
        }
    }
}

/// The secret's rotation state: whether rotation is on, and each version's staging labels.
#[derive(Debug, Clone, Default)]
pub struct Staging {
    pub rotation_enabled: bool,
    pub versions: HashMap<String, Vec<String>>,
}

impl Staging {
    /// The version holding `label`.
    pub fn version_with(&self, label: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(version, _)| version.as_str())
    }

    fn has(&self, version: &str, label: &str) -> bool {
        self.versions
            .get(version)
            .is_some_and(|labels| labels.iter().any(|l| l == label))
    }
}

/// `DescribeSecret`: the rotation flag and the versions' labels.
pub async fn staging(client: &Client, secret_id: &str) -> Result<Staging, RotationError> {
    let described = client
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| RotationError::aws("DescribeSecret", secret_id, &e))?;
    Ok(Staging {
        rotation_enabled: described.rotation_enabled().unwrap_or(false),
        versions: described
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default(),
    })
}

/// The value of one version (by id and label, or by label alone); None when that version has
/// no value (Secrets Manager stages an empty version when a rotation starts) or does not exist.
async fn value(
    client: &Client,
    secret_id: &str,
    version_id: Option<&str>,
    label: &str,
) -> Result<Option<String>, RotationError> {
    let request = client
        .get_secret_value()
        .secret_id(secret_id)
        .set_version_id(version_id.map(str::to_owned))
        .version_stage(label)
        .send();
    match request.await {
        Ok(output) => Ok(output.secret_string),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(RotationError::aws("GetSecretValue", secret_id, &error)),
    }
}

async fn parsed(
    client: &Client,
    secret_id: &str,
    version_id: Option<&str>,
    label: &'static str,
) -> Result<AppSecrets, RotationError> {
    let raw = value(client, secret_id, version_id, label)
        .await?
        .ok_or_else(|| RotationError::invalid(label, "it has no value"))?;
    AppSecrets::parse(&raw).map_err(|source| RotationError::Invalid {
        stage: label,
        source,
    })
}

/// One step as Secrets Manager invokes it: the staging checks, then the step.
pub async fn run_step(
    client: &Client,
    auth: &AuthConfig,
    event: &RotationEvent,
) -> Result<Outcome, RotationError> {
    let (secret, token) = (event.secret_id.as_str(), event.token.as_str());
    let staging = staging(client, secret).await?;
    if !staging.rotation_enabled {
        return Err(RotationError::NotEnabled(secret.to_owned()));
    }
    if !staging.versions.contains_key(token) {
        return Err(RotationError::NotStaged {
            secret: secret.to_owned(),
            token: token.to_owned(),
        });
    }
    if staging.has(token, CURRENT) {
        return Ok(Outcome::AlreadyCurrent);
    }
    if !staging.has(token, PENDING) {
        return Err(RotationError::NotPending {
            secret: secret.to_owned(),
            token: token.to_owned(),
        });
    }
    match event.step {
        Step::Create => create_secret(client, secret, token).await,
        Step::Set => Ok(Outcome::NothingToSet),
        Step::Test => test_secret(client, auth, secret, token).await,
        Step::Finish => finish_secret(client, secret, token, staging.version_with(CURRENT)).await,
    }
}

/// `createSecret`: the token's pending version, the current secret with a new signing key.
pub async fn create_secret(
    client: &Client,
    secret_id: &str,
    token: &str,
) -> Result<Outcome, RotationError> {
    let current_raw = value(client, secret_id, None, CURRENT)
        .await?
        .ok_or_else(|| RotationError::invalid(CURRENT, "it has no value"))?;
    // A current secret the functions could not read is not rotated into another one.
    let current = AppSecrets::parse(&current_raw).map_err(|source| RotationError::Invalid {
        stage: CURRENT,
        source,
    })?;
    if let Some(pending) = value(client, secret_id, Some(token), PENDING).await? {
        let pending = AppSecrets::parse(&pending).map_err(|source| RotationError::Invalid {
            stage: PENDING,
            source,
        })?;
        return Ok(Outcome::AlreadyCreated {
            kid: pending.signing_key().kid.clone(),
        });
    }
    let (rotated, kid) =
        rotate_jwt_key_json(&current_raw).map_err(|source| RotationError::Invalid {
            stage: CURRENT,
            source,
        })?;
    client
        .put_secret_value()
        .secret_id(secret_id)
        .client_request_token(token)
        .secret_string(rotated)
        .version_stages(PENDING)
        .send()
        .await
        .map_err(|e| RotationError::aws("PutSecretValue", secret_id, &e))?;
    Ok(Outcome::Created {
        kid,
        previous: current.signing_key().kid.clone(),
    })
}

/// `testSecret`: the pending version's new key signs a token that verifies, a token of the
/// current key verifies with it too (so nobody is logged out), and it signs with a new key.
pub async fn test_secret(
    client: &Client,
    auth: &AuthConfig,
    secret_id: &str,
    token: &str,
) -> Result<Outcome, RotationError> {
    let pending = parsed(client, secret_id, Some(token), PENDING).await?;
    let current = parsed(client, secret_id, None, CURRENT).await?;
    let (new_kid, current_kid) = (&pending.signing_key().kid, &current.signing_key().kid);
    if new_kid == current_kid {
        return Err(RotationError::TestFailed(format!(
            "it signs with the current key {current_kid}"
        )));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (signer, which) in [(&pending, "the new key"), (&current, "the current key")] {
        let (signed, claims) = tokens::issue(
            signer,
            auth,
            "secret-rotation-test",
            "secret-rotation-test",
            Role::Customer,
            Tier::Standard,
            now,
        )
        .map_err(|e| RotationError::TestFailed(format!("{which} cannot sign: {e}")))?;
        let verified = tokens::verify(&signed, &pending, auth).map_err(|e| {
            RotationError::TestFailed(format!("a token of {which} does not verify: {e}"))
        })?;
        if verified != claims {
            return Err(RotationError::TestFailed(format!(
                "a token of {which} verifies with other claims"
            )));
        }
    }
    Ok(Outcome::Tested {
        kid: new_kid.clone(),
    })
}

/// `finishSecret`: `AWSCURRENT` moves from `current_version` to the token's version, and
/// `AWSPENDING` leaves it.
pub async fn finish_secret(
    client: &Client,
    secret_id: &str,
    token: &str,
    current_version: Option<&str>,
) -> Result<Outcome, RotationError> {
    if current_version == Some(token) {
        return Ok(Outcome::AlreadyCurrent);
    }
    client
        .update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage(CURRENT)
        .move_to_version_id(token)
        .set_remove_from_version_id(current_version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| RotationError::aws("UpdateSecretVersionStage", secret_id, &e))?;
    client
        .update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage(PENDING)
        .remove_from_version_id(token)
        .send()
        .await
        .map_err(|e| RotationError::aws("UpdateSecretVersionStage", secret_id, &e))?;
    Ok(Outcome::Finished {
        version: token.to_owned(),
    })
}

/// A rotation now, outside the schedule (`lumi secrets rotate-jwt`): the same create, test and
/// finish steps with a token of its own. Refused while a rotation is under way. Returns the new
/// signing key's `kid` and the version that holds it.
pub async fn rotate_now(
    client: &Client,
    auth: &AuthConfig,
    secret_id: &str,
) -> Result<(String, String), RotationError> {
    let staging = staging(client, secret_id).await?;
    if let Some(version) = staging.version_with(PENDING)
        && !staging.has(version, CURRENT)
    {
        return Err(RotationError::InProgress {
            secret: secret_id.to_owned(),
            version: version.to_owned(),
        });
    }
    let token = uuid::Uuid::new_v4().to_string();
    let kid = match create_secret(client, secret_id, &token).await? {
        Outcome::Created { kid, .. } | Outcome::AlreadyCreated { kid } => kid,
        other => {
            return Err(RotationError::TestFailed(format!(
                "createSecret answered {other:?}"
            )));
        }
    };
    test_secret(client, auth, secret_id, &token).await?;
    finish_secret(client, secret_id, &token, staging.version_with(CURRENT)).await?;
    Ok((kid, token))
}

/// The rotation function (an [`EventHandler`]: one step per invocation; an error fails the
/// invocation, and Secrets Manager retries the rotation).
#[derive(Clone)]
pub struct Rotation {
    platform: Arc<Platform>,
    secretsmanager: LazyClient<Client>,
}

impl Rotation {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            secretsmanager: LazyClient::new(&platform.sdk_config, Client::new),
            platform,
        }
    }

    pub fn client(&self) -> &Client {
        self.secretsmanager.get()
    }

    /// One step, logged with its outcome.
    pub async fn step(&self, event: &RotationEvent) -> Result<Outcome, RotationError> {
        let result = run_step(self.client(), &self.platform.config.auth, event).await;
        match &result {
            Ok(outcome) => tracing::info!(
                step = ?event.step,
                version = %event.token,
                outcome = ?outcome,
                "rotation step done"
            ),
            Err(error) => tracing::error!(
                step = ?event.step,
                version = %event.token,
                error = %error,
                "rotation step failed"
            ),
        }
        result
    }
}

impl EventHandler for Rotation {
    type Event = RotationEvent;
    type Output = Outcome;

    async fn handle(&self, event: Self::Event) -> Result<Self::Output, lambda_runtime::Error> {
        Ok(self.step(&event).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_managers_events_parse() {
        let event: RotationEvent = serde_json::from_value(serde_json::json!({
            "Step": "createSecret",
            "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:lumi-ConfigSecret-a1b2c3",
            "ClientRequestToken": "9b9e5e7c-2f0a-4a57-9a3f-0c6a4f1e2d3b",
            "RotationToken": "ignored"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.step, Step::Create);
        for (text, step) in [
            ("setSecret", Step::Set),
            ("testSecret", Step::Test),
            ("finishSecret", Step::Finish),
        ] {
            assert_eq!(
                serde_json::from_value::<Step>(serde_json::json!(text)).ok(),
                Some(step)
            );
        }
        assert!(serde_json::from_value::<Step>(serde_json::json!("dropSecret")).is_err());
    }

    #[test]
    fn the_version_of_a_label_is_found() {
        let staging = Staging {
            rotation_enabled: true,
            versions: HashMap::from([
                ("a".to_owned(), vec![CURRENT.to_owned()]),
                ("b".to_owned(), vec![PENDING.to_owned()]),
            ]),
        };
        assert_eq!(staging.version_with(CURRENT), Some("a"));
        assert_eq!(staging.version_with(PENDING), Some("b"));
        assert!(staging.has("b", PENDING) && !staging.has("b", CURRENT));
        assert_eq!(staging.version_with("AWSPREVIOUS"), None);
    }
}
