//! Lumi's image transforms: read a JPEG, PNG, WebP or GIF (first frame), apply its EXIF
//! orientation, resize it with Lanczos3 to one of sharp's fit modes, and write JPEG, PNG or WebP
//! without metadata. Computation: no AWS, no HTTP, no global state, and no I/O of its own
//! ([`transform_streamed`] reads its input through the caller's [`Source`]).
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
    let prepared = Prepared::new(input, options, limits)?;
    if prepared.planar
        && let Some(planes) = decode::jpeg_yuv420(input, prepared.view.jpeg_denominator(), limits)?
    {
        return prepared.finish_planar(planes, options);
    }
    prepared.finish_rgb(input, options, limits)
}

/// Where [`transform_streamed`] reads its input.
pub trait Source {
    /// Why a read failed.
    type Error;
    /// Reads the next bytes into `buf`, as [`std::io::Read::read`]: 0 at the end.
    ///
    /// # Errors
    /// The input could not be read.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// The whole input again from its first byte, at most `limit` bytes (a longer input may be
    /// cut there: it is refused anyway): for a decode that must start over from bytes it did
    /// not keep.
    ///
    /// # Errors
    /// The input could not be read.
    fn reread(&mut self, limit: usize) -> Result<Vec<u8>, Self::Error>;
}

/// A file (or anything else that can seek back to its start) is a source as it is.
impl<R: std::io::Read + std::io::Seek> Source for R {
    type Error = std::io::Error;

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(self, buf)
    }

    fn reread(&mut self, limit: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        self.rewind()?;
        let mut whole = Vec::new();
        self.take(limit as u64).read_to_end(&mut whole)?;
        Ok(whole)
    }
}

/// Why [`transform_streamed`] failed.
#[derive(Debug)]
pub enum StreamError<E> {
    /// As [`transform`] would have failed on the whole input.
    Image(ImageError),
    /// The source could not be read.
    Source(E),
}

impl<E> From<ImageError> for StreamError<E> {
    fn from(error: ImageError) -> Self {
        Self::Image(error)
    }
}

/// [`transform`] of an input read from `source` as it is decoded, for the usual photo (a
/// baseline 4:2:0 JPEG bound for JPEG at 1/4 or 1/8 scale) without ever holding the whole of
/// it: the headers are read, then the scan streams through a 64 KiB window into our scaled
/// decoder. Why: a fresh process (a new Lambda container's first request) pays a page fault for
/// every 4 KiB it touches the first time, and the input buffer was a third of those; and a
/// stream from S3 is decoded while it arrives.
///
/// Everything else (other formats, other paths, a scan our decoder gives up on) reads the whole
/// input, [`Source::reread`] when the stream was already partly consumed, and is [`transform`].
/// The result is byte for byte [`transform`]'s. The input size limit bounds what is read.
///
/// # Errors
/// [`StreamError::Image`] as [`transform`]; [`StreamError::Source`] when `source` fails.
pub fn transform_streamed<S: Source>(
    source: &mut S,
    options: &TransformOptions,
    limits: &Limits,
) -> Result<Transformed, StreamError<S::Error>> {
    let limit = limits.max_input_bytes;
    // At most the limit and one byte more (to tell a longer input).
    let cap = limit.saturating_add(1);
    let mut head = Vec::new();
    let mut ended = read_up_to(source, &mut head, scaled_jpeg::WINDOW_BYTES.min(cap))?;
    // Metadata can push the scan past the first window: a window more at a time.
    while !ended && head.len() < cap && scaled_jpeg::scan_start(&head) == Ok(None) {
        let more = (head.len() + scaled_jpeg::WINDOW_BYTES).min(cap);
        ended = read_up_to(source, &mut head, more)?;
    }
    let streams =
        !ended && head.len() < cap && matches!(scaled_jpeg::scan_start(&head), Ok(Some(_)));
    if streams {
        let prepared = Prepared::new(&head, options, limits)?;
        let denominator = prepared.view.jpeg_denominator();
        if prepared.planar && matches!(denominator, 4 | 8) {
            let mut read = head.len();
            let mut failed = None;
            let mut next = |buf: &mut [u8]| {
                let room = cap.saturating_sub(read).min(buf.len());
                match source.read(&mut buf[..room]) {
                    Ok(n) => {
                        read += n;
                        n
                    }
                    Err(error) => {
                        failed = Some(error);
                        0
                    }
                }
            };
            let window = scaled_jpeg::Window::new(head, &mut next);
            let planes = decode::jpeg_yuv420_streamed(window, denominator, limits)?;
            if let Some(error) = failed {
                return Err(StreamError::Source(error));
            }
            return match planes {
                Some(planes) if read <= limit => Ok(prepared.finish_planar(planes, options)?),
                // Given up, or read past the limit: the whole input, as `transform` takes it.
                _ => {
                    let whole = source.reread(cap).map_err(StreamError::Source)?;
                    Ok(transform(&whole, options, limits)?)
                }
            };
        }
    }
    if !ended {
        read_up_to(source, &mut head, cap)?;
    }
    Ok(transform(&head, options, limits)?)
}

/// Reads from `source` into `buf` until it holds `len` bytes or the input ends; whether it
/// ended.
fn read_up_to<S: Source>(
    source: &mut S,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<bool, StreamError<S::Error>> {
    let mut filled = buf.len();
    let mut ended = false;
    while filled < len {
        // Grown a window at a time: `len` may be the whole size limit, and a buffer of that
        // size, zeroed, would touch every page of it for a small input.
        buf.resize(len.min(filled + scaled_jpeg::WINDOW_BYTES), 0);
        let n = source
            .read(&mut buf[filled..])
            .map_err(StreamError::Source)?;
        if n == 0 {
            ended = true;
            break;
        }
        filled += n.min(buf.len() - filled);
    }
    buf.truncate(filled);
    Ok(ended)
}

/// A transform decided from the input's header: what the input is, the output's plan, the
/// region of the source it shows, and whether it takes the planar path.
struct Prepared {
    probe: Probe,
    plan: geometry::Plan,
    view: geometry::SourceView,
    planar: bool,
}

impl Prepared {
    /// Checks the options and the limits that the header alone decides (pixels, output size),
    /// in that order: nothing is decoded before.
    fn new(input: &[u8], options: &TransformOptions, limits: &Limits) -> Result<Self, ImageError> {
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
        // 4:2:0 JPEG to JPEG without padding: the planar path (see `yuv`). WebP takes the RGB
        // path: handing libwebp the planes (remapped to its limited range) measured 2% faster
        // (5% with half-size chroma planes), but its chroma then comes from JPEG's planes
        // instead of libwebp's own conversion from RGB, which sharp's output has: the PSNR
        // against sharp's output fell from 36.9 to 36.1 dB (against the lossless resize it
        // rose by 0.07 dB).
        let planar = probe.format == InputFormat::Jpeg
            && options.format == OutputFormat::Jpeg
            && (plan.out_w, plan.out_h) == (plan.content_w, plan.content_h);
        Ok(Self {
            probe,
            plan,
            view,
            planar,
        })
    }

    /// The view mapped onto what the decoder produced, `width`x`height` (a JPEG decoder may
    /// have scaled it), and that many pixels: the measure of the decode's work.
    fn onto_decoded(&self, width: u32, height: u32) -> (geometry::SourceView, u64) {
        let view = self.view.scaled(
            f64::from(width) / f64::from(self.probe.width),
            f64::from(height) / f64::from(self.probe.height),
            width,
            height,
        );
        (view, u64::from(width) * u64::from(height))
    }

    /// The planar path from decoded planes: resampled, oriented, encoded.
    fn finish_planar(
        self,
        planes: yuv::Yuv420,
        options: &TransformOptions,
    ) -> Result<Transformed, ImageError> {
        let (view, decoded_pixels) = self.onto_decoded(planes.width, planes.height);
        let probe = self.probe;
        // Always resampled, if only to a copy: it also cuts the decoder's even-size padding.
        let resized = planes.resize(&view)?;
        // Freed before encoding, so that the encoder's buffers reuse its memory: a fresh
        // process (a new container's first request) then faults in some 300 fewer new pages.
        drop(planes);
        let planes = resized.orient(probe.orientation);
        let bytes = planes.encode_jpeg(options.quality)?;
        Ok(Transformed {
            bytes,
            format: options.format,
            width: planes.width,
            height: planes.height,
            input: probe,
            decoded_pixels,
        })
    }

    /// The RGB path: decode, resample, orient, pad, encode.
    fn finish_rgb(
        self,
        input: &[u8],
        options: &TransformOptions,
        limits: &Limits,
    ) -> Result<Transformed, ImageError> {
        let decoded = decode::decode(input, &self.probe, &self.view, limits)?;
        let (view, decoded_pixels) = self.onto_decoded(decoded.width, decoded.height);
        let Self { probe, plan, .. } = self;
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
                raster =
                    raster.pad(plan.out_w, plan.out_h, plan.offset_x, plan.offset_y, &WHITE)?;
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
}
