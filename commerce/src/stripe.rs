//! Stripe, the online payment provider: a small API client (PaymentIntents and Refunds), the
//! `Stripe-Signature` check of its webhooks and the events Lumi reads.
//!
//! **Client.** Plain HTTPS (HTTP for a loopback emulator such as `localstripe`) with the hyper
//! stack the project already links: form-encoded requests in Stripe's bracket notation
//! (`metadata[order_reference]=…`, `payment_method_types[]=card`), JSON answers, the secret key
//! as a Bearer token (a [`SecretString`], never logged, marked sensitive on the wire), a pinned
//! `Stripe-Version`, and an `Idempotency-Key` on every POST (the caller's, else one drawn per
//! call) so that every retry of one call is the same request to Stripe. Each attempt has a
//! timeout and the whole call a deadline; connection errors, timeouts, 409 (a concurrent
//! request with the same key), 429 and 5xx are retried with exponential backoff and jitter,
//! honouring `Stripe-Should-Retry` and `Retry-After`. Errors are [`StripeError`]: a card
//! declined, a request Stripe refused (4xx, with Stripe's type, code and message), or Stripe
//! unavailable (no usable answer within the retries: the outcome of a POST is then unknown,
//! and the same call with the same key may be repeated later to learn it).
//!
//! **Webhooks.** [`verify_signature`] checks `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=…]`:
//! HMAC-SHA256 with the endpoint's secret over `<t>.<raw body>`, compared in constant time,
//! any `v1` may match (Stripe sends one per active secret while a secret is rolled), the
//! timestamp within [`SIGNATURE_TOLERANCE_SECS`] of now either way. [`parse_event`] reads the
//! envelope and types the objects of the events Lumi handles; any other type is
//! [`EventObject::Other`].
//!
//! Where the local emulator differs from Stripe, this module follows Stripe's documented API;
//! `docs/stripe-local-differences.md` lists the differences.

use std::{collections::BTreeMap, fmt, net::IpAddr, sync::OnceLock, time::Duration};

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use sha2::Sha256;

/// Stripe's API.
pub const API_BASE: &str = "https://api.stripe.com";
/// The API version every request asks for (`Stripe-Version`). The webhook endpoint registered
/// in Stripe must use the same version: an event's shape follows the endpoint's version.
pub const API_VERSION: &str = "2024-06-20";
/// How far a webhook's timestamp may be from now, either way.
pub const SIGNATURE_TOLERANCE_SECS: u64 = 300;
/// Longest idempotency key Stripe accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Largest amount Stripe takes in one PaymentIntent (eight digits of minor units).
pub const MAX_AMOUNT_MINOR: i64 = 99_999_999;
/// Stripe's metadata limits.
pub const METADATA_MAX_KEYS: usize = 50;
pub const METADATA_MAX_KEY_LEN: usize = 40;
pub const METADATA_MAX_VALUE_LEN: usize = 500;
/// Largest answer read from Stripe.
const MAX_ANSWER_BYTES: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Configuration and errors
// ---------------------------------------------------------------------------------------------

/// Where and how to call Stripe. `Debug` shows `[REDACTED]` for the key.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or `http://127.0.0.1:<port>` for a local emulator (plain HTTP
    /// is accepted for loopback addresses only).
    pub api_base: String,
    pub secret_key: SecretString,
    /// `Stripe-Version`.
    pub api_version: String,
    /// The longest one attempt may take (connecting, sending, reading the answer).
    pub attempt_timeout: Duration,
    /// The longest a whole call may take, retries and waits included: no attempt starts or
    /// waits past it.
    pub deadline: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait before a retry; doubled each time, up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl StripeConfig {
    /// Defaults fit for a request handler behind API Gateway (29 s at most): 8 s per attempt,
    /// two retries, 20 s in all.
    pub fn new(api_base: impl Into<String>, secret_key: impl Into<SecretString>) -> Self {
        Self {
            api_base: api_base.into(),
            secret_key: secret_key.into(),
            api_version: API_VERSION.to_owned(),
            attempt_timeout: Duration::from_secs(8),
            deadline: Duration::from_secs(20),
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
        }
    }
}

/// Stripe's error object (`{"error": {...}}`), as far as Lumi reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    /// `card_error`, `invalid_request_error`, `idempotency_error`, `api_error`…
    pub kind: String,
    /// `card_declined`, `resource_missing`, `amount_too_large`…
    pub code: Option<String>,
    /// For declines: `generic_decline`, `insufficient_funds`…
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
    /// The charge a decline made, when Stripe names it.
    pub charge: Option<String>,
    /// The PaymentIntent a decline concerns, when Stripe includes it.
    pub payment_intent: Option<String>,
    /// Stripe's `Request-Id` of the answer (for Stripe's support and logs).
    pub request_id: Option<String>,
}

impl ApiError {
    fn parse(body: &[u8], request_id: Option<String>) -> Self {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let error = &value["error"];
        let text = |name: &str| error[name].as_str().map(str::to_owned);
        if !error.is_object() {
            let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Self {
                kind: "unknown".into(),
                message: (!snippet.is_empty()).then_some(snippet),
                request_id,
                ..Self::default()
            };
        }
        Self {
            kind: text("type").unwrap_or_else(|| "unknown".into()),
            code: text("code"),
            decline_code: text("decline_code"),
            message: text("message"),
            param: text("param"),
            charge: text("charge"),
            payment_intent: error["payment_intent"]["id"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| text("payment_intent")),
            request_id,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(code) = &self.code {
            write!(f, "/{code}")?;
        }
        if let Some(decline) = &self.decline_code {
            write!(f, "/{decline}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(param) = &self.param {
            write!(f, " (param {param})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

/// Why a Stripe call did not give the object asked for.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// The payment method was declined (HTTP 402, or Stripe's type `card_error`).
    #[error("card declined ({status}): {error}")]
    Card {
        status: StatusCode,
        error: Box<ApiError>,
    },
    /// Stripe refused the request (4xx): invalid or unknown parameters, an unknown id (404),
    /// an idempotency key reused with other parameters, a bad key (401/403). Retrying the
    /// same request gives the same answer.
    #[error("Stripe refused the request ({status}): {error}")]
    InvalidRequest {
        status: StatusCode,
        error: Box<ApiError>,
    },
    /// No usable answer: connection errors, timeouts, 5xx, 409 or 429 after every retry. For
    /// a POST the outcome is unknown: repeat it later with the same idempotency key.
    #[error("Stripe is unavailable after {attempts} attempt(s): {reason}")]
    Unavailable {
        attempts: u32,
        reason: String,
        status: Option<StatusCode>,
        error: Option<Box<ApiError>>,
    },
    /// A parameter Lumi was about to send is not valid; nothing was sent.
    #[error("invalid Stripe parameter: {0}")]
    InvalidArgument(String),
    /// A 2xx answer that is not the object expected.
    #[error("unexpected answer from Stripe: {0}")]
    Decode(String),
    /// The client cannot be built (base URL, key, TLS trust store).
    #[error("Stripe client configuration: {0}")]
    Config(String),
}

impl StripeError {
    /// Stripe's error object, when it gave one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Card { error, .. } | Self::InvalidRequest { error, .. } => Some(error),
            Self::Unavailable { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// An unknown id (`resource_missing`, 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::InvalidRequest { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// The outcome is unknown and the same call (same key) may be repeated later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

// ---------------------------------------------------------------------------------------------
// Form encoding
// ---------------------------------------------------------------------------------------------

/// An `application/x-www-form-urlencoded` body in Stripe's bracket notation, in the order the
/// pairs were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    /// `key=value` (the key may already be nested: `card[number]`).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// The builder form of [`Form::push`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(key, value);
        self
    }

    /// `key[]=v1&key[]=v2` (an array parameter).
    pub fn push_list<I, V>(&mut self, key: &str, values: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        for value in values {
            self.pairs.push((format!("{key}[]"), value.into()));
        }
        self
    }

    /// `key[k1]=v1&key[k2]=v2` (a hash parameter such as `metadata`).
    pub fn push_map<'a, I>(&mut self, key: &str, entries: I) -> &mut Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        for (name, value) in entries {
            self.pairs.push((format!("{key}[{name}]"), value.clone()));
        }
        self
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The body: each key and value percent-encoded (brackets included), joined by `&`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_component(key, &mut out);
            out.push('=');
            encode_component(value, &mut out);
        }
        out
    }
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~` (UTF-8 bytes, upper-case hex).
fn encode_component(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// Which payment methods a PaymentIntent accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaymentMethods {
    /// `payment_method_types[]=card`: cards only (the local emulator supports this only).
    #[default]
    Card,
    /// `automatic_payment_methods[enabled]=true`: the methods enabled in the Stripe dashboard.
    Automatic,
}

impl std::str::FromStr for PaymentMethods {
    type Err = StripeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "card" => Ok(Self::Card),
            "automatic" => Ok(Self::Automatic),
            other => Err(StripeError::InvalidArgument(format!(
                "payment methods {other:?}: expected card or automatic"
            ))),
        }
    }
}

/// `POST /v1/payment_intents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePaymentIntent {
    /// Minor units (cents), positive, at most [`MAX_AMOUNT_MINOR`].
    pub amount_minor: i64,
    /// ISO 4217, any case: sent in lower case.
    pub currency: String,
    pub payment_methods: PaymentMethods,
    pub metadata: BTreeMap<String, String>,
}

impl CreatePaymentIntent {
    /// The intent for an order's payment: `metadata[order_reference]` and
    /// `metadata[payment_id]` tie it (and every event about it) to the order.
    pub fn for_order(
        order_reference: &str,
        payment_id: &str,
        amount_minor: i64,
        currency: &str,
        payment_methods: PaymentMethods,
    ) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
            payment_methods,
            metadata: BTreeMap::from([
                ("order_reference".to_owned(), order_reference.to_owned()),
                ("payment_id".to_owned(), payment_id.to_owned()),
            ]),
        }
    }

    pub fn to_form(&self) -> Result<Form, StripeError> {
        check_amount(self.amount_minor)?;
        let mut form = Form::new();
        form.push("amount", self.amount_minor.to_string())
            .push("currency", stripe_currency(&self.currency)?);
        match self.payment_methods {
            PaymentMethods::Card => form.push_list("payment_method_types", ["card"]),
            PaymentMethods::Automatic => form.push("automatic_payment_methods[enabled]", "true"),
        };
        check_metadata(&self.metadata)?;
        form.push_map("metadata", &self.metadata);
        Ok(form)
    }
}

/// `POST /v1/refunds` of part or all of a PaymentIntent's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefund {
    pub payment_intent: String,
    /// Minor units, positive.
    pub amount_minor: i64,
    pub metadata: BTreeMap<String, String>,
}

impl CreateRefund {
    /// The refund of one Lumi refund record: `metadata[refund_id]` (and the order's reference)
    /// tie Stripe's refund and its events to the record.
    pub fn for_refund(
        payment_intent: &str,
        amount_minor: i64,
        refund_id: &str,
        order_reference: &str,
    ) -> Self {
        Self {
            payment_intent: payment_intent.to_owned(),
            amount_minor,
            metadata: BTreeMap::from([
                ("refund_id".to_owned(), refund_id.to_owned()),
                ("order_reference".to_owned(), order_reference.to_owned()),
            ]),
        }
    }

    pub fn to_form(&self) -> Result<Form, StripeError> {
        check_amount(self.amount_minor)?;
        check_id(&self.payment_intent)?;
        let mut form = Form::new();
        form.push("payment_intent", self.payment_intent.clone())
            .push("amount", self.amount_minor.to_string());
        check_metadata(&self.metadata)?;
        form.push_map("metadata", &self.metadata);
        Ok(form)
    }
}

fn check_amount(amount_minor: i64) -> Result<(), StripeError> {
    if amount_minor <= 0 || amount_minor > MAX_AMOUNT_MINOR {
        return Err(StripeError::InvalidArgument(format!(
            "amount {amount_minor}: expected 1..={MAX_AMOUNT_MINOR} minor units"
        )));
    }
    Ok(())
}

/// A three-letter ISO code, lower-cased as Stripe wants it.
pub fn stripe_currency(currency: &str) -> Result<String, StripeError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(currency.to_ascii_lowercase())
    } else {
        Err(StripeError::InvalidArgument(format!(
            "currency {currency:?}: expected a three-letter ISO code"
        )))
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), StripeError> {
    if metadata.len() > METADATA_MAX_KEYS {
        return Err(StripeError::InvalidArgument(format!(
            "metadata has {} keys (at most {METADATA_MAX_KEYS})",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > METADATA_MAX_KEY_LEN || key.contains(['[', ']'])
        {
            return Err(StripeError::InvalidArgument(format!(
                "metadata key {key:?}: 1 to {METADATA_MAX_KEY_LEN} characters, no brackets"
            )));
        }
        if value.chars().count() > METADATA_MAX_VALUE_LEN {
            return Err(StripeError::InvalidArgument(format!(
                "metadata value of {key:?} is longer than {METADATA_MAX_VALUE_LEN} characters"
            )));
        }
    }
    Ok(())
}

/// An object id that is safe in a path: letters, digits and `_`.
fn check_id(id: &str) -> Result<(), StripeError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(StripeError::InvalidArgument(format!("id {id:?}")))
    }
}

fn check_idempotency_key(key: &str) -> Result<HeaderValue, StripeError> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
        return Err(StripeError::InvalidArgument(format!(
            "idempotency key {key:?}: 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
        )));
    }
    HeaderValue::from_str(key).map_err(|e| StripeError::InvalidArgument(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// A field Stripe sends as an id unless it was expanded (the local emulator always sends the
/// object).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

/// Objects that have an id.
pub trait HasId {
    fn id(&self) -> &str;
}

impl<T: HasId> Expandable<T> {
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id) => id,
            Self::Object(object) => object.id(),
        }
    }

    pub fn object(&self) -> Option<&T> {
        match self {
            Self::Id(_) => None,
            Self::Object(object) => Some(object),
        }
    }
}

/// A list (`{"object": "list", "data": [...], "has_more": …}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    #[serde(other)]
    Unknown,
}

/// Why the last attempt to pay failed (`last_payment_error`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentError {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub charge: Option<String>,
}

/// A PaymentIntent. `Debug` hides the client secret.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: PaymentIntentStatus,
    /// What is asked, in minor units.
    pub amount: i64,
    /// What was received (Stripe always sends it; the local emulator does not: see
    /// [`PaymentIntent::received_minor`]).
    #[serde(default)]
    pub amount_received: Option<i64>,
    /// Lower-case ISO code.
    pub currency: String,
    /// What the storefront gives Stripe.js to confirm the payment.
    #[serde(default)]
    pub client_secret: Option<ClientSecret>,
    #[serde(default)]
    pub latest_charge: Option<Expandable<Charge>>,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub capture_method: Option<String>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
}

/// A PaymentIntent's client secret: what the storefront gives Stripe.js, for the customer
/// only. `Debug` prints `[REDACTED]`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ClientSecret(SecretString);

impl ClientSecret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

impl PartialEq for ClientSecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl HasId for PaymentIntent {
    fn id(&self) -> &str {
        &self.id
    }
}

impl PaymentIntent {
    /// What Stripe received, in minor units: `amount_received`; without it (the local
    /// emulator), what the latest charge captured when it is in the answer. Never the amount
    /// asked: an intent whose received amount is unknown is not taken as paid in full.
    pub fn received_minor(&self) -> Option<i64> {
        if let Some(received) = self.amount_received {
            return Some(received);
        }
        let charge = self.latest_charge.as_ref()?.object()?;
        if let Some(captured) = charge.amount_captured {
            return Some(captured);
        }
        (charge.captured && charge.status == "succeeded").then_some(charge.amount)
    }

    pub fn order_reference(&self) -> Option<&str> {
        self.metadata.get("order_reference").map(String::as_str)
    }

    pub fn payment_id(&self) -> Option<&str> {
        self.metadata.get("payment_id").map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Canceled,
    #[serde(other)]
    Unknown,
}

/// A Refund.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub charge: Option<String>,
    /// Why a refund failed (`lost_or_stolen_card`, `expired_or_canceled_card`, …).
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub created: i64,
}

impl HasId for Refund {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Refund {
    /// The Lumi refund record this refund was made for; none for a refund made in the Stripe
    /// dashboard.
    pub fn lumi_refund_id(&self) -> Option<&str> {
        self.metadata.get("refund_id").map(String::as_str)
    }
}

/// A Charge (what `charge.refunded` carries).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    /// Stripe sends it; the local emulator does not.
    #[serde(default)]
    pub amount_captured: Option<i64>,
    #[serde(default)]
    pub amount_refunded: i64,
    #[serde(default)]
    pub captured: bool,
    #[serde(default)]
    pub refunded: bool,
    pub currency: String,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    /// Stripe no longer includes them by default (since 2022-11-15); the local emulator does.
    #[serde(default)]
    pub refunds: Option<List<Refund>>,
    #[serde(default)]
    pub failure_code: Option<String>,
    #[serde(default)]
    pub failure_message: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub created: i64,
}

impl HasId for Charge {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A Dispute (chargeback).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub charge: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    /// `fraudulent`, `product_not_received`, `general`, …
    pub reason: String,
    /// `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, …
    pub status: String,
    #[serde(default)]
    pub created: i64,
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

type Body = Full<Bytes>;

#[derive(Clone)]
enum Http {
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>),
    Plain(Client<HttpConnector, Body>),
}

/// A Stripe API client. Cheap to clone; the HTTP client (and the TLS trust store) is built on
/// the first call.
#[derive(Clone)]
pub struct StripeClient {
    config: StripeConfig,
    base: String,
    tls: bool,
    auth: HeaderValue,
    version: HeaderValue,
    http: OnceLock<Http>,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("base", &self.base)
            .field("api_version", &self.config.api_version)
            .finish_non_exhaustive()
    }
}

/// What one attempt gave.
enum Attempt {
    Done(Bytes),
    Refused(StripeError),
    Retry {
        reason: String,
        status: Option<StatusCode>,
        error: Option<Box<ApiError>>,
        retry_after: Option<Duration>,
    },
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> Result<Self, StripeError> {
        let (base, tls) = check_base(&config.api_base)?;
        let key = config.secret_key.expose_secret();
        if key.trim().is_empty() {
            return Err(StripeError::Config("the secret key is empty".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| StripeError::Config("the secret key is not header-safe".into()))?;
        auth.set_sensitive(true);
        let version = HeaderValue::from_str(&config.api_version)
            .map_err(|_| StripeError::Config("the API version is not header-safe".into()))?;
        Ok(Self {
            config,
            base,
            tls,
            auth,
            version,
            http: OnceLock::new(),
        })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// `POST /v1/payment_intents`. The key makes a repeated call (a retried checkout) give the
    /// same intent; Stripe keeps keys for at least 24 hours.
    pub async fn create_payment_intent(
        &self,
        params: &CreatePaymentIntent,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let form = params.to_form()?;
        self.post("/v1/payment_intents", &form, Some(idempotency_key))
            .await
    }

    /// `GET /v1/payment_intents/{id}`.
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        check_id(id)?;
        self.get(&format!("/v1/payment_intents/{id}")).await
    }

    /// `POST /v1/payment_intents/{id}/cancel` (an order cancelled before it was paid: the
    /// customer can no longer pay it).
    pub async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        check_id(id)?;
        self.post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &Form::new(),
            Some(idempotency_key),
        )
        .await
    }

    /// `POST /v1/refunds`. The key (derived from Lumi's refund record) makes a repeated call
    /// give the same refund.
    pub async fn create_refund(
        &self,
        params: &CreateRefund,
        idempotency_key: &str,
    ) -> Result<Refund, StripeError> {
        let form = params.to_form()?;
        self.post("/v1/refunds", &form, Some(idempotency_key)).await
    }

    /// `GET /v1/refunds/{id}`.
    pub async fn retrieve_refund(&self, id: &str) -> Result<Refund, StripeError> {
        check_id(id)?;
        self.get(&format!("/v1/refunds/{id}")).await
    }

    /// Any POST (`path` from the API's root: `/v1/…`). Without a key, one is drawn for this
    /// call, so its retries are still the same request. An empty answer reads as JSON `null`
    /// (ask for `()`).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let key = match idempotency_key {
            Some(key) => check_idempotency_key(key)?,
            None => check_idempotency_key(&format!("lumi-{}", uuid::Uuid::new_v4()))?,
        };
        let body = Bytes::from(form.encode());
        self.call(Method::POST, path, body, Some(key)).await
    }

    /// Any GET.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, StripeError> {
        self.call(Method::GET, path, Bytes::new(), None).await
    }

    fn http(&self) -> Result<&Http, StripeError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let timer = TokioTimer::new();
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(timer)
            .pool_idle_timeout(Duration::from_secs(30));
        let http = if self.tls {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| StripeError::Config(format!("no TLS trust store: {e}")))?
                .https_only()
                .enable_http1()
                .build();
            Http::Tls(builder.build(connector))
        } else {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Http::Plain(builder.build(connector))
        };
        Ok(self.http.get_or_init(|| http))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        idempotency_key: Option<HeaderValue>,
    ) -> Result<T, StripeError> {
        if !path.starts_with('/') {
            return Err(StripeError::InvalidArgument(format!("path {path:?}")));
        }
        let url = format!("{}{path}", self.base);
        let http = self.http()?;
        let started = tokio::time::Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = self.config.deadline.saturating_sub(started.elapsed());
            let timeout = self.config.attempt_timeout.min(remaining);
            let request = self.request(&method, &url, body.clone(), idempotency_key.as_ref())?;
            let attempt = match tokio::time::timeout(timeout, exchange(http, request)).await {
                Err(_) => Attempt::Retry {
                    reason: format!("no answer within {timeout:?}"),
                    status: None,
                    error: None,
                    retry_after: None,
                },
                Ok(Err(reason)) => Attempt::Retry {
                    reason,
                    status: None,
                    error: None,
                    retry_after: None,
                },
                Ok(Ok((status, headers, bytes))) => judge(status, &headers, bytes),
            };
            match attempt {
                Attempt::Done(bytes) => {
                    tracing::debug!(%method, path, attempts, "stripe call done");
                    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
                        b"null"
                    } else {
                        &bytes
                    };
                    return serde_json::from_slice(text)
                        .map_err(|e| StripeError::Decode(format!("{method} {path}: {e}")));
                }
                Attempt::Refused(mut error) => {
                    if let StripeError::Unavailable {
                        attempts: count, ..
                    } = &mut error
                    {
                        *count = attempts;
                    }
                    tracing::info!(%method, path, attempts, error = %error, "stripe refused");
                    return Err(error);
                }
                Attempt::Retry {
                    reason,
                    status,
                    error,
                    retry_after,
                } => {
                    let wait = backoff(
                        attempts,
                        self.config.initial_backoff,
                        self.config.max_backoff,
                        retry_after,
                        rand::random::<f64>(),
                    );
                    let out_of_time = started.elapsed() + wait >= self.config.deadline;
                    if attempts > self.config.max_retries || out_of_time {
                        tracing::warn!(%method, path, attempts, reason, "stripe unavailable");
                        return Err(StripeError::Unavailable {
                            attempts,
                            reason,
                            status,
                            error,
                        });
                    }
                    tracing::warn!(
                        %method, path, attempts, reason, wait_ms = wait.as_millis() as u64,
                        "stripe call failed; retrying with the same idempotency key"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn request(
        &self,
        method: &Method,
        url: &str,
        body: Bytes,
        idempotency_key: Option<&HeaderValue>,
    ) -> Result<http::Request<Body>, StripeError> {
        let mut builder = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::AUTHORIZATION, self.auth.clone())
            .header("Stripe-Version", self.version.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("lumi/", env!("CARGO_PKG_VERSION")),
            );
        if *method == Method::POST {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("Idempotency-Key", key.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|e| StripeError::InvalidArgument(format!("request: {e}")))
    }
}

async fn exchange(
    http: &Http,
    request: http::Request<Body>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let response = match http {
        Http::Tls(client) => client.request(request).await,
        Http::Plain(client) => client.request(request).await,
    }
    .map_err(|e| format!("connection: {e}"))?;
    let (parts, body) = response.into_parts();
    let bytes = Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

/// What to do with an answer.
fn judge(status: StatusCode, headers: &HeaderMap, bytes: Bytes) -> Attempt {
    if status.is_success() {
        return Attempt::Done(bytes);
    }
    let request_id = headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let error = Box::new(ApiError::parse(&bytes, request_id));
    if should_retry(status, headers) {
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Attempt::Retry {
            reason: format!("HTTP {status}: {error}"),
            status: Some(status),
            error: Some(error),
            retry_after,
        };
    }
    if status.is_server_error() || status == StatusCode::CONFLICT {
        // Stripe said not to retry (its idempotency layer replays this answer): unknown.
        return Attempt::Refused(StripeError::Unavailable {
            attempts: 1,
            reason: format!("HTTP {status}: {error}"),
            status: Some(status),
            error: Some(error),
        });
    }
    if status == StatusCode::PAYMENT_REQUIRED || error.kind == "card_error" {
        Attempt::Refused(StripeError::Card { status, error })
    } else {
        Attempt::Refused(StripeError::InvalidRequest { status, error })
    }
}

/// Stripe's retry rule: `Stripe-Should-Retry` when present; else 409 (a concurrent request
/// with the same key), 429 and 5xx.
pub fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
    {
        Some("true") => true,
        Some("false") => false,
        _ => {
            status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
        }
    }
}

/// The wait before retry number `attempt` (1 for the first retry): `initial · 2^(attempt−1)`
/// capped at `max`, scaled into [50 %, 100 %] by `jitter` ∈ [0, 1); a `Retry-After` the
/// server gave is waited instead when longer (still capped at `max`).
pub fn backoff(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let base = initial.saturating_mul(1u32 << exponent).min(max);
    let jittered = base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(asked) => asked.min(max).max(jittered),
        None => jittered,
    }
}

/// `https://…`, or `http://…` to a loopback address. Returns the base without a trailing
/// slash and whether it is TLS.
fn check_base(base: &str) -> Result<(String, bool), StripeError> {
    let uri: http::Uri = base
        .parse()
        .map_err(|_| StripeError::Config(format!("API base {base:?} is not a URL")))?;
    let host = uri
        .host()
        .ok_or_else(|| StripeError::Config(format!("API base {base:?} has no host")))?;
    if uri.query().is_some() {
        return Err(StripeError::Config(format!(
            "API base {base:?} has a query"
        )));
    }
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(StripeError::Config(format!(
                    "API base {base:?}: plain HTTP is for a loopback emulator only; use https"
                )));
            }
            false
        }
        _ => {
            return Err(StripeError::Config(format!(
                "API base {base:?}: the scheme must be https (or http on loopback)"
            )));
        }
    };
    Ok((base.trim_end_matches('/').to_owned(), tls))
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<[u8; 32]> {
    // HMAC takes keys of any length: `new_from_slice` does not fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().into())
}

/// The `Stripe-Signature` value Stripe sends for `body` at `timestamp` with `secret` (tests,
/// tools).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, &timestamp.to_string(), body).unwrap_or_default();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("t={timestamp},v1={hex}")
}

fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// Checks a `Stripe-Signature` header against the raw body: `t` (decimal, exactly once), one
/// or more `v1` (other schemes such as `v0` are ignored), the timestamp within `tolerance_secs`
/// of `now_secs` (a saturating difference: any `i64` is safe), and a `v1` equal, in constant
/// time, to HMAC-SHA256(secret, `<t>.<body>`). Returns the signed timestamp.
pub fn verify_signature_with_tolerance(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<i64, SignatureError> {
    use subtle::ConstantTimeEq as _;

    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp: Option<&str> = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match name {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return Err(SignatureError::Malformed),
            "v1" => candidates.push(value),
            _ => {}
        }
    }
    let text = timestamp.ok_or(SignatureError::Malformed)?;
    // Canonical decimal digits only, so that the signed text is the number Stripe's own
    // libraries format (no sign, no leading zero).
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    if !canonical {
        return Err(SignatureError::Malformed);
    }
    let signed_at: i64 = text.parse().map_err(|_| SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_secs.abs_diff(signed_at) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, text, body).ok_or(SignatureError::Mismatch)?;
    let mut matched = subtle::Choice::from(0);
    for candidate in candidates {
        if let Some(given) = decode_hex_32(candidate) {
            matched |= given.ct_eq(&expected);
        }
    }
    if bool::from(matched) {
        Ok(signed_at)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// [`verify_signature_with_tolerance`] with Stripe's tolerance of five minutes.
pub fn verify_signature(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<i64, SignatureError> {
    verify_signature_with_tolerance(secret, header, body, now_secs, SIGNATURE_TOLERANCE_SECS)
}

/// What an event is about, typed for the events Lumi handles.
#[derive(Debug, Clone, PartialEq)]
pub enum EventObject {
    /// `payment_intent.succeeded`: the money is received (check `received_minor`).
    PaymentIntentSucceeded(PaymentIntent),
    /// `payment_intent.payment_failed`: an attempt to pay failed (the intent may be paid
    /// later with another method).
    PaymentIntentPaymentFailed(PaymentIntent),
    /// `charge.refunded`: a charge was refunded, in part or in full (`amount_refunded`).
    ChargeRefunded(Charge),
    /// `refund.created`.
    RefundCreated(Refund),
    /// `refund.updated`: a refund's status changed (pending → succeeded, failed, …).
    RefundUpdated(Refund),
    /// `refund.failed`.
    RefundFailed(Refund),
    /// `charge.dispute.created`: a chargeback.
    ChargeDisputeCreated(Dispute),
    /// Any other type: acknowledged, logged, not applied.
    Other(serde_json::Value),
}

/// A webhook event: `{id, type, created, data: {object}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The idempotency key of the API request that caused the event (Lumi's own calls),
    /// when Stripe gives it.
    pub idempotency_key: Option<String>,
    pub object: EventObject,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a Stripe event: {0}")]
    Envelope(serde_json::Error),
    #[error("the object of a {kind} event is not what Stripe documents: {source}")]
    Object {
        kind: String,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    #[serde(default)]
    livemode: bool,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    request: Option<RawRequest>,
    data: RawData,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

/// Reads a webhook body (after [`verify_signature`]).
pub fn parse_event(body: &[u8]) -> Result<Event, EventError> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(EventError::Envelope)?;
    let object = raw.data.object;
    let kind = raw.kind;
    fn typed<T: DeserializeOwned>(kind: &str, object: serde_json::Value) -> Result<T, EventError> {
        serde_json::from_value(object).map_err(|source| EventError::Object {
            kind: kind.to_owned(),
            source,
        })
    }
    let object = match kind.as_str() {
        "payment_intent.succeeded" => EventObject::PaymentIntentSucceeded(typed(&kind, object)?),
        "payment_intent.payment_failed" => {
            EventObject::PaymentIntentPaymentFailed(typed(&kind, object)?)
        }
        "charge.refunded" => EventObject::ChargeRefunded(typed(&kind, object)?),
        "refund.created" => EventObject::RefundCreated(typed(&kind, object)?),
        "refund.updated" => EventObject::RefundUpdated(typed(&kind, object)?),
        "refund.failed" => EventObject::RefundFailed(typed(&kind, object)?),
        "charge.dispute.created" => EventObject::ChargeDisputeCreated(typed(&kind, object)?),
        _ => EventObject::Other(object),
    };
    Ok(Event {
        id: raw.id,
        kind,
        created: raw.created,
        livemode: raw.livemode,
        api_version: raw.api_version,
        idempotency_key: raw.request.and_then(|r| r.idempotency_key),
        object,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn decode(body: &str) -> Vec<(String, String)> {
        fn unescape(text: &str) -> String {
            let bytes = text.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        }
        body.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (unescape(k), unescape(v))
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn forms_encode_brackets_and_every_reserved_byte() {
        let mut form = Form::new().with("amount", "1099");
        form.push_list("payment_method_types", ["card"]);
        let metadata = BTreeMap::from([("note".to_owned(), "a b&c=d/é+%".to_owned())]);
        form.push_map("metadata", &metadata);
        let body = form.encode();
        assert_eq!(
            body,
            "amount=1099&payment_method_types%5B%5D=card&metadata%5Bnote%5D=a%20b%26c%3Dd%2F%C3%A9%2B%25"
        );
        assert_eq!(
            decode(&body),
            pairs(&[
                ("amount", "1099"),
                ("payment_method_types[]", "card"),
                ("metadata[note]", "a b&c=d/é+%"),
            ])
        );
        assert_eq!(Form::new().encode(), "");
        assert_eq!(
            Form::new().with("k", "-._~").with("e", "").encode(),
            "k=-._~&e="
        );
    }

    #[test]
    fn a_payment_intent_for_an_order_sends_what_stripe_documents() {
        let params = CreatePaymentIntent::for_order(
            "LUM-7Q2K9",
            "pay_0123456789abcdef0123456789abcdef",
            4599,
            "EUR",
            PaymentMethods::Card,
        );
        assert_eq!(
            decode(&params.to_form().unwrap().encode()),
            pairs(&[
                ("amount", "4599"),
                ("currency", "eur"),
                ("payment_method_types[]", "card"),
                ("metadata[order_reference]", "LUM-7Q2K9"),
                (
                    "metadata[payment_id]",
                    "pay_0123456789abcdef0123456789abcdef"
                ),
            ])
        );
        let automatic = CreatePaymentIntent {
            payment_methods: PaymentMethods::Automatic,
            ..params
        };
        let sent = decode(&automatic.to_form().unwrap().encode());
        assert!(sent.contains(&("automatic_payment_methods[enabled]".into(), "true".into())));
        assert!(
            !sent
                .iter()
                .any(|(k, _)| k.starts_with("payment_method_types"))
        );
        assert_eq!(
            "automatic".parse::<PaymentMethods>().ok(),
            Some(PaymentMethods::Automatic)
        );
        assert!("cards".parse::<PaymentMethods>().is_err());
    }

    #[test]
    fn bad_parameters_are_refused_before_anything_is_sent() {
        let base = CreatePaymentIntent::for_order("R", "P", 100, "eur", PaymentMethods::Card);
        for amount in [0, -1, MAX_AMOUNT_MINOR + 1, i64::MIN] {
            let params = CreatePaymentIntent {
                amount_minor: amount,
                ..base.clone()
            };
            assert!(matches!(
                params.to_form(),
                Err(StripeError::InvalidArgument(_))
            ));
        }
        for currency in ["", "EU", "EURO", "E1R", "€UR"] {
            let params = CreatePaymentIntent {
                currency: currency.into(),
                ..base.clone()
            };
            assert!(params.to_form().is_err(), "{currency}");
        }
        let mut bracket = base.clone();
        bracket.metadata.insert("a[b]".into(), "x".into());
        assert!(bracket.to_form().is_err());
        let mut long = base.clone();
        long.metadata.insert("k".into(), "x".repeat(501));
        assert!(long.to_form().is_err());
        let mut many = base.clone();
        for i in 0..50 {
            many.metadata.insert(format!("k{i}"), "v".into());
        }
        assert!(many.to_form().is_err());
        assert_eq!(
            CreatePaymentIntent {
                amount_minor: MAX_AMOUNT_MINOR,
                ..base
            }
            .to_form()
            .unwrap()
            .pairs()[0]
                .1,
            "99999999"
        );
    }

    #[test]
    fn a_refund_names_its_payment_intent_amount_and_lumi_record() {
        let params = CreateRefund::for_refund("pi_3PfP0a", 1250, "re_0a1b2c", "LUM-7Q2K9");
        assert_eq!(
            decode(&params.to_form().unwrap().encode()),
            pairs(&[
                ("payment_intent", "pi_3PfP0a"),
                ("amount", "1250"),
                ("metadata[order_reference]", "LUM-7Q2K9"),
                ("metadata[refund_id]", "re_0a1b2c"),
            ])
        );
        for bad in ["", "pi_1/../../v1/charges", "pi 1", "pi_1?x=1"] {
            let params = CreateRefund::for_refund(bad, 1, "re", "R");
            assert!(params.to_form().is_err(), "{bad}");
        }
        assert!(
            CreateRefund::for_refund("pi_1", 0, "re", "R")
                .to_form()
                .is_err()
        );
    }

    #[test]
    fn idempotency_keys_are_printable_and_short() {
        assert!(check_idempotency_key("lumi-pi-LUM-7Q2K9-1").is_ok());
        assert!(check_idempotency_key(&"k".repeat(255)).is_ok());
        for bad in ["", "a b", "a\nb", "é"] {
            assert!(check_idempotency_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn the_api_base_is_https_or_loopback_http() {
        assert_eq!(
            check_base("https://api.stripe.com/").unwrap(),
            ("https://api.stripe.com".into(), true)
        );
        for local in [
            "http://127.0.0.1:8420",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(!check_base(local).unwrap().1, "{local}");
        }
        for bad in [
            "http://api.stripe.com",
            "http://10.0.0.1:8420",
            "ftp://127.0.0.1",
            "api.stripe.com",
            "",
            "https://api.stripe.com/?x=1",
        ] {
            assert!(check_base(bad).is_err(), "{bad}");
        }
        let client = StripeClient::new(StripeConfig::new(API_BASE, "sk_test_secretvalue")).unwrap();
        let shown = format!("{client:?} {:?}", client.config());
        assert!(!shown.contains("secretvalue"), "{shown}");
        assert!(StripeClient::new(StripeConfig::new(API_BASE, " ")).is_err());
        assert!(StripeClient::new(StripeConfig::new(API_BASE, "sk_\n")).is_err());
    }

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn judged(status: u16, list: &[(&'static str, &'static str)], body: &str) -> Attempt {
        judge(
            StatusCode::from_u16(status).unwrap(),
            &headers(list),
            Bytes::from(body.to_owned()),
        )
    }

    #[test]
    fn answers_are_classified_like_stripe_s_libraries_do() {
        // localstripe's decline: 402 with type invalid_request_error.
        let declined = r#"{"error":{"charge":"ch_1","code":"card_declined","message":"Your card was declined.","type":"invalid_request_error"}}"#;
        let Attempt::Refused(StripeError::Card { status, error }) =
            judged(402, &[("request-id", "req_42")], declined)
        else {
            panic!("a 402 is a card error");
        };
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(error.code.as_deref(), Some("card_declined"));
        assert_eq!(error.charge.as_deref(), Some("ch_1"));
        assert_eq!(error.request_id.as_deref(), Some("req_42"));
        // Stripe's decline: type card_error, with the intent.
        let stripe = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined.","payment_intent":{"id":"pi_9","status":"requires_payment_method"}}}"#;
        let Attempt::Refused(error) = judged(402, &[], stripe) else {
            panic!()
        };
        let api = error.api_error().unwrap();
        assert_eq!(api.decline_code.as_deref(), Some("generic_decline"));
        assert_eq!(api.payment_intent.as_deref(), Some("pi_9"));
        assert!(error.to_string().contains("generic_decline"));

        let missing = r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such payment_intent: 'pi_x'","param":"intent"}}"#;
        let Attempt::Refused(error) = judged(404, &[], missing) else {
            panic!()
        };
        assert!(error.is_not_found());
        let reused = r#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters they were first used with."}}"#;
        let Attempt::Refused(StripeError::InvalidRequest { status, error }) =
            judged(400, &[], reused)
        else {
            panic!()
        };
        assert_eq!(
            (status.as_u16(), error.kind.as_str()),
            (400, "idempotency_error")
        );
        assert!(matches!(
            judged(401, &[], "Unauthorized"),
            Attempt::Refused(StripeError::InvalidRequest { error, .. })
                if error.kind == "unknown" && error.message.as_deref() == Some("Unauthorized")
        ));

        for status in [409, 429, 500, 502, 503] {
            assert!(
                matches!(judged(status, &[], "{}"), Attempt::Retry { .. }),
                "{status}"
            );
        }
        assert!(matches!(
            judged(429, &[("retry-after", "3")], "{}"),
            Attempt::Retry { retry_after: Some(wait), .. } if wait == Duration::from_secs(3)
        ));
        // Stripe-Should-Retry overrides the status either way.
        assert!(matches!(
            judged(500, &[("stripe-should-retry", "false")], "{}"),
            Attempt::Refused(StripeError::Unavailable { .. })
        ));
        assert!(matches!(
            judged(400, &[("stripe-should-retry", "true")], "{}"),
            Attempt::Retry { .. }
        ));
        assert!(matches!(judged(200, &[], "{}"), Attempt::Done(_)));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let (initial, max) = (Duration::from_millis(500), Duration::from_secs(4));
        let full: Vec<u128> = (1..=6)
            .map(|n| backoff(n, initial, max, None, 1.0).as_millis())
            .collect();
        assert_eq!(full, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(backoff(1, initial, max, None, 0.0).as_millis(), 250);
        assert_eq!(
            backoff(u32::MAX, initial, max, None, 0.5),
            Duration::from_secs(3)
        );
        let asked = Some(Duration::from_secs(3));
        assert_eq!(backoff(1, initial, max, asked, 1.0), Duration::from_secs(3));
        let too_long = Some(Duration::from_secs(3600));
        assert_eq!(backoff(1, initial, max, too_long, 1.0), max);
    }

    const SECRET: &[u8] = b"whsec_test_0123456789abcdef";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_721_900_000;

    #[test]
    fn a_signed_body_verifies_and_its_timestamp_is_returned() {
        let header = sign(SECRET, NOW, BODY);
        assert!(header.starts_with(&format!("t={NOW},v1=")));
        assert_eq!(header.len(), format!("t={NOW},v1=").len() + 64);
        assert_eq!(verify_signature(SECRET, Some(&header), BODY, NOW), Ok(NOW));
        // Spaces around parts and other schemes (v0) are tolerated.
        let v1 = header.split("v1=").nth(1).unwrap();
        let spaced = format!("t={NOW}, v0=deadbeef, v1={v1}");
        assert_eq!(verify_signature(SECRET, Some(&spaced), BODY, NOW), Ok(NOW));
    }

    #[test]
    fn tampered_bodies_signatures_and_secrets_do_not_verify() {
        let header = sign(SECRET, NOW, BODY);
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        assert_eq!(
            verify_signature(SECRET, Some(&header), &body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"whsec_other", Some(&header), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        // One hex digit changed; a truncated and a non-hex signature.
        let last = header.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &header[..header.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        for forged in [
            flipped,
            header[..header.len() - 2].to_owned(),
            format!("t={NOW},v1={}", "zz".repeat(32)),
        ] {
            assert_eq!(
                verify_signature(SECRET, Some(&forged), BODY, NOW),
                Err(SignatureError::Mismatch),
                "{forged}"
            );
        }
        // Another timestamp in the header than the one signed.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            verify_signature(SECRET, Some(&moved), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_edge_of_the_tolerance() {
        for (signed_at, ok) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
        ] {
            let header = sign(SECRET, signed_at, BODY);
            let expected = if ok {
                Ok(signed_at)
            } else {
                Err(SignatureError::Stale)
            };
            assert_eq!(verify_signature(SECRET, Some(&header), BODY, NOW), expected);
        }
        let header = sign(SECRET, NOW - 3600, BODY);
        assert_eq!(
            verify_signature_with_tolerance(SECRET, Some(&header), BODY, NOW, 3600),
            Ok(NOW - 3600)
        );
    }

    #[test]
    fn extreme_timestamps_neither_overflow_nor_verify() {
        let max = sign(SECRET, i64::MAX, BODY);
        let zero = sign(SECRET, 0, BODY);
        for (header, now) in [
            (&max, i64::MIN),
            (&max, 0),
            (&zero, i64::MAX),
            (&zero, i64::MIN),
        ] {
            assert_eq!(
                verify_signature(SECRET, Some(header), BODY, now),
                Err(SignatureError::Stale)
            );
        }
        assert_eq!(
            verify_signature(SECRET, Some(&max), BODY, i64::MAX),
            Ok(i64::MAX)
        );
        assert_eq!(verify_signature(SECRET, Some(&zero), BODY, 0), Ok(0));
        let v1 = "0".repeat(64);
        for malformed in [
            format!("t=9223372036854775808,v1={v1}"),
            format!("t=99999999999999999999999,v1={v1}"),
            format!("t=-5,v1={v1}"),
            format!("t=+5,v1={v1}"),
            format!("t=0{NOW},v1={v1}"),
            format!("t=,v1={v1}"),
            format!("t=1e9,v1={v1}"),
        ] {
            assert_eq!(
                verify_signature(SECRET, Some(&malformed), BODY, NOW),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let good = sign(SECRET, NOW, BODY);
        let good_v1 = good.split("v1=").nth(1).unwrap();
        let old_v1 = sign(b"whsec_old", NOW, BODY)
            .split("v1=")
            .nth(1)
            .unwrap()
            .to_owned();
        // Stripe rolling the secret: one v1 per active secret, in any order.
        for header in [
            format!("t={NOW},v1={old_v1},v1={good_v1}"),
            format!("t={NOW},v1={good_v1},v1={old_v1}"),
        ] {
            assert_eq!(verify_signature(SECRET, Some(&header), BODY, NOW), Ok(NOW));
        }
        assert_eq!(
            verify_signature(
                b"whsec_old",
                Some(&format!("t={NOW},v1={old_v1},v1={good_v1}")),
                BODY,
                NOW
            ),
            Ok(NOW)
        );
        assert_eq!(
            verify_signature(
                SECRET,
                Some(&format!("t={NOW},v1={old_v1},v1={old_v1}")),
                BODY,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        let v1 = sign(SECRET, NOW, BODY);
        let v1 = v1.split("v1=").nth(1).unwrap();
        for header in [
            None,
            Some(String::new()),
            Some("garbage".to_owned()),
            Some(format!("v1={v1}")),
            Some(format!("t={NOW}")),
            Some(format!("t={NOW},v0={v1}")),
            Some(format!("t={NOW},t={NOW},v1={v1}")),
            Some(format!("t={NOW},v1={v1},junk")),
        ] {
            assert_eq!(
                verify_signature(SECRET, header.as_deref(), BODY, NOW),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    /// Stripe's shape (API 2024-06-20): ids for related objects, `amount_received`.
    const STRIPE_SUCCEEDED: &str = r#"{
      "id": "evt_3PfP0aLkdIwHu7ix1mB0Yx3d",
      "object": "event",
      "api_version": "2024-06-20",
      "created": 1721900000,
      "data": {
        "object": {
          "id": "pi_3PfP0aLkdIwHu7ix0Yx1Qv2N",
          "object": "payment_intent",
          "amount": 4599,
          "amount_capturable": 0,
          "amount_details": {"tip": {}},
          "amount_received": 4599,
          "automatic_payment_methods": null,
          "canceled_at": null,
          "cancellation_reason": null,
          "capture_method": "automatic_async",
          "client_secret": "pi_3PfP0aLkdIwHu7ix0Yx1Qv2N_secret_W9bX2p4LkQ",
          "confirmation_method": "automatic",
          "created": 1721899990,
          "currency": "eur",
          "customer": null,
          "description": null,
          "last_payment_error": null,
          "latest_charge": "ch_3PfP0aLkdIwHu7ix0F3E6k1x",
          "livemode": false,
          "metadata": {"order_reference": "LUM-7Q2K9", "payment_id": "pay_0123456789abcdef0123456789abcdef"},
          "next_action": null,
          "payment_method": "pm_1PfP0bLkdIwHu7ixq0r1S2t3",
          "payment_method_types": ["card"],
          "status": "succeeded"
        }
      },
      "livemode": false,
      "pending_webhooks": 1,
      "request": {"id": "req_Fg5h6J7k8L9m0N", "idempotency_key": "lumi-pi-LUM-7Q2K9-1"},
      "type": "payment_intent.succeeded"
    }"#;

    /// localstripe's shape: API 2017-08-15 envelope, the latest charge inlined, no
    /// `amount_received`, no `request`.
    const LOCALSTRIPE_SUCCEEDED: &str = r#"{
      "api_version": "2017-08-15",
      "created": 1796192664,
      "data": {
        "object": {
          "amount": 1234,
          "capture_method": "automatic_async",
          "charges": {"data": [], "has_more": false, "object": "list", "total_count": 0, "url": "/v1/charges?payment_intent=pi_DKNlEC0JFIeKlY"},
          "client_secret": "pi_DKNlEC0JFIeKlY_secret_EISj5Tclw2F44G5O",
          "created": 1796192664,
          "currency": "eur",
          "customer": null,
          "id": "pi_DKNlEC0JFIeKlY",
          "invoice": null,
          "last_payment_error": null,
          "latest_charge": {
            "amount": 1234, "amount_refunded": 0, "balance_transaction": "txn_p3d0i65euqMfgi",
            "captured": true, "created": 1796192664, "currency": "eur", "customer": null,
            "description": null, "failure_code": null, "failure_message": null,
            "id": "ch_NewwiRYu4g4ifu", "invoice": null, "livemode": false, "metadata": {},
            "object": "charge", "paid": true, "payment_intent": "pi_DKNlEC0JFIeKlY",
            "payment_method": "pm_sBR5BQXtp64vgB", "receipt_email": null, "receipt_number": null,
            "refunded": false,
            "refunds": {"data": [], "has_more": false, "object": "list", "total_count": 0, "url": "/v1/charges/ch_NewwiRYu4g4ifu/refunds"},
            "statement_descriptor": null, "status": "succeeded"
          },
          "livemode": false,
          "metadata": {"order_reference": "ORD-1"},
          "next_action": null,
          "object": "payment_intent",
          "payment_method": "pm_sBR5BQXtp64vgB",
          "status": "succeeded"
        }
      },
      "id": "evt_Q0yXJ3g8fLm2Ab",
      "livemode": false,
      "object": "event",
      "type": "payment_intent.succeeded"
    }"#;

    #[test]
    fn payment_intent_succeeded_reads_in_stripe_s_and_the_emulator_s_shape() {
        let event = parse_event(STRIPE_SUCCEEDED.as_bytes()).unwrap();
        assert_eq!(event.id, "evt_3PfP0aLkdIwHu7ix1mB0Yx3d");
        assert_eq!(event.kind, "payment_intent.succeeded");
        assert_eq!(event.created, 1_721_900_000);
        assert_eq!(
            event.idempotency_key.as_deref(),
            Some("lumi-pi-LUM-7Q2K9-1")
        );
        let EventObject::PaymentIntentSucceeded(intent) = &event.object else {
            panic!("{event:?}")
        };
        assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
        assert_eq!((intent.amount, intent.received_minor()), (4599, Some(4599)));
        assert_eq!(intent.currency, "eur");
        assert_eq!(intent.order_reference(), Some("LUM-7Q2K9"));
        assert_eq!(
            intent.payment_id(),
            Some("pay_0123456789abcdef0123456789abcdef")
        );
        let charge = intent.latest_charge.as_ref().unwrap();
        assert_eq!(
            (charge.id(), charge.object()),
            ("ch_3PfP0aLkdIwHu7ix0F3E6k1x", None)
        );
        assert_eq!(
            intent.client_secret.as_ref().unwrap().expose(),
            "pi_3PfP0aLkdIwHu7ix0Yx1Qv2N_secret_W9bX2p4LkQ"
        );
        assert!(!format!("{event:?}").contains("secret_W9bX2p4LkQ"));

        let local = parse_event(LOCALSTRIPE_SUCCEEDED.as_bytes()).unwrap();
        assert_eq!(local.api_version.as_deref(), Some("2017-08-15"));
        assert_eq!(local.idempotency_key, None);
        let EventObject::PaymentIntentSucceeded(intent) = &local.object else {
            panic!()
        };
        assert_eq!(intent.amount_received, None);
        assert_eq!(intent.received_minor(), Some(1234));
        let charge = intent.latest_charge.as_ref().unwrap();
        assert_eq!(charge.id(), "ch_NewwiRYu4g4ifu");
        assert!(charge.object().unwrap().captured);
    }

    #[test]
    fn an_unknown_received_amount_is_never_the_amount_asked() {
        let mut value: serde_json::Value = serde_json::from_str(STRIPE_SUCCEEDED).unwrap();
        value["data"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("amount_received");
        let event = parse_event(value.to_string().as_bytes()).unwrap();
        let EventObject::PaymentIntentSucceeded(intent) = event.object else {
            panic!()
        };
        assert_eq!(intent.received_minor(), None);
    }

    #[test]
    fn a_failed_payment_carries_the_decline() {
        let body = r#"{"id":"evt_3Pf","object":"event","api_version":"2024-06-20","created":1721900100,
          "type":"payment_intent.payment_failed","livemode":false,"pending_webhooks":1,
          "request":{"id":"req_1","idempotency_key":"8c5f6f0e-2a8b-4a4e-9f0e-1f2d3c4b5a69"},
          "data":{"object":{"id":"pi_3Pf","object":"payment_intent","amount":4599,"amount_received":0,
            "currency":"eur","status":"requires_payment_method","latest_charge":"ch_3Pf",
            "client_secret":"pi_3Pf_secret_x","created":1721899990,"livemode":false,
            "metadata":{"order_reference":"LUM-7Q2K9","payment_id":"pay_1"},
            "last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline",
              "message":"Your card was declined.","charge":"ch_3Pf","doc_url":"https://stripe.com/docs/error-codes/card-declined",
              "payment_method":{"id":"pm_1","object":"payment_method","type":"card"}}}}}"#;
        let EventObject::PaymentIntentPaymentFailed(intent) =
            parse_event(body.as_bytes()).unwrap().object
        else {
            panic!()
        };
        assert_eq!(intent.status, PaymentIntentStatus::RequiresPaymentMethod);
        assert_eq!(intent.received_minor(), Some(0));
        let error = intent.last_payment_error.unwrap();
        assert_eq!(error.code.as_deref(), Some("card_declined"));
        assert_eq!(error.decline_code.as_deref(), Some("generic_decline"));
        assert_eq!(error.kind.as_deref(), Some("card_error"));
    }

    #[test]
    fn refunds_charges_and_disputes_are_typed() {
        let charge_refunded = r#"{"id":"evt_2","object":"event","created":1721900200,"type":"charge.refunded",
          "data":{"object":{"id":"ch_3Pf","object":"charge","amount":4599,"amount_captured":4599,
            "amount_refunded":1250,"captured":true,"refunded":false,"currency":"eur","status":"succeeded",
            "payment_intent":"pi_3Pf","metadata":{},"created":1721899995,"disputed":false}},
          "previous_attributes":{"amount_refunded":0}}"#;
        let EventObject::ChargeRefunded(charge) =
            parse_event(charge_refunded.as_bytes()).unwrap().object
        else {
            panic!()
        };
        assert_eq!(
            (charge.amount_refunded, charge.refunded, charge.refunds),
            (1250, false, None)
        );
        assert_eq!(charge.payment_intent.as_deref(), Some("pi_3Pf"));

        let refund = |kind: &str, status: &str, extra: &str| {
            format!(
                r#"{{"id":"evt_r","object":"event","created":1721900300,"type":"{kind}",
                "data":{{"object":{{"id":"re_3Pf","object":"refund","amount":1250,"currency":"eur",
                "status":"{status}","payment_intent":"pi_3Pf","charge":"ch_3Pf","reason":null,
                "metadata":{{"refund_id":"re_0a1b2c","order_reference":"LUM-7Q2K9"}},
                "created":1721900290,"balance_transaction":null{extra}}}}}}}"#
            )
        };
        let created = parse_event(refund("refund.created", "pending", "").as_bytes()).unwrap();
        let EventObject::RefundCreated(refund_object) = created.object else {
            panic!()
        };
        assert_eq!(refund_object.status, RefundStatus::Pending);
        assert_eq!(refund_object.lumi_refund_id(), Some("re_0a1b2c"));
        let failed = refund(
            "refund.updated",
            "failed",
            r#","failure_reason":"expired_or_canceled_card""#,
        );
        let EventObject::RefundUpdated(refund_object) =
            parse_event(failed.as_bytes()).unwrap().object
        else {
            panic!()
        };
        assert_eq!(refund_object.status, RefundStatus::Failed);
        assert_eq!(
            refund_object.failure_reason.as_deref(),
            Some("expired_or_canceled_card")
        );
        let odd = refund("refund.failed", "some_new_status", "");
        let EventObject::RefundFailed(refund_object) = parse_event(odd.as_bytes()).unwrap().object
        else {
            panic!()
        };
        assert_eq!(refund_object.status, RefundStatus::Unknown);

        let dispute = r#"{"id":"evt_d","object":"event","created":1721990000,"type":"charge.dispute.created",
          "data":{"object":{"id":"dp_1Pgc71","object":"dispute","amount":4599,"currency":"eur",
            "charge":"ch_3Pf","payment_intent":"pi_3Pf","reason":"fraudulent",
            "status":"needs_response","created":1721989990,"is_charge_refundable":false,
            "evidence_details":{"due_by":1722815999,"has_evidence":false,"past_due":false,"submission_count":0}}}}"#;
        let EventObject::ChargeDisputeCreated(dispute) =
            parse_event(dispute.as_bytes()).unwrap().object
        else {
            panic!()
        };
        assert_eq!(
            (dispute.charge.as_str(), dispute.payment_intent.as_deref()),
            ("ch_3Pf", Some("pi_3Pf"))
        );
        assert_eq!(
            (dispute.amount, dispute.reason.as_str()),
            (4599, "fraudulent")
        );
    }

    #[test]
    fn unknown_types_are_other_and_broken_known_objects_are_errors() {
        let other = r#"{"id":"evt_o","object":"event","created":1,"type":"customer.created",
          "data":{"object":{"id":"cus_1","object":"customer"}}}"#;
        let event = parse_event(other.as_bytes()).unwrap();
        assert_eq!(event.kind, "customer.created");
        assert!(matches!(&event.object, EventObject::Other(o) if o["id"] == "cus_1"));

        let broken = r#"{"id":"evt_b","object":"event","created":1,"type":"payment_intent.succeeded",
          "data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded"}}}"#;
        assert!(matches!(
            parse_event(broken.as_bytes()),
            Err(EventError::Object { kind, .. }) if kind == "payment_intent.succeeded"
        ));
        for envelope in [
            "",
            "[]",
            "not json",
            r#"{"id":"evt_1","type":"x","created":1}"#,
            r#"{"id":"evt_1","created":1,"data":{"object":{}}}"#,
        ] {
            assert!(
                matches!(
                    parse_event(envelope.as_bytes()),
                    Err(EventError::Envelope(_))
                ),
                "{envelope}"
            );
        }
    }
}
