//! Behaviour of `transform`: every input format to every output format, the fit modes, EXIF
//! orientation, quality, padding and cropping, and the DCT-scaled decode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lumi_imaging::{
    Fit, ImageError, InputFormat, Limits, OutputFormat, TransformOptions, probe, transform,
};

fn opts(w: Option<u32>, h: Option<u32>, fit: Fit, format: OutputFormat) -> TransformOptions {
    TransformOptions {
        width: w,
        height: h,
        fit,
        format,
        quality: 80,
    }
}

fn run(input: &[u8], o: &TransformOptions) -> lumi_imaging::Transformed {
    transform(input, o, &Limits::default()).unwrap()
}

const OUTPUTS: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp];

fn inputs(w: u32, h: u32) -> Vec<(InputFormat, &'static str, Vec<u8>)> {
    let rgb = pattern(w, h);
    let rgba = rgb_to_rgba(&rgb, 200);
    vec![
        (InputFormat::Jpeg, "jpeg 4:2:0", jpeg(w, h, &rgb, 90)),
        (
            InputFormat::Jpeg,
            "jpeg 4:4:4",
            jpeg_subsamp(w, h, &rgb, turbojpeg::Subsamp::None),
        ),
        (
            InputFormat::Jpeg,
            "jpeg 4:2:2",
            jpeg_subsamp(w, h, &rgb, turbojpeg::Subsamp::Sub2x1),
        ),
        (InputFormat::Jpeg, "jpeg gray", gray_jpeg(w, h)),
        (
            InputFormat::Jpeg,
            "jpeg restarts",
            jpeg_restarts(w, h, &rgb, 2),
        ),
        (
            InputFormat::Jpeg,
            "jpeg progressive",
            jpeg_progressive(w, h, &rgb),
        ),
        (InputFormat::Png, "png rgb", png_rgb(w, h, &rgb)),
        (InputFormat::Png, "png rgba", png_rgba(w, h, &rgba)),
        (InputFormat::Png, "png gray16", png_gray16(w, h)),
        (InputFormat::Webp, "webp lossy", webp_rgb(w, h, &rgb)),
        (InputFormat::Webp, "webp alpha", webp_rgba(w, h, &rgba)),
        (
            InputFormat::Gif,
            "gif",
            gif_rgba(w, h, &rgb_to_rgba(&rgb, 255)),
        ),
    ]
}

#[test]
fn every_input_format_to_every_output_format() {
    for (format, name, input) in inputs(97, 61) {
        let p = probe(&input).unwrap();
        assert_eq!(p.format, format, "{name}");
        assert_eq!((p.width, p.height, p.orientation), (97, 61, 1), "{name}");
        for out in OUTPUTS {
            for (w, h) in [(None, None), (Some(40), None), (Some(200), Some(100))] {
                let t = run(&input, &opts(w, h, Fit::Inside, out));
                assert_eq!(t.format, out);
                assert_eq!(t.input, p);
                let (ew, eh) = match (w, h) {
                    (None, None) => (97, 61),
                    (Some(40), None) => (40, 25),
                    _ => (159, 100),
                };
                assert_eq!(
                    (t.width, t.height),
                    (ew, eh),
                    "{name} -> {out:?} {w:?}x{h:?}"
                );
                let back = decode_rgba(&t.bytes);
                assert_eq!((back.0, back.1), (ew, eh), "{name} -> {out:?}");
                let magic: &[u8] = match out {
                    OutputFormat::Jpeg => &[0xFF, 0xD8, 0xFF],
                    OutputFormat::Png => b"\x89PNG",
                    OutputFormat::Webp => b"RIFF",
                };
                assert!(t.bytes.starts_with(magic), "{name} -> {out:?}");
            }
        }
    }
}

#[test]
fn output_formats_have_names_and_types() {
    for out in OUTPUTS {
        assert_eq!(OutputFormat::from_name(out.as_str()), Some(out));
        assert!(out.mime().starts_with("image/"));
    }
    assert_eq!(OutputFormat::from_name("JPG"), Some(OutputFormat::Jpeg));
    assert_eq!(OutputFormat::from_name("gif"), None);
    for fit in [Fit::Cover, Fit::Contain, Fit::Inside, Fit::Fill] {
        assert_eq!(Fit::from_name(fit.as_str()), Some(fit));
    }
    assert_eq!(Fit::from_name("COVER"), Some(Fit::Cover));
    assert_eq!(Fit::from_name("stretch"), None);
    assert_eq!(Fit::default(), Fit::Inside);
}

#[test]
fn fit_output_dimensions() {
    let rgb = pattern(400, 200);
    let input = jpeg(400, 200, &rgb, 90);
    let cases = [
        (Some(100), Some(100), Fit::Cover, (100, 100)),
        (Some(100), Some(100), Fit::Contain, (100, 100)),
        (Some(100), Some(100), Fit::Inside, (100, 50)),
        (Some(100), Some(100), Fit::Fill, (100, 100)),
        (Some(100), Some(10), Fit::Inside, (20, 10)),
        (Some(1000), Some(1000), Fit::Inside, (1000, 500)), // enlarges, like sharp
        (Some(100), None, Fit::Cover, (100, 50)),
        (None, Some(100), Fit::Fill, (200, 100)),
        (None, None, Fit::Contain, (400, 200)),
        (Some(1), Some(1), Fit::Cover, (1, 1)),
        (Some(1), None, Fit::Inside, (1, 1)), // never below one pixel
    ];
    for (w, h, fit, expected) in cases {
        for out in OUTPUTS {
            let t = run(&input, &opts(w, h, fit, out));
            assert_eq!((t.width, t.height), expected, "{w:?}x{h:?} {fit:?} {out:?}");
            let back = decode_rgba(&t.bytes);
            assert_eq!((back.0, back.1), expected);
        }
    }
}

#[test]
fn cover_crops_the_centre() {
    // Three vertical bands: red | green | blue. A square cover keeps the green middle.
    let (w, h) = (300u32, 100u32);
    let mut rgb = Vec::new();
    for _ in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(match x / 100 {
                0 => &[255u8, 0, 0],
                1 => &[0, 255, 0],
                _ => &[0, 0, 255],
            });
        }
    }
    for input in [jpeg(w, h, &rgb, 95), png_rgb(w, h, &rgb)] {
        for out in [OutputFormat::Png, OutputFormat::Jpeg] {
            let t = run(&input, &opts(Some(50), Some(50), Fit::Cover, out));
            let img = decode_rgba(&t.bytes);
            for (x, y) in [(2, 2), (47, 2), (25, 25), (2, 47), (47, 47)] {
                assert!(
                    close(pixel(&img, x, y), [0, 255, 0], 40),
                    "{out:?} ({x},{y}) = {:?}",
                    pixel(&img, x, y)
                );
            }
        }
    }
}

#[test]
fn contain_pads_white_for_jpeg_and_transparent_otherwise() {
    let rgb = marked(200, 100, 0, [200, 30, 30], [0, 0, 0]);
    let input = jpeg(200, 100, &rgb, 95);
    let t = run(
        &input,
        &opts(Some(100), Some(100), Fit::Contain, OutputFormat::Jpeg),
    );
    let img = decode_rgba(&t.bytes);
    assert_eq!((img.0, img.1), (100, 100));
    assert!(
        close(pixel(&img, 50, 2), [255, 255, 255], 8),
        "{:?}",
        pixel(&img, 50, 2)
    );
    assert!(close(pixel(&img, 50, 97), [255, 255, 255], 8));
    assert!(close(pixel(&img, 50, 50), [200, 30, 30], 25));

    for out in [OutputFormat::Png, OutputFormat::Webp] {
        let t = run(&input, &opts(Some(100), Some(100), Fit::Contain, out));
        let img = decode_rgba(&t.bytes);
        assert_eq!(
            pixel(&img, 50, 2)[3],
            0,
            "{out:?} top padding is transparent"
        );
        assert_eq!(
            pixel(&img, 50, 97)[3],
            0,
            "{out:?} bottom padding is transparent"
        );
        assert_eq!(pixel(&img, 50, 50)[3], 255, "{out:?} content is opaque");
    }
}

#[test]
fn transparency_is_kept_in_png_and_webp_and_flattened_on_white_in_jpeg() {
    let rgba: Vec<u8> = (0..64 * 64).flat_map(|_| [10u8, 20, 30, 0]).collect();
    for input in [
        png_rgba(64, 64, &rgba),
        webp_rgba(64, 64, &rgba),
        gif_rgba(64, 64, &rgba),
    ] {
        let jpg = run(
            &input,
            &opts(Some(32), None, Fit::Inside, OutputFormat::Jpeg),
        );
        assert!(close(
            pixel(&decode_rgba(&jpg.bytes), 16, 16),
            [255, 255, 255],
            3
        ));
        for out in [OutputFormat::Png, OutputFormat::Webp] {
            let t = run(&input, &opts(Some(32), None, Fit::Inside, out));
            assert_eq!(pixel(&decode_rgba(&t.bytes), 16, 16)[3], 0, "{out:?}");
        }
    }
}

/// Where the stored top-left corner is displayed, for each orientation.
fn expected_corner(o: u16) -> &'static str {
    match o {
        1 | 5 => "TL",
        2 | 6 => "TR",
        3 | 7 => "BR",
        _ => "BL",
    }
}

fn red_corner(img: &(u32, u32, Vec<u8>)) -> Vec<&'static str> {
    let (w, h) = (img.0, img.1);
    let corners = [
        ("TL", 1, 1),
        ("TR", w - 2, 1),
        ("BR", w - 2, h - 2),
        ("BL", 1, h - 2),
    ];
    corners
        .into_iter()
        .filter(|&(_, x, y)| close(pixel(img, x, y), [255, 0, 0], 70))
        .map(|(name, _, _)| name)
        .collect()
}

#[test]
fn exif_orientation_all_eight_values() {
    // Stored 64x32, red 16x16 block in the top-left corner, blue elsewhere.
    let rgb = marked(64, 32, 16, [0, 0, 255], [255, 0, 0]);
    let base = jpeg(64, 32, &rgb, 95);
    for o in 1..=8u16 {
        let input = with_exif(&base, o);
        let p = probe(&input).unwrap();
        assert_eq!((p.width, p.height, p.orientation), (64, 32, o as u8));
        let turned = o >= 5;
        let display = if turned { (32, 64) } else { (64, 32) };
        assert_eq!(p.display_size(), display);
        for out in OUTPUTS {
            // Kept size, then a resize given in displayed terms (width 16 of the displayed image).
            for (w, expected) in [
                (None, display),
                (Some(16), (16, display.1 * 16 / display.0)),
            ] {
                let t = run(&input, &opts(w, None, Fit::Inside, out));
                assert_eq!((t.width, t.height), expected, "o={o} {out:?} w={w:?}");
                let img = decode_rgba(&t.bytes);
                assert_eq!(
                    red_corner(&img),
                    vec![expected_corner(o)],
                    "orientation {o} -> {out:?} w={w:?}"
                );
            }
        }
        // Cover in displayed terms: a 20x40 box is portrait, exact size whatever the orientation.
        let t = run(
            &input,
            &opts(Some(20), Some(40), Fit::Cover, OutputFormat::Jpeg),
        );
        assert_eq!((t.width, t.height), (20, 40));
    }
}

#[test]
fn output_carries_no_metadata() {
    let input = with_exif(&jpeg(64, 32, &pattern(64, 32), 90), 6);
    let t = run(&input, &opts(None, None, Fit::Inside, OutputFormat::Jpeg));
    assert!(!t.bytes.windows(6).any(|w| w == b"Exif\0\0"));
    assert_eq!(probe(&t.bytes).unwrap().orientation, 1);
    for out in [OutputFormat::Png, OutputFormat::Webp] {
        let t = run(&input, &opts(None, None, Fit::Inside, out));
        assert!(
            !t.bytes
                .windows(4)
                .any(|w| w == b"eXIf" || w == b"EXIF" || w == b"ICCP")
        );
    }
}

#[test]
fn png_exif_orientation_is_applied() {
    let rgb = marked(64, 32, 16, [0, 0, 255], [255, 0, 0]);
    let input = png_with_exif(&png_rgb(64, 32, &rgb), 6);
    assert_eq!(probe(&input).unwrap().orientation, 6);
    let t = run(&input, &opts(None, None, Fit::Inside, OutputFormat::Png));
    let img = decode_rgba(&t.bytes);
    assert_eq!((img.0, img.1), (32, 64));
    assert_eq!(red_corner(&img), vec!["TR"]);
}

#[test]
fn quality_changes_the_size() {
    let rgb = pattern(256, 192);
    let input = png_rgb(256, 192, &rgb);
    for out in [OutputFormat::Jpeg, OutputFormat::Webp] {
        let size = |quality| {
            let o = TransformOptions {
                quality,
                ..opts(None, None, Fit::Inside, out)
            };
            run(&input, &o).bytes.len()
        };
        assert!(
            size(30) < size(90),
            "{out:?}: q30 {} q90 {}",
            size(30),
            size(90)
        );
    }
}

#[test]
fn jpeg_is_decoded_at_the_smallest_sufficient_dct_scale() {
    let input = jpeg(1600, 1200, &pattern(1600, 1200), 85);
    let cases = [
        (Some(200), None, Fit::Inside, 200 * 150), // 1/8 is exactly enough
        (Some(300), None, Fit::Inside, 400 * 300), // 1/4
        (Some(700), None, Fit::Inside, 800 * 600), // 1/2
        (Some(900), None, Fit::Inside, 1600 * 1200), // full
        (Some(150), Some(150), Fit::Cover, 200 * 150), // region 1200x1200 -> 150 at 1/8
    ];
    for (w, h, fit, decoded) in cases {
        for out in OUTPUTS {
            let t = run(&input, &opts(w, h, fit, out));
            assert_eq!(t.decoded_pixels, decoded, "{w:?}x{h:?} {fit:?} {out:?}");
        }
    }
}

#[test]
fn first_frame_of_an_animated_gif() {
    let (w, h) = (16u32, 16u32);
    let frames = [[255u8, 0, 0, 255], [0, 255, 0, 255]]
        .map(|c| image::Frame::new(image::RgbaImage::from_fn(w, h, |_, _| image::Rgba(c))));
    let mut bytes = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut bytes);
        enc.encode_frames(frames).unwrap();
    }
    let t = run(&bytes, &opts(None, None, Fit::Inside, OutputFormat::Png));
    assert!(close(pixel(&decode_rgba(&t.bytes), 8, 8), [255, 0, 0], 0));
}

#[test]
fn errors_map_to_http_statuses() {
    let e = |err: ImageError| err.status();
    assert_eq!(e(ImageError::InputTooLarge { bytes: 2, limit: 1 }), 413);
    assert_eq!(
        e(ImageError::TooManyPixels {
            width: 1,
            height: 1,
            limit: 0
        }),
        413
    );
    assert_eq!(
        e(ImageError::OutputTooLarge {
            width: 1,
            height: 1,
            limit: 0
        }),
        422
    );
    assert_eq!(e(ImageError::InvalidOptions(String::new())), 422);
    assert_eq!(e(ImageError::Unsupported), 415);
    assert_eq!(e(ImageError::Corrupt(String::new())), 422);
}

#[test]
fn planar_and_rgb_paths_agree() {
    // 4:2:0 JPEG to JPEG goes through planes (and, at 1/8, our own entropy decoder);
    // to PNG it goes through libjpeg-turbo's RGB output. Same picture either way.
    // Smooth content: fine chroma detail is legitimately lost when JPEG output subsamples it
    // again, which would hide the comparison.
    let (w, h) = (640u32, 480u32);
    let smooth: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let wave = ((x / 23.0).sin() * (y / 17.0).cos() * 60.0) as i32;
            [
                x as i32 * 255 / 640 + wave / 2,
                y as i32 * 255 / 480,
                128 + wave,
            ]
            .map(|v| v.clamp(0, 255) as u8)
        })
        .collect();
    let input = jpeg(w, h, &smooth, 92);
    for (width, with_restarts) in [
        (80, false),
        (160, false),
        (160, true),
        (300, false),
        (640, false),
    ] {
        let input = if with_restarts {
            jpeg_restarts(w, h, &smooth, 3)
        } else {
            input.clone()
        };
        let o = |format| TransformOptions {
            quality: 100,
            ..opts(Some(width), None, Fit::Inside, format)
        };
        let rgb_path = decode_rgba(&run(&input, &o(OutputFormat::Png)).bytes);
        // JPEG out (the planar path) and WebP out (RGB, lossy) against PNG out (RGB, lossless).
        for (format, tolerance) in [(OutputFormat::Jpeg, 3.5), (OutputFormat::Webp, 4.5)] {
            let planar = decode_rgba(&run(&input, &o(format)).bytes);
            assert_eq!((planar.0, planar.1), (rgb_path.0, rgb_path.1));
            let (mut diff, mut bias) = ([0u64; 4], [0i64; 4]);
            for (i, (x, y)) in planar.2.iter().zip(&rgb_path.2).enumerate() {
                diff[i % 4] += u64::from(x.abs_diff(*y));
                bias[i % 4] += i64::from(*x) - i64::from(*y);
            }
            let pixels = (planar.0 * planar.1) as f64;
            // Per channel, and signed too: a range or matrix mistake shifts a colour, which an
            // average over channels or over noise could hide.
            for channel in 0..3 {
                let mean = diff[channel] as f64 / pixels;
                let shift = bias[channel] as f64 / pixels;
                assert!(
                    mean < tolerance && shift.abs() < 1.0,
                    "{format:?} width {width} channel {channel}: mean difference {mean:.2}, \
                     shift {shift:.2}"
                );
            }
        }
    }
}
