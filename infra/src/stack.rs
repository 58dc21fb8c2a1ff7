//! Creates the local stack from `template.yaml`: every DynamoDB table (keys, GSIs, TTL, stream,
//! point-in-time recovery), SQS queue (dead-letter redrive included), S3 bucket (versioning,
//! lifecycle rules), SES email identity and Secrets Manager secret it declares,
//! named `<prefix>-<LogicalId>` so that every test can have a stack of its own on one server.
//! There is no second list of resources: a resource added to the template exists locally too.
//! Conditions are evaluated with the parameters as a deploy would: a resource whose `Condition`
//! is false is not created (and has no name to `!Ref`), so a stack bootstrapped with
//! `ExistingAppTableName` creates no `AppTable` and its functions use the named table.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use lumi_shared::Env;
use serde_norway::Value;

use crate::template::{LOCAL_ACCOUNT, LOCAL_REGION, Names, Resource, Template};

/// The SDK settings for the local stack: its endpoint, a fixed region, placeholder credentials.
pub async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "lumi-local",
            "lumi-local",
            None,
            None,
            "local",
        ))
        .load()
        .await
}

/// A bootstrapped stack: the template, where it lives, and its resources' local names.
#[derive(Debug, Clone)]
pub struct LocalStack {
    pub template: Template,
    pub endpoint: String,
    pub prefix: String,
    pub names: Names,
    pub sdk_config: SdkConfig,
}

/// Parameter values for a local stack (the rest keep the template's defaults). The local AWS is
/// a Python mock serving one request at a time on a shared development machine: the rate
/// limiter's store timeout is longer than DynamoDB needs, so a busy laptop does not trip it.
pub fn local_parameters() -> HashMap<String, String> {
    HashMap::from([
        ("Stage".to_owned(), "local".to_owned()),
        ("RateLimitTimeoutMs".to_owned(), "1500".to_owned()),
    ])
}

impl LocalStack {
    /// Creates every resource of `template` on the server at `endpoint`.
    pub async fn bootstrap(
        template: Template,
        endpoint: &str,
        prefix: &str,
        parameter_overrides: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let sdk_config = local_sdk_config(endpoint).await;
        let mut parameters = template.parameters();
        parameters.extend(parameter_overrides);
        let mut names = Names {
            stack_name: prefix.to_owned(),
            parameters,
            ..Names::default()
        };
        names.conditions = template.conditions(&names)?;

        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config);
        for table in declared(&template, &names, "AWS::DynamoDB::Table") {
            create_table(&dynamodb, &table, prefix, &mut names).await?;
        }
        let sqs = aws_sdk_sqs::Client::new(&sdk_config);
        let queues = declared(&template, &names, "AWS::SQS::Queue");
        for queue in &queues {
            create_queue(&sqs, queue, prefix, &mut names).await?;
        }
        // Redrive policies name other queues' ARNs: set them once every queue exists.
        for queue in &queues {
            set_redrive(&sqs, queue, &names).await?;
        }
        let s3 = lumi_shared::aws::s3_client(&sdk_config);
        for bucket in declared(&template, &names, "AWS::S3::Bucket") {
            let name = format!("{prefix}-{}", bucket.logical_id).to_ascii_lowercase();
            s3.create_bucket()
                .bucket(&name)
                .send()
                .await
                .with_context(|| format!("creating bucket {name}"))?;
            configure_bucket(&s3, &bucket, &name, &names).await?;
            names.attributes.insert(
                format!("{}.Arn", bucket.logical_id),
                format!("arn:aws:s3:::{name}"),
            );
            names.refs.insert(bucket.logical_id.clone(), name);
        }
        let ses = aws_sdk_sesv2::Client::new(&sdk_config);
        for identity in declared(&template, &names, "AWS::SES::EmailIdentity") {
            let address = names.resolve(
                prop(&identity, "EmailIdentity")
                    .ok_or_else(|| anyhow!("{}: EmailIdentity", identity.logical_id))?,
            )?;
            ses.create_email_identity()
                .email_identity(&address)
                .send()
                .await
                .with_context(|| format!("verifying the SES identity {address}"))?;
            names.refs.insert(identity.logical_id.clone(), address);
        }
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config);
        for secret in declared(&template, &names, "AWS::SecretsManager::Secret") {
            let name = format!("{prefix}-{}", secret.logical_id);
            let created = secrets
                .create_secret()
                .name(&name)
                .secret_string(initial_secret_value(&secret)?)
                .send()
                .await
                .with_context(|| format!("creating secret {name}"))?;
            let arn = created
                .arn
                .ok_or_else(|| anyhow!("secret {name} has no ARN"))?;
            names.refs.insert(secret.logical_id.clone(), arn);
        }
        // Any other resource (functions, log groups, alarms, the API) has no local counterpart,
        // but a `!Ref` to it still resolves to a stable local name; one whose condition is false
        // has none, as in CloudFormation.
        let others: Vec<String> = template
            .resources
            .values()
            .filter(|r| names.creates(r) && !names.refs.contains_key(&r.logical_id))
            .map(|r| r.logical_id.clone())
            .collect();
        for id in others {
            let name = format!("{prefix}-{id}");
            names.refs.insert(id, name);
        }
        Ok(Self {
            template,
            endpoint: endpoint.to_owned(),
            prefix: prefix.to_owned(),
            names,
            sdk_config,
        })
    }

    /// The value of the template's output `name` for this stack (`AppTableName`: the table the
    /// functions use, created or existing); `None` when the output's condition is false.
    pub fn output(&self, name: &str) -> anyhow::Result<Option<String>> {
        let output = self
            .template
            .outputs()
            .into_iter()
            .find(|o| o.name == name)
            .ok_or_else(|| anyhow!("template.yaml has no output {name}"))?;
        if let Some(condition) = &output.condition
            && !self.names.condition(condition)?
        {
            return Ok(None);
        }
        self.names
            .resolve(&output.value)
            .map(Some)
            .with_context(|| format!("output {name}"))
    }

    /// The environment `template.yaml` gives the function built as `binary`, resolved against
    /// this stack, plus what running locally needs (the endpoint).
    pub fn function_env(&self, binary: &str) -> anyhow::Result<Env> {
        let (logical_id, _) = self
            .template
            .functions()?
            .into_iter()
            .find(|(_, b)| b == binary)
            .ok_or_else(|| anyhow!("template.yaml has no function built as {binary}"))?;
        let mut env = Env::default();
        for (key, value) in self.template.function_environment(&logical_id) {
            let resolved = self
                .names
                .resolve(&value)
                .with_context(|| format!("{logical_id} environment variable {key}"))?;
            env.set(key, resolved);
        }
        env.set("AWS_ENDPOINT_URL", self.endpoint.clone());
        env.set("AWS_REGION", LOCAL_REGION);
        env.set("AWS_LAMBDA_FUNCTION_NAME", binary);
        Ok(env)
    }
}

/// The secret's JSON with every key the functions need (see `lumi_shared::secrets`); a deployed
/// stack's Stripe secret key is the operator's to set (`lumi secrets init` never invents one).
pub fn complete_secret_value(existing: Option<&str>) -> anyhow::Result<String> {
    Ok(lumi_shared::secrets::complete_secret_json(existing)?)
}

/// A local secret's first value. `ConfigSecret`: complete, as `lumi secrets init` leaves a
/// deployed one ([`local_secret_value`]). Any other: what CloudFormation generates from its
/// `GenerateSecretString` (the template with `GenerateStringKey` set to 64 random alphanumerics).
fn initial_secret_value(secret: &Resource) -> anyhow::Result<String> {
    if secret.logical_id == "ConfigSecret" {
        return local_secret_value();
    }
    let generate = prop(secret, "GenerateSecretString")
        .ok_or_else(|| anyhow!("{}: no GenerateSecretString", secret.logical_id))?;
    let template = text(generate, "SecretStringTemplate")?;
    let key = text(generate, "GenerateStringKey")?;
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&template)
        .with_context(|| format!("{}: SecretStringTemplate", secret.logical_id))?;
    let value = {
        use rand::distr::{Alphanumeric, SampleString as _};
        Alphanumeric.sample_string(&mut rand::rng(), 64)
    };
    object.insert(key, serde_json::Value::String(value));
    Ok(serde_json::Value::Object(object).to_string())
}

/// A local stack's secret: every key, and the local Stripe server's secret key (it accepts any
/// `sk_…`).
pub fn local_secret_value() -> anyhow::Result<String> {
    let json = lumi_shared::secrets::complete_secret_json(None)?;
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json)?;
    object.entry("stripe_secret_key").or_insert_with(|| {
        serde_json::Value::String(crate::stripe_server::LOCAL_SECRET_KEY.to_owned())
    });
    Ok(serde_json::Value::Object(object).to_string())
}

/// The resources of `kind` a stack with these parameters has (their condition, if any, true).
fn declared(template: &Template, names: &Names, kind: &str) -> Vec<Resource> {
    template
        .of_kind(kind)
        .filter(|r| names.creates(r))
        .cloned()
        .collect()
}

fn prop<'a>(resource: &'a Resource, key: &str) -> Option<&'a Value> {
    resource.properties.get(key)
}

fn text(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("missing {key} in {value:?}"))
}

fn key_schema(value: Option<&Value>) -> anyhow::Result<Vec<KeySchemaElement>> {
    let items = value
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("missing KeySchema"))?;
    items
        .iter()
        .map(|item| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(item, "AttributeName")?)
                .key_type(KeyType::from(text(item, "KeyType")?.as_str()))
                .build()?)
        })
        .collect()
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &Resource,
    prefix: &str,
    names: &mut Names,
) -> anyhow::Result<()> {
    let name = format!("{prefix}-{}", table.logical_id);
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(prop(table, "KeySchema"))?));
    for definition in prop(table, "AttributeDefinitions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(definition, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    text(definition, "AttributeType")?.as_str(),
                ))
                .build()?,
        );
    }
    for index in prop(table, "GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let projection = index.get("Projection");
        let projection_type = projection
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        let non_key: Option<Vec<String>> = projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|attrs| {
                attrs
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(index, "IndexName")?)
                .set_key_schema(Some(key_schema(index.get("KeySchema"))?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection_type))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()?,
        );
    }
    if let Some(stream) = prop(table, "StreamSpecification") {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(
                    text(stream, "StreamViewType")?.as_str(),
                ))
                .build()?,
        );
    }
    let created = request
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    if let Some(ttl) = prop(table, "TimeToLiveSpecification")
        && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(ttl, "AttributeName")?)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enabling TTL on {name}"))?;
    }
    if let Some(pitr) = prop(table, "PointInTimeRecoverySpecification")
        && pitr
            .get("PointInTimeRecoveryEnabled")
            .and_then(Value::as_bool)
            == Some(true)
    {
        client
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enabling point-in-time recovery on {name}"))?;
    }
    let description = created.table_description;
    let arn = description
        .as_ref()
        .and_then(|d| d.table_arn.clone())
        .unwrap_or_else(|| format!("arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"));
    if let Some(stream_arn) = description.and_then(|d| d.latest_stream_arn) {
        names
            .attributes
            .insert(format!("{}.StreamArn", table.logical_id), stream_arn);
    }
    names
        .attributes
        .insert(format!("{}.Arn", table.logical_id), arn);
    names.refs.insert(table.logical_id.clone(), name);
    Ok(())
}

/// A bucket's versioning and lifecycle rules, as declared (`lumi schema status` compares them).
async fn configure_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &Resource,
    name: &str,
    names: &Names,
) -> anyhow::Result<()> {
    if let Some(status) = prop(bucket, "VersioningConfiguration")
        .and_then(|v| v.get("Status"))
        .and_then(Value::as_str)
    {
        client
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::from(status))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("setting the versioning of {name}"))?;
    }
    let rules = crate::schema::declared_lifecycle_rules(bucket, names)?;
    if !rules.is_empty() {
        client
            .put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(
                aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("setting the lifecycle rules of {name}"))?;
    }
    Ok(())
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    queue: &Resource,
    prefix: &str,
    names: &mut Names,
) -> anyhow::Result<()> {
    let fifo = prop(queue, "FifoQueue").and_then(Value::as_bool) == Some(true);
    let name = format!(
        "{prefix}-{}{}",
        queue.logical_id,
        if fifo { ".fifo" } else { "" }
    );
    let mut request = client.create_queue().queue_name(&name);
    for (property, attribute) in [
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
    ] {
        if let Some(value) = prop(queue, property) {
            request = request.attributes(attribute, names.resolve(value)?);
        }
    }
    if fifo {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = request
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .ok_or_else(|| anyhow!("queue {name} has no URL"))?;
    let id = &queue.logical_id;
    names.attributes.insert(
        format!("{id}.Arn"),
        format!("arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"),
    );
    names.attributes.insert(format!("{id}.QueueName"), name);
    names
        .attributes
        .insert(format!("{id}.QueueUrl"), url.clone());
    names.refs.insert(id.clone(), url);
    Ok(())
}

async fn set_redrive(
    client: &aws_sdk_sqs::Client,
    queue: &Resource,
    names: &Names,
) -> anyhow::Result<()> {
    let Some(policy) = prop(queue, "RedrivePolicy") else {
        return Ok(());
    };
    let target = policy.get("deadLetterTargetArn").ok_or_else(|| {
        anyhow!(
            "{}: RedrivePolicy needs deadLetterTargetArn",
            queue.logical_id
        )
    })?;
    let max_receive = policy
        .get("maxReceiveCount")
        .ok_or_else(|| anyhow!("{}: RedrivePolicy needs maxReceiveCount", queue.logical_id))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": names.resolve(target)?,
        "maxReceiveCount": names.resolve(max_receive)?,
    });
    let url = names
        .refs
        .get(&queue.logical_id)
        .ok_or_else(|| anyhow!("queue not created"))?;
    client
        .set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .with_context(|| format!("setting the redrive policy of {}", queue.logical_id))?;
    Ok(())
}

impl LocalStack {
    /// The config secret's JSON as stored now.
    pub async fn config_secret_json(&self) -> anyhow::Result<serde_json::Value> {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk_config);
        let value = client
            .get_secret_value()
            .secret_id(&self.names.refs["ConfigSecret"])
            .send()
            .await
            .context("reading the config secret")?;
        Ok(serde_json::from_str(value.secret_string().unwrap_or("{}"))?)
    }
}
