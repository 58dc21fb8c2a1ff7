//! The end-to-end harness: real moto (one request at a time) on a free loopback port, a stack
//! bootstrapped from `template.yaml` under a unique prefix per test, the local gateway on port 0,
//! and real HTTP calls. Tests share one moto server per test binary (each has its own tables,
//! queues and secrets), except tests that stop their server, which get one of their own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use lumi_infra::{
    gateway::{Gateway, GatewayOptions},
    moto::{MotoOptions, MotoServer},
    stack::{self, LocalStack},
    template::Template,
};
use lumi_shared::{Platform, telemetry::CapturedLines};
use tokio::{net::TcpListener, sync::oneshot};

/// The moto server this test binary shares; it exits with the process.
pub fn shared_moto() -> &'static str {
    static MOTO: OnceLock<MotoServer> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            MotoServer::start(&MotoOptions {
                tie_to_parent: true,
                ..MotoOptions::default()
            })
            .expect("starting moto (run `make venv` first)")
        })
        .endpoint
}

pub mod client;
pub mod otlp;

pub use client::{
    Admin, AdminApi, Customer, Problem, Refused, Reply, Request, refund_request, status_of,
};

static LOGS: OnceLock<CapturedLines> = OnceLock::new();

/// Installs the global logger (with the span exporter to `otlp_endpoint` when given), unless the
/// process has one: whether this call installed it.
fn install_logger(otlp_endpoint: Option<&str>) -> bool {
    let mut installed = false;
    LOGS.get_or_init(|| {
        installed = true;
        let lines = CapturedLines::default();
        lumi_shared::telemetry::log::init(
            "test",
            &lumi_shared::telemetry::Tags::new("local", lumi_infra::template::LOCAL_REGION),
            tracing::Level::DEBUG,
            true,
            Arc::new(lines.clone()),
            otlp_endpoint,
        );
        lines
    });
    installed
}

/// Every log line of this test binary (installed as the global logger by the first app).
/// Tests search it for their own unique values, so sharing it keeps them isolated.
pub fn logs() -> &'static CapturedLines {
    install_logger(None);
    LOGS.get().expect("installed above")
}

/// The OTLP receiver every span of this test binary is exported to (`TRACING_ENABLED=1` for the
/// whole process, as the logger is). Call it before the binary's first app is spawned; tests
/// find their own spans by their request ids and trace ids.
pub fn traces() -> &'static otlp::Receiver {
    static TRACES: OnceLock<otlp::Receiver> = OnceLock::new();
    TRACES.get_or_init(|| {
        let receiver = otlp::Receiver::start();
        assert!(
            install_logger(Some(&receiver.endpoint)),
            "traces() comes before the first app of the test binary"
        );
        receiver
    })
}

/// A name prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A stack of this test's own on the shared server.
pub async fn bootstrap_stack(endpoint: &str) -> LocalStack {
    bootstrap_stack_with(endpoint, &[]).await
}

/// A stack of this test's own on the server at `endpoint`, deployed with `parameters` besides
/// the local ones (`ExistingAppTableName`, ...).
pub async fn bootstrap_stack_with(endpoint: &str, parameters: &[(String, String)]) -> LocalStack {
    let mut overrides = stack::local_parameters();
    overrides.extend(parameters.iter().cloned());
    LocalStack::bootstrap(
        Template::project().unwrap(),
        endpoint,
        &unique_prefix(),
        overrides,
    )
    .await
    .expect("bootstrapping the stack from template.yaml")
}

#[derive(Default)]
pub struct TestAppBuilder {
    clock: Option<lumi_shared::clock::ManualClock>,
    own_moto: bool,
    request_log: Option<std::path::PathBuf>,
    env: Vec<(String, String)>,
    parameters: Vec<(String, String)>,
    online_payments: Option<Option<u8>>,
    /// Stripe's own webhooks are not sent to the app (the test sends every event itself).
    without_stripe_webhooks: bool,
    /// EMF lines also published to the local CloudWatch, as `make dev` does.
    publishing_metrics: bool,
}

impl TestAppBuilder {
    /// `featureFlags.orderPayments` on (with `orderPaymentsRolloutPercent` when given) before
    /// the first request, and the settings cache off, so checkouts get `stripe`: a local Stripe
    /// server of this app's own (localstripe; its webhooks reach this app's gateway).
    pub fn online_payments(mut self, rollout_percent: Option<u8>) -> Self {
        self.online_payments = Some(rollout_percent);
        self.env("SETTINGS_CACHE_TTL_SECONDS", "0")
    }

    /// With [`Self::online_payments`]: the local Stripe server's events do not reach the app;
    /// the test forges (signs) every event itself, so nothing arrives on its own later (the
    /// history checker's sequential model needs every event to be one of its operations).
    pub fn without_stripe_webhooks(mut self) -> Self {
        self.without_stripe_webhooks = true;
        self
    }

    /// The functions' EMF lines are also published to the stack's CloudWatch (what CloudWatch
    /// Logs does in AWS, and `make dev` locally), for tests that read metrics back
    /// (`GET /api/v1/metrics`); [`TestApp::flush_metrics`] waits until they are.
    pub fn publishing_metrics(mut self) -> Self {
        self.publishing_metrics = true;
        self
    }

    /// A moto server for this test alone (to stop it).
    pub fn own_moto(mut self) -> Self {
        self.own_moto = true;
        self
    }

    /// A moto server of its own that logs every AWS call (to count them): see
    /// [`TestApp::aws_calls`].
    pub fn counting_aws_calls(mut self) -> Self {
        self.own_moto = true;
        let file = std::env::temp_dir().join(format!("{}-aws-calls.jsonl", unique_prefix()));
        self.request_log = Some(file);
        self
    }

    /// The functions' clock: a manual one the test moves.
    pub fn clock(mut self, clock: &lumi_shared::clock::ManualClock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// A template parameter of the app's stack, as a deploy's `--parameter-overrides` would set
    /// it (`ExistingAppTableName`: the functions use that table, and the stack creates none).
    pub fn parameter(mut self, name: &str, value: &str) -> Self {
        self.parameters.push((name.to_owned(), value.to_owned()));
        self
    }

    /// An environment variable for every function, after the template's.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub async fn spawn(self) -> TestApp {
        // Boxed: the whole start-up's state is large for every caller's future to hold.
        Box::pin(self.start()).await
    }

    async fn start(self) -> TestApp {
        let _ = logs();
        let request_log = self.request_log.clone();
        let moto = self.own_moto.then(|| {
            MotoServer::start(&MotoOptions {
                tie_to_parent: true,
                request_log: request_log.clone(),
                ..MotoOptions::default()
            })
            .unwrap()
        });
        let endpoint = moto
            .as_ref()
            .map_or_else(|| shared_moto().to_owned(), |m| m.endpoint.clone());
        let stack = bootstrap_stack_with(&endpoint, &self.parameters).await;
        let metrics = CapturedLines::default();
        // Its own server: localstripe sends every event to every registered endpoint.
        let stripe = self.online_payments.map(|_| {
            lumi_infra::stripe_server::LocalStripe::start(
                &lumi_infra::stripe_server::LocalStripeOptions {
                    tie_to_parent: true,
                    ..Default::default()
                },
            )
            .expect("starting localstripe (run `make venv` first)")
        });
        let mut env = self.env.clone();
        if let Some(stripe) = &stripe {
            env.push(("STRIPE_API_BASE".into(), stripe.endpoint.clone()));
            env.push((
                "STRIPE_PUBLISHABLE_KEY".into(),
                lumi_infra::stripe_server::LOCAL_PUBLISHABLE_KEY.into(),
            ));
        }
        let clock: Option<Arc<dyn lumi_shared::clock::Clock>> = self
            .clock
            .clone()
            .map(|c| Arc::new(c) as Arc<dyn lumi_shared::clock::Clock>);
        let publisher = self.publishing_metrics.then(|| {
            lumi_infra::emf::EmfPublisher::spawn(&stack.sdk_config, Arc::new(metrics.clone()))
        });
        let sink: Arc<dyn lumi_shared::telemetry::LineSink> = match &publisher {
            Some(publisher) => publisher.clone(),
            None => Arc::new(metrics.clone()),
        };
        let options = GatewayOptions {
            metrics_sink: Some(sink),
            env_overrides: env.clone(),
            clock: clock.clone(),
        };
        let gateway = Gateway::build(&stack, &options)
            .await
            .expect("building the gateway");
        let platforms = gateway.platforms.clone();
        let routes = gateway.routes.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async {
            let _ = stopped.await;
        }));
        let app = TestApp {
            base_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stack,
            metrics,
            publisher,
            moto,
            request_log,
            env_overrides: env,
            clock,
            platforms,
            routes,
            stripe,
            _shutdown: shutdown,
        };
        if let Some(stripe) = app
            .stripe
            .as_ref()
            .filter(|_| !self.without_stripe_webhooks)
        {
            let secret = app.stripe_webhook_secret().await;
            stripe
                .register_webhook(
                    "lumi",
                    &app.url("/api/v1/payments/webhooks/stripe"),
                    &secret,
                    None,
                )
                .await
                .expect("registering the webhook with localstripe");
        }
        if let Some(rollout) = self.online_payments {
            let mut settings = lumi_shared::settings::SystemSettings::default();
            settings.feature_flags.order_payments = true;
            settings.feature_flags.order_payments_rollout_percent = rollout;
            app.put_settings(&settings).await;
        }
        app
    }
}

/// The whole API of one test, served at `base_url`.
pub struct TestApp {
    pub base_url: String,
    pub http: reqwest::Client,
    pub stack: LocalStack,
    /// Every EMF line the functions wrote.
    pub metrics: CapturedLines,
    /// With [`TestAppBuilder::publishing_metrics`]: what sends them to the local CloudWatch.
    publisher: Option<Arc<lumi_infra::emf::EmfPublisher>>,
    pub moto: Option<MotoServer>,
    request_log: Option<std::path::PathBuf>,
    env_overrides: Vec<(String, String)>,
    clock: Option<Arc<dyn lumi_shared::clock::Clock>>,
    pub platforms: std::collections::BTreeMap<String, Arc<Platform>>,
    pub routes: Vec<lumi_infra::template::Route>,
    /// The app's local Stripe server (with online payments).
    pub stripe: Option<lumi_infra::stripe_server::LocalStripe>,
    _shutdown: oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// The AWS calls made so far whose `X-Amz-Target` ends with `operation`
    /// (`GetSecretValue`, `BatchGetItem`, ...); needs [`TestAppBuilder::counting_aws_calls`].
    pub fn aws_calls(&self, operation: &str) -> usize {
        let log = self
            .request_log
            .as_ref()
            .expect("built with counting_aws_calls()");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|call| {
                call["target"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!(".{operation}")))
            })
            .count()
    }

    /// Every AWS call made so far, as `service target method path` lines (DynamoDB calls carry
    /// their `X-Amz-Target`); needs [`TestAppBuilder::counting_aws_calls`]. Take the length
    /// before and after a request to count what it cost, whatever the operation.
    pub fn aws_call_log(&self) -> Vec<String> {
        let log = self
            .request_log
            .as_ref()
            .expect("built with counting_aws_calls()");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|call| {
                format!(
                    "{} {} {} {}",
                    call["service"].as_str().unwrap_or_default(),
                    call["target"].as_str().unwrap_or_default(),
                    call["method"].as_str().unwrap_or_default(),
                    call["path"].as_str().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Serves `routes` behind the shared edge, like a function of this stack (same environment,
    /// clock and metrics), for testing shared layers on routes no function has yet. The caller's
    /// address comes from the `x-test-source-ip` header, as API Gateway's `sourceIp` would.
    pub async fn serve_routes(&self, routes: fn(Arc<Platform>) -> axum::Router) -> String {
        self.serve_routes_as("health", "probe", routes).await
    }

    /// [`Self::serve_routes`] with the environment of `function` of the template (its buckets,
    /// queues and tables), named `name`: another container of that function, with a platform
    /// (caches, the rate limiter's memory) of its own.
    pub async fn serve_routes_as(
        &self,
        function: &str,
        name: &str,
        routes: fn(Arc<Platform>) -> axum::Router,
    ) -> String {
        let mut env = self.stack.function_env(function).unwrap();
        for (key, value) in &self.env_overrides {
            env.set(key.clone(), value.clone());
        }
        let config = lumi_shared::Config::from_env(name, &env).unwrap();
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(lumi_shared::clock::SystemClock));
        let platform = Platform::build(config, Arc::new(self.metrics.clone()), clock);
        let app = lumi_shared::bootstrap::app(platform, routes);
        let app = axum::Router::new().fallback_service(tower::service_fn(move |mut request: axum::extract::Request| {
            let app = app.clone();
            async move {
                let ip = request
                    .headers()
                    .get("x-test-source-ip")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("198.51.100.1")
                    .to_owned();
                let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
                context.http.source_ip = Some(ip);
                context.http.method = request.method().clone();
                request.extensions_mut().insert(lambda_http::request::RequestContext::ApiGatewayV2(context));
                tower::ServiceExt::oneshot(app, request).await
            }
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Returns once every EMF line written so far is in the stack's CloudWatch; needs
    /// [`TestAppBuilder::publishing_metrics`].
    pub async fn flush_metrics(&self) {
        let publisher = self
            .publisher
            .as_ref()
            .expect("built with publishing_metrics()");
        publisher.flush().await;
        assert_eq!(publisher.dropped(), 0, "EMF values dropped");
    }

    /// The config secret's `metrics_scrape_token` (what Prometheus sends).
    pub async fn scrape_token(&self) -> String {
        let secret: serde_json::Value = serde_json::from_str(&self.secret_json().await).unwrap();
        secret["metrics_scrape_token"].as_str().unwrap().to_owned()
    }

    /// `GET /api/v1/metrics` with `Authorization: Bearer <token>` when given.
    pub async fn scrape(&self, token: Option<&str>) -> reqwest::Response {
        self.call(reqwest::Method::GET, "/api/v1/metrics", token, None, None)
            .await
    }

    /// An admin account, logged in: its token response, untyped (see [`TestApp::new_admin`]).
    pub async fn signed_in_admin(&self) -> serde_json::Value {
        serde_json::to_value(self.new_admin().await.tokens).unwrap()
    }

    /// A customer with a session, made directly in the store (no password hashing: for tests
    /// that need many customers). Returns the token response, untyped (see
    /// [`TestApp::new_customer`]).
    pub async fn quick_customer(&self) -> serde_json::Value {
        serde_json::to_value(self.quick_session(lumi_shared::auth::Role::Customer).await).unwrap()
    }

    /// An account of `role` with a session, made directly in the store.
    pub(crate) async fn quick_session(
        &self,
        role: lumi_shared::auth::Role,
    ) -> lumi_shared::auth::sessions::IssuedTokens {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("{id}@example.com");
        let item = lumi_shared::auth::users::UserItem {
            pk: format!("USER#{id}"),
            sk: "PROFILE".into(),
            gsi1pk: "USERS".into(),
            gsi1sk: email.clone(),
            user_id: id,
            email,
            name: "Quick Customer".into(),
            password_hash: "not-a-hash".into(),
            role,
            tier: lumi_shared::auth::Tier::Standard,
            locked: false,
            locked_reason: None,
            sessions_valid_after_ms: 0,
            created_at: "2026-11-22T00:00:00Z".into(),
        };
        self.db()
            .put(&self.resource("AppTable"), &item)
            .await
            .unwrap();
        let platform = self.platforms.values().next().unwrap();
        lumi_shared::auth::sessions::start(platform, &item, &Default::default())
            .await
            .unwrap()
    }

    /// A product of this test's own: `(sku, price in cents, stock)` per variant.
    pub async fn product(&self, variants: &[(&str, i64, i64)]) -> String {
        let id = unique_prefix();
        let variants = variants
            .iter()
            .map(|(sku, price, stock)| (*sku, "Variant", *price, "EUR", *stock))
            .collect();
        let product = lumi_commerce::catalog::NewProduct {
            id: &id,
            name: "Test product",
            description: "Made by a test",
            variants,
        };
        lumi_commerce::catalog::create(
            &self.db(),
            &self.resource("AppTable"),
            &product,
            None,
            lumi_shared::clock::Clock::now_us(&lumi_shared::clock::SystemClock),
        )
        .await
        .unwrap();
        id
    }

    /// A variant as stored.
    pub async fn variant(&self, sku: &str) -> lumi_commerce::catalog::VariantItem {
        lumi_commerce::catalog::variant(&self.db(), &self.resource("AppTable"), sku)
            .await
            .unwrap()
            .unwrap()
    }

    /// The refund-email worker of this stack (as Lambda would build it), with `env` overrides.
    pub fn refund_worker(&self, env: &[(&str, &str)]) -> refund_email::Worker {
        let mut vars = self.stack.function_env("refund-email").unwrap();
        for (key, value) in env {
            vars.set(*key, *value);
        }
        let config = lumi_shared::Config::from_env("refund-email", &vars).unwrap();
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(lumi_shared::clock::SystemClock));
        refund_email::Worker::new(Platform::build(
            config,
            Arc::new(self.metrics.clone()),
            clock,
        ))
    }

    /// The backup function's jobs for this stack, as Lambda would build them.
    pub fn backup_jobs(&self) -> backup::Jobs {
        let vars = self.stack.function_env("backup").unwrap();
        let config = lumi_shared::Config::from_env("backup", &vars).unwrap();
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(lumi_shared::clock::SystemClock));
        backup::Jobs::new(Platform::build(
            config,
            Arc::new(self.metrics.clone()),
            clock,
        ))
    }

    /// One poll of the refund-email queue by `worker`, as the SQS event source would.
    pub async fn poll_refund_emails(
        &self,
        worker: &refund_email::Worker,
    ) -> lumi_infra::poller::Polled {
        let sqs = aws_sdk_sqs::Client::new(&self.stack.sdk_config);
        let arn = self.stack.names.attributes["RefundEmailQueue.Arn"].clone();
        lumi_infra::poller::poll_once(&sqs, &self.resource("RefundEmailQueue"), &arn, worker, 0)
            .await
            .unwrap()
    }

    /// The emails the local SES accepted (all stacks of this moto server).
    pub async fn sent_emails(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/_lumi/sent-emails", self.stack.endpoint);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// Writes the runtime settings as the admin API will.
    pub async fn put_settings(&self, settings: &lumi_shared::settings::SystemSettings) {
        let store = lumi_shared::settings::SettingsStore::new(
            self.db(),
            self.resource("AppTable"),
            Duration::ZERO,
            Duration::from_secs(5),
        );
        store.put(settings, 1).await.unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.call(reqwest::Method::GET, path, None, None, None)
            .await
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.call(reqwest::Method::POST, path, None, None, Some(body))
            .await
    }

    /// A request with `Authorization: Bearer <token>`.
    pub async fn with_bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::Response {
        self.call(method, path, Some(token), None, None).await
    }

    /// Registers an account with a unique email; returns (email, password).
    pub async fn register_user(&self) -> (String, String) {
        let email = format!("{}@example.com", unique_prefix());
        let password = format!("pw-{}-9", unique_prefix());
        let response = self
            .post_json(
                "/api/v1/auth/register",
                &serde_json::json!({ "email": email, "password": password, "name": "Test User" }),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        (email, password)
    }

    /// Logs in; returns the token response, untyped (see [`TestApp::login`]).
    pub async fn login_json(&self, email: &str, password: &str) -> serde_json::Value {
        let response = self
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// A new customer, logged in: (tokens, email, password).
    pub async fn signed_in_customer(&self) -> (serde_json::Value, String, String) {
        let (email, password) = self.register_user().await;
        (self.login_json(&email, &password).await, email, password)
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.stack.sdk_config)
    }

    /// The config secret's JSON as stored now.
    pub async fn secret_json(&self) -> String {
        self.secrets_manager()
            .get_secret_value()
            .secret_id(self.resource("ConfigSecret"))
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap()
    }

    /// The stack's database, as the functions see it.
    pub fn db(&self) -> lumi_shared::store::Db {
        lumi_shared::store::Db::new(
            self.dynamodb(),
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
    }

    /// The physical name of a template resource (`AppTable` -> `t1234-AppTable`).
    pub fn resource(&self, logical_id: &str) -> String {
        self.stack.names.refs[logical_id].clone()
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.stack.sdk_config)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        lumi_shared::aws::s3_client(&self.stack.sdk_config)
    }
}

/// The access token of a token response.
pub fn access_token(tokens: &serde_json::Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A SKU no other test uses.
pub fn unique_sku() -> String {
    format!("SKU-{}", unique_prefix())
}

/// The untyped layer: calls of the commerce API answering the raw response or JSON, for the test
/// files not yet on the typed client ([`client`]); new tests use the typed calls.
impl TestApp {
    /// A request with an optional bearer token, `Idempotency-Key` and JSON body (built by
    /// [`TestApp::dispatch`], as every typed call is).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = Request::new(method, path);
        request.auth = token;
        request.key = key;
        request.body = body.cloned();
        self.dispatch(request).await
    }

    /// GETs `path` with `token` and returns the JSON body, asserting 200.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self
            .call(reqwest::Method::GET, path, Some(token), None, None)
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A new customer's access token (see [`TestApp::quick_customer`]).
    pub async fn customer_token(&self) -> String {
        access_token(&self.quick_customer().await)
    }

    /// A new admin's access token.
    pub async fn admin_token(&self) -> String {
        access_token(&self.signed_in_admin().await)
    }

    /// `POST /api/v1/cart/items {variant, quantity}` (typed: [`TestApp::add_to_cart`]).
    pub async fn add_to_cart_response(
        &self,
        token: &str,
        sku: &str,
        quantity: i64,
    ) -> reqwest::Response {
        let body = serde_json::json!({ "variant": sku, "quantity": quantity });
        self.call(
            reqwest::Method::POST,
            "/api/v1/cart/items",
            Some(token),
            None,
            Some(&body),
        )
        .await
    }

    /// `PATCH /api/v1/cart/items/{sku} {quantity}`.
    pub async fn set_cart_quantity_response(
        &self,
        token: &str,
        sku: &str,
        quantity: i64,
    ) -> reqwest::Response {
        let body = serde_json::json!({ "quantity": quantity });
        self.call(
            reqwest::Method::PATCH,
            &format!("/api/v1/cart/items/{sku}"),
            Some(token),
            None,
            Some(&body),
        )
        .await
    }

    /// The customer's cart (typed: [`TestApp::cart`]).
    pub async fn cart_json(&self, token: &str) -> serde_json::Value {
        self.get_json("/api/v1/cart", token).await
    }

    /// `POST /api/v1/orders` with `Idempotency-Key: key` and an empty body (typed:
    /// [`TestApp::checkout`]).
    pub async fn checkout_response(&self, token: &str, key: &str) -> reqwest::Response {
        self.call(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(token),
            Some(key),
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Fills the customer's cart with `lines` and checks out: the order view (asserts 201).
    pub async fn place_order_json(&self, token: &str, lines: &[(&str, i64)]) -> serde_json::Value {
        for (sku, quantity) in lines {
            let added = self.add_to_cart_response(token, sku, *quantity).await;
            let status = added.status();
            assert_eq!(status, 200, "adding {sku}: {}", added.text().await.unwrap());
        }
        let placed = self.checkout_response(token, &unique_prefix()).await;
        let status = placed.status();
        let text = placed.text().await.unwrap();
        assert_eq!(status, 201, "checkout: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /api/v1/orders/{reference}` as the customer (asserts 200).
    pub async fn customer_order(&self, token: &str, reference: &str) -> serde_json::Value {
        self.get_json(&format!("/api/v1/orders/{reference}"), token)
            .await
    }

    /// `POST /api/v1/orders/{reference}/cancel` with `Idempotency-Key: key`.
    pub async fn cancel_order(&self, token: &str, reference: &str, key: &str) -> reqwest::Response {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/orders/{reference}/cancel"),
            Some(token),
            Some(key),
            None,
        )
        .await
    }

    /// The order as stored (strongly consistent), with its invariants checked.
    pub async fn stored_order(&self, reference: &str) -> lumi_commerce::model::Order {
        let order = lumi_commerce::orders::get(&self.db(), &self.resource("AppTable"), reference)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no order {reference}"));
        if let Err(broken) = order.check() {
            panic!("order {reference} breaks an invariant: {broken}");
        }
        order
    }

    /// `GET /api/v1/admin/orders/{reference}` (asserts 200).
    pub async fn admin_order(&self, admin: &str, reference: &str) -> serde_json::Value {
        self.get_json(&format!("/api/v1/admin/orders/{reference}"), admin)
            .await
    }

    /// `POST /api/v1/admin/orders/{reference}/status {to, note}`.
    pub async fn admin_status(&self, admin: &str, reference: &str, to: &str) -> reqwest::Response {
        let body = serde_json::json!({ "to": to, "note": format!("to {to} by a test") });
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/orders/{reference}/status"),
            Some(admin),
            None,
            Some(&body),
        )
        .await
    }

    /// `POST /api/v1/admin/orders/{reference}/fulfillments`: `lines` of `(line, quantity)`, or
    /// every open unit.
    pub async fn admin_fulfil(
        &self,
        admin: &str,
        reference: &str,
        lines: Option<&[(u32, i64)]>,
    ) -> reqwest::Response {
        let body = match lines {
            Some(lines) => serde_json::json!({
                "lines": lines
                    .iter()
                    .map(|(line, quantity)| serde_json::json!({ "line": line, "quantity": quantity }))
                    .collect::<Vec<_>>(),
                "note": "shipped by a test",
            }),
            None => serde_json::json!({ "note": "shipped by a test" }),
        };
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/orders/{reference}/fulfillments"),
            Some(admin),
            None,
            Some(&body),
        )
        .await
    }

    /// The body of a refund request: `(line, quantity, restock_type)` per line.
    pub fn refund_body(lines: &[(u32, i64, &str)], reason: &str) -> serde_json::Value {
        serde_json::json!({
            "lines": lines
                .iter()
                .map(|(line, quantity, restock_type)| serde_json::json!({
                    "line": line, "quantity": quantity, "restock_type": restock_type,
                }))
                .collect::<Vec<_>>(),
            "reason": reason,
        })
    }

    /// `POST /api/v1/admin/orders/{reference}/refund` with `Idempotency-Key: key`; `lines` are
    /// `(line, quantity, restock_type)` with `restock_type` one of `cancel`, `return`,
    /// `no_restock`.
    pub async fn admin_refund(
        &self,
        admin: &str,
        reference: &str,
        key: &str,
        lines: &[(u32, i64, &str)],
        reason: &str,
    ) -> reqwest::Response {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/orders/{reference}/refund"),
            Some(admin),
            Some(key),
            Some(&Self::refund_body(lines, reason)),
        )
        .await
    }

    /// `POST /api/v1/admin/orders/{reference}/refunds/{refund_id}/settle`.
    pub async fn settle_refund(
        &self,
        admin: &str,
        reference: &str,
        refund_id: &str,
    ) -> reqwest::Response {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/orders/{reference}/refunds/{refund_id}/settle"),
            Some(admin),
            None,
            None,
        )
        .await
    }

    /// `POST /api/v1/admin/payments/{id}/capture {amount_minor, currency}` (manual payments).
    pub async fn admin_capture(
        &self,
        admin: &str,
        payment_id: &str,
        amount_minor: i64,
        currency: &str,
    ) -> reqwest::Response {
        let body = serde_json::json!({ "amount_minor": amount_minor, "currency": currency });
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/payments/{payment_id}/capture"),
            Some(admin),
            None,
            Some(&body),
        )
        .await
    }

    /// Records the full payment of a manual `order` (its view) as an admin: the order is paid.
    pub async fn admin_pay(&self, admin: &str, order: &serde_json::Value) {
        let payment = &order["payment"];
        let captured = self
            .admin_capture(
                admin,
                payment["id"].as_str().unwrap(),
                payment["amount_minor"].as_i64().unwrap(),
                payment["currency"].as_str().unwrap(),
            )
            .await;
        let status = captured.status();
        let body: serde_json::Value = captured.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["financial_status"], "paid", "{body}");
    }

    /// `POST /api/v1/admin/payments/{id}/fail {reason}`.
    pub async fn admin_fail_payment(
        &self,
        admin: &str,
        payment_id: &str,
        reason: &str,
    ) -> reqwest::Response {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/payments/{payment_id}/fail"),
            Some(admin),
            None,
            Some(&serde_json::json!({ "reason": reason })),
        )
        .await
    }

    /// `GET /api/v1/admin/payments?{query}`: the payments listed.
    pub async fn admin_payments(&self, admin: &str, query: &str) -> Vec<serde_json::Value> {
        let listed = self
            .get_json(&format!("/api/v1/admin/payments?{query}"), admin)
            .await;
        listed["payments"].as_array().unwrap().clone()
    }

    /// `GET /api/v1/admin/audit-logs?{query}`: the events listed, newest first.
    pub async fn audit_events(&self, admin: &str, query: &str) -> Vec<serde_json::Value> {
        let listed = self
            .get_json(&format!("/api/v1/admin/audit-logs?{query}"), admin)
            .await;
        listed["events"].as_array().unwrap().clone()
    }

    /// The stack's Stripe webhook signing secret (`payment_webhook_secrets.stripe`).
    pub async fn stripe_webhook_secret(&self) -> String {
        let secrets: serde_json::Value = serde_json::from_str(&self.secret_json().await).unwrap();
        secrets["payment_webhook_secrets"]["stripe"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The functions' time, in seconds (what a webhook signature is checked against).
    pub fn now_secs(&self) -> i64 {
        self.clock.as_ref().map_or_else(
            || lumi_shared::auth::now_ms() / 1_000,
            |clock| clock.now_us() / 1_000_000,
        )
    }

    /// A Stripe event envelope of `kind` about `object`, with a fresh id.
    pub fn stripe_event(kind: &str, object: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "id": format!("evt_{}", unique_prefix()),
            "object": "event",
            "type": kind,
            "created": lumi_shared::auth::now_ms() / 1_000,
            "livemode": false,
            "api_version": lumi_commerce::stripe::API_VERSION,
            "data": { "object": object },
        })
    }

    /// `payment_intent.succeeded` for `order` (its view) with `received` minor units in
    /// `currency` (a wrong amount or currency is an amount mismatch).
    pub fn intent_succeeded(
        order: &impl serde::Serialize,
        received: i64,
        currency: &str,
    ) -> serde_json::Value {
        let order = serde_json::to_value(order).unwrap();
        let payment = &order["payment"];
        Self::stripe_event(
            "payment_intent.succeeded",
            serde_json::json!({
                "id": payment["provider_ref"],
                "object": "payment_intent",
                "status": "succeeded",
                "amount": payment["amount_minor"],
                "amount_received": received,
                "currency": currency.to_lowercase(),
                "metadata": { "order_reference": order["reference"], "payment_id": payment["id"] },
            }),
        )
    }

    /// `payment_intent.payment_failed` for `order` (its view).
    pub fn intent_failed(order: &impl serde::Serialize, message: &str) -> serde_json::Value {
        let order = serde_json::to_value(order).unwrap();
        let payment = &order["payment"];
        Self::stripe_event(
            "payment_intent.payment_failed",
            serde_json::json!({
                "id": payment["provider_ref"],
                "object": "payment_intent",
                "status": "requires_payment_method",
                "amount": payment["amount_minor"],
                "currency": payment["currency"].as_str().unwrap_or("eur").to_lowercase(),
                "last_payment_error": { "type": "card_error", "code": "card_declined", "message": message },
                "metadata": { "order_reference": order["reference"], "payment_id": payment["id"] },
            }),
        )
    }

    /// A `payment_intent.succeeded` of what `order` (its view) is due.
    pub fn capture_event(order: &impl serde::Serialize) -> serde_json::Value {
        let order = serde_json::to_value(order).unwrap();
        let payment = &order["payment"];
        Self::intent_succeeded(
            &order,
            payment["amount_minor"].as_i64().unwrap(),
            payment["currency"].as_str().unwrap(),
        )
    }

    /// Posts `event` to the Stripe webhook, signed with the stack's secret at the functions'
    /// time, as Stripe would.
    pub async fn stripe_webhook(&self, event: &serde_json::Value) -> reqwest::Response {
        let secret = self.stripe_webhook_secret().await;
        self.stripe_webhook_signed_with(event, &secret, self.now_secs())
            .await
    }

    /// Posts `event` to the Stripe webhook, signed with `secret` at `timestamp`.
    pub async fn stripe_webhook_signed_with(
        &self,
        event: &serde_json::Value,
        secret: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        self.dispatch(self.signed_stripe_event(event, secret, timestamp))
            .await
    }

    /// Stripe reports the capture of what `order` (its view) is due; returns the
    /// acknowledgement (asserts 200).
    pub async fn stripe_capture(&self, order: &serde_json::Value) -> serde_json::Value {
        let response = self.stripe_webhook(&Self::capture_event(order)).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The customer pays `order` (its view) with the test card `number` through the local
    /// Stripe server, as Stripe.js would (a PaymentMethod, set on the intent, then confirm);
    /// returns the intent's status. Stripe's webhook then reaches the app by itself.
    pub async fn pay_with_card(&self, order: &impl serde::Serialize, number: &str) -> String {
        use lumi_commerce::stripe::Form;
        let order = serde_json::to_value(order).unwrap();
        let stripe = self.stripe.as_ref().expect("built with online_payments()");
        let client = stripe.client().unwrap();
        let intent = order["payment"]["provider_ref"].as_str().unwrap();
        let method: serde_json::Value = client
            .post(
                "/v1/payment_methods",
                &Form::new()
                    .with("type", "card")
                    .with("card[number]", number)
                    .with("card[exp_month]", "12")
                    .with("card[exp_year]", "2030")
                    .with("card[cvc]", "123"),
                None,
            )
            .await
            .unwrap();
        let method = method["id"].as_str().unwrap().to_owned();
        let _: serde_json::Value = client
            .post(
                &format!("/v1/payment_intents/{intent}"),
                &Form::new().with("payment_method", method),
                None,
            )
            .await
            .unwrap();
        match client
            .post::<serde_json::Value>(
                &format!("/v1/payment_intents/{intent}/confirm"),
                &Form::new(),
                None,
            )
            .await
        {
            Ok(confirmed) => confirmed["status"].as_str().unwrap_or_default().to_owned(),
            Err(error) => error
                .api_error()
                .and_then(|e| e.code.clone())
                .unwrap_or_else(|| error.to_string()),
        }
    }

    /// Waits (polling the store, 10 s at most) until the payment of order `reference` is
    /// `status`: Stripe's webhooks arrive on their own, about a second after the call.
    pub async fn wait_for_payment(
        &self,
        reference: &str,
        status: &str,
    ) -> lumi_commerce::model::Order {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let order = self.stored_order(reference).await;
            if order.payment.status.as_str() == status {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the payment of {reference} is still {:?}, not {status}",
                order.payment.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (polling the store, 10 s at most) until the order `reference` is as `done` says
    /// (`what` names it in the failure): what a Stripe webhook causes arrives on its own, and
    /// the refunds it asks of Stripe are answered after the change that records them.
    pub async fn wait_for_order(
        &self,
        reference: &str,
        what: &str,
        done: impl Fn(&lumi_commerce::model::Order) -> bool,
    ) -> lumi_commerce::model::Order {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let order = self.stored_order(reference).await;
            if done(&order) {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {reference}: still not {what}: {order:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The refunds the app's local Stripe server holds for PaymentIntent `intent`.
    pub async fn stripe_refunds(&self, intent: &str) -> Vec<serde_json::Value> {
        let stripe = self.stripe.as_ref().expect("built with online_payments()");
        let listed: serde_json::Value = stripe
            .client()
            .unwrap()
            .get(&format!("/v1/refunds?payment_intent={intent}&limit=100"))
            .await
            .unwrap();
        listed["data"].as_array().unwrap().clone()
    }

    /// The events of type `kind` the app's local Stripe server sent (to every registered
    /// webhook) about the object `object_id`: what Stripe would deliver again on a retry.
    pub async fn stripe_sent_events(&self, kind: &str, object_id: &str) -> Vec<serde_json::Value> {
        let stripe = self.stripe.as_ref().expect("built with online_payments()");
        let listed: serde_json::Value = stripe
            .client()
            .unwrap()
            .get(&format!("/v1/events?type={kind}&limit=100"))
            .await
            .unwrap();
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["data"]["object"]["id"] == object_id)
            .cloned()
            .collect()
    }

    /// Runs the refund-email worker until no message is visible; returns how many it received.
    /// Delivery to the queue is at least once: a copy received in the same batch as its twin
    /// finds the delivery claimed, is reported failed and comes back after the visibility
    /// timeout (not waited for here). Count what reached the customer with
    /// [`TestApp::emails_to`].
    pub async fn drain_refund_emails(&self) -> usize {
        let worker = self.refund_worker(&[]);
        let mut handled = 0;
        for _ in 0..50 {
            let polled = self.poll_refund_emails(&worker).await;
            if polled.received == 0 {
                return handled;
            }
            handled += polled.received;
        }
        panic!("the refund-email queue never emptied");
    }

    /// The emails the local SES accepted for `recipient`.
    pub async fn emails_to(&self, recipient: &str) -> Vec<serde_json::Value> {
        self.sent_emails()
            .await
            .into_iter()
            .filter(|e| e["destinations"].to_string().contains(recipient))
            .collect()
    }

    /// The sum of metric `name` over the EMF lines written so far whose dimensions match every
    /// `(label, value)` of `labels`.
    pub fn metric_total(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics
            .json()
            .iter()
            .filter(|doc| labels.iter().all(|(k, v)| doc[*k] == *v))
            .filter_map(|doc| doc[name].as_f64())
            .sum()
    }
}

/// A TCP server that accepts connections and never answers: a hung dependency.
pub async fn hanging_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

/// Asserts the response is problem+json with this status (see [`Problem::read`]), and returns
/// its body as sent.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    Problem::read(response).await.body
}

/// Session helpers (cookie mode, fingerprints, global logout).
impl TestApp {
    /// The session item `USER#<user_id>`/`SESSION#<session_id>` as stored, as JSON.
    pub async fn stored_session(&self, user_id: &str, session_id: &str) -> serde_json::Value {
        let session: lumi_shared::auth::sessions::SessionItem = self
            .db()
            .get_consistent(
                &self.resource("AppTable"),
                lumi_shared::auth::sessions::session_key(user_id, session_id),
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no session {session_id} of user {user_id}"));
        serde_json::to_value(session).unwrap()
    }
}

/// Secret rotation: the test stands in for Secrets Manager, which the local stack cannot run a
/// rotation function for (moto has no Lambda to invoke).
impl TestApp {
    /// The config secret's ARN.
    pub fn config_secret_arn(&self) -> String {
        self.resource("ConfigSecret")
    }

    /// What Secrets Manager does when a rotation of the config secret starts: rotation is on
    /// (every 90 days, `ConfigSecretRotation`) and a new, empty version is staged `AWSPENDING`
    /// under a new token. Returns the token.
    ///
    /// moto's `RotateSecret` does exactly this, then looks for the function to invoke and,
    /// having none, answers `ResourceNotFoundException` without going further: the state in
    /// which Secrets Manager invokes `createSecret`. The tests then invoke the steps themselves.
    /// The state is checked here, so a moto that behaved otherwise fails loudly.
    pub async fn start_rotation(&self) -> String {
        let client = self.secrets_manager();
        let token = uuid::Uuid::new_v4().to_string();
        let function = format!(
            "arn:aws:lambda:{}:{}:function:{}:live",
            lumi_infra::template::LOCAL_REGION,
            lumi_infra::template::LOCAL_ACCOUNT,
            self.resource("SecretRotationFunction"),
        );
        let before = client
            .describe_secret()
            .secret_id(self.config_secret_arn())
            .send()
            .await
            .unwrap();
        let started = client
            .rotate_secret()
            .secret_id(self.config_secret_arn())
            .client_request_token(&token)
            .rotation_lambda_arn(function)
            .rotation_rules(
                aws_sdk_secretsmanager::types::RotationRulesType::builder()
                    .automatically_after_days(90)
                    .build(),
            )
            .rotate_immediately(true)
            .send()
            .await;
        assert!(
            started
                .as_ref()
                .err()
                .and_then(|e| e.as_service_error())
                .is_some_and(|e| e.is_resource_not_found_exception()),
            "moto's RotateSecret should stop at the missing function: {started:?}"
        );
        let after = client
            .describe_secret()
            .secret_id(self.config_secret_arn())
            .send()
            .await
            .unwrap();
        assert_eq!(after.rotation_enabled(), Some(true));
        let stages = after.version_ids_to_stages().cloned().unwrap_or_default();
        assert_eq!(stages.get(&token), Some(&vec!["AWSPENDING".to_owned()]));
        let current =
            |d: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput| {
                d.version_ids_to_stages()
                    .into_iter()
                    .flatten()
                    .find(|(_, s)| s.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(v, _)| v.clone())
            };
        assert_eq!(
            current(&after),
            current(&before),
            "AWSCURRENT has not moved"
        );
        token
    }

    /// Invokes the rotation function's handler with one step, as Secrets Manager would (the
    /// event's JSON, the function's environment from the template).
    pub async fn rotation_step(
        &self,
        step: &str,
        token: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let env = self.stack.function_env("secret-rotation").unwrap();
        let config = lumi_shared::Config::from_env("secret-rotation", &env).unwrap();
        let platform = Platform::build(
            config,
            Arc::new(self.metrics.clone()),
            Arc::new(lumi_shared::clock::SystemClock),
        );
        let handler = lumi_infra::functions::event_handler_of("secret-rotation")
            .expect("the rotation function is known to the local stack");
        handler(
            platform,
            serde_json::json!({
                "Step": step,
                "SecretId": self.config_secret_arn(),
                "ClientRequestToken": token,
            }),
        )
        .await
    }

    /// Every version of the config secret and its staging labels.
    pub async fn secret_versions(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.secrets_manager()
            .describe_secret()
            .secret_id(self.config_secret_arn())
            .send()
            .await
            .unwrap()
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the config secret's version labelled `label` (`AWSCURRENT`, ...), or of
    /// the version `version_id` when given.
    pub async fn secret_value(&self, label: &str, version_id: Option<&str>) -> String {
        self.secrets_manager()
            .get_secret_value()
            .secret_id(self.config_secret_arn())
            .version_stage(label)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap()
    }
}

/// Tiers and quota usage: the admin's calls.
impl TestApp {
    /// `PUT /api/v1/admin/users/{id}/tier` with `body` (`{"tier": "premium"}`).
    pub async fn set_user_tier(
        &self,
        token: &str,
        user_id: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/users/{user_id}/tier"),
            Some(token),
            None,
            Some(body),
        )
        .await
    }

    /// `GET /api/v1/admin/users/{id}/usage?{query}`.
    pub async fn user_usage(&self, token: &str, user_id: &str, query: &str) -> reqwest::Response {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/admin/users/{user_id}/usage?{query}"),
            Some(token),
            None,
            None,
        )
        .await
    }
}
