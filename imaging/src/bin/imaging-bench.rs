//! `imaging-bench`: the three pipelines sharp's reference `bench.js` runs, timed the same way, so
//! `bench/run.sh` can print ours next to sharp's.
//!
//! ```text
//! imaging-bench PHOTO [OPS|all] [ITERS] [WARMUP]    timings, one JSON line per op
//! imaging-bench peak PHOTO OP                        run OP once, print peak RSS (VmHWM)
//! imaging-bench write PHOTO DIR                      write each op's output to DIR
//! ```
//!
//! Timing mode runs WARMUP untimed then ITERS timed calls of [`lumi_imaging::transform`] per op,
//! sequentially on the calling thread (pin it with `taskset -c 0`), and prints median, p10, p90
//! and min wall milliseconds plus the output size. For each op it then re-runs itself in `peak`
//! mode in a child process, so the peak memory of one operation is measured in a fresh process
//! and reported as `peak_mb` on the same line.

use std::process::ExitCode;
use std::time::Instant;

use lumi_imaging::{Fit, Limits, OutputFormat, TransformOptions, transform};

const OPS: [&str; 3] = ["resize800_jpeg", "resize800_webp", "thumb200_jpeg"];
const QUALITY: u8 = 80;

fn options(op: &str) -> Option<TransformOptions> {
    let resize800 = |format| TransformOptions {
        width: Some(800),
        height: None,
        fit: Fit::Inside,
        format,
        quality: QUALITY,
    };
    match op {
        // sharp(jpeg).resize({ width: 800, kernel: 'lanczos3' }).jpeg({ quality: 80 })
        "resize800_jpeg" => Some(resize800(OutputFormat::Jpeg)),
        // sharp(jpeg).resize({ width: 800, kernel: 'lanczos3' }).webp({ quality: 80 })
        "resize800_webp" => Some(resize800(OutputFormat::Webp)),
        // sharp(jpeg).resize(200, 200, { fit: 'cover', position: 'centre' }).jpeg({ quality: 80 })
        "thumb200_jpeg" => Some(TransformOptions {
            width: Some(200),
            height: Some(200),
            fit: Fit::Cover,
            format: OutputFormat::Jpeg,
            quality: QUALITY,
        }),
        _ => None,
    }
}

/// Peak resident set of this process, in kB, from /proc/self/status.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn run_op(photo: &[u8], op: &str) -> Result<usize, String> {
    let options = options(op).ok_or_else(|| format!("unknown op {op}"))?;
    transform(photo, &options, &Limits::default())
        .map(|t| t.bytes.len())
        .map_err(|e| format!("{op}: {e}"))
}

/// Runs `op` once in a child process and returns its peak RSS in MB.
fn child_peak_mb(photo_path: &str, op: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["peak", photo_path, op])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: f64 = text
        .split("\"peak_rss_kb\":")
        .nth(1)?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn timings(args: &[String]) -> Result<(), String> {
    let photo_path = args
        .first()
        .ok_or("usage: imaging-bench PHOTO [OPS] [ITERS] [WARMUP]")?;
    let sel = args.get(1).map_or("all", String::as_str);
    let iters: usize = args
        .get(2)
        .map_or(Ok(30), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let warm: usize = args
        .get(3)
        .map_or(Ok(3), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let photo = std::fs::read(photo_path).map_err(|e| format!("{photo_path}: {e}"))?;
    let ops: Vec<&str> = if sel == "all" {
        OPS.to_vec()
    } else {
        sel.split(',').collect()
    };
    for op in ops {
        let mut bytes = 0;
        for _ in 0..warm {
            bytes = run_op(&photo, op)?;
        }
        let mut t = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            bytes = run_op(&photo, op)?;
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        let peak =
            child_peak_mb(photo_path, op).map_or("null".to_string(), |mb| format!("{mb:.1}"));
        println!(
            "{{\"op\":\"{op}\",\"median_ms\":{:.2},\"p10_ms\":{:.2},\"p90_ms\":{:.2},\"min_ms\":{:.2},\"out_bytes\":{bytes},\"peak_mb\":{peak}}}",
            percentile(&t, 0.5),
            percentile(&t, 0.1),
            percentile(&t, 0.9),
            t.first().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

fn peak(args: &[String]) -> Result<(), String> {
    let (Some(photo_path), Some(op)) = (args.first(), args.get(1)) else {
        return Err("usage: imaging-bench peak PHOTO OP".into());
    };
    let photo = std::fs::read(photo_path).map_err(|e| format!("{photo_path}: {e}"))?;
    let bytes = run_op(&photo, op)?;
    let kb = peak_rss_kb().ok_or("no VmHWM in /proc/self/status")?;
    println!("{{\"op\":\"{op}\",\"out_bytes\":{bytes},\"peak_rss_kb\":{kb}}}");
    Ok(())
}

fn write(args: &[String]) -> Result<(), String> {
    let (Some(photo_path), Some(dir)) = (args.first(), args.get(1)) else {
        return Err("usage: imaging-bench write PHOTO DIR".into());
    };
    let photo = std::fs::read(photo_path).map_err(|e| format!("{photo_path}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    for op in OPS {
        let options = options(op).ok_or("unknown op")?;
        let out = transform(&photo, &options, &Limits::default()).map_err(|e| e.to_string())?;
        let path = format!("{dir}/out_ours_{op}.{}", options.format.extension());
        std::fs::write(&path, &out.bytes).map_err(|e| format!("{path}: {e}"))?;
        println!(
            "{path} {}x{} {} bytes",
            out.width,
            out.height,
            out.bytes.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("peak") => peak(args.get(1..).unwrap_or_default()),
        Some("write") => write(args.get(1..).unwrap_or_default()),
        _ => timings(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imaging-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
