//! The readiness report: every dependency checked concurrently, each under its own timeout.

use std::{collections::BTreeMap, future::Future, time::Duration};

use lumi_shared::Platform;
use serde::Serialize;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub ok: bool,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub ok: bool,
    /// `ready`, `not_ready` (a check failed) or `starting` (start-up has not completed).
    pub status: &'static str,
    /// The names of the failed checks, for the operator reading a 503.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    pub checks: BTreeMap<String, Check>,
}

/// Runs `probe` under `limit`; a timeout is a failed check like any other.
async fn timed<F>(limit: Duration, probe: F) -> Check
where
    F: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, probe).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(())) => Check {
            ok: true,
            latency_ms,
            error: None,
        },
        Ok(Err(error)) => Check {
            ok: false,
            latency_ms,
            error: Some(error),
        },
        Err(_) => Check {
            ok: false,
            latency_ms,
            error: Some(format!("no answer within {} ms", limit.as_millis())),
        },
    }
}

pub async fn check(platform: &Platform) -> Report {
    if !platform.is_started() {
        return Report {
            ok: false,
            status: "starting",
            failed: vec!["startup".into()],
            checks: BTreeMap::new(),
        };
    }
    let limit = platform.config.health_check_timeout;
    let tables = platform.config.tables.all();
    let table_checks = tables.iter().map(|(logical, physical)| async move {
        let check = timed(limit, async {
            match platform.db.describe_table(physical).await {
                Ok(status) if status == "ACTIVE" => Ok(()),
                Ok(status) => Err(format!("table {physical} is {status}")),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
        (format!("dynamodb:{logical}"), check)
    });
    let secret_check = async {
        let check = timed(limit, async {
            platform
                .secrets
                .refresh()
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        ("secretsmanager:ConfigSecret".to_owned(), check)
    };
    let (mut checks, secret) = tokio::join!(futures::future::join_all(table_checks), secret_check);
    checks.push(secret);

    let checks: BTreeMap<String, Check> = checks.into_iter().collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(name, _)| name.clone())
        .collect();
    for name in &failed {
        tracing::warn!(check = %name, error = ?checks[name].error, "readiness check failed");
    }
    Report {
        ok: failed.is_empty(),
        status: if failed.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        failed,
        checks,
    }
}
