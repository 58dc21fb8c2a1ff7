//! Path identifiers, checked by their format before the handler runs.
//!
//! Every identifier Lumi puts in a path (order references, SKUs, product, user, payment, refund
//! and upload ids, site-content keys, provider names) is 1 to 64 ASCII letters, digits, `-` or
//! `_`. A path parameter of any other shape (a percent-encoded `£`, a `#` that would reach into
//! another key, 10 000 characters) names nothing that exists: it is 404 here, before the
//! handler, so no such value reaches DynamoDB or S3. Domain crates still check their exact
//! formats (an order reference's alphabet, a SKU's) as they read; this is the floor under them.
//! The request has already spent its IP rate-limit budget: malformed traffic counts like any.

use axum::{
    extract::{RawPathParams, Request},
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

/// The route layer: 404 for a path parameter that is not an identifier.
pub async fn check(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let malformed = match &params {
        Ok(params) => params
            .iter()
            .find(|(_, value)| !valid(value))
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
}
