//! `lumi settings`: the runtime settings (`SETTINGS`/`SYSTEM` in the app table).

use anyhow::Context as _;
use lumi_shared::settings::FailMode;

use super::{db, sdk_config, secrets::read_secret};

#[derive(Debug, clap::Subcommand)]
pub enum SettingsCommand {
    /// The runtime settings in force
    Show {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
    },
    /// Change a rate-limit budget (or the premium multiplier); every container applies it
    /// within SETTINGS_CACHE_TTL_SECONDS
    RateLimit(RateLimitArgs),
    /// Seal every sensitive setting under the newest config key now; prints the key ids in use
    Reseal {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The config secret's id or ARN (the stack's `ConfigSecretArn` output)
        #[arg(long)]
        secret_id: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["scope", "premium_multiplier"])))]
pub struct RateLimitArgs {
    /// The app table (the stack's `AppTableName` output)
    #[arg(long)]
    table: String,
    /// The budget to change
    #[arg(long, value_enum)]
    scope: Option<Scope>,
    /// Requests a window allows
    #[arg(long, requires = "scope")]
    limit: Option<u32>,
    /// The window, in seconds
    #[arg(long, requires = "scope", value_parser = clap::value_parser!(u32).range(1..))]
    window: Option<u32>,
    /// What the scope does when the rate-limit table cannot be reached
    #[arg(long, value_enum, requires = "scope")]
    fail: Option<Fail>,
    /// Premium users' limits are this many times a standard user's
    #[arg(long, conflicts_with = "scope")]
    premium_multiplier: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Scope {
    Ip,
    Customer,
    Admin,
    Auth,
    Quota,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Fail {
    Open,
    Closed,
}

impl SettingsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Show { table } => {
                let store = settings_store(&table).await;
                println!("{}", serde_json::to_string_pretty(&*store.get().await)?);
                Ok(())
            }
            Self::RateLimit(args) => set_rate_limit(args).await,
            Self::Reseal { table, secret_id } => settings_reseal(&table, &secret_id).await,
        }
    }
}

async fn settings_reseal(table: &str, secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let secret = read_secret(&client, secret_id)
        .await?
        .context("the secret has no value: run `lumi secrets init` first")?;
    let keys = lumi_shared::secrets::AppSecrets::parse(&secret)?.config_encryption_key;
    let store = settings_store(table).await;
    let wrote = store.reseal(&keys).await?;
    let (settings, _) = store.read_versioned().await?;
    let kids: Vec<&str> = settings
        .error_reporting_dsn
        .iter()
        .filter_map(|v| v.kid())
        .collect();
    println!(
        "{}; key ids in use: {kids:?}",
        if wrote {
            "sealed again"
        } else {
            "nothing to seal"
        }
    );
    Ok(())
}

async fn settings_store(table: &str) -> lumi_shared::settings::SettingsStore {
    lumi_shared::settings::SettingsStore::new(
        db().await,
        table.to_owned(),
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(10),
    )
}

async fn set_rate_limit(args: RateLimitArgs) -> anyhow::Result<()> {
    let store = settings_store(&args.table).await;
    let mut settings = (*store.get().await).clone();
    let limits = &mut settings.rate_limits;
    if let Some(multiplier) = args.premium_multiplier {
        limits.premium_multiplier = multiplier;
    } else if let Some(scope) = args.scope {
        let budget = match scope {
            Scope::Ip => &mut limits.ip,
            Scope::Customer => &mut limits.customer,
            Scope::Admin => &mut limits.admin,
            Scope::Auth => &mut limits.auth,
            Scope::Quota => &mut limits.quota,
        };
        if let Some(limit) = args.limit {
            budget.limit = limit;
        }
        if let Some(window) = args.window {
            budget.window_seconds = window;
        }
        if let Some(fail) = args.fail {
            budget.fail = match fail {
                Fail::Open => FailMode::Open,
                Fail::Closed => FailMode::Closed,
            };
        }
    }
    store.put(&settings, 1).await?;
    println!("{}", serde_json::to_string_pretty(&settings.rate_limits)?);
    println!("every container applies it within SETTINGS_CACHE_TTL_SECONDS (30 s by default)");
    Ok(())
}
