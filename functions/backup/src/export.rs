//! One backup run: every application table scanned (consistent reads, page by page) into
//! gzipped DynamoDB JSON lines, a file per part of at most [`PART_ITEMS`] items so a large table
//! never sits in memory whole; then the redacted configuration export; then the manifest, last,
//! so a run that died half way is never taken for a backup.
//!
//! Items are exported as stored: sensitive settings sealed (never plain, see
//! `lumi_shared::settings`), password and refresh-token hashes as hashes. Restoring the settings'
//! sealed values needs a `config_encryption_key` that sealed them: the configuration export lists
//! the key ids the secret held (`config_encryption_key_ids`).

use std::io::Write as _;

use aws_sdk_dynamodb::types::{AttributeValue, TableDescription};
use flate2::{Compression, write::GzEncoder};

use crate::{
    JobError, Jobs,
    archive::{
        self, AttributeDefinition, FileEntry, Index, KeyElement, Manifest, TableExport,
        TableSchema, sha256_hex,
    },
    dynamo_json,
};

/// Items per file: about 50 MB of JSON at 500 bytes an item, well inside the function's memory.
pub const PART_ITEMS: u64 = 100_000;

pub fn run_id(now: time::OffsetDateTime) -> String {
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    // Two runs in the same second (a manual run beside the schedule) stay apart.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{stamp}-{}", &suffix[..8])
}

pub fn rfc3339(now: time::OffsetDateTime) -> String {
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs a backup and returns its manifest (already stored).
pub async fn backup(jobs: &Jobs) -> Result<Manifest, JobError> {
    let started = time::OffsetDateTime::now_utc();
    let run_id = run_id(started);
    let archive = jobs.archive()?;
    // Sensitive settings are sealed under the newest key before the table is read, so no export
    // holds one in plain text (a value an earlier version stored so) and a key rotation completes
    // within a backup interval.
    let secrets = jobs
        .platform
        .secrets
        .get()
        .await
        .map_err(|e| JobError::Internal(format!("the config secret: {e}")))?;
    let keys = &secrets.config_encryption_key;
    if jobs
        .platform
        .settings
        .reseal(keys)
        .await
        .map_err(|e| JobError::Internal(format!("sealing the settings: {e}")))?
    {
        tracing::info!("sensitive settings sealed under the newest key");
    }
    let mut tables = Vec::new();
    for (logical_id, name) in &jobs.platform.config.backup.tables {
        tables.push(export_table(jobs, &archive, &run_id, logical_id, name).await?);
    }
    let config = crate::redact::config_export(jobs, keys).await?;
    let config_bytes = serde_json::to_vec_pretty(&config)
        .map_err(|e| JobError::Internal(format!("config export: {e}")))?;
    let config_export = FileEntry {
        key: archive::config_key(&run_id),
        items: 1,
        bytes: config_bytes.len() as u64,
        sha256: sha256_hex(&config_bytes),
    };
    archive
        .put(&config_export.key, config_bytes, "application/json")
        .await?;
    let manifest = Manifest {
        format: archive::FORMAT.into(),
        run_id: run_id.clone(),
        stage: jobs.platform.config.stage.clone(),
        started_at: rfc3339(started),
        finished_at: rfc3339(time::OffsetDateTime::now_utc()),
        tables,
        config_export,
    };
    let bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| JobError::Internal(format!("manifest: {e}")))?;
    archive
        .put(&archive::manifest_key(&run_id), bytes, "application/json")
        .await?;
    Ok(manifest)
}

async fn export_table(
    jobs: &Jobs,
    archive: &archive::Archive,
    run_id: &str,
    logical_id: &str,
    name: &str,
) -> Result<TableExport, JobError> {
    let dynamodb = jobs.dynamodb();
    let described = dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| JobError::aws("DescribeTable", name, e))?;
    let ttl = dynamodb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| JobError::aws("DescribeTimeToLive", name, e))?;
    let ttl_attribute = ttl.time_to_live_description().and_then(|d| {
        (d.time_to_live_status() == Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled))
            .then(|| d.attribute_name().map(str::to_owned))
            .flatten()
    });
    let schema = schema_of(
        described
            .table()
            .ok_or_else(|| JobError::Internal(format!("{name}: DescribeTable said nothing")))?,
        ttl_attribute,
    );

    let mut files = Vec::new();
    let mut part = Part::new();
    let mut total = 0u64;
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(name)
            // A backup must hold every write acknowledged before it read the page.
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| JobError::aws("Scan", name, e))?;
        for item in page.items() {
            part.push(item)?;
            total += 1;
            if part.items >= PART_ITEMS {
                let full = std::mem::replace(&mut part, Part::new());
                files.push(full.store(archive, run_id, logical_id, files.len()).await?);
            }
        }
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    // An empty table still gets one (empty) file: the restore sees the table existed.
    if part.items > 0 || files.is_empty() {
        files.push(part.store(archive, run_id, logical_id, files.len()).await?);
    }
    tracing::info!(
        table = name,
        items = total,
        files = files.len(),
        "table exported"
    );
    Ok(TableExport {
        logical_id: logical_id.to_owned(),
        name: name.to_owned(),
        item_count: total,
        schema,
        files,
    })
}

/// One file being written.
struct Part {
    encoder: GzEncoder<Vec<u8>>,
    items: u64,
}

impl Part {
    fn new() -> Self {
        Self {
            encoder: GzEncoder::new(Vec::new(), Compression::default()),
            items: 0,
        }
    }

    fn push(&mut self, item: &dynamo_json::Item) -> Result<(), JobError> {
        let line = dynamo_json::item_to_json(item).to_string();
        self.encoder
            .write_all(line.as_bytes())
            .and_then(|()| self.encoder.write_all(b"\n"))
            .map_err(|e| JobError::Internal(format!("gzip: {e}")))?;
        self.items += 1;
        Ok(())
    }

    async fn store(
        self,
        archive: &archive::Archive,
        run_id: &str,
        logical_id: &str,
        index: usize,
    ) -> Result<FileEntry, JobError> {
        let bytes = self
            .encoder
            .finish()
            .map_err(|e| JobError::Internal(format!("gzip: {e}")))?;
        let entry = FileEntry {
            key: archive::part_key(run_id, logical_id, index),
            items: self.items,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        archive.put(&entry.key, bytes, "application/gzip").await?;
        Ok(entry)
    }
}

fn schema_of(table: &TableDescription, ttl_attribute: Option<String>) -> TableSchema {
    let keys = |elements: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        elements
            .iter()
            .map(|k| KeyElement {
                attribute: k.attribute_name().to_owned(),
                key_type: k.key_type().as_str().to_owned(),
            })
            .collect::<Vec<_>>()
    };
    TableSchema {
        key_schema: keys(table.key_schema()),
        attribute_definitions: table
            .attribute_definitions()
            .iter()
            .map(|a| AttributeDefinition {
                name: a.attribute_name().to_owned(),
                attribute_type: a.attribute_type().as_str().to_owned(),
            })
            .collect(),
        global_secondary_indexes: table
            .global_secondary_indexes()
            .iter()
            .map(|index| Index {
                name: index.index_name().unwrap_or_default().to_owned(),
                key_schema: keys(index.key_schema()),
                projection_type: index
                    .projection()
                    .and_then(|p| p.projection_type())
                    .map_or("ALL", |p| p.as_str())
                    .to_owned(),
                non_key_attributes: index
                    .projection()
                    .map(|p| p.non_key_attributes().to_vec())
                    .unwrap_or_default(),
            })
            .collect(),
        ttl_attribute,
    }
}
