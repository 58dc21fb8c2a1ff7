//! `lumi images`: signed URLs of stored originals (the format: `images::url`; the README's
//! "Image URLs" shows how a storefront's server signs them itself).

use anyhow::Context as _;
use lumi_imaging::{Fit, OutputFormat};

use super::{sdk_config, secrets::read_secret};

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Print the signed URL of a stored original with the given options (signed with the
    /// config secret's first `image_url_key`)
    Url(UrlArgs),
}

#[derive(Debug, clap::Args)]
pub struct UrlArgs {
    /// The config secret's id or ARN (the stack's `ConfigSecretArn` output)
    #[arg(long)]
    pub secret_id: String,
    /// The original's key, as the admin API answers it: `originals/<id>.<ext>`
    #[arg(long)]
    pub source: String,
    /// Width in pixels
    #[arg(long)]
    pub w: Option<u32>,
    /// Height in pixels
    #[arg(long)]
    pub h: Option<u32>,
    /// How the image fits w × h
    #[arg(long, value_parser = ["cover", "contain", "inside", "fill"])]
    pub fit: Option<String>,
    /// Output format; `auto` negotiates by the browser's `Accept`
    #[arg(long, default_value = "auto", value_parser = ["jpeg", "png", "webp", "auto"])]
    pub format: String,
    /// Encoder quality, 1 to 100 (default: the `imageQuality` setting)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,
    /// Put before the path: the `ImagesCdnUrl` output (or the `ApiUrl`)
    #[arg(long, default_value = "")]
    pub base_url: String,
}

impl UrlArgs {
    /// The options asked for.
    pub fn requested(&self) -> images::Requested {
        images::Requested {
            width: self.w,
            height: self.h,
            fit: self.fit.as_deref().and_then(Fit::from_name),
            format: OutputFormat::from_name(&self.format),
            quality: self.quality,
        }
    }
}

impl ImagesCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Url(args) => {
                let source = images::url::SourceKey::parse(&args.source).with_context(|| {
                    format!(
                        "{} is not the key of a stored original (originals/<32 hex digits>.<jpeg|png|webp|gif>)",
                        args.source
                    )
                })?;
                let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
                let raw = read_secret(&client, &args.secret_id)
                    .await?
                    .context("the secret has no value: run `lumi secrets init` first")?;
                let secrets = lumi_shared::secrets::AppSecrets::parse(&raw)?;
                let key = secrets
                    .image_url_keys
                    .first()
                    .context("the secret has no image_url_key: run `lumi secrets init` first")?;
                let path = images::url::signed_path(key, &args.requested(), &source);
                println!("{}{path}", args.base_url.trim_end_matches('/'));
                Ok(())
            }
        }
    }
}
