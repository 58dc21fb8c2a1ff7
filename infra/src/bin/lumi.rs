//! `lumi`: the project's own command line, for local development and operations.
//!
//! - `lumi dev [--port 3000] [--moto-port 4566]`: starts moto, creates the stack from
//!   `template.yaml`, serves the whole API, prints how to call it; Ctrl-C stops everything.
//! - `lumi secrets init --secret-id <id>`: completes the config secret of a deployed stack with
//!   every key the functions need, keeping the keys already there (uses the default AWS
//!   credentials and region, or `AWS_ENDPOINT_URL`).

use anyhow::{Context as _, bail};
use lumi_infra::{
    gateway::{Gateway, GatewayOptions},
    moto::{MotoOptions, MotoServer},
    stack::{self, LocalStack},
    template::Template,
};
use tokio::net::TcpListener;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dev") => dev(&args).await,
        Some("secrets") if args.get(1).map(String::as_str) == Some("init") => {
            let secret_id = flag(&args, "--secret-id").context("--secret-id is required")?;
            secrets_init(&secret_id).await
        }
        _ => bail!(
            "usage: lumi dev [--port 3000] [--moto-port 4566]\n       lumi secrets init --secret-id <id>"
        ),
    }
}

async fn dev(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = flag(args, "--port")
        .unwrap_or_else(|| "3000".into())
        .parse()?;
    let moto_port: u16 = flag(args, "--moto-port")
        .unwrap_or_else(|| "4566".into())
        .parse()?;
    lumi_shared::telemetry::log::init(
        "local-gateway",
        tracing::Level::INFO,
        std::env::var("TRACING_ENABLED").is_ok_and(|v| v == "1"),
        std::sync::Arc::new(lumi_shared::telemetry::Stdout),
    );
    let mut moto = MotoServer::start(&MotoOptions {
        port: moto_port,
        ..MotoOptions::default()
    })?;
    let stack = LocalStack::bootstrap(
        Template::project()?,
        &moto.endpoint,
        "lumi",
        stack::local_parameters(),
    )
    .await?;
    let gateway = Gateway::build(&stack, &GatewayOptions::default()).await?;
    let env_dir = write_env_files(&stack)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("port {port} is taken: is another `make dev` running?"))?;
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "\nLumi is serving {} routes at {base} (local AWS at {})",
        gateway.routes.len(),
        moto.endpoint
    );
    for route in &gateway.routes {
        println!(
            "  {:6} {:40} -> {}",
            route.method, route.path, route.function
        );
    }
    println!("\nTry:\n  curl -i {base}/api/v1/health/live\n  curl -i {base}/api/v1/health/ready");
    println!("Resources: tables, queues, buckets and secrets are named lumi-<LogicalId>.");
    println!(
        "Each function's environment is in {}/<function>.env, for\n  cargo lambda watch -A 127.0.0.1 --env-file {}/health.env\n  cargo lambda invoke health --data-file events/health/live.json",
        env_dir.display(),
        env_dir.display()
    );
    println!("Press Ctrl-C to stop (moto stops with it).\n");
    let served = gateway
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    moto.stop();
    served.context("serving the API")
}

/// `target/local-env/<function>.env`: what `cargo lambda watch --env-file` needs to run a
/// function against this stack.
fn write_env_files(stack: &LocalStack) -> anyhow::Result<std::path::PathBuf> {
    let dir = lumi_infra::workspace_root().join("target/local-env");
    std::fs::create_dir_all(&dir)?;
    for (_, binary) in stack.template.functions()? {
        let env = stack.function_env(&binary)?;
        let mut vars: Vec<(&str, &str)> = env.iter().collect();
        vars.sort();
        let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join(format!("{binary}.env")), text)?;
    }
    Ok(dir)
}

async fn secrets_init(secret_id: &str) -> anyhow::Result<()> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    let client = aws_sdk_secretsmanager::Client::new(&loader.load().await);
    let current = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .ok()
        .and_then(|out| out.secret_string);
    let completed = stack::complete_secret_value(current.as_deref())?;
    if current.as_deref() == Some(completed.as_str()) {
        println!("{secret_id} already has every key");
        return Ok(());
    }
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(completed)
        .send()
        .await
        .with_context(|| format!("writing {secret_id}"))?;
    println!("{secret_id}: every key is present (existing keys kept)");
    Ok(())
}
