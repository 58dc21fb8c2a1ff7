//! Command line parsing with plain `std::env::args`: one subcommand and a handful of options do
//! not need clap (and its build time).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, anyhow, bail};

/// Printed by `--help` and appended to every usage error.
pub const USAGE: &str = "\
usage: lumi-bench cold-start --lambda-dir DIR --reference NAME
                             [--function NAME=EVENT.json ...] [--runs N] [--warmup N]
                             [--json PATH]

  --lambda-dir DIR         where `cargo lambda build --release` put DIR/<name>/bootstrap
  --reference NAME         the hello-world binary every function is compared with
  --function NAME=EVENT    a function to measure and the event (JSON file) it is invoked with;
                           repeat for several functions
  --runs N                 measured runs per binary (default 20)
  --warmup N               discarded runs per binary before measuring (default 2)
  --json PATH              also write the figures as JSON to PATH

usage: lumi-bench load [--lumi PATH] [--clients N] [--duration SECONDS] [--warmup SECONDS]
                       [--one-address] [--moto-log PATH] [--dev-output PATH] [--json PATH]

  --lumi PATH              the `lumi` binary whose `lumi dev` is loaded (default target/debug/lumi,
                           what `make dev` runs)
  --clients N              concurrent customers (default 8, the goal's)
  --duration SECONDS       measured time (default 30)
  --warmup SECONDS         time before the measured window, for every client's warm-up round
                           (default 10)
  --one-address            every client from 127.0.0.10 (default: each from its own address)
  --moto-log PATH          moto's request log, summarised for the window (default
                           target/bench-load-moto.jsonl; `none` for no log)
  --dev-output PATH        where `lumi dev`'s output goes (default target/bench-load-dev.log)
  --json PATH              also write the figures as JSON to PATH

usage: lumi-bench image-get [--photo PATH] [--runs N] [--warmup N] [--json PATH]

  --photo PATH             the original (default ../shared/bench/photo_4000x3000.jpg beside the
                           repository, imaging/bench/run.sh's photo)
  --runs N                 measured runs of each measurement (default 30)
  --warmup N               discarded runs of each before measuring (default 3)
  --json PATH              also write the figures, with every sample, as JSON to PATH
";

/// Measured runs per binary when `--runs` is not given.
const DEFAULT_RUNS: usize = 20;
/// Discarded warm-up runs per binary when `--warmup` is not given.
const DEFAULT_WARMUP: usize = 2;

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    ColdStart(ColdStart),
    Load(Load),
    ImageGet(ImageGet),
}

/// Options of the `image-get` subcommand.
#[derive(Debug, PartialEq)]
pub struct ImageGet {
    /// `None`: the bench photo beside the repository.
    pub photo: Option<PathBuf>,
    pub runs: usize,
    pub warmup: usize,
    pub json: Option<PathBuf>,
}

/// Options of the `load` subcommand.
#[derive(Debug, PartialEq)]
pub struct Load {
    pub lumi: PathBuf,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub one_address: bool,
    pub moto_log: Option<PathBuf>,
    pub dev_output: PathBuf,
    pub json: Option<PathBuf>,
}

/// Options of the `cold-start` subcommand.
#[derive(Debug, PartialEq)]
pub struct ColdStart {
    pub lambda_dir: PathBuf,
    pub reference: String,
    /// `(name, event file)` in command-line order.
    pub functions: Vec<(String, PathBuf)>,
    pub runs: usize,
    pub warmup: usize,
    pub json: Option<PathBuf>,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    parse_inner(args).map_err(|err| anyhow!("{err}\n\n{USAGE}"))
}

fn parse_inner(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        None | Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("cold-start") => {}
        Some("load") => return parse_load(args),
        Some("image-get") => return parse_image_get(args),
        Some(other) => {
            bail!("unknown subcommand `{other}` (expected `cold-start`, `load` or `image-get`)")
        }
    }

    let mut lambda_dir = None;
    let mut reference = None;
    let mut functions: Vec<(String, PathBuf)> = Vec::new();
    let mut runs = DEFAULT_RUNS;
    let mut warmup = DEFAULT_WARMUP;
    let mut json = None;

    while let Some(arg) = args.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let mut value = || match inline.clone() {
            Some(value) => Ok(value),
            None => args.next().with_context(|| format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--lambda-dir" => lambda_dir = Some(PathBuf::from(value()?)),
            "--reference" => reference = Some(checked_name(&value()?)?),
            "--function" => {
                let spec = value()?;
                let (name, event) = spec
                    .split_once('=')
                    .with_context(|| format!("--function `{spec}` is not NAME=EVENT.json"))?;
                let name = checked_name(name)?;
                if event.is_empty() {
                    bail!("--function `{spec}` has no event file");
                }
                functions.push((name, PathBuf::from(event)));
            }
            "--runs" => runs = positive(&flag, &value()?)?,
            "--warmup" => warmup = count(&flag, &value()?)?,
            "--json" => json = Some(PathBuf::from(value()?)),
            other => bail!("unknown option `{other}`"),
        }
    }

    let reference = reference.context("--reference is required")?;
    for (i, (name, _)) in functions.iter().enumerate() {
        if *name == reference || functions[..i].iter().any(|(seen, _)| seen == name) {
            bail!("`{name}` is given twice (functions and the reference must be distinct)");
        }
    }
    Ok(Command::ColdStart(ColdStart {
        lambda_dir: lambda_dir.context("--lambda-dir is required")?,
        reference,
        functions,
        runs,
        warmup,
        json,
    }))
}

/// `--opt value` or `--opt=value` pairs, in order; `-h`/`--help` as `("--help", "")`.
fn options(args: impl Iterator<Item = String>) -> Result<Vec<(String, String)>> {
    let mut args = args.peekable();
    let mut out = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" || arg == "--one-address" {
            out.push((
                if arg == "-h" {
                    "--help".to_owned()
                } else {
                    arg
                },
                String::new(),
            ));
            continue;
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                out.push((flag.to_owned(), value.to_owned()));
            }
            _ => {
                let value = args
                    .next()
                    .with_context(|| format!("{arg} needs a value"))?;
                out.push((arg, value));
            }
        }
    }
    Ok(out)
}

fn parse_load(args: impl Iterator<Item = String>) -> Result<Command> {
    let mut load = Load {
        lumi: PathBuf::from("target/debug/lumi"),
        clients: 8,
        duration: Duration::from_secs(30),
        warmup: Duration::from_secs(10),
        one_address: false,
        moto_log: Some(PathBuf::from("target/bench-load-moto.jsonl")),
        dev_output: crate::load::default_dev_output(),
        json: None,
    };
    for (flag, value) in options(args)? {
        match flag.as_str() {
            "--help" => return Ok(Command::Help),
            "--one-address" => load.one_address = true,
            "--lumi" => load.lumi = PathBuf::from(value),
            "--clients" => {
                load.clients = positive(&flag, &value)?;
                if load.clients > 200 {
                    bail!("--clients is at most 200 (one loopback address each)");
                }
            }
            "--duration" => load.duration = Duration::from_secs(positive(&flag, &value)? as u64),
            "--warmup" => load.warmup = Duration::from_secs(count(&flag, &value)? as u64),
            "--moto-log" => {
                load.moto_log = (value != "none").then(|| PathBuf::from(value));
            }
            "--dev-output" => load.dev_output = PathBuf::from(value),
            "--json" => load.json = Some(PathBuf::from(value)),
            other => bail!("unknown option `{other}`"),
        }
    }
    Ok(Command::Load(load))
}

fn parse_image_get(args: impl Iterator<Item = String>) -> Result<Command> {
    let mut image_get = ImageGet {
        photo: None,
        runs: 30,
        warmup: 3,
        json: None,
    };
    for (flag, value) in options(args)? {
        match flag.as_str() {
            "--help" => return Ok(Command::Help),
            "--photo" => image_get.photo = Some(PathBuf::from(value)),
            "--runs" => image_get.runs = positive(&flag, &value)?,
            "--warmup" => image_get.warmup = count(&flag, &value)?,
            "--json" => image_get.json = Some(PathBuf::from(value)),
            other => bail!("unknown option `{other}`"),
        }
    }
    Ok(Command::ImageGet(image_get))
}

/// A binary name becomes a path component (`<lambda-dir>/<name>/bootstrap`) and part of an
/// ARN: keep it to what cargo-lambda and Lambda accept.
fn checked_name(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!("`{name}` is not a function name (letters, digits, `-` and `_` only)");
    }
    Ok(name.to_owned())
}

fn count(flag: &str, value: &str) -> Result<usize> {
    value
        .parse()
        .with_context(|| format!("{flag} `{value}` is not a whole number"))
}

fn positive(flag: &str, value: &str) -> Result<usize> {
    match count(flag, value)? {
        0 => bail!("{flag} must be at least 1"),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_make_bench_line() {
        let line = "cold-start --lambda-dir target/lambda --reference hello-lambda \
                    --function health=events/health-live.json --function=other=x.json --runs 5 \
                    --json out.json";
        let Command::ColdStart(opts) = parse(args(line)).unwrap() else {
            panic!("not cold-start");
        };
        assert_eq!(
            opts,
            ColdStart {
                lambda_dir: "target/lambda".into(),
                reference: "hello-lambda".into(),
                functions: vec![
                    ("health".into(), "events/health-live.json".into()),
                    ("other".into(), "x.json".into()),
                ],
                runs: 5,
                warmup: DEFAULT_WARMUP,
                json: Some("out.json".into()),
            }
        );
    }

    #[test]
    fn defaults_and_help() {
        let Command::ColdStart(opts) =
            parse(args("cold-start --lambda-dir d --reference r")).unwrap()
        else {
            panic!("not cold-start");
        };
        assert_eq!((opts.runs, opts.warmup, opts.json), (20, 2, None));
        assert!(opts.functions.is_empty());
        assert_eq!(parse(args("")).unwrap(), Command::Help);
        assert_eq!(parse(args("cold-start --help")).unwrap(), Command::Help);
    }

    #[test]
    fn parses_the_load_line() {
        let Command::Load(load) = parse(args(
            "load --clients 4 --duration=5 --one-address --moto-log none --json o.json",
        ))
        .unwrap() else {
            panic!("not load");
        };
        assert_eq!(
            (load.clients, load.duration, load.warmup),
            (4, Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!((load.moto_log, load.json), (None, Some("o.json".into())));
        assert!(load.one_address);
        assert_eq!(parse(args("load --help")).unwrap(), Command::Help);
        for line in [
            "load --clients 0",
            "load --clients",
            "load --bogus 1",
            "load --clients 201",
        ] {
            assert!(parse(args(line)).is_err(), "accepted: {line}");
        }
    }

    #[test]
    fn parses_the_image_get_line() {
        let Command::ImageGet(opts) = parse(args("image-get")).unwrap() else {
            panic!("not image-get");
        };
        assert_eq!(
            opts,
            ImageGet {
                photo: None,
                runs: 30,
                warmup: 3,
                json: None
            }
        );
        let Command::ImageGet(opts) = parse(args(
            "image-get --photo p.jpg --runs=5 --warmup 0 --json target/image-get.json",
        ))
        .unwrap() else {
            panic!("not image-get");
        };
        assert_eq!(
            opts,
            ImageGet {
                photo: Some("p.jpg".into()),
                runs: 5,
                warmup: 0,
                json: Some("target/image-get.json".into())
            }
        );
        assert_eq!(parse(args("image-get --help")).unwrap(), Command::Help);
        for line in [
            "image-get --runs 0",
            "image-get --runs",
            "image-get --warmup x",
            "image-get --bogus 1",
        ] {
            assert!(parse(args(line)).is_err(), "accepted: {line}");
        }
    }

    #[test]
    fn rejects_bad_lines() {
        for line in [
            "warm-start",
            "cold-start --reference r",
            "cold-start --lambda-dir d",
            "cold-start --lambda-dir d --reference r --runs 0",
            "cold-start --lambda-dir d --reference r --runs x",
            "cold-start --lambda-dir d --reference r --function health",
            "cold-start --lambda-dir d --reference r --function ../x=e.json",
            "cold-start --lambda-dir d --reference r --function r=e.json",
            "cold-start --lambda-dir d --reference r --function a=e --function a=f",
            "cold-start --lambda-dir d --reference r --bogus",
            "cold-start --lambda-dir",
        ] {
            assert!(parse(args(line)).is_err(), "accepted: {line}");
        }
    }
}
