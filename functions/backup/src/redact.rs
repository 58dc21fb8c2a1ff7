//! The configuration export of every backup run: the runtime settings (sensitive ones masked),
//! the function configuration, and the config secret's shape, with every secret value replaced
//! by a fingerprint (`sha256:` and 16 hex digits of its hash). An operator can tell whether a key
//! changed between two runs, and which keys existed, without the backup ever holding a secret.

use serde_json::{Map, Value, json};

use lumi_shared::{secrets::ConfigKeys, settings::sealed::key_id};

use crate::{JobError, Jobs, archive::sha256_hex};

pub fn fingerprint(value: &str) -> String {
    format!("sha256:{}", &sha256_hex(value.as_bytes())[..16])
}

/// Every leaf of `value` replaced by its fingerprint; keys and structure stay.
pub fn fingerprint_leaves(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fingerprint_leaves(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(fingerprint_leaves).collect()),
        Value::Null => Value::Null,
        Value::String(text) => Value::String(fingerprint(text)),
        other => Value::String(fingerprint(&other.to_string())),
    }
}

pub async fn config_export(jobs: &Jobs, keys: &ConfigKeys) -> Result<Value, JobError> {
    let platform = &jobs.platform;
    let config = &platform.config;
    let (settings, version) = platform
        .settings
        .read_versioned()
        .await
        .map_err(|e| JobError::aws("GetItem", "settings", e))?;
    // As an admin sees them: sensitive values masked (the DSN carries the reporter's key).
    let settings = settings.masked(keys);
    let secret = jobs
        .secretsmanager()
        .get_secret_value()
        .secret_id(&config.config_secret_id)
        .send()
        .await
        .map_err(|e| JobError::aws("GetSecretValue", &config.config_secret_id, e))?;
    let secret_values = match secret.secret_string() {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(json) => fingerprint_leaves(&json),
            Err(_) => Value::String(fingerprint(text)),
        },
        None => Value::Null,
    };
    Ok(json!({
        "settings": { "version": version, "document": settings },
        "secret": {
            "id": config.config_secret_id,
            "version_id": secret.version_id(),
            "values": secret_values,
            // Which keys the settings' sealed values (in the table export) can be opened with.
            "config_encryption_key_ids": keys.all().iter().map(key_id).collect::<Vec<_>>(),
        },
        "function_config": {
            "stage": config.stage,
            "region": config.region,
            "tables": { "app": config.tables.app, "rate_limit": config.tables.rate_limit },
            "backup_tables": config.backup.tables,
            "cors_allowed_origins": config
                .cors
                .allowed_origins
                .iter()
                .map(|o| o.to_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
            "max_body_bytes": config.max_body_bytes,
            "query_timeout_ms": config.query_timeout.as_millis() as u64,
            "slow_query_threshold_ms": config.slow_query_threshold.as_millis() as u64,
            "rate_limit": {
                "enabled": config.rate_limit.enabled,
                "timeout_ms": config.rate_limit.timeout.as_millis() as u64,
            },
            "jwt": {
                "issuer": config.auth.issuer,
                "audience": config.auth.audience,
                "access_token_ttl_seconds": config.auth.access_token_ttl.as_secs(),
                "refresh_token_ttl_seconds": config.auth.refresh_token_ttl.as_secs(),
            },
            "refund_email_from": config.refund_email_from,
            "error_reporting_dsn": config
                .error_reporting_dsn
                .as_ref()
                .map(|d| fingerprint(&d.envelope_url)),
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn leaves_become_fingerprints_and_keys_stay() {
        let secret = json!({ "jwt_keys": [{ "kid": "k1", "secret": "s3cr3t-value" }], "n": 42 });
        let out = fingerprint_leaves(&secret);
        let text = out.to_string();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert_eq!(out["n"], fingerprint("42"), "numbers too");
        assert_eq!(out["jwt_keys"][0]["secret"], fingerprint("s3cr3t-value"));
        assert!(out["jwt_keys"][0].get("kid").is_some());
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}
