//! The API against its own OpenAPI document: Schemathesis (pinned in `infra/requirements.txt`)
//! runs every operation of `docs/openapi.yaml` against a stack of this test's own, as a customer
//! and as an admin, through its examples, coverage and fuzzing phases with a fixed seed, and
//! must find nothing. `make fuzz` runs a longer campaign without a seed.
//!
//! Rate limits are raised for the run (the fuzzer sends thousands of requests from one IP); a
//! product and a cart exist so reads have something to answer.
//!
//! Every check runs; `tests/schemathesis/schemathesis.toml` widens, operation by operation and
//! each with its reason, the statuses a schema-valid request may get where no schema can say
//! what makes it acceptable (an opaque cursor, a variant of the catalog, an image's bytes).
//!
//! Excluded, each for a reason written where it is excluded:
//! - operations that end the caller's own sessions (`logout`, the customer's and the admin's
//!   `revoke-all`, an admin locking or ending the sessions of a user, who may be the admin
//!   running the campaign): once the fuzzer calls one, every later request of the run is a 401 that says
//!   nothing about the operation it was meant for. Their behaviour has end-to-end tests
//!   (`tests/auth.rs`, `tests/sessions.rs`, `tests/admin.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lumi_tests::{Request, TestApp, unique_sku};

/// Operations whose success ends the caller's own session (see the module documentation).
const ENDS_THE_CALLERS_SESSIONS: &[&str] = &[
    "/api/v1/auth/logout",
    "/api/v1/auth/revoke-all",
    "/api/auth/revoke-all",
    "/api/v1/admin/sessions/revoke-all",
    // The admin's own id is in `GET /api/v1/admin/users`: locking it, or ending its sessions,
    // ends the run's admin session.
    "/api/v1/admin/users/{id}/lock",
    "/api/v1/admin/users/{id}/sessions",
];

/// The run's settings: `LUMI_FUZZ_SECONDS` set (by `make fuzz`) means a long campaign with a
/// random seed; otherwise a fixed seed and a budget that keeps `make test` practical.
struct Campaign {
    seed: Option<u64>,
    max_examples: u32,
    /// A time budget: fuzzing repeats until it is spent. None: each phase stops at
    /// `max_examples` per operation, so a seeded run is the same run on any machine.
    max_seconds: Option<u64>,
}

impl Campaign {
    fn from_env() -> Self {
        match std::env::var("LUMI_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(seconds) => Self {
                seed: None,
                max_examples: 200,
                max_seconds: Some(seconds),
            },
            // Seeded and bounded by examples, not time: the same requests on every machine (a
            // time budget would let a faster one go further), about a minute a role.
            None => Self {
                seed: Some(20261202),
                max_examples: 25,
                max_seconds: None,
            },
        }
    }
}

/// What the run's path parameters name, so operations on one resource reach their logic instead
/// of answering 404 to every made-up identifier: an order of the customer's (and its payment)
/// and an incident about it. `tests/schemathesis/schemathesis.toml` reads them from the
/// environment.
struct Fixtures {
    order: String,
    payment: String,
    incident: String,
}

impl Fixtures {
    fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("LUMI_FUZZ_ORDER", &self.order),
            ("LUMI_FUZZ_PAYMENT", &self.payment),
            ("LUMI_FUZZ_INCIDENT", &self.incident),
        ]
    }
}

async fn schemathesis(
    app: &TestApp,
    who: &str,
    token: &str,
    fixtures: &Fixtures,
    campaign: &Campaign,
) {
    let root = lumi_infra::workspace_root();
    let st = root.join(".venv/bin/st");
    assert!(st.is_file(), "{} is missing: run `make venv`", st.display());
    let mut command = tokio::process::Command::new(&st);
    command
        .current_dir(&root)
        // The statuses a schema-valid request may get where no schema can say it (justified
        // there, operation by operation).
        .arg("--config-file")
        .arg(root.join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(root.join("docs/openapi.yaml"))
        .args(["--url", &app.base_url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--checks", "all"])
        .args(["--max-examples", &campaign.max_examples.to_string()])
        // One worker: Hypothesis compiling strategies in threads trips a CPython 3.11 bug
        // ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .envs(fixtures.env())
        .kill_on_drop(true);
    for path in ENDS_THE_CALLERS_SESSIONS {
        command.args(["--exclude-path", path]);
    }
    if let Some(seed) = campaign.seed {
        command.args(["--seed", &seed.to_string()]);
    }
    if let Some(seconds) = campaign.max_seconds {
        command.args(["--max-time", &seconds.to_string()]);
    }
    let run = command.output();
    let limit = campaign.max_seconds.unwrap_or(480) + 120;
    let output = tokio::time::timeout(Duration::from_secs(limit), run)
        .await
        .expect("schemathesis did not finish in time")
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Schemathesis as {who} found failures:\n{stdout}\n{stderr}"
    );
    eprintln!("Schemathesis as {who}:\n{stdout}");
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_customer_or_admin() {
    let app = TestApp::spawn().await;
    let mut settings = lumi_shared::settings::SystemSettings::default();
    for budget in [
        &mut settings.rate_limits.ip,
        &mut settings.rate_limits.customer,
        &mut settings.rate_limits.admin,
        &mut settings.rate_limits.auth,
        &mut settings.rate_limits.quota,
    ] {
        budget.limit = 1_000_000;
    }
    app.put_settings(&settings).await;

    let sku = unique_sku();
    app.product(&[(&sku, 1500, 1_000)]).await;
    let customer = app.new_customer().await;
    let admin = app.new_admin().await;
    let placed = app.place_order(&customer, &[(&sku, 2)]).await;
    let incident: lumi_commerce::incidents::Incident = app
        .request(
            Request::post("/api/v1/admin/incidents")
                .auth(admin.token())
                .key(&unique_sku())
                .json(&serde_json::json!({
                    "order_reference": placed.order.reference,
                    "summary": "the fuzzer's incident",
                    "severity": "low",
                })),
            201,
        )
        .await
        .unwrap_or_else(|p| panic!("{}", p.body));
    let fixtures = Fixtures {
        order: placed.order.reference.clone(),
        payment: placed.order.payment.id.clone(),
        incident: incident.id,
    };
    let campaign = Campaign::from_env();
    // The two roles at once: each Schemathesis process keeps one core busy generating, the
    // stack the other.
    tokio::join!(
        schemathesis(&app, "customer", customer.token(), &fixtures, &campaign),
        schemathesis(&app, "admin", admin.token(), &fixtures, &campaign),
    );
}
