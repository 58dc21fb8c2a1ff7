//! Bringing an export back: the restore check (the newest run into temporary tables, verified,
//! then deleted) and the disaster-recovery restore into named tables.
//!
//! Every file is checked against the manifest's SHA-256 and item count before a single item is
//! written, so a corrupt export fails loudly, naming the file, instead of restoring half a table.

use std::{collections::HashMap, io::Read as _, time::Duration};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, PutRequest, ScalarAttributeType, Select, TableStatus, TimeToLiveSpecification,
    WriteRequest,
};
use flate2::read::GzDecoder;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use crate::{
    JobError, Jobs,
    archive::{self, FileEntry, Manifest, TableExport, sha256_hex},
    dynamo_json::{self, Item},
};

/// Items read back and compared in a restore check, per table.
pub const SAMPLE_SIZE: usize = 25;
/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// Batches in flight while restoring.
const WRITERS: usize = 4;

/// One file's items, after its checksum and count were verified.
pub async fn read_file(
    archive: &archive::Archive,
    entry: &FileEntry,
) -> Result<Vec<Item>, JobError> {
    let bytes = archive.get(&entry.key).await?;
    let actual = sha256_hex(&bytes);
    if actual != entry.sha256 {
        return Err(JobError::Corrupt(format!(
            "{}: SHA-256 is {actual}, the manifest says {}",
            entry.key, entry.sha256
        )));
    }
    let mut text = String::new();
    GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| JobError::Corrupt(format!("{}: not gzipped JSON lines: {e}", entry.key)))?;
    let items = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| e.to_string())
                .and_then(|v| dynamo_json::item_from_json(&v).map_err(|e| e.to_string()))
                .map_err(|e| JobError::Corrupt(format!("{} line {}: {e}", entry.key, n + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if items.len() as u64 != entry.items {
        return Err(JobError::Corrupt(format!(
            "{}: {} items, the manifest says {}",
            entry.key,
            items.len(),
            entry.items
        )));
    }
    Ok(items)
}

/// Every file of a table, verified.
pub async fn read_table(
    archive: &archive::Archive,
    table: &TableExport,
) -> Result<Vec<Item>, JobError> {
    let mut items = Vec::with_capacity(table.item_count as usize);
    for entry in &table.files {
        items.extend(read_file(archive, entry).await?);
    }
    if items.len() as u64 != table.item_count {
        return Err(JobError::Corrupt(format!(
            "{}: {} items in its files, the manifest says {}",
            table.logical_id,
            items.len(),
            table.item_count
        )));
    }
    Ok(items)
}

/// Creates `name` with the exported table's keys and indexes, and waits until it is active.
pub async fn create_table(
    db: &aws_sdk_dynamodb::Client,
    table: &TableExport,
    name: &str,
) -> Result<(), JobError> {
    let keys = |elements: &[archive::KeyElement]| {
        elements
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(&k.attribute)
                    .key_type(KeyType::from(k.key_type.as_str()))
                    .build()
                    .map_err(|e| JobError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let schema = &table.schema;
    let mut request = db
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys(&schema.key_schema)?));
    for definition in &schema.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&definition.name)
                .attribute_type(ScalarAttributeType::from(
                    definition.attribute_type.as_str(),
                ))
                .build()
                .map_err(|e| JobError::Internal(e.to_string()))?,
        );
    }
    for index in &schema.global_secondary_indexes {
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(index.projection_type.as_str()))
            .set_non_key_attributes(
                (!index.non_key_attributes.is_empty()).then(|| index.non_key_attributes.clone()),
            )
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(keys(&index.key_schema)?))
                .projection(projection)
                .build()
                .map_err(|e| JobError::Internal(e.to_string()))?,
        );
    }
    request
        .send()
        .await
        .map_err(|e| JobError::aws("CreateTable", name, e))?;
    // DynamoDB takes seconds to a few minutes to make a table active.
    let mut wait = Duration::from_millis(200);
    for _ in 0..60 {
        let described = db
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| JobError::aws("DescribeTable", name, e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
    Err(JobError::Internal(format!("{name} did not become active")))
}

/// Writes `items` into `name`, 25 per batch, a few batches at a time; unprocessed items are
/// retried with backoff.
pub async fn write_items(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
    items: &[Item],
) -> Result<(), JobError> {
    // The futures are made up front: a closure inside the stream would not be `Send` for every
    // lifetime, which the Lambda runtime needs.
    let batches: Vec<_> = items
        .chunks(BATCH)
        .map(|chunk| write_batch(db, name, chunk))
        .collect();
    futures::stream::iter(batches)
        .buffer_unordered(WRITERS)
        .try_collect::<()>()
        .await
}

async fn write_batch(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
    chunk: &[Item],
) -> Result<(), JobError> {
    let mut pending: Vec<WriteRequest> = chunk
        .iter()
        .map(|item| {
            PutRequest::builder()
                .set_item(Some(item.clone()))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
                .map_err(|e| JobError::Internal(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut wait = Duration::from_millis(50);
    for _ in 0..10 {
        let out = db
            .batch_write_item()
            .request_items(name, pending)
            .send()
            .await
            .map_err(|e| JobError::aws("BatchWriteItem", name, e))?;
        pending = out
            .unprocessed_items()
            .and_then(|u| u.get(name))
            .cloned()
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    Err(JobError::Internal(format!(
        "{name}: {} items still unprocessed after retries",
        pending.len()
    )))
}

async fn count_items(db: &aws_sdk_dynamodb::Client, name: &str) -> Result<u64, JobError> {
    let mut total = 0u64;
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(name)
            .select(Select::Count)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| JobError::aws("Scan", name, e))?;
        total += page.count() as u64;
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(total),
        }
    }
}

/// Reads up to [`SAMPLE_SIZE`] items, spread over the export, back from `name` and compares
/// them with the export.
async fn check_sample(
    db: &aws_sdk_dynamodb::Client,
    table: &TableExport,
    name: &str,
    items: &[Item],
) -> Result<usize, JobError> {
    let key_names: Vec<&str> = table
        .schema
        .key_schema
        .iter()
        .map(|k| k.attribute.as_str())
        .collect();
    let step = (items.len() / SAMPLE_SIZE).max(1);
    let mut checked = 0;
    for item in items.iter().step_by(step).take(SAMPLE_SIZE) {
        let key: HashMap<_, _> = key_names
            .iter()
            .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        let read = db
            .get_item()
            .table_name(name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| JobError::aws("GetItem", name, e))?;
        if read.item() != Some(item) {
            return Err(JobError::Corrupt(format!(
                "{}: an item read back from {name} differs from the export: {}",
                table.logical_id,
                dynamo_json::item_to_json(item)
            )));
        }
        checked += 1;
    }
    Ok(checked)
}

async fn delete_table(db: &aws_sdk_dynamodb::Client, name: &str) {
    if let Err(error) = db.delete_table().table_name(name).send().await {
        tracing::error!(table = name, error = %lumi_shared::error::error_chain(&error), "temporary table not deleted");
    }
}

/// One table's part of a restore check.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub logical_id: String,
    pub items: u64,
    pub files: usize,
    pub sampled: usize,
}

/// The outcome of a restore check, as stored in `restore-checks/`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub run_id: String,
    pub checked_at: String,
    pub ok: bool,
    pub tables: Vec<TableCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The restore check of the newest complete run; the outcome is recorded whatever happens.
pub async fn restore_check(jobs: &Jobs) -> Result<CheckOutcome, JobError> {
    let archive = jobs.archive()?;
    let db = jobs.dynamodb();
    let run_id = archive.latest_run().await?;
    let mut outcome = CheckOutcome {
        run_id: run_id.clone(),
        checked_at: crate::export::rfc3339(time::OffsetDateTime::now_utc()),
        ok: false,
        tables: Vec::new(),
        error: None,
    };
    let mut temporary = Vec::new();
    let result = check_run(db, &archive, &run_id, &mut outcome, &mut temporary).await;
    for name in &temporary {
        delete_table(db, name).await;
    }
    match &result {
        Ok(()) => outcome.ok = true,
        Err(error) => outcome.error = Some(error.to_string()),
    }
    let key = format!(
        "{}{}-{run_id}.json",
        archive::CHECKS_PREFIX,
        outcome.checked_at.replace(':', "")
    );
    let bytes = serde_json::to_vec_pretty(&outcome)
        .map_err(|e| JobError::Internal(format!("outcome: {e}")))?;
    archive.put(&key, bytes, "application/json").await?;
    result.map(|()| outcome)
}

async fn check_run(
    db: &aws_sdk_dynamodb::Client,
    archive: &archive::Archive,
    run_id: &str,
    outcome: &mut CheckOutcome,
    temporary: &mut Vec<String>,
) -> Result<(), JobError> {
    let manifest: Manifest = archive.manifest(run_id).await?;
    let config = archive.get(&manifest.config_export.key).await?;
    if sha256_hex(&config) != manifest.config_export.sha256 {
        return Err(JobError::Corrupt(format!(
            "{}: SHA-256 differs from the manifest",
            manifest.config_export.key
        )));
    }
    let suffix = run_id.to_ascii_lowercase();
    for table in &manifest.tables {
        // Every file is verified before any table is created.
        let items = read_table(archive, table).await?;
        let name = format!("{}-restorecheck-{suffix}", table.name);
        create_table(db, table, &name).await?;
        temporary.push(name.clone());
        write_items(db, &name, &items).await?;
        let counted = count_items(db, &name).await?;
        if counted != table.item_count {
            return Err(JobError::Corrupt(format!(
                "{}: {counted} items restored, the manifest says {}",
                table.logical_id, table.item_count
            )));
        }
        let sampled = check_sample(db, table, &name, &items).await?;
        outcome.tables.push(TableCheck {
            logical_id: table.logical_id.clone(),
            items: counted,
            files: table.files.len(),
            sampled,
        });
    }
    Ok(())
}

/// Disaster recovery: run `run_id` back into new tables, `targets` mapping each exported
/// table's logical id to the name to create. Refuses a target that exists.
pub async fn restore_into(
    archive: &archive::Archive,
    db: &aws_sdk_dynamodb::Client,
    run_id: &str,
    targets: &[(String, String)],
) -> Result<Vec<(String, u64)>, JobError> {
    let manifest = archive.manifest(run_id).await?;
    let mut plan = Vec::new();
    for (logical_id, target) in targets {
        let table = manifest
            .tables
            .iter()
            .find(|t| &t.logical_id == logical_id)
            .ok_or_else(|| JobError::Corrupt(format!("run {run_id} has no table {logical_id}")))?;
        // Verify everything before creating anything.
        plan.push((table, target, read_table(archive, table).await?));
    }
    let mut restored = Vec::new();
    for (table, target, items) in plan {
        create_table(db, table, target).await?;
        write_items(db, target, &items).await?;
        if let Some(attribute) = &table.schema.ttl_attribute {
            db.update_time_to_live()
                .table_name(target)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()
                        .map_err(|e| JobError::Internal(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| JobError::aws("UpdateTimeToLive", target, e))?;
        }
        let counted = count_items(db, target).await?;
        if counted != table.item_count {
            return Err(JobError::Corrupt(format!(
                "{target}: {counted} items restored, the manifest says {}",
                table.item_count
            )));
        }
        restored.push((target.clone(), counted));
    }
    Ok(restored)
}
