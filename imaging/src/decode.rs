//! Decoders, one per input format, all ending in a [`Raster`] (8-bit RGB or RGBA).
//!
//! - JPEG: libjpeg-turbo through `turbojpeg`, with its DCT-domain downscale (1/2, 1/4, 1/8)
//!   picked so that the decoded image is still at least the target size. That is sharp's
//!   "shrink on load", and most of why a 12 MP photo resizes in tens of milliseconds. The usual
//!   baseline 4:2:0 photo at 1/8 or 1/4 goes to our own scaled decoder first
//!   ([`crate::scaled_jpeg`]): to planes for the planar path ([`jpeg_yuv420`]), and at 1/4 to
//!   RGB too; libjpeg-turbo takes the rest.
//! - WebP: libwebp (stills only).
//! - PNG and GIF (first frame): the `image` crate's pure-Rust decoders.
//!
//! Every decoder re-reads the size from its own header parser and checks it against the pixel
//! limit again before allocating, so a disagreement between our [`probe`](fn@crate::probe) and the codec
//! can never turn into an unchecked allocation.

use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder};
use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor, Subsamp, YuvImage};

use crate::geometry::SourceView;
use crate::raster::{Raster, buffer_len};
use crate::yuv::Yuv420;
use crate::{ImageError, InputFormat, Limits, Probe};

/// Progressive JPEGs with more scans than this are refused: each scan re-reads the whole
/// coefficient buffer, so thousands of tiny scans are a CPU bomb (libjpeg-turbo's advice).
const JPEG_SCAN_LIMIT: u32 = 500;

/// Refuses `width`x`height` when above the pixel limit.
pub(crate) fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), ImageError> {
    if u64::from(width) * u64::from(height) > limits.max_input_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            limit: limits.max_input_pixels,
        });
    }
    Ok(())
}

/// Decodes `input`, for JPEG at the smallest DCT scale that still serves `view`.
pub(crate) fn decode(
    input: &[u8],
    probe: &Probe,
    view: &SourceView,
    limits: &Limits,
) -> Result<Raster, ImageError> {
    match probe.format {
        InputFormat::Jpeg => jpeg(input, view.jpeg_denominator(), limits),
        InputFormat::Png => {
            let decoder = PngDecoder::new(Cursor::new(input)).map_err(ImageError::corrupt)?;
            with_image_crate(decoder, limits)
        }
        InputFormat::Gif => {
            let decoder = GifDecoder::new(Cursor::new(input)).map_err(ImageError::corrupt)?;
            with_image_crate(decoder, limits)
        }
        InputFormat::Webp => webp(input, limits),
    }
}

fn jpeg(input: &[u8], denominator: usize, limits: &Limits) -> Result<Raster, ImageError> {
    let tj = |e: turbojpeg::Error| ImageError::corrupt(format!("JPEG: {e}"));
    let mut decompressor = Decompressor::new().map_err(tj)?;
    let header = decompressor.read_header(input).map_err(tj)?;
    let (w, h) = (
        u32::try_from(header.width).map_err(|_| ImageError::corrupt("JPEG: width"))?,
        u32::try_from(header.height).map_err(|_| ImageError::corrupt("JPEG: height"))?,
    );
    check_pixels(w, h, limits)?;
    if is_ycbcr_420(&header)
        && let Some(rgb) = crate::scaled_jpeg::decode_rgb(input, (w, h), denominator)
    {
        return Ok(rgb);
    }
    // Lossless JPEGs cannot be scaled in the DCT domain.
    let factor = if header.is_lossless {
        ScalingFactor::ONE
    } else {
        ScalingFactor::new(1, denominator)
    };
    decompressor.set_scaling_factor(factor).map_err(tj)?;
    decompressor.set_scan_limit(JPEG_SCAN_LIMIT).map_err(tj)?;
    let scaled = header.scaled(factor);
    let (sw, sh) = (
        u32::try_from(scaled.width).map_err(|_| ImageError::corrupt("JPEG: width"))?,
        u32::try_from(scaled.height).map_err(|_| ImageError::corrupt("JPEG: height"))?,
    );
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let (format, channels) = if cmyk {
        (PixelFormat::CMYK, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let mut pixels = vec![0u8; buffer_len(sw, sh, channels)?];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: scaled.width,
        pitch: scaled.width * channels,
        height: scaled.height,
        format,
    };
    decompressor.decompress(input, image).map_err(tj)?;
    if cmyk {
        // Adobe writes inverted CMYK, which is what libjpeg hands back: each channel is already
        // "amount of white", so the naive product is the usual conversion.
        pixels = pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let [c, m, y, k] = [0, 1, 2, 3].map(|i| u32::from(p.get(i).copied().unwrap_or(0)));
                [c, m, y].map(|v| ((v * k + 127) / 255) as u8)
            })
            .collect();
    }
    Raster::new(sw, sh, 3, pixels)
}

/// Whether a JPEG is DCT-coded YCbCr 4:2:0, the kind the planar path and our own scaled
/// decoder ([`crate::scaled_jpeg`]) take.
fn is_ycbcr_420(header: &turbojpeg::DecompressHeader) -> bool {
    !header.is_lossless
        && header.subsamp == Subsamp::Sub2x2
        && matches!(header.colorspace, Colorspace::YCbCr)
}

/// A YCbCr 4:2:0 JPEG's header as libjpeg-turbo read it, and its width and height.
type YcbcrHeader = (turbojpeg::DecompressHeader, (u32, u32));

/// libjpeg-turbo's reading of a JPEG's header (from `head`, the file up to its scan at least)
/// and the size it gives, checked against the pixel limit; `None` unless it is YCbCr 4:2:0.
fn ycbcr_420_header(
    decompressor: &mut Decompressor,
    head: &[u8],
    limits: &Limits,
) -> Result<Option<YcbcrHeader>, ImageError> {
    let tj = |e: turbojpeg::Error| ImageError::corrupt(format!("JPEG: {e}"));
    let header = decompressor.read_header(head).map_err(tj)?;
    let (w, h) = (
        u32::try_from(header.width).map_err(|_| ImageError::corrupt("JPEG: width"))?,
        u32::try_from(header.height).map_err(|_| ImageError::corrupt("JPEG: height"))?,
    );
    check_pixels(w, h, limits)?;
    Ok(is_ycbcr_420(&header).then_some((header, (w, h))))
}

/// [`jpeg_yuv420`] by our own decoder alone, the scan read through `window` as it streams in
/// (its head holds the file up to the scan): `Ok(None)` when the file is not YCbCr 4:2:0 or
/// the decoder gives up (the caller then decodes the whole file as [`jpeg_yuv420`] does).
pub(crate) fn jpeg_yuv420_streamed(
    window: crate::scaled_jpeg::Window<'_>,
    denominator: usize,
    limits: &Limits,
) -> Result<Option<Yuv420>, ImageError> {
    use crate::scaled_jpeg::ScanData;
    let tj = |e: turbojpeg::Error| ImageError::corrupt(format!("JPEG: {e}"));
    let mut decompressor = Decompressor::new().map_err(tj)?;
    let Some((_, size)) = ycbcr_420_header(&mut decompressor, window.bytes(), limits)? else {
        return Ok(None);
    };
    Ok(crate::scaled_jpeg::decode(window, size, denominator))
}

/// Decodes a YCbCr 4:2:0 JPEG to planes at `1/denominator` scale; `None` for any other kind of
/// JPEG (grayscale, CMYK, other subsamplings, lossless), which take the RGB path.
pub(crate) fn jpeg_yuv420(
    input: &[u8],
    denominator: usize,
    limits: &Limits,
) -> Result<Option<Yuv420>, ImageError> {
    let tj = |e: turbojpeg::Error| ImageError::corrupt(format!("JPEG: {e}"));
    let mut decompressor = Decompressor::new().map_err(tj)?;
    let Some((header, (w, h))) = ycbcr_420_header(&mut decompressor, input, limits)? else {
        return Ok(None);
    };
    if let Some(planes) = crate::scaled_jpeg::decode(input, (w, h), denominator) {
        return Ok(Some(planes));
    }
    let factor = ScalingFactor::new(1, denominator);
    decompressor.set_scaling_factor(factor).map_err(tj)?;
    decompressor.set_scan_limit(JPEG_SCAN_LIMIT).map_err(tj)?;
    let scaled = header.scaled(factor);
    let (sw, sh) = (
        u32::try_from(scaled.width).map_err(|_| ImageError::corrupt("JPEG: width"))?,
        u32::try_from(scaled.height).map_err(|_| ImageError::corrupt("JPEG: height"))?,
    );
    // Bounded by the pixel check above: 1.5 bytes a pixel plus padding.
    let len =
        turbojpeg::yuv_pixels_len(scaled.width, 1, scaled.height, Subsamp::Sub2x2).map_err(tj)?;
    let mut pixels = vec![0u8; len];
    decompressor
        .decompress_to_yuv(
            input,
            YuvImage {
                pixels: pixels.as_mut_slice(),
                width: scaled.width,
                align: 1,
                height: scaled.height,
                subsamp: Subsamp::Sub2x2,
            },
        )
        .map_err(tj)?;
    Yuv420::from_packed(sw, sh, pixels).map(Some)
}

fn with_image_crate(mut decoder: impl ImageDecoder, limits: &Limits) -> Result<Raster, ImageError> {
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImageError::corrupt("zero-sized image"));
    }
    check_pixels(w, h, limits)?;
    // Let the decoder refuse anything beyond the pixel limit at 16-bit RGBA, plus slack for its
    // own buffers, so no path inside it can allocate without bound either.
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(
        limits
            .max_input_pixels
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    decoder
        .set_limits(image_limits)
        .map_err(ImageError::corrupt)?;
    let has_alpha = decoder.color_type().has_alpha();
    let image = DynamicImage::from_decoder(decoder).map_err(ImageError::corrupt)?;
    let raster = if has_alpha {
        Raster::new(w, h, 4, image.into_rgba8().into_raw())?
    } else {
        Raster::new(w, h, 3, image.into_rgb8().into_raw())?
    };
    Ok(raster.drop_opaque_alpha())
}

fn webp(input: &[u8], limits: &Limits) -> Result<Raster, ImageError> {
    let features =
        crate::webp::features(input).ok_or_else(|| ImageError::corrupt("WebP header"))?;
    if features.animated {
        return Err(ImageError::Unsupported);
    }
    check_pixels(features.width, features.height, limits)?;
    let raster = crate::webp::decode(input, &features)
        .ok_or_else(|| ImageError::corrupt("WebP: cannot decode"))?;
    Ok(raster.drop_opaque_alpha())
}
