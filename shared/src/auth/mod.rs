//! Accounts, sessions and the authentication layer every function shares.
//!
//! - [`password`]: argon2id hashing, the password policy, a constant-effort check for unknown
//!   accounts.
//! - [`tokens`]: access JWTs (HS256, `kid` among the secret's current and previous keys).
//! - [`users`]: the user item (role, tier, locked flag, sessions-valid-after) and its writes.
//! - [`sessions`]: login sessions and their opaque refresh tokens, rotation with reuse
//!   detection, logout, revoke-all, purge.
//! - [`browser`]: cookie mode for browsers: the refresh token in a sealed `__Host-` cookie,
//!   CSRF token and origin checks for rotate and logout.
//! - [`extract`]: `Authenticated` and `AdminUser`, the extractors handlers use.
//!
//! Revocation is immediate in every container because the layer reads the user, the session
//! and the global sessions epoch (one BatchGetItem, strongly consistent) on every request: a
//! revoked session, a user's or the global sessions-valid-after instant later than the
//! session's start, or a locked account refuses the token at its next use.

pub mod browser;
pub mod extract;
pub mod password;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use extract::{AdminUser, Authenticated, MetricsReader};
pub use users::{Role, Tier, User};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
