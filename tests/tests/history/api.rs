//! The real system as the history sees it: HTTP calls through the local gateway (customers,
//! admin, the payment provider's signed webhooks), and the few reads the admin API does not
//! offer (reservations, delivery records, the payment projection) straight from the table.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use lumi_shared::clock::{Clock as _, ManualClock};
use lumi_tests::{TestApp, unique_prefix};
use reqwest::Method;
use serde_json::{Value, json};

/// An answer: status, whether it is an idempotent replay, and the body (problem+json for errors).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub body: Value,
}

impl Reply {
    /// What a payment route said it did, as the model names it.
    pub fn payment_detail(&self) -> String {
        if let Some(outcome) = self.body["outcome"].as_str() {
            return outcome.to_owned();
        }
        match self.body["applied"].as_bool() {
            Some(true) => "applied".into(),
            Some(false) => "not_applied".into(),
            None => String::new(),
        }
    }
}

/// A refund at Stripe: (id, amount, status, the Lumi refund record it was made for).
pub type StripeRefund = (String, i64, String, String);

#[derive(Debug, Clone)]
pub struct Customer {
    pub token: String,
    pub user_id: String,
    pub email: String,
    pub online: bool,
}

/// A history's own catalog: products and their variants (SKUs sort in index order).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub products: Vec<String>,
    pub skus: Vec<String>,
    pub prices: Vec<i64>,
    pub initial: Vec<i64>,
    pub product_of: Vec<usize>,
}

pub struct Api<'a> {
    pub app: &'a TestApp,
    pub admin: String,
    secret: String,
    /// The functions' clock.
    pub clock: ManualClock,
}

impl<'a> Api<'a> {
    pub async fn new(app: &'a TestApp, clock: ManualClock) -> Self {
        let admin = app.signed_in_admin().await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let secrets: Value = serde_json::from_str(&app.secret_json().await).unwrap();
        let secret = secrets["payment_webhook_secrets"]["stripe"]
            .as_str()
            .unwrap_or_else(|| panic!("no stripe webhook key in {secrets}"))
            .to_owned();
        Self {
            app,
            admin,
            secret,
            clock,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotency-replayed")
            .is_some_and(|v| v == "true");
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            replayed,
            body,
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(token);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    pub async fn as_customer(
        &self,
        customer: &Customer,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send(self.request(method, path, &customer.token, key, body))
            .await
    }

    pub async fn as_admin(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send(self.request(method, path, &self.admin, key, body))
            .await
    }

    /// A refund request's body exactly as sent (the idempotency hash covers these bytes).
    pub fn refund_body(lines: &[(u32, i64, super::model::RestockType)]) -> String {
        json!({
            "lines": lines
                .iter()
                .map(|(line, quantity, restock)| {
                    json!({ "line": line, "quantity": quantity, "restock_type": restock.as_str() })
                })
                .collect::<Vec<_>>(),
            "reason": "history check",
        })
        .to_string()
    }

    pub async fn refund(&self, reference: &str, key: &str, body: &str) -> Reply {
        let request = self
            .app
            .http
            .post(
                self.app
                    .url(&format!("/api/v1/admin/orders/{reference}/refund")),
            )
            .bearer_auth(&self.admin)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(request).await
    }

    /// A Stripe event, signed (`Stripe-Signature`) with the stack's endpoint secret at the
    /// functions' time.
    pub async fn webhook(&self, event: &Value) -> Reply {
        let body = event.to_string();
        let now = self.clock.now_us() / 1_000_000;
        let signature = lumi_commerce::stripe::sign(self.secret.as_bytes(), now, body.as_bytes());
        let request = self
            .app
            .http
            .post(self.app.url("/api/v1/payments/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body);
        self.send(request).await
    }

    /// The customer pays PaymentIntent `intent` with a card that works, at localstripe (as
    /// Stripe.js would: a PaymentMethod, set on the intent, confirmed), so that Stripe holds
    /// the money Lumi's refunds give back. Errors (an intent paid already) are ignored: the
    /// history's forged `payment_intent.succeeded` is what Lumi acts on.
    pub async fn pay_at_stripe(&self, intent: &str) {
        use lumi_commerce::stripe::Form;
        let stripe = self
            .app
            .stripe
            .as_ref()
            .expect("built with online_payments()");
        let client = stripe.client().expect("a localstripe client");
        let Ok(method) = client
            .post::<Value>(
                "/v1/payment_methods",
                &Form::new()
                    .with("type", "card")
                    .with("card[number]", "4242424242424242")
                    .with("card[exp_month]", "12")
                    .with("card[exp_year]", "2030")
                    .with("card[cvc]", "123"),
                None,
            )
            .await
        else {
            return;
        };
        let Some(method) = method["id"].as_str() else {
            return;
        };
        let set = client
            .post::<Value>(
                &format!("/v1/payment_intents/{intent}"),
                &Form::new().with("payment_method", method),
                None,
            )
            .await;
        if set.is_ok() {
            let _ = client
                .post::<Value>(
                    &format!("/v1/payment_intents/{intent}/confirm"),
                    &Form::new(),
                    None,
                )
                .await;
        }
    }

    /// The refunds localstripe holds for PaymentIntent `intent`: (id, amount, status, the
    /// Lumi refund record it was made for); an error when it cannot list them (localstripe
    /// answers 500 for an intent never charged).
    pub async fn stripe_refunds(&self, intent: &str) -> Result<Vec<StripeRefund>, String> {
        let stripe = self
            .app
            .stripe
            .as_ref()
            .expect("built with online_payments()");
        let client = stripe.client().map_err(|e| e.to_string())?;
        let listed: Value = client
            .get(&format!("/v1/refunds?payment_intent={intent}&limit=100"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(listed["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_owned(),
                    r["amount"].as_i64().unwrap_or_default(),
                    r["status"].as_str().unwrap_or_default().to_owned(),
                    r["metadata"]["refund_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect())
    }

    /// One order as the admin sees it.
    pub async fn order(&self, reference: &str) -> Value {
        let reply = self
            .as_admin(
                Method::GET,
                &format!("/api/v1/admin/orders/{reference}"),
                None,
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "GET order {reference}: {}", reply.body);
        reply.body
    }

    /// Every order of `users`, through the admin listing (paged).
    pub async fn orders_of(&self, users: &BTreeSet<String>) -> Vec<Value> {
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/api/v1/admin/orders?limit=50".to_owned();
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let reply = self.as_admin(Method::GET, &path, None, None).await;
            assert_eq!(reply.status, 200, "listing orders: {}", reply.body);
            for order in reply.body["orders"].as_array().unwrap() {
                if users.contains(order["user_id"].as_str().unwrap()) {
                    orders.push(order.clone());
                }
            }
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return orders,
            }
        }
    }

    /// A variant's counters and every ledger movement (paged): (stock, available, active, movements).
    pub async fn ledger(&self, sku: &str) -> (i64, i64, bool, Vec<Value>) {
        let mut movements = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/admin/variants/{sku}/ledger?limit=200");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let reply = self.as_admin(Method::GET, &path, None, None).await;
            assert_eq!(reply.status, 200, "ledger of {sku}: {}", reply.body);
            movements.extend(reply.body["movements"].as_array().unwrap().iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => {
                    return (
                        reply.body["stock"].as_i64().unwrap(),
                        reply.body["available"].as_i64().unwrap(),
                        reply.body["active"].as_bool().unwrap(),
                        movements,
                    );
                }
            }
        }
    }

    /// Audit events of `order:<reference>` (every page).
    pub async fn audit(&self, reference: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/api/v1/admin/audit-logs?limit=200&target={}",
                encode(&format!("order:{reference}"))
            );
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let reply = self.as_admin(Method::GET, &path, None, None).await;
            assert_eq!(reply.status, 200, "audit of {reference}: {}", reply.body);
            events.extend(reply.body["events"].as_array().unwrap().iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return events,
            }
        }
    }

    /// Inventory mismatches the admin report finds (every page), by SKU.
    pub async fn mismatches(&self) -> Vec<Value> {
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/api/v1/admin/inventory/mismatches?limit=100".to_owned();
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let reply = self.as_admin(Method::GET, &path, None, None).await;
            assert_eq!(reply.status, 200, "mismatches: {}", reply.body);
            found.extend(reply.body["mismatches"].as_array().unwrap().iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return found,
            }
        }
    }

    fn table(&self) -> String {
        self.app.resource("AppTable")
    }

    /// Units held by cart lines of `sku` (lapsed ones included: they hold until swept).
    pub async fn reserved(&self, sku: &str) -> i64 {
        let mut reserved = 0;
        let mut start = None;
        loop {
            let page = self
                .app
                .dynamodb()
                .query()
                .table_name(self.table())
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :r")
                .expression_attribute_values(":r", AttributeValue::S(format!("RESERVATION#{sku}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in page.items() {
                reserved += number(item.get("quantity"));
            }
            match page.last_evaluated_key() {
                Some(last) => start = Some(last.clone()),
                None => return reserved,
            }
        }
    }

    /// An item of the table by key, if it exists.
    pub async fn item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.app
            .dynamodb()
            .get_item()
            .table_name(self.table())
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    /// Outbox messages not sent yet.
    pub async fn outbox_left(&self) -> usize {
        self.app
            .dynamodb()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :o")
            .expression_attribute_values(":o", AttributeValue::S("OUTBOX".into()))
            .send()
            .await
            .unwrap()
            .items()
            .len()
    }

    /// A variant's counters as stored: (stock, available, active).
    pub async fn variant(&self, sku: &str) -> (i64, i64, bool) {
        let item = self
            .item(&format!("VARIANT#{sku}"), "VARIANT")
            .await
            .unwrap_or_else(|| panic!("no variant {sku}"));
        let active = item
            .get("active")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        (
            number(item.get("stock")),
            number(item.get("available")),
            active,
        )
    }

    /// A catalog of this history's own: per product, its variants' (price, stock); made
    /// through the admin API (each variant's first stock is its `initial` movement).
    pub async fn catalog(&self, layout: &[&[(i64, i64)]]) -> Catalog {
        let prefix = unique_prefix();
        let mut catalog = Catalog {
            products: Vec::new(),
            skus: Vec::new(),
            prices: Vec::new(),
            initial: Vec::new(),
            product_of: Vec::new(),
        };
        for (p, variants) in layout.iter().enumerate() {
            let id = format!("{prefix}-p{p}");
            let mut body = Vec::new();
            for (price, stock) in *variants {
                let sku = format!("{prefix}-V{}", catalog.skus.len());
                body.push(json!({
                    "sku": sku, "name": format!("Variant {sku}"), "price_minor": price,
                    "currency": "EUR", "stock": stock,
                }));
                catalog.skus.push(sku);
                catalog.prices.push(*price);
                catalog.initial.push(*stock);
                catalog.product_of.push(p);
            }
            let reply = self
                .as_admin(
                    Method::POST,
                    "/api/v1/admin/products",
                    None,
                    Some(&json!({ "id": id, "name": format!("History {id}"), "variants": body })),
                )
                .await;
            assert_eq!(reply.status, 201, "creating {id}: {}", reply.body);
            catalog.products.push(id);
        }
        assert!(
            catalog.skus.len() <= 10,
            "SKU order must be index order (one digit)"
        );
        catalog
    }

    /// Customers of this history's own: `online` paid through Stripe and `manual` paid by
    /// hand, as the rollout percentage of `settings` buckets them.
    pub async fn customers(
        &self,
        settings: &lumi_shared::settings::SystemSettings,
        online: usize,
        manual: usize,
    ) -> Vec<Customer> {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            if on.len() >= online && off.len() >= manual {
                break;
            }
            let tokens = self.app.quick_customer().await;
            let customer = Customer {
                token: tokens["access_token"].as_str().unwrap().to_owned(),
                user_id: tokens["user"]["id"].as_str().unwrap().to_owned(),
                email: tokens["user"]["email"].as_str().unwrap().to_owned(),
                online: false,
            };
            if settings.feature_flags.order_payments_for(&customer.user_id) {
                if on.len() < online {
                    on.push(Customer {
                        online: true,
                        ..customer
                    });
                }
            } else if off.len() < manual {
                off.push(customer);
            }
        }
        assert_eq!(
            (on.len(), off.len()),
            (online, manual),
            "the rollout buckets customers"
        );
        on.extend(off);
        on
    }
}

/// A query parameter's value, percent-encoded (cursors hold `#`, targets `:`).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn number(value: Option<&AttributeValue>) -> i64 {
    value
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn string(value: Option<&AttributeValue>) -> String {
    value
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}
