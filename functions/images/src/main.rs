//! The `images` Lambda: image transforms and stored variants.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_http("images", images::routes).await
}
