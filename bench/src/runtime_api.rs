//! A minimal local AWS Lambda Runtime API (the HTTP interface a `bootstrap` polls), just enough
//! for one invocation per process.
//!
//! The benchmark arms one [`Invocation`] at a time. The first `GET .../invocation/next` after
//! arming receives its event; every later `next` (the runtime asking for more work once it has
//! answered) hangs until the process is killed, as on a frozen Lambda sandbox. The first
//! response, error or init error posted for the armed invocation is handed back with the
//! instant it arrived.

use std::{
    future,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::sync::oneshot;

/// How far in the future the invocation deadline header points, like a 30 s function timeout.
const DEADLINE: Duration = Duration::from_secs(30);

/// One invocation to hand to the next process that asks for work.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    pub function_name: String,
    pub event: Bytes,
}

/// Which endpoint the function answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalKind {
    /// `POST /2018-06-01/runtime/invocation/{id}/response`
    Response,
    /// `POST /2018-06-01/runtime/invocation/{id}/error`
    Error,
    /// `POST /2018-06-01/runtime/init/error`
    InitError,
}

/// What a function posted back, and when it got here.
#[derive(Debug)]
pub struct Arrival {
    pub at: Instant,
    pub kind: ArrivalKind,
    pub body: Bytes,
}

#[derive(Default)]
struct Slot {
    invocation: Option<Invocation>,
    served: bool,
    reply: Option<oneshot::Sender<Arrival>>,
}

/// Handle on the running server; cheap to clone.
#[derive(Clone)]
pub struct RuntimeApi {
    slot: Arc<Mutex<Slot>>,
    addr: SocketAddr,
}

impl RuntimeApi {
    /// Binds 127.0.0.1 on a free port and serves in the background for the rest of the program.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the local Runtime API to 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let api = RuntimeApi {
            slot: Arc::default(),
            addr,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(
                    |state: State<RuntimeApi>, Path(id): Path<String>, body: Bytes| {
                        record(state, Some(id), ArrivalKind::Response, body)
                    },
                ),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(
                    |state: State<RuntimeApi>, Path(id): Path<String>, body: Bytes| {
                        record(state, Some(id), ArrivalKind::Error, body)
                    },
                ),
            )
            .route(
                "/2018-06-01/runtime/init/error",
                post(|state: State<RuntimeApi>, body: Bytes| {
                    record(state, None, ArrivalKind::InitError, body)
                }),
            )
            .with_state(api.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("lumi-bench: local Runtime API stopped: {err}");
            }
        });
        Ok(api)
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `invocation` for the next `next` call; the receiver yields the first answer to it.
    pub fn arm(&self, invocation: Invocation) -> oneshot::Receiver<Arrival> {
        let (tx, rx) = oneshot::channel();
        *self.lock() = Slot {
            invocation: Some(invocation),
            served: false,
            reply: Some(tx),
        };
        rx
    }

    /// Forgets the armed invocation, so nothing a dying process sends is taken for the next run.
    pub fn disarm(&self) {
        *self.lock() = Slot::default();
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds plain data: a panic elsewhere cannot leave it half-updated.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /2018-06-01/runtime/invocation/next`
async fn next(State(api): State<RuntimeApi>) -> Response {
    let handed_out = {
        let mut slot = api.lock();
        match (&slot.invocation, slot.served) {
            (Some(invocation), false) => {
                let reply = event_response(invocation);
                slot.served = true;
                Some(reply)
            }
            _ => None,
        }
    };
    match handed_out {
        Some(Ok(response)) => response,
        Some(Err(err)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("lumi-bench: {err}"),
        )
            .into_response(),
        // Nothing more to do for this process: wait, like a frozen sandbox, until it is killed
        // (the connection then closes and hyper drops this future).
        None => future::pending().await,
    }
}

fn event_response(invocation: &Invocation) -> Result<Response> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let deadline_ms = (now + DEADLINE).as_millis();
    let arn = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}",
        invocation.function_name
    );
    // X-Ray format: Root=1-<epoch seconds, 8 hex>-<24 hex>; the request id gives the 24 hex.
    let unique: String = invocation
        .request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let trace_id = format!(
        "Root=1-{:08x}-{:0>24.24};Parent={:0>16.16};Sampled=0",
        now.as_secs(),
        unique,
        unique
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
        .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", arn)
        .header("Lambda-Runtime-Trace-Id", trace_id)
        .body(Body::from(invocation.event.clone()))?)
}

/// The three POST endpoints: note the first answer to the armed invocation, always say 202.
async fn record(
    State(api): State<RuntimeApi>,
    id: Option<String>,
    kind: ArrivalKind,
    body: Bytes,
) -> impl IntoResponse {
    let at = Instant::now();
    let reply = {
        let mut slot = api.lock();
        let for_armed = match (&slot.invocation, &id) {
            (Some(invocation), Some(id)) => invocation.request_id == *id,
            (Some(_), None) => true, // init error: whoever is starting up is the armed one
            (None, _) => false,
        };
        if for_armed { slot.reply.take() } else { None }
    };
    if let Some(reply) = reply {
        // The receiver is gone only if the run already gave up (timeout): nothing to tell.
        let _ = reply.send(Arrival { at, kind, body });
    }
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"OK"}"#,
    )
}
