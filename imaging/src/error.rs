//! The one error type of the crate, and the HTTP status each variant maps to.
//!
//! The library knows nothing of HTTP, but every caller (the image Lambda, the tests, the bench)
//! needs the same mapping, so it lives next to the variants: limits that a request breaks before
//! any decoding are 413, bad parameters and broken files 422, formats we do not read 415.

/// Why an image could not be transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The input is larger than [`crate::Limits::max_input_bytes`].
    #[error("input is {bytes} bytes, more than the limit of {limit}")]
    InputTooLarge { bytes: usize, limit: usize },
    /// The header announces more pixels than [`crate::Limits::max_input_pixels`]: a possible
    /// decompression bomb, refused before any pixel buffer is allocated.
    #[error("input is {width}x{height} pixels, more than the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// The requested output would exceed [`crate::Limits::max_output_dimension`] (or what the
    /// output format can hold).
    #[error("output would be {width}x{height}, a side longer than the limit of {limit}")]
    OutputTooLarge { width: u32, height: u32, limit: u32 },
    /// The options make no sense (quality out of 1..=100, a zero width or height, ...).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The input is not a JPEG, PNG, WebP or (first frame of a) GIF we can read.
    #[error("unsupported input format")]
    Unsupported,
    /// The input claims a supported format but is truncated or corrupt.
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

impl ImageError {
    /// The HTTP status the image endpoint answers with for this error.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::InputTooLarge { .. } | Self::TooManyPixels { .. } => 413,
            Self::Unsupported => 415,
            Self::OutputTooLarge { .. } | Self::InvalidOptions(_) | Self::Corrupt(_) => 422,
        }
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}
