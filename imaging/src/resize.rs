//! Lanczos3 resampling of a region of a [`Raster`] with `fast_image_resize` (SIMD convolution,
//! sharp's default kernel).
//!
//! Cover crops are not cut after resizing as sharp does: the centred source region is handed to
//! the resampler as a fractional crop box, so only the output pixels are computed and the crop is
//! placed with sub-pixel precision. Alpha is premultiplied around the convolution so transparent
//! pixels do not bleed their colour into opaque neighbours.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::ImageError;
use crate::geometry::Region;
use crate::raster::{Raster, buffer_len};

fn pixel_type(channels: usize) -> PixelType {
    match channels {
        1 => PixelType::U8,
        4 => PixelType::U8x4,
        _ => PixelType::U8x3,
    }
}

/// Resamples `region` of `src` to `width`x`height`.
pub(crate) fn resize(
    src: &Raster,
    region: Region,
    width: u32,
    height: u32,
) -> Result<Raster, ImageError> {
    let failed = |e: &dyn std::fmt::Display| ImageError::corrupt(format!("resize failed: {e}"));
    let pt = pixel_type(src.channels);
    let src_image = ImageRef::new(src.width, src.height, &src.data, pt).map_err(|e| failed(&e))?;
    let mut dst = Image::from_vec_u8(
        width,
        height,
        vec![0; buffer_len(width, height, src.channels)?],
        pt,
    )
    .map_err(|e| failed(&e))?;

    // Keep the box inside the image despite floating-point rounding.
    let (sw, sh) = (f64::from(src.width), f64::from(src.height));
    let left = region.left.clamp(0.0, (sw - 1.0).max(0.0));
    let top = region.top.clamp(0.0, (sh - 1.0).max(0.0));
    let crop_w = region.width.clamp(1.0_f64.min(sw), sw - left);
    let crop_h = region.height.clamp(1.0_f64.min(sh), sh - top);

    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(left, top, crop_w, crop_h)
        .use_alpha(src.channels == 4);
    Resizer::new()
        .resize(&src_image, &mut dst, &options)
        .map_err(|e| failed(&e))?;
    Raster::new(width, height, src.channels, dst.into_vec())
}
