//! `lumi users`: accounts in the app table.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use lumi_shared::auth::{self, Role, Tier, users::NewUser};

use super::{db, operator};

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// The first admin; the password is read from standard input
    CreateAdmin {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The admin's email address
        #[arg(long)]
        email: String,
        /// The admin's display name
        #[arg(long)]
        name: String,
    },
    /// A user's tier (the premium quota multiplier), audited as `user.tier`; it applies from
    /// the user's next token
    Tier {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The user's id or email address
        user: String,
        /// The new tier
        #[arg(value_parser = parse_tier)]
        tier: Tier,
    },
}

fn parse_tier(text: &str) -> Result<Tier, String> {
    text.parse::<Tier>().map_err(|e| e.to_string())
}

impl UsersCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::CreateAdmin { table, email, name } => create_admin(&table, &email, &name).await,
            Self::Tier { table, user, tier } => users_tier(&table, &user, tier).await,
        }
    }
}

async fn create_admin(table: &str, email: &str, name: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("send the new admin's password on standard input");
    }
    let user = auth::users::create(
        &db().await,
        table,
        NewUser {
            email: email.into(),
            name: name.into(),
            password,
            role: Role::Admin,
            tier: Tier::Standard,
        },
    )
    .await
    .map_err(|e| match e {
        auth::users::CreateUserError::Invalid(errors) => anyhow::anyhow!(
            "invalid: {}",
            errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!(other),
    })?;
    println!("admin {} created with id {}", user.email, user.id);
    Ok(())
}

/// `lumi users tier --table <t> <user id or email> <tier>`: the admin API's tier change.
async fn users_tier(table: &str, who: &str, tier: Tier) -> anyhow::Result<()> {
    let table = table.to_owned();
    let db = db().await;
    let user = if who.contains('@') {
        let email = auth::users::normalize_email(who)
            .map_err(|e| anyhow::anyhow!("{} {}", e.field, e.message))?;
        let account = auth::users::find_by_email(&db, &table, &email)
            .await?
            .with_context(|| format!("no user with the email {email} in {table}"))?;
        auth::users::UserId::parse(&account.user_id)?
    } else {
        auth::users::UserId::parse(who)?
    };
    let change = auth::users::set_tier(
        &db,
        &table,
        &user,
        tier,
        auth::users::ChangedBy {
            actor: operator(),
            request_id: None,
            client_ip: None,
        },
    )
    .await?;
    if change.changed {
        println!(
            "user {} is {} (was {}); it applies from their next token (next login or refresh, at most 15 minutes)",
            change.user_id,
            change.after.as_str(),
            change.before.as_str()
        );
    } else {
        println!(
            "user {} is {} already",
            change.user_id,
            change.after.as_str()
        );
    }
    Ok(())
}
