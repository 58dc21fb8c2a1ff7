//! `lumi outbox` and `lumi dlq`: refund emails that did not go out.

use super::{db, sdk_config};

#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// Send the messages waiting in the outbox (refund emails whose first send failed)
    Flush {
        /// The app table (the stack's `AppTableName` output)
        #[arg(long)]
        table: String,
        /// The refund-email queue's URL
        #[arg(long)]
        queue_url: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Move the refund emails that failed every attempt back to their queue, once the cause
    /// is fixed
    Redrive {
        /// The dead-letter queue's URL
        #[arg(long)]
        from: String,
        /// The queue's URL
        #[arg(long)]
        to: String,
    },
}

impl OutboxCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let Self::Flush { table, queue_url } = self;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
        let sent = lumi_commerce::outbox::flush(&db().await, &table, &sqs, &queue_url)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("sent {sent} message(s) from the outbox");
        Ok(())
    }
}

impl DlqCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let Self::Redrive { from, to } = self;
        let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
        let moved = lumi_infra::poller::redrive(&sqs, &from, &to).await?;
        println!("moved {moved} message(s) from {from} back to {to}");
        Ok(())
    }
}
