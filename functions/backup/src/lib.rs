//! The backup function: the runbooks' backups, made to run by themselves.
//!
//! Two jobs, each on its own EventBridge schedule (the event's `detail.job` says which):
//!
//! - `backup` (hourly by default, `BackupSchedule`): every application table exported to the
//!   backup bucket as gzipped DynamoDB JSON lines with a manifest (table, item count, SHA-256 of
//!   each file, start and end time, key schema), and a redacted configuration export
//!   ([`export`], [`redact`], layout in [`archive`]).
//! - `restore-check` (monthly by default, `RestoreCheckSchedule`): the newest export restored
//!   into temporary tables, counts and checksums verified against the manifest, every item
//!   compared with the export in bounded memory ([`compare`]), the tables deleted (and those a
//!   killed run left), the outcome stored in `restore-checks/` ([`restore`]).
//!
//! Each job emits `lumi_backup_runs_total` / `lumi_restore_checks_total` with an `outcome`
//! dimension (`success`, `failure`), which the alarms watch; a failure also fails the
//! invocation, loudly, with the reason (which file, which count), and is sent to the error
//! reporter (`lumi_shared::telemetry::report`) with the function, the job and the event's id,
//! within the reporter's deadline; a report that fails changes nothing of the outcome.
//!
//! Point-in-time recovery stays on for every table as well (the template): these exports are
//! the copy that outlives the table, the account's mistakes and PITR's 35 days.

pub mod archive;
pub mod compare;
pub mod dynamo_json;
pub mod export;
pub mod redact;
pub mod restore;

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lumi_shared::{
    Platform,
    aws::LazyClient,
    bootstrap::EventHandler,
    error::error_chain,
    telemetry::{
        metrics::MetricSet,
        report::{self, ErrorEvent, Source},
    },
};
use serde::{Deserialize, Serialize};

pub const BACKUP_RUNS_TOTAL: &str = "lumi_backup_runs_total";
pub const RESTORE_CHECKS_TOTAL: &str = "lumi_restore_checks_total";

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("backups are not configured: {0}")]
    NotConfigured(&'static str),
    #[error("{op} {target} failed: {message}")]
    Aws {
        op: &'static str,
        target: String,
        message: String,
    },
    /// The export does not match its manifest (or has none): the message names the file.
    #[error("the export is unusable: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Internal(String),
}

impl JobError {
    pub fn aws(op: &'static str, target: &str, error: impl std::error::Error + 'static) -> Self {
        Self::Aws {
            op,
            target: target.to_owned(),
            message: error_chain(&error),
        }
    }
}

/// Which job a schedule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    Backup,
    RestoreCheck,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDetail {
    pub job: Job,
}

#[derive(Clone)]
pub struct Jobs {
    pub platform: Arc<Platform>,
    s3: LazyClient<aws_sdk_s3::Client>,
    secretsmanager: LazyClient<aws_sdk_secretsmanager::Client>,
}

impl Jobs {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            s3: LazyClient::new(&platform.sdk_config, lumi_shared::aws::s3_client),
            secretsmanager: LazyClient::new(
                &platform.sdk_config,
                aws_sdk_secretsmanager::Client::new,
            ),
            platform,
        }
    }

    pub fn archive(&self) -> Result<archive::Archive, JobError> {
        let bucket = self
            .platform
            .config
            .backup
            .bucket
            .clone()
            .ok_or(JobError::NotConfigured("BACKUP_BUCKET is not set"))?;
        Ok(archive::Archive {
            s3: self.s3.get().clone(),
            bucket,
        })
    }

    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.platform.db.client()
    }

    pub fn secretsmanager(&self) -> &aws_sdk_secretsmanager::Client {
        self.secretsmanager.get()
    }

    /// Runs one job, counts its outcome, and fails loudly when it failed.
    pub async fn run(&self, job: Job) -> Result<serde_json::Value, JobError> {
        let metrics = MetricSet::default();
        let (metric, result) = match job {
            Job::Backup => (
                BACKUP_RUNS_TOTAL,
                export::backup(self).await.map(|manifest| {
                    tracing::info!(run_id = %manifest.run_id, tables = manifest.tables.len(), "backup complete");
                    serde_json::json!({
                        "job": "backup",
                        "run_id": manifest.run_id,
                        "tables": manifest.tables.iter().map(|t| serde_json::json!({
                            "table": t.logical_id, "items": t.item_count, "files": t.files.len(),
                        })).collect::<Vec<_>>(),
                    })
                }),
            ),
            Job::RestoreCheck => (
                RESTORE_CHECKS_TOTAL,
                restore::restore_check(self).await.map(|outcome| {
                    tracing::info!(run_id = %outcome.run_id, "restore check passed");
                    serde_json::json!({ "job": "restore-check", "outcome": outcome })
                }),
            ),
        };
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics.count(metric, &[("outcome", outcome)], 1.0);
        self.platform.flush_metrics(&metrics, &[]);
        if let Err(error) = &result {
            tracing::error!(?job, %error, "job failed");
        }
        result
    }
}

impl Jobs {
    /// Tells the error reporter that `job` failed (within its deadline; never fails). The
    /// error names tables, files and counts, never items or secret values.
    async fn report(&self, job: Job, event_id: &str, error: &JobError) {
        let config = &self.platform.config;
        let route = match job {
            Job::Backup => "backup job backup",
            Job::RestoreCheck => "backup job restore-check",
        };
        let message = error.to_string();
        let event = ErrorEvent {
            message: &message,
            source: Source::Event(event_id),
            function: &config.function_name,
            route,
            stage: &config.stage,
        };
        report::report(&self.platform, &event).await;
    }
}

impl EventHandler for Jobs {
    type Event = EventBridgeEvent<JobDetail>;
    type Output = serde_json::Value;

    /// Runs the event's job; a failure is reported (with the event's id) before it fails the
    /// invocation.
    async fn handle(&self, event: Self::Event) -> Result<Self::Output, lambda_runtime::Error> {
        let job = event.detail.job;
        let result = self.run(job).await;
        if let Err(error) = &result {
            self.report(job, event.id.as_deref().unwrap_or("unknown"), error)
                .await;
        }
        Ok(result?)
    }
}
