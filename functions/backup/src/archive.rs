//! The backup bucket's layout and the manifest of a run.
//!
//! ```text
//! backups/<run id>/<table logical id>/part-00000.jsonl.gz   DynamoDB JSON lines, gzipped
//! backups/<run id>/config.json                              the redacted configuration export
//! backups/<run id>/manifest.json                            written last: its presence marks a complete run
//! restore-checks/<time>.json                                the outcome of each restore check
//! ```
//!
//! Run ids start with the UTC time (`20261123T010000Z-…`), so the newest run sorts last.

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::JobError;

pub const FORMAT: &str = "lumi-backup/1";
pub const RUNS_PREFIX: &str = "backups/";
pub const CHECKS_PREFIX: &str = "restore-checks/";

pub fn manifest_key(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/manifest.json")
}

pub fn config_key(run_id: &str) -> String {
    format!("{RUNS_PREFIX}{run_id}/config.json")
}

pub fn part_key(run_id: &str, table: &str, part: usize) -> String {
    format!("{RUNS_PREFIX}{run_id}/{table}/part-{part:05}.jsonl.gz")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyElement {
    pub attribute: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDefinition {
    pub name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_key_attributes: Vec<String>,
}

/// What it takes to recreate a table's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub key_schema: Vec<KeyElement>,
    pub attribute_definitions: Vec<AttributeDefinition>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<Index>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub key: String,
    pub items: u64,
    pub bytes: u64,
    /// Of the stored (gzipped) bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableExport {
    pub logical_id: String,
    pub name: String,
    pub item_count: u64,
    pub schema: TableSchema,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub run_id: String,
    pub stage: String,
    pub started_at: String,
    pub finished_at: String,
    pub tables: Vec<TableExport>,
    pub config_export: FileEntry,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bucket, through S3.
#[derive(Clone)]
pub struct Archive {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

impl Archive {
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), JobError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| JobError::aws("S3 PutObject", key, e))?;
        Ok(())
    }

    /// A small object (a manifest, the config export), whole.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, JobError> {
        let bytes = self
            .stream(key)
            .await?
            .collect()
            .await
            .map_err(|e| JobError::aws("S3 GetObject body", key, e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// The object's body as it arrives, for files too large to hold.
    pub async fn stream(&self, key: &str) -> Result<ByteStream, JobError> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| JobError::aws("S3 GetObject", key, e))?;
        Ok(object.body)
    }

    pub async fn manifest(&self, run_id: &str) -> Result<Manifest, JobError> {
        let key = manifest_key(run_id);
        let bytes = self.get(&key).await?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| JobError::Corrupt(format!("{key}: not a manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(JobError::Corrupt(format!(
                "{key}: format {} is not {FORMAT}",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Every run that has a manifest, oldest first.
    pub async fn complete_runs(&self) -> Result<Vec<String>, JobError> {
        let mut runs = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(RUNS_PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| JobError::aws("S3 ListObjectsV2", RUNS_PREFIX, e))?;
            for object in page.contents() {
                if let Some(run) = object
                    .key()
                    .and_then(|k| k.strip_prefix(RUNS_PREFIX))
                    .and_then(|k| k.strip_suffix("/manifest.json"))
                {
                    runs.push(run.to_owned());
                }
            }
        }
        runs.sort();
        Ok(runs)
    }

    /// The newest complete run.
    pub async fn latest_run(&self) -> Result<String, JobError> {
        self.complete_runs()
            .await?
            .pop()
            .ok_or_else(|| JobError::Corrupt(format!("no complete backup in s3://{}", self.bucket)))
    }
}
