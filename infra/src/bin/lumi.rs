//! `lumi`: the project's own command line, for local development and operations.
//!
//! Local: `lumi dev [--port 3000] [--moto-port 4566]` starts moto, creates the stack from
//! `template.yaml`, seeds demo accounts, serves the whole API, prints how to call it; Ctrl-C
//! stops everything.
//!
//! Operations (against AWS with the default credentials and region, or against the local stack
//! with `AWS_ENDPOINT_URL=http://127.0.0.1:4566`; `--table` is the stack's `AppTableName` output,
//! `--secret-id` its `ConfigSecretArn`):
//!
//! - `lumi secrets init --secret-id <id>`: completes the config secret, keeping existing keys.
//! - `lumi secrets rotate-jwt --secret-id <id>`: a new signing key now, by the steps of the
//!   scheduled rotation (`secret_rotation::rotate_now`); the previous one keeps verifying until
//!   its tokens expire.
//! - `lumi secrets rotate-config-key --secret-id <id>`: a new `config_encryption_key` first in
//!   the list; the former ones still open what they sealed.
//! - `lumi users create-admin --table <t> --email <e> --name <n>`: the first admin; the password
//!   is read from standard input.
//! - `lumi users tier --table <t> <user id or email> <standard|premium>`: a user's tier (the
//!   premium quota multiplier), audited as `user.tier` by `operator:<login>`; it applies from the
//!   user's next token.
//! - `lumi sessions purge --table <t> --user <id>`: deletes every session row of a user.
//! - `lumi sessions revoke-all --table <t> --user <id>`: ends every session of a user at once.
//! - `lumi sessions revoke-all --table <t> --everyone`: logs everyone out (the runbook's force
//!   logout after a key rotation): the global sessions epoch, audited; uses this machine's clock.
//! - `lumi settings show --table <t>`: the runtime settings in force.
//! - `lumi settings rate-limit --table <t> --scope customer --limit 120 [--window 300]
//!   [--fail open|closed]` (or `--premium-multiplier N`): changes a budget; every container
//!   applies it within `SETTINGS_CACHE_TTL_SECONDS`.
//! - `lumi settings reseal --table <t> --secret-id <id>`: seals every sensitive setting under the
//!   newest config key now (every backup run does it too); prints the key ids still in use.
//!
//! Benchmark (run by `make bench`): `lumi bench aws-calls` counts, on a local stack of its own,
//! the rate limiter's DynamoDB calls per admitted request and the AWS calls of a checkout and of
//! an order list.
//!
//! - `lumi backup list --bucket <b>`: the complete backup runs, oldest first.
//! - `lumi backup restore --bucket <b> [--run <id>] --table AppTable=<new name> ...`: disaster
//!   recovery: an export (the newest by default) into new tables, verified against its manifest.
//! - `lumi backup run|restore-check --env-file <f>`: a backup job now, as the function would run
//!   it (`make backup` and `make restore-check`, against `make dev`'s stack).
//!
//! - `lumi schema status [--prefix lumi] [--name <LogicalId>=<physical name> ...]
//!   [--parameter <Name>=<value> ...]`: the live tables, queues and buckets against
//!   `template.yaml` (`lumi_infra::schema`), one line per drift; exit status 0 when they match,
//!   1 on drift, 2 when the check could not run. Local names are `<prefix>-<LogicalId>` (`make
//!   dev`'s prefix is `lumi`); for a deployed stack name each resource with `--name` (the table
//!   names, queue URLs and bucket names of the stack's outputs) and pass the parameters it was
//!   deployed with that the compared properties use (`BackupArchiveAfterDays`, ...).
//!
//! - `lumi outbox flush --table <t> --queue-url <url>`: sends the messages waiting in the outbox
//!   (refund emails whose first send failed).
//! - `lumi dlq redrive --from <dead-letter queue url> --to <queue url>`: moves the refund emails
//!   that failed every attempt back to their queue, once the cause is fixed.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use lumi_infra::{
    gateway::{Gateway, GatewayOptions},
    moto::{MotoOptions, MotoServer},
    seed,
    stack::{self, LocalStack},
    template::Template,
};
use lumi_shared::{
    auth::{self, Role, Tier, users::NewUser},
    store::Db,
};
use tokio::net::TcpListener;

const USAGE: &str = "usage:
  lumi dev [--port 3000] [--moto-port 4566]
  lumi secrets init --secret-id <id>
  lumi secrets rotate-jwt --secret-id <id>
  lumi secrets rotate-config-key --secret-id <id>
  lumi users create-admin --table <table> --email <email> --name <name>   (password on stdin)
  lumi users tier --table <table> <user id or email> <standard|premium>
  lumi sessions purge --table <table> --user <user id>
  lumi sessions revoke-all --table <table> --user <user id>
  lumi sessions revoke-all --table <table> --everyone
  lumi schema status [--prefix lumi] [--name <LogicalId>=<physical name> ...] [--parameter <Name>=<value> ...]
  lumi outbox flush --table <table> --queue-url <url>
  lumi dlq redrive --from <dead-letter queue url> --to <queue url>
  lumi settings show --table <table>
  lumi settings rate-limit --table <table> --scope <ip|customer|admin|auth|quota> [--limit N] [--window SECONDS] [--fail open|closed]
  lumi settings rate-limit --table <table> --premium-multiplier N
  lumi settings reseal --table <table> --secret-id <id>
  lumi bench aws-calls [--requests 200]
  lumi openapi [--out docs/openapi.yaml]      (--out - prints it)
  lumi backup run|restore-check --env-file <file>      (make backup / make restore-check)
  lumi backup list --bucket <bucket>
  lumi backup restore --bucket <bucket> [--run <run id>] --table <LogicalId>=<new table name> ...";

fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("{name} is required\n{USAGE}"))
}

/// `lumi openapi`: the generated document, to `docs/openapi.yaml` unless `--out` names another
/// file (`-`: standard output).
fn write_openapi(args: &[String]) -> anyhow::Result<()> {
    let yaml = lumi_infra::openapi::yaml()?;
    let out = flag(args, "--out").map_or_else(
        |_| lumi_infra::workspace_root().join("docs/openapi.yaml"),
        std::path::PathBuf::from,
    );
    if out.as_os_str() == "-" {
        print!("{yaml}");
        return Ok(());
    }
    std::fs::write(&out, yaml).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        ["dev", ..] => dev(&args).await,
        ["secrets", "init"] => secrets_init(&flag(&args, "--secret-id")?).await,
        ["secrets", "rotate-jwt"] => secrets_rotate_jwt(&flag(&args, "--secret-id")?).await,
        ["users", "create-admin"] => {
            create_admin(
                &flag(&args, "--table")?,
                &flag(&args, "--email")?,
                &flag(&args, "--name")?,
            )
            .await
        }
        ["users", "tier"] => users_tier(&args).await,
        ["settings", "rate-limit"] => set_rate_limit(&args).await,
        ["secrets", "rotate-config-key"] => {
            secrets_rotate_config_key(&flag(&args, "--secret-id")?).await
        }
        ["settings", "reseal"] => {
            settings_reseal(&flag(&args, "--table")?, &flag(&args, "--secret-id")?).await
        }
        ["dlq", "redrive"] => {
            let (from, to) = (flag(&args, "--from")?, flag(&args, "--to")?);
            let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
            let moved = lumi_infra::poller::redrive(&sqs, &from, &to).await?;
            println!("moved {moved} message(s) from {from} back to {to}");
            Ok(())
        }
        ["outbox", "flush"] => {
            let (table, queue) = (flag(&args, "--table")?, flag(&args, "--queue-url")?);
            let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
            let sent = lumi_commerce::outbox::flush(&db().await, &table, &sqs, &queue)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("sent {sent} message(s) from the outbox");
            Ok(())
        }
        ["settings", "show"] => {
            let store = settings_store(&flag(&args, "--table")?).await;
            println!("{}", serde_json::to_string_pretty(&*store.get().await)?);
            Ok(())
        }
        ["bench", "rate-limit"] | ["bench", "aws-calls"] => {
            let requests: u64 = flag(&args, "--requests")
                .unwrap_or_else(|_| "200".into())
                .parse()?;
            bench_rate_limit(requests).await
        }
        ["sessions", "purge"] => {
            let (table, user) = (flag(&args, "--table")?, flag(&args, "--user")?);
            let deleted = auth::sessions::purge(&db().await, &table, &user).await?;
            println!("deleted {deleted} session row(s) of user {user}");
            Ok(())
        }
        ["sessions", "revoke-all"] if args.iter().any(|a| a == "--everyone") => {
            let table = flag(&args, "--table")?;
            let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let revoked = auth::sessions::revoke_everyone(
                &db().await,
                &table,
                &format!("operator:{operator}"),
                &Default::default(),
                auth::now_ms(),
            )
            .await?;
            println!(
                "every session that started before {} ms has ended (audited as auth.revoke_all_everyone)",
                revoked.sessions_valid_after_ms
            );
            Ok(())
        }
        ["sessions", "revoke-all"] => {
            let (table, user) = (flag(&args, "--table")?, flag(&args, "--user")?);
            if !auth::users::end_all_sessions(&db().await, &table, &user, auth::now_ms()).await? {
                bail!("no user {user} in {table}");
            }
            println!("every session of user {user} has ended");
            Ok(())
        }
        ["backup", "run"] => backup_job(backup::Job::Backup, &flag(&args, "--env-file")?).await,
        ["backup", "restore-check"] => {
            backup_job(backup::Job::RestoreCheck, &flag(&args, "--env-file")?).await
        }
        ["backup", "list"] => {
            let archive = backup_archive(&flag(&args, "--bucket")?).await;
            for run in archive.complete_runs().await? {
                println!("{run}");
            }
            Ok(())
        }
        ["backup", "restore"] => backup_restore(&args).await,
        ["schema", "status"] => {
            let code = match schema_status(&args).await {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("schema status could not run: {error:#}");
                    2
                }
            };
            std::process::exit(code)
        }
        ["openapi", ..] => write_openapi(&args),
        ["--help" | "-h" | "help", ..] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// Runs a backup job as the function would, with the environment in `env_file` (the one
/// `make dev` writes to `target/local-env/backup.env`).
async fn backup_job(job: backup::Job, env_file: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(env_file)
        .with_context(|| format!("{env_file}: is `make dev` running? it writes this file"))?;
    let mut env = lumi_shared::config::Env::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("{env_file}: `{line}` is not KEY=value"))?;
        env.set(key, value);
    }
    let platform = lumi_shared::bootstrap::platform("backup", &env).await?;
    let output = backup::Jobs::new(platform).run(job).await?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

async fn backup_archive(bucket: &str) -> backup::archive::Archive {
    let sdk = sdk_config().await;
    backup::archive::Archive {
        s3: lumi_shared::aws::s3_client(&sdk),
        bucket: bucket.to_owned(),
    }
}

/// Disaster recovery: an export back into new tables (then point the stack at them, or copy).
async fn backup_restore(args: &[String]) -> anyhow::Result<()> {
    let archive = backup_archive(&flag(args, "--bucket")?).await;
    let run = match flag(args, "--run") {
        Ok(run) => run,
        Err(_) => archive.latest_run().await?,
    };
    let targets: Vec<(String, String)> = args
        .windows(2)
        .filter(|w| w[0] == "--table")
        .map(|w| {
            w[1].split_once('=')
                .map(|(id, name)| (id.to_owned(), name.to_owned()))
                .with_context(|| format!("--table {}: expected LogicalId=new-table-name", w[1]))
        })
        .collect::<anyhow::Result<_>>()?;
    if targets.is_empty() {
        bail!("name at least one --table LogicalId=new-table-name");
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    println!("restoring run {run}");
    for (table, items) in backup::restore::restore_into(&archive, &dynamodb, &run, &targets).await?
    {
        println!("  {table}: {items} items, checksums and counts verified");
    }
    Ok(())
}

/// The values of every `flag` of `args`, each `key=value`.
fn pairs(args: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| {
            w[1].split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{flag} {}: expected <name>=<value>", w[1]))
        })
        .collect()
}

/// `lumi schema status`: prints each drift and returns the exit status.
async fn schema_status(args: &[String]) -> anyhow::Result<i32> {
    let template = Template::project()?;
    let target = lumi_infra::schema::Target {
        prefix: flag(args, "--prefix").unwrap_or_else(|_| "lumi".into()),
        names: pairs(args, "--name")?.into_iter().collect(),
        parameters: pairs(args, "--parameter")?.into_iter().collect(),
    };
    for id in target.names.keys() {
        let known = template.resources.get(id).is_some_and(|r| {
            matches!(
                r.kind.as_str(),
                "AWS::DynamoDB::Table" | "AWS::SQS::Queue" | "AWS::S3::Bucket"
            )
        });
        if !known {
            bail!("--name {id}=...: template.yaml has no table, queue or bucket {id}");
        }
    }
    let report = lumi_infra::schema::status(&template, &sdk_config().await, &target).await?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(report.exit_code())
}

async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

async fn db() -> Db {
    Db::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(1),
    )
}

async fn dev(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = flag(args, "--port")
        .unwrap_or_else(|_| "3000".into())
        .parse()?;
    let moto_port: u16 = flag(args, "--moto-port")
        .unwrap_or_else(|_| "4566".into())
        .parse()?;
    lumi_shared::telemetry::log::init(
        "local-gateway",
        tracing::Level::INFO,
        std::env::var("TRACING_ENABLED").is_ok_and(|v| v == "1"),
        std::sync::Arc::new(lumi_shared::telemetry::Stdout),
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
    let gateway = Gateway::build(&stack, &GatewayOptions::default()).await?;
    let base = format!("http://127.0.0.1:{port}");
    let env_dir = write_env_files(&stack, &base)?;
    spawn_refund_email_poller(&stack)?;
    // The health probe calls the API through this gateway, as it calls API Gateway in AWS.
    let schedules = lumi_infra::schedule::spawn_schedules(&stack, &base).await?;
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

async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> anyhow::Result<Option<String>> {
    let request = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage("AWSCURRENT");
    match request.send().await {
        Ok(out) => Ok(out.secret_string),
        Err(error) => {
            let service = error
                .as_service_error()
                .map(|e| e.is_resource_not_found_exception());
            if service == Some(true) {
                bail!("no secret {secret_id}")
            }
            // A secret created without a value has no AWSCURRENT version yet.
            Ok(None)
        }
    }
}

async fn secrets_init(secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let current = read_secret(&client, secret_id).await?;
    let completed = stack::complete_secret_value(current.as_deref())?;
    let unchanged = current
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        == serde_json::from_str::<serde_json::Value>(&completed).ok();
    if unchanged {
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

/// The scheduled rotation's steps (create, test, finish), run now with a token of their own.
async fn secrets_rotate_jwt(secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let (kid, version) = secret_rotation::rotate_now(
        &client,
        &lumi_shared::config::AuthConfig::default(),
        secret_id,
    )
    .await
    .map_err(|e| match e {
        secret_rotation::RotationError::Invalid { .. } => {
            anyhow::anyhow!("{e}: run `lumi secrets init` first")
        }
        other => anyhow::anyhow!(other),
    })?;
    println!(
        "new signing key {kid} (version {version} is AWSCURRENT); the previous key verifies until its tokens expire (at most 15 minutes).\n\
         Containers pick it up within SECRETS_CACHE_TTL_SECONDS (300 s), or at once when they meet a token it signed."
    );
    Ok(())
}

async fn secrets_rotate_config_key(secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let current = read_secret(&client, secret_id)
        .await?
        .context("the secret has no value: run `lumi secrets init` first")?;
    let rotated = lumi_shared::secrets::rotate_config_key_json(&current)?;
    let keys = lumi_shared::secrets::AppSecrets::parse(&rotated)?.config_encryption_key;
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(rotated)
        .send()
        .await
        .with_context(|| format!("writing {secret_id}"))?;
    println!(
        "new config key {}; the former ones still open what they sealed.\n\
         Containers pick it up within SECRETS_CACHE_TTL_SECONDS (300 s). Then run `lumi settings reseal`\n\
         (or wait for the next backup), and drop a former key from the secret once no value and no\n\
         backup you may restore names it.",
        lumi_shared::settings::sealed::key_id(keys.newest())
    );
    Ok(())
}

async fn settings_reseal(table: &str, secret_id: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let secret = read_secret(&client, secret_id)
        .await?
        .context("the secret has no value: run `lumi secrets init` first")?;
    let keys = lumi_shared::secrets::AppSecrets::parse(&secret)?.config_encryption_key;
    let store = settings_store(table).await;
    let wrote = store.reseal(&keys).await?;
    let (settings, _) = store.read_versioned().await?;
    let kids: Vec<&str> = settings
        .error_reporting_dsn
        .iter()
        .filter_map(|v| v.kid())
        .collect();
    println!(
        "{}; key ids in use: {kids:?}",
        if wrote {
            "sealed again"
        } else {
            "nothing to seal"
        }
    );
    Ok(())
}

async fn create_admin(table: &str, email: &str, name: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("send the new admin's password on standard input");
    }
    let user = auth::users::create(
        &db().await,
        table,
        NewUser {
            email: email.into(),
            name: name.into(),
            password,
            role: Role::Admin,
            tier: Tier::Standard,
        },
    )
    .await
    .map_err(|e| match e {
        auth::users::CreateUserError::Invalid(errors) => anyhow::anyhow!(
            "invalid: {}",
            errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!(other),
    })?;
    println!("admin {} created with id {}", user.email, user.id);
    Ok(())
}

/// `lumi users tier --table <t> <user id or email> <tier>`: the admin API's tier change.
async fn users_tier(args: &[String]) -> anyhow::Result<()> {
    let table = flag(args, "--table")?;
    let mut positional = Vec::new();
    let mut rest = args.iter().skip(2);
    while let Some(arg) = rest.next() {
        if arg == "--table" {
            rest.next();
        } else {
            positional.push(arg.as_str());
        }
    }
    let [who, tier] = positional.as_slice() else {
        bail!("name the user (id or email) and the tier\n{USAGE}");
    };
    let tier: Tier = tier.parse()?;
    let db = db().await;
    let user = if who.contains('@') {
        let email = auth::users::normalize_email(who)
            .map_err(|e| anyhow::anyhow!("{} {}", e.field, e.message))?;
        let account = auth::users::find_by_email(&db, &table, &email)
            .await?
            .with_context(|| format!("no user with the email {email} in {table}"))?;
        auth::users::UserId::parse(&account.user_id)?
    } else {
        auth::users::UserId::parse(who)?
    };
    let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let change = auth::users::set_tier(
        &db,
        &table,
        &user,
        tier,
        auth::users::ChangedBy {
            actor: format!("operator:{operator}"),
            request_id: None,
            client_ip: None,
        },
    )
    .await?;
    if change.changed {
        println!(
            "user {} is {} (was {}); it applies from their next token (next login or refresh, at most 15 minutes)",
            change.user_id,
            change.after.as_str(),
            change.before.as_str()
        );
    } else {
        println!(
            "user {} is {} already",
            change.user_id,
            change.after.as_str()
        );
    }
    Ok(())
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
async fn bench_rate_limit(requests: u64) -> anyhow::Result<()> {
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

async fn settings_store(table: &str) -> lumi_shared::settings::SettingsStore {
    lumi_shared::settings::SettingsStore::new(
        db().await,
        table.to_owned(),
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(10),
    )
}

async fn set_rate_limit(args: &[String]) -> anyhow::Result<()> {
    use lumi_shared::settings::FailMode;
    let table = flag(args, "--table")?;
    let store = settings_store(&table).await;
    let mut settings = (*store.get().await).clone();
    let limits = &mut settings.rate_limits;
    if let Ok(multiplier) = flag(args, "--premium-multiplier") {
        limits.premium_multiplier = multiplier
            .parse()
            .context("--premium-multiplier is a number")?;
    } else {
        let scope = flag(args, "--scope")?;
        let budget = match scope.as_str() {
            "ip" => &mut limits.ip,
            "customer" => &mut limits.customer,
            "admin" => &mut limits.admin,
            "auth" => &mut limits.auth,
            "quota" => &mut limits.quota,
            other => bail!("no scope {other}: ip, customer, admin, auth or quota"),
        };
        if let Ok(limit) = flag(args, "--limit") {
            budget.limit = limit.parse().context("--limit is a number")?;
        }
        if let Ok(window) = flag(args, "--window") {
            budget.window_seconds = window.parse().context("--window is a number of seconds")?;
            if budget.window_seconds == 0 {
                bail!("--window must be at least 1 second");
            }
        }
        if let Ok(fail) = flag(args, "--fail") {
            budget.fail = match fail.as_str() {
                "open" => FailMode::Open,
                "closed" => FailMode::Closed,
                other => bail!("--fail is open or closed, not {other}"),
            };
        }
    }
    store.put(&settings, 1).await?;
    println!("{}", serde_json::to_string_pretty(&settings.rate_limits)?);
    println!("every container applies it within SETTINGS_CACHE_TTL_SECONDS (30 s by default)");
    Ok(())
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
