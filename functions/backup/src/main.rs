//! The `backup` Lambda: scheduled backups and restore checks (EventBridge).

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_events("backup", backup::Jobs::new).await
}
