//! `lumi schema status` (`lumi_infra::schema`) against a local stack: a stack just built from
//! `template.yaml` matches it, and drift made on purpose is reported, one line per property.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::types::{
    DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use lumi_infra::{
    schema::{self, Report, Target},
    stack::LocalStack,
};
use lumi_tests::{bootstrap_stack, bootstrap_stack_with, shared_moto};

async fn status(stack: &LocalStack) -> Report {
    schema::status(
        &stack.template,
        &stack.sdk_config,
        &Target::local(&stack.prefix),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stack_built_from_the_template_has_no_drift() {
    let stack = bootstrap_stack(shared_moto()).await;
    let report = status(&stack).await;
    assert_eq!(report.drifts, []);
    assert_eq!(
        report.skipped,
        [],
        "moto implements every describe call used"
    );
    assert_eq!(
        report.checked,
        [
            "AppTable",
            "RateLimitTable",
            "RefundEmailDeadLetterQueue",
            "RefundEmailQueue",
            "BackupBucket",
            "ImagesBucket",
            // Not LogArchiveBucket: its condition (LogArchive=enabled) is false by default, so
            // neither a deploy nor the local stack creates it.
        ]
    );
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.lines(),
        ["6 resource(s) checked, 0 drift(s), 0 propert(ies) skipped"]
    );
}

#[tokio::test]
async fn a_conditional_resource_exists_exactly_when_its_condition_holds() {
    let parameters = [("LogArchive".to_owned(), "enabled".to_owned())];
    let stack = bootstrap_stack_with(shared_moto(), &parameters).await;
    let target = Target {
        parameters: parameters.into_iter().collect(),
        ..Target::local(&stack.prefix)
    };
    let report = schema::status(&stack.template, &stack.sdk_config, &target)
        .await
        .unwrap();
    assert_eq!(report.drifts, []);
    assert_eq!(report.checked.last().unwrap(), "LogArchiveBucket");
    assert!(stack.names.refs.contains_key("LogArchiveBucket"));
    assert_eq!(
        stack.output("LogArchiveBucketName").unwrap(),
        Some(stack.names.refs["LogArchiveBucket"].clone())
    );

    let without = bootstrap_stack(shared_moto()).await;
    assert!(!without.names.refs.contains_key("LogArchiveBucket"));
    assert_eq!(without.output("LogArchiveBucketName").unwrap(), None);
    let s3 = lumi_shared::aws::s3_client(&without.sdk_config);
    let bucket = format!("{}-logarchivebucket", without.prefix);
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
}

#[tokio::test]
async fn drift_made_on_purpose_is_reported_one_line_per_property() {
    let stack = bootstrap_stack(shared_moto()).await;
    let name = |id: &str| stack.names.refs[id].clone();
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk_config);
    dynamodb
        .update_table()
        .table_name(name("AppTable"))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .delete(
                    DeleteGlobalSecondaryIndexAction::builder()
                        .index_name("gsi2")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    dynamodb
        .update_time_to_live()
        .table_name(name("RateLimitTable"))
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
    sqs.set_queue_attributes()
        .queue_url(name("RefundEmailQueue"))
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap();
    sqs.delete_queue()
        .queue_url(name("RefundEmailDeadLetterQueue"))
        .send()
        .await
        .unwrap();
    let s3 = lumi_shared::aws::s3_client(&stack.sdk_config);
    s3.put_bucket_versioning()
        .bucket(name("BackupBucket"))
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_bucket_lifecycle()
        .bucket(name("ImagesBucket"))
        .send()
        .await
        .unwrap();

    let report = status(&stack).await;
    let lines: Vec<String> = report.drifts.iter().map(ToString::to_string).collect();
    let dead_letter_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}-RefundEmailDeadLetterQueue",
        stack.prefix
    );
    assert_eq!(
        lines,
        [
            "drift AppTable GlobalSecondaryIndexes.gsi2.KeySchema: declared gsi2pk HASH, gsi2sk RANGE, live (none)".to_owned(),
            "drift AppTable GlobalSecondaryIndexes.gsi2.Projection: declared ALL, live (none)".to_owned(),
            "drift RateLimitTable TimeToLive: declared expires_at ENABLED, live DISABLED".to_owned(),
            "drift RefundEmailDeadLetterQueue exists: declared yes, live no".to_owned(),
            format!("drift RefundEmailQueue RedrivePolicy.deadLetterTargetArn: declared (no queue RefundEmailDeadLetterQueue), live {dead_letter_arn}"),
            "drift RefundEmailQueue VisibilityTimeout: declared 60, live 30".to_owned(),
            "drift BackupBucket VersioningConfiguration: declared Enabled, live Suspended".to_owned(),
            "drift ImagesBucket LifecycleConfiguration.expire-unprocessed-uploads: declared Enabled prefix=\"uploads/\" expire=1d abort-multipart=1d, live (none)".to_owned(),
            "drift ImagesBucket LifecycleConfiguration.variants-to-infrequent-access: declared Enabled prefix=\"variants/\" transitions=STANDARD_IA@30d, live (none)".to_owned(),
        ]
    );
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        report.lines().last().unwrap(),
        "6 resource(s) checked, 9 drift(s), 0 propert(ies) skipped"
    );
}
