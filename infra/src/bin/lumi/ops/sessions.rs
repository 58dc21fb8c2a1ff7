//! `lumi sessions`: end sessions (the key-rotation runbook's force logout, token reuse).

use anyhow::bail;
use clap::ArgGroup;
use lumi_shared::auth;

use super::{db, operator};

#[derive(Debug, clap::Subcommand)]
pub enum SessionsCommand {
    /// Delete every session row of a user (token reuse after revoke-all)
    Purge {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The user's id
        #[arg(long)]
        user: String,
    },
    /// End every session of one user, or of everyone (the global sessions epoch, audited;
    /// uses this machine's clock)
    #[command(group(ArgGroup::new("whose").required(true).args(["user", "everyone"])))]
    RevokeAll {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The user's id
        #[arg(long)]
        user: Option<String>,
        /// Every user: everyone logs in again
        #[arg(long)]
        everyone: bool,
    },
}

impl SessionsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Purge { table, user } => {
                let deleted = auth::sessions::purge(&db().await, &table, &user).await?;
                println!("deleted {deleted} session row(s) of user {user}");
            }
            Self::RevokeAll {
                table,
                user: Some(user),
                ..
            } => {
                if !auth::users::end_all_sessions(&db().await, &table, &user, auth::now_ms())
                    .await?
                {
                    bail!("no user {user} in {table}");
                }
                println!("every session of user {user} has ended");
            }
            Self::RevokeAll { table, .. } => {
                let revoked = auth::sessions::revoke_everyone(
                    &db().await,
                    &table,
                    &operator(),
                    &Default::default(),
                    auth::now_ms(),
                )
                .await?;
                println!(
                    "every session that started before {} ms has ended (audited as auth.revoke_all_everyone)",
                    revoked.sessions_valid_after_ms
                );
            }
        }
        Ok(())
    }
}
