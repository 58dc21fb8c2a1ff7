//! The arithmetic of a transform: output size, the source region to resample, padding, and the
//! JPEG DCT scale factor, all computed from header sizes before anything is decoded.
//!
//! Kept free of pixels so that the output-size limit is enforced before decoding and so that the
//! rules (sharp's fit modes, rounding) can be unit tested on their own. Everything is in the
//! displayed orientation; [`Plan::source_view`] turns it into the stored orientation, where the
//! decoder and the resampler work (orienting after the resize touches far fewer pixels, and a
//! separable filter commutes with flips and transposes).

use crate::{Fit, ImageError, TransformOptions};

/// A rectangle of the source image in (possibly fractional) pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Region {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// What the pipeline does, in displayed coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Final output size.
    pub out_w: u32,
    pub out_h: u32,
    /// Size the selected region is resampled to (smaller than the output only for contain).
    pub content_w: u32,
    pub content_h: u32,
    /// Where the content goes in the output (non-zero only for contain).
    pub offset_x: u32,
    pub offset_y: u32,
    /// The part of the (displayed) source that is resampled: all of it, or the centre for cover.
    pub region: Region,
}

/// `a * b / c` rounded to nearest, at least 1, saturating at `u32::MAX`.
fn scale_round(a: u32, b: u32, c: u32) -> u32 {
    let c = u128::from(c.max(1));
    let v = (u128::from(a) * u128::from(b) * 2 + c) / (2 * c);
    u32::try_from(v).unwrap_or(u32::MAX).max(1)
}

/// A region centred in a `w`x`h` image.
fn centred(w: f64, h: f64, rw: f64, rh: f64) -> Region {
    Region {
        left: (w - rw) / 2.0,
        top: (h - rh) / 2.0,
        width: rw,
        height: rh,
    }
}

/// Works out the plan for a `dw`x`dh` displayed image and checks the output size.
///
/// # Errors
/// [`ImageError::OutputTooLarge`] when a side would exceed `max_dimension`.
pub(crate) fn plan(
    dw: u32,
    dh: u32,
    options: &TransformOptions,
    max_dimension: u32,
) -> Result<Plan, ImageError> {
    let full = Region {
        left: 0.0,
        top: 0.0,
        width: f64::from(dw),
        height: f64::from(dh),
    };
    let mut plan = Plan {
        out_w: dw,
        out_h: dh,
        content_w: dw,
        content_h: dh,
        offset_x: 0,
        offset_y: 0,
        region: full,
    };
    match (options.width, options.height) {
        (None, None) => {}
        (Some(w), None) => {
            plan.content_w = w;
            plan.content_h = scale_round(dh, w, dw);
        }
        (None, Some(h)) => {
            plan.content_w = scale_round(dw, h, dh);
            plan.content_h = h;
        }
        (Some(w), Some(h)) => {
            // Compare w/dw with h/dh exactly: w*dh vs h*dw.
            let width_limits = u64::from(w) * u64::from(dh) <= u64::from(h) * u64::from(dw);
            match options.fit {
                Fit::Fill => (plan.content_w, plan.content_h) = (w, h),
                Fit::Inside | Fit::Contain => {
                    (plan.content_w, plan.content_h) = if width_limits {
                        (w, scale_round(dh, w, dw).min(h))
                    } else {
                        (scale_round(dw, h, dh).min(w), h)
                    };
                }
                Fit::Cover => {
                    (plan.content_w, plan.content_h) = (w, h);
                    // The scale is the larger of w/dw and h/dh; the region is the box seen
                    // through the output at that scale, centred.
                    let (rw, rh) = if width_limits {
                        // h/dh is the larger scale: full height, part of the width.
                        (f64::from(w) * f64::from(dh) / f64::from(h), f64::from(dh))
                    } else {
                        (f64::from(dw), f64::from(h) * f64::from(dw) / f64::from(w))
                    };
                    plan.region = centred(
                        f64::from(dw),
                        f64::from(dh),
                        rw.min(f64::from(dw)),
                        rh.min(f64::from(dh)),
                    );
                }
            }
            if options.fit == Fit::Contain {
                (plan.out_w, plan.out_h) = (w, h);
                plan.offset_x = (w - plan.content_w) / 2;
                plan.offset_y = (h - plan.content_h) / 2;
            }
        }
    }
    if options.fit != Fit::Contain || options.width.is_none() || options.height.is_none() {
        (plan.out_w, plan.out_h) = (plan.content_w, plan.content_h);
    }
    if plan.out_w > max_dimension || plan.out_h > max_dimension {
        return Err(ImageError::OutputTooLarge {
            width: plan.out_w,
            height: plan.out_h,
            limit: max_dimension,
        });
    }
    Ok(plan)
}

/// The resample step as seen in the stored orientation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SourceView {
    /// Region of the stored image to resample.
    pub region: Region,
    /// Size to resample it to, in stored orientation.
    pub target_w: u32,
    pub target_h: u32,
}

impl Plan {
    /// The region and target size in the stored orientation of a `sw`x`sh` image. Regions are
    /// always centred, so a quarter turn only swaps the axes.
    pub(crate) fn source_view(&self, sw: u32, sh: u32, swapped: bool) -> SourceView {
        let (rw, rh, tw, th) = if swapped {
            (
                self.region.height,
                self.region.width,
                self.content_h,
                self.content_w,
            )
        } else {
            (
                self.region.width,
                self.region.height,
                self.content_w,
                self.content_h,
            )
        };
        SourceView {
            region: centred(f64::from(sw), f64::from(sh), rw, rh),
            target_w: tw,
            target_h: th,
        }
    }
}

impl SourceView {
    /// The smallest libjpeg-turbo scale `1/denominator` (8, 4, 2 or 1) at which the region is
    /// still at least the target size: the DCT does the bulk of the shrinking for free and the
    /// Lanczos3 filter has at most a factor of two left, as sharp's shrink-on-load does.
    ///
    /// Only powers of two: libjpeg-turbo has SIMD reduced-size IDCTs for those, while 3/8, 5/8...
    /// run in plain C.
    pub(crate) fn jpeg_denominator(&self) -> usize {
        for denominator in [8usize, 4, 2] {
            let d = denominator as f64;
            // A little slack for the fractional cover region.
            if self.region.width / d + 1e-9 >= f64::from(self.target_w)
                && self.region.height / d + 1e-9 >= f64::from(self.target_h)
            {
                return denominator;
            }
        }
        1
    }

    /// The same view on an image decoded at `scale_x` x `scale_y` of the stored size.
    pub(crate) fn scaled(&self, scale_x: f64, scale_y: f64, w: u32, h: u32) -> SourceView {
        let width = (self.region.width * scale_x).min(f64::from(w));
        let height = (self.region.height * scale_y).min(f64::from(h));
        SourceView {
            region: centred(f64::from(w), f64::from(h), width, height),
            ..*self
        }
    }

    /// Whether resampling is a no-op: the whole image, already at the target size.
    pub(crate) fn is_identity(&self, w: u32, h: u32) -> bool {
        self.target_w == w
            && self.target_h == h
            && self.region.left.abs() < 1e-9
            && self.region.top.abs() < 1e-9
            && (self.region.width - f64::from(w)).abs() < 1e-9
            && (self.region.height - f64::from(h)).abs() < 1e-9
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::OutputFormat;

    fn opts(w: Option<u32>, h: Option<u32>, fit: Fit) -> TransformOptions {
        TransformOptions {
            width: w,
            height: h,
            fit,
            format: OutputFormat::Jpeg,
            quality: 80,
        }
    }

    #[test]
    fn width_only_keeps_aspect() {
        let p = plan(4000, 3000, &opts(Some(800), None, Fit::Cover), 4096).unwrap();
        assert_eq!((p.out_w, p.out_h), (800, 600));
        let v = p.source_view(4000, 3000, false);
        assert_eq!(v.jpeg_denominator(), 4);
    }

    #[test]
    fn cover_thumb_uses_eighth_scale() {
        let p = plan(4000, 3000, &opts(Some(200), Some(200), Fit::Cover), 4096).unwrap();
        assert_eq!((p.out_w, p.out_h), (200, 200));
        assert_eq!(p.region, centred(4000.0, 3000.0, 3000.0, 3000.0));
        let v = p.source_view(4000, 3000, false);
        assert_eq!(v.jpeg_denominator(), 8);
        let s = v.scaled(0.125, 0.125, 500, 375);
        assert_eq!(s.region, centred(500.0, 375.0, 375.0, 375.0));
    }

    #[test]
    fn fits() {
        let o = |fit| plan(400, 200, &opts(Some(100), Some(100), fit), 4096).unwrap();
        let inside = o(Fit::Inside);
        assert_eq!((inside.out_w, inside.out_h), (100, 50));
        let contain = o(Fit::Contain);
        assert_eq!((contain.out_w, contain.out_h), (100, 100));
        assert_eq!((contain.content_w, contain.content_h), (100, 50));
        assert_eq!((contain.offset_x, contain.offset_y), (0, 25));
        let fill = o(Fit::Fill);
        assert_eq!((fill.out_w, fill.out_h), (100, 100));
        let cover = o(Fit::Cover);
        assert_eq!((cover.out_w, cover.out_h), (100, 100));
        assert_eq!(cover.region, centred(400.0, 200.0, 200.0, 200.0));
    }

    #[test]
    fn extreme_aspect_is_refused_not_overflowed() {
        let e = plan(1, 60000, &opts(Some(4096), None, Fit::Inside), 4096).unwrap_err();
        assert!(matches!(e, ImageError::OutputTooLarge { .. }));
        let p = plan(60000, 1, &opts(Some(100), None, Fit::Inside), 4096).unwrap();
        assert_eq!((p.out_w, p.out_h), (100, 1));
        let p = plan(
            u32::MAX,
            1,
            &opts(None, Some(u32::MAX), Fit::Inside),
            u32::MAX,
        )
        .unwrap();
        assert_eq!(p.out_h, u32::MAX);
    }
}
