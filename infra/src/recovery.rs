//! Disaster recovery (the yuki runbook's "restore DB → deploy fresh container → readiness"):
//! tables brought back under new names, made to match the template, then used by a deploy with
//! `Existing<LogicalId>Name` parameters instead of tables the stack creates.
//!
//! - [`restore`]: `lumi backup restore`: an export run into new tables
//!   (`backup::restore::restore_into`: every file verified against the manifest first), then each
//!   table [`adopt`]ed.
//! - [`adopt`]: `lumi backup adopt`: a table made by anything else (DynamoDB's point-in-time
//!   restore, a restore from an on-demand backup) checked against the template's declaration of
//!   its logical id with [`crate::schema::check_table`] (what `lumi schema status` compares).
//!   Keys, attributes and indexes must match; what a restore does not carry over is switched on
//!   as declared: time to live, point-in-time recovery, on-demand billing. Nothing is changed
//!   when something cannot be fixed in place.
//! - [`deploy_parameters`]: the `--parameter-overrides` that point a deploy at the tables.

use anyhow::{Context as _, anyhow, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    BillingMode, PointInTimeRecoverySpecification, TimeToLiveSpecification,
};

use crate::{
    schema::{self, Drift, Report},
    template::{Resource, Template},
};

/// What [`adopt`] found and did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub logical_id: String,
    pub name: String,
    /// The settings switched on (`TimeToLive expires_at`, `PointInTimeRecovery`, ...); empty
    /// when the table matched already.
    pub enabled: Vec<String>,
}

/// One table restored by [`restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredTable {
    pub name: String,
    pub items: u64,
    pub adopted: Adopted,
}

/// The outcome of [`restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub run_id: String,
    pub tables: Vec<RestoredTable>,
}

/// The parameter a deploy takes to use an existing table for `logical_id`
/// (`ExistingAppTableName`), if the template has one.
pub fn existing_parameter(template: &Template, logical_id: &str) -> Option<String> {
    let name = format!("Existing{logical_id}Name");
    template.parameters().contains_key(&name).then_some(name)
}

/// `ExistingAppTableName=<name> ...`: the `--parameter-overrides` that point a deploy at
/// `tables` (`(logical id, table name)`).
pub fn deploy_parameters(
    template: &Template,
    tables: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    tables
        .iter()
        .map(|(logical_id, name)| {
            table(template, logical_id)?;
            existing_parameter(template, logical_id)
                .map(|parameter| format!("{parameter}={name}"))
                .ok_or_else(|| {
                    anyhow!("template.yaml has no parameter Existing{logical_id}Name to use {name}")
                })
        })
        .collect()
}

fn table<'a>(template: &'a Template, logical_id: &str) -> anyhow::Result<&'a Resource> {
    template
        .resources
        .get(logical_id)
        .filter(|r| r.kind == "AWS::DynamoDB::Table")
        .ok_or_else(|| anyhow!("template.yaml has no table {logical_id}"))
}

async fn check(
    client: &aws_sdk_dynamodb::Client,
    resource: &Resource,
    name: &str,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    schema::check_table(client, resource, name, &mut report).await?;
    Ok(report)
}

/// How a drift is fixed in place, if it can be.
enum Fix {
    TimeToLive(String),
    PointInTimeRecovery,
    OnDemand,
}

fn fix_for(drift: &Drift) -> Option<Fix> {
    match drift.property.as_str() {
        // A table has one TTL attribute; another one enabled would have to be disabled first
        // (and DynamoDB then refuses a change for an hour): left to the operator.
        "TimeToLive" if drift.live == "DISABLED" => drift
            .declared
            .strip_suffix(" ENABLED")
            .map(|attribute| Fix::TimeToLive(attribute.to_owned())),
        "PointInTimeRecovery" if drift.declared == "ENABLED" => Some(Fix::PointInTimeRecovery),
        "BillingMode" if drift.declared == "PAY_PER_REQUEST" => Some(Fix::OnDemand),
        _ => None,
    }
}

/// A drift that remains while DynamoDB finishes a change just asked for.
fn settling(drift: &Drift) -> bool {
    drift.property == "TimeToLive"
        && drift.live.strip_suffix(" ENABLING") == drift.declared.strip_suffix(" ENABLED")
}

/// Makes the existing table `name` the template's `logical_id`: checks that its keys,
/// attributes and indexes are those declared, then switches on what is declared and off
/// (time to live, point-in-time recovery, on-demand billing). Refuses, changing nothing, when
/// there is no such table or it differs in anything else.
pub async fn adopt(
    template: &Template,
    sdk_config: &SdkConfig,
    logical_id: &str,
    name: &str,
) -> anyhow::Result<Adopted> {
    let resource = table(template, logical_id)?;
    let client = aws_sdk_dynamodb::Client::new(sdk_config);
    let report = check(&client, resource, name).await?;
    if report.drifts.iter().any(|d| d.property == "exists") {
        bail!("there is no table {name}");
    }
    let (fixes, unfixable): (Vec<_>, Vec<_>) = report
        .drifts
        .iter()
        .map(|drift| (drift, fix_for(drift)))
        .partition(|(_, fix)| fix.is_some());
    if !unfixable.is_empty() {
        let lines: Vec<String> = unfixable.iter().map(|(d, _)| d.to_string()).collect();
        bail!(
            "{name} is not the template's {logical_id}; nothing was changed:\n  {}",
            lines.join("\n  ")
        );
    }
    let mut enabled = Vec::new();
    for (_, fix) in fixes {
        match fix {
            Some(Fix::TimeToLive(attribute)) => {
                client
                    .update_time_to_live()
                    .table_name(name)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(&attribute)
                            .enabled(true)
                            .build()?,
                    )
                    .send()
                    .await
                    .with_context(|| format!("enabling time to live on {name}"))?;
                enabled.push(format!("TimeToLive {attribute}"));
            }
            Some(Fix::PointInTimeRecovery) => {
                client
                    .update_continuous_backups()
                    .table_name(name)
                    .point_in_time_recovery_specification(
                        PointInTimeRecoverySpecification::builder()
                            .point_in_time_recovery_enabled(true)
                            .build()?,
                    )
                    .send()
                    .await
                    .with_context(|| format!("enabling point-in-time recovery on {name}"))?;
                enabled.push("PointInTimeRecovery".to_owned());
            }
            Some(Fix::OnDemand) => {
                client
                    .update_table()
                    .table_name(name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await
                    .with_context(|| format!("switching {name} to on-demand billing"))?;
                enabled.push("BillingMode PAY_PER_REQUEST".to_owned());
            }
            None => {}
        }
    }
    let after = check(&client, resource, name).await?;
    let left: Vec<String> = after
        .drifts
        .iter()
        .filter(|d| !settling(d))
        .map(ToString::to_string)
        .collect();
    if !left.is_empty() {
        bail!(
            "{name} still differs from the template's {logical_id}:\n  {}",
            left.join("\n  ")
        );
    }
    Ok(Adopted {
        logical_id: logical_id.to_owned(),
        name: name.to_owned(),
        enabled,
    })
}

async fn exists(client: &aws_sdk_dynamodb::Client, name: &str) -> anyhow::Result<bool> {
    match client.describe_table().table_name(name).send().await {
        Ok(_) => Ok(true),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!("describing {name}"))),
    }
}

/// `lumi backup restore`: the run `run_id` (the newest complete one when `None`) of the backup
/// bucket `bucket` into new tables (`targets`: `(logical id, new table name)`), each then
/// [`adopt`]ed. Refuses a target that exists or that the template does not declare, before
/// creating anything.
pub async fn restore(
    template: &Template,
    sdk_config: &SdkConfig,
    bucket: &str,
    run_id: Option<&str>,
    targets: &[(String, String)],
) -> anyhow::Result<Restored> {
    if targets.is_empty() {
        bail!("name at least one table to restore (LogicalId=new-table-name)");
    }
    for (logical_id, _) in targets {
        table(template, logical_id)?;
    }
    let archive = backup::archive::Archive {
        s3: lumi_shared::aws::s3_client(sdk_config),
        bucket: bucket.to_owned(),
    };
    let run_id = match run_id {
        Some(run) => run.to_owned(),
        None => archive.latest_run().await?,
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk_config);
    for (_, name) in targets {
        if exists(&dynamodb, name).await? {
            bail!("the table {name} exists; restore into a new name (nothing was created)");
        }
    }
    let counted = backup::restore::restore_into(&archive, &dynamodb, &run_id, targets).await?;
    let mut tables = Vec::new();
    for ((logical_id, name), (_, items)) in targets.iter().zip(counted) {
        let adopted = adopt(template, sdk_config, logical_id, name).await?;
        tables.push(RestoredTable {
            name: name.clone(),
            items,
            adopted,
        });
    }
    Ok(Restored { run_id, tables })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_deploy_is_pointed_at_restored_tables_by_parameter() {
        let template = Template::project().unwrap();
        assert_eq!(
            deploy_parameters(
                &template,
                &[
                    ("AppTable".into(), "lumi-app-dr".into()),
                    ("RateLimitTable".into(), "lumi-limits-dr".into())
                ]
            )
            .unwrap(),
            [
                "ExistingAppTableName=lumi-app-dr",
                "ExistingRateLimitTableName=lumi-limits-dr"
            ]
        );
        assert!(deploy_parameters(&template, &[("BackupBucket".into(), "x".into())]).is_err());
    }

    #[test]
    fn only_what_a_restore_leaves_out_is_fixed_in_place() {
        let drift = |property: &str, declared: &str, live: &str| Drift {
            resource: "AppTable".into(),
            property: property.into(),
            declared: declared.into(),
            live: live.into(),
        };
        assert!(matches!(
            fix_for(&drift("TimeToLive", "expires_at ENABLED", "DISABLED")),
            Some(Fix::TimeToLive(a)) if a == "expires_at"
        ));
        assert!(fix_for(&drift("TimeToLive", "expires_at ENABLED", "ttl ENABLED")).is_none());
        assert!(fix_for(&drift("PointInTimeRecovery", "ENABLED", "DISABLED")).is_some());
        assert!(fix_for(&drift("BillingMode", "PAY_PER_REQUEST", "PROVISIONED")).is_some());
        assert!(fix_for(&drift("KeySchema", "pk HASH, sk RANGE", "pk HASH")).is_none());
        assert!(
            fix_for(&drift(
                "GlobalSecondaryIndexes.gsi2.KeySchema",
                "gsi2pk HASH, gsi2sk RANGE",
                "(none)"
            ))
            .is_none()
        );
        assert!(settling(&drift(
            "TimeToLive",
            "expires_at ENABLED",
            "expires_at ENABLING"
        )));
    }
}
