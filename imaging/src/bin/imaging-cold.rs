//! `imaging-cold`: the cold path a CDN miss on a fresh Lambda container pays, as a whole process.
//!
//! ```text
//! imaging-cold PHOTO     decode, resize to 800 wide (Lanczos3), encode JPEG q80, exit
//! ```
//!
//! The same work as `imaging-bench`'s `resize800_jpeg`, once, in a process that does nothing
//! else, so that `bench/cold.py` can time process start to exit (loader, first-touch page
//! faults, codec initialisation) against `node bench/cold.js` doing the same with sharp. The
//! output is dropped: writing it would time the file system, not the transform. The only thing
//! printed is its size, so that a broken transform cannot pass as a fast one.

use std::process::ExitCode;

use lumi_imaging::{Fit, Limits, OutputFormat, TransformOptions, transform};

fn run() -> Result<usize, String> {
    let path = std::env::args().nth(1).ok_or("usage: imaging-cold PHOTO")?;
    let photo = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let options = TransformOptions {
        width: Some(800),
        height: None,
        fit: Fit::Inside,
        format: OutputFormat::Jpeg,
        quality: 80,
    };
    transform(&photo, &options, &Limits::default())
        .map(|t| t.bytes.len())
        .map_err(|e| e.to_string())
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
