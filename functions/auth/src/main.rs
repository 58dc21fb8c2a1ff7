//! The `auth` Lambda: accounts and sessions.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_http("auth", auth::routes).await
}
