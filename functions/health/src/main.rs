//! The `health` Lambda: liveness and readiness probes.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_http("health", health::routes).await
}
