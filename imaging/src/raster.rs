//! The in-memory image between decoder and encoder, and the cheap pixel operations on it:
//! EXIF orientation, flattening alpha, dropping an all-opaque alpha channel, padding.
//!
//! One representation only (interleaved 8-bit RGB or RGBA, tightly packed) so that every
//! decoder converges on it and every encoder takes it; these loops run after the resize, on
//! output-sized images, so they are written for clarity and bounds safety over speed.

use crate::ImageError;

/// An 8-bit interleaved image: `channels` is 3 (RGB) or 4 (RGBA, straight alpha), or 1 for a
/// single plane of a planar YCbCr image (see [`crate::yuv`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raster {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// `width * height * channels`, or an error when it does not fit in memory arithmetic.
pub(crate) fn buffer_len(width: u32, height: u32, channels: usize) -> Result<usize, ImageError> {
    usize::try_from(width)
        .ok()
        .and_then(|w| w.checked_mul(usize::try_from(height).ok()?))
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| ImageError::corrupt("image dimensions overflow"))
}

impl Raster {
    /// Wraps a buffer, checking its length.
    pub(crate) fn new(
        width: u32,
        height: u32,
        channels: usize,
        data: Vec<u8>,
    ) -> Result<Self, ImageError> {
        if !matches!(channels, 1 | 3 | 4) || data.len() != buffer_len(width, height, channels)? {
            return Err(ImageError::corrupt("decoded buffer has an unexpected size"));
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    pub(crate) fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// Drops the alpha channel if every pixel is opaque (GIFs and many PNGs carry one).
    pub(crate) fn drop_opaque_alpha(self) -> Self {
        if self.channels != 4 || self.data.chunks_exact(4).any(|p| p.get(3) != Some(&255)) {
            return self;
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| p.iter().take(3).copied())
            .collect();
        Self {
            channels: 3,
            data,
            ..self
        }
    }

    /// Composites onto a solid background, giving RGB.
    pub(crate) fn flatten(self, background: [u8; 3]) -> Self {
        if self.channels != 4 {
            return self;
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let [r, g, b, a] = [0, 1, 2, 3].map(|i| u32::from(p.get(i).copied().unwrap_or(0)));
                let mix = |c: u32, bg: u8| ((c * a + u32::from(bg) * (255 - a) + 127) / 255) as u8;
                [
                    mix(r, background[0]),
                    mix(g, background[1]),
                    mix(b, background[2]),
                ]
            })
            .collect();
        Self {
            channels: 3,
            data,
            ..self
        }
    }

    /// Adds an opaque alpha channel.
    pub(crate) fn with_alpha(self) -> Self {
        if self.channels == 4 {
            return self;
        }
        let data = self
            .data
            .chunks_exact(3)
            .flat_map(|p| {
                let mut px = [255u8; 4];
                for (d, s) in px.iter_mut().zip(p) {
                    *d = *s;
                }
                px
            })
            .collect();
        Self {
            channels: 4,
            data,
            ..self
        }
    }

    /// Places this image at (`x`, `y`) on a `width`x`height` canvas filled with `fill` (one
    /// value per channel of this image).
    pub(crate) fn pad(
        &self,
        width: u32,
        height: u32,
        x: u32,
        y: u32,
        fill: &[u8],
    ) -> Result<Self, ImageError> {
        let c = self.channels;
        if fill.len() != c
            || u64::from(x) + u64::from(self.width) > u64::from(width)
            || u64::from(y) + u64::from(self.height) > u64::from(height)
        {
            return Err(ImageError::corrupt("padding does not fit"));
        }
        let mut data = fill.repeat(buffer_len(width, height, 1)?);
        let out_stride = width as usize * c;
        let in_stride = self.width as usize * c;
        if in_stride > 0 {
            for (row, src) in self.data.chunks_exact(in_stride).enumerate() {
                let start = (y as usize + row) * out_stride + x as usize * c;
                if let Some(dst) = data.get_mut(start..start + in_stride) {
                    dst.copy_from_slice(src);
                }
            }
        }
        Raster::new(width, height, c, data)
    }

    /// Applies an EXIF orientation (1..=8), so that the result is as it should be displayed.
    pub(crate) fn orient(self, orientation: u8) -> Self {
        if !(2..=8).contains(&orientation) {
            return self;
        }
        let (sw, sh, c) = (self.width as usize, self.height as usize, self.channels);
        let swapped = crate::probe::swaps_axes(orientation);
        let (dw, dh) = if swapped { (sh, sw) } else { (sw, sh) };
        // For each displayed (x, y): the stored (sx, sy). See the table in the crate docs.
        let source = |x: usize, y: usize| -> (usize, usize) {
            match orientation {
                2 => (sw - 1 - x, y),
                3 => (sw - 1 - x, sh - 1 - y),
                4 => (x, sh - 1 - y),
                5 => (y, x),
                6 => (y, sh - 1 - x),
                7 => (sw - 1 - y, sh - 1 - x),
                _ => (sw - 1 - y, x), // 8
            }
        };
        let mut data = Vec::with_capacity(self.data.len());
        for y in 0..dh {
            for x in 0..dw {
                let (sx, sy) = source(x, y);
                let at = (sy * sw + sx) * c;
                match self.data.get(at..at + c) {
                    Some(px) => data.extend_from_slice(px),
                    None => data.extend(std::iter::repeat_n(0, c)),
                }
            }
        }
        Self {
            width: dw as u32,
            height: dh as u32,
            channels: c,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A 3x2 image whose pixels are numbered 0..6 in the red channel.
    fn numbered() -> Raster {
        let data = (0..6u8).flat_map(|i| [i, 0, 0]).collect();
        Raster::new(3, 2, 3, data).unwrap()
    }

    fn reds(r: &Raster) -> Vec<u8> {
        r.data.chunks_exact(3).map(|p| p[0]).collect()
    }

    #[test]
    fn orientations() {
        // stored:  0 1 2
        //          3 4 5
        let cases: [(u8, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [0, 1, 2, 3, 4, 5]),
            (2, (3, 2), [2, 1, 0, 5, 4, 3]),
            (3, (3, 2), [5, 4, 3, 2, 1, 0]),
            (4, (3, 2), [3, 4, 5, 0, 1, 2]),
            (5, (2, 3), [0, 3, 1, 4, 2, 5]),
            (6, (2, 3), [3, 0, 4, 1, 5, 2]),
            (7, (2, 3), [5, 2, 4, 1, 3, 0]),
            (8, (2, 3), [2, 5, 1, 4, 0, 3]),
        ];
        for (o, size, expected) in cases {
            let r = numbered().orient(o);
            assert_eq!((r.width, r.height), size, "orientation {o}");
            assert_eq!(reds(&r), expected, "orientation {o}");
        }
    }

    #[test]
    fn pad_and_flatten() {
        let r = Raster::new(1, 1, 4, vec![0, 0, 0, 0]).unwrap();
        let p = r.pad(3, 1, 1, 0, &[9, 9, 9, 9]).unwrap();
        assert_eq!(p.data, vec![9, 9, 9, 9, 0, 0, 0, 0, 9, 9, 9, 9]);
        let f = Raster::new(1, 1, 4, vec![0, 0, 0, 0])
            .unwrap()
            .flatten([255, 255, 255]);
        assert_eq!(f.data, vec![255, 255, 255]);
        assert!(r.pad(3, 1, 3, 0, &[0; 4]).is_err());
    }

    #[test]
    fn opaque_alpha_is_dropped() {
        let r = Raster::new(1, 1, 4, vec![1, 2, 3, 255])
            .unwrap()
            .drop_opaque_alpha();
        assert_eq!((r.channels, r.data), (3, vec![1, 2, 3]));
        let r = Raster::new(1, 1, 4, vec![1, 2, 3, 254])
            .unwrap()
            .drop_opaque_alpha();
        assert_eq!(r.channels, 4);
    }
}
