//! The transform's query options, content negotiation and the ETag.
//!
//! `w`, `h` (1 to the output limit), `fit` (cover, contain, inside, fill; default inside),
//! `format` (jpeg, png, webp, or auto: WebP when `Accept` names it, else PNG for PNG and GIF
//! input, which may be transparent, else JPEG) and `quality` (1 to 100; default the runtime
//! setting `imageQuality` of the format). Unknown options are refused, naming them.

use std::collections::BTreeMap;

use lumi_imaging::{Fit, InputFormat, OutputFormat, TransformOptions};
use lumi_shared::{ApiError, error::FieldError, settings::ImageQuality};
use sha2::{Digest as _, Sha256};

/// What the caller asked for, before negotiation and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Option<Fit>,
    /// `None`: auto.
    pub format: Option<OutputFormat>,
    pub quality: Option<u8>,
}

impl Requested {
    pub fn parse(query: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let mut error = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.into(),
                message: message.into(),
            })
        };
        let mut requested = Self::default();
        for (key, value) in query {
            match key.as_str() {
                "w" | "h" => match value.parse::<u32>() {
                    Ok(n) if n >= 1 => {
                        if key == "w" {
                            requested.width = Some(n);
                        } else {
                            requested.height = Some(n);
                        }
                    }
                    _ => error(key, "must be a whole number of pixels, at least 1"),
                },
                "fit" => match Fit::from_name(value) {
                    Some(fit) => requested.fit = Some(fit),
                    None => error(key, "must be cover, contain, inside or fill"),
                },
                "format" => match value.as_str() {
                    "auto" => requested.format = None,
                    name => match OutputFormat::from_name(name) {
                        Some(format) => requested.format = Some(format),
                        None => error(key, "must be jpeg, png, webp or auto"),
                    },
                },
                "quality" | "q" => match value.parse::<u8>() {
                    Ok(q) if (1..=100).contains(&q) => requested.quality = Some(q),
                    _ => error(key, "must be a whole number from 1 to 100"),
                },
                other => error(other, "is not an option (w, h, fit, format, quality)"),
            }
        }
        if errors.is_empty() {
            Ok(requested)
        } else {
            Err(ApiError::Validation {
                detail: format!("{} option(s) are invalid", errors.len()).into(),
                errors,
            })
        }
    }

    /// The options to run: the format negotiated, the quality defaulted from the settings.
    pub fn resolve(
        &self,
        input: InputFormat,
        accept: Option<&str>,
        quality: &ImageQuality,
    ) -> TransformOptions {
        let format = self
            .format
            .unwrap_or_else(|| negotiate_format(input, accept));
        let quality = self
            .quality
            .unwrap_or_else(|| default_quality(format, quality));
        TransformOptions {
            width: self.width,
            height: self.height,
            fit: self.fit.unwrap_or(Fit::Inside),
            format,
            quality,
        }
    }
}

/// The runtime settings' quality for `format` (PNG is lossless: the value is unused).
pub fn default_quality(format: OutputFormat, quality: &ImageQuality) -> u8 {
    match format {
        OutputFormat::Jpeg => quality.jpeg,
        OutputFormat::Webp => quality.webp,
        OutputFormat::Png => 100,
    }
}

/// `format=auto`: WebP if the client takes it, else a format that keeps what the input has.
pub fn negotiate_format(input: InputFormat, accept: Option<&str>) -> OutputFormat {
    let takes_webp = accept.is_some_and(|accept| {
        accept.split(',').any(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let media = pieces.next().unwrap_or_default();
            let refused = pieces.any(|p| p.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("image/webp") && !refused
        })
    });
    match input {
        _ if takes_webp => OutputFormat::Webp,
        InputFormat::Png | InputFormat::Gif => OutputFormat::Png,
        InputFormat::Jpeg | InputFormat::Webp => OutputFormat::Jpeg,
    }
}

/// The same input and the same effective options give the same tag; anything else another.
pub fn etag(input: &[u8], options: &TransformOptions) -> String {
    let mut hash = Sha256::new();
    hash.update(input);
    hash.update(
        format!(
            "|w={:?}|h={:?}|fit={:?}|format={}|q={}",
            options.width,
            options.height,
            options.fit,
            options.format.as_str(),
            options.quality
        )
        .as_bytes(),
    );
    let hex: String = hash
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let ok = Requested::parse(&query(&[
            ("w", "800"),
            ("fit", "cover"),
            ("format", "webp"),
        ]))
        .unwrap();
        assert_eq!(ok.width, Some(800));
        assert_eq!(ok.format, Some(OutputFormat::Webp));
        let Err(ApiError::Validation { errors, .. }) = Requested::parse(&query(&[
            ("w", "0"),
            ("h", "x"),
            ("fit", "squash"),
            ("quality", "101"),
            ("format", "bmp"),
            ("colour", "red"),
        ])) else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for field in ["w", "h", "fit", "quality", "format", "colour"] {
            assert!(fields.contains(&field), "{fields:?}");
        }
    }

    #[test]
    fn accept_negotiates_webp_and_otherwise_keeps_transparency() {
        let chrome = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
        assert_eq!(
            negotiate_format(InputFormat::Jpeg, Some(chrome)),
            OutputFormat::Webp
        );
        assert_eq!(
            negotiate_format(InputFormat::Jpeg, Some("image/*")),
            OutputFormat::Jpeg
        );
        assert_eq!(negotiate_format(InputFormat::Png, None), OutputFormat::Png);
        assert_eq!(
            negotiate_format(InputFormat::Png, Some("image/webp;q=0, image/png")),
            OutputFormat::Png
        );
    }

    #[test]
    fn quality_defaults_come_from_the_settings_and_change_the_etag() {
        let requested = Requested::parse(&query(&[("w", "100"), ("format", "jpeg")])).unwrap();
        let mut settings = ImageQuality::default();
        let at80 = requested.resolve(InputFormat::Png, None, &settings);
        assert_eq!(at80.quality, 80);
        settings.jpeg = 50;
        let at50 = requested.resolve(InputFormat::Png, None, &settings);
        assert_eq!(at50.quality, 50);
        assert_eq!(etag(b"img", &at80), etag(b"img", &at80));
        assert_ne!(etag(b"img", &at80), etag(b"img", &at50));
        assert_ne!(etag(b"img", &at80), etag(b"other", &at80));
    }
}
