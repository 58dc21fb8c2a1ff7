//! `template.yaml` is the one source of truth: the gateway serves exactly its routes, every
//! route reaches its function, the OpenAPI document describes every route, and the sample events
//! in `events/` run through their functions' Lambda handlers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use lumi_infra::template::Template;
use lumi_tests::{TestApp, bootstrap_stack, shared_moto};
use serde_json::Value;

fn template_routes() -> BTreeSet<(String, String, String)> {
    // Read the YAML directly, not through the gateway's reader.
    let text = std::fs::read_to_string(lumi_infra::workspace_root().join("template.yaml")).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut routes = BTreeSet::new();
    for (_, resource) in root["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_owned();
        for (_, event) in resource["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            if event["Type"].as_str() == Some("HttpApi") {
                let props = &event["Properties"];
                routes.insert((
                    props["Method"].as_str().unwrap().to_ascii_uppercase(),
                    props["Path"].as_str().unwrap().to_owned(),
                    binary.clone(),
                ));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_gateway_serves_exactly_the_template_routes_each_by_its_function() {
    let app = TestApp::spawn().await;
    let served: BTreeSet<_> = app
        .routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.function.clone()))
        .collect();
    assert_eq!(served, template_routes());

    for (method, path, function) in template_routes() {
        if method == "ANY" {
            continue;
        }
        let concrete = path.replace(['{', '}'], "");
        let request = app
            .http
            .request(method.parse().unwrap(), app.url(&concrete));
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && body["type"] != "https://lumi-commerce.com/problems/route-not-found",
            "{method} {path} is not served by {function}: {status} {body}"
        );
    }
}

#[test]
fn the_openapi_document_describes_every_route_and_the_api_version() {
    let text =
        std::fs::read_to_string(lumi_infra::workspace_root().join("docs/openapi.yaml")).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(doc["openapi"].as_str().unwrap(), "3.1.0");
    assert_eq!(
        doc["info"]["version"].as_str().unwrap(),
        lumi_shared::API_VERSION
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "head", "post", "put", "patch", "delete"].contains(&method) {
                documented.insert((
                    method.to_ascii_uppercase(),
                    path.as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let declared: BTreeSet<_> = template_routes()
        .into_iter()
        .filter(|(method, _, _)| method != "ANY")
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(
        documented, declared,
        "docs/openapi.yaml and template.yaml differ"
    );
}

#[test]
fn every_template_function_is_known_to_the_gateway() {
    let template = Template::project().unwrap();
    for (logical_id, binary) in template.functions().unwrap() {
        let has_http_routes = template
            .http_routes()
            .unwrap()
            .iter()
            .any(|r| r.function == binary);
        if has_http_routes {
            assert!(
                lumi_infra::functions::routes_of(&binary).is_some(),
                "{logical_id} ({binary})"
            );
        }
    }
}

/// Every file in `events/<function>/` goes through the same adapter `lambda_http::run` uses, and
/// answers with a 2xx API Gateway response, or the status its name gives (`me.401.json`).
#[tokio::test]
async fn every_sample_event_runs_through_its_function() {
    let stack = bootstrap_stack(shared_moto()).await;
    let events_dir = lumi_infra::workspace_root().join("events");
    let mut seen = 0;
    for function_dir in std::fs::read_dir(&events_dir).unwrap() {
        let function_dir = function_dir.unwrap().path();
        let function = function_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let Some(routes) = lumi_infra::functions::routes_of(&function) else {
            continue; // SQS and schedule functions: their own tests below
        };
        let env = stack.function_env(&function).unwrap();
        let platform = lumi_shared::bootstrap::platform(&function, &env)
            .await
            .unwrap();
        let app = lumi_shared::bootstrap::app(platform, routes);
        let mut files: Vec<_> = std::fs::read_dir(&function_dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        // In name order: `01-register.json` before `02-login.json`.
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let request: lambda_http::request::LambdaRequest = serde_json::from_str(&text).unwrap();
            let event =
                lambda_runtime::LambdaEvent::new(request, lambda_runtime::Context::default());
            let mut adapter = lambda_http::Adapter::from(app.clone());
            let response = tower::Service::call(&mut adapter, event).await.unwrap();
            let response = serde_json::to_value(&response).unwrap();
            let status = response["statusCode"].as_u64().unwrap();
            // `me.401.json` expects 401; a name without a status expects success.
            let stem = file.file_stem().unwrap().to_str().unwrap();
            match stem
                .rsplit_once('.')
                .and_then(|(_, s)| s.parse::<u64>().ok())
            {
                Some(expected) => assert_eq!(status, expected, "{}: {response}", file.display()),
                None => assert!(
                    (200..300).contains(&status),
                    "{}: {response}",
                    file.display()
                ),
            }
            let headers = &response["headers"];
            assert_eq!(
                headers["x-request-id"],
                "Hx7Yk3JqoAMEbXw=",
                "{}",
                file.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 12, "only {seen} events found");
}

/// The SQS sample events run through the refund-email worker as Lambda would call it.
#[tokio::test]
async fn the_sqs_sample_events_run_through_the_refund_email_worker() {
    use lumi_shared::bootstrap::SqsHandler as _;
    let app = lumi_tests::TestApp::spawn().await;
    let worker = app.refund_worker(&[]);
    for name in ["batch.json", "empty-batch.json"] {
        let path = lumi_infra::workspace_root()
            .join("events/refund-email")
            .join(name);
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let response = worker.handle(event).await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
    }
    assert!(
        app.sent_emails()
            .await
            .iter()
            .any(|e| e["destinations"].to_string().contains("yuki@lumi.local"))
    );
}

/// Every `Schedule` event of the template has a valid expression (with the parameters'
/// defaults) and a handler the local scheduler can run.
#[test]
fn every_schedule_parses_and_has_a_local_handler() {
    let template = lumi_infra::template::Template::project().unwrap();
    let names = lumi_infra::template::Names {
        parameters: template.parameters(),
        ..Default::default()
    };
    let schedules = template.schedules().unwrap();
    assert!(schedules.len() >= 2, "backup and restore check");
    for event in schedules {
        let expression = names.resolve(&event.expression).unwrap();
        lumi_infra::schedule::Schedule::parse(&expression)
            .unwrap_or_else(|e| panic!("{}: {e}", event.name));
        assert!(
            lumi_infra::functions::event_handler_of(&event.function).is_some(),
            "{}",
            event.function
        );
        let input: serde_json::Value =
            serde_json::from_str(event.input.as_deref().unwrap()).unwrap();
        assert!(input["detail"]["job"].is_string());
    }
}

/// The catch-all's route table (405 with `Allow`) is the template's routes.
#[test]
fn the_edge_route_table_is_the_templates() {
    let table: BTreeSet<(String, String)> = lumi_shared::http::routes::API_ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let template: BTreeSet<(String, String)> = template_routes()
        .into_iter()
        .filter(|(method, _, _)| method != "ANY")
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(
        table, template,
        "lumi_shared::http::routes::API_ROUTES must list exactly the template's routes"
    );
}

/// The stack's own namespace, as the template writes it.
const STACK_NAMESPACE: &str = "Lumi/${AWS::StackName}";

/// Every `Namespace` under `value` (alarms' `Namespace` and `MetricStat.Metric.Namespace`).
fn namespaces<'a>(value: &'a serde_norway::Value, out: &mut Vec<&'a serde_norway::Value>) {
    match value {
        serde_norway::Value::Mapping(map) => {
            for (key, inner) in map {
                if key.as_str() == Some("Namespace") {
                    out.push(inner);
                } else {
                    namespaces(inner, out);
                }
            }
        }
        serde_norway::Value::Sequence(items) => items.iter().for_each(|i| namespaces(i, out)),
        serde_norway::Value::Tagged(tagged) => namespaces(&tagged.value, out),
        _ => {}
    }
}

/// Two stacks in one account and region do not mix their metrics: the functions publish in
/// `Lumi/<stack name>`, and every alarm (the canary's rollback alarms among them) and every
/// dashboard widget reading a Lumi metric reads that namespace, not another stack's.
#[test]
fn every_alarm_and_widget_reads_the_stacks_own_namespace() {
    let text = std::fs::read_to_string(lumi_infra::workspace_root().join("template.yaml")).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let is_stack_namespace = |value: &serde_norway::Value| match value {
        serde_norway::Value::Tagged(tagged) => {
            tagged.tag == "Sub" && tagged.value.as_str() == Some(STACK_NAMESPACE)
        }
        _ => false,
    };
    assert!(is_stack_namespace(
        &root["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"]
    ));

    let mut lumi_alarm_metrics = 0;
    let mut dashboards = 0;
    for (id, resource) in root["Resources"].as_mapping().unwrap() {
        let id = id.as_str().unwrap();
        match resource["Type"].as_str().unwrap() {
            "AWS::CloudWatch::Alarm" => {
                let mut found = Vec::new();
                namespaces(&resource["Properties"], &mut found);
                assert!(!found.is_empty(), "{id} reads no metric");
                for namespace in found {
                    if namespace.as_str().is_some_and(|n| n.starts_with("AWS/")) {
                        continue;
                    }
                    assert!(
                        is_stack_namespace(namespace),
                        "{id} reads {namespace:?}, not !Sub {STACK_NAMESPACE}"
                    );
                    lumi_alarm_metrics += 1;
                }
            }
            "AWS::CloudWatch::Dashboard" => {
                dashboards += 1;
                let body = &resource["Properties"]["DashboardBody"];
                let serde_norway::Value::Tagged(tagged) = body else {
                    panic!("{id}: DashboardBody is not a !Sub");
                };
                // `${AWS::StackName}` as a recognisable stack name, the other references as
                // placeholders, so the body parses as the JSON CloudWatch receives.
                let mut json = tagged
                    .value
                    .as_str()
                    .unwrap()
                    .replace("${AWS::StackName}", "the-stack");
                while let Some(start) = json.find("${") {
                    let end = start + json[start..].find('}').unwrap();
                    json.replace_range(start..=end, "ref");
                }
                let body: Value = serde_json::from_str(&json).unwrap();
                let mut lumi_widgets = 0;
                for widget in body["widgets"].as_array().unwrap() {
                    for metric in widget["properties"]["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let row = metric.as_array().unwrap();
                        if let Some(namespace) = row[0].as_str()
                            && !namespace.starts_with("AWS/")
                        {
                            assert_eq!(namespace, "Lumi/the-stack", "{id}: {metric}");
                            lumi_widgets += 1;
                        }
                        if let Some(expression) = row[0]["expression"].as_str()
                            && expression.contains("SEARCH(")
                        {
                            assert!(
                                expression.contains("SEARCH('{\"Lumi/the-stack\","),
                                "{id}: {expression}"
                            );
                            lumi_widgets += 1;
                        }
                    }
                }
                assert!(lumi_widgets >= 10, "{id}: {lumi_widgets} Lumi metrics");
            }
            _ => {}
        }
    }
    assert!(lumi_alarm_metrics >= 15, "{lumi_alarm_metrics}");
    assert_eq!(dashboards, 1);
}

/// A second stack in the account and region deploys: only a stack with
/// `SenderIdentity=create` creates the SES identity of the refund emails' sender.
#[test]
fn the_sender_identity_is_created_by_one_stack_only() {
    let text = std::fs::read_to_string(lumi_infra::workspace_root().join("template.yaml")).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let parameter = &root["Parameters"]["SenderIdentity"];
    assert_eq!(parameter["Default"].as_str(), Some("create"));
    let identities: Vec<_> = root["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SES::EmailIdentity"))
        .collect();
    assert!(!identities.is_empty());
    for (id, resource) in identities {
        let condition = resource["Condition"]
            .as_str()
            .unwrap_or_else(|| panic!("{id:?}"));
        let serde_norway::Value::Tagged(equals) = &root["Conditions"][condition] else {
            panic!("{condition} is not an !Equals");
        };
        assert_eq!(equals.tag, "Equals");
        let args = equals.value.as_sequence().unwrap();
        assert!(matches!(&args[0], serde_norway::Value::Tagged(r)
            if r.tag == "Ref" && r.value.as_str() == Some("SenderIdentity")));
        assert_eq!(args[1].as_str(), Some("create"));
    }
}

#[test]
fn the_gateway_allows_the_same_cors_request_headers_as_the_local_stack() {
    let text = std::fs::read_to_string(lumi_infra::workspace_root().join("template.yaml")).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let allowed: BTreeSet<&str> =
        root["Resources"]["LumiApi"]["Properties"]["CorsConfiguration"]["AllowHeaders"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
    let local: BTreeSet<&str> = lumi_shared::http::CORS_ALLOW_HEADERS
        .iter()
        .copied()
        .collect();
    assert_eq!(allowed, local);
    assert!(
        local.contains("traceparent"),
        "a storefront's trace reaches ours"
    );
}
