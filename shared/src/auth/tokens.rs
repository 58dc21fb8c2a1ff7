//! Access tokens: short-lived JWTs signed with HS256 by the config secret's current key, the key
//! named by `kid` in the header. Verification pins the algorithm, picks the key by `kid` among the
//! current and previous keys, and checks `exp`, `nbf`, `iss` and `aud` with a small leeway.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::users::{Role, Tier};
use crate::{config::AuthConfig, secrets::AppSecrets};

/// Seconds of clock difference tolerated between containers.
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session (login) id.
    pub sid: String,
    pub role: Role,
    /// The rate limiter multiplies quotas by tier without a database read.
    #[serde(default)]
    pub tier: Tier,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token names an unknown key")]
    UnknownKey(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Signs an access token for this session with the current key.
pub fn issue(
    secrets: &AppSecrets,
    settings: &AuthConfig,
    user_id: &str,
    session_id: &str,
    role: Role,
    tier: Tier,
    now_secs: i64,
) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
    let key = secrets.signing_key();
    let claims = Claims {
        sub: user_id.to_owned(),
        sid: session_id.to_owned(),
        role,
        tier,
        iat: now_secs,
        nbf: now_secs,
        exp: now_secs + settings.access_token_ttl.as_secs() as i64,
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.secret.expose_secret().as_bytes()),
    )?;
    Ok((token, claims))
}

/// The `kid` of a token, with its algorithm checked first (HS256 only: no `none`, no key
/// confusion).
pub fn key_id(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::Algorithm);
    }
    header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or_else(|| TokenError::UnknownKey(String::new()))
}

/// Verifies a token against the keys of `secrets`.
pub fn verify(
    token: &str,
    secrets: &AppSecrets,
    settings: &AuthConfig,
) -> Result<Claims, TokenError> {
    let kid = key_id(token)?;
    let key = secrets.jwt_key(&kid).ok_or(TokenError::UnknownKey(kid))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(key.secret.expose_secret().as_bytes()),
        &validation,
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))?;
    if data.claims.sid.is_empty() {
        return Err(TokenError::Invalid("no session id".into()));
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::complete_secret_json;

    fn setup() -> (AppSecrets, AuthConfig) {
        let secrets = AppSecrets::parse(&complete_secret_json(None).unwrap()).unwrap();
        (secrets, AuthConfig::default())
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn issued_tokens_verify() {
        let (secrets, settings) = setup();
        let (token, claims) = issue(
            &secrets,
            &settings,
            "u1",
            "s1",
            Role::Customer,
            Tier::Standard,
            now(),
        )
        .unwrap();
        assert_eq!(verify(&token, &secrets, &settings).unwrap(), claims);
        assert_eq!(key_id(&token).unwrap(), secrets.signing_key().kid);
    }

    #[test]
    fn expired_wrong_audience_and_tampered_tokens_are_refused() {
        let (secrets, settings) = setup();
        let (old, _) = issue(
            &secrets,
            &settings,
            "u1",
            "s1",
            Role::Customer,
            Tier::Standard,
            now() - 3600,
        )
        .unwrap();
        assert!(matches!(
            verify(&old, &secrets, &settings),
            Err(TokenError::Invalid(_))
        ));

        let other = AuthConfig {
            audience: "someone-else".into(),
            ..AuthConfig::default()
        };
        let (foreign, _) = issue(
            &secrets,
            &other,
            "u1",
            "s1",
            Role::Customer,
            Tier::Standard,
            now(),
        )
        .unwrap();
        assert!(verify(&foreign, &secrets, &settings).is_err());

        let (token, _) = issue(
            &secrets,
            &settings,
            "u1",
            "s1",
            Role::Customer,
            Tier::Standard,
            now(),
        )
        .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].replace('a', "b");
        assert!(verify(&parts.join("."), &secrets, &settings).is_err());
        assert_eq!(
            verify("not-a-jwt", &secrets, &settings),
            Err(TokenError::Malformed)
        );
    }
}
