//! `lumi dev`: the whole API on a local AWS stack, what `make dev` runs.

use anyhow::Context as _;
use lumi_infra::{
    gateway::{Gateway, GatewayOptions},
    moto::{MotoOptions, MotoServer},
    seed,
    stack::{self, LocalStack},
    template::Template,
};
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The API's port on 127.0.0.1
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// The local AWS stack's (moto's) port on 127.0.0.1
    #[arg(long, default_value_t = 4566)]
    moto_port: u16,
}

/// Starts moto and localstripe (both tied to this process), creates the stack from
/// `template.yaml` (resources named `lumi-<LogicalId>`), seeds the demo accounts, registers the
/// Stripe webhook, runs the schedules and the refund-email poller, and serves every route (and
/// the API reference at `/docs`) until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let DevArgs { port, moto_port } = args;
    // `TRACING_ENABLED=1`: spans as log lines, and exported to a local OTLP collector
    // (`OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`; Jaeger's, say).
    let tracing_enabled = std::env::var("TRACING_ENABLED").is_ok_and(|v| v == "1");
    let otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://localhost:4318".into());
    lumi_shared::telemetry::log::init(
        "local-gateway",
        &lumi_shared::telemetry::Tags::new("local", lumi_infra::template::LOCAL_REGION),
        tracing::Level::INFO,
        tracing_enabled,
        std::sync::Arc::new(lumi_shared::telemetry::Stdout),
        tracing_enabled.then_some(otlp_endpoint.as_str()),
    );
    // Tied to this process: however `lumi dev` ends, moto ends with it.
    let mut moto = MotoServer::start(&MotoOptions {
        port: moto_port,
        tie_to_parent: true,
        // `LUMI_MOTO_LOG=<file>`: one line per AWS call of the local stack.
        request_log: std::env::var_os("LUMI_MOTO_LOG").map(std::path::PathBuf::from),
    })?;
    // The local Stripe server (localstripe), tied to this process too: the functions' Stripe
    // API base is the template's StripeApiBase parameter, so the env files carry it as well.
    let mut stripe = lumi_infra::stripe_server::LocalStripe::start(
        &lumi_infra::stripe_server::LocalStripeOptions {
            port: 0,
            tie_to_parent: true,
            verbose: std::env::var("LUMI_STRIPE_LOG").is_ok_and(|v| v == "1"),
        },
    )?;
    let mut parameters = stack::local_parameters();
    parameters.insert("StripeApiBase".into(), stripe.endpoint.clone());
    parameters.insert(
        "StripePublishableKey".into(),
        lumi_infra::stripe_server::LOCAL_PUBLISHABLE_KEY.into(),
    );
    let stack =
        LocalStack::bootstrap(Template::project()?, &moto.endpoint, "lumi", parameters).await?;
    let accounts = seed::seed(&stack).await?;
    // The EMF lines are printed, and published to the local CloudWatch as CloudWatch Logs
    // does in AWS: `GET /api/v1/metrics` reads them back.
    let metrics = lumi_infra::emf::EmfPublisher::spawn(
        &stack.sdk_config,
        std::sync::Arc::new(lumi_shared::telemetry::Stdout),
    );
    let gateway = Gateway::build(
        &stack,
        &GatewayOptions {
            metrics_sink: Some(metrics.clone()),
            ..GatewayOptions::default()
        },
    )
    .await?;
    let base = format!("http://127.0.0.1:{port}");
    let env_dir = write_env_files(&stack, &base)?;
    spawn_refund_email_poller(&stack)?;
    // The health probe calls the API through this gateway, as it calls API Gateway in AWS.
    let schedules = lumi_infra::schedule::spawn_schedules(&stack, &base, metrics.clone()).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("port {port} is taken: is another `make dev` running?"))?;
    let webhook_secret = stack.config_secret_json().await?["payment_webhook_secrets"]["stripe"]
        .as_str()
        .map(str::to_owned)
        .context("the config secret has no Stripe webhook secret")?;
    stripe
        .register_webhook(
            "lumi",
            &format!("{base}/api/v1/payments/webhooks/stripe"),
            &webhook_secret,
            None,
        )
        .await?;
    println!(
        "\nLumi is serving {} routes at {base} (local AWS at {}, local Stripe at {})",
        gateway.routes.len(),
        moto.endpoint,
        stripe.endpoint
    );
    for route in &gateway.routes {
        println!(
            "  {:6} {:40} -> {}",
            route.method, route.path, route.function
        );
    }
    println!("\nDemo accounts:");
    for account in accounts {
        println!(
            "  {:?}: {} / {}",
            account.role, account.email, account.password
        );
    }
    let customer = &accounts[accounts.len() - 1];
    println!(
        "\nTry:
  curl -i {base}/api/v1/health/ready
  curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\
       -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'
  curl -s {base}/api/v1/auth/me -H \"authorization: Bearer $ACCESS\"
  curl -s -X POST {base}/api/v1/auth/rotate -H \"authorization: Bearer $REFRESH\"
  curl -s -X POST {base}/api/v1/auth/revoke-all -H \"authorization: Bearer $ACCESS\"",
        customer.email, customer.password
    );
    if let Some(token) = stack.config_secret_json().await?["metrics_scrape_token"].as_str() {
        println!(
            "\nMetrics (Prometheus text, read back from the local CloudWatch; this stack's scrape token):
  curl -s {base}/api/v1/metrics -H \"authorization: Bearer {token}\""
        );
    }
    println!(
        "\nRefund emails are sent from the local queue as they arrive; see them at {}/_lumi/sent-emails",
        moto.endpoint
    );
    println!(
        "\nSchedules (as EventBridge would run them; `make backup` / `make restore-check` run now):"
    );
    for (function, event, expression) in &schedules {
        println!("  {function}/{event}: {expression}");
    }
    println!("\nResources are named lumi-<LogicalId> (the table: lumi-AppTable).");
    println!(
        "Each function's environment is in {dir}/<function>.env, for
  cargo lambda watch -A 127.0.0.1 --env-file {dir}/health.env
  cargo lambda invoke -A 127.0.0.1 health --data-file events/health/live.json",
        dir = env_dir.display()
    );
    println!("Press Ctrl-C to stop (moto stops with it).\n");
    let served = gateway
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    moto.stop();
    stripe.stop();
    served.context("serving the API")
}

/// `target/local-env/<function>.env`: what `cargo lambda watch --env-file` needs to run a
/// function against this stack (the API at `api_base`, this gateway).
fn write_env_files(stack: &LocalStack, api_base: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = lumi_infra::workspace_root().join("target/local-env");
    std::fs::create_dir_all(&dir)?;
    for (_, binary) in stack.template.functions()? {
        let mut env = stack.function_env(&binary)?;
        lumi_infra::schedule::local_api_urls(stack, &mut env, api_base)?;
        let mut vars: Vec<(&str, &str)> = env.iter().collect();
        vars.sort();
        let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join(format!("{binary}.env")), text)?;
    }
    Ok(dir)
}

/// `make dev`'s stand-in for the SQS event source of the refund-email function: the same worker,
/// fed from the real local queue.
fn spawn_refund_email_poller(stack: &LocalStack) -> anyhow::Result<()> {
    let env = stack.function_env("refund-email")?;
    let config = lumi_shared::Config::from_env("refund-email", &env)?;
    let worker = refund_email::Worker::new(lumi_shared::Platform::build(
        config,
        std::sync::Arc::new(lumi_shared::telemetry::Stdout),
        std::sync::Arc::new(lumi_shared::clock::SystemClock),
    ));
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config);
    let queue = stack
        .names
        .refs
        .get("RefundEmailQueue")
        .cloned()
        .context("no RefundEmailQueue")?;
    let arn = stack
        .names
        .attributes
        .get("RefundEmailQueue.Arn")
        .cloned()
        .unwrap_or_default();
    tokio::spawn(async move {
        // Short polls with a pause: a long poll would hold the local stack, which serves one
        // request at a time, for its whole wait.
        loop {
            match lumi_infra::poller::poll_once(&sqs, &queue, &arn, &worker, 0).await {
                Ok(polled) if polled.received > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "refund-email poller"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(())
}
