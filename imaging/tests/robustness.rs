//! Hostile input: every format truncated at many offsets, and deterministically bit-flipped
//! copies. Each must give `Ok` or `Err`, never a panic (a panic fails the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lumi_imaging::{Fit, Limits, OutputFormat, TransformOptions, probe, transform};

/// Small limits so a mutated header that claims a big image stays cheap to refuse or decode.
fn limits() -> Limits {
    Limits {
        max_input_bytes: 1 << 20,
        max_input_pixels: 1 << 20,
        max_output_dimension: 512,
    }
}

fn option_set() -> [TransformOptions; 6] {
    let o = |w, h, fit, format| TransformOptions {
        width: w,
        height: h,
        fit,
        format,
        quality: 75,
    };
    [
        o(Some(24), Some(24), Fit::Cover, OutputFormat::Jpeg),
        o(Some(20), None, Fit::Inside, OutputFormat::Png),
        o(Some(30), Some(10), Fit::Contain, OutputFormat::Webp),
        o(None, None, Fit::Fill, OutputFormat::Jpeg),
        // 1/8 and 1/4 of the 48-pixel-wide corpus: the DCT-scaled decoders.
        o(Some(6), None, Fit::Inside, OutputFormat::Jpeg),
        o(Some(12), Some(12), Fit::Cover, OutputFormat::Jpeg),
    ]
}

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let (w, h) = (48, 40);
    let rgb = pattern(w, h);
    let rgba = rgb_to_rgba(&rgb, 128);
    vec![
        ("jpeg", jpeg(w, h, &rgb, 85)),
        ("jpeg exif", with_exif(&jpeg(w, h, &rgb, 85), 6)),
        (
            "jpeg 444",
            jpeg_subsamp(w, h, &rgb, turbojpeg::Subsamp::None),
        ),
        ("jpeg gray", gray_jpeg(w, h)),
        ("jpeg restarts", jpeg_restarts(w, h, &rgb, 1)),
        ("jpeg progressive", jpeg_progressive(w, h, &rgb)),
        ("png", png_rgb(w, h, &rgb)),
        ("png alpha", png_rgba(w, h, &rgba)),
        ("png exif", png_with_exif(&png_rgb(w, h, &rgb), 8)),
        ("webp", webp_rgb(w, h, &rgb)),
        ("webp lossless", webp_rgba(w, h, &rgba)),
        ("gif", gif_rgba(w, h, &rgb_to_rgba(&rgb, 255))),
    ]
}

fn exercise(input: &[u8]) {
    let _ = probe(input);
    for o in &option_set() {
        if let Ok(t) = transform(input, o, &limits()) {
            assert!(t.width >= 1 && t.height >= 1);
            assert!(t.width <= 512 && t.height <= 512);
            if let (Some(w), Some(h)) = (o.width, o.height)
                && o.fit != Fit::Inside
            {
                assert_eq!((t.width, t.height), (w, h));
            }
            assert!(!t.bytes.is_empty());
        }
    }
}

#[test]
fn the_corpus_itself_transforms() {
    for (name, input) in corpus() {
        for o in &option_set() {
            assert!(transform(&input, o, &limits()).is_ok(), "{name} {o:?}");
        }
    }
}

#[test]
fn truncated_files_never_panic() {
    for (name, input) in corpus() {
        // Every offset in the headers, then a stride through the data.
        let offsets = (0..input.len().min(200)).chain((200..input.len()).step_by(37));
        for n in offsets {
            let cut = &input[..n];
            exercise(cut);
            if n < input.len() {
                // A truncated file is never mistaken for a whole one of another size.
                if let Ok(p) = probe(cut) {
                    assert!(p.width >= 1 && p.height >= 1, "{name} at {n}");
                }
            }
        }
    }
}

#[test]
fn mutated_files_never_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for (_name, input) in corpus() {
        for case in 0..40 {
            let mut m = input.clone();
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = if case % 2 == 0 {
                    // Half the cases aim at the headers, where sizes and lengths live.
                    rng.below(m.len().min(64))
                } else {
                    rng.below(m.len())
                };
                match rng.below(3) {
                    0 => m[at] ^= 1 << rng.below(8),
                    1 => m[at] = rng.next() as u8,
                    _ => m[at] = 0xFF,
                }
            }
            exercise(&m);
        }
    }
}

#[test]
fn appended_and_prefixed_garbage_never_panics() {
    let mut rng = Rng(42);
    for (_name, input) in corpus() {
        let mut tail = input.clone();
        tail.extend((0..100).map(|_| rng.next() as u8));
        exercise(&tail);
        let mut head = input[..input.len().min(12)].to_vec();
        head.extend((0..300).map(|_| rng.next() as u8));
        exercise(&head);
    }
}
