//! libwebp, called directly: the one module of the workspace with `unsafe` code.
//!
//! Why not the `webp` crate: it takes RGB(A) only, and pins libwebp 1.3. The planar path hands
//! the encoder YUV 4:2:0 planes (no colour conversion on either side, see [`crate::yuv`]), and
//! libwebp 1.6 is the version sharp ships, so the two encoders make the same choices.
//!
//! Every call below is one libwebp entry point with buffers whose sizes were checked first; each
//! `unsafe` block says what it relies on. Memory libwebp allocates (the picture's planes, the
//! encoded bytes, a decoded image) is freed by a guard, also on error paths.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr;

use libwebp_sys as sys;

use crate::ImageError;
use crate::raster::{Raster, buffer_len};

fn failed(what: impl std::fmt::Display) -> ImageError {
    ImageError::corrupt(format!("webp encoder: {what}"))
}

/// What the header says: size, alpha, animation.
pub(crate) struct Features {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub animated: bool,
}

/// Reads the bitstream header; `None` when it is not a WebP libwebp can read.
pub(crate) fn features(input: &[u8]) -> Option<Features> {
    let mut f = std::mem::MaybeUninit::<sys::WebPBitstreamFeatures>::zeroed();
    // SAFETY: `input` is a live slice of `input.len()` bytes; `f` is a writable struct of the
    // type libwebp fills (ABI version from the same headers).
    let status = unsafe {
        sys::WebPGetFeaturesInternal(
            input.as_ptr(),
            input.len(),
            f.as_mut_ptr(),
            sys::WEBP_DECODER_ABI_VERSION as c_int,
        )
    };
    if status != sys::VP8StatusCode::VP8_STATUS_OK {
        return None;
    }
    // SAFETY: libwebp filled the struct (status OK); it was zeroed before in any case.
    let f = unsafe { f.assume_init() };
    Some(Features {
        width: u32::try_from(f.width).ok()?,
        height: u32::try_from(f.height).ok()?,
        has_alpha: f.has_alpha != 0,
        animated: f.has_animation != 0,
    })
}

/// Decodes a still WebP to RGB, or RGBA when it has alpha. The caller has checked the size
/// against its limits with [`features`].
pub(crate) fn decode(input: &[u8], features: &Features) -> Option<Raster> {
    let channels = if features.has_alpha { 4 } else { 3 };
    let len = buffer_len(features.width, features.height, channels).ok()?;
    let stride = c_int::try_from(features.width as usize * channels).ok()?;
    let mut pixels = vec![0u8; len];
    // SAFETY: libwebp writes at most `len` bytes (`stride` x height, checked by libwebp against
    // the buffer size passed) into `pixels`, which lives across the call; it returns null when
    // the bitstream's size disagrees with the buffer or the data is corrupt.
    let written = unsafe {
        if features.has_alpha {
            sys::WebPDecodeRGBAInto(
                input.as_ptr(),
                input.len(),
                pixels.as_mut_ptr(),
                len,
                stride,
            )
        } else {
            sys::WebPDecodeRGBInto(
                input.as_ptr(),
                input.len(),
                pixels.as_mut_ptr(),
                len,
                stride,
            )
        }
    };
    if written.is_null() {
        return None;
    }
    Raster::new(features.width, features.height, channels, pixels).ok()
}

/// A picture and the memory writer it encodes into, freed on drop.
struct Encoding {
    picture: sys::WebPPicture,
    writer: sys::WebPMemoryWriter,
}

impl Drop for Encoding {
    fn drop(&mut self) {
        // SAFETY: both were initialised by libwebp in `Encoding::new`; freeing an unallocated
        // picture or an empty writer is a no-op.
        unsafe {
            sys::WebPPictureFree(&mut self.picture);
            sys::WebPMemoryWriterClear(&mut self.writer);
        }
    }
}

impl Encoding {
    /// An initialised, empty picture of `width`x`height`, in ARGB or YUV 4:2:0.
    fn new(width: u32, height: u32, argb: bool) -> Result<Box<Self>, ImageError> {
        let mut picture = std::mem::MaybeUninit::<sys::WebPPicture>::zeroed();
        // SAFETY: `picture` is a writable struct of the type libwebp initialises.
        let ok = unsafe {
            sys::WebPPictureInitInternal(
                picture.as_mut_ptr(),
                sys::WEBP_ENCODER_ABI_VERSION as c_int,
            )
        };
        if ok == 0 {
            return Err(failed("picture init"));
        }
        let mut writer = std::mem::MaybeUninit::<sys::WebPMemoryWriter>::zeroed();
        // SAFETY: as above, for the writer.
        unsafe { sys::WebPMemoryWriterInit(writer.as_mut_ptr()) };
        // SAFETY: both initialised just above.
        let mut this = Box::new(unsafe {
            Self {
                picture: picture.assume_init(),
                writer: writer.assume_init(),
            }
        });
        let p = &mut this.picture;
        p.use_argb = c_int::from(argb);
        p.colorspace = sys::WebPEncCSP::WEBP_YUV420;
        p.width = c_int::try_from(width).map_err(|_| failed("width"))?;
        p.height = c_int::try_from(height).map_err(|_| failed("height"))?;
        Ok(this)
    }

    /// Encodes the picture at `quality`, method 4 (sharp's default effort), into the writer.
    fn encode(mut self: Box<Self>, quality: u8) -> Result<Vec<u8>, ImageError> {
        let mut config = std::mem::MaybeUninit::<sys::WebPConfig>::zeroed();
        // SAFETY: `config` is a writable struct of the type libwebp initialises.
        let ok = unsafe {
            sys::WebPConfigInitInternal(
                config.as_mut_ptr(),
                sys::WebPPreset::WEBP_PRESET_DEFAULT,
                f32::from(quality),
                sys::WEBP_ENCODER_ABI_VERSION as c_int,
            )
        };
        if ok == 0 {
            return Err(failed("config init"));
        }
        // SAFETY: initialised just above.
        let mut config = unsafe { config.assume_init() };
        config.quality = f32::from(quality);
        config.method = 4;
        self.picture.writer = Some(sys::WebPMemoryWrite);
        // The box keeps the writer's address stable while libwebp writes through this pointer.
        self.picture.custom_ptr = ptr::from_mut(&mut self.writer).cast();
        // SAFETY: `config` and `picture` are initialised and valid (libwebp validates both);
        // the picture's planes were allocated by libwebp and filled by the caller; the writer
        // outlives the call.
        let ok = unsafe { sys::WebPEncode(&config, &mut self.picture) };
        if ok == 0 {
            return Err(failed(format!("{:?}", self.picture.error_code)));
        }
        let (mem, size) = (self.writer.mem, self.writer.size);
        if mem.is_null() {
            return Err(failed("no output"));
        }
        // SAFETY: the writer holds `size` bytes at `mem`, valid until the writer is cleared
        // (when `self` drops, after the copy).
        Ok(unsafe { std::slice::from_raw_parts(mem, size) }.to_vec())
    }
}

/// Encodes an RGB or RGBA raster as lossy WebP.
pub(crate) fn encode_rgb(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImageError> {
    let channels = raster.channels;
    if !matches!(channels, 3 | 4) {
        return Err(failed("expects RGB or RGBA"));
    }
    let stride = c_int::try_from(raster.width as usize * channels).map_err(|_| failed("width"))?;
    if raster.data.len() != buffer_len(raster.width, raster.height, channels)? {
        return Err(failed("buffer size"));
    }
    let mut encoding = Encoding::new(raster.width, raster.height, true)?;
    // SAFETY: the picture is initialised with this raster's size; `data` holds exactly
    // `stride` x height bytes (checked above) and libwebp only reads it, into memory it
    // allocates itself for the picture.
    let ok = unsafe {
        if channels == 4 {
            sys::WebPPictureImportRGBA(&mut encoding.picture, raster.data.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut encoding.picture, raster.data.as_ptr(), stride)
        }
    };
    if ok == 0 {
        return Err(failed("import"));
    }
    encoding.encode(quality)
}

/// Encodes YCbCr 4:2:0 planes in JPEG's full range (Y, Cb and Cr all 0..=255) as lossy WebP,
/// whose planes are BT.601 limited range (Y 16..=235, chroma 16..=240): the same matrix, so a
/// per-sample table maps one onto the other and no colour conversion is needed.
///
/// `y` is at least `width`x`height` and each chroma plane at least half that, rounded up.
pub(crate) fn encode_yuv420(
    width: u32,
    height: u32,
    y: &Raster,
    cb: &Raster,
    cr: &Raster,
    quality: u8,
) -> Result<Vec<u8>, ImageError> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let fits = |p: &Raster, pw: usize, ph: usize| {
        p.channels == 1
            && p.width as usize >= pw
            && p.height as usize >= ph
            && p.data.len() == p.width as usize * p.height as usize
    };
    if w == 0 || h == 0 || !fits(y, w, h) || !fits(cb, cw, ch) || !fits(cr, cw, ch) {
        return Err(failed("planes smaller than the image"));
    }
    let mut encoding = Encoding::new(width, height, false)?;
    // SAFETY: the picture is initialised as YUV 4:2:0 of `width`x`height`; libwebp allocates
    // its planes.
    if unsafe { sys::WebPPictureAlloc(&mut encoding.picture) } == 0 {
        return Err(failed("out of memory"));
    }
    let p = &encoding.picture;
    let (y_stride, uv_stride) = (
        usize::try_from(p.y_stride).map_err(|_| failed("stride"))?,
        usize::try_from(p.uv_stride).map_err(|_| failed("stride"))?,
    );
    if y_stride < w || uv_stride < cw || p.y.is_null() || p.u.is_null() || p.v.is_null() {
        return Err(failed("picture planes"));
    }
    // SAFETY: `WebPPictureAlloc` allocated a Y plane of `y_stride` x `height` bytes and U and V
    // planes of `uv_stride` x ceil(height / 2), owned by the picture until it is freed, and
    // nothing else refers to them while these slices live (they end before `encode`).
    let (py, pu, pv) = unsafe {
        (
            std::slice::from_raw_parts_mut(p.y, y_stride * h),
            std::slice::from_raw_parts_mut(p.u, uv_stride * ch),
            std::slice::from_raw_parts_mut(p.v, uv_stride * ch),
        )
    };
    let (luma, chroma) = (limited_range_table(219), limited_range_table(224));
    copy_mapped(y, w, h, py, y_stride, &luma);
    copy_mapped(cb, cw, ch, pu, uv_stride, &chroma);
    copy_mapped(cr, cw, ch, pv, uv_stride, &chroma);
    encoding.encode(quality)
}

/// Full range (0..=255) to limited range: `16 + v * span / 255` for luma (span 219), `128 + (v
/// - 128) * span / 255` for chroma (span 224), rounded to nearest.
fn limited_range_table(span: u8) -> [u8; 256] {
    let (offset, centre) = if span == 219 {
        (16.0, 0.0)
    } else {
        (128.0, 128.0)
    };
    let mut table = [0u8; 256];
    for (v, out) in (0u8..=255).zip(table.iter_mut()) {
        let mapped = offset + (f64::from(v) - centre) * f64::from(span) / 255.0;
        *out = mapped.round().clamp(0.0, 255.0) as u8;
    }
    table
}

/// Copies the top-left `w`x`h` of `src` into `dst` (rows `stride` apart) through `table`.
fn copy_mapped(src: &Raster, w: usize, h: usize, dst: &mut [u8], stride: usize, table: &[u8; 256]) {
    let src_stride = src.width as usize;
    for (row, out) in src
        .data
        .chunks_exact(src_stride)
        .take(h)
        .zip(dst.chunks_mut(stride))
    {
        for (o, &v) in out.iter_mut().zip(row.iter().take(w)) {
            *o = table[usize::from(v)];
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_range_tables_keep_the_ends_and_the_middle() {
        let luma = limited_range_table(219);
        assert_eq!((luma[0], luma[255]), (16, 235));
        let chroma = limited_range_table(224);
        assert_eq!((chroma[0], chroma[128], chroma[255]), (16, 128, 240));
        assert!(luma.windows(2).all(|w| w[0] <= w[1]));
        assert!(chroma.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn planes_smaller_than_the_image_are_refused_before_libwebp() {
        let plane = |w, h| Raster::new(w, h, 1, vec![0; (w * h) as usize]).unwrap();
        let err = encode_yuv420(16, 16, &plane(16, 16), &plane(7, 8), &plane(8, 8), 80);
        assert!(err.is_err());
        assert!(encode_yuv420(16, 16, &plane(16, 16), &plane(8, 8), &plane(8, 8), 80).is_ok());
    }

    #[test]
    fn rgb_round_trips_through_libwebp() {
        let raster = Raster::new(
            33,
            17,
            3,
            (0..33 * 17 * 3).map(|i| (i % 251) as u8).collect(),
        )
        .unwrap();
        let bytes = encode_rgb(&raster, 90).unwrap();
        let f = features(&bytes).unwrap();
        assert_eq!(
            (f.width, f.height, f.has_alpha, f.animated),
            (33, 17, false, false)
        );
        let back = decode(&bytes, &f).unwrap();
        assert_eq!((back.width, back.height, back.channels), (33, 17, 3));
        assert!(features(b"RIFF\0\0\0\0WEBPjunk").is_none());
    }
}
