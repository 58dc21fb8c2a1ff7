//! The local AWS stack, built from `template.yaml` so local and deployed stacks cannot drift:
//!
//! - [`moto`]: starts `infra/moto_server.py` (moto behind one lock) on a free loopback port.
//! - [`template`]: reads the template's resources, conditions, functions, routes, environment
//!   and outputs.
//! - [`stack`]: creates every table, queue, bucket and secret the template declares, under a
//!   name prefix (one per test), and resolves each function's environment against them.
//! - [`functions`]: the registry of function binaries and their routers.
//! - [`poller`]: the local SQS event source (and the dead-letter redrive).
//! - [`schedule`]: the local EventBridge schedules (`rate()` and `cron()`), run by `make dev`.
//! - [`seed`]: the demo accounts `make dev` creates.
//! - [`openapi`]: the OpenAPI document (`docs/openapi.yaml`), from every function's handlers.
//! - [`schema`]: `lumi schema status`, the live tables, queues and buckets against the template.
//! - [`recovery`]: disaster recovery, `lumi backup restore` and `lumi backup adopt`: tables
//!   restored under new names and made to match the template, for a deploy that uses them.
//! - [`emf`]: the local CloudWatch Logs: EMF lines printed and published as CloudWatch metrics.
//! - [`gateway`]: the local API Gateway: every HttpApi route of the template, served by the
//!   router of the function that owns it, with an API Gateway-like request context, and the
//!   API reference at `/docs` ([`api_docs`]).

pub mod api_docs;
pub mod emf;
pub mod functions;
pub mod gateway;
pub mod moto;
pub mod openapi;
pub mod poller;
pub mod recovery;
pub mod schedule;
pub mod schema;
pub mod seed;
pub mod stack;
pub mod stripe_server;
pub mod template;

use std::path::PathBuf;

/// The workspace root (where `template.yaml` is), found from this crate's location at build time
/// or from `LUMI_ROOT`.
pub fn workspace_root() -> PathBuf {
    if let Ok(root) = std::env::var("LUMI_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
