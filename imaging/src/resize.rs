//! Lanczos3 resampling of a region of a [`Raster`] with `fast_image_resize` (SIMD convolution,
//! sharp's default kernel).
//!
//! Cover crops are not cut after resizing as sharp does: the centred source region is handed to
//! the resampler as a fractional crop box, so only the output pixels are computed and the crop is
//! placed with sub-pixel precision. Alpha is premultiplied around the convolution so transparent
//! pixels do not bleed their colour into opaque neighbours.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{Filter, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::ImageError;
use crate::geometry::Region;
use crate::raster::{Raster, buffer_len};

/// `fast_image_resize`'s Lanczos3 kernel, `sinc(x) * sinc(x / 3)` on -3..3, with one `sin`
/// instead of two: `sin(pi x)` is `sin(3 t)` for `t = pi x / 3`, that is `s (3 - 4 s^2)` with
/// `s = sin(t)`, which the second factor computes anyway. The kernel is evaluated for every tap
/// of every output row and column of every plane (about 35,000 times for an 800-pixel resize of
/// a 12 MP photo at 1/4), and its two `sin` calls were 2% of that transform. The weights differ
/// from the library's in the last bits of an `f64` at most, far below the 1/2^14 steps they are
/// rounded to (`the_kernel_is_the_librarys`).
fn lanczos3(x: f64) -> f64 {
    use std::f64::consts::PI;
    if !(-3.0..3.0).contains(&x) {
        return 0.0;
    }
    if x == 0.0 {
        return 1.0;
    }
    // As the library computes sinc(x / 3).
    let t = x / 3.0 * PI;
    let s = t.sin();
    let sin_pi_x = s * (3.0 - 4.0 * s * s);
    sin_pi_x / (x * PI) * (s / t)
}

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

    let lanczos3 = Filter::new("Lanczos3", lanczos3, 3.0).map_err(|e| failed(&e))?;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Custom(lanczos3)))
        .crop(left, top, crop_w, crop_h)
        .use_alpha(src.channels == 4);
    Resizer::new()
        .resize(&src_image, &mut dst, &options)
        .map_err(|e| failed(&e))?;
    Raster::new(width, height, src.channels, dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's own Lanczos3, as `fast_image_resize` 6.1 writes it.
    fn library_lanczos3(x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        };
        if (-3.0..3.0).contains(&x) {
            sinc(x) * sinc(x / 3.0)
        } else {
            0.0
        }
    }

    #[test]
    fn the_kernel_is_the_librarys() {
        let mut worst = 0.0f64;
        for i in -400_000..=400_000 {
            let x = f64::from(i) / 100_000.0 + 1e-7;
            worst = worst.max((lanczos3(x) - library_lanczos3(x)).abs());
        }
        assert!(worst < 1e-14, "{worst}");
        for x in [-3.0, 3.0, 0.0, 1.0, -2.0, 2.5] {
            assert!((lanczos3(x) - library_lanczos3(x)).abs() < 1e-15, "{x}");
        }
    }

    #[test]
    fn the_output_is_the_librarys_kernels() {
        // A detailed gradient, downscaled by the factors the bench uses.
        let (w, h) = (1000u32, 750u32);
        let data: Vec<u8> = (0..w * h)
            .map(|i| ((i % w) * 7 + (i / w) * 13 + (i % 97) * 31) as u8)
            .collect();
        let src = Raster::new(w, h, 1, data).unwrap();
        let region = Region {
            left: 0.0,
            top: 0.0,
            width: f64::from(w),
            height: f64::from(h),
        };
        for (dw, dh) in [(800, 600), (400, 300), (200, 150)] {
            let ours = resize(&src, region, dw, dh).unwrap();
            let src_image = ImageRef::new(w, h, &src.data, PixelType::U8).unwrap();
            let mut theirs = Image::new(dw, dh, PixelType::U8);
            Resizer::new()
                .resize(
                    &src_image,
                    &mut theirs,
                    &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
                )
                .unwrap();
            assert!(ours.data == theirs.buffer(), "{dw}x{dh}");
        }
    }
}
