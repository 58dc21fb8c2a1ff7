//! The `admin` Lambda: `/api/v1/admin/*`, admin role only.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_http("admin", admin::routes).await
}
