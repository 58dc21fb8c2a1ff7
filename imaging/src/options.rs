//! What a caller asks for: formats, fit modes, quality, and the limits that guard the decoder.
//!
//! These are plain data types with parsers for the names used in URLs and settings
//! (`fit=cover`, `format=webp`), kept apart from the pipeline so the HTTP layer can validate a
//! request without touching any image code.

use crate::ImageError;

/// The formats [`crate::transform`] reads, recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputFormat {
    Jpeg,
    Png,
    Webp,
    /// Only the first frame is read.
    Gif,
}

impl InputFormat {
    /// Lower-case name: `jpeg`, `png`, `webp`, `gif`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
        }
    }

    /// The media type of the format.
    #[must_use]
    pub fn mime(&self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
        }
    }
}

/// The formats [`crate::transform`] writes. Every output is stripped of metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// Baseline JPEG, 4:2:0 chroma subsampling, optimised Huffman tables (sharp's defaults).
    /// Transparent pixels are flattened onto white.
    #[default]
    Jpeg,
    /// Lossless; `quality` is ignored.
    Png,
    /// Lossy WebP at `quality` (libwebp method 4, as sharp's default effort).
    Webp,
}

impl OutputFormat {
    /// The media type for the `Content-Type` header.
    #[must_use]
    pub fn mime(&self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    /// Parses `jpeg`/`jpg`, `png` or `webp` (ASCII case-insensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("jpeg") || name.eq_ignore_ascii_case("jpg") {
            Some(Self::Jpeg)
        } else if name.eq_ignore_ascii_case("png") {
            Some(Self::Png)
        } else if name.eq_ignore_ascii_case("webp") {
            Some(Self::Webp)
        } else {
            None
        }
    }

    /// Lower-case name: `jpeg`, `png`, `webp`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// The usual file extension: `jpg`, `png`, `webp`.
    #[must_use]
    pub fn extension(&self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }
}

/// How the image is fitted to the requested box, with sharp's meanings.
///
/// They differ only when both width and height are given: with one of them, every fit scales
/// keeping the aspect ratio (the other side follows), and with neither the size is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fit {
    /// Scale to cover the box, then crop the centre: exactly `width`x`height`.
    Cover,
    /// Scale to fit inside the box, then pad (centred) to exactly `width`x`height`: white for
    /// JPEG, transparent for PNG and WebP.
    Contain,
    /// The default: scale to fit inside the box keeping the aspect ratio, no padding; neither
    /// side is ever larger than requested (but small images are enlarged, as sharp does).
    #[default]
    Inside,
    /// Stretch to exactly `width`x`height`, ignoring the aspect ratio.
    Fill,
}

impl Fit {
    /// Parses `cover`, `contain`, `inside` or `fill` (ASCII case-insensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [Self::Cover, Self::Contain, Self::Inside, Self::Fill]
            .into_iter()
            .find(|fit| name.eq_ignore_ascii_case(fit.as_str()))
    }

    /// Lower-case name: `cover`, `contain`, `inside`, `fill`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cover => "cover",
            Self::Contain => "contain",
            Self::Inside => "inside",
            Self::Fill => "fill",
        }
    }
}

/// Limits checked from the header alone, in this order, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes. Default 25 MiB.
    pub max_input_bytes: usize,
    /// Largest input accepted, in pixels (width x height as the header says). Default 50 MP.
    pub max_input_pixels: u64,
    /// Longest side of the output. Default 4096.
    pub max_output_dimension: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 25 * 1024 * 1024,
            max_input_pixels: 50_000_000,
            max_output_dimension: 4096,
        }
    }
}

/// What to make of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformOptions {
    /// Target width in displayed (EXIF-oriented) pixels; `None` follows the aspect ratio.
    pub width: Option<u32>,
    /// Target height in displayed (EXIF-oriented) pixels; `None` follows the aspect ratio.
    pub height: Option<u32>,
    /// How to fit when both sides are given. Default [`Fit::Inside`].
    pub fit: Fit,
    /// Output format. Default JPEG.
    pub format: OutputFormat,
    /// 1..=100 for JPEG and WebP, ignored by PNG (but still validated). Default 80.
    pub quality: u8,
}

impl Default for TransformOptions {
    fn default() -> Self {
        Self {
            width: None,
            height: None,
            fit: Fit::Inside,
            format: OutputFormat::Jpeg,
            quality: 80,
        }
    }
}

impl TransformOptions {
    /// Checks the options on their own: quality in 1..=100, no zero side.
    ///
    /// # Errors
    /// [`ImageError::InvalidOptions`] saying what is wrong.
    pub fn validate(&self) -> Result<(), ImageError> {
        if !(1..=100).contains(&self.quality) {
            return Err(ImageError::InvalidOptions(format!(
                "quality must be 1..=100, not {}",
                self.quality
            )));
        }
        if self.width == Some(0) {
            return Err(ImageError::InvalidOptions(
                "width must be at least 1".into(),
            ));
        }
        if self.height == Some(0) {
            return Err(ImageError::InvalidOptions(
                "height must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
