//! Lumi's image transforms: read a JPEG, PNG, WebP or GIF (first frame), apply its EXIF
//! orientation, resize it with Lanczos3 to one of sharp's fit modes, and write JPEG, PNG or WebP
//! without metadata. Pure computation: no AWS, no HTTP, no I/O, no global state.
//!
//! It exists because the image Lambda must beat sharp (libvips) on its own ground, on one core:
//! the JPEG decoder shrinks in the DCT domain (1/2, 1/4, 1/8) so most of a 12 MP photo is never
//! turned into pixels, `fast_image_resize` does the Lanczos3 convolution with SIMD, and
//! libjpeg-turbo and libwebp encode. `imaging-bench` (src/bin) and `bench/run.sh` measure it
//! against sharp.
//!
//! The paths, fastest first:
//! - baseline 4:2:0 JPEG in, JPEG out, at 1/8 or 1/4 (thumbnails, the 800-pixel resize of a
//!   12 MP photo): our own scaled decoder (`scaled_jpeg`) straight to Y/Cb/Cr planes, planes
//!   resampled, planes encoded (`yuv`): no colour conversion at all;
//! - other 4:2:0 JPEG to JPEG: the same with libjpeg-turbo decoding the planes;
//! - everything else: decode to RGB(A) (`decode`; a baseline 4:2:0 JPEG at 1/4 again by
//!   `scaled_jpeg`, pixel for pixel what libjpeg-turbo gives), resample (`resize`), orient and
//!   pad (`raster`), encode (`encode`).
//!
//! # Safety against hostile input
//! [`transform`] checks, in this order and from the header alone: the input size
//! ([`ImageError::InputTooLarge`]), the pixel count the header announces
//! ([`ImageError::TooManyPixels`], the decompression-bomb guard), then the output size
//! ([`ImageError::OutputTooLarge`]); only then does it allocate pixels. The decoders re-check the
//! pixel count from their own header parse. No input makes it panic: the test suite feeds it
//! truncated and bit-flipped files of every format.
//!
//! # Orientation
//! The EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF) is applied before fitting, so `width`
//! and `height` are those of the image as displayed. For a displayed pixel (x, y) of a stored
//! `sw`x`sh` image, the stored pixel is:
//!
//! | orientation | meaning | stored (sx, sy) |
//! |---|---|---|
//! | 1 | as stored | (x, y) |
//! | 2 | mirrored left-right | (sw-1-x, y) |
//! | 3 | turned 180° | (sw-1-x, sh-1-y) |
//! | 4 | mirrored top-bottom | (x, sh-1-y) |
//! | 5 | transposed | (y, x) |
//! | 6 | turned 90° clockwise | (y, sh-1-x) |
//! | 7 | transversed | (sw-1-y, sh-1-x) |
//! | 8 | turned 90° counter-clockwise | (sw-1-y, x) |
//!
//! # Options
//! Quality must be 1..=100 (validated for PNG too, where it is unused) and a given width or
//! height must be at least 1, or [`ImageError::InvalidOptions`]. Any fit accepts a single side
//! (the other follows the aspect ratio) or none (size kept); see [`Fit`]. Animated WebP is
//! [`ImageError::Unsupported`]; animated GIF gives its first frame.

mod decode;
mod encode;
mod error;
mod geometry;
mod options;
mod probe;
mod raster;
mod resize;
mod scaled_jpeg;
mod webp;
mod yuv;

pub use error::ImageError;
pub use options::{Fit, InputFormat, Limits, OutputFormat, TransformOptions};
pub use probe::{Probe, probe, sniff};

/// The result of [`transform`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The encoded image.
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    /// Output size.
    pub width: u32,
    pub height: u32,
    /// What the input's header said.
    pub input: Probe,
    /// Pixels the decoder produced (after libjpeg-turbo's DCT downscale): a measure of the work.
    pub decoded_pixels: u64,
}

/// Background of contain padding and of flattened transparency in JPEG output.
const WHITE: [u8; 3] = [255, 255, 255];

/// Decodes `input`, orients, fits and re-encodes it as `options` say, within `limits`.
///
/// # Errors
/// See [`ImageError`]: limits (checked before decoding), invalid options, unsupported or corrupt
/// input.
pub fn transform(
    input: &[u8],
    options: &TransformOptions,
    limits: &Limits,
) -> Result<Transformed, ImageError> {
    if input.len() > limits.max_input_bytes {
        return Err(ImageError::InputTooLarge {
            bytes: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    options.validate()?;
    let detailed = probe::probe_detailed(input)?;
    let probe = detailed.probe;
    decode::check_pixels(probe.width, probe.height, limits)?;
    if detailed.animated {
        return Err(ImageError::Unsupported);
    }

    let (dw, dh) = probe.display_size();
    let max_dimension = limits
        .max_output_dimension
        .min(encode::max_dimension(options.format));
    let plan = geometry::plan(dw, dh, options, max_dimension)?;
    let swapped = probe::swaps_axes(probe.orientation);
    let view = plan.source_view(probe.width, probe.height, swapped);

    // 4:2:0 JPEG to JPEG without padding: the planar path (see `yuv`). WebP takes the RGB path:
    // handing libwebp the planes (remapped to its limited range) measured 2% faster (5% with
    // half-size chroma planes), but its chroma then comes from JPEG's planes instead of
    // libwebp's own conversion from RGB, which sharp's output has: the PSNR against sharp's
    // output fell from 36.9 to 36.1 dB (against the lossless resize it rose by 0.07 dB).
    let planar = probe.format == InputFormat::Jpeg
        && options.format == OutputFormat::Jpeg
        && (plan.out_w, plan.out_h) == (plan.content_w, plan.content_h);
    if planar && let Some(planes) = decode::jpeg_yuv420(input, view.jpeg_denominator(), limits)? {
        let decoded_pixels = u64::from(planes.width) * u64::from(planes.height);
        let view = view.scaled(
            f64::from(planes.width) / f64::from(probe.width),
            f64::from(planes.height) / f64::from(probe.height),
            planes.width,
            planes.height,
        );
        // Always resampled, if only to a copy: it also cuts the decoder's even-size padding.
        let resized = planes.resize(&view)?;
        // Freed before encoding, so that the encoder's buffers reuse its memory: a fresh
        // process (a new container's first request) then faults in some 300 fewer new pages.
        drop(planes);
        let planes = resized.orient(probe.orientation);
        let bytes = planes.encode_jpeg(options.quality)?;
        return Ok(Transformed {
            bytes,
            format: options.format,
            width: planes.width,
            height: planes.height,
            input: probe,
            decoded_pixels,
        });
    }

    let decoded = decode::decode(input, &probe, &view, limits)?;
    let decoded_pixels = u64::from(decoded.width) * u64::from(decoded.height);
    // The decoder may have scaled (JPEG) so map the region onto what it produced.
    let view = view.scaled(
        f64::from(decoded.width) / f64::from(probe.width),
        f64::from(decoded.height) / f64::from(probe.height),
        decoded.width,
        decoded.height,
    );
    let resized = if view.is_identity(decoded.width, decoded.height) {
        decoded
    } else {
        let resized = resize::resize(&decoded, view.region, view.target_w, view.target_h)?;
        drop(decoded);
        resized
    };
    let mut raster = resized.orient(probe.orientation);

    let padded = (raster.width, raster.height) != (plan.out_w, plan.out_h);
    if options.format == OutputFormat::Jpeg {
        raster = raster.flatten(WHITE);
        if padded {
            raster = raster.pad(plan.out_w, plan.out_h, plan.offset_x, plan.offset_y, &WHITE)?;
        }
    } else if padded {
        raster = raster.with_alpha().pad(
            plan.out_w,
            plan.out_h,
            plan.offset_x,
            plan.offset_y,
            &[0, 0, 0, 0],
        )?;
    }

    let bytes = encode::encode(&raster, options.format, options.quality)?;
    Ok(Transformed {
        bytes,
        format: options.format,
        width: raster.width,
        height: raster.height,
        input: probe,
        decoded_pixels,
    })
}
