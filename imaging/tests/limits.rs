//! Limits, invalid options and unsupported input: each refused with the right error, from the
//! header alone, before any pixel buffer exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use lumi_imaging::{
    Fit, ImageError, InputFormat, Limits, OutputFormat, TransformOptions, probe, transform,
};

fn thumb(format: OutputFormat) -> TransformOptions {
    TransformOptions {
        width: Some(100),
        height: Some(100),
        fit: Fit::Cover,
        format,
        quality: 80,
    }
}

#[test]
fn defaults() {
    let l = Limits::default();
    assert_eq!(l.max_input_bytes, 25 * 1024 * 1024);
    assert_eq!(l.max_input_pixels, 50_000_000);
    assert_eq!(l.max_output_dimension, 4096);
    let o = TransformOptions::default();
    assert_eq!(
        (o.fit, o.format, o.quality),
        (Fit::Inside, OutputFormat::Jpeg, 80)
    );
}

#[test]
fn input_bytes_limit_comes_first() {
    let input = jpeg(64, 64, &pattern(64, 64), 90);
    let limits = Limits {
        max_input_bytes: input.len() - 1,
        ..Limits::default()
    };
    let err = transform(&input, &thumb(OutputFormat::Jpeg), &limits).unwrap_err();
    assert_eq!(
        err,
        ImageError::InputTooLarge {
            bytes: input.len(),
            limit: input.len() - 1
        }
    );
    assert_eq!(err.status(), 413);
    // Even garbage of that size is refused for its size, not its content.
    let err = transform(
        &[0u8; 100],
        &thumb(OutputFormat::Jpeg),
        &Limits {
            max_input_bytes: 99,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::InputTooLarge { .. }));
    // Exactly at the limit is fine.
    let limits = Limits {
        max_input_bytes: input.len(),
        ..Limits::default()
    };
    assert!(transform(&input, &thumb(OutputFormat::Jpeg), &limits).is_ok());
}

/// Headers that claim huge images and carry no data to back them.
fn bombs() -> Vec<(InputFormat, Vec<u8>, (u32, u32))> {
    vec![
        (
            InputFormat::Png,
            png_header_only(100_000, 100_000),
            (100_000, 100_000),
        ),
        (
            InputFormat::Jpeg,
            jpeg_header_only(65_535, 65_535),
            (65_535, 65_535),
        ),
        (
            InputFormat::Gif,
            gif_header_only(65_535, 65_535),
            (65_535, 65_535),
        ),
        (
            InputFormat::Webp,
            webp_vp8x_header(16_384, 16_384),
            (16_384, 16_384),
        ),
    ]
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    for (format, input, (w, h)) in bombs() {
        let p = probe(&input).unwrap();
        assert_eq!((p.format, p.width, p.height), (format, w, h));
        for out in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let start = Instant::now();
            let err = transform(&input, &thumb(out), &Limits::default()).unwrap_err();
            assert_eq!(
                err,
                ImageError::TooManyPixels {
                    width: w,
                    height: h,
                    limit: 50_000_000
                },
                "{format:?}"
            );
            assert_eq!(err.status(), 413);
            // Nothing was decoded (a 10-gigapixel buffer would take far longer to even zero).
            assert!(start.elapsed().as_millis() < 500, "{format:?}");
        }
    }
}

#[test]
fn pixel_limit_is_exact() {
    let input = png_rgb(100, 50, &pattern(100, 50));
    let at = Limits {
        max_input_pixels: 5000,
        ..Limits::default()
    };
    assert!(transform(&input, &thumb(OutputFormat::Png), &at).is_ok());
    let below = Limits {
        max_input_pixels: 4999,
        ..Limits::default()
    };
    let err = transform(&input, &thumb(OutputFormat::Png), &below).unwrap_err();
    assert!(matches!(
        err,
        ImageError::TooManyPixels {
            width: 100,
            height: 50,
            limit: 4999
        }
    ));
}

#[test]
fn pixel_limit_is_checked_before_the_output_limit() {
    let input = png_header_only(100_000, 100_000);
    let o = TransformOptions {
        width: Some(100_000),
        ..thumb(OutputFormat::Png)
    };
    assert!(matches!(
        transform(&input, &o, &Limits::default()),
        Err(ImageError::TooManyPixels { .. })
    ));
}

#[test]
fn output_dimension_limit() {
    let input = jpeg(64, 48, &pattern(64, 48), 90);
    let o = |w, h, fit| TransformOptions {
        width: w,
        height: h,
        fit,
        format: OutputFormat::Jpeg,
        quality: 80,
    };
    let limits = Limits::default();
    let err = transform(&input, &o(Some(4097), None, Fit::Inside), &limits).unwrap_err();
    assert_eq!(
        err,
        ImageError::OutputTooLarge {
            width: 4097,
            height: 3073,
            limit: 4096
        }
    );
    assert_eq!(err.status(), 422);
    // The derived side counts too.
    let err = transform(&input, &o(None, Some(4000), Fit::Inside), &limits).unwrap_err();
    assert!(matches!(
        err,
        ImageError::OutputTooLarge { width: 5333, .. }
    ));
    // Fill and contain make exactly the box.
    let err = transform(&input, &o(Some(10), Some(5000), Fit::Fill), &limits).unwrap_err();
    assert!(matches!(err, ImageError::OutputTooLarge { .. }));
    // A kept size larger than the limit.
    let small = Limits {
        max_output_dimension: 63,
        ..Limits::default()
    };
    assert!(matches!(
        transform(&input, &o(None, None, Fit::Inside), &small),
        Err(ImageError::OutputTooLarge {
            width: 64,
            height: 48,
            limit: 63
        })
    ));
    // WebP cannot go beyond 16383 whatever the configured limit.
    let huge = Limits {
        max_output_dimension: 100_000,
        ..Limits::default()
    };
    let webp = TransformOptions {
        format: OutputFormat::Webp,
        ..o(Some(16_384), Some(16), Fit::Fill)
    };
    assert!(matches!(
        transform(&input, &webp, &huge),
        Err(ImageError::OutputTooLarge { limit: 16_383, .. })
    ));
}

#[test]
fn invalid_options() {
    let input = jpeg(16, 16, &pattern(16, 16), 90);
    let base = thumb(OutputFormat::Jpeg);
    for bad in [
        TransformOptions { quality: 0, ..base },
        TransformOptions {
            quality: 101,
            ..base
        },
        TransformOptions {
            width: Some(0),
            ..base
        },
        TransformOptions {
            height: Some(0),
            ..base
        },
        TransformOptions {
            quality: 0,
            format: OutputFormat::Png,
            ..base
        },
    ] {
        let err = transform(&input, &bad, &Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::InvalidOptions(_)), "{bad:?}");
        assert_eq!(err.status(), 422);
    }
    for q in [1, 100] {
        let ok = TransformOptions { quality: q, ..base };
        assert!(transform(&input, &ok, &Limits::default()).is_ok());
    }
}

#[test]
fn unsupported_formats() {
    let bmp = {
        let mut d = b"BM".to_vec();
        d.extend_from_slice(&[0u8; 60]);
        d
    };
    let cases: [&[u8]; 8] = [
        &bmp,
        b"hello, world",
        b"",
        b"\xFF\xD8",             // too short for a JPEG signature
        b"RIFF\0\0\0\0WAVEfmt ", // RIFF but not WebP
        b"GIF88a\x01\0\x01\0",   // not a GIF version
        b"II*\0\x08\0\0\0",      // TIFF
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ];
    for input in cases {
        let err = transform(input, &thumb(OutputFormat::Jpeg), &Limits::default()).unwrap_err();
        assert_eq!(err, ImageError::Unsupported, "{input:?}");
        assert_eq!(err.status(), 415);
        assert_eq!(probe(input), Err(ImageError::Unsupported));
    }
}

#[test]
fn animated_webp_is_unsupported() {
    let mut d = webp_vp8x_header(16, 16);
    d[20] |= 0x02; // animation flag
    let err = transform(&d, &thumb(OutputFormat::Jpeg), &Limits::default()).unwrap_err();
    assert_eq!(err, ImageError::Unsupported);
}

#[test]
fn zero_sized_headers_are_corrupt() {
    for input in [
        png_header_only(0, 10),
        jpeg_header_only(10, 0),
        gif_header_only(0, 0),
    ] {
        let err = transform(&input, &thumb(OutputFormat::Jpeg), &Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
        assert_eq!(err.status(), 422);
    }
}

#[test]
fn header_only_files_within_limits_are_corrupt_not_panics() {
    for input in [
        png_header_only(64, 64),
        jpeg_header_only(64, 64),
        gif_header_only(64, 64),
    ] {
        let err = transform(&input, &thumb(OutputFormat::Jpeg), &Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
    }
}
