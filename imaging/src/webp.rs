//! libwebp, called directly: the one module of the workspace with `unsafe` code.
//!
//! Why not the `webp` crate: it pins libwebp 1.3, and libwebp 1.6 (the version sharp ships, with
//! the same output for the same pixels) encodes the bench's 800-pixel WebP about 15% faster.
//!
//! Every call below is one libwebp entry point with buffers whose sizes were checked first; each
//! `unsafe` block says what it relies on. Memory libwebp allocates (the picture's planes, the
//! encoded bytes) is freed by a guard, also on error paths; decoding writes into our buffer.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr;

use libwebp_sys as sys;

use crate::raster::{Raster, buffer_len};
use crate::{ImageError, OutputFormat};

fn failed(what: impl std::fmt::Display) -> ImageError {
    crate::encode::failed(OutputFormat::Webp, what)
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
    /// An initialised, empty picture of `width`x`height` that imports straight to YUV 4:2:0 (as
    /// libvips does for lossy WebP: the same conversion WebPEncode would run on ARGB, without
    /// the ARGB copy in between; same bytes, 3% faster).
    fn new(width: u32, height: u32) -> Result<Box<Self>, ImageError> {
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
        p.use_argb = 0;
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
        // the picture's pixels were imported by libwebp into memory it owns; the writer
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
    let mut encoding = Encoding::new(raster.width, raster.height)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

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
