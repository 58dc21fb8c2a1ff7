//! The readiness report: every dependency checked concurrently, each under its own timeout.

use std::{collections::BTreeMap, future::Future};

use lumi_shared::Platform;
use serde::Serialize;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = ReadinessCheck)]
pub struct Check {
    pub ok: bool,
    pub latency_ms: u64,
    /// A generic reason (`unavailable`, `timeout`, `not_active`, `invalid`): the caller may be
    /// anyone, and an AWS error names ARNs, accounts and roles. The detail is in the log.
    #[schema(value_type = Option<String>, example = "timeout")]
    pub error: Option<&'static str>,
}

/// Why a probe failed: the generic reason for the answer, the detail for the log.
struct Failure {
    reason: &'static str,
    detail: String,
}

impl Failure {
    fn new(reason: &'static str, detail: impl ToString) -> Self {
        Self {
            reason,
            detail: detail.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Readiness)]
pub struct Report {
    pub ok: bool,
    /// `ready`, `not_ready` (a check failed) or `starting` (start-up has not completed).
    #[schema(value_type = String, pattern = "^(ready|not_ready|starting)$")]
    pub status: &'static str,
    /// The names of the failed checks, for the operator reading a 503.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    pub checks: BTreeMap<String, Check>,
    /// With a 503: the request id to quote.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
}

/// Runs `probe` until `deadline`; a timeout is a failed check like any other. A failure's
/// detail is logged under the check's name.
async fn timed<F>(name: &str, deadline: Instant, probe: F) -> Check
where
    F: Future<Output = Result<(), Failure>>,
{
    let started = Instant::now();
    let limit = deadline.saturating_duration_since(started);
    let outcome = tokio::time::timeout_at(deadline, probe).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(())) => Check {
            ok: true,
            latency_ms,
            error: None,
        },
        Ok(Err(failure)) => {
            tracing::warn!(check = name, reason = failure.reason, detail = %failure.detail, "readiness check failed");
            Check {
                ok: false,
                latency_ms,
                error: Some(failure.reason),
            }
        }
        Err(_) => {
            tracing::warn!(
                check = name,
                limit_ms = limit.as_millis() as u64,
                "readiness check timed out"
            );
            Check {
                ok: false,
                latency_ms,
                error: Some("timeout"),
            }
        }
    }
}

/// The report, each check under `HEALTH_CHECK_TIMEOUT_MS` from now.
pub async fn check(platform: &Platform) -> Report {
    check_by(
        platform,
        Instant::now() + platform.config.health_check_timeout,
    )
    .await
}

/// The report, every check finished (or failed) by `deadline`.
pub async fn check_by(platform: &Platform, deadline: Instant) -> Report {
    if !platform.is_started() {
        return Report {
            ok: false,
            status: "starting",
            failed: vec!["startup".into()],
            checks: BTreeMap::new(),
            request_id: None,
        };
    }
    let tables = platform.config.tables.all();
    let table_checks = tables.iter().map(|(logical, physical)| async move {
        let name = format!("dynamodb:{logical}");
        let check = timed(&name, deadline, async {
            match platform.db.describe_table(physical).await {
                Ok(status) if status == "ACTIVE" => Ok(()),
                Ok(status) => Err(Failure::new(
                    "not_active",
                    format!("table {physical} is {status}"),
                )),
                Err(error) => Err(Failure::new("unavailable", error)),
            }
        })
        .await;
        (name, check)
    });
    let secret_check = async {
        let name = "secretsmanager:ConfigSecret".to_owned();
        let check = timed(&name, deadline, async {
            platform.secrets.refresh().await.map(drop).map_err(|e| {
                let reason = if matches!(e, lumi_shared::secrets::SecretsError::Invalid(_)) {
                    "invalid"
                } else {
                    "unavailable"
                };
                Failure::new(reason, e)
            })
        })
        .await;
        (name, check)
    };
    let (mut checks, secret) = tokio::join!(futures::future::join_all(table_checks), secret_check);
    checks.push(secret);

    let checks: BTreeMap<String, Check> = checks.into_iter().collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(name, _)| name.clone())
        .collect();
    Report {
        ok: failed.is_empty(),
        status: if failed.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        failed,
        checks,
        request_id: None,
    }
}
