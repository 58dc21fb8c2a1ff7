//! The `secret-rotation` Lambda: the config secret's rotation steps (Secrets Manager).

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_events("secret-rotation", secret_rotation::Rotation::new).await
}
