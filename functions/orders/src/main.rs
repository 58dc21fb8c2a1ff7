//! The `orders` Lambda: everything a customer does.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_http("orders", orders::routes).await
}
