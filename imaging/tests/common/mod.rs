//! Fixtures made in code: synthetic images in every input format, EXIF splicing, hand-made
//! headers, and decoders to look at the output. No binary files in the repository.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::Cursor;

use image::ImageEncoder;

/// A smooth RGB test pattern with some texture, `w`x`h`.
pub fn pattern(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let r = (x * 255 / w.max(1)) as u8;
            let g = (y * 255 / h.max(1)) as u8;
            let b = (((x / 4 + y / 4) % 2) * 60 + 80) as u8;
            v.extend_from_slice(&[r, g, b]);
        }
    }
    v
}

/// `w`x`h` filled with `fill`, with the top-left `m`x`m` block set to `marker`.
pub fn marked(w: u32, h: u32, m: u32, fill: [u8; 3], marker: [u8; 3]) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(if x < m && y < m { &marker } else { &fill });
        }
    }
    v
}

pub fn rgb_to_rgba(rgb: &[u8], alpha: u8) -> Vec<u8> {
    rgb.chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], alpha])
        .collect()
}

pub fn jpeg(w: u32, h: u32, rgb: &[u8], quality: i32) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(quality).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb,
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .unwrap()
}

pub fn jpeg_subsamp(w: u32, h: u32, rgb: &[u8], subsamp: turbojpeg::Subsamp) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(90).unwrap();
    c.set_subsamp(subsamp).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb,
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .unwrap()
}

/// A 4:2:0 baseline JPEG with a restart marker every `interval` MCUs.
pub fn jpeg_restarts(w: u32, h: u32, rgb: &[u8], interval: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    e.set_restart_interval(interval);
    e.encode(rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// A 4:2:0 progressive JPEG.
pub fn jpeg_progressive(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    e.set_progressive(true);
    e.encode(rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

pub fn gray_jpeg(w: u32, h: u32) -> Vec<u8> {
    let gray: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Gray).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: gray.as_slice(),
        width: w as usize,
        pitch: w as usize,
        height: h as usize,
        format: turbojpeg::PixelFormat::GRAY,
    })
    .unwrap()
}

/// A big-endian TIFF structure with one IFD0 entry: Orientation = `o`.
pub fn exif_tiff(o: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    t.extend_from_slice(&o.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t
}

/// Splices an APP1 `Exif` segment with the given orientation right after SOI.
pub fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif_tiff(orientation));
    let len = u16::try_from(payload.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

pub fn png_rgb(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

pub fn png_rgba(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgba, w, h, image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

pub fn png_gray16(w: u32, h: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..w * h)
        .flat_map(|i| ((i * 97) as u16).to_ne_bytes())
        .collect();
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&data, w, h, image::ExtendedColorType::L16)
        .unwrap();
    out
}

/// A lossy WebP (q90) of `rgb`: a PNG of it through our own transform at the same size (the
/// only lossy WebP encoder at hand is the libwebp we ship).
pub fn webp_rgb(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    let options = lumi_imaging::TransformOptions {
        width: Some(w),
        height: Some(h),
        fit: lumi_imaging::Fit::Fill,
        format: lumi_imaging::OutputFormat::Webp,
        quality: 90,
    };
    lumi_imaging::transform(&png, &options, &lumi_imaging::Limits::default())
        .unwrap()
        .bytes
}

/// A lossless WebP of `rgba` (image-webp's encoder).
pub fn webp_rgba(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(rgba, w, h, image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

pub fn gif_rgba(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        enc.encode(rgba, w, h, image::ExtendedColorType::Rgba8)
            .unwrap();
    }
    out
}

// ------------------------------------------------------------------------------ hand-made headers

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = (body.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(body);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(body);
    c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    c
}

/// A PNG signature and a valid IHDR (8-bit RGB) claiming `w`x`h`, then one tiny IDAT and IEND.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut d = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    d.extend_from_slice(&png_chunk(b"IHDR", &ihdr));
    d.extend_from_slice(&png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    d.extend_from_slice(&png_chunk(b"IEND", &[]));
    d
}

/// A real PNG with an eXIf chunk (orientation `o`) inserted after IHDR.
pub fn png_with_exif(png: &[u8], o: u16) -> Vec<u8> {
    let ihdr_end = 8 + 8 + 13 + 4;
    let mut d = png[..ihdr_end].to_vec();
    d.extend_from_slice(&png_chunk(b"eXIf", &exif_tiff(o)));
    d.extend_from_slice(&png[ihdr_end..]);
    d
}

/// A baseline JPEG header (SOI, DQT, SOF0, DHT-less) claiming `w`x`h`, 3 components, then EOI.
pub fn jpeg_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut d = vec![0xFF, 0xD8];
    // DQT: one table of 1s
    d.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    d.extend_from_slice(&[1u8; 64]);
    // SOF0
    d.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    d.extend_from_slice(&h.to_be_bytes());
    d.extend_from_slice(&w.to_be_bytes());
    d.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]);
    d.extend_from_slice(&[0xFF, 0xD9]);
    d
}

/// A GIF89a logical screen of `w`x`h` and nothing else of substance.
pub fn gif_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut d = b"GIF89a".to_vec();
    d.extend_from_slice(&w.to_le_bytes());
    d.extend_from_slice(&h.to_le_bytes());
    d.extend_from_slice(&[0, 0, 0, 0x3B]);
    d
}

/// A WebP VP8X header with a `w`x`h` canvas (each up to 2^24).
pub fn webp_vp8x_header(w: u32, h: u32) -> Vec<u8> {
    let mut d = b"RIFF".to_vec();
    d.extend_from_slice(&30u32.to_le_bytes());
    d.extend_from_slice(b"WEBPVP8X");
    d.extend_from_slice(&10u32.to_le_bytes());
    d.extend_from_slice(&[0, 0, 0, 0]);
    d.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    d.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    d
}

// --------------------------------------------------------------------------------- output readers

/// Decodes any output (JPEG, PNG, WebP) to RGBA8: (width, height, pixels).
pub fn decode_rgba(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGBA).unwrap();
        (img.width as u32, img.height as u32, img.pixels)
    } else if bytes.starts_with(b"RIFF") {
        // image-webp: a decoder other than the libwebp that encoded it.
        let img = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::WebP)
            .decode()
            .unwrap()
            .into_rgba8();
        (img.width(), img.height(), img.into_raw())
    } else {
        let img = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png)
            .decode()
            .unwrap()
            .into_rgba8();
        (img.width(), img.height(), img.into_raw())
    }
}

pub fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 4] {
    let i = ((y * img.0 + x) * 4) as usize;
    [img.2[i], img.2[i + 1], img.2[i + 2], img.2[i + 3]]
}

/// Whether `p` is within `tol` of `c` on every RGB channel.
pub fn close(p: [u8; 4], c: [u8; 3], tol: i32) -> bool {
    (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() <= tol)
}

/// Deterministic xorshift64* generator for the mutation corpus.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
