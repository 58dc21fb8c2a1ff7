//! Path identifiers, checked by their format before the handler runs.
//!
//! Every identifier Lumi puts in a path (order references, SKUs, product, user, payment, refund
//! and upload ids, site-content keys, provider names) is 1 to 64 ASCII letters, digits, `-` or
//! `_`. A path parameter of any other shape (a percent-encoded `£`, a `#` that would reach into
//! another key, 10 000 characters) names nothing that exists: it is 404 here, before the
//! handler, so no such value reaches DynamoDB or S3. Domain crates still check their exact
//! formats (an order reference's alphabet, a SKU's) as they read; this is the floor under them.
//! The request has already spent its IP rate-limit budget: malformed traffic counts like any.
//!
//! One other shape exists: a greedy parameter (API Gateway's `{name+}`, axum's `{*name}`: only
//! the signed image URL's `{source+}`) takes the rest of the path, an object key: 1 to
//! [`MAX_KEY_LEN`] bytes of [`valid_key`] segments joined by `/`. Its owner checks the exact
//! key (the images function: `originals/<id>.<ext>`).

use axum::{
    extract::{MatchedPath, RawPathParams, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::ApiError;

/// Longest identifier Lumi issues or accepts in a path.
pub const MAX_LEN: usize = 64;

/// Whether `value` has the shape of a path identifier.
pub fn valid(value: &str) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest object key a greedy path parameter may hold.
pub const MAX_KEY_LEN: usize = 256;

/// Whether `value` has the shape of an object key: segments of letters, digits, `-`, `_` and
/// `.` (none empty, none starting with `.`, so no `..`), joined by single `/`.
pub fn valid_key(value: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&value.len())
        && value.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// The greedy parameter of a route (`/{*name}` at its end), if it has one.
fn greedy_param(route: &str) -> Option<&str> {
    route.rsplit_once("/{*")?.1.strip_suffix('}')
}

/// The route layer: 404 for a path parameter that is not an identifier.
pub async fn check(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let greedy = matched.as_ref().and_then(|m| greedy_param(m.as_str()));
    let malformed = match &params {
        Ok(params) => params
            .iter()
            .find(|(name, value)| {
                if greedy == Some(*name) {
                    !valid_key(value)
                } else {
                    !valid(value)
                }
            })
            .map(|(name, _)| name.to_owned()),
        // Not UTF-8 once decoded: no identifier looks like that either.
        Err(_) => Some("identifier".to_owned()),
    };
    match malformed {
        Some(name) => {
            ApiError::not_found(format!("nothing has this {name} (not a valid identifier)"))
                .into_response()
        }
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_short_ascii_tokens() {
        for good in [
            "LUMI-7K3F-9Q2M",
            "tee-black-m",
            "pay_0123abcd",
            "stripe",
            "a",
        ] {
            assert!(valid(good), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "£1", "LUMI#1", "a b", "a/b", "a.b", long.as_str()] {
            assert!(!valid(bad), "{bad}");
        }
    }

    #[test]
    fn a_greedy_parameter_is_an_object_key() {
        assert_eq!(
            greedy_param("/api/v1/images/{signature}/{options}/{*source}"),
            Some("source")
        );
        assert_eq!(greedy_param("/api/v1/orders/{reference}"), None);
        for good in ["originals/0123abcd.jpeg", "a", "a/b-c_d.e"] {
            assert!(valid_key(good), "{good}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "", "a//b", "../a", "a/../b", "a/.b", "/a", "a/", "a b", "a%2Fb", &long,
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
