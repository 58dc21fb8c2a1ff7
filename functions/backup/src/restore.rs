//! Bringing an export back: the restore check (the newest run into temporary tables, compared
//! with the export, then deleted) and the disaster-recovery restore into named tables.
//!
//! Every file is checked against the manifest's SHA-256 and item count before a single item is
//! written, so a corrupt export fails loudly, naming the file, instead of restoring half a table.
//!
//! Memory is bounded whatever the tables' size: a file is read from S3 as a stream, hashed and
//! decompressed chunk by chunk, and its items handed on as each chunk completes them
//! ([`FileItems`]): one S3 chunk and the items it completes are held, never a file or a table.
//! Restoring holds at most `BATCH` × `WRITERS` items (100) besides; the restored table is read
//! back in pages of [`SCAN_PAGE`] items, and compared with the export by digests
//! ([`crate::compare`]: 4 096 buckets, and a second pass over only the buckets that differ).
//! Reading every file twice (verify, then restore) is the price of not holding it.
//!
//! A report names keys and attribute names, never an attribute's value: an item's values include
//! password hashes, and a report goes to the logs and to `restore-checks/`.
//!
//! Temporary tables are named `<table>-restorecheck-<UTC start, yyyymmddThhmmssZ>-<8 hex>`
//! (lowercase). Each check deletes its own whatever happens, and first deletes those of this
//! stack's tables older than [`LEFTOVER_AGE`]: left by a run that was killed (a timeout, the
//! container gone) before it could.

use std::{io::Write as _, time::Duration};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, PutRequest, ScalarAttributeType, Select, TableStatus, TimeToLiveSpecification,
    WriteRequest,
};
use aws_sdk_s3::primitives::ByteStream;
use flate2::write::GzDecoder;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{
    JobError, Jobs,
    archive::{self, FileEntry, Manifest, TableExport, sha256_hex},
    compare::{Localizer, TableDigest},
    dynamo_json::{self, Item},
};

/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// Batches in flight while restoring.
const WRITERS: usize = 4;
/// Items per page when a restored table is read back.
pub const SCAN_PAGE: i32 = 500;
/// A restore-check table older than this is a leftover: twice the longest a Lambda function
/// may run (15 minutes), so a check still running is never deleted under it.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(30 * 60);
/// What a temporary table's name has between the table's name and the stamp.
const MARKER: &str = "-restorecheck-";

/// The items of one export file as they arrive from S3. The SHA-256 and the item count are
/// checked when the stream ends, so the items are trustworthy only once [`Self::next_items`]
/// answered `None`; a file that fails part way is reported by its checksum when that differs
/// (a flipped bit usually breaks the gzip stream first).
pub struct FileItems<'a> {
    entry: &'a FileEntry,
    body: ByteStream,
    hasher: Sha256,
    decoder: GzDecoder<Vec<u8>>,
    lines: u64,
    done: bool,
}

impl<'a> FileItems<'a> {
    pub async fn open(archive: &archive::Archive, entry: &'a FileEntry) -> Result<Self, JobError> {
        Ok(Self {
            entry,
            body: archive.stream(&entry.key).await?,
            hasher: Sha256::new(),
            decoder: GzDecoder::new(Vec::new()),
            lines: 0,
            done: false,
        })
    }

    /// The items the next chunk completes; `None` once the file ended and checked out.
    pub async fn next_items(&mut self) -> Result<Option<Vec<Item>>, JobError> {
        while !self.done {
            let Some(chunk) = self.body.next().await else {
                self.done = true;
                return self.finish();
            };
            let chunk =
                chunk.map_err(|e| JobError::aws("S3 GetObject body", &self.entry.key, e))?;
            self.hasher.update(&chunk);
            let decoded = self
                .decoder
                .write_all(&chunk)
                .map_err(|e| format!("not gzip: {e}"))
                .and_then(|()| self.complete_lines());
            match decoded {
                Ok(items) if items.is_empty() => {}
                Ok(items) => return Ok(Some(items)),
                Err(problem) => return Err(self.failed(problem).await),
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<Vec<Item>>, JobError> {
        let key = &self.entry.key;
        let actual = hex(&std::mem::take(&mut self.hasher).finalize());
        if actual != self.entry.sha256 {
            return Err(JobError::Corrupt(format!(
                "{key}: SHA-256 is {actual}, the manifest says {}",
                self.entry.sha256
            )));
        }
        let rest = self
            .decoder
            .try_finish()
            .map_err(|e| format!("not gzip: {e}"))
            .and_then(|()| self.complete_lines())
            .map_err(|problem| JobError::Corrupt(format!("{key}: {problem}")))?;
        if !self.decoder.get_ref().is_empty() {
            return Err(JobError::Corrupt(format!("{key}: the last line is cut")));
        }
        if self.lines != self.entry.items {
            return Err(JobError::Corrupt(format!(
                "{key}: {} items, the manifest says {}",
                self.lines, self.entry.items
            )));
        }
        Ok((!rest.is_empty()).then_some(rest))
    }

    /// Reads the rest of the file to tell a checksum mismatch (the likelier news) from a bad
    /// file that matches its manifest.
    async fn failed(&mut self, problem: String) -> JobError {
        self.done = true;
        while let Some(Ok(chunk)) = self.body.next().await {
            self.hasher.update(&chunk);
        }
        let actual = hex(&std::mem::take(&mut self.hasher).finalize());
        let key = &self.entry.key;
        if actual != self.entry.sha256 {
            JobError::Corrupt(format!(
                "{key}: SHA-256 is {actual}, the manifest says {}",
                self.entry.sha256
            ))
        } else {
            JobError::Corrupt(format!("{key}: {problem}"))
        }
    }

    /// The complete lines decoded so far, as items; a partial last line stays for later.
    fn complete_lines(&mut self) -> Result<Vec<Item>, String> {
        let buffer = self.decoder.get_mut();
        let Some(end) = buffer.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = buffer.split_off(end + 1);
        let complete = std::mem::replace(buffer, rest);
        let mut items = Vec::new();
        for line in complete[..end].split(|b| *b == b'\n') {
            self.lines += 1;
            let item = serde_json::from_slice(line)
                .map_err(|e| e.to_string())
                .and_then(|v| dynamo_json::item_from_json(&v).map_err(|e| e.to_string()))
                .map_err(|e| format!("line {}: {e}", self.lines))?;
            items.push(item);
        }
        Ok(items)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every file of `table` through (checksums, counts), adding each item to `digest`.
async fn verify_table(
    archive: &archive::Archive,
    table: &TableExport,
    mut digest: Option<&mut TableDigest>,
) -> Result<(), JobError> {
    let mut total = 0u64;
    for entry in &table.files {
        let mut items = FileItems::open(archive, entry).await?;
        while let Some(batch) = items.next_items().await? {
            total += batch.len() as u64;
            if let Some(digest) = digest.as_deref_mut() {
                batch.iter().for_each(|item| digest.add(item));
            }
        }
    }
    if total != table.item_count {
        return Err(JobError::Corrupt(format!(
            "{}: {total} items in its files, the manifest says {}",
            table.logical_id, table.item_count
        )));
    }
    Ok(())
}

/// Every item of `table`'s files, in order, handed to `visit` as they stream by.
async fn for_each_exported(
    archive: &archive::Archive,
    table: &TableExport,
    mut visit: impl FnMut(&Item),
) -> Result<(), JobError> {
    for entry in &table.files {
        let mut items = FileItems::open(archive, entry).await?;
        while let Some(batch) = items.next_items().await? {
            batch.iter().for_each(&mut visit);
        }
    }
    Ok(())
}

/// Writes `table`'s export into `name` as it streams by.
async fn restore_items(
    db: &aws_sdk_dynamodb::Client,
    archive: &archive::Archive,
    table: &TableExport,
    name: &str,
) -> Result<(), JobError> {
    let mut pending = Vec::new();
    for entry in &table.files {
        let mut items = FileItems::open(archive, entry).await?;
        while let Some(batch) = items.next_items().await? {
            pending.extend(batch);
            if pending.len() >= BATCH * WRITERS {
                write_items(db, name, &pending).await?;
                pending.clear();
            }
        }
    }
    write_items(db, name, &pending).await
}

/// Every item of `name`, a page of `page` items at a time, handed to `visit`.
pub async fn for_each_stored(
    db: &aws_sdk_dynamodb::Client,
    name: &str,
    page: i32,
    mut visit: impl FnMut(&Item),
) -> Result<(), JobError> {
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(name)
            .consistent_read(true)
            .limit(page)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| JobError::aws("Scan", name, e))?;
        out.items().iter().for_each(&mut visit);
        match out.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(()),
        }
    }
}

fn key_names(table: &TableExport) -> Vec<String> {
    table
        .schema
        .key_schema
        .iter()
        .map(|k| k.attribute.clone())
        .collect()
}

/// Compares `name` with `table`'s export (folded into `exported` while it was verified): the
/// number of items compared, or which keys and attributes differ.
pub async fn compare_restored(
    db: &aws_sdk_dynamodb::Client,
    archive: &archive::Archive,
    table: &TableExport,
    exported: &TableDigest,
    name: &str,
) -> Result<u64, JobError> {
    let mut restored = TableDigest::new(key_names(table));
    for_each_stored(db, name, SCAN_PAGE, |item| restored.add(item)).await?;
    let differing = exported.differing_buckets(&restored);
    if differing.is_empty() {
        return Ok(restored.items());
    }
    let mut localizer = Localizer::new(key_names(table), &differing);
    for_each_exported(archive, table, |item| localizer.add_exported(item)).await?;
    for_each_stored(db, name, SCAN_PAGE, |item| localizer.add_restored(item)).await?;
    let differences: Vec<String> = localizer
        .differences()
        .iter()
        .map(ToString::to_string)
        .collect();
    Err(JobError::Corrupt(format!(
        "{}: the table restored into {name} differs from the export ({} items restored, the \
         manifest says {}; {} bucket(s) of {} differ): {}",
        table.logical_id,
        restored.items(),
        table.item_count,
        differing.len(),
        crate::compare::BUCKETS,
        differences.join("; ")
    )))
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
    /// Items compared with the export: every one.
    pub compared: u64,
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
    let now = time::OffsetDateTime::now_utc();
    let stack_tables: Vec<&str> = jobs
        .platform
        .config
        .backup
        .tables
        .iter()
        .map(|(_, name)| name.as_str())
        .collect();
    delete_leftovers(db, &stack_tables, now).await?;
    let run_id = archive.latest_run().await?;
    let mut outcome = CheckOutcome {
        run_id: run_id.clone(),
        checked_at: crate::export::rfc3339(now),
        ok: false,
        tables: Vec::new(),
        error: None,
    };
    let check_id = crate::export::run_id(now).to_ascii_lowercase();
    let mut temporary = Vec::new();
    let result = check_run(
        db,
        &archive,
        &run_id,
        &check_id,
        &mut outcome,
        &mut temporary,
    )
    .await;
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

/// When a temporary table of one of `stack_tables` was made, from its name.
fn leftover_stamp(stack_tables: &[&str], name: &str) -> Option<time::OffsetDateTime> {
    let stamp = stack_tables
        .iter()
        .find_map(|table| name.strip_prefix(table)?.strip_prefix(MARKER))?;
    let digits = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<u32>().ok();
    if stamp.get(8..9) != Some("t") || stamp.get(15..16) != Some("z") {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(digits(0..4)?).ok()?,
        month,
        u8::try_from(digits(6..8)?).ok()?,
    )
    .ok()?;
    let time = time::Time::from_hms(
        u8::try_from(digits(9..11)?).ok()?,
        u8::try_from(digits(11..13)?).ok()?,
        u8::try_from(digits(13..15)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

/// Deletes the restore-check tables of `stack_tables` older than [`LEFTOVER_AGE`] (names
/// `<table>-restorecheck-<stamp>-…`): other stacks' tables, and this stack's younger ones
/// (a check running now), are left alone. Returns the names deleted.
pub async fn delete_leftovers(
    db: &aws_sdk_dynamodb::Client,
    stack_tables: &[&str],
    now: time::OffsetDateTime,
) -> Result<Vec<String>, JobError> {
    let mut names = db.list_tables().into_paginator().items().send();
    let mut deleted = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(|e| JobError::aws("ListTables", "", e))?;
        let Some(made) = leftover_stamp(stack_tables, &name) else {
            continue;
        };
        if now - made > LEFTOVER_AGE {
            tracing::warn!(table = %name, %made, "deleting a killed check's table");
            delete_table(db, &name).await;
            deleted.push(name);
        }
    }
    Ok(deleted)
}

async fn check_run(
    db: &aws_sdk_dynamodb::Client,
    archive: &archive::Archive,
    run_id: &str,
    check_id: &str,
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
    // Every file is verified before any table is created; the digests of the export are made
    // on the way.
    let mut digests = Vec::new();
    for table in &manifest.tables {
        let mut digest = TableDigest::new(key_names(table));
        verify_table(archive, table, Some(&mut digest)).await?;
        digests.push(digest);
    }
    for (table, exported) in manifest.tables.iter().zip(&digests) {
        let name = format!("{}{MARKER}{check_id}", table.name);
        temporary.push(name.clone());
        create_table(db, table, &name).await?;
        restore_items(db, archive, table, &name).await?;
        let compared = compare_restored(db, archive, table, exported, &name).await?;
        outcome.tables.push(TableCheck {
            logical_id: table.logical_id.clone(),
            items: compared,
            files: table.files.len(),
            compared,
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
        verify_table(archive, table, None).await?;
        plan.push((table, target));
    }
    let mut restored = Vec::new();
    for (table, target) in plan {
        create_table(db, table, target).await?;
        restore_items(db, archive, table, target).await?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn leftovers_are_told_by_their_stack_and_stamp() {
        let tables = ["t1-AppTable", "t1-RateLimitTable"];
        let made = time::macros::datetime!(2026-11-23 01:02:03 UTC);
        for name in [
            "t1-AppTable-restorecheck-20261123t010203z-abcdef12",
            // The names of earlier versions: the backup run's id in the same place.
            "t1-RateLimitTable-restorecheck-20261123t010203z-deadbeef",
        ] {
            assert_eq!(leftover_stamp(&tables, name), Some(made), "{name}");
        }
        for name in [
            "t2-AppTable-restorecheck-20261123t010203z-abcdef12",
            "t1-AppTable-dr",
            "t1-AppTable-restorecheck-2026112",
            "t1-AppTable-restorecheck-20261323t010203z-x",
            "t1-AppTable-restorecheck-20261123x010203z-x",
        ] {
            assert_eq!(leftover_stamp(&tables, name), None, "{name}");
        }
    }
}
