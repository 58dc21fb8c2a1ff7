//! `lumi backup`: the backup function's jobs run now, and disaster recovery
//! (`lumi_infra::recovery`, docs/operations.md "Disaster recovery").

use anyhow::Context as _;
use lumi_infra::template::Template;

use super::sdk_config;
use crate::name_value;

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// A backup now, as the function would run it (`make backup`, against `make dev`'s stack)
    Run(EnvFile),
    /// A restore check now: the newest backup into temporary tables, verified, deleted
    /// (`make restore-check`)
    RestoreCheck(EnvFile),
    /// The complete backup runs, oldest first
    List {
        /// The backup bucket (the stack's `BackupBucketName` output)
        #[arg(long)]
        bucket: String,
    },
    /// Disaster recovery: an export (the newest by default) into new tables, verified against
    /// its manifest, each then adopted; prints the deploy parameters that use them
    Restore {
        /// The backup bucket (the stack's `BackupBucketName` output)
        #[arg(long)]
        bucket: String,
        /// The run to restore (`lumi backup list`); the newest when omitted
        #[arg(long)]
        run: Option<String>,
        /// A table of the export and the new table to restore it into: `AppTable=lumi-prod-restored`
        #[arg(long, required = true, value_name = "LOGICAL_ID=NEW_NAME", value_parser = name_value)]
        table: Vec<(String, String)>,
    },
    /// A table restored another way (DynamoDB's point-in-time restore) checked against the
    /// template (refused when keys, attributes or indexes differ) and given time to live,
    /// point-in-time recovery and on-demand billing
    Adopt {
        /// The template's table and the restored table: `AppTable=lumi-prod-pitr`
        #[arg(long, required = true, value_name = "LOGICAL_ID=NAME", value_parser = name_value)]
        table: Vec<(String, String)>,
    },
}

#[derive(Debug, clap::Args)]
pub struct EnvFile {
    /// The backup function's environment (`make dev` writes target/local-env/backup.env)
    #[arg(long)]
    env_file: String,
}

impl BackupCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Run(file) => backup_job(backup::Job::Backup, &file.env_file).await,
            Self::RestoreCheck(file) => backup_job(backup::Job::RestoreCheck, &file.env_file).await,
            Self::List { bucket } => {
                let archive = backup_archive(&bucket).await;
                for run in archive.complete_runs().await? {
                    println!("{run}");
                }
                Ok(())
            }
            Self::Restore { bucket, run, table } => backup_restore(&bucket, run, table).await,
            Self::Adopt { table } => backup_adopt(table).await,
        }
    }
}

/// Runs a backup job as the function would, with the environment in `env_file` (the one
/// `make dev` writes to `target/local-env/backup.env`).
async fn backup_job(job: backup::Job, env_file: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(env_file)
        .with_context(|| format!("{env_file}: is `make dev` running? it writes this file"))?;
    let mut env = lumi_shared::config::Env::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("{env_file}: `{line}` is not KEY=value"))?;
        env.set(key, value);
    }
    let platform = lumi_shared::bootstrap::platform("backup", &env).await?;
    let output = backup::Jobs::new(platform).run(job).await?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

async fn backup_archive(bucket: &str) -> backup::archive::Archive {
    let sdk = sdk_config().await;
    backup::archive::Archive {
        s3: lumi_shared::aws::s3_client(&sdk),
        bucket: bucket.to_owned(),
    }
}

/// Disaster recovery: an export back into new tables, made to match the template; then a
/// deploy with the parameters printed points the stack at them.
async fn backup_restore(
    bucket: &str,
    run: Option<String>,
    targets: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let template = Template::project()?;
    let overrides = lumi_infra::recovery::deploy_parameters(&template, &targets)?;
    let restored = lumi_infra::recovery::restore(
        &template,
        &sdk_config().await,
        bucket,
        run.as_deref(),
        &targets,
    )
    .await?;
    println!("restored run {}", restored.run_id);
    for table in &restored.tables {
        println!(
            "  {} ({}): {} items, checksums and counts verified; {}",
            table.name,
            table.adopted.logical_id,
            table.items,
            adopted_summary(&table.adopted)
        );
    }
    print_next_step(&overrides);
    Ok(())
}

/// A table restored another way (point-in-time), checked against the template and completed.
async fn backup_adopt(targets: Vec<(String, String)>) -> anyhow::Result<()> {
    let template = Template::project()?;
    let overrides = lumi_infra::recovery::deploy_parameters(&template, &targets)?;
    let sdk = sdk_config().await;
    for (logical_id, name) in &targets {
        let adopted = lumi_infra::recovery::adopt(&template, &sdk, logical_id, name).await?;
        println!("  {name} ({logical_id}): {}", adopted_summary(&adopted));
    }
    print_next_step(&overrides);
    Ok(())
}

fn adopted_summary(adopted: &lumi_infra::recovery::Adopted) -> String {
    if adopted.enabled.is_empty() {
        "matches the template".to_owned()
    } else {
        format!(
            "matches the template once enabled: {}",
            adopted.enabled.join(", ")
        )
    }
}

fn print_next_step(overrides: &[String]) {
    println!(
        "next (docs/operations.md \"Disaster recovery\"): add to parameter_overrides of the stack's env in \
         samconfig.toml:\n  {}\nthen `make deploy ENV=<env>` and check GET /api/v1/health/ready",
        overrides
            .iter()
            .map(|o| o.replacen('=', "=\"", 1) + "\"")
            .collect::<Vec<_>>()
            .join(" ")
    );
}
