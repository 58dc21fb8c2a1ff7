//! Header parsing: format, size and EXIF orientation, without decoding a single pixel.
//!
//! Every limit of [`crate::Limits`] is checked from what this module reads, before any decoder
//! runs, so it is written to be hostile-input safe on its own: every read goes through bounds
//! checked helpers, lengths come from the data and are checked against what is actually there,
//! and nothing is allocated. It reads the JPEG marker segments up to the first scan (SOFn for the
//! size, the first `Exif` APP1 for the orientation), the PNG IHDR and any eXIf chunk before the
//! image data, the GIF logical screen, and the WebP `VP8 `/`VP8L`/`VP8X` headers and `EXIF` chunk.

use crate::{ImageError, InputFormat};

/// What the header of an input says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: InputFormat,
    /// Stored width, before the EXIF orientation is applied.
    pub width: u32,
    /// Stored height, before the EXIF orientation is applied.
    pub height: u32,
    /// EXIF orientation 1..=8; 1 when there is none (or it is not a valid value).
    pub orientation: u8,
}

impl Probe {
    /// Width and height as displayed, once the orientation is applied (5..=8 swap them).
    #[must_use]
    pub fn display_size(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Stored width x height.
    #[must_use]
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Orientations 5 to 8 turn the image by a quarter: width and height trade places.
pub(crate) fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// The format of `input` from its magic bytes alone.
#[must_use]
pub fn sniff(input: &[u8]) -> Option<InputFormat> {
    if input.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(InputFormat::Jpeg)
    } else if input.starts_with(PNG_SIGNATURE) {
        Some(InputFormat::Png)
    } else if input.starts_with(b"GIF87a") || input.starts_with(b"GIF89a") {
        Some(InputFormat::Gif)
    } else if input.starts_with(b"RIFF") && input.get(8..12) == Some(b"WEBP".as_slice()) {
        Some(InputFormat::Webp)
    } else {
        None
    }
}

/// Reads the format, size and orientation from the headers only; never decodes pixels.
///
/// # Errors
/// [`ImageError::Unsupported`] when the magic bytes are none of JPEG, PNG, WebP, GIF;
/// [`ImageError::Corrupt`] when the header is truncated, inconsistent or announces a zero size.
pub fn probe(input: &[u8]) -> Result<Probe, ImageError> {
    Ok(probe_detailed(input)?.probe)
}

/// [`probe`] plus what only the pipeline needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Detailed {
    pub probe: Probe,
    /// An animated WebP: refused, since libwebp's simple decoder reads stills only.
    pub animated: bool,
}

pub(crate) fn probe_detailed(input: &[u8]) -> Result<Detailed, ImageError> {
    let format = sniff(input).ok_or(ImageError::Unsupported)?;
    let (width, height, orientation, animated) = match format {
        InputFormat::Jpeg => jpeg(input)?,
        InputFormat::Png => png(input)?,
        InputFormat::Gif => gif(input)?,
        InputFormat::Webp => webp(input)?,
    };
    if width == 0 || height == 0 {
        return Err(ImageError::corrupt(format!(
            "{} header announces a {width}x{height} image",
            format.as_str()
        )));
    }
    let orientation = if (1..=8).contains(&orientation) {
        orientation
    } else {
        1
    };
    Ok(Detailed {
        probe: Probe {
            format,
            width,
            height,
            orientation,
        },
        animated,
    })
}

type Header = (u32, u32, u8, bool);

fn truncated(format: &str) -> ImageError {
    ImageError::corrupt(format!("truncated {format} header"))
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn le16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn le24(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(3)?)?;
    Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, 0]))
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------- JPEG

/// Walks the marker segments from SOI to the first SOS (or, past the frame header, to wherever
/// the data ends: the decoder will judge the rest).
fn jpeg(data: &[u8]) -> Result<Header, ImageError> {
    let mut size: Option<(u32, u32)> = None;
    let mut orientation: Option<u8> = None;
    let walked = jpeg_segments(data, &mut size, &mut orientation);
    match (size, walked) {
        (Some((width, height)), _) => Ok((width, height, orientation.unwrap_or(1), false)),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(ImageError::corrupt("JPEG: no frame header")),
    }
}

fn jpeg_segments(
    data: &[u8],
    size: &mut Option<(u32, u32)>,
    orientation: &mut Option<u8>,
) -> Result<(), ImageError> {
    let mut pos = 2usize; // after SOI
    loop {
        // A marker is one or more 0xFF fill bytes then a code; anything else between segments
        // is garbage that libjpeg skips with a warning (which we treat as corrupt).
        match data.get(pos) {
            Some(0xFF) => {}
            Some(_) => return Err(ImageError::corrupt("JPEG: expected a marker")),
            None => return Err(truncated("JPEG")),
        }
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *data.get(pos).ok_or_else(|| truncated("JPEG"))?;
        pos += 1;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 => return Ok(()),
            _ => {}
        }
        let len = usize::from(be16(data, pos).ok_or_else(|| truncated("JPEG"))?);
        if len < 2 {
            return Err(ImageError::corrupt("JPEG: segment length below 2"));
        }
        let end = pos + len; // pos <= data.len() and len <= 65535: no overflow
        let segment = data.get(pos + 2..end).ok_or_else(|| truncated("JPEG"))?;
        match marker {
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && size.is_none() => {
                let height = be16(segment, 1).ok_or_else(|| truncated("JPEG"))?;
                let width = be16(segment, 3).ok_or_else(|| truncated("JPEG"))?;
                if height == 0 {
                    return Err(ImageError::corrupt(
                        "JPEG: height defined by a DNL marker is not supported",
                    ));
                }
                *size = Some((u32::from(width), u32::from(height)));
            }
            0xE1 if orientation.is_none() => {
                if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                    *orientation = Some(exif_orientation(tiff).unwrap_or(1));
                }
            }
            0xDA => return Ok(()),
            _ => {}
        }
        if size.is_some() && orientation.is_some() {
            return Ok(());
        }
        pos = end;
    }
}

// ----------------------------------------------------------------------------------------- PNG

const PNG_SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn png(data: &[u8]) -> Result<Header, ImageError> {
    // Signature, then IHDR: length 13, type, width, height, ...
    let ihdr_len = be32(data, 8).ok_or_else(|| truncated("PNG"))?;
    if data.get(12..16) != Some(b"IHDR".as_slice()) || ihdr_len != 13 {
        return Err(ImageError::corrupt(
            "PNG: first chunk is not a 13-byte IHDR",
        ));
    }
    let width = be32(data, 16).ok_or_else(|| truncated("PNG"))?;
    let height = be32(data, 20).ok_or_else(|| truncated("PNG"))?;
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(ImageError::corrupt("PNG: dimension above 2^31-1"));
    }
    // Look for eXIf among the chunks before the image data.
    let mut orientation = 1;
    let mut pos = 8usize + 8 + 13 + 4;
    while pos < data.len() {
        let (Some(len), Some(kind)) = (be32(data, pos), data.get(pos + 4..pos + 8)) else {
            break;
        };
        let Some(body_end) = usize::try_from(len)
            .ok()
            .and_then(|l| (pos + 8).checked_add(l))
        else {
            break;
        };
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"eXIf" {
            if let Some(body) = data.get(pos + 8..body_end) {
                let tiff = body.strip_prefix(b"Exif\0\0").unwrap_or(body);
                orientation = exif_orientation(tiff).unwrap_or(1);
            }
            break;
        }
        let Some(next) = body_end.checked_add(4) else {
            break;
        };
        pos = next;
    }
    Ok((width, height, orientation, false))
}

// ----------------------------------------------------------------------------------------- GIF

fn gif(data: &[u8]) -> Result<Header, ImageError> {
    let width = le16(data, 6).ok_or_else(|| truncated("GIF"))?;
    let height = le16(data, 8).ok_or_else(|| truncated("GIF"))?;
    Ok((u32::from(width), u32::from(height), 1, false))
}

// ---------------------------------------------------------------------------------------- WebP

fn webp(data: &[u8]) -> Result<Header, ImageError> {
    let chunk = data.get(12..16).ok_or_else(|| truncated("WebP"))?;
    match chunk {
        b"VP8 " => {
            // Frame tag (3 bytes, bit 0 clear on key frames), start code, 14-bit sizes.
            if data.get(23..26) != Some([0x9D, 0x01, 0x2A].as_slice()) {
                return Err(match data.get(23..26) {
                    None => truncated("WebP"),
                    Some(_) => ImageError::corrupt("WebP: bad VP8 start code"),
                });
            }
            let width = le16(data, 26).ok_or_else(|| truncated("WebP"))? & 0x3FFF;
            let height = le16(data, 28).ok_or_else(|| truncated("WebP"))? & 0x3FFF;
            Ok((u32::from(width), u32::from(height), 1, false))
        }
        b"VP8L" => {
            if data.get(20) != Some(&0x2F) {
                return Err(match data.get(20) {
                    None => truncated("WebP"),
                    Some(_) => ImageError::corrupt("WebP: bad VP8L signature"),
                });
            }
            let bits = le32(data, 21).ok_or_else(|| truncated("WebP"))?;
            let width = (bits & 0x3FFF) + 1;
            let height = ((bits >> 14) & 0x3FFF) + 1;
            Ok((width, height, 1, false))
        }
        b"VP8X" => {
            let flags = *data.get(20).ok_or_else(|| truncated("WebP"))?;
            let width = le24(data, 24).ok_or_else(|| truncated("WebP"))? + 1;
            let height = le24(data, 27).ok_or_else(|| truncated("WebP"))? + 1;
            let animated = flags & 0x02 != 0;
            let mut orientation = 1;
            if flags & 0x08 != 0 {
                orientation = webp_exif_orientation(data).unwrap_or(1);
            }
            Ok((width, height, orientation, animated))
        }
        _ => Err(ImageError::corrupt("WebP: unknown first chunk")),
    }
}

/// Walks the RIFF chunks after VP8X for an `EXIF` chunk.
fn webp_exif_orientation(data: &[u8]) -> Option<u8> {
    let mut pos = 12usize;
    loop {
        let kind = data.get(pos..pos.checked_add(4)?)?;
        let len = usize::try_from(le32(data, pos + 4)?).ok()?;
        let body = pos.checked_add(8)?;
        let end = body.checked_add(len)?;
        if kind == b"EXIF" {
            let payload = data.get(body..end)?;
            let tiff = payload.strip_prefix(b"Exif\0\0").unwrap_or(payload);
            return exif_orientation(tiff);
        }
        // Chunks are padded to an even size.
        pos = end.checked_add(len & 1)?;
    }
}

// ---------------------------------------------------------------------------------------- EXIF

/// The Orientation tag (0x0112) of IFD0 of a TIFF structure, if present and 1..=8.
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let big_endian = match tiff.get(0..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        if big_endian {
            be16(tiff, at)
        } else {
            le16(tiff, at)
        }
    };
    let u32_at = |at: usize| {
        if big_endian {
            be32(tiff, at)
        } else {
            le32(tiff, at)
        }
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let count = usize::from(u16_at(ifd)?);
    for i in 0..count {
        let entry = ifd.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
        let tag = u16_at(entry)?;
        if tag == 0x0112 {
            let kind = u16_at(entry + 2)?;
            let value = match kind {
                3 => u16_at(entry + 8)?,                      // SHORT
                4 => u16::try_from(u32_at(entry + 8)?).ok()?, // LONG, seen in the wild
                1 | 7 => u16::from(*tiff.get(entry + 8)?),    // BYTE / UNDEFINED
                _ => return None,
            };
            let value = u8::try_from(value).ok()?;
            return (1..=8).contains(&value).then_some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tiff(big_endian: bool, orientation: u16) -> Vec<u8> {
        let mut t = Vec::new();
        if big_endian {
            t.extend_from_slice(b"MM\0\x2a\0\0\0\x08\0\x01");
            t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
            t.extend_from_slice(&orientation.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        } else {
            t.extend_from_slice(b"II\x2a\0\x08\0\0\0\x01\0");
            t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
            t.extend_from_slice(&orientation.to_le_bytes());
            t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        t
    }

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        for o in 1..=8 {
            assert_eq!(exif_orientation(&tiff(true, o)), Some(o as u8));
            assert_eq!(exif_orientation(&tiff(false, o)), Some(o as u8));
        }
        assert_eq!(exif_orientation(&tiff(true, 9)), None);
        assert_eq!(exif_orientation(&tiff(false, 0)), None);
    }

    #[test]
    fn exif_parser_survives_every_truncation() {
        let t = tiff(false, 6);
        for n in 0..t.len() {
            let _ = exif_orientation(&t[..n]);
        }
    }

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some(InputFormat::Jpeg));
        assert_eq!(sniff(b"GIF89a"), Some(InputFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBP"), Some(InputFormat::Webp));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(sniff(b"BM"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn vp8l_header_sizes() {
        // 100x50: (99) | (49 << 14)
        let bits: u32 = 99 | (49 << 14);
        let mut d = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        d.extend_from_slice(&bits.to_le_bytes());
        let p = probe(&d).unwrap();
        assert_eq!((p.width, p.height), (100, 50));
    }
}
