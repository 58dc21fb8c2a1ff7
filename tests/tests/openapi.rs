//! The OpenAPI document: `docs/openapi.yaml` is exactly what the handlers generate
//! (`lumi_infra::openapi`), each function documents exactly its routes of `template.yaml`, and
//! every operation lists the statuses the shared layers can answer for it, through the shared
//! response components. (`template.rs` checks the checked-in document's routes and version.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::Value;

const METHODS: [&str; 6] = ["get", "head", "put", "post", "patch", "delete"];

/// Liveness: no I/O and never rate limited, so neither 429 nor 503.
const LIVENESS: [&str; 2] = ["healthLive", "healthLiveAlias"];

/// Operations with a body not read by the `Json` extractor, and the statuses that leaves out:
/// the webhook verifies Stripe's raw bytes (400 malformed, no media-type check, no 422), the
/// refund reads its raw bytes (the idempotency hash covers them: any shape error is 422).
const RAW_BODIES: [(&str, &[u16]); 2] = [
    ("paymentWebhook", &[415, 422]),
    ("adminOrderRefund", &[415]),
];

fn generated() -> Value {
    serde_json::to_value(lumi_infra::openapi::document()).unwrap()
}

/// (operation id, method, path, operation) of every operation.
fn operations(document: &Value) -> Vec<(String, String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                found.push((id, method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

fn template_routes(function: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(lumi_infra::workspace_root().join("template.yaml")).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut routes = BTreeSet::new();
    for (_, resource) in root["Resources"].as_mapping().unwrap() {
        if resource["Metadata"]["BuildProperties"]["Binary"].as_str() != Some(function) {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            let props = &event["Properties"];
            if event["Type"].as_str() == Some("HttpApi") && props["Method"].as_str() != Some("ANY")
            {
                routes.insert((
                    props["Method"].as_str().unwrap().to_ascii_uppercase(),
                    props["Path"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    routes
}

fn is_ref(response: &Value, component: &str) -> bool {
    response["$ref"].as_str() == Some(&format!("#/components/responses/{component}"))
}

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let path = lumi_infra::workspace_root().join("docs/openapi.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    let generated = lumi_infra::openapi::yaml().unwrap();
    assert!(
        checked_in == generated,
        "docs/openapi.yaml is not the document the handlers generate: \
         run `cargo run -p lumi-infra --bin lumi -- openapi` and commit the result"
    );
}

#[test]
fn each_function_documents_exactly_its_template_routes() {
    let mut ids = BTreeSet::new();
    for (function, document) in lumi_infra::openapi::function_documents() {
        let document = serde_json::to_value(document).unwrap();
        let documented: BTreeSet<_> = operations(&document)
            .into_iter()
            .map(|(id, method, path, _)| {
                assert!(ids.insert(id.clone()), "operation id {id} twice");
                (method.to_ascii_uppercase(), path)
            })
            .collect();
        assert_eq!(documented, template_routes(function), "{function}");
    }
}

#[test]
fn every_rate_limited_operation_lists_429_and_503_and_liveness_neither() {
    for (id, method, path, operation) in operations(&generated()) {
        let responses = &operation["responses"];
        if LIVENESS.contains(&id.as_str()) {
            assert!(
                responses.get("429").is_none() && responses.get("503").is_none(),
                "{method} {path}"
            );
            continue;
        }
        assert!(
            is_ref(&responses["429"], "TooManyRequests"),
            "{method} {path} ({id}) does not list 429 TooManyRequests"
        );
        let unavailable = &responses["503"];
        // Readiness answers its own report with a 503 besides the problem of the layers.
        let readiness_with_problem = id.starts_with("healthReady")
            && unavailable["content"]["application/problem+json"]["schema"]["$ref"]
                == "#/components/schemas/Problem";
        assert!(
            is_ref(unavailable, "ServiceUnavailable") || readiness_with_problem,
            "{method} {path} ({id}) does not list 503 ServiceUnavailable"
        );
    }
}

#[test]
fn every_operation_with_a_body_lists_400_413_415_and_422() {
    let components = [
        (400, "BadRequest"),
        (413, "PayloadTooLarge"),
        (415, "UnsupportedMediaType"),
        (422, "ValidationFailed"),
    ];
    let mut with_body = 0;
    for (id, method, path, operation) in operations(&generated()) {
        if operation.get("requestBody").is_none() {
            continue;
        }
        with_body += 1;
        let exempt = RAW_BODIES
            .iter()
            .find(|(raw, _)| *raw == id)
            .map_or(&[][..], |(_, statuses)| *statuses);
        for (status, component) in components {
            let response = &operation["responses"][status.to_string()];
            if exempt.contains(&status) {
                assert!(
                    response.is_null(),
                    "{method} {path} ({id}) cannot answer {status}"
                );
            } else {
                assert!(
                    is_ref(response, component),
                    "{method} {path} ({id}) does not list {status} {component}"
                );
            }
        }
    }
    assert!(with_body > 20, "only {with_body} operations with a body");
}

/// A token's route can be 401 (no valid token) and 403 (locked account, or not an admin).
#[test]
fn every_operation_behind_a_token_lists_401_and_403() {
    for (id, method, path, operation) in operations(&generated()) {
        let security = operation["security"]
            .as_array()
            .expect("every operation says");
        if !security.is_empty() {
            let responses = &operation["responses"];
            assert!(
                is_ref(&responses["401"], "Unauthorized") && is_ref(&responses["403"], "Forbidden"),
                "{method} {path} ({id}) needs a token but does not list 401 and 403"
            );
        }
    }
}

#[test]
fn every_path_parameter_is_an_identifier() {
    for (id, _, path, operation) in operations(&generated()) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] == "path" {
                let pattern = parameter["schema"]["pattern"].as_str().unwrap_or_default();
                assert!(
                    pattern == lumi_shared::openapi::ID_PATTERN
                        || (pattern.starts_with('^') && !pattern.is_empty()),
                    "{path} ({id}): {} has no pattern",
                    parameter["name"]
                );
                assert_eq!(parameter["required"], true, "{path} ({id})");
                // `http::path_ids` answers 404 for a malformed one, whatever the handler.
                assert!(
                    is_ref(&operation["responses"]["404"], "NotFound"),
                    "{path} ({id}) has a path parameter but does not list 404 NotFound"
                );
            }
        }
    }
}

#[test]
fn every_error_response_component_is_problem_json() {
    let document = generated();
    let responses = document["components"]["responses"].as_object().unwrap();
    for name in [
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "MethodNotAllowed",
        "Conflict",
        "PreconditionFailed",
        "PreconditionRequired",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "ValidationFailed",
        "TooManyRequests",
        "ServiceUnavailable",
    ] {
        let schema = &responses[name]["content"]["application/problem+json"]["schema"];
        assert_eq!(schema["$ref"], "#/components/schemas/Problem", "{name}");
    }
}
