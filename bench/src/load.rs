//! `lumi-bench load`: the local stack under a mixed customer load.
//!
//! Starts `lumi dev` (the stack `make dev` serves: moto behind its lock, localstripe, the
//! gateway with every function's router, the refund-email poller and the schedules) on free
//! ports, prepares it through the API as an admin and customers would (budgets, a catalog with
//! stock for the whole run, one account per client), then drives `clients` concurrent customers
//! for a fixed time. Each customer connects from its own loopback address (`127.0.0.<10 + i>`),
//! as real customers come from their own IPs: the gateway gives that address to the `ip` rate
//! limit scope.
//!
//! Each customer repeats one round of five requests, starting at a different step so the
//! clients are not in lockstep: the catalog list, a product, the order list, a cart add, a
//! checkout (`manual` payment, the default of the `orderPayments` flag). Every request is timed
//! from send to the last byte of the answer; one round per client before the clock starts is
//! not counted (first-use caches, connections).
//!
//! With `--moto-log`, moto's request log (one line per AWS call with the time spent reading
//! the body, waiting for the lock and handled by moto) is summarised for the measured window:
//! where the AWS side of the time goes. `--one-address` sends every customer's load from one
//! address (as a load generator on one machine does without it): every request then spends
//! the same `ip` bucket.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
    sync::oneshot,
};

use crate::{
    cli::Load,
    report::{AwsCall, LoadReport, Sample},
};

/// `lumi dev` must print its banner within this time (moto and localstripe start, the stack is
/// created, the demo data seeded).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// One request of the load, or of the setup, fails after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Products created for the run, two variants each: enough stock that no checkout of the run
/// runs out.
const PRODUCTS: usize = 4;
const STOCK: i64 = 1_000_000;

/// The steps of one customer's round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Catalog,
    Product,
    Orders,
    CartAdd,
    Checkout,
}

impl Step {
    pub const ROUND: [Step; 5] = [
        Step::Catalog,
        Step::Product,
        Step::Orders,
        Step::CartAdd,
        Step::Checkout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Step::Catalog => "GET /api/v1/products",
            Step::Product => "GET /api/v1/products/{id}",
            Step::Orders => "GET /api/v1/orders?limit=10",
            Step::CartAdd => "POST /api/v1/cart/items",
            Step::Checkout => "POST /api/v1/orders",
        }
    }
}

/// `lumi dev`, on free ports, with its output in a file.
struct Dev {
    child: Child,
    base: String,
    /// `(role, email, password)` of the demo accounts it printed.
    accounts: Vec<(String, String, String)>,
}

impl Dev {
    async fn start(lumi: &Path, moto_log: Option<&Path>, output: &Path) -> Result<Self> {
        if !lumi.is_file() {
            bail!(
                "{} not found: `cargo build -p lumi-infra --bin lumi` first",
                lumi.display()
            );
        }
        let port = free_port()?;
        let mut command = Command::new(lumi);
        command
            .args(["dev", "--port", &port.to_string(), "--moto-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Errors (moto's, localstripe's) show where they always do.
            .stderr(Stdio::inherit())
            // moto and localstripe are tied to `lumi dev`: they end with it.
            .kill_on_drop(true);
        match moto_log {
            Some(log) => {
                let _ = std::fs::remove_file(log);
                command.env("LUMI_MOTO_LOG", log);
            }
            None => {
                command.env_remove("LUMI_MOTO_LOG");
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} dev", lumi.display()))?;
        let file = std::fs::File::create(output)
            .with_context(|| format!("creating {}", output.display()))?;
        let (ready_tx, ready_rx) = oneshot::channel::<Vec<String>>();
        let stdout = child.stdout.take().context("lumi dev's stdout")?;
        // stdout goes to the file, whole, for the curious; its banner up to the line that says
        // it serves is handed back (the demo accounts are in it).
        let mut out_file = std::io::LineWriter::new(file);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut banner = Vec::new();
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(out_file, "{line}");
                if ready.is_some() {
                    banner.push(line.clone());
                    if line.starts_with("Press Ctrl-C")
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(std::mem::take(&mut banner));
                    }
                }
            }
        });
        let banner = match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(banner)) => banner,
            Ok(Err(_)) => bail!(
                "lumi dev ended before serving (its output: {})",
                output.display()
            ),
            Err(_) => bail!(
                "lumi dev did not serve within {} s (its output: {})",
                START_TIMEOUT.as_secs(),
                output.display()
            ),
        };
        // "  Admin: admin@lumi.local / lumi-admin-local-1"
        let accounts = banner
            .iter()
            .skip_while(|line| !line.starts_with("Demo accounts"))
            .skip(1)
            .map_while(|line| {
                let (role, rest) = line.trim().split_once(": ")?;
                let (email, password) = rest.split_once(" / ")?;
                Some((role.to_owned(), email.to_owned(), password.to_owned()))
            })
            .collect();
        Ok(Dev {
            child,
            base: format!("http://127.0.0.1:{port}"),
            accounts,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A free loopback port for the gateway (`lumi dev` needs a number: it registers the
/// webhook URL with localstripe).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A customer (or the admin) talking to the gateway from its own loopback address.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(base: &str, from: Ipv4Addr) -> Result<Self> {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(from))
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Client {
            http,
            base: base.to_owned(),
            token: None,
        })
    }

    /// One request: its status, its body (read whole) and how long it took.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>, Duration)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.with_context(|| path.to_owned())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.with_context(|| path.to_owned())?;
        Ok((status, headers, bytes.to_vec(), started.elapsed()))
    }

    /// A setup request that must answer `expect`: its JSON.
    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        expect: u16,
    ) -> Result<(reqwest::header::HeaderMap, Value)> {
        let (status, headers, bytes, _) = self.send(method, path, body, headers).await?;
        if status != expect {
            bail!(
                "{path} answered {status} (expected {expect}): {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok((
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn login(&mut self, email: &str, password: &str) -> Result<()> {
        let (_, tokens) = self
            .expect(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                Some(&json!({ "email": email, "password": password })),
                &[],
                200,
            )
            .await?;
        self.token = Some(
            tokens["access_token"]
                .as_str()
                .context("login answered no access_token")?
                .to_owned(),
        );
        Ok(())
    }
}

/// The admin's part: budgets that let the whole run through (every request still spends them:
/// the limiter writes as it always does) and a catalog with stock for every checkout.
async fn prepare(dev: &Dev) -> Result<Vec<(String, String)>> {
    let (_, email, password) = dev
        .accounts
        .iter()
        .find(|(role, ..)| role == "Admin")
        .context("lumi dev printed no Admin demo account")?;
    let mut admin = Client::new(&dev.base, Ipv4Addr::new(127, 0, 0, 2))?;
    admin.login(email, password).await?;
    let (headers, _) = admin
        .expect(
            reqwest::Method::GET,
            "/api/v1/admin/settings",
            None,
            &[],
            200,
        )
        .await?;
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .context("the settings came without an ETag")?
        .to_owned();
    let generous = json!({ "limit": 1_000_000 });
    admin
        .expect(
            reqwest::Method::PUT,
            "/api/v1/admin/settings",
            Some(&json!({ "rate_limits": {
                "ip": generous, "customer": generous, "quota": generous, "auth": generous,
            } })),
            &[("if-match", &etag)],
            200,
        )
        .await?;
    let mut products = Vec::new();
    for p in 0..PRODUCTS {
        let id = format!("bench-load-{p}");
        let variants: Vec<Value> = (0..2)
            .map(|v| {
                json!({ "sku": format!("BENCH-{p}-{v}"), "name": format!("Variant {v}"),
                        "price_minor": 500 + 100 * v, "currency": "EUR", "stock": STOCK })
            })
            .collect();
        admin
            .expect(
                reqwest::Method::POST,
                "/api/v1/admin/products",
                Some(&json!({ "id": id, "name": format!("Bench product {p}"),
                              "description": "Made by lumi-bench load", "variants": variants })),
                &[],
                201,
            )
            .await?;
        for v in 0..2 {
            products.push((id.clone(), format!("BENCH-{p}-{v}")));
        }
    }
    Ok(products)
}

/// One signed-in customer per client, each from its own address.
async fn customers(dev: &Dev, clients: usize) -> Result<Vec<Client>> {
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let signups = (0..clients).map(|i| {
        let base = dev.base.clone();
        async move {
            let mut client = Client::new(&base, customer_address(i))?;
            let email = format!("bench-{run}-{i}@lumi.local");
            let password = format!("bench-load-{i}-password");
            client
                .expect(
                    reqwest::Method::POST,
                    "/api/v1/auth/register",
                    Some(
                        &json!({ "email": email, "password": password, "name": "Bench Customer" }),
                    ),
                    &[],
                    201,
                )
                .await?;
            client.login(&email, &password).await?;
            anyhow::Ok(client)
        }
    });
    join_all(signups).await
}

fn customer_address(i: usize) -> Ipv4Addr {
    let i = u8::try_from(10 + i).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, 0, 0, i)
}

/// Runs the futures as tasks, concurrently; their outputs in order.
async fn join_all<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl Future<Output = Result<T>> + Send + 'static>,
) -> Result<Vec<T>> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.context("a load task panicked")??);
    }
    Ok(out)
}

/// One customer's loop: rounds from `first` step on until `until`; samples of requests that
/// started at or after `from`.
async fn drive(
    client: Client,
    index: usize,
    products: Arc<Vec<(String, String)>>,
    from: Instant,
    until: Instant,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut n = index;
    // One round before `from` is not counted.
    let warmup_steps = Step::ROUND.len();
    let mut done = 0usize;
    loop {
        if Instant::now() >= until {
            break;
        }
        let step = Step::ROUND[n % Step::ROUND.len()];
        let (product, sku) = &products[(index + n / Step::ROUND.len()) % products.len()];
        let key = format!("bench-{index}-{n}");
        let result = match step {
            Step::Catalog => {
                client
                    .send(reqwest::Method::GET, "/api/v1/products", None, &[])
                    .await
            }
            Step::Product => {
                client
                    .send(
                        reqwest::Method::GET,
                        &format!("/api/v1/products/{product}"),
                        None,
                        &[],
                    )
                    .await
            }
            Step::Orders => {
                client
                    .send(reqwest::Method::GET, "/api/v1/orders?limit=10", None, &[])
                    .await
            }
            Step::CartAdd => {
                client
                    .send(
                        reqwest::Method::POST,
                        "/api/v1/cart/items",
                        Some(&json!({ "variant": sku, "quantity": 1 })),
                        &[],
                    )
                    .await
            }
            Step::Checkout => {
                client
                    .send(
                        reqwest::Method::POST,
                        "/api/v1/orders",
                        Some(&json!({})),
                        &[("idempotency-key", &key)],
                    )
                    .await
            }
        };
        let (status, _, body, elapsed) = result?;
        let started = Instant::now() - elapsed;
        if done >= warmup_steps && started >= from {
            samples.push(Sample {
                step,
                status,
                latency: elapsed,
                detail: (status >= 400)
                    .then(|| String::from_utf8_lossy(&body).chars().take(300).collect()),
            });
        }
        done += 1;
        n += 1;
        // The warm-up round done, wait for the others before the clock starts.
        if done == warmup_steps {
            let wait = from.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait).await;
        }
    }
    Ok(samples)
}

/// Runs the whole benchmark and prints its report.
pub async fn run(opts: Load) -> Result<()> {
    let output = opts.dev_output.clone();
    eprintln!(
        "load: starting {} dev (output in {})",
        opts.lumi.display(),
        output.display()
    );
    let dev = Dev::start(&opts.lumi, opts.moto_log.as_deref(), &output).await?;
    let result = measure(&dev, &opts).await;
    dev.stop().await;
    let report = result?;
    print!("{}", report.table());
    if let Some(path) = &opts.json {
        report.write_json(path)?;
    }
    Ok(())
}

async fn measure(dev: &Dev, opts: &Load) -> Result<LoadReport> {
    eprintln!(
        "load: budgets and catalog (admin), {} customers",
        opts.clients
    );
    let products = Arc::new(prepare(dev).await?);
    let mut clients = customers(dev, opts.clients).await?;
    if opts.one_address {
        // Signed up from their own addresses (the `auth` budget is per IP, and the auth
        // function may still hold the default budgets), loaded from one.
        for client in &mut clients {
            client.http = Client::new(&dev.base, customer_address(0))?.http;
        }
    }
    // Enough time for every client's warm-up round (first calls of each route) before the
    // measured window opens.
    let from = Instant::now() + opts.warmup;
    let until = from + opts.duration;
    let wall_from = SystemTime::now() + opts.warmup;
    eprintln!(
        "load: {} clients, {} s warm-up, then {} s measured",
        opts.clients,
        opts.warmup.as_secs(),
        opts.duration.as_secs()
    );
    let tasks = clients.into_iter().enumerate().map(|(i, client)| {
        let products = products.clone();
        drive(client, i, products, from, until)
    });
    let samples: Vec<Sample> = join_all(tasks).await?.into_iter().flatten().collect();
    // Requests that were still running at `until` finished after it: the window is the time
    // the last of them took.
    let measured = Instant::now().saturating_duration_since(from);
    let aws = match &opts.moto_log {
        Some(log) => Some(aws_calls(log, wall_from, measured)?),
        None => None,
    };
    Ok(LoadReport::new(
        opts.clients,
        opts.one_address,
        measured,
        samples,
        aws,
    ))
}

/// The AWS calls moto logged within the measured window.
fn aws_calls(log: &Path, from: SystemTime, window: Duration) -> Result<Vec<AwsCall>> {
    let from = from.duration_since(UNIX_EPOCH)?.as_secs_f64();
    let until = from + window.as_secs_f64();
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|call| {
            let t = call["t"].as_f64().unwrap_or(0.0);
            (from..until).contains(&t)
        })
        .map(|call| AwsCall {
            name: match call["target"].as_str() {
                Some(target) if !target.is_empty() => {
                    let operation = target.rsplit('.').next().unwrap_or(target);
                    let mut name = operation.to_owned();
                    if let Some(table) = call["table"].as_str() {
                        name = format!("{name} {table}");
                    }
                    if let Some(index) = call["index"].as_str() {
                        name = format!("{name} (index {index})");
                    }
                    name
                }
                _ => format!(
                    "{} {} {}",
                    call["service"].as_str().unwrap_or(""),
                    call["method"].as_str().unwrap_or(""),
                    call["path"].as_str().unwrap_or("")
                ),
            },
            read_ms: call["read_ms"].as_f64(),
            wait_ms: call["wait_ms"].as_f64(),
            handle_ms: call["handle_ms"].as_f64(),
        })
        .collect())
}

/// Where `lumi-bench load` puts `lumi dev`'s output by default.
pub fn default_dev_output() -> PathBuf {
    PathBuf::from("target/bench-load-dev.log")
}
