//! `transform_streamed` against `transform`: the same answer for every input, byte for byte,
//! however the source hands out its bytes; the usual photo streamed through a window (never
//! read whole), everything else read whole; a decode that gives up starts over from a re-read;
//! the size limit and the source's errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lumi_imaging::{
    Fit, ImageError, Limits, OutputFormat, Source, StreamError, TransformOptions, Transformed,
    transform, transform_streamed,
};

/// A source that hands out its bytes in uneven pieces (so every window boundary falls
/// somewhere new), counting re-reads and remembering the largest read it was asked for.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
    rereads: usize,
    largest_ask: usize,
    /// Fails every read from this offset on.
    fail_at: Option<usize>,
}

impl Trickle {
    fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            at: 0,
            step: 0,
            rereads: 0,
            largest_ask: 0,
            fail_at: None,
        }
    }
}

const PIECES: [usize; 6] = [1, 7, 4093, 300, 65_536, 12_345];

impl Source for Trickle {
    type Error = String;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if self.fail_at.is_some_and(|at| self.at >= at) {
            return Err("the connection was reset".into());
        }
        self.largest_ask = self.largest_ask.max(buf.len());
        let piece = PIECES[self.step % PIECES.len()];
        self.step += 1;
        let n = piece.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    fn reread(&mut self, limit: usize) -> Result<Vec<u8>, String> {
        self.rereads += 1;
        Ok(self.data[..limit.min(self.data.len())].to_vec())
    }
}

/// A noisy photo-like JPEG (noise keeps it large: several windows of scan).
fn noisy_jpeg(w: u32, h: u32, restart_interval: u16) -> Vec<u8> {
    let mut seed = 0x9E37_79B9u32;
    let mut rgb = pattern(w, h);
    for v in &mut rgb {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *v = (i32::from(*v) + (seed % 64) as i32 - 32).clamp(0, 255) as u8;
    }
    if restart_interval > 0 {
        jpeg_restarts(w, h, &rgb, restart_interval)
    } else {
        jpeg(w, h, &rgb, 92)
    }
}

/// `jpeg` with `count` APP2 segments of 60 000 bytes before its other segments: headers longer
/// than one window.
fn with_metadata(jpeg: &[u8], count: usize) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for _ in 0..count {
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&60_002u16.to_be_bytes());
        out.extend(std::iter::repeat_n(0x5A, 60_000));
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn options(width: u32, format: OutputFormat) -> TransformOptions {
    TransformOptions {
        width: Some(width),
        height: None,
        fit: Fit::Inside,
        format,
        quality: 80,
    }
}

fn streamed(
    input: &[u8],
    o: &TransformOptions,
    limits: &Limits,
) -> (Result<Transformed, StreamError<String>>, Trickle) {
    let mut source = Trickle::new(input);
    let result = transform_streamed(&mut source, o, limits);
    (result, source)
}

#[test]
fn the_usual_photo_streams_through_a_window_and_matches_transform() {
    let limits = Limits::default();
    let photos = [
        ("plain", noisy_jpeg(1200, 900, 0)),
        ("restart markers", noisy_jpeg(1200, 900, 3)),
        ("odd size", noisy_jpeg(1203, 901, 0)),
        ("turned by EXIF", with_exif(&noisy_jpeg(1200, 900, 0), 3)),
        ("long headers", with_metadata(&noisy_jpeg(1200, 900, 0), 3)),
    ];
    for (what, photo) in &photos {
        assert!(photo.len() > 4 * 65_536, "{what}: {} bytes", photo.len());
        // 1/4 (300 wide) and 1/8 (150 wide) scale.
        for width in [300, 150] {
            let o = options(width, OutputFormat::Jpeg);
            let whole = transform(photo, &o, &limits).unwrap();
            let (result, source) = streamed(photo, &o, &limits);
            assert_eq!(result.unwrap(), whole, "{what} at {width}");
            assert_eq!(source.rereads, 0, "{what} at {width}: re-read");
            assert!(
                source.largest_ask <= 65_536,
                "{what} at {width}: asked for {} bytes at once, more than a window",
                source.largest_ask
            );
        }
    }
}

#[test]
fn every_other_input_is_read_whole_and_matches_transform() {
    let limits = Limits::default();
    let (w, h) = (240, 180);
    let rgb = pattern(w, h);
    let rgba = rgb_to_rgba(&rgb, 200);
    let inputs = [
        ("jpeg 4:2:0", noisy_jpeg(w, h, 0)),
        (
            "jpeg 4:4:4",
            jpeg_subsamp(w, h, &rgb, turbojpeg::Subsamp::None),
        ),
        ("jpeg gray", gray_jpeg(w, h)),
        ("jpeg progressive", jpeg_progressive(w, h, &rgb)),
        ("png", png_rgba(w, h, &rgba)),
        ("webp", webp_rgb(w, h, &rgb)),
        ("gif", gif_rgba(w, h, &rgba)),
        ("not an image", b"hello, world".repeat(10)),
        ("empty", Vec::new()),
    ];
    // 1/4 to JPEG (the streamed path for 4:2:0), 1/2 to JPEG, and WebP (the RGB path).
    let outputs = [
        options(60, OutputFormat::Jpeg),
        options(120, OutputFormat::Jpeg),
        options(60, OutputFormat::Webp),
    ];
    for (what, input) in &inputs {
        for o in &outputs {
            let whole = transform(input, o, &limits);
            let (result, source) = streamed(input, o, &limits);
            match (result, whole) {
                (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{what} {o:?}"),
                (Err(StreamError::Image(ours)), Err(theirs)) => {
                    assert_eq!(ours, theirs, "{what} {o:?}");
                }
                (ours, theirs) => panic!(
                    "{what} {o:?}: {:?} against {:?}",
                    ours.map(|t| t.bytes.len()),
                    theirs.map(|t| t.bytes.len())
                ),
            }
            assert_eq!(
                source.rereads, 0,
                "{what} {o:?}: small inputs are never re-read"
            );
        }
    }
}

#[test]
fn a_scan_the_decoder_gives_up_on_starts_over_from_a_reread() {
    let limits = Limits::default();
    let photo = noisy_jpeg(1200, 900, 0);
    // Cut in the middle of the scan: our decoder gives up at the gap, and the whole file goes
    // to libjpeg-turbo, which reports it as it does for `transform`.
    let cut = &photo[..photo.len() * 2 / 3];
    let o = options(300, OutputFormat::Jpeg);
    let whole = transform(cut, &o, &limits).unwrap_err();
    assert!(matches!(whole, ImageError::Corrupt(_)), "{whole:?}");
    let (result, source) = streamed(cut, &o, &limits);
    match result {
        Err(StreamError::Image(error)) => assert_eq!(error, whole),
        other => panic!("{:?}", other.map(|t| t.bytes.len())),
    }
    assert_eq!(source.rereads, 1);
}

#[test]
fn the_size_limit_holds_as_for_transform() {
    let photo = noisy_jpeg(1200, 900, 0);
    let o = options(300, OutputFormat::Jpeg);
    for limit in [photo.len() / 2, 1_000, photo.len() - 1] {
        let limits = Limits {
            max_input_bytes: limit,
            ..Limits::default()
        };
        let (result, _) = streamed(&photo, &o, &limits);
        match result {
            Err(StreamError::Image(ImageError::InputTooLarge { limit: l, .. })) => {
                assert_eq!(l, limit);
            }
            other => panic!("limit {limit}: {:?}", other.map(|t| t.bytes.len())),
        }
    }
    let limits = Limits {
        max_input_bytes: photo.len(),
        ..Limits::default()
    };
    let (result, source) = streamed(&photo, &o, &limits);
    assert_eq!(result.unwrap(), transform(&photo, &o, &limits).unwrap());
    assert_eq!(source.rereads, 0);
}

#[test]
fn a_source_that_fails_is_a_source_error() {
    let photo = noisy_jpeg(1200, 900, 0);
    let o = options(300, OutputFormat::Jpeg);
    // In the headers, and in the middle of the scan.
    for at in [100, photo.len() / 2] {
        let mut source = Trickle::new(&photo);
        source.fail_at = Some(at);
        match transform_streamed(&mut source, &o, &Limits::default()) {
            Err(StreamError::Source(message)) => assert_eq!(message, "the connection was reset"),
            Err(StreamError::Image(error)) => panic!("failing at {at}: {error:?}"),
            Ok(t) => panic!("failing at {at}: transformed to {} bytes", t.bytes.len()),
        }
    }
}

#[test]
fn a_file_is_a_source() {
    let photo = noisy_jpeg(1200, 900, 0);
    let o = options(300, OutputFormat::Jpeg);
    let mut file = std::io::Cursor::new(photo.clone());
    let result = transform_streamed(&mut file, &o, &Limits::default()).unwrap();
    assert_eq!(result, transform(&photo, &o, &Limits::default()).unwrap());
    // A re-read starts from the first byte, wherever the reader was.
    let mut file = std::io::Cursor::new(photo.clone());
    file.set_position(1234);
    assert_eq!(Source::reread(&mut file, 10).unwrap(), photo[..10]);
}
