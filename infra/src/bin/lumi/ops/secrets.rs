//! `lumi secrets`: the config secret (`ConfigSecretArn`).

use anyhow::{Context as _, bail};
use lumi_infra::stack;

use super::sdk_config;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Complete the config secret with every key it lacks, keeping the existing ones
    Init(SecretId),
    /// A new JWT signing key now, by the scheduled rotation's steps; the previous one verifies
    /// until its tokens expire
    RotateJwt(SecretId),
    /// A new `config_encryption_key` first in the list; the former ones still open what they
    /// sealed (then `lumi settings reseal`)
    RotateConfigKey(SecretId),
    /// Rotate `image_url_key` (signed image URLs) in two steps: stage a new key (it verifies,
    /// the current one still signs), then, once every container has it, `--promote` it (it
    /// signs, the former one still verifies until cached URLs age out)
    RotateImageUrlKey {
        #[command(flatten)]
        id: SecretId,
        /// The second step: the staged key signs from now on
        #[arg(long)]
        promote: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SecretId {
    /// The config secret's id or ARN (the stack's `ConfigSecretArn` output)
    #[arg(long)]
    pub secret_id: String,
}

impl SecretsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Init(id) => secrets_init(&id.secret_id).await,
            Self::RotateJwt(id) => secrets_rotate_jwt(&id.secret_id).await,
            Self::RotateConfigKey(id) => secrets_rotate_config_key(&id.secret_id).await,
            Self::RotateImageUrlKey { id, promote } => {
                secrets_rotate_image_url_key(&id.secret_id, promote).await
            }
        }
    }
}

pub async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> anyhow::Result<Option<String>> {
    let request = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage("AWSCURRENT");
    match request.send().await {
        Ok(out) => Ok(out.secret_string),
        Err(error) => {
            let service = error
                .as_service_error()
                .map(|e| e.is_resource_not_found_exception());
            if service == Some(true) {
                bail!("no secret {secret_id}")
            }
            // A secret created without a value has no AWSCURRENT version yet.
            Ok(None)
        }
    }
}

async fn secrets_init(secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let current = read_secret(&client, secret_id).await?;
    let completed = stack::complete_secret_value(current.as_deref())?;
    let unchanged = current
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        == serde_json::from_str::<serde_json::Value>(&completed).ok();
    if unchanged {
        println!("{secret_id} already has every key");
        return Ok(());
    }
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(completed)
        .send()
        .await
        .with_context(|| format!("writing {secret_id}"))?;
    println!("{secret_id}: every key is present (existing keys kept)");
    Ok(())
}

/// The scheduled rotation's steps (create, test, finish), run now with a token of their own.
async fn secrets_rotate_jwt(secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let (kid, version) = secret_rotation::rotate_now(
        &client,
        &lumi_shared::config::AuthConfig::default(),
        secret_id,
    )
    .await
    .map_err(|e| match e {
        secret_rotation::RotationError::Invalid { .. } => {
            anyhow::anyhow!("{e}: run `lumi secrets init` first")
        }
        other => anyhow::anyhow!(other),
    })?;
    println!(
        "new signing key {kid} (version {version} is AWSCURRENT); the previous key verifies until its tokens expire (at most 15 minutes).\n\
         Containers pick it up within SECRETS_CACHE_TTL_SECONDS (300 s), or at once when they meet a token it signed."
    );
    Ok(())
}

/// Reads the secret, rotates one of its keys with `rotate`, checks the result parses as the
/// functions will read it, and writes it back: every key rotation of `lumi secrets`.
async fn rotate_secret<E>(
    secret_id: &str,
    rotate: impl FnOnce(&str) -> Result<String, E>,
) -> anyhow::Result<lumi_shared::secrets::AppSecrets>
where
    anyhow::Error: From<E>,
{
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let current = read_secret(&client, secret_id)
        .await?
        .context("the secret has no value: run `lumi secrets init` first")?;
    let rotated = rotate(&current)?;
    let parsed = lumi_shared::secrets::AppSecrets::parse(&rotated)?;
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(rotated)
        .send()
        .await
        .with_context(|| format!("writing {secret_id}"))?;
    Ok(parsed)
}

async fn secrets_rotate_config_key(secret_id: &str) -> anyhow::Result<()> {
    let rotated = rotate_secret(secret_id, lumi_shared::secrets::rotate_config_key_json).await?;
    let keys = rotated.config_encryption_key;
    println!(
        "new config key {}; the former ones still open what they sealed.\n\
         Containers pick it up within SECRETS_CACHE_TTL_SECONDS (300 s). Then run `lumi settings reseal`\n\
         (or wait for the next backup), and drop a former key from the secret once no value and no\n\
         backup you may restore names it.",
        lumi_shared::settings::sealed::key_id(keys.newest())
    );
    Ok(())
}

async fn secrets_rotate_image_url_key(secret_id: &str, promote: bool) -> anyhow::Result<()> {
    rotate_secret(secret_id, |current| {
        lumi_shared::secrets::rotate_image_url_key_json(current, promote)
    })
    .await?;
    if promote {
        println!(
            "the staged image URL key signs from now on (`lumi images url`, and storefront servers once\n\
             they read it again); URLs signed with the former key still verify."
        );
    } else {
        println!(
            "a new image URL key is staged: it verifies, the current key still signs. Containers pick it up\n\
             within SECRETS_CACHE_TTL_SECONDS (300 s); then run this again with --promote."
        );
    }
    Ok(())
}
