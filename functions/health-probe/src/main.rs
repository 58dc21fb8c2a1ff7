//! The `health-probe` Lambda: readiness and liveness through the public API (EventBridge,
//! every minute, two rounds 30 s apart).

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_events("health-probe", health_probe::Probe::new).await
}
