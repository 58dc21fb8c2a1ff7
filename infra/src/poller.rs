//! The local stand-in for Lambda's SQS event source: takes messages from the real local queue,
//! hands them to the same handler as an SQS event batch, deletes the ones the handler did not
//! report as failed (the others come back after the visibility timeout, as in AWS, and move to
//! the dead-letter queue after `maxReceiveCount` receives).

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use lumi_shared::bootstrap::SqsHandler;

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

/// Receives up to 10 messages (waiting up to `wait_secs`; keep it 0 against the local stack,
/// which serves one request at a time) and runs one batch.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    handler: &impl SqsHandler,
    wait_secs: i32,
) -> anyhow::Result<Polled> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await?
        .messages
        .unwrap_or_default();
    if received.is_empty() {
        return Ok(Polled::default());
    }
    let mut handles = HashMap::new();
    let records = received
        .iter()
        .map(|message| {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.receipt_handle = message.receipt_handle.clone();
            record.body = message.body.clone();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = Some("us-east-1".into());
            record.attributes = message
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            // String attributes, as Lambda's event source passes them (a trace's `traceparent`).
            record.message_attributes = message
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, value)| value.string_value.is_some())
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = value.string_value;
                    attribute.data_type = Some(value.data_type);
                    (name, attribute)
                })
                .collect();
            if let (Some(id), Some(handle)) = (&message.message_id, &message.receipt_handle) {
                handles.insert(id.clone(), handle.clone());
            }
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    let response = handler.handle(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for (id, handle) in &handles {
        if !failed.contains(&id.as_str()) {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await?;
        }
    }
    Ok(Polled {
        received: handles.len(),
        failed: failed.len(),
    })
}

/// Moves every message of the dead-letter queue back to its source queue (after the cause of
/// the failures is fixed). Returns how many moved.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    target_url: &str,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(dead_letter_url)
            .max_number_of_messages(10)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            return Ok(moved);
        }
        for message in batch {
            sqs.send_message()
                .queue_url(target_url)
                .message_body(message.body.unwrap_or_default())
                .send()
                .await?;
            if let Some(handle) = message.receipt_handle {
                sqs.delete_message()
                    .queue_url(dead_letter_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
            moved += 1;
        }
    }
}
