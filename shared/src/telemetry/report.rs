//! Error reporting to a Sentry-compatible service (the runbook's "integrate Sentry DSN via DB
//! setting or env for error alerting").
//!
//! The DSN comes from the runtime settings (`errorReportingDsn`, so an operator can turn it on,
//! move it or turn it off without a redeploy), else from `ERROR_REPORTING_DSN`; neither means no
//! reporting. The setting is stored sealed (it carries the reporter's key) and opened here, the
//! one place that uses it ([`configured_dsn`]); people see it masked ([`mask_dsn`]).
//!
//! What is reported, each once, through [`report`], the one way in: every internal error of a
//! request (a 500, sent by the HTTP edge, tagged with the request id and route), every failed
//! record of a queue-fed function (tagged with the SQS message id) and every failed job of a
//! scheduled one (tagged with the EventBridge event id); always with the function and stage, the
//! error (redacted like a log line, e-mail addresses masked) as the message. Callers pass what
//! failed, never a message body or item contents. A report is awaited within
//! [`REPORT_DEADLINE`], because a Lambda container may be frozen right after it answers and a
//! background task would be lost; a reporter that is down or slow costs at most that deadline
//! and never changes the outcome (a failed report is only logged).
//!
//! The HTTPS client is built on the first report, not at cold start: most containers never
//! report anything and should not pay for loading the trust store.

use std::{sync::OnceLock, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};

/// How long a report may hold up what carries the error (the response, the batch, the job),
/// finding the DSN included.
pub const REPORT_DEADLINE: Duration = Duration::from_secs(2);

/// A parsed DSN: `{scheme}://{public_key}@{host}[:port]/[{path}/]{project_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub public_key: String,
    /// Where envelopes go: `{scheme}://{host}[:port]/[{path}/]api/{project_id}/envelope/`.
    pub envelope_url: String,
    pub project_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a DSN ({0}); expected https://<public key>@<host>/<project id>")]
pub struct DsnError(&'static str);

impl Dsn {
    pub fn parse(text: &str) -> Result<Self, DsnError> {
        let (scheme, rest) = text.split_once("://").ok_or(DsnError("no scheme"))?;
        if scheme != "https" && scheme != "http" {
            return Err(DsnError("the scheme must be https or http"));
        }
        let (credentials, location) = rest.split_once('@').ok_or(DsnError("no public key"))?;
        let public_key = credentials.split(':').next().unwrap_or_default();
        if public_key.is_empty() || !public_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(DsnError("the public key must be letters and digits"));
        }
        let (host, path) = location.split_once('/').ok_or(DsnError("no project id"))?;
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !host_ok {
            return Err(DsnError("the host is not a host name"));
        }
        let path = path.trim_end_matches('/');
        let (prefix, project_id) = match path.rsplit_once('/') {
            Some((prefix, id)) => (format!("/{prefix}"), id),
            None => (String::new(), path),
        };
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DsnError("the project id must be a number"));
        }
        Ok(Self {
            public_key: public_key.to_owned(),
            envelope_url: format!("{scheme}://{host}{prefix}/api/{project_id}/envelope/"),
            project_id: project_id.to_owned(),
        })
    }
}

/// The DSN with its credentials (public key, and the secret key of old DSNs) hidden:
/// `https://****@o1.ingest.sentry.io/7`; host and project stay, so an operator can tell which
/// project it is. `""` (reporting off) stays `""`.
pub fn mask_dsn(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    match (text.split_once("://"), text.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, location))) => format!("{scheme}://****@{location}"),
        _ => "****".into(),
    }
}

/// Where this container's internal errors go: the runtime setting `errorReportingDsn`, opened
/// with the config secret's keys (the empty string: nowhere), else `ERROR_REPORTING_DSN`. A
/// setting that cannot be opened (its key dropped from the secret, Secrets Manager down) or is no
/// DSN is logged, and the environment's DSN is used meanwhile: errors still reach someone.
pub async fn configured_dsn(platform: &crate::Platform) -> Option<Dsn> {
    use secrecy::ExposeSecret as _;
    let settings = platform.settings.get().await;
    let fallback = || platform.config.error_reporting_dsn.clone();
    let Some(value) = settings.error_reporting_dsn.as_ref() else {
        return fallback();
    };
    let secrets = match crate::settings::secrets_for(&platform.secrets, &settings).await {
        Ok(secrets) => secrets,
        Err(error) => {
            tracing::warn!(%error, "errorReportingDsn cannot be opened; using the environment's");
            return fallback();
        }
    };
    let text = match value.reveal(
        &secrets.config_encryption_key,
        crate::settings::ERROR_REPORTING_DSN,
    ) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(%error, "errorReportingDsn cannot be opened; using the environment's");
            return fallback();
        }
    };
    if text.expose_secret().is_empty() {
        return None;
    }
    match Dsn::parse(text.expose_secret()) {
        Ok(dsn) => Some(dsn),
        Err(error) => {
            tracing::warn!(%error, "errorReportingDsn is unusable; using the environment's");
            fallback()
        }
    }
}

/// The id of what failed, tagged by its kind.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// An HTTP request: its request id.
    Request(&'a str),
    /// A queue message (SQS): its message id.
    Message(&'a str),
    /// An event-fed invocation (an EventBridge schedule): the event's id.
    Event(&'a str),
}

impl Source<'_> {
    fn tag(&self) -> (&'static str, &str) {
        match self {
            Self::Request(id) => ("request_id", id),
            Self::Message(id) => ("message_id", id),
            Self::Event(id) => ("event_id", id),
        }
    }
}

/// What is known of one failure.
#[derive(Debug, Clone)]
pub struct ErrorEvent<'a> {
    /// The error, with no message body or item contents (e-mail addresses are masked anyway).
    pub message: &'a str,
    pub source: Source<'a>,
    pub function: &'a str,
    /// A request's route (`GET /api/v1/...`), or what a function was doing (`refund-email
    /// record`, `backup job restore-check`).
    pub route: &'a str,
    pub stage: &'a str,
}

/// Sends `event` to the configured reporter ([`configured_dsn`]), if any, within
/// [`REPORT_DEADLINE`] in all. Never fails: a report not sent is logged, and nothing else
/// changes. `true` when the reporter took it.
pub async fn report(platform: &crate::Platform, event: &ErrorEvent<'_>) -> bool {
    let attempt = async {
        let Some(dsn) = configured_dsn(platform).await else {
            return Ok(false);
        };
        send(&dsn, event).await.map(|()| true)
    };
    let (tag, id) = event.source.tag();
    // Boxed: the HTTPS exchange's future is large, and a report sits inside every caller's.
    match tokio::time::timeout(REPORT_DEADLINE, Box::pin(attempt)).await {
        Ok(Ok(sent)) => {
            if sent {
                tracing::info!(source = tag, id, "error reported");
            }
            sent
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, source = tag, id, "error report not sent");
            false
        }
        Err(_) => {
            tracing::warn!(source = tag, id, deadline = ?REPORT_DEADLINE, "error report not sent in time");
            false
        }
    }
}

/// `text` with every e-mail address (`local@domain.tld`) replaced by `[email]`: an error from
/// a mail service may quote the recipient.
pub fn mask_emails(text: &str) -> String {
    let is_part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let local_start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_part(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let domain_len = rest[at + 1..]
            .char_indices()
            .take_while(|(_, c)| is_part(*c))
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        let domain = rest[at + 1..at + 1 + domain_len].trim_end_matches('.');
        if local_start < at && domain.contains('.') {
            out.push_str(&rest[..local_start]);
            out.push_str("[email]");
            rest = &rest[at + 1 + domain.len()..];
        } else {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The envelope for one event: header line, item header line, event line.
pub fn envelope(dsn: &Dsn, event: &ErrorEvent<'_>, now: time::OffsetDateTime) -> String {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let timestamp = now.unix_timestamp_nanos() as f64 / 1e9;
    let mut message = Value::String(mask_emails(event.message));
    super::log::redact(&mut message);
    let (id_tag, id) = event.source.tag();
    let body = json!({
        "event_id": event_id,
        "timestamp": timestamp,
        "platform": "native",
        "level": "error",
        "logger": "lumi",
        "server_name": event.function,
        "environment": event.stage,
        "release": concat!("lumi@", env!("CARGO_PKG_VERSION")),
        "transaction": event.route,
        "message": { "formatted": message },
        "tags": {
            id_tag: id,
            "function": event.function,
            "route": event.route,
        },
    })
    .to_string();
    let header = json!({ "event_id": event_id, "dsn_project": dsn.project_id });
    let item = json!({ "type": "event", "length": body.len() });
    format!("{header}\n{item}\n{body}\n")
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

fn client() -> Result<&'static HttpsClient, std::io::Error> {
    static CLIENT: OnceLock<HttpsClient> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build(connector)))
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no HTTPS client: {0}")]
    Client(#[from] std::io::Error),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    #[error("send failed: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("the reporter answered {0}")]
    Status(http::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends one event; the caller decides what a failure means (it is only ever logged).
pub async fn send(dsn: &Dsn, event: &ErrorEvent<'_>) -> Result<(), ReportError> {
    let body = envelope(dsn, event, time::OffsetDateTime::now_utc());
    let auth = format!(
        "Sentry sentry_version=7, sentry_key={}, sentry_client=lumi/{}",
        dsn.public_key,
        env!("CARGO_PKG_VERSION")
    );
    let request = http::Request::post(&dsn.envelope_url)
        .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
        .header("x-sentry-auth", auth)
        .body(Full::new(bytes::Bytes::from(body)))?;
    let client = client()?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        // Read the (small) answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(ReportError::Status(status))
        }
    };
    tokio::time::timeout(REPORT_DEADLINE, exchange)
        .await
        .map_err(|_| ReportError::Timeout(REPORT_DEADLINE))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_into_their_envelope_address() {
        let dsn = Dsn::parse("https://abc123@o42.ingest.sentry.io/4505").unwrap();
        assert_eq!(dsn.public_key, "abc123");
        assert_eq!(
            dsn.envelope_url,
            "https://o42.ingest.sentry.io/api/4505/envelope/"
        );
        let dsn = Dsn::parse("http://key:secret@127.0.0.1:9000/sentry/7").unwrap();
        assert_eq!(
            dsn.envelope_url,
            "http://127.0.0.1:9000/sentry/api/7/envelope/"
        );
        for bad in [
            "",
            "o42.ingest.sentry.io/1",
            "ftp://k@h/1",
            "https://h/1",
            "https://k@h/",
            "https://k@h/abc",
            "https://k@/1",
            "https://k@h h/1",
        ] {
            assert!(Dsn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_hide_the_keys_and_keep_the_project() {
        assert_eq!(
            mask_dsn("https://abc123@o42.ingest.sentry.io/4505"),
            "https://****@o42.ingest.sentry.io/4505"
        );
        assert_eq!(
            mask_dsn("http://key:secret@127.0.0.1:9000/sentry/7"),
            "http://****@127.0.0.1:9000/sentry/7"
        );
        assert_eq!(mask_dsn(""), "");
        assert_eq!(mask_dsn("no-dsn-at-all"), "****");
    }

    #[test]
    fn envelopes_carry_the_request_and_no_secrets() {
        let dsn = Dsn::parse("https://k@h/1").unwrap();
        let event = ErrorEvent {
            message: "decode failed: Authorization: Bearer eyJsecret.token",
            source: Source::Request("req-9"),
            function: "admin",
            route: "GET /api/v1/admin/orders/{reference}",
            stage: "prod",
        };
        let text = envelope(&dsn, &event, time::OffsetDateTime::UNIX_EPOCH);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["type"], "event");
        assert_eq!(
            lines[1]["length"].as_u64().unwrap() as usize,
            text.lines().nth(2).unwrap().len()
        );
        assert_eq!(lines[2]["tags"]["request_id"], "req-9");
        assert_eq!(lines[2]["event_id"], lines[0]["event_id"]);
        assert!(!text.contains("eyJsecret"), "{text}");
    }

    #[test]
    fn jobs_are_tagged_with_their_message_or_event_and_emails_are_masked() {
        let dsn = Dsn::parse("https://k@h/1").unwrap();
        let event = ErrorEvent {
            message: "MessageRejected: Email address is not verified: yuki.t+1@example.co.jp.",
            source: Source::Message("m-1"),
            function: "refund-email",
            route: "refund-email record",
            stage: "prod",
        };
        let text = envelope(&dsn, &event, time::OffsetDateTime::UNIX_EPOCH);
        let body: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!(body["tags"]["message_id"], "m-1");
        assert!(body["tags"].get("request_id").is_none());
        assert_eq!(
            body["message"]["formatted"],
            "MessageRejected: Email address is not verified: [email]."
        );
        assert_eq!(mask_emails("a@b c@d.e @x.y z@"), "a@b [email] @x.y z@");
    }
}
