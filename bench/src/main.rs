//! `lumi-bench`: cold start and size of every Lumi function next to a hello-world Lambda.
//!
//! Lambda bills by duration and every cold start loads and initialises the whole `bootstrap`,
//! so we hold each function to two goals: a cold start within 1.5x of the smallest possible
//! `lambda_runtime` function (`bench/hello-lambda`, built the same way) and a stripped binary
//! under 8 MB. Absolute milliseconds depend on the machine; the ratio to hello-world measured
//! on the same machine, in the same minute, does not (much).
//!
//! What a cold start is here: this tool serves a minimal local Lambda Runtime API
//! ([`runtime_api`]) and, for every run, execs a fresh `bootstrap` with the environment Lambda
//! gives it, hands it one event, and times from just before exec to the moment its response
//! arrives. That covers loading the binary, runtime and client initialisation and one
//! invocation, which is what a user waits for on a cold start (minus Lambda's own sandbox
//! setup, identical for every function). The binaries are run interleaved (reference, f1, f2,
//! reference, ...) so machine drift hits all of them alike, after a few discarded warm-up runs
//! that fill the page cache.
//!
//! Run by `make bench` after `cargo lambda build --release`; see `bench/README.md`.
//!
//! `lumi-bench load` ([`load`]): the local stack (`lumi dev`) under a mixed customer load,
//! p50 and p99 against the goal at 8 clients; `make bench-load` runs it alone.
//!
//! `lumi-bench image-get` ([`image_get`]): the signed image GET's own overhead over the bare
//! transform it serves, against the goal of 5 %; `make bench-image-get` runs it alone.

mod cli;
mod image_get;
mod load;
mod report;
mod runtime_api;

use std::{
    ffi::OsString,
    fmt::Write as _,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::{ExitCode, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
    task::JoinHandle,
};

use crate::{
    cli::ColdStart,
    report::{Measured, Report},
    runtime_api::{Arrival, ArrivalKind, Invocation, RuntimeApi},
};

/// A run fails if the function has not answered this long after exec.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a failed child's stdout/stderr shown in the error.
const OUTPUT_TAIL: usize = 8 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Ok(cli::Command::ColdStart(opts)) => cold_start(opts).await,
        Ok(cli::Command::Load(opts)) => load::run(opts).await,
        // Boxed: the stack's bootstrap is a large future.
        Ok(cli::Command::ImageGet(opts)) => Box::pin(image_get::run(opts)).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Our own format rather than `Result` from main: no backtrace, whatever
            // RUST_BACKTRACE says, and the child's output kept on its own lines.
            if std::io::stderr().is_terminal() {
                eprint!("\r\x1b[K");
            }
            eprintln!("lumi-bench: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// One binary to measure.
struct Target {
    name: String,
    bootstrap: PathBuf,
    is_reference: bool,
    event_path: Option<PathBuf>,
    event: Bytes,
    /// The `statusCode` an API Gateway v2 event must be answered with to count: 200, or the
    /// status the event's file name gives (`me.401.json`), as in the events test.
    expect_status: Option<u64>,
    samples: Vec<Duration>,
}

impl Target {
    fn new(lambda_dir: &Path, name: &str, event_path: Option<&Path>) -> Result<Self> {
        let bootstrap = lambda_dir.join(name).join("bootstrap");
        if !bootstrap.is_file() {
            bail!(
                "{} not found: build the functions first (`cargo lambda build --release`)",
                bootstrap.display()
            );
        }
        let (event, expect_status) = match event_path {
            None => (Bytes::from_static(b"{}"), None),
            Some(path) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("reading {} (the event for {name})", path.display())
                })?;
                let json: Value = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                let named = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .and_then(|stem| stem.rsplit_once('.'))
                    .and_then(|(_, status)| status.parse::<u64>().ok());
                let expect = is_api_gateway_v2(&json).then_some(named.unwrap_or(200));
                (Bytes::from(text), expect)
            }
        };
        Ok(Target {
            name: name.to_owned(),
            bootstrap,
            is_reference: event_path.is_none(),
            event_path: event_path.map(Path::to_path_buf),
            event,
            expect_status,
            samples: Vec::new(),
        })
    }

    fn size_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.bootstrap)
            .with_context(|| format!("reading the size of {}", self.bootstrap.display()))?
            .len())
    }
}

fn is_api_gateway_v2(event: &Value) -> bool {
    event["version"] == "2.0" && event["requestContext"]["http"].is_object()
}

async fn cold_start(opts: ColdStart) -> Result<()> {
    let mut targets = vec![Target::new(&opts.lambda_dir, &opts.reference, None)?];
    for (name, event) in &opts.functions {
        targets.push(Target::new(&opts.lambda_dir, name, Some(event))?);
    }
    let api = RuntimeApi::start().await?;

    // Progress on stderr: a live counter on a terminal, one line in a log (make, CI).
    let live = std::io::stderr().is_terminal();
    if !live {
        eprintln!(
            "lumi-bench: {} binaries, {} warm-up + {} measured runs each, interleaved",
            targets.len(),
            opts.warmup,
            opts.runs
        );
    }
    let mut seq = 0_u64;
    for round in 0..opts.warmup + opts.runs {
        let warming = round < opts.warmup;
        if live {
            let (what, i, n) = if warming {
                ("warm-up", round + 1, opts.warmup)
            } else {
                ("run", round - opts.warmup + 1, opts.runs)
            };
            eprint!("\r\x1b[Klumi-bench: {what} {i}/{n}");
        }
        for target in &mut targets {
            seq += 1;
            let elapsed = run_once(&api, target, seq)
                .await
                .with_context(|| format!("cold start of {} failed", target.name))?;
            if !warming {
                target.samples.push(elapsed);
            }
        }
    }
    if live {
        eprint!("\r\x1b[K");
    }

    let mut measured = Vec::with_capacity(targets.len());
    for target in targets {
        measured.push(Measured {
            size_bytes: target.size_bytes()?,
            name: target.name,
            is_reference: target.is_reference,
            event: target.event_path.map(|p| p.display().to_string()),
            samples: target.samples,
        });
    }
    let report = Report::new(measured, opts.runs, opts.warmup)?;
    print!("{}", report.table());
    if let Some(path) = &opts.json {
        report.write_json(path)?;
        eprintln!("lumi-bench: figures written to {}", path.display());
    }
    Ok(())
}

/// How a run ended, before the child is killed.
enum Outcome {
    Answered(Arrival),
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    ApiGone,
}

/// Execs `target` once against the local Runtime API; returns exec-to-response time.
async fn run_once(api: &RuntimeApi, target: &Target, seq: u64) -> Result<Duration> {
    let request_id = format!("{:08x}-0000-4000-8000-{seq:012x}", std::process::id());
    let arrival = api.arm(Invocation {
        request_id,
        function_name: target.name.clone(),
        event: target.event.clone(),
    });

    // Absolute: the child runs in the binary's own folder, where a relative path would not resolve.
    let program = std::path::absolute(&target.bootstrap)
        .with_context(|| format!("resolving {}", target.bootstrap.display()))?;
    let mut command = Command::new(&program);
    command
        .env_clear()
        .envs(lambda_env(api, &target.name))
        .current_dir(target.bootstrap.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", target.bootstrap.display()))?;
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());

    let outcome = tokio::select! {
        biased;
        answer = tokio::time::timeout_at((start + RUN_TIMEOUT).into(), arrival) => match answer {
            Ok(Ok(arrival)) => Outcome::Answered(arrival),
            Ok(Err(_)) => Outcome::ApiGone,
            Err(_) => Outcome::TimedOut,
        },
        status = child.wait() => Outcome::Exited(status),
    };

    // One invocation per process: stop it whatever happened, and reap it before the next run.
    api.disarm();
    let _ = child.start_kill(); // fails only if it already exited
    child.wait().await.context("waiting for the killed child")?;
    // Lazy: only awaited (collected) when the run failed.
    let output = output_tail(stdout, stderr);

    match outcome {
        Outcome::Answered(Arrival {
            at,
            kind: ArrivalKind::Response,
            body,
        }) => {
            if let Some(expected) = target.expect_status {
                let status = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|response| response["statusCode"].as_u64());
                if status != Some(expected) {
                    bail!(
                        "answered {} instead of statusCode {expected}: {}{}",
                        status.map_or("no statusCode".to_owned(), |s| format!("statusCode {s}")),
                        String::from_utf8_lossy(&body),
                        output.await
                    );
                }
            }
            Ok(at.saturating_duration_since(start))
        }
        Outcome::Answered(Arrival { kind, body, .. }) => bail!(
            "posted to the Runtime API's {} endpoint: {}{}",
            match kind {
                ArrivalKind::InitError => "init/error",
                _ => "invocation error",
            },
            String::from_utf8_lossy(&body),
            output.await
        ),
        Outcome::Exited(status) => bail!(
            "exited before answering ({}){}",
            match status {
                Ok(status) => status.to_string(),
                Err(err) => err.to_string(),
            },
            output.await
        ),
        Outcome::TimedOut => bail!(
            "no answer within {} s{}",
            RUN_TIMEOUT.as_secs(),
            output.await
        ),
        Outcome::ApiGone => bail!("the local Runtime API stopped{}", output.await),
    }
}

/// The environment Lambda gives a `provided.al2023` function, and nothing else. The AWS
/// endpoint points at a closed local port: the benchmarked events must do no I/O.
fn lambda_env(api: &RuntimeApi, name: &str) -> Vec<(&'static str, OsString)> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    vec![
        ("AWS_LAMBDA_RUNTIME_API", api.addr().to_string().into()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{name}").into(),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "bench".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("APP_TABLE", "bench-app".into()),
        ("CONFIG_SECRET_ID", "bench-config".into()),
        ("RATE_LIMIT_TABLE", "bench-rate-limit".into()),
        // The rate limiter would call the (absent) store on every route but the probes: the
        // cold-start figure measures start-up, and `lumi bench rate-limit` measures the limiter.
        ("RATE_LIMIT_ENABLED", "false".into()),
        ("PATH", path),
    ]
}

/// Drains a child pipe in the background (so a chatty child never blocks on a full pipe).
fn capture(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf).await;
        }
        buf
    })
}

/// The end of the child's stdout and stderr, formatted for an error message.
async fn output_tail(stdout: JoinHandle<Vec<u8>>, stderr: JoinHandle<Vec<u8>>) -> String {
    let mut text = String::new();
    for (label, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        // The child is dead; its pipes close at once unless it left a grandchild holding them.
        let bytes = match tokio::time::timeout(Duration::from_secs(1), pipe).await {
            Ok(Ok(bytes)) => bytes,
            _ => b"(not collected)".to_vec(),
        };
        let tail = &bytes[bytes.len().saturating_sub(OUTPUT_TAIL)..];
        let tail = String::from_utf8_lossy(tail);
        let tail = tail.trim_end();
        let _ = write!(text, "\n--- child {label} ---\n");
        text.push_str(if tail.is_empty() { "(empty)" } else { tail });
    }
    text
}
