//! The `refund-email` Lambda: SQS batches of refund emails.

#[tokio::main]
async fn main() -> Result<(), lumi_shared::bootstrap::BootError> {
    lumi_shared::bootstrap::run_sqs("refund-email", refund_email::Worker::new).await
}
