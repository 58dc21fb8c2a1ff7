//! Command line parsing with plain `std::env::args`: one subcommand and a handful of options do
//! not need clap (and its build time).

use std::path::PathBuf;

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
        Some(other) => bail!("unknown subcommand `{other}` (expected `cold-start`)"),
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
