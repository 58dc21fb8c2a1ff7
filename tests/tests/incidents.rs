//! Security incidents end to end (the fraud or chargeback procedure's step 3): an admin records
//! an incident for an order; it keeps the order's tracking payload and audit events as they were,
//! is audited, listed newest first, paged, and resolved with a note.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_tests::{TestApp, assert_problem, unique_prefix, unique_sku};
use reqwest::Method;
use serde_json::{Value, json};

const INCIDENTS: &str = "/api/v1/admin/incidents";

/// A paid manual order of one customer (timeline: placed, captured): (customer token, order).
async fn paid_order(app: &TestApp, admin: &str) -> (String, Value) {
    let sku = unique_sku();
    app.product(&[(&sku, 1500, 5)]).await;
    let customer = app.customer_token().await;
    let order = app.place_order_json(&customer, &[(&sku, 2)]).await;
    app.admin_pay(admin, &order).await;
    (customer, order)
}

fn reference(order: &Value) -> String {
    order["reference"].as_str().unwrap().to_owned()
}

async fn track(app: &TestApp, customer: &str, reference: &str) -> Value {
    app.get_json(&format!("/api/v1/orders/{reference}/track"), customer)
        .await
}

/// Records with a fresh Idempotency-Key.
async fn record(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    record_with_key(app, token, &unique_prefix(), body).await
}

async fn record_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    app.call(Method::POST, INCIDENTS, Some(token), Some(key), Some(body))
        .await
}

/// Records an incident for `reference` (asserts 201): the incident.
async fn recorded(app: &TestApp, admin: &str, reference: &str, summary: &str) -> Value {
    let body = json!({ "order_reference": reference, "summary": summary, "severity": "high" });
    let response = record(app, admin, &body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_incident_keeps_the_orders_timeline_and_audit_events_as_they_were() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (customer, order) = paid_order(&app, &admin).await;
    let reference = reference(&order);
    let tracked = track(&app, &customer, &reference).await;
    assert_eq!(
        tracked["timeline"].as_array().unwrap().len(),
        2,
        "{tracked}"
    );
    let order_events = app
        .audit_events(&admin, &format!("target=order:{reference}"))
        .await;
    assert_eq!(order_events.len(), 2, "placed and captured");

    let body = json!({
        "order_reference": reference,
        "summary": "card testing from one address",
        "severity": "critical",
        "request_ids": ["req-1", "Root=1-67a:b+c/d="],
    });
    let created = record(&app, &admin, &body).await;
    assert_eq!(created.status(), 201);
    let incident: Value = created.json().await.unwrap();
    let id = incident["id"].as_str().unwrap().to_owned();
    assert_eq!(incident["order_reference"], reference.as_str());
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["status"], "open");
    assert_eq!(
        incident["request_ids"],
        json!(["req-1", "Root=1-67a:b+c/d="])
    );
    assert_eq!(incident["tracking"], tracked, "the track answer, as it was");

    // The order's audit events are linked by key, newest first, as the audit log lists them.
    let linked = incident["audit_events"].as_array().unwrap();
    let linked_events: Vec<(&Value, &Value)> =
        linked.iter().map(|e| (&e["action"], &e["at"])).collect();
    let listed_events: Vec<(&Value, &Value)> = order_events
        .iter()
        .map(|e| (&e["action"], &e["at"]))
        .collect();
    assert_eq!(linked_events, listed_events);
    for event in linked {
        let at = event["at"].as_str().unwrap();
        assert_eq!(event["pk"], format!("AUDIT#{}", &at[..10]).as_str());
        assert!(event["sk"].as_str().unwrap().starts_with(&format!("{at}#")));
    }
    assert_eq!(incident["audit_events_truncated"], false);

    // Read back: the same incident.
    let read = app.get_json(&format!("{INCIDENTS}/{id}"), &admin).await;
    assert_eq!(read, incident);

    // The order changes later (shipped): the incident does not.
    let shipped = app.admin_fulfil(&admin, &reference, None).await;
    assert_eq!(shipped.status(), 200);
    let tracked_now = track(&app, &customer, &reference).await;
    assert_ne!(tracked_now, tracked, "the order moved on");
    let read = app.get_json(&format!("{INCIDENTS}/{id}"), &admin).await;
    assert_eq!(read["tracking"], tracked);
    assert_eq!(read["audit_events"], incident["audit_events"]);

    // Recorded with its audit event, which names the order.
    let audited = app
        .audit_events(&admin, &format!("target=incident:{id}"))
        .await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["action"], "incident.create");
    assert!(audited[0]["actor"].as_str().unwrap().starts_with("admin:"));
    assert_eq!(audited[0]["summary"]["order_reference"], reference.as_str());
    assert_eq!(audited[0]["summary"]["audit_events"], 2);
}

#[tokio::test]
async fn incidents_are_listed_newest_first_one_page_at_a_time() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, order) = paid_order(&app, &admin).await;
    let reference = reference(&order);
    let mut ids = Vec::new();
    for n in 0..3 {
        let incident = recorded(&app, &admin, &reference, &format!("incident {n}")).await;
        ids.push(incident["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();

    let first = app.get_json(&format!("{INCIDENTS}?limit=2"), &admin).await;
    let listed: Vec<&str> = first["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(first["incidents"][0]["summary"], "incident 2");
    assert!(
        first["incidents"][0].get("tracking").is_none(),
        "a listing has no snapshots"
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get_json(&format!("{INCIDENTS}?limit=2&cursor={cursor}"), &admin)
        .await;
    let listed: Vec<&str> = second["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str()]);
    assert!(second["next_cursor"].is_null(), "{second}");

    // The listing's bounds: limit 1 to 200, and only its own cursors.
    for query in ["limit=0", "limit=201"] {
        let response = app
            .call(
                Method::GET,
                &format!("{INCIDENTS}?{query}"),
                Some(&admin),
                None,
                None,
            )
            .await;
        assert_problem(response, 400).await;
    }
    let orders = app.get_json("/api/v1/admin/orders?limit=1", &admin).await;
    let other_cursor = orders["next_cursor"].as_str().unwrap_or("e30");
    for cursor in [other_cursor, "not-a-cursor"] {
        let response = app
            .call(
                Method::GET,
                &format!("{INCIDENTS}?cursor={cursor}"),
                Some(&admin),
                None,
                None,
            )
            .await;
        assert_problem(response, 400).await;
    }
}

#[tokio::test]
async fn a_customer_gets_403_on_every_incident_route() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (customer, order) = paid_order(&app, &admin).await;
    let reference = reference(&order);
    let incident = recorded(&app, &admin, &reference, "chargeback").await;
    let one = format!("{INCIDENTS}/{}", incident["id"].as_str().unwrap());
    let body = json!({ "order_reference": reference, "summary": "mine", "severity": "low" });
    let attempts = [
        (Method::POST, INCIDENTS.to_owned(), Some(body)),
        (Method::GET, INCIDENTS.to_owned(), None),
        (Method::GET, one.clone(), None),
        (
            Method::PATCH,
            one.clone(),
            Some(json!({ "status": "resolved", "note": "mine" })),
        ),
    ];
    for (method, path, body) in attempts {
        let response = app
            .call(method.clone(), &path, Some(&customer), None, body.as_ref())
            .await;
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    let listed = app.get_json(INCIDENTS, &admin).await;
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 1);
    let read = app.get_json(&one, &admin).await;
    assert_eq!(read["status"], "open");
}

#[tokio::test]
async fn bad_bodies_are_422_naming_the_fields_and_unknown_orders_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    let bad = json!({
        "order_reference": "LUMI-0000",
        "summary": "   ",
        "severity": "urgent",
        "request_ids": ["fine", "not fine"],
    });
    let problem = assert_problem(record(&app, &admin, &bad).await, 422).await;
    assert_eq!(
        fields(&problem),
        ["order_reference", "summary", "severity", "request_ids[1]"],
        "{problem}"
    );

    let too_much = json!({
        "order_reference": "LUMI-7K3F-9Q2M",
        "summary": "x".repeat(2_001),
        "severity": "low",
        "request_ids": vec!["r"; 21],
    });
    let problem = assert_problem(record(&app, &admin, &too_much).await, 422).await;
    assert_eq!(fields(&problem), ["summary", "request_ids"], "{problem}");

    let missing = json!({ "order_reference": "LUMI-7K3F-9Q2M", "severity": "low" });
    let problem = assert_problem(record(&app, &admin, &missing).await, 422).await;
    assert_eq!(fields(&problem), ["summary"], "{problem}");

    // Well formed, but no such order: 404, and nothing recorded.
    let unknown = json!({ "order_reference": "LUMI-7K3F-9Q2M", "summary": "s", "severity": "low" });
    assert_problem(record(&app, &admin, &unknown).await, 404).await;
    let listed = app.get_json(INCIDENTS, &admin).await;
    assert_eq!(listed["incidents"], json!([]));
    let created = app.audit_events(&admin, "action=incident.create").await;
    assert!(created.is_empty(), "{created:?}");

    // No such incident, and an id that is not one.
    for id in ["inc_0123456789abcdef0123", "inc_not_an_id"] {
        let response = app
            .call(
                Method::GET,
                &format!("{INCIDENTS}/{id}"),
                Some(&admin),
                None,
                None,
            )
            .await;
        assert_problem(response, 404).await;
    }
}

#[tokio::test]
async fn an_incident_is_resolved_and_reopened_with_a_note_each_time_audited() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, order) = paid_order(&app, &admin).await;
    let incident = recorded(&app, &admin, &reference(&order), "chargeback").await;
    let id = incident["id"].as_str().unwrap();
    let one = format!("{INCIDENTS}/{id}");
    let patch = |status: &str, note: &str| json!({ "status": status, "note": note });

    let problem = assert_problem(
        app.call(
            Method::PATCH,
            &one,
            Some(&admin),
            None,
            Some(&patch("closed", "")),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(fields(&problem), ["status", "note"], "{problem}");

    let resolved = app
        .call(
            Method::PATCH,
            &one,
            Some(&admin),
            None,
            Some(&patch("resolved", "refunded, user locked")),
        )
        .await;
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["status_note"], "refunded, user locked");
    assert_eq!(resolved["tracking"], incident["tracking"]);
    assert_eq!(app.get_json(&one, &admin).await, resolved);
    let listed = app.get_json(INCIDENTS, &admin).await;
    assert_eq!(listed["incidents"][0]["status"], "resolved");

    // The same status again changes nothing.
    let again = app
        .call(
            Method::PATCH,
            &one,
            Some(&admin),
            None,
            Some(&patch("resolved", "twice")),
        )
        .await;
    assert_problem(again, 409).await;

    let reopened = app
        .call(
            Method::PATCH,
            &one,
            Some(&admin),
            None,
            Some(&patch("open", "second chargeback")),
        )
        .await;
    assert_eq!(reopened.status(), 200);

    let audited = app
        .audit_events(&admin, &format!("target=incident:{id}"))
        .await;
    let actions: Vec<&str> = audited
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["incident.status", "incident.status", "incident.create"]
    );
    assert_eq!(audited[0]["summary"]["after"]["status"], "open");
    assert_eq!(audited[1]["summary"]["before"]["status"], "open");
    assert_eq!(
        audited[1]["summary"]["after"]["note"],
        "refunded, user locked"
    );
}

#[tokio::test]
async fn a_retried_incident_with_the_same_key_is_recorded_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, order) = paid_order(&app, &admin).await;
    let body = json!({
        "order_reference": reference(&order),
        "summary": "chargeback, retried after a timeout",
        "severity": "high",
    });
    let key = unique_prefix();

    let first = record_with_key(&app, &admin, &key, &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    // The retry (the same body, keys in another order): the same incident, marked a replay.
    let same = json!({
        "severity": "high",
        "summary": "chargeback, retried after a timeout",
        "order_reference": reference(&order),
    });
    let again = record_with_key(&app, &admin, &key, &same).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);

    // The key with another body: 422, nothing recorded.
    let other =
        json!({ "order_reference": reference(&order), "summary": "other", "severity": "low" });
    assert_problem(record_with_key(&app, &admin, &key, &other).await, 422).await;
    // No key: 400 before anything is read.
    let response = app
        .call(Method::POST, INCIDENTS, Some(&admin), None, Some(&body))
        .await;
    assert_problem(response, 400).await;

    let listed = app.get_json(INCIDENTS, &admin).await;
    let ids: Vec<&Value> = listed["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, [&first["id"]], "one incident");
    let created = app.audit_events(&admin, "action=incident.create").await;
    assert_eq!(created.len(), 1, "{created:?}");
}
