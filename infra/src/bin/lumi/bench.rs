//! `lumi bench aws-calls` (run by `make bench`): counts, on a local stack of its own, the rate
//! limiter's DynamoDB calls per admitted request and the AWS calls of a checkout and of an
//! order list.

use anyhow::{Context as _, bail};
use lumi_infra::{
    gateway::{Gateway, GatewayOptions},
    moto::{MotoOptions, MotoServer},
    seed,
    stack::{self, LocalStack},
    template::Template,
};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The rate limiter's DynamoDB calls per admitted request, and the AWS calls of a checkout
    /// and of an order list
    #[command(alias = "rate-limit")]
    AwsCalls {
        /// Requests per measured phase
        #[arg(long, default_value_t = 200)]
        requests: u64,
    },
}

impl BenchCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let Self::AwsCalls { requests } = self;
        aws_calls(requests).await
    }
}

/// One authenticated request through a gateway (no HTTP: the router itself).
async fn call_me(gateway: &axum::Router, token: &str) -> anyhow::Result<u16> {
    use tower::ServiceExt as _;
    let request = http::Request::get("/api/v1/auth/me")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())?;
    Ok(gateway.clone().oneshot(request).await?.status().as_u16())
}

/// The limiter's DynamoDB calls per admitted request: in one warm container (the common path),
/// and alternating between two containers (each sees the other's writes as conflicts).
async fn aws_calls(requests: u64) -> anyhow::Result<()> {
    use tower::ServiceExt as _;
    let log = std::env::temp_dir().join(format!("lumi-bench-{}.jsonl", std::process::id()));
    let moto = MotoServer::start(&MotoOptions {
        request_log: Some(log.clone()),
        tie_to_parent: true,
        ..MotoOptions::default()
    })?;
    let stack = LocalStack::bootstrap(
        Template::project()?,
        &moto.endpoint,
        "bench",
        stack::local_parameters(),
    )
    .await?;
    seed::seed(&stack).await?;
    let quiet = GatewayOptions {
        metrics_sink: Some(std::sync::Arc::new(
            lumi_shared::telemetry::CapturedLines::default(),
        )),
        ..GatewayOptions::default()
    };
    let (a, b) = (
        Gateway::build(&stack, &quiet).await?,
        Gateway::build(&stack, &quiet).await?,
    );
    let user = &seed::DEMO_USERS[seed::DEMO_USERS.len() - 1];
    let login = http::Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({ "email": user.email, "password": user.password }).to_string(),
        ))?;
    let body =
        axum::body::to_bytes(a.router.clone().oneshot(login).await?.into_body(), 1 << 20).await?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)?["access_token"]
        .as_str()
        .context("login failed")?
        .to_owned();
    let limiter_calls = |g: &Gateway| {
        g.platforms
            .get("auth")
            .map_or(0, |p| p.limiter.round_trips())
    };
    let aws_calls = || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    };

    // Warm the buckets and caches of container A.
    call_me(&a.router, &token).await?;
    let (limiter_before, aws_before) = (limiter_calls(&a), aws_calls());
    let mut admitted = 0u64;
    for _ in 0..requests {
        admitted += u64::from(call_me(&a.router, &token).await? == 200);
    }
    let warm = (limiter_calls(&a) - limiter_before) as f64 / admitted.max(1) as f64;
    let all_aws = (aws_calls() - aws_before) as f64 / admitted.max(1) as f64;

    let before = limiter_calls(&a) + limiter_calls(&b);
    let mut alternating = 0u64;
    for i in 0..requests {
        let gateway = if i % 2 == 0 { &b.router } else { &a.router };
        alternating += u64::from(call_me(gateway, &token).await? == 200);
    }
    let two = (limiter_calls(&a) + limiter_calls(&b) - before) as f64 / alternating.max(1) as f64;

    println!(
        "rate limiter: DynamoDB calls per admitted request (GET /api/v1/auth/me: scopes ip + quota)"
    );
    println!("  goal (common path)                     1.50");
    println!(
        "  one warm container (common path)       {warm:.2}   ratio to goal {:.2}   {}",
        warm / 1.5,
        if warm <= 1.5 { "ok" } else { "over" }
    );
    println!(
        "  two containers taking turns            {two:.2}   (each turn starts with the other's write: a conflict, then a retry)"
    );
    println!(
        "  all AWS calls per request, one container {all_aws:.2} (the limiter's plus authentication's one BatchGetItem)"
    );
    println!("  requests admitted: {admitted} of {requests}, then {alternating} of {requests}");

    // Whole requests of the orders function, everything included (rate limits, authentication,
    // idempotency, the cart, the transaction), counted from moto's request log.
    let send = |method: &str, path: &str, body: Option<serde_json::Value>, key: Option<String>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request.body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ));
        let router = a.router.clone();
        async move { anyhow::Ok(router.oneshot(request?).await?.status().as_u16()) }
    };
    let rounds = 10u64;
    let (mut checkout_calls, mut list_calls, mut placed) = (0, 0, 0);
    for i in 0..rounds {
        let added = send(
            "POST",
            "/api/v1/cart/items",
            Some(serde_json::json!({ "variant": "ONI-SOY", "quantity": 1 })),
            None,
        )
        .await?;
        if added != 200 {
            bail!("adding to the cart answered {added}: the figures would not be a checkout's");
        }
        let before = aws_calls();
        placed += u64::from(
            send(
                "POST",
                "/api/v1/orders",
                Some(serde_json::json!({})),
                Some(format!("bench-{i}")),
            )
            .await?
                == 201,
        );
        checkout_calls += aws_calls() - before;
        let before = aws_calls();
        send("GET", "/api/v1/orders?limit=10", None, None).await?;
        list_calls += aws_calls() - before;
    }
    println!(
        "\norders: AWS calls per request, everything included (rate limit, authentication, idempotency)"
    );
    println!(
        "  checkout (POST /api/v1/orders)         {:.2}   ({placed} of {rounds} placed; the order itself is one TransactWriteItems)",
        checkout_calls as f64 / rounds as f64
    );
    println!(
        "  order list (GET /api/v1/orders)        {:.2}",
        list_calls as f64 / rounds as f64
    );
    if placed != rounds {
        bail!(
            "only {placed} of {rounds} checkouts placed an order: the checkout figure counts refusals"
        );
    }
    let _ = std::fs::remove_file(&log);
    Ok(())
}
