//! `imaging-cold`: the cold path a CDN miss on a fresh Lambda container pays, as a whole process.
//!
//! ```text
//! imaging-cold PHOTO     decode, resize to 800 wide (Lanczos3), encode JPEG q80, exit
//! ```
//!
//! The same work as `imaging-bench`'s `resize800_jpeg`, once, in a process that does nothing
//! else, so that `bench/cold.py` can time process start to exit (loader, first-touch page
//! faults, codec initialisation) against `node bench/cold.js` doing the same with sharp. The
//! photo is read as the images function reads an original from S3, streamed into the decoder
//! ([`lumi_imaging::transform_streamed`]). The output is dropped: writing it would time the file system, not the transform. The only thing
//! printed is its size, so that a broken transform cannot pass as a fast one.

use std::process::ExitCode;

use lumi_imaging::{Fit, Limits, OutputFormat, StreamError, TransformOptions, transform_streamed};

fn run() -> Result<usize, String> {
    let path = std::env::args().nth(1).ok_or("usage: imaging-cold PHOTO")?;
    let mut photo = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let options = TransformOptions {
        width: Some(800),
        height: None,
        fit: Fit::Inside,
        format: OutputFormat::Jpeg,
        quality: 80,
    };
    match transform_streamed(&mut photo, &options, &Limits::default()) {
        Ok(t) => Ok(t.bytes.len()),
        Err(StreamError::Image(e)) => Err(e.to_string()),
        Err(StreamError::Source(e)) => Err(format!("{path}: {e}")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(bytes) => {
            println!("{bytes}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imaging-cold: {e}");
            ExitCode::FAILURE
        }
    }
}
