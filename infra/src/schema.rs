//! `lumi schema status`: the live resources against what `template.yaml` declares (the
//! inventory-mismatch runbook's first step, the migrate-status check).
//!
//! Each resource is reduced to a flat list of properties, `property → value`, once from the
//! template and once from AWS, and the two lists are compared: every property whose values
//! differ is a [`Drift`]. What is compared:
//!
//! - DynamoDB tables (DescribeTable, DescribeTimeToLive, DescribeContinuousBackups): existence,
//!   billing mode, key schema, attribute definitions, each GSI's keys and projection, TTL
//!   (attribute and status), point-in-time recovery.
//! - SQS queues (GetQueueUrl, GetQueueAttributes): existence, the attributes the template sets
//!   (visibility timeout, retention, delay, wait time, FIFO) and the redrive policy (target queue
//!   and receive count).
//! - S3 buckets (HeadBucket, GetBucketVersioning, GetBucketLifecycleConfiguration): existence,
//!   versioning, lifecycle rules (by id).
//!
//! A resource whose `Condition` is false for the parameters given is not expected and not
//! checked, unless [`Target::names`] names it: a stack deployed with `ExistingAppTableName`
//! creates no `AppTable`, and the table it uses instead (`--name AppTable=<its name>`) is
//! compared with `AppTable`'s declaration all the same ([`crate::recovery::adopt`] does that for
//! a restored table before a deploy).
//!
//! Not compared: encryption settings, public access blocks, CORS, tags. A describe call the
//! server does not implement is [`Skipped`] and reported as such, never counted as clean or as
//! drift. Live names are the local stack's (`<prefix>-<LogicalId>`, see [`crate::stack`]) unless
//! [`Target::name`] gives a resource's physical name (a deployed stack's outputs).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
};

use aws_config::SdkConfig;
use aws_sdk_s3::{
    config::http::HttpResponse,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    types::{
        AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter, NoncurrentVersionExpiration, Transition, TransitionStorageClass,
    },
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_norway::Value;

use crate::template::{Names, Resource, Template};

/// What a property is when it is absent, on either side.
pub const NONE: &str = "(none)";

/// One property whose live value differs from the declared one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drift {
    /// The template's logical id (`AppTable`).
    pub resource: String,
    /// `GlobalSecondaryIndexes.gsi2.KeySchema`, `TimeToLive`, `exists`, ...
    pub property: String,
    pub declared: String,
    pub live: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drift {} {}: declared {}, live {}",
            self.resource, self.property, self.declared, self.live
        )
    }
}

/// A property that could not be read (the server does not implement the call).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub resource: String,
    pub property: String,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped {} {}: {}",
            self.resource, self.property, self.reason
        )
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The logical ids checked, in the order checked.
    pub checked: Vec<String>,
    pub drifts: Vec<Drift>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// The command's exit status: 0 when the live stack matches, 1 on any drift.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.drifts.is_empty())
    }

    /// The lines the command prints: drifts, then skips, then the summary.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.drifts.iter().map(ToString::to_string).collect();
        lines.extend(self.skipped.iter().map(ToString::to_string));
        lines.push(format!(
            "{} resource(s) checked, {} drift(s), {} propert(ies) skipped",
            self.checked.len(),
            self.drifts.len(),
            self.skipped.len()
        ));
        lines
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("template.yaml, {resource}: {message}")]
    Template { resource: String, message: String },
    #[error("{resource}: {operation} failed: {message}")]
    Aws {
        resource: String,
        operation: &'static str,
        message: String,
    },
}

fn template_error(resource: &Resource, message: impl fmt::Display) -> SchemaError {
    SchemaError::Template {
        resource: resource.logical_id.clone(),
        message: message.to_string(),
    }
}

/// Which live stack to compare, and the parameter values its template was deployed with.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Local naming: `<prefix>-<LogicalId>` (buckets in lower case, FIFO queues with `.fifo`).
    pub prefix: String,
    /// Physical names by logical id, overriding the prefix: a table's name, a queue's name or
    /// URL, a bucket's name.
    pub names: HashMap<String, String>,
    /// Parameter values overriding the template's defaults (lifecycle days, ...).
    pub parameters: HashMap<String, String>,
}

impl Target {
    /// The local stack named `prefix` (`lumi` for `make dev`).
    pub fn local(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            ..Self::default()
        }
    }

    /// The physical name of `resource`.
    pub fn name(&self, resource: &Resource) -> String {
        if let Some(name) = self.names.get(&resource.logical_id) {
            return name.clone();
        }
        let name = format!("{}-{}", self.prefix, resource.logical_id);
        match resource.kind.as_str() {
            "AWS::S3::Bucket" => name.to_ascii_lowercase(),
            "AWS::SQS::Queue" if is_fifo(resource) => format!("{name}.fifo"),
            _ => name,
        }
    }
}

fn is_fifo(queue: &Resource) -> bool {
    queue.properties.get("FifoQueue").and_then(Value::as_bool) == Some(true)
}

/// Properties of one resource, `property → value`.
type Properties = BTreeMap<String, String>;

/// The properties in which `declared` and `live` differ, a property missing on one side being
/// [`NONE`] there.
pub fn diff(resource: &str, declared: &Properties, live: &Properties) -> Vec<Drift> {
    let keys: BTreeSet<&String> = declared.keys().chain(live.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let d = declared.get(key).map_or(NONE, String::as_str);
            let l = live.get(key).map_or(NONE, String::as_str);
            (d != l).then(|| Drift {
                resource: resource.to_owned(),
                property: key.clone(),
                declared: d.to_owned(),
                live: l.to_owned(),
            })
        })
        .collect()
}

fn missing(resource: &Resource) -> Drift {
    Drift {
        resource: resource.logical_id.clone(),
        property: "exists".into(),
        declared: "yes".into(),
        live: "no".into(),
    }
}

/// Compares every table, queue and bucket of `template` with the live stack `target`.
pub async fn status(
    template: &Template,
    sdk_config: &SdkConfig,
    target: &Target,
) -> Result<Report, SchemaError> {
    let mut report = Report::default();
    let mut names = Names {
        parameters: template.parameters(),
        ..Names::default()
    };
    names.parameters.extend(target.parameters.clone());
    names.conditions = template
        .conditions(&names)
        .map_err(|e| SchemaError::Template {
            resource: "Conditions".into(),
            message: format!("{e:#}"),
        })?;
    let expected_ids: BTreeSet<&str> = template
        .resources
        .values()
        .filter(|r| names.creates(r) || target.names.contains_key(&r.logical_id))
        .map(|r| r.logical_id.as_str())
        .collect();
    let expected = |resource: &&Resource| expected_ids.contains(resource.logical_id.as_str());

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk_config);
    for table in template.of_kind("AWS::DynamoDB::Table").filter(expected) {
        report.checked.push(table.logical_id.clone());
        check_table(&dynamodb, table, &target.name(table), &mut report).await?;
    }

    // Queues first read, then compared: a redrive policy names another queue's ARN.
    let sqs = aws_sdk_sqs::Client::new(sdk_config);
    let queues: Vec<&Resource> = template
        .of_kind("AWS::SQS::Queue")
        .filter(expected)
        .collect();
    let mut live_queues = HashMap::new();
    for queue in &queues {
        let live = read_queue(&sqs, queue, &target.name(queue)).await?;
        let arn = live
            .as_ref()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_else(|| format!("(no queue {})", queue.logical_id));
        names
            .attributes
            .insert(format!("{}.Arn", queue.logical_id), arn);
        live_queues.insert(queue.logical_id.clone(), live);
    }
    for queue in &queues {
        report.checked.push(queue.logical_id.clone());
        match live_queues.remove(&queue.logical_id).flatten() {
            None => report.drifts.push(missing(queue)),
            Some(live) => {
                let declared = declared_queue(queue, &names)?;
                let live = live_queue_properties(&declared, &live);
                report
                    .drifts
                    .extend(diff(&queue.logical_id, &declared, &live));
            }
        }
    }

    let s3 = lumi_shared::aws::s3_client(sdk_config);
    for bucket in template.of_kind("AWS::S3::Bucket").filter(expected) {
        report.checked.push(bucket.logical_id.clone());
        check_bucket(&s3, bucket, &target.name(bucket), &names, &mut report).await?;
    }
    Ok(report)
}

// ------------------------------------------------------------------------------------ tables

fn text<'a>(resource: &Resource, value: &'a Value, key: &str) -> Result<&'a str, SchemaError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| template_error(resource, format!("missing {key}")))
}

fn declared_keys(resource: &Resource, keys: Option<&Value>) -> Result<String, SchemaError> {
    let items = keys
        .and_then(Value::as_sequence)
        .ok_or_else(|| template_error(resource, "missing KeySchema"))?;
    let parts = items
        .iter()
        .map(|item| {
            Ok(format!(
                "{} {}",
                text(resource, item, "AttributeName")?,
                text(resource, item, "KeyType")?
            ))
        })
        .collect::<Result<Vec<_>, SchemaError>>()?;
    Ok(parts.join(", "))
}

fn live_keys(keys: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> String {
    keys.iter()
        .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn projection(kind: &str, non_key: &[String]) -> String {
    if non_key.is_empty() {
        kind.to_owned()
    } else {
        let mut attributes = non_key.to_vec();
        attributes.sort();
        format!("{kind} [{}]", attributes.join(", "))
    }
}

/// A table's properties as `template.yaml` declares them (CloudFormation's defaults where it
/// says nothing: provisioned billing, TTL and point-in-time recovery off).
pub fn declared_table(table: &Resource) -> Result<Properties, SchemaError> {
    let p = &table.properties;
    let mut out = Properties::new();
    out.insert(
        "BillingMode".into(),
        p.get("BillingMode")
            .and_then(Value::as_str)
            .unwrap_or("PROVISIONED")
            .to_owned(),
    );
    out.insert(
        "KeySchema".into(),
        declared_keys(table, p.get("KeySchema"))?,
    );
    for definition in p
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        out.insert(
            format!(
                "AttributeDefinitions.{}",
                text(table, definition, "AttributeName")?
            ),
            text(table, definition, "AttributeType")?.to_owned(),
        );
    }
    for index in p
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let name = text(table, index, "IndexName")?;
        out.insert(
            format!("GlobalSecondaryIndexes.{name}.KeySchema"),
            declared_keys(table, index.get("KeySchema"))?,
        );
        let kind = index
            .get("Projection")
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        let non_key: Vec<String> = index
            .get("Projection")
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        out.insert(
            format!("GlobalSecondaryIndexes.{name}.Projection"),
            projection(kind, &non_key),
        );
    }
    let ttl = p.get("TimeToLiveSpecification");
    let ttl = match ttl.and_then(|t| t.get("Enabled")).and_then(Value::as_bool) {
        Some(true) => format!(
            "{} ENABLED",
            ttl.and_then(|t| t.get("AttributeName"))
                .and_then(Value::as_str)
                .unwrap_or(NONE)
        ),
        _ => "DISABLED".into(),
    };
    out.insert("TimeToLive".into(), ttl);
    let pitr = p
        .get("PointInTimeRecoverySpecification")
        .and_then(|s| s.get("PointInTimeRecoveryEnabled"))
        .and_then(Value::as_bool)
        == Some(true);
    out.insert(
        "PointInTimeRecovery".into(),
        if pitr { "ENABLED" } else { "DISABLED" }.into(),
    );
    Ok(out)
}

fn aws_error<E>(resource: &Resource, operation: &'static str, error: E) -> SchemaError
where
    E: std::error::Error + 'static,
{
    SchemaError::Aws {
        resource: resource.logical_id.clone(),
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// Whether `error` means the server does not implement the operation (an old moto answers such
/// calls with 501 or a `NotImplemented` code).
fn unsupported<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => {
            matches!(
                service.err().code(),
                Some("NotImplemented" | "NotImplementedError" | "UnknownOperationException")
            ) || service.raw().status().as_u16() == 501
        }
        _ => false,
    }
}

/// The `<Status>` of a 200 answer the SDK could not parse (empty when it has none); `None` for
/// any other error.
fn status_from_unparsed_answer<E>(error: &SdkError<E, HttpResponse>) -> Option<String>
where
    E: ProvideErrorMetadata,
{
    let SdkError::ServiceError(service) = error else {
        return None;
    };
    if service.raw().status().as_u16() != 200 || service.err().code().is_some() {
        return None;
    }
    let body = std::str::from_utf8(service.raw().body().bytes()?).ok()?;
    let status = body
        .split_once("<Status>")
        .and_then(|(_, rest)| rest.split_once("</Status>"))
        .map_or("", |(status, _)| status);
    Some(status.to_owned())
}

fn skip(report: &mut Report, resource: &Resource, property: &str, operation: &str) {
    report.skipped.push(Skipped {
        resource: resource.logical_id.clone(),
        property: property.to_owned(),
        reason: format!("the server does not implement {operation}"),
    });
}

/// Compares the table `name` with the declaration of the template's table `table`.
pub async fn check_table(
    client: &aws_sdk_dynamodb::Client,
    table: &Resource,
    name: &str,
    report: &mut Report,
) -> Result<(), SchemaError> {
    let described = match client.describe_table().table_name(name).send().await {
        Ok(out) => out.table,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            report.drifts.push(missing(table));
            return Ok(());
        }
        Err(error) => return Err(aws_error(table, "DescribeTable", error)),
    };
    let Some(described) = described else {
        report.drifts.push(missing(table));
        return Ok(());
    };
    let declared = declared_table(table)?;
    let mut live = Properties::new();
    live.insert(
        "BillingMode".into(),
        described
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map_or("PROVISIONED", |b| b.as_str())
            .to_owned(),
    );
    live.insert("KeySchema".into(), live_keys(described.key_schema()));
    for definition in described.attribute_definitions() {
        live.insert(
            format!("AttributeDefinitions.{}", definition.attribute_name()),
            definition.attribute_type().as_str().to_owned(),
        );
    }
    for index in described.global_secondary_indexes() {
        let name = index.index_name().unwrap_or(NONE);
        live.insert(
            format!("GlobalSecondaryIndexes.{name}.KeySchema"),
            live_keys(index.key_schema()),
        );
        let (kind, non_key) = index.projection().map_or((NONE, &[][..]), |p| {
            (
                p.projection_type().map_or(NONE, |t| t.as_str()),
                p.non_key_attributes(),
            )
        });
        live.insert(
            format!("GlobalSecondaryIndexes.{name}.Projection"),
            projection(kind, non_key),
        );
    }

    match client.describe_time_to_live().table_name(name).send().await {
        Ok(out) => {
            let description = out.time_to_live_description();
            let status = description
                .and_then(|d| d.time_to_live_status())
                .map_or("DISABLED", |s| s.as_str());
            let value = match status {
                "ENABLED" | "ENABLING" => format!(
                    "{} {status}",
                    description.and_then(|d| d.attribute_name()).unwrap_or(NONE)
                ),
                other => other.to_owned(),
            };
            live.insert("TimeToLive".into(), value);
        }
        Err(error) if unsupported(&error) => {
            skip(report, table, "TimeToLive", "DescribeTimeToLive");
            live.insert("TimeToLive".into(), declared["TimeToLive"].clone());
        }
        Err(error) => return Err(aws_error(table, "DescribeTimeToLive", error)),
    }

    match client
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
    {
        Ok(out) => {
            let status = out
                .continuous_backups_description()
                .and_then(|d| d.point_in_time_recovery_description())
                .and_then(|d| d.point_in_time_recovery_status())
                .map_or("DISABLED", |s| s.as_str());
            live.insert("PointInTimeRecovery".into(), status.to_owned());
        }
        Err(error) if unsupported(&error) => {
            skip(
                report,
                table,
                "PointInTimeRecovery",
                "DescribeContinuousBackups",
            );
            live.insert(
                "PointInTimeRecovery".into(),
                declared["PointInTimeRecovery"].clone(),
            );
        }
        Err(error) => return Err(aws_error(table, "DescribeContinuousBackups", error)),
    }
    report
        .drifts
        .extend(diff(&table.logical_id, &declared, &live));
    Ok(())
}

// ------------------------------------------------------------------------------------ queues

/// The queue attributes the template may set, by property name.
const QUEUE_ATTRIBUTES: [(&str, QueueAttributeName); 5] = [
    ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
    (
        "MessageRetentionPeriod",
        QueueAttributeName::MessageRetentionPeriod,
    ),
    (
        "ReceiveMessageWaitTimeSeconds",
        QueueAttributeName::ReceiveMessageWaitTimeSeconds,
    ),
    ("DelaySeconds", QueueAttributeName::DelaySeconds),
    ("FifoQueue", QueueAttributeName::FifoQueue),
];

type QueueAttributes = HashMap<QueueAttributeName, String>;

/// The queue's attributes, or `None` when there is no such queue. `name` may be a URL.
async fn read_queue(
    client: &aws_sdk_sqs::Client,
    queue: &Resource,
    name: &str,
) -> Result<Option<QueueAttributes>, SchemaError> {
    let url = if name.starts_with("http://") || name.starts_with("https://") {
        name.to_owned()
    } else {
        match client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist()) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(aws_error(queue, "GetQueueUrl", error)),
        }
    };
    match client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(error) => Err(aws_error(queue, "GetQueueAttributes", error)),
    }
}

/// A queue's properties as declared: the attributes the template sets, and its redrive policy
/// (the target's ARN resolved through `names`, where the live queues' ARNs are).
pub fn declared_queue(queue: &Resource, names: &Names) -> Result<Properties, SchemaError> {
    let mut out = Properties::new();
    for (property, _) in &QUEUE_ATTRIBUTES {
        if let Some(value) = queue.properties.get(*property) {
            let value = names
                .resolve(value)
                .map_err(|e| template_error(queue, format!("{property}: {e}")))?;
            out.insert((*property).to_owned(), value);
        }
    }
    let policy = queue.properties.get("RedrivePolicy");
    for (key, property) in [
        ("deadLetterTargetArn", "RedrivePolicy.deadLetterTargetArn"),
        ("maxReceiveCount", "RedrivePolicy.maxReceiveCount"),
    ] {
        let value = match policy.and_then(|p| p.get(key)) {
            Some(value) => names
                .resolve(value)
                .map_err(|e| template_error(queue, format!("{property}: {e}")))?,
            None => NONE.to_owned(),
        };
        out.insert(property.to_owned(), value);
    }
    Ok(out)
}

/// The live counterpart of `declared`: the same attributes (only those the template sets; the
/// rest keep whatever default) and the redrive policy.
fn live_queue_properties(declared: &Properties, live: &QueueAttributes) -> Properties {
    let mut out = Properties::new();
    for (property, attribute) in &QUEUE_ATTRIBUTES {
        if declared.contains_key(*property) {
            let value = live.get(attribute).cloned().unwrap_or_else(|| {
                // SQS leaves `FifoQueue` out for a standard queue.
                if *property == "FifoQueue" {
                    "false".into()
                } else {
                    NONE.into()
                }
            });
            out.insert((*property).to_owned(), value);
        }
    }
    let policy: Option<serde_json::Value> = live
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str(p).ok());
    for (key, property) in [
        ("deadLetterTargetArn", "RedrivePolicy.deadLetterTargetArn"),
        ("maxReceiveCount", "RedrivePolicy.maxReceiveCount"),
    ] {
        let value = match policy.as_ref().and_then(|p| p.get(key)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => NONE.to_owned(),
        };
        out.insert(property.to_owned(), value);
    }
    out
}

// ----------------------------------------------------------------------------------- buckets

fn days(resource: &Resource, names: &Names, value: &Value) -> Result<i32, SchemaError> {
    names
        .resolve(value)
        .map_err(|e| template_error(resource, e))?
        .parse()
        .map_err(|e| template_error(resource, format!("a number of days: {e}")))
}

/// The lifecycle rules a bucket declares (`LifecycleConfiguration.Rules`), as S3's own types:
/// what the local stack puts, and what the check compares the live rules with.
pub fn declared_lifecycle_rules(
    bucket: &Resource,
    names: &Names,
) -> Result<Vec<LifecycleRule>, SchemaError> {
    let rules = bucket
        .properties
        .get("LifecycleConfiguration")
        .and_then(|c| c.get("Rules"))
        .and_then(Value::as_sequence);
    let mut out = Vec::new();
    for rule in rules.into_iter().flatten() {
        let mut builder = LifecycleRule::builder()
            .set_id(rule.get("Id").and_then(Value::as_str).map(str::to_owned))
            .status(ExpirationStatus::from(text(bucket, rule, "Status")?));
        let prefix = rule
            .get("Prefix")
            .or_else(|| rule.get("Filter").and_then(|f| f.get("Prefix")))
            .and_then(Value::as_str)
            .unwrap_or_default();
        builder = builder.filter(LifecycleRuleFilter::builder().prefix(prefix).build());
        if let Some(value) = rule.get("ExpirationInDays") {
            builder = builder.expiration(
                LifecycleExpiration::builder()
                    .days(days(bucket, names, value)?)
                    .build(),
            );
        }
        if let Some(value) = rule
            .get("AbortIncompleteMultipartUpload")
            .and_then(|a| a.get("DaysAfterInitiation"))
        {
            builder = builder.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(days(bucket, names, value)?)
                    .build(),
            );
        }
        let transitions = rule
            .get("Transitions")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(rule.get("Transition").cloned());
        for transition in transitions {
            let value = transition
                .get("TransitionInDays")
                .ok_or_else(|| template_error(bucket, "a transition needs TransitionInDays"))?;
            builder = builder.transitions(
                Transition::builder()
                    .days(days(bucket, names, value)?)
                    .storage_class(TransitionStorageClass::from(text(
                        bucket,
                        &transition,
                        "StorageClass",
                    )?))
                    .build(),
            );
        }
        let noncurrent = rule
            .get("NoncurrentVersionExpiration")
            .and_then(|n| n.get("NoncurrentDays"))
            .or_else(|| rule.get("NoncurrentVersionExpirationInDays"));
        if let Some(value) = noncurrent {
            builder = builder.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days(bucket, names, value)?)
                    .build(),
            );
        }
        out.push(builder.build().map_err(|e| template_error(bucket, e))?);
    }
    Ok(out)
}

/// One lifecycle rule in one line: what is compared.
pub fn describe_rule(rule: &LifecycleRule) -> String {
    #[allow(deprecated)] // S3 still answers with the rule-level `Prefix` of older rules.
    let prefix = rule
        .filter()
        .and_then(|f| f.prefix())
        .or(rule.prefix())
        .unwrap_or_default();
    let mut parts = vec![
        rule.status().as_str().to_owned(),
        format!("prefix={prefix:?}"),
    ];
    if let Some(days) = rule.expiration().and_then(|e| e.days()) {
        parts.push(format!("expire={days}d"));
    }
    let mut transitions: Vec<String> = rule
        .transitions()
        .iter()
        .map(|t| {
            format!(
                "{}@{}d",
                t.storage_class().map_or(NONE, |c| c.as_str()),
                t.days().unwrap_or_default()
            )
        })
        .collect();
    transitions.sort();
    if !transitions.is_empty() {
        parts.push(format!("transitions={}", transitions.join("+")));
    }
    if let Some(days) = rule
        .noncurrent_version_expiration()
        .and_then(|n| n.noncurrent_days())
    {
        parts.push(format!("noncurrent-expire={days}d"));
    }
    if let Some(days) = rule
        .abort_incomplete_multipart_upload()
        .and_then(|a| a.days_after_initiation())
    {
        parts.push(format!("abort-multipart={days}d"));
    }
    parts.join(" ")
}

fn lifecycle_properties(rules: &[LifecycleRule], out: &mut Properties) {
    for rule in rules {
        out.insert(
            format!("LifecycleConfiguration.{}", rule.id().unwrap_or(NONE)),
            describe_rule(rule),
        );
    }
}

/// A bucket's properties as declared: versioning and lifecycle rules.
pub fn declared_bucket(bucket: &Resource, names: &Names) -> Result<Properties, SchemaError> {
    let mut out = Properties::new();
    out.insert(
        "VersioningConfiguration".into(),
        bucket
            .properties
            .get("VersioningConfiguration")
            .and_then(|v| v.get("Status"))
            .and_then(Value::as_str)
            .unwrap_or(NONE)
            .to_owned(),
    );
    lifecycle_properties(&declared_lifecycle_rules(bucket, names)?, &mut out);
    Ok(out)
}

async fn check_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &Resource,
    name: &str,
    names: &Names,
    report: &mut Report,
) -> Result<(), SchemaError> {
    match client.head_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
            report.drifts.push(missing(bucket));
            return Ok(());
        }
        Err(error) => return Err(aws_error(bucket, "HeadBucket", error)),
    }
    let declared = declared_bucket(bucket, names)?;
    let mut live = Properties::new();
    match client.get_bucket_versioning().bucket(name).send().await {
        Ok(out) => {
            live.insert(
                "VersioningConfiguration".into(),
                out.status().map_or(NONE, |s| s.as_str()).to_owned(),
            );
        }
        // moto 5.2.5 names its answer's root `GetBucketVersioningResponse`, not
        // `VersioningConfiguration`, which the SDK refuses: the status is read from the body.
        Err(error) if status_from_unparsed_answer(&error).is_some() => {
            let status = status_from_unparsed_answer(&error).unwrap_or_default();
            live.insert(
                "VersioningConfiguration".into(),
                if status.is_empty() {
                    NONE.into()
                } else {
                    status
                },
            );
        }
        Err(error) if unsupported(&error) => {
            skip(
                report,
                bucket,
                "VersioningConfiguration",
                "GetBucketVersioning",
            );
            live.insert(
                "VersioningConfiguration".into(),
                declared["VersioningConfiguration"].clone(),
            );
        }
        Err(error) => return Err(aws_error(bucket, "GetBucketVersioning", error)),
    }
    match client
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
    {
        Ok(out) => lifecycle_properties(out.rules(), &mut live),
        Err(error) if error.code() == Some("NoSuchLifecycleConfiguration") => {}
        Err(error) if unsupported(&error) => {
            skip(
                report,
                bucket,
                "LifecycleConfiguration",
                "GetBucketLifecycleConfiguration",
            );
            for (key, value) in &declared {
                if key.starts_with("LifecycleConfiguration.") {
                    live.insert(key.clone(), value.clone());
                }
            }
        }
        Err(error) => {
            return Err(aws_error(bucket, "GetBucketLifecycleConfiguration", error));
        }
    }
    report
        .drifts
        .extend(diff(&bucket.logical_id, &declared, &live));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn project() -> Template {
        Template::project().unwrap()
    }

    fn names() -> Names {
        Names {
            parameters: project().parameters(),
            ..Names::default()
        }
    }

    #[test]
    fn the_app_table_is_read_from_the_template() {
        let template = project();
        let declared = declared_table(&template.resources["AppTable"]).unwrap();
        assert_eq!(declared["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(declared["KeySchema"], "pk HASH, sk RANGE");
        assert_eq!(
            declared["GlobalSecondaryIndexes.gsi2.KeySchema"],
            "gsi2pk HASH, gsi2sk RANGE"
        );
        assert_eq!(declared["GlobalSecondaryIndexes.gsi1.Projection"], "ALL");
        assert_eq!(declared["TimeToLive"], "expires_at ENABLED");
        assert_eq!(declared["PointInTimeRecovery"], "ENABLED");
        assert_eq!(declared["AttributeDefinitions.gsi1sk"], "S");
    }

    #[test]
    fn diff_names_each_differing_or_one_sided_property() {
        let declared = Properties::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
            ("c".to_owned(), "3".to_owned()),
        ]);
        let live = Properties::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "9".to_owned()),
            ("d".to_owned(), "4".to_owned()),
        ]);
        let lines: Vec<String> = diff("T", &declared, &live)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "drift T b: declared 2, live 9",
                "drift T c: declared 3, live (none)",
                "drift T d: declared (none), live 4",
            ]
        );
    }

    #[test]
    fn lifecycle_rules_resolve_parameters_and_read_as_one_line_each() {
        let template = project();
        let names = names();
        let declared = declared_bucket(&template.resources["BackupBucket"], &names).unwrap();
        let archive = &names.parameters["BackupArchiveAfterDays"];
        let expire = &names.parameters["BackupExpireAfterDays"];
        assert_eq!(declared["VersioningConfiguration"], "Enabled");
        assert_eq!(
            declared["LifecycleConfiguration.archive-then-expire-backups"],
            format!(
                "Enabled prefix=\"backups/\" expire={expire}d transitions=GLACIER@{archive}d noncurrent-expire=30d"
            )
        );
        let images = declared_bucket(&template.resources["ImagesBucket"], &names).unwrap();
        assert_eq!(images["VersioningConfiguration"], NONE);
        assert_eq!(
            images["LifecycleConfiguration.expire-unprocessed-uploads"],
            "Enabled prefix=\"uploads/\" expire=1d abort-multipart=1d"
        );
    }

    #[test]
    fn the_exit_code_is_non_zero_only_on_drift() {
        let mut report = Report::default();
        assert_eq!(report.exit_code(), 0);
        report.skipped.push(Skipped {
            resource: "T".into(),
            property: "p".into(),
            reason: "r".into(),
        });
        assert_eq!(report.exit_code(), 0);
        report
            .drifts
            .push(missing(&project().resources["AppTable"]));
        assert_eq!(report.exit_code(), 1);
        assert_eq!(
            report.lines()[0],
            "drift AppTable exists: declared yes, live no"
        );
    }
}
