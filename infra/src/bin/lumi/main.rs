//! `lumi`: the project's own command line (clap), for local development, operations and
//! benchmarks. `lumi --help` lists the commands and `lumi <command> --help` each one's
//! arguments; `lumi completions <bash|zsh|fish|...>` prints a shell completion script.
//!
//! - [`dev`]: `lumi dev` serves the whole API on a local AWS stack (`make dev`); [`docs`]:
//!   `lumi openapi` writes the OpenAPI document generated from the handlers.
//! - [`ops`]: against AWS with the default credentials and region, or against the local stack
//!   with `AWS_ENDPOINT_URL=http://127.0.0.1:4566`: `secrets`, `users`, `sessions`, `settings`,
//!   `backup`, `schema`, `outbox`, `dlq`, `images`. `--table` is the stack's `AppTableName` output,
//!   `--secret-id` its `ConfigSecretArn`.
//! - [`bench`]: `lumi bench aws-calls` (`make bench`).

mod bench;
mod dev;
mod docs;
mod ops;

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lumi",
    version,
    about = "Lumi's command line: local development, operations, benchmarks",
    after_help = "Operations run against AWS with the default credentials and region, or against \
                  the local stack with AWS_ENDPOINT_URL=http://127.0.0.1:4566."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// [dev] Serve the whole API on a local AWS stack (moto, localstripe) until Ctrl-C
    Dev(dev::DevArgs),
    /// [dev] Write the OpenAPI document generated from the handlers (docs/openapi.yaml)
    Openapi(docs::OpenapiArgs),
    /// [ops] The config secret: complete it, rotate the signing or the config key
    #[command(subcommand)]
    Secrets(ops::secrets::SecretsCommand),
    /// [ops] Accounts: the first admin, a user's tier
    #[command(subcommand)]
    Users(ops::users::UsersCommand),
    /// [ops] Sessions: purge a user's, end a user's or everyone's
    #[command(subcommand)]
    Sessions(ops::sessions::SessionsCommand),
    /// [ops] Runtime settings: show them, change a rate-limit budget, seal again
    #[command(subcommand)]
    Settings(ops::settings::SettingsCommand),
    /// [ops] Backups: run a job, list runs, restore into tables, adopt a restored table
    #[command(subcommand)]
    Backup(ops::backup::BackupCommand),
    /// [ops] The live tables, queues and buckets against template.yaml
    #[command(subcommand)]
    Schema(ops::schema::SchemaCommand),
    /// [ops] Images: a signed URL of a stored original
    #[command(subcommand)]
    Images(ops::images::ImagesCommand),
    /// [ops] Send the refund emails waiting in the outbox
    #[command(subcommand)]
    Outbox(ops::queues::OutboxCommand),
    /// [ops] Move failed refund emails back to their queue
    #[command(subcommand)]
    Dlq(ops::queues::DlqCommand),
    /// [bench] AWS calls per request on a local stack of its own (make bench)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script: `lumi completions bash > /etc/bash_completion.d/lumi`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Openapi(args) => docs::write_openapi(args),
        Command::Secrets(command) => command.run().await,
        Command::Users(command) => command.run().await,
        Command::Sessions(command) => command.run().await,
        Command::Settings(command) => command.run().await,
        Command::Backup(command) => command.run().await,
        Command::Schema(command) => std::process::exit(command.run().await),
        Command::Images(command) => command.run().await,
        Command::Outbox(command) => command.run().await,
        Command::Dlq(command) => command.run().await,
        Command::Bench(command) => command.run().await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lumi", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// A `<name>=<value>` argument (`--table AppTable=lumi-restored`).
pub(crate) fn name_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected <name>=<value>, not `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn errors_name_the_argument() {
        let error = Cli::try_parse_from(["lumi", "users", "create-admin", "--table", "t"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--email"), "{error}");
        let error = Cli::try_parse_from(["lumi", "backup", "adopt", "--table", "AppTable"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--table"), "{error}");
        assert!(error.contains("<name>=<value>"), "{error}");
        let error = Cli::try_parse_from(["lumi", "sessions", "revoke-all", "--table", "t"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--user") && error.contains("--everyone"),
            "{error}"
        );
    }

    #[test]
    fn an_image_url_names_its_options() {
        let cli = Cli::try_parse_from([
            "lumi",
            "images",
            "url",
            "--secret-id",
            "s",
            "--source",
            "originals/a.jpeg",
            "--w",
            "800",
            "--format",
            "webp",
        ])
        .unwrap();
        let Command::Images(ops::images::ImagesCommand::Url(args)) = cli.command else {
            panic!("not images url");
        };
        assert_eq!(
            images::url::options_segment(&args.requested()),
            "w_800-format_webp"
        );
        let error = Cli::try_parse_from([
            "lumi",
            "images",
            "url",
            "--secret-id",
            "s",
            "--source",
            "k",
            "--fit",
            "squash",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("--fit"), "{error}");
    }

    #[test]
    fn every_subcommand_has_help() {
        fn walk(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "`{path}` has no help text");
                walk(sub, &path);
            }
        }
        walk(&Cli::command(), "lumi");
    }
}
