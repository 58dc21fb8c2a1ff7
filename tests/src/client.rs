//! The typed client: one method per API call, over the request and response types the handlers
//! use, so a test reads as a story (`app.checkout(&customer, key)`,
//! `app.admin(&admin).refund(reference, &request, key)`) and builds no request itself.
//!
//! Every call goes through [`TestApp::send`], which sends the request with
//! [`TestApp::dispatch`] (the only place a request is built) and reads the answer: the
//! documented success status decodes into the handler's response type (another 2xx fails the
//! test), and anything else is a [`Problem`], checked to be well-formed problem+json. A test
//! expecting a refusal says so with [`Refused::refused`]:
//! `app.checkout(&customer, "k").await.refused(422)`.
//!
//! To add a call:
//! 1. write a method here (on [`TestApp`] for a customer's or an anonymous call, on
//!    [`AdminApi`] for an admin's) that builds a [`Request`] (path, bearer token, idempotency
//!    key, the handler's request type as the body) and returns
//!    `self.request(request, <documented success status>).await`, typed as the handler's
//!    response type;
//! 2. if that type lacks `Deserialize` (or the request type `Serialize`), derive it where it is
//!    declared, then run `lumi openapi`: `docs/openapi.yaml` must not change.
//!
//! Tests that assert the raw wire shape (an absent field, a header, a body the types cannot
//! hold) use [`TestApp::send`] or [`TestApp::request`] with `serde_json::Value`, and say so.

use std::fmt::Debug;

use admin::{
    SessionsDeleted, UserLock, UserPage,
    catalog_api::{ContentBody, ContentWritten, MismatchPage, StockAdjustment, StockLevels},
    orders_api::{
        AdminOrderPage, CaptureBody, FailPayment, FulfilBody, FulfilLine, PaymentApplied,
        PaymentPage, RefundMade, RefundPage, StatusChange,
    },
};
use auth::{Login, Register, Revoked};
use lumi_commerce::{
    admin::{LedgerView, NewProductRequest, ProductPatch, ProductView, Rebalanced, RefundRequest},
    cart::Cart,
    catalog::Product,
    model::{RefundRequestLine, RestockType},
    orders::{AdminOrderView, OrderView, Placed, Tracking},
};
use lumi_shared::{
    audit::AuditPage,
    auth::{User, sessions::IssuedTokens},
    error::FieldError,
};
use orders::{AddLine, CheckoutBody, OrderPage, ProductList, SetLine, SiteContent, WebhookAck};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{TestApp, unique_prefix};

/// A problem+json answer (RFC 9457), as every refusal of the API is.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub status: u16,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub detail: String,
    #[serde(default)]
    pub request_id: Option<String>,
    /// The fields that failed validation (422).
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// The body as it was sent, for assertions on the wire shape.
    #[serde(skip)]
    pub body: Value,
    /// The response's headers (`WWW-Authenticate`, `Retry-After`, ...).
    #[serde(skip)]
    pub headers: HeaderMap,
}

impl Problem {
    /// Reads a refusal, asserting it is problem+json: the body's status is the response's, it
    /// quotes the request id of `X-Request-Id`, its type is one of ours, title and detail are
    /// strings.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("every answer carries X-Request-Id");
        let text = response.text().await.unwrap();
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{status}: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(
            body["request_id"].as_str(),
            Some(request_id.as_str()),
            "the body quotes the request id"
        );
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .starts_with("https://lumi-commerce.com/problems/"),
            "{body}"
        );
        assert!(
            body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
        let mut problem: Self = serde_json::from_value(body.clone()).unwrap();
        problem.body = body;
        problem.headers = headers;
        problem
    }

    /// Asserts the status; returns the problem for more assertions.
    #[track_caller]
    pub fn assert_status(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    /// The fields named in `errors`, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.field.as_str()).collect()
    }
}

/// The refusal a call was expected to meet.
pub trait Refused {
    /// The problem of a refused call, asserting its status (fails the test on success).
    fn refused(self, status: u16) -> Problem;
}

impl<T: Debug> Refused for Result<T, Problem> {
    #[track_caller]
    fn refused(self, status: u16) -> Problem {
        match self {
            Ok(answer) => panic!("expected a {status} problem, got {answer:?}"),
            Err(problem) => problem.assert_status(status),
        }
    }
}

/// The status of a call's answer: `success` when it succeeded (a typed call asserts its
/// documented status), the problem's otherwise. For tests that count outcomes.
pub fn status_of<T>(result: &Result<T, Problem>, success: u16) -> u16 {
    result.as_ref().map_or_else(|p| p.status, |_| success)
}

/// A successful answer with its status and headers.
#[derive(Debug)]
pub struct Reply<T> {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: T,
}

impl<T> Reply<T> {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// One request: method, path, bearer token, `Idempotency-Key`, JSON body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub path: String,
    pub auth: Option<&'a str>,
    pub key: Option<&'a str>,
    /// Other headers (`If-Match`, ...).
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Value>,
    /// A body sent as these bytes, instead of `body` (malformed JSON, a form...).
    pub text: Option<String>,
    /// The client's source address (any of 127/8), as API Gateway's `sourceIp` sees it.
    pub source: Option<std::net::IpAddr>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            auth: None,
            key: None,
            headers: Vec::new(),
            body: None,
            text: None,
            source: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// `Authorization: Bearer <token>`.
    pub fn auth(mut self, token: &'a str) -> Self {
        self.auth = Some(token);
        self
    }

    /// `Idempotency-Key: <key>`.
    pub fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// Another header.
    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `body` as JSON.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).unwrap());
        self
    }

    /// Sent from `source` (a loopback address: all of 127/8 is).
    pub fn from_address(mut self, source: [u8; 4]) -> Self {
        self.source = Some(std::net::IpAddr::from(source));
        self
    }

    /// `text` as the body, as it is (with no `Content-Type` unless set by [`Self::header`]).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
}

/// A customer with a session.
#[derive(Debug, Clone)]
pub struct Customer {
    pub tokens: IssuedTokens,
    /// Set for an account registered over the API.
    pub password: Option<String>,
}

impl Customer {
    /// The access token.
    pub fn token(&self) -> &str {
        &self.tokens.access_token
    }

    pub fn refresh_token(&self) -> &str {
        &self.tokens.refresh_token
    }

    pub fn id(&self) -> &str {
        &self.tokens.user.id
    }

    pub fn email(&self) -> &str {
        &self.tokens.user.email
    }

    /// The password of an account registered over the API.
    pub fn password(&self) -> &str {
        self.password.as_deref().expect("registered over the API")
    }
}

/// An admin with a session: call the admin API with [`TestApp::admin`].
#[derive(Debug, Clone)]
pub struct Admin {
    pub tokens: IssuedTokens,
}

impl Admin {
    /// The access token.
    pub fn token(&self) -> &str {
        &self.tokens.access_token
    }

    pub fn id(&self) -> &str {
        &self.tokens.user.id
    }
}

/// A bearer-mode login.
fn login<'a>(email: &str, password: &str) -> Request<'a> {
    let body = Login {
        email: email.to_owned(),
        password: password.to_owned(),
        mode: lumi_shared::auth::browser::SessionMode::Bearer,
    };
    Request::post("/api/v1/auth/login").json(&body)
}

/// `path` with `query` (none when empty).
fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// A refund request: `(line, quantity, restock type)` per line.
pub fn refund_request(lines: &[(u32, i64, RestockType)], reason: &str) -> RefundRequest {
    RefundRequest {
        lines: lines
            .iter()
            .map(|&(line, quantity, restock_type)| RefundRequestLine {
                line,
                quantity,
                restock_type,
            })
            .collect(),
        reason: reason.to_owned(),
    }
}

/// The request layer: every typed call is one of these.
impl TestApp {
    /// Sends `request` as it is: the one function that builds the API's requests.
    pub async fn dispatch(&self, request: Request<'_>) -> reqwest::Response {
        let client = match request.source {
            Some(source) => reqwest::Client::builder()
                .local_address(source)
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            None => self.http.clone(),
        };
        let mut builder = client.request(request.method, self.url(&request.path));
        if let Some(token) = request.auth {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = request.key {
            builder = builder.header("idempotency-key", key);
        }
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        if let Some(text) = request.text {
            builder = builder.body(text);
        }
        builder.send().await.unwrap()
    }

    /// Sends `request` and reads the answer: `success` decodes as `T` (an empty body as
    /// `null`, for `()`), another 2xx fails the test, anything else is a [`Problem`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        success: u16,
    ) -> Result<Reply<T>, Problem> {
        let what = format!("{} {}", request.method, request.path);
        let response = self.dispatch(request).await;
        let status = response.status();
        if !status.is_success() {
            return Err(Problem::read(response).await);
        }
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        assert_eq!(status.as_u16(), success, "{what}: {text}");
        let body = serde_json::from_str(if text.is_empty() { "null" } else { &text })
            .unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// [`Self::send`], the body only.
    pub async fn request<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        success: u16,
    ) -> Result<T, Problem> {
        self.send(request, success).await.map(|reply| reply.body)
    }
}

/// Accounts and sessions.
impl TestApp {
    /// A customer with a session, made directly in the store (no password hashing: for tests
    /// that need many customers).
    pub async fn new_customer(&self) -> Customer {
        Customer {
            tokens: self.quick_session(lumi_shared::auth::Role::Customer).await,
            password: None,
        }
    }

    /// A customer registered and logged in over the API (with a password).
    pub async fn registered_customer(&self) -> Customer {
        let email = format!("{}@example.com", unique_prefix());
        let password = format!("pw-{}-9", unique_prefix());
        self.register(&email, &password, "Test User").await.unwrap();
        Customer {
            tokens: self.login(&email, &password).await.unwrap(),
            password: Some(password),
        }
    }

    /// A new admin account, logged in.
    pub async fn new_admin(&self) -> Admin {
        let email = format!("{}@example.com", unique_prefix());
        let password = format!("admin-{}-9", unique_prefix());
        lumi_shared::auth::users::create(
            &self.db(),
            &self.resource("AppTable"),
            lumi_shared::auth::users::NewUser {
                email: email.clone(),
                name: "Admin".into(),
                password: password.clone(),
                role: lumi_shared::auth::Role::Admin,
                tier: lumi_shared::auth::Tier::Standard,
            },
        )
        .await
        .unwrap();
        Admin {
            tokens: self.login(&email, &password).await.unwrap(),
        }
    }

    /// `POST /api/v1/auth/register` (201).
    pub async fn register(&self, email: &str, password: &str, name: &str) -> Result<User, Problem> {
        let body = Register {
            email: email.to_owned(),
            password: password.to_owned(),
            name: name.to_owned(),
        };
        self.request(Request::post("/api/v1/auth/register").json(&body), 201)
            .await
    }

    /// `POST /api/v1/auth/login` in bearer mode.
    pub async fn login(&self, email: &str, password: &str) -> Result<IssuedTokens, Problem> {
        self.request(login(email, password), 200).await
    }

    /// [`Self::login`] from a client with this `User-Agent`.
    pub async fn login_as(
        &self,
        email: &str,
        password: &str,
        user_agent: &str,
    ) -> Result<IssuedTokens, Problem> {
        let request = login(email, password).header("user-agent", user_agent);
        self.request(request, 200).await
    }

    /// [`Self::login`] from a client at `source` (a loopback address).
    pub async fn login_from(
        &self,
        source: [u8; 4],
        email: &str,
        password: &str,
    ) -> Result<IssuedTokens, Problem> {
        let request = login(email, password).from_address(source);
        self.request(request, 200).await
    }

    /// `POST /api/v1/auth/rotate` with the refresh token as Bearer: the next tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, Problem> {
        self.request(
            Request::post("/api/v1/auth/rotate").auth(refresh_token),
            200,
        )
        .await
    }

    /// `POST /api/v1/auth/revoke-all`.
    pub async fn revoke_all(&self, access_token: &str) -> Result<Revoked, Problem> {
        self.request(
            Request::post("/api/v1/auth/revoke-all").auth(access_token),
            200,
        )
        .await
    }

    /// `POST /api/v1/auth/logout` (204).
    pub async fn logout(&self, access_token: &str) -> Result<(), Problem> {
        self.request(Request::post("/api/v1/auth/logout").auth(access_token), 204)
            .await
    }

    /// `GET /api/v1/auth/me`.
    pub async fn me(&self, access_token: &str) -> Result<User, Problem> {
        self.request(Request::get("/api/v1/auth/me").auth(access_token), 200)
            .await
    }
}

/// The storefront: catalog, cart, checkout, the customer's orders.
impl TestApp {
    /// `GET /api/v1/products`.
    pub async fn products(&self) -> Result<ProductList, Problem> {
        self.request(Request::get("/api/v1/products"), 200).await
    }

    /// `GET /api/v1/products/{id}`.
    pub async fn get_product(&self, id: &str) -> Result<Product, Problem> {
        self.request(Request::get(format!("/api/v1/products/{id}")), 200)
            .await
    }

    /// `GET /api/v1/site-content/{key}`.
    pub async fn site_content(&self, key: &str) -> Result<SiteContent, Problem> {
        self.request(Request::get(format!("/api/v1/site-content/{key}")), 200)
            .await
    }

    /// `GET /api/v1/cart`.
    pub async fn cart(&self, customer: &Customer) -> Result<Cart, Problem> {
        self.request(Request::get("/api/v1/cart").auth(customer.token()), 200)
            .await
    }

    /// `POST /api/v1/cart/items {variant, quantity}`.
    pub async fn add_to_cart(
        &self,
        customer: &Customer,
        sku: &str,
        quantity: i64,
    ) -> Result<Cart, Problem> {
        let body = AddLine {
            variant: sku.to_owned(),
            quantity,
        };
        let request = Request::post("/api/v1/cart/items")
            .auth(customer.token())
            .json(&body);
        self.request(request, 200).await
    }

    /// `PATCH /api/v1/cart/items/{sku} {quantity}`.
    pub async fn set_cart_quantity(
        &self,
        customer: &Customer,
        sku: &str,
        quantity: i64,
    ) -> Result<Cart, Problem> {
        let request = Request::patch(format!("/api/v1/cart/items/{sku}"))
            .auth(customer.token())
            .json(&SetLine { quantity });
        self.request(request, 200).await
    }

    /// `POST /api/v1/orders` with `Idempotency-Key: key` and no note (201).
    pub async fn checkout(&self, customer: &Customer, key: &str) -> Result<Placed, Problem> {
        self.checkout_with(customer, key, &CheckoutBody::default())
            .await
            .map(|reply| reply.body)
    }

    /// `POST /api/v1/orders` with `body`, the answer with its headers (`Idempotency-Replayed`).
    pub async fn checkout_with(
        &self,
        customer: &Customer,
        key: &str,
        body: &CheckoutBody,
    ) -> Result<Reply<Placed>, Problem> {
        let request = Request::post("/api/v1/orders")
            .auth(customer.token())
            .key(key)
            .json(body);
        self.send(request, 201).await
    }

    /// Fills the customer's cart with `lines` and checks out (asserts both succeed).
    pub async fn place_order(&self, customer: &Customer, lines: &[(&str, i64)]) -> Placed {
        for (sku, quantity) in lines {
            self.add_to_cart(customer, sku, *quantity)
                .await
                .unwrap_or_else(|p| panic!("adding {sku}: {}", p.body));
        }
        self.checkout(customer, &unique_prefix())
            .await
            .unwrap_or_else(|p| panic!("checkout: {}", p.body))
    }

    /// `GET /api/v1/orders?{query}` (`limit=2&cursor=...`; empty for the first page).
    pub async fn orders(&self, customer: &Customer, query: &str) -> Result<OrderPage, Problem> {
        let request = Request::get(with_query("/api/v1/orders", query)).auth(customer.token());
        self.request(request, 200).await
    }

    /// `GET /api/v1/orders/{reference}`.
    pub async fn order(&self, customer: &Customer, reference: &str) -> Result<OrderView, Problem> {
        let request = Request::get(format!("/api/v1/orders/{reference}")).auth(customer.token());
        self.request(request, 200).await
    }

    /// `POST /api/v1/orders/{reference}/cancel` with `Idempotency-Key: key`.
    pub async fn cancel(
        &self,
        customer: &Customer,
        reference: &str,
        key: &str,
    ) -> Result<OrderView, Problem> {
        let request = Request::post(format!("/api/v1/orders/{reference}/cancel"))
            .auth(customer.token())
            .key(key);
        self.request(request, 200).await
    }

    /// `GET /api/v1/orders/{reference}/track`.
    pub async fn track(&self, customer: &Customer, reference: &str) -> Result<Tracking, Problem> {
        let request =
            Request::get(format!("/api/v1/orders/{reference}/track")).auth(customer.token());
        self.request(request, 200).await
    }

    /// Posts the Stripe `event` to the webhook, signed with the stack's secret at the
    /// functions' time, as Stripe would: the acknowledgement.
    pub async fn stripe_event_sent(&self, event: &Value) -> Result<WebhookAck, Problem> {
        let secret = self.stripe_webhook_secret().await;
        self.request(
            self.signed_stripe_event(event, &secret, self.now_secs()),
            200,
        )
        .await
    }

    /// The webhook request for `event`, signed with `secret` at `timestamp`.
    pub fn signed_stripe_event<'a>(
        &self,
        event: &Value,
        secret: &str,
        timestamp: i64,
    ) -> Request<'a> {
        let body = event.to_string();
        let signature = lumi_commerce::stripe::sign(secret.as_bytes(), timestamp, body.as_bytes());
        Request::post("/api/v1/payments/webhooks/stripe")
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .text(body)
    }

    /// The admin API, called as `admin`.
    pub fn admin<'a>(&'a self, admin: &'a Admin) -> AdminApi<'a> {
        AdminApi {
            app: self,
            token: admin.token(),
        }
    }
}

/// The admin API as one admin calls it (see [`TestApp::admin`]).
pub struct AdminApi<'a> {
    app: &'a TestApp,
    token: &'a str,
}

impl AdminApi<'_> {
    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, Problem> {
        self.app
            .request(Request::get(path).auth(self.token), 200)
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: String,
        body: &impl Serialize,
        success: u16,
    ) -> Result<T, Problem> {
        let request = Request::post(path).auth(self.token).json(body);
        self.app.request(request, success).await
    }

    /// A POST without a body.
    async fn post_empty<T: DeserializeOwned>(&self, path: String) -> Result<T, Problem> {
        self.app
            .request(Request::post(path).auth(self.token), 200)
            .await
    }

    /// `GET /api/v1/admin/orders/{reference}`.
    pub async fn order(&self, reference: &str) -> Result<AdminOrderView, Problem> {
        self.get(format!("/api/v1/admin/orders/{reference}")).await
    }

    /// `GET /api/v1/admin/orders?{query}`.
    pub async fn orders(&self, query: &str) -> Result<AdminOrderPage, Problem> {
        self.get(with_query("/api/v1/admin/orders", query)).await
    }

    /// `POST /api/v1/admin/orders/{reference}/status {to, note}`.
    pub async fn set_status(&self, reference: &str, to: &str) -> Result<AdminOrderView, Problem> {
        let body = StatusChange {
            to: to.to_owned(),
            note: format!("to {to} by a test"),
        };
        let path = format!("/api/v1/admin/orders/{reference}/status");
        self.post(path, &body, 200).await
    }

    /// `POST /api/v1/admin/orders/{reference}/fulfillments`: `lines` of `(line, quantity)`,
    /// or every open unit.
    pub async fn fulfil(
        &self,
        reference: &str,
        lines: Option<&[(u32, i64)]>,
    ) -> Result<AdminOrderView, Problem> {
        let body = FulfilBody {
            lines: lines.map(|lines| {
                lines
                    .iter()
                    .map(|&(line, quantity)| FulfilLine { line, quantity })
                    .collect()
            }),
            note: "shipped by a test".into(),
        };
        let path = format!("/api/v1/admin/orders/{reference}/fulfillments");
        self.post(path, &body, 200).await
    }

    /// `POST /api/v1/admin/orders/{reference}/refund` with `Idempotency-Key: key` (201).
    pub async fn refund(
        &self,
        reference: &str,
        request: &RefundRequest,
        key: &str,
    ) -> Result<RefundMade, Problem> {
        let request = Request::post(format!("/api/v1/admin/orders/{reference}/refund"))
            .auth(self.token)
            .key(key)
            .json(request);
        self.app.request(request, 201).await
    }

    /// `POST /api/v1/admin/orders/{reference}/refunds/{refund_id}/settle`.
    pub async fn settle(
        &self,
        reference: &str,
        refund_id: &str,
    ) -> Result<AdminOrderView, Problem> {
        let path = format!("/api/v1/admin/orders/{reference}/refunds/{refund_id}/settle");
        self.post_empty(path).await
    }

    /// `GET /api/v1/admin/refunds?{query}`.
    pub async fn refunds(&self, query: &str) -> Result<RefundPage, Problem> {
        self.get(with_query("/api/v1/admin/refunds", query)).await
    }

    /// `POST /api/v1/admin/payments/{id}/capture {amount_minor, currency}` (manual payments).
    pub async fn capture(
        &self,
        payment_id: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<PaymentApplied, Problem> {
        let body = CaptureBody {
            amount_minor,
            currency: currency.to_owned(),
        };
        let path = format!("/api/v1/admin/payments/{payment_id}/capture");
        self.post(path, &body, 200).await
    }

    /// Records the full payment of a manual `order`: asserts the order is then paid.
    pub async fn pay(&self, order: &OrderView) {
        let payment = &order.payment;
        let captured = self
            .capture(&payment.id, payment.amount_minor, &payment.currency)
            .await
            .unwrap_or_else(|p| panic!("capture: {}", p.body));
        assert_eq!(
            captured.financial_status,
            Some(lumi_commerce::model::FinancialStatus::Paid),
            "{captured:?}"
        );
    }

    /// `POST /api/v1/admin/payments/{id}/fail {reason}`.
    pub async fn fail_payment(
        &self,
        payment_id: &str,
        reason: &str,
    ) -> Result<PaymentApplied, Problem> {
        let body = FailPayment {
            reason: reason.to_owned(),
        };
        let path = format!("/api/v1/admin/payments/{payment_id}/fail");
        self.post(path, &body, 200).await
    }

    /// `GET /api/v1/admin/payments?{query}`.
    pub async fn payments(&self, query: &str) -> Result<PaymentPage, Problem> {
        self.get(with_query("/api/v1/admin/payments", query)).await
    }

    /// `GET /api/v1/admin/audit-logs?{query}`: newest first.
    pub async fn audit(&self, query: &str) -> Result<AuditPage, Problem> {
        self.get(with_query("/api/v1/admin/audit-logs", query))
            .await
    }

    /// `GET /api/v1/admin/users?{query}`.
    pub async fn users(&self, query: &str) -> Result<UserPage, Problem> {
        self.get(with_query("/api/v1/admin/users", query)).await
    }

    /// `POST /api/v1/admin/users/{id}/lock {reason}`.
    pub async fn lock(&self, user_id: &str, reason: &str) -> Result<UserLock, Problem> {
        let body = admin::Lock {
            reason: reason.to_owned(),
        };
        let path = format!("/api/v1/admin/users/{user_id}/lock");
        self.post(path, &body, 200).await
    }

    /// `POST /api/v1/admin/users/{id}/unlock`.
    pub async fn unlock(&self, user_id: &str) -> Result<UserLock, Problem> {
        let path = format!("/api/v1/admin/users/{user_id}/unlock");
        self.post_empty(path).await
    }

    /// `DELETE /api/v1/admin/users/{id}/sessions`.
    pub async fn delete_sessions(&self, user_id: &str) -> Result<SessionsDeleted, Problem> {
        let path = format!("/api/v1/admin/users/{user_id}/sessions");
        self.app
            .request(Request::delete(path).auth(self.token), 200)
            .await
    }

    /// `POST /api/v1/admin/products` (201).
    pub async fn create_product(
        &self,
        product: &NewProductRequest,
    ) -> Result<ProductView, Problem> {
        self.post("/api/v1/admin/products".into(), product, 201)
            .await
    }

    /// `PATCH /api/v1/admin/products/{id}`.
    pub async fn patch_product(
        &self,
        id: &str,
        patch: &ProductPatch,
    ) -> Result<ProductView, Problem> {
        let request = Request::patch(format!("/api/v1/admin/products/{id}"))
            .auth(self.token)
            .json(patch);
        self.app.request(request, 200).await
    }

    /// `POST /api/v1/admin/variants/{sku}/stock {delta, reason}`.
    pub async fn adjust_stock(
        &self,
        sku: &str,
        delta: i64,
        reason: &str,
    ) -> Result<StockLevels, Problem> {
        let body = StockAdjustment {
            delta,
            reason: reason.to_owned(),
        };
        let path = format!("/api/v1/admin/variants/{sku}/stock");
        self.post(path, &body, 200).await
    }

    /// `GET /api/v1/admin/variants/{sku}/ledger`.
    pub async fn ledger(&self, sku: &str) -> Result<LedgerView, Problem> {
        self.get(format!("/api/v1/admin/variants/{sku}/ledger"))
            .await
    }

    /// `GET /api/v1/admin/inventory/mismatches?{query}`.
    pub async fn mismatches(&self, query: &str) -> Result<MismatchPage, Problem> {
        self.get(with_query("/api/v1/admin/inventory/mismatches", query))
            .await
    }

    /// `POST /api/v1/admin/inventory/rebalance`.
    pub async fn rebalance(&self) -> Result<Rebalanced, Problem> {
        self.post_empty("/api/v1/admin/inventory/rebalance".into())
            .await
    }

    /// `PUT /api/v1/admin/site-content/{key} {content}`.
    pub async fn put_content(&self, key: &str, content: Value) -> Result<ContentWritten, Problem> {
        let request = Request::put(format!("/api/v1/admin/site-content/{key}"))
            .auth(self.token)
            .json(&ContentBody { content });
        self.app.request(request, 200).await
    }
}
