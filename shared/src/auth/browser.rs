//! Browser sessions ("cookie mode"): what OWASP recommends for a storefront in a browser, where
//! a refresh token readable by JavaScript would be one XSS away from a thief.
//!
//! - The client asks for it at login (`"mode": "cookie"` in the body). The refresh token then
//!   never appears in a body: it travels only in the cookie [`REFRESH_COOKIE`]
//!   (`__Host-lumi-refresh`, so `Secure`, `Path=/` and no `Domain` are enforced by the browser;
//!   `HttpOnly`; `SameSite=Strict`; `Max-Age` until the session's absolute end), sealed with a
//!   key derived from `COOKIE_SECRET` (AES-256-GCM, the cookie's name as associated data): a
//!   changed byte, or a value moved to another cookie, does not open (401).
//! - The access token stays a Bearer token the page keeps in memory, as in bearer mode.
//! - Rotate and logout are then authenticated by the cookie, which the browser adds on its own,
//!   so they need proof that the page itself asked (403 otherwise, before any state is read):
//!   the `Sec-Fetch-Site` header, when the browser sends it, must not be `cross-site`; the
//!   `Origin` header, when sent, must be one of `CORS_ALLOWED_ORIGINS` or the API's own host;
//!   and `X-CSRF-Token` must be the session's CSRF token, an HMAC-SHA256 of the session id keyed
//!   with `COOKIE_SECRET` (a signed double-submit token: only the server can make it, it is
//!   bound to one session, and it stays the same across rotations). Login and every rotation
//!   return it in the body (`csrf_token`); the page keeps it (memory, or `sessionStorage` to
//!   survive a reload).
//!
//! Rotating `COOKIE_SECRET` therefore ends every cookie session (neither the cookie nor the CSRF
//! token verifies any more); bearer sessions are unaffected.

use cookie::{Cookie, CookieJar, Key, SameSite};
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use sha2::Sha256;

use super::{
    User,
    sessions::{self, IssuedTokens, RequestMeta, secrets_unavailable},
};
use crate::{error::ApiError, platform::Platform, secrets::AppSecrets};

/// The refresh-token cookie.
pub const REFRESH_COOKIE: &str = "__Host-lumi-refresh";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
/// Separates the CSRF token's HMAC input from any other use of `COOKIE_SECRET`.
const CSRF_LABEL: &[u8] = b"lumi-csrf-v1\0";

/// Why a cookie-authenticated request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowserError {
    #[error("the request comes from another site")]
    CrossSite,
    #[error("the request's origin is not allowed")]
    ForeignOrigin,
    #[error("send the session's CSRF token in X-CSRF-Token")]
    MissingCsrf,
    #[error("the X-CSRF-Token is not this session's")]
    WrongCsrf,
    #[error("the session cookie is not valid")]
    BadCookie,
}

impl From<BrowserError> for ApiError {
    fn from(error: BrowserError) -> Self {
        match error {
            BrowserError::BadCookie => ApiError::Unauthorized(error.to_string().into()),
            _ => ApiError::Forbidden(error.to_string().into()),
        }
    }
}

/// The client's choice at login: where the refresh token goes.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// In the JSON body; rotate with `Authorization: Bearer <refresh token>`.
    #[default]
    Bearer,
    /// In the sealed `__Host-` cookie; rotate and logout with the cookie and `X-CSRF-Token`.
    Cookie,
}

/// What a login or a rotation in cookie mode answers: the body, and the cookie to set.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrowserTokens {
    pub token_type: String,
    pub access_token: String,
    /// Seconds.
    pub expires_in: u64,
    /// RFC 3339: the session's absolute end (the cookie's too).
    pub refresh_expires_at: String,
    pub session_id: String,
    pub user: User,
    /// Send it in `X-CSRF-Token` with every rotate and logout of this session.
    pub csrf_token: String,
    /// The name of the cookie that holds the refresh token.
    pub refresh_token_cookie: &'static str,
    #[serde(skip)]
    pub set_cookie: HeaderValue,
}

/// The browser credentials of a request, read from its headers.
#[derive(Debug, Clone)]
pub struct BrowserRequest {
    sealed: String,
    csrf: Option<String>,
    /// Every value sent: each must pass, so a second header cannot hide the first.
    origins: Vec<String>,
    sec_fetch_sites: Vec<String>,
    host: Option<String>,
}

fn text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn texts(headers: &HeaderMap, name: impl header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        // A value that is not text is kept as one no check allows, so it is refused.
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .collect()
}

impl BrowserRequest {
    /// Some when the request carries the refresh cookie and no `Authorization` header: an
    /// explicit header wins, since only the ambient cookie needs the CSRF checks.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        if headers.contains_key(header::AUTHORIZATION) {
            return None;
        }
        let sealed = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == REFRESH_COOKIE)?
            .value()
            .to_owned();
        Some(Self {
            sealed,
            csrf: text(headers, CSRF_HEADER),
            origins: texts(headers, header::ORIGIN),
            sec_fetch_sites: texts(headers, "sec-fetch-site"),
            host: text(headers, header::HOST),
        })
    }

    /// The Fetch-metadata and `Origin` checks: what a browser says about who made the request.
    /// Clients that send neither (not browsers) still need the CSRF token.
    pub fn check_site(&self, allowed_origins: &[HeaderValue]) -> Result<(), BrowserError> {
        if self
            .sec_fetch_sites
            .iter()
            .any(|site| !matches!(site.as_str(), "same-origin" | "same-site" | "none"))
        {
            return Err(BrowserError::CrossSite);
        }
        for origin in &self.origins {
            let listed = allowed_origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes());
            // A storefront served from the API's own host sends its own origin.
            let own = self.host.as_deref().is_some_and(|host| {
                origin
                    .split_once("://")
                    .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
            });
            if !listed && !own {
                return Err(BrowserError::ForeignOrigin);
            }
        }
        Ok(())
    }

    /// The refresh token sealed in the cookie.
    pub fn refresh_token(&self, secrets: &AppSecrets) -> Result<String, BrowserError> {
        CookieJar::new()
            .private(&sealing_key(secrets))
            .decrypt(Cookie::new(REFRESH_COOKIE, self.sealed.clone()))
            .map(|cookie| cookie.value().to_owned())
            .ok_or(BrowserError::BadCookie)
    }

    /// All three checks, in the order that leaks least: the site (no secret needed), the
    /// cookie, then the CSRF token of the session the cookie names. Returns the refresh token.
    pub fn verify(
        &self,
        secrets: &AppSecrets,
        allowed_origins: &[HeaderValue],
    ) -> Result<String, BrowserError> {
        self.check_site(allowed_origins)?;
        let token = self.refresh_token(secrets)?;
        let (_, session_id) = sessions::refresh_token_ids(&token).ok_or(BrowserError::BadCookie)?;
        check_csrf(secrets, session_id, self.csrf.as_deref())?;
        Ok(token)
    }
}

/// The cookie key: HKDF of `COOKIE_SECRET` (at least 43 characters, checked when the secret is
/// read, so at least the 32 bytes HKDF needs).
fn sealing_key(secrets: &AppSecrets) -> Key {
    Key::derive_from(secrets.cookie_secret.expose_secret().as_bytes())
}

fn csrf_mac(secrets: &AppSecrets, session_id: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(secrets.cookie_secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(CSRF_LABEL);
    mac.update(session_id.as_bytes());
    mac
}

/// The CSRF token of a session.
pub fn csrf_token(secrets: &AppSecrets, session_id: &str) -> String {
    use base64::Engine as _;
    let tag = csrf_mac(secrets, session_id).finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
}

/// Checks a presented CSRF token in constant time.
pub fn check_csrf(
    secrets: &AppSecrets,
    session_id: &str,
    presented: Option<&str>,
) -> Result<(), BrowserError> {
    use base64::Engine as _;
    let presented = presented
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or(BrowserError::MissingCsrf)?;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(presented)
        .map_err(|_| BrowserError::WrongCsrf)?;
    csrf_mac(secrets, session_id)
        .verify_slice(&tag)
        .map_err(|_| BrowserError::WrongCsrf)
}

fn cookie_attributes(cookie: &mut Cookie<'static>, max_age_secs: i64) {
    cookie.set_http_only(true);
    cookie.set_secure(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie.set_max_age(cookie::time::Duration::seconds(max_age_secs.max(0)));
}

/// The `Set-Cookie` value that stores `refresh_token`, sealed, until `expires_ms`.
pub fn refresh_cookie(secrets: &AppSecrets, refresh_token: &str, expires_ms: i64) -> HeaderValue {
    let mut cookie = Cookie::new(REFRESH_COOKIE, refresh_token.to_owned());
    cookie_attributes(&mut cookie, (expires_ms - super::now_ms()) / 1000);
    let mut jar = CookieJar::new();
    jar.private_mut(&sealing_key(secrets)).add(cookie);
    let sealed = jar
        .get(REFRESH_COOKIE)
        .map(ToString::to_string)
        .unwrap_or_default();
    // Sealed values are base64 and the attributes ASCII, so always a valid header value.
    HeaderValue::from_str(&sealed).unwrap_or_else(|_| clear_refresh_cookie())
}

/// The `Set-Cookie` value that deletes the refresh cookie (same name, path and flags; the
/// browser matches on them).
pub fn clear_refresh_cookie() -> HeaderValue {
    let mut cookie = Cookie::new(REFRESH_COOKIE, "");
    cookie_attributes(&mut cookie, 0);
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

fn deliver(secrets: &AppSecrets, tokens: IssuedTokens) -> BrowserTokens {
    BrowserTokens {
        set_cookie: refresh_cookie(secrets, &tokens.refresh_token, tokens.refresh_expires_ms),
        csrf_token: csrf_token(secrets, &tokens.session_id),
        token_type: tokens.token_type,
        access_token: tokens.access_token,
        expires_in: tokens.expires_in,
        refresh_expires_at: tokens.refresh_expires_at,
        session_id: tokens.session_id,
        user: tokens.user,
        refresh_token_cookie: REFRESH_COOKIE,
    }
}

/// Login in cookie mode: [`sessions::login`], the refresh token delivered in the cookie.
pub async fn login(
    platform: &Platform,
    email: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<BrowserTokens, ApiError> {
    let tokens = sessions::login(platform, email, password, meta).await?;
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    Ok(deliver(&secrets, tokens))
}

/// Rotation in cookie mode: the checks of [`BrowserRequest::verify`], then
/// [`sessions::rotate`]; the next refresh token goes into a new cookie.
pub async fn rotate(
    platform: &Platform,
    request: &BrowserRequest,
    meta: &RequestMeta,
) -> Result<BrowserTokens, ApiError> {
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    let token = request.verify(&secrets, &platform.config.cors.allowed_origins)?;
    let tokens = sessions::rotate(platform, &token, meta).await?;
    Ok(deliver(&secrets, tokens))
}

/// Logout in cookie mode: the checks of [`BrowserRequest::verify`], then the session ends.
/// Returns the `Set-Cookie` value that clears the cookie.
pub async fn logout(
    platform: &Platform,
    request: &BrowserRequest,
    meta: &RequestMeta,
) -> Result<HeaderValue, ApiError> {
    let secrets = platform.secrets.get().await.map_err(secrets_unavailable)?;
    let token = request.verify(&secrets, &platform.config.cors.allowed_origins)?;
    sessions::end_with_refresh_token(platform, &token, meta).await?;
    Ok(clear_refresh_cookie())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::complete_secret_json;

    fn secrets() -> AppSecrets {
        AppSecrets::parse(&complete_secret_json(None).unwrap()).unwrap()
    }

    fn request_with(cookie: &str, extra: &[(&str, &str)]) -> Option<BrowserRequest> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        for (name, value) in extra {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        BrowserRequest::from_headers(&headers)
    }

    fn sealed_pair(secrets: &AppSecrets, token: &str) -> String {
        let set = refresh_cookie(secrets, token, super::super::now_ms() + 60_000);
        let set = set.to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn the_cookie_opens_only_with_its_key_and_unchanged() {
        let keys = secrets();
        let pair = sealed_pair(&keys, "u1.s1.secret");
        let request = request_with(&format!("other=1; {pair}"), &[]).unwrap();
        assert_eq!(request.refresh_token(&keys).unwrap(), "u1.s1.secret");
        assert!(!pair.contains("secret"), "the token is sealed, not visible");

        let other_keys = secrets();
        assert_eq!(
            request.refresh_token(&other_keys),
            Err(BrowserError::BadCookie)
        );
        let (name, value) = pair.split_once('=').unwrap();
        let flipped = if value.starts_with('A') { "B" } else { "A" };
        let tampered = request_with(&format!("{name}={flipped}{}", &value[1..]), &[]).unwrap();
        assert_eq!(tampered.refresh_token(&keys), Err(BrowserError::BadCookie));
    }

    #[test]
    fn an_authorization_header_or_no_cookie_is_not_a_browser_request() {
        assert!(request_with("theme=dark", &[]).is_none());
        assert!(
            request_with(
                &format!("{REFRESH_COOKIE}=x"),
                &[("authorization", "Bearer t")]
            )
            .is_none()
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_the_key() {
        let keys = secrets();
        let token = csrf_token(&keys, "s1");
        assert_eq!(check_csrf(&keys, "s1", Some(&token)), Ok(()));
        assert_eq!(
            check_csrf(&keys, "s2", Some(&token)),
            Err(BrowserError::WrongCsrf)
        );
        assert_eq!(
            check_csrf(&secrets(), "s1", Some(&token)),
            Err(BrowserError::WrongCsrf)
        );
        assert_eq!(
            check_csrf(&keys, "s1", None),
            Err(BrowserError::MissingCsrf)
        );
        assert_eq!(
            check_csrf(&keys, "s1", Some("not base64!")),
            Err(BrowserError::WrongCsrf)
        );
    }

    #[test]
    fn cross_site_and_foreign_origins_are_refused() {
        let allowed = [HeaderValue::from_static("https://shop.example.com")];
        let cookie = format!("{REFRESH_COOKIE}=x");
        let check =
            |extra: &[(&str, &str)]| request_with(&cookie, extra).unwrap().check_site(&allowed);
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&[("sec-fetch-site", "same-site")]), Ok(()));
        assert_eq!(
            check(&[("sec-fetch-site", "cross-site")]),
            Err(BrowserError::CrossSite)
        );
        assert_eq!(check(&[("origin", "https://shop.example.com")]), Ok(()));
        assert_eq!(
            check(&[
                ("origin", "https://api.example.com"),
                ("host", "api.example.com")
            ]),
            Ok(())
        );
        assert_eq!(
            check(&[("origin", "https://evil.example")]),
            Err(BrowserError::ForeignOrigin)
        );
        assert_eq!(
            check(&[("origin", "null")]),
            Err(BrowserError::ForeignOrigin)
        );
        // A second header cannot hide the first.
        assert_eq!(
            check(&[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-site", "cross-site")
            ]),
            Err(BrowserError::CrossSite)
        );
        assert_eq!(
            check(&[
                ("origin", "https://shop.example.com"),
                ("origin", "https://evil.example")
            ]),
            Err(BrowserError::ForeignOrigin)
        );
    }

    #[test]
    fn the_cookie_has_the_owasp_attributes_and_clearing_matches_it() {
        let set = refresh_cookie(&secrets(), "u1.s1.x", super::super::now_ms() + 3_600_000);
        let parsed = Cookie::parse(set.to_str().unwrap().to_owned()).unwrap();
        assert_eq!(parsed.name(), "__Host-lumi-refresh");
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(SameSite::Strict));
        assert_eq!(parsed.path(), Some("/"));
        assert!(parsed.domain().is_none());
        let max_age = parsed.max_age().unwrap().whole_seconds();
        assert!((3590..=3600).contains(&max_age), "{max_age}");

        let cleared = Cookie::parse(clear_refresh_cookie().to_str().unwrap().to_owned()).unwrap();
        assert_eq!(cleared.name(), REFRESH_COOKIE);
        assert_eq!(cleared.value(), "");
        assert_eq!(cleared.path(), Some("/"));
        assert_eq!(cleared.max_age().unwrap().whole_seconds(), 0);
    }
}
