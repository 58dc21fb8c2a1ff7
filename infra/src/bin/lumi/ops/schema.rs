//! `lumi schema status`: the live tables, queues and buckets against `template.yaml`
//! (`lumi_infra::schema`), one line per drift; exit status 0 when they match, 1 on drift, 2
//! when the check could not run.

use anyhow::bail;
use lumi_infra::template::Template;

use super::sdk_config;
use crate::name_value;

#[derive(Debug, clap::Subcommand)]
pub enum SchemaCommand {
    /// Compare the live resources with template.yaml; exit 0 when they match, 1 on drift, 2
    /// when the check could not run
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Local names are `<prefix>-<LogicalId>` (`make dev`'s prefix is `lumi`)
    #[arg(long, default_value = "lumi")]
    prefix: String,
    /// A resource's physical name, for a deployed stack (the table names, queue URLs and bucket
    /// names of its outputs): `AppTable=lumi-prod-AppTable-1ABC`
    #[arg(long, value_name = "LOGICAL_ID=NAME", value_parser = name_value)]
    name: Vec<(String, String)>,
    /// A parameter the stack was deployed with that the compared properties use
    /// (`BackupArchiveAfterDays=30`)
    #[arg(long, value_name = "NAME=VALUE", value_parser = name_value)]
    parameter: Vec<(String, String)>,
}

impl SchemaCommand {
    /// The exit status.
    pub async fn run(self) -> i32 {
        let Self::Status(args) = self;
        match schema_status(args).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("schema status could not run: {error:#}");
                2
            }
        }
    }
}

/// `lumi schema status`: prints each drift and returns the exit status.
async fn schema_status(args: StatusArgs) -> anyhow::Result<i32> {
    let template = Template::project()?;
    let target = lumi_infra::schema::Target {
        prefix: args.prefix,
        names: args.name.into_iter().collect(),
        parameters: args.parameter.into_iter().collect(),
    };
    for id in target.names.keys() {
        let known = template.resources.get(id).is_some_and(|r| {
            matches!(
                r.kind.as_str(),
                "AWS::DynamoDB::Table" | "AWS::SQS::Queue" | "AWS::S3::Bucket"
            )
        });
        if !known {
            bail!("--name {id}=...: template.yaml has no table, queue or bucket {id}");
        }
    }
    let report = lumi_infra::schema::status(&template, &sdk_config().await, &target).await?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(report.exit_code())
}
