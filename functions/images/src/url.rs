//! Signed image URLs: `/api/v1/images/{signature}/{options}/{source+}`, their options segment,
//! their source key and their HMAC. Pure: no AWS, no HTTP; the handler is `source.rs`, the
//! signers `lumi images url` and a storefront's own server (docs/operations.md, "Image URLs").
//!
//! ```text
//! /api/v1/images/<signature>/w_800-h_600-fit_cover-format_webp-quality_80/originals/<id>.jpeg
//!                └ HMAC ┘    └ options, canonical order ───────────────┘ └ source key ──────┘
//! ```
//!
//! - The options are imgproxy's idea (processing options in the path, before the source) in
//!   Cloudinary's spelling (`w_800`): `name_value` pairs joined by `-`, in the order `w`, `h`,
//!   `fit`, `format`, `quality`, each at most once, at least one. Every character is unreserved
//!   (RFC 3986), so no browser, CDN or signer's URL library encodes it differently, and the
//!   segment passes the edge's identifier check (`http::path_ids`). One canonical spelling per
//!   image means one CDN cache entry per image.
//! - The source is a key of `ImagesBucket` as the admin API answers it (`original.key`):
//!   `originals/<32 hex digits>.<jpeg|png|webp|gif>`, nothing else (not a variant, never an
//!   unprocessed upload), checked before any AWS call.
//! - The signature is imgproxy's: HMAC-SHA256 of the path after it (`/<options>/<source>`),
//!   URL-safe base64 without padding (43 characters), with a key of the config secret's
//!   `image_url_key`; compared in constant time with every key of the list (rotation), in full
//!   (no truncated signatures). A signed POST transform signs `POST /api/v1/images/transform?`
//!   and its query instead, so neither signature serves the other.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use lumi_imaging::{InputFormat, TransformOptions};
use lumi_shared::error::FieldError;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::options::Requested;

/// The options in their canonical order.
pub const OPTION_ORDER: [&str; 5] = ["w", "h", "fit", "format", "quality"];

/// The path prefix of signed image URLs.
pub const PREFIX: &str = "/api/v1/images";

/// An original's key, as the admin API stores it: `originals/<32 hex>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    key: String,
    format: InputFormat,
}

impl SourceKey {
    /// `None` for anything but the key of a stored original.
    pub fn parse(key: &str) -> Option<Self> {
        let (id, ext) = key.strip_prefix("originals/")?.split_once('.')?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let format = [
            InputFormat::Jpeg,
            InputFormat::Png,
            InputFormat::Webp,
            InputFormat::Gif,
        ]
        .into_iter()
        .find(|f| f.as_str() == ext)?;
        Some(Self {
            key: key.to_owned(),
            format,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The original's format, from its extension (the admin API names it from the bytes).
    pub fn format(&self) -> InputFormat {
        self.format
    }
}

/// Parses an options segment (`w_800-format_webp`): every bad option named, as the POST
/// transform's query does, and one out of the canonical order or repeated too.
pub fn parse_options(segment: &str) -> Result<Requested, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut last = None;
    let mut query = std::collections::BTreeMap::new();
    for pair in segment.split('-') {
        let (name, value) = pair.split_once('_').unwrap_or((pair, ""));
        match OPTION_ORDER.iter().position(|o| *o == name) {
            Some(at) if last.is_some_and(|last| at <= last) => errors.push(FieldError {
                field: name.into(),
                message: format!(
                    "is repeated or out of order: options come once each, in the order {}",
                    OPTION_ORDER.join(", ")
                ),
            }),
            Some(at) => {
                last = Some(at);
                query.insert(name.to_owned(), value.to_owned());
            }
            None => errors.push(FieldError {
                field: (if name.is_empty() { "options" } else { name }).into(),
                message: format!("is not an option ({})", OPTION_ORDER.join(", ")),
            }),
        }
    }
    match Requested::parse(&query) {
        Ok(requested) if errors.is_empty() => Ok(requested),
        Ok(_) => Err(errors),
        Err(lumi_shared::ApiError::Validation { errors: more, .. }) => {
            errors.extend(more);
            Err(errors)
        }
        Err(_) => Err(errors),
    }
}

/// The canonical options segment of `requested` (`format_auto` when it asks for nothing).
pub fn options_segment(requested: &Requested) -> String {
    let mut parts = Vec::new();
    if let Some(w) = requested.width {
        parts.push(format!("w_{w}"));
    }
    if let Some(h) = requested.height {
        parts.push(format!("h_{h}"));
    }
    if let Some(fit) = requested.fit {
        parts.push(format!("fit_{}", fit.as_str()));
    }
    // `format` is always written: `auto` is the default, but said, the URL shows it varies.
    parts.push(format!(
        "format_{}",
        requested.format.map_or("auto", |f| f.as_str())
    ));
    if let Some(q) = requested.quality {
        parts.push(format!("quality_{q}"));
    }
    parts.join("-")
}

fn hmac(key: &SecretString, message: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// What a GET URL's signature signs: the path after it.
pub fn signed_message(options: &str, source: &str) -> String {
    format!("/{options}/{source}")
}

/// What a signed POST transform's `signature` signs: the method, path and the query before it.
pub fn transform_message(query_before_signature: &str) -> String {
    format!("POST {PREFIX}/transform?{query_before_signature}")
}

/// The signature of `message` with `key` (the secret's first `image_url_key` signs).
pub fn sign(key: &SecretString, message: &str) -> String {
    hmac(key, message)
}

/// Whether `signature` is `message`'s under one of `keys`: every key is tried, each compared
/// in constant time, so the time taken says neither which key nor how much matched.
pub fn verify(keys: &[SecretString], message: &str, signature: &str) -> bool {
    keys.iter()
        .fold(subtle::Choice::from(0), |found, key| {
            found | hmac(key, message).as_bytes().ct_eq(signature.as_bytes())
        })
        .into()
}

/// The signed path of `source` with `requested` (what `lumi images url` prints after the
/// distribution's or the API's base URL).
pub fn signed_path(key: &SecretString, requested: &Requested, source: &SourceKey) -> String {
    let options = options_segment(requested);
    let signature = sign(key, &signed_message(&options, source.as_str()));
    format!("{PREFIX}/{signature}/{options}/{}", source.as_str())
}

/// A strong ETag of an answer: the source key (an original is written once and never
/// replaced) and the effective options (format negotiated, quality defaulted), so it is known
/// before anything is read from S3. `RENDERING` changes when the pipeline's output does.
pub fn etag(source: &SourceKey, options: &TransformOptions) -> String {
    const RENDERING: &str = "lumi-image-url/1";
    let mut hash = Sha256::new();
    hash.update(format!("{RENDERING}\n{}\n", source.as_str()).as_bytes());
    crate::etag(&hash.finalize(), options)
}

/// Whether `If-None-Match` names `etag` (or is `*`).
pub fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|tags| {
        tags.split(',')
            .map(str::trim)
            .any(|t| t == etag || t == "*" || t.strip_prefix("W/") == Some(etag))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use lumi_imaging::{Fit, OutputFormat};

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn key(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn only_the_keys_of_stored_originals_are_sources() {
        let source = SourceKey::parse(&format!("originals/{ID}.png")).unwrap();
        assert_eq!(source.format(), InputFormat::Png);
        for bad in [
            format!("variants/{ID}/thumb.jpg"),
            format!("uploads/{ID}"),
            format!("originals/{ID}.bmp"),
            format!("originals/{ID}"),
            "originals/short.jpeg".to_owned(),
            format!("originals/{ID}.jpeg/x"),
        ] {
            assert!(SourceKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn options_have_one_canonical_spelling() {
        let requested = parse_options("w_800-h_600-fit_cover-format_webp-quality_80").unwrap();
        assert_eq!(requested.width, Some(800));
        assert_eq!(requested.fit, Some(Fit::Cover));
        assert_eq!(
            options_segment(&requested),
            "w_800-h_600-fit_cover-format_webp-quality_80"
        );
        let auto = parse_options("w_300-format_auto").unwrap();
        assert_eq!(auto.format, None);
        assert_eq!(options_segment(&auto), "w_300-format_auto");
        assert_eq!(options_segment(&Requested::default()), "format_auto");

        let fields = |segment: &str| -> Vec<String> {
            parse_options(segment)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields("h_600-w_800"), ["w"]);
        assert_eq!(fields("w_800-w_900"), ["w"]);
        assert_eq!(fields("w_0-fit_squash"), ["fit", "w"]);
        assert_eq!(fields("colour_red"), ["colour"]);
        assert_eq!(fields("w_10-quality_101"), ["quality"]);
    }

    #[test]
    fn a_signature_verifies_under_any_listed_key_and_nothing_else() {
        let (old, new) = (key(&"o".repeat(43)), key(&"n".repeat(43)));
        let source = SourceKey::parse(&format!("originals/{ID}.jpeg")).unwrap();
        let requested = parse_options("w_800-format_webp").unwrap();
        let path = signed_path(&new, &requested, &source);
        let signature = path.split('/').nth(4).unwrap();
        assert_eq!(signature.len(), 43);
        let message = signed_message("w_800-format_webp", source.as_str());
        assert!(verify(&[new.clone(), old.clone()], &message, signature));
        assert!(verify(&[old.clone(), new.clone()], &message, signature));
        assert!(
            !verify(std::slice::from_ref(&old), &message, signature),
            "old key only"
        );
        assert!(!verify(&[], &message, signature), "no key");
        assert!(
            !verify(std::slice::from_ref(&new), &message, &signature[..42]),
            "truncated"
        );
        let other = signed_message("w_801-format_webp", source.as_str());
        assert!(
            !verify(std::slice::from_ref(&new), &other, signature),
            "other options"
        );
        assert!(
            !verify(&[new], &transform_message("w=800&format=webp"), signature),
            "a GET signature is not a POST's"
        );
    }

    #[test]
    fn the_etag_follows_the_source_and_the_effective_options() {
        let a = SourceKey::parse(&format!("originals/{ID}.jpeg")).unwrap();
        let b = SourceKey::parse(&format!("originals/{}.jpeg", "f".repeat(32))).unwrap();
        let options = TransformOptions {
            width: Some(10),
            height: None,
            fit: Fit::Inside,
            format: OutputFormat::Webp,
            quality: 80,
        };
        let jpeg = TransformOptions {
            format: OutputFormat::Jpeg,
            ..options
        };
        assert_eq!(etag(&a, &options), etag(&a, &options));
        assert_ne!(etag(&a, &options), etag(&b, &options));
        assert_ne!(etag(&a, &options), etag(&a, &jpeg));
        let tag = etag(&a, &options);
        assert!(none_match(Some(&format!("\"x\", {tag}")), &tag));
        assert!(!none_match(Some("\"x\""), &tag));
        assert!(!none_match(None, &tag));
    }
}
