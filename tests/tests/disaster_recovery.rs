//! The yuki runbook's disaster recovery (8: "restore DB → deploy fresh container → readiness
//! should pass"), walked as docs/operations.md writes it against the local stack: a backup restored into
//! new tables (`lumi backup restore`), or a point-in-time restore adopted (`lumi backup adopt`),
//! then a stack deployed with `ExistingAppTableName`/`ExistingRateLimitTableName` that creates no
//! table of its own; readiness passes and a customer logs in and finds their order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup::Job;
use lumi_infra::{
    recovery,
    schema::{self, Report},
    stack::LocalStack,
};
use lumi_tests::{TestApp, access_token, unique_prefix, unique_sku};
use serde_norway::Value;

/// A customer with a password and an order: (email, password, order reference).
async fn customer_with_an_order(app: &TestApp) -> (String, String, String) {
    let sku = unique_sku();
    app.product(&[(&sku, 1500, 5)]).await;
    let (tokens, email, password) = app.signed_in_customer().await;
    let order = app
        .place_order_json(&access_token(&tokens), &[(&sku, 2)])
        .await;
    let reference = order["reference"].as_str().unwrap().to_owned();
    (email, password, reference)
}

/// `lumi schema status --name <LogicalId>=<table>` for one table of `app`'s template.
async fn table_status(app: &TestApp, logical_id: &str, name: &str) -> Report {
    let client = aws_sdk_dynamodb::Client::new(&app.stack.sdk_config);
    let mut report = Report::default();
    schema::check_table(
        &client,
        &app.stack.template.resources[logical_id],
        name,
        &mut report,
    )
    .await
    .unwrap();
    report
}

/// Every table of the moto server (other tests' stacks share it).
async fn table_names(app: &TestApp) -> Vec<String> {
    app.dynamodb()
        .list_tables()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
}

/// The table of every DynamoDB ARN in the functions' IAM policies, resolved as a deploy of
/// `stack`'s parameters would (`<table>`, `<table>/index/*`, `<table>-restorecheck-*`).
fn policy_tables(stack: &LocalStack) -> Vec<String> {
    let mut tables = Vec::new();
    for function in stack.template.of_kind("AWS::Serverless::Function") {
        let statements = function
            .properties
            .get("Policies")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("Statement").and_then(Value::as_sequence))
            .flatten();
        for resource in statements.filter_map(|s| s.get("Resource")) {
            let values = match resource {
                Value::Sequence(items) => items.clone(),
                other => vec![other.clone()],
            };
            for value in values {
                let arn = stack.names.resolve(&value).unwrap_or_else(|e| {
                    panic!("{}: {value:?}: {e:#}", function.logical_id);
                });
                if let Some((_, table)) = arn.split_once(":dynamodb:") {
                    tables.push(table.split_once(":table/").unwrap().1.to_owned());
                }
            }
        }
    }
    tables
}

/// Step 3 of the procedure: a stack deployed with the parameters `lumi backup restore` (or
/// `adopt`) printed, `Name=value` each. It must create no table and use the named ones.
async fn deploy_with(parameters: &[String]) -> TestApp {
    let mut builder = TestApp::builder();
    for parameter in parameters {
        let (name, value) = parameter.split_once('=').unwrap();
        builder = builder.parameter(name, value);
    }
    builder.spawn().await
}

/// Steps 4 and 5: readiness passes; the customer logs in with their password and their order is
/// listed.
async fn readiness_passes_and_the_customer_sees_their_order(
    stack: &TestApp,
    email: &str,
    password: &str,
    reference: &str,
) {
    let ready = stack.get("/api/v1/health/ready").await;
    let status = ready.status();
    assert_eq!(status, 200, "{}", ready.text().await.unwrap());
    let token = access_token(&stack.login_json(email, password).await);
    let orders = stack.get_json("/api/v1/orders", &token).await;
    let references: Vec<&str> = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["reference"].as_str())
        .collect();
    assert_eq!(references, [reference], "{orders}");
    let order = stack.customer_order(&token, reference).await;
    assert_eq!(order["reference"], reference);
}

#[tokio::test]
async fn yuki_8_restore_a_backup_into_new_tables_deploy_on_them_and_readiness_passes() {
    let app = TestApp::spawn().await;
    let (email, password, reference) = customer_with_an_order(&app).await;
    let jobs = app.backup_jobs();
    let run = jobs.run(Job::Backup).await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 1-2. `lumi backup restore --bucket <BackupBucketName> --run <run> --table ...`.
    let dr = unique_prefix();
    let targets = [
        ("AppTable".to_owned(), format!("{dr}-restored-app")),
        ("RateLimitTable".to_owned(), format!("{dr}-restored-limits")),
    ];
    let template = &app.stack.template;
    let parameters = recovery::deploy_parameters(template, &targets).unwrap();
    assert_eq!(
        parameters,
        [
            format!("ExistingAppTableName={dr}-restored-app"),
            format!("ExistingRateLimitTableName={dr}-restored-limits"),
        ]
    );
    let restored = recovery::restore(
        template,
        &app.stack.sdk_config,
        &app.resource("BackupBucket"),
        Some(&run),
        &targets,
    )
    .await
    .unwrap();
    assert_eq!(restored.run_id, run);
    for (table, (logical_id, name)) in restored.tables.iter().zip(&targets) {
        assert_eq!(&table.name, name);
        assert!(table.items > 0, "{name}");
        // The restore set what it does not carry over itself: now it is the template's table.
        assert_eq!(table_status(&app, logical_id, name).await.drifts, []);
    }
    assert_eq!(
        restored.tables[0].adopted.enabled,
        ["PointInTimeRecovery"],
        "time to live comes from the manifest, point-in-time recovery from the template"
    );
    // A name that exists is refused before anything is created.
    let fresh = format!("{dr}-second-try");
    let refused = recovery::restore(
        template,
        &app.stack.sdk_config,
        &app.resource("BackupBucket"),
        Some(&run),
        &[("AppTable".to_owned(), fresh.clone()), targets[1].clone()],
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("exists"), "{refused}");
    assert!(!table_names(&app).await.contains(&fresh));

    // 3. Deploy with the parameters: the stack uses the restored tables and creates none.
    let recovered = deploy_with(&parameters).await;
    let prefix = format!("{}-", recovered.stack.prefix);
    let created: Vec<String> = table_names(&app)
        .await
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    assert_eq!(created, Vec::<String>::new(), "no table of its own");
    for id in ["AppTable", "RateLimitTable"] {
        assert!(!recovered.stack.names.refs.contains_key(id), "{id}");
    }
    assert_eq!(
        recovered.stack.output("AppTableName").unwrap().as_deref(),
        Some(targets[0].1.as_str())
    );
    assert_eq!(
        recovered
            .stack
            .output("RateLimitTableName")
            .unwrap()
            .as_deref(),
        Some(targets[1].1.as_str())
    );
    // Every IAM grant on a table names a restored one (its indexes, its restore checks' copies).
    let granted = policy_tables(&recovered.stack);
    assert!(granted.len() > 10, "{granted:?}");
    for table in &granted {
        assert!(
            targets.iter().any(|(_, name)| table == name
                || table == &format!("{name}/index/*")
                || table == &format!("{name}/index/gsi1")
                || table == &format!("{name}-restorecheck-*")),
            "a grant on {table}"
        );
    }
    assert!(granted.contains(&format!("{}/index/*", targets[0].1)));
    assert!(
        policy_tables(&app.stack)
            .iter()
            .all(|t| t.starts_with(&format!("{}-", app.stack.prefix))),
        "without the parameters every grant names the stack's own tables"
    );
    let env = recovered.stack.function_env("orders").unwrap();
    assert_eq!(env.get("APP_TABLE"), Some(targets[0].1.as_str()));
    assert_eq!(env.get("RATE_LIMIT_TABLE"), Some(targets[1].1.as_str()));

    // 4-5. Readiness, then the customer, on the recovered stack.
    readiness_passes_and_the_customer_sees_their_order(&recovered, &email, &password, &reference)
        .await;

    // And the recovered stack's backups export the tables it uses.
    let jobs = recovered.backup_jobs();
    let report = jobs.run(Job::Backup).await.unwrap();
    let manifest = jobs
        .archive()
        .unwrap()
        .manifest(report["run_id"].as_str().unwrap())
        .await
        .unwrap();
    let exported: Vec<(String, String)> = manifest
        .tables
        .iter()
        .map(|t| (t.logical_id.clone(), t.name.clone()))
        .collect();
    assert_eq!(exported, targets);
}

#[tokio::test]
async fn a_point_in_time_restore_is_adopted_then_deployed_the_same_way() {
    let app = TestApp::spawn().await;
    let (email, password, reference) = customer_with_an_order(&app).await;

    // 1. `aws dynamodb restore-table-to-point-in-time --source-table-name <AppTableName>
    //    --target-table-name <new> --use-latest-restorable-time`.
    let target = format!("{}-pitr-app", unique_prefix());
    app.dynamodb()
        .restore_table_to_point_in_time()
        .source_table_name(app.resource("AppTable"))
        .target_table_name(&target)
        .use_latest_restorable_time(true)
        .send()
        .await
        .unwrap();
    let before = table_status(&app, "AppTable", &target).await;
    let drifted: Vec<&str> = before.drifts.iter().map(|d| d.property.as_str()).collect();
    assert!(
        drifted.contains(&"TimeToLive") && drifted.contains(&"PointInTimeRecovery"),
        "a restored table has neither: {drifted:?}"
    );

    // 2. `lumi backup adopt --table AppTable=<new>`.
    let adopted = recovery::adopt(
        &app.stack.template,
        &app.stack.sdk_config,
        "AppTable",
        &target,
    )
    .await
    .unwrap();
    assert!(
        adopted
            .enabled
            .contains(&"TimeToLive expires_at".to_owned())
            && adopted.enabled.contains(&"PointInTimeRecovery".to_owned()),
        "{adopted:?}"
    );
    assert_eq!(table_status(&app, "AppTable", &target).await.drifts, []);
    let again = recovery::adopt(
        &app.stack.template,
        &app.stack.sdk_config,
        "AppTable",
        &target,
    )
    .await
    .unwrap();
    assert_eq!(
        again.enabled,
        Vec::<String>::new(),
        "adopting is repeatable"
    );

    // 3-5. Deploy with it (the rate-limit table is the stack's own), readiness, the customer.
    let parameters =
        recovery::deploy_parameters(&app.stack.template, &[("AppTable".into(), target.clone())])
            .unwrap();
    let recovered = deploy_with(&parameters).await;
    assert!(!recovered.stack.names.refs.contains_key("AppTable"));
    assert!(recovered.stack.names.refs.contains_key("RateLimitTable"));
    readiness_passes_and_the_customer_sees_their_order(&recovered, &email, &password, &reference)
        .await;
}

#[tokio::test]
async fn a_table_that_is_not_the_template_s_is_refused_and_left_unchanged() {
    let app = TestApp::spawn().await;
    let name = format!("{}-not-app", unique_prefix());
    app.dynamodb()
        .create_table()
        .table_name(&name)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let refused = recovery::adopt(
        &app.stack.template,
        &app.stack.sdk_config,
        "AppTable",
        &name,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("not the template's AppTable") && refused.contains("KeySchema"),
        "{refused}"
    );
    let after = table_status(&app, "AppTable", &name).await;
    assert!(
        after
            .drifts
            .iter()
            .any(|d| d.property == "TimeToLive" && d.live == "DISABLED"),
        "nothing was switched on"
    );
    let missing = recovery::adopt(
        &app.stack.template,
        &app.stack.sdk_config,
        "AppTable",
        &format!("{name}-absent"),
    )
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("no table"), "{missing}");
    app.dynamodb()
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
}
