//! Encoders: libjpeg-turbo for JPEG, libwebp for WebP, the `image` crate for PNG.
//!
//! Settings follow sharp's defaults so that sizes and looks match what the team measured
//! against: JPEG baseline, 4:2:0, optimised Huffman tables (`optimiseCoding: true`); WebP lossy
//! at method 4 (sharp's `effort: 4`). Nothing but pixels is written: no EXIF, ICC or XMP.

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use turbojpeg::{Compressor, PixelFormat, Subsamp};

use crate::raster::Raster;
use crate::{ImageError, OutputFormat};

/// JPEG stores sizes in 16 bits.
pub(crate) const JPEG_MAX_DIMENSION: u32 = 65_535;
/// WebP stores sizes in 14 bits.
pub(crate) const WEBP_MAX_DIMENSION: u32 = 16_383;

/// The largest side `format` can hold.
pub(crate) fn max_dimension(format: OutputFormat) -> u32 {
    match format {
        OutputFormat::Jpeg => JPEG_MAX_DIMENSION,
        OutputFormat::Webp => WEBP_MAX_DIMENSION,
        OutputFormat::Png => i32::MAX as u32,
    }
}

/// An encoder's failure, named after the format (every encoder, libwebp's in `webp.rs` too).
pub(crate) fn failed(format: OutputFormat, e: impl std::fmt::Display) -> ImageError {
    ImageError::corrupt(format!("{} encoder: {e}", format.as_str()))
}

/// Encodes `raster` (RGB for JPEG; RGB or RGBA for PNG and WebP).
pub(crate) fn encode(
    raster: &Raster,
    format: OutputFormat,
    quality: u8,
) -> Result<Vec<u8>, ImageError> {
    match format {
        OutputFormat::Jpeg => jpeg(raster, quality),
        OutputFormat::Webp => webp(raster, quality),
        OutputFormat::Png => png(raster),
    }
}

fn jpeg(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImageError> {
    let f = |e| failed(OutputFormat::Jpeg, e);
    let mut compressor = Compressor::new().map_err(f)?;
    compressor.set_quality(i32::from(quality)).map_err(f)?;
    compressor.set_subsamp(Subsamp::Sub2x2).map_err(f)?;
    compressor.set_optimize(true).map_err(f)?;
    let (format, channels) = if raster.has_alpha() {
        (PixelFormat::RGBX, 4) // alpha ignored; callers flatten first
    } else {
        (PixelFormat::RGB, 3)
    };
    let width = raster.width as usize;
    compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: raster.data.as_slice(),
            width,
            pitch: width * channels,
            height: raster.height as usize,
            format,
        })
        .map_err(f)
}

fn webp(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImageError> {
    crate::webp::encode_rgb(raster, quality)
}

fn png(raster: &Raster) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let color = if raster.has_alpha() {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&raster.data, raster.width, raster.height, color)
        .map_err(|e| failed(OutputFormat::Png, e))?;
    Ok(out)
}
