//! Quota usage: the hourly counters the rate limiter keeps in `RateLimitTable`
//! (`quota#<user>#<hour>`, attribute `count`, kept 90 days: the runbook's usage records), read
//! back for the admin (`GET /api/v1/admin/users/{id}/usage`).
//!
//! A window of at most [`MAX_HOURS`] clock hours ending with the hour of `until` (default: now)
//! is read by key: one GetItem of the account (its tier) and one BatchGetItem of the window's
//! counters, whatever the window holds. The keys and the limit are the rate limiter's own
//! ([`Check::hourly_quota`]); a record does not store the limit it was counted against, so each
//! hour shows the limit in force now for the user's tier.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    auth::{
        Tier,
        users::{self, UserError, UserId},
    },
    platform::Platform,
    ratelimit::Check,
    store::StoreError,
};

/// The widest window: one BatchGetItem reads at most 100 keys.
pub const MAX_HOURS: u32 = 100;
/// The window when none is asked for: the last day.
pub const DEFAULT_HOURS: u32 = 24;

const HOUR_US: i64 = 3_600_000_000;

/// Which hours to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub hours: u32,
    /// The newest hour is the one holding this instant (µs since the epoch); None: now.
    pub until_us: Option<i64>,
}

impl Window {
    /// `hours` (1 to [`MAX_HOURS`], default [`DEFAULT_HOURS`]) and `until` (RFC 3339).
    pub fn parse(hours: Option<u32>, until: Option<&str>) -> Result<Self, UsageError> {
        let hours = hours.unwrap_or(DEFAULT_HOURS);
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(UsageError::Hours);
        }
        let until_us = until
            .map(|text| {
                OffsetDateTime::parse(text, &Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1_000) as i64)
                    .map_err(|_| UsageError::Until)
            })
            .transpose()?;
        Ok(Self { hours, until_us })
    }
}

/// One clock hour's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HourUsage {
    /// The hour's start, RFC 3339.
    pub hour: String,
    /// Requests admitted in the hour.
    pub count: u64,
    /// The user's hourly quota (in force now, for the user's tier now).
    pub limit: u64,
}

/// A user's usage over a window: the hours with requests, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub user_id: String,
    pub tier: Tier,
    /// The hourly quota in force now for the user's tier.
    pub limit: u64,
    /// The window: the start of its oldest hour and of its newest, RFC 3339.
    pub from: String,
    pub until: String,
    pub hours: Vec<HourUsage>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("hours must be between 1 and {MAX_HOURS}")]
    Hours,
    #[error("until is not an RFC 3339 time")]
    Until,
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::error::DomainError for UsageError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            Self::Hours | Self::Until => ErrorClass::Malformed,
            Self::User(user) => user.class(),
            Self::Store(store) => store.class(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::User(user) => user.public_detail(),
            Self::Store(store) => store.public_detail(),
            other => other.to_string(),
        }
    }
}

fn rfc3339_us(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The user's hourly usage over `window` (404 class for an unknown user).
pub async fn hourly(
    platform: &Platform,
    user: &UserId,
    window: Window,
) -> Result<Usage, UsageError> {
    let account = users::get(&platform.db, &platform.config.tables.app, user.as_str())
        .await?
        .ok_or_else(|| UserError::NotFound(user.to_string()))?;
    let settings = platform.settings.get().await;
    let limits = &settings.rate_limits;
    let multiplier = if account.tier == Tier::Premium {
        limits.premium_multiplier
    } else {
        1
    };
    let until_us = window.until_us.unwrap_or_else(|| platform.limiter.now_us());
    let newest = until_us.div_euclid(HOUR_US) * HOUR_US;
    // Newest first, as the answer lists them.
    let hours: Vec<(i64, Check)> = (0..i64::from(window.hours))
        .map(|i| {
            let start = newest - i * HOUR_US;
            (
                start,
                Check::hourly_quota(user.as_str(), limits.quota, multiplier, start),
            )
        })
        .collect();
    let limit = hours.first().map_or(0, |(_, check)| check.limit);
    let table = &platform.config.tables.rate_limit;
    let keys = hours
        .iter()
        .map(|(_, check)| HashMap::from([("pk".to_owned(), AttributeValue::S(check.key.clone()))]))
        .collect();
    let counts: HashMap<String, u64> = platform
        .db
        .batch_get(table, keys)
        .await?
        .into_iter()
        .filter_map(|item| {
            let key = item.get("pk")?.as_s().ok()?.clone();
            let count = item.get("count")?.as_n().ok()?.parse().ok()?;
            Some((key, count))
        })
        .collect();
    let oldest = hours.last().map_or(newest, |(start, _)| *start);
    Ok(Usage {
        user_id: account.user_id,
        tier: account.tier,
        limit,
        from: rfc3339_us(oldest),
        until: rfc3339_us(newest),
        hours: hours
            .into_iter()
            .filter_map(|(start, check)| {
                counts.get(&check.key).map(|count| HourUsage {
                    hour: rfc3339_us(start),
                    count: *count,
                    limit: check.limit,
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_until_is_a_time() {
        assert_eq!(
            Window::parse(None, None).unwrap(),
            Window {
                hours: DEFAULT_HOURS,
                until_us: None
            }
        );
        assert!(matches!(
            Window::parse(Some(0), None),
            Err(UsageError::Hours)
        ));
        assert!(matches!(
            Window::parse(Some(MAX_HOURS + 1), None),
            Err(UsageError::Hours)
        ));
        assert_eq!(
            Window::parse(Some(3), Some("2026-12-02T10:30:00Z"))
                .unwrap()
                .until_us,
            Some(1_796_207_400_000_000)
        );
        assert!(matches!(
            Window::parse(None, Some("yesterday")),
            Err(UsageError::Until)
        ));
    }
}
