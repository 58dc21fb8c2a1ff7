//! Starts the local Stripe server: `localstripe` (pinned in `infra/requirements.txt`), served by
//! `infra/localstripe_server.py` from the project's `.venv` on a free loopback port, with an
//! in-memory store, like [`crate::moto`].
//!
//! The Python is `LUMI_LOCALSTRIPE_PYTHON` when set (a venv of its own that has localstripe),
//! else the one moto uses (`LUMI_PYTHON`, else `.venv/bin/python`). Any secret key that starts
//! with `sk_` is accepted ([`LOCAL_SECRET_KEY`]); webhooks are registered with
//! [`LocalStripe::register_webhook`] and signed like Stripe's (`Stripe-Signature`), sent about
//! one second after the change that causes them. `docs/stripe-local-differences.md` lists
//! where it differs from Stripe.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use lumi_commerce::stripe::{Form, StripeClient, StripeConfig};

/// Overrides the Python that runs localstripe.
pub const PYTHON_ENV: &str = "LUMI_LOCALSTRIPE_PYTHON";
/// A secret key the local server accepts (it takes any `sk_…`).
pub const LOCAL_SECRET_KEY: &str = "sk_test_lumi_local";
/// A publishable key to pair with it (the local server never checks it).
pub const LOCAL_PUBLISHABLE_KEY: &str = "pk_test_lumi_local";

#[derive(Debug, Default, Clone)]
pub struct LocalStripeOptions {
    /// 0 for any free port.
    pub port: u16,
    /// Exit when this process ends (the server watches its standard input).
    pub tie_to_parent: bool,
    /// Log every request and webhook delivery on standard error (`make dev`).
    pub verbose: bool,
}

pub struct LocalStripe {
    child: Child,
    /// Kept open: closing it tells a tied server to exit.
    _stdin: Option<ChildStdin>,
    pub port: u16,
    /// `http://127.0.0.1:<port>`: the API base for [`StripeConfig`].
    pub endpoint: String,
}

/// The Python that runs localstripe: `LUMI_LOCALSTRIPE_PYTHON`, else moto's.
pub fn python() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(crate::moto::python)
}

/// Whether localstripe can be started here: the Python exists and imports it. The error says
/// what is missing (for a test that skips).
pub fn available() -> Result<PathBuf, String> {
    let python = python();
    if !python.exists() {
        return Err(format!(
            "{} not found: run `make venv`, or set {PYTHON_ENV} to a Python that has localstripe",
            python.display()
        ));
    }
    let imported = Command::new(&python)
        .args(["-c", "import localstripe"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if imported {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import localstripe: run `make venv` (infra/requirements.txt pins it), \
             or set {PYTHON_ENV} to a Python that has it",
            python.display()
        ))
    }
}

impl LocalStripe {
    pub fn start(options: &LocalStripeOptions) -> anyhow::Result<Self> {
        let python = python();
        if !python.exists() {
            bail!(
                "{} not found: run `make venv` (make dev and make test do it)",
                python.display()
            );
        }
        let script = crate::workspace_root().join("infra/localstripe_server.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &options.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if options.verbose {
            command.arg("--verbose");
        }
        if options.tie_to_parent {
            command.arg("--exit-on-stdin-eof").stdin(Stdio::piped());
        } else {
            command.stdin(Stdio::null());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("localstripe's stdout is not piped"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        // `READY <port>` comes once the server accepts requests.
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => match line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                Some(port) => port,
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("localstripe said {line:?} instead of READY <port>")
                }
            },
            Ok(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "localstripe exited before it was ready (is it installed for {}?)",
                    python.display()
                )
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("localstripe was not ready within 60 s")
            }
        };
        Ok(Self {
            _stdin: child.stdin.take(),
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The client configuration for this server: [`LOCAL_SECRET_KEY`], short timeouts.
    pub fn config(&self) -> StripeConfig {
        let mut config = StripeConfig::new(self.endpoint.clone(), LOCAL_SECRET_KEY);
        config.attempt_timeout = Duration::from_secs(5);
        config.deadline = Duration::from_secs(10);
        config.initial_backoff = Duration::from_millis(100);
        config.max_backoff = Duration::from_millis(500);
        config
    }

    pub fn client(&self) -> anyhow::Result<StripeClient> {
        Ok(StripeClient::new(self.config())?)
    }

    /// Registers (or replaces) webhook endpoint `id`: every event (or only `events`) is POSTed
    /// to `url`, signed with `secret` (`Stripe-Signature: t=…,v1=…`).
    pub async fn register_webhook(
        &self,
        id: &str,
        url: &str,
        secret: &str,
        events: Option<&[&str]>,
    ) -> anyhow::Result<()> {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            bail!("webhook id {id:?}: letters, digits, _ and - only");
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            bail!("webhook url {url:?} is not http(s)");
        }
        let mut form = Form::new().with("url", url).with("secret", secret);
        if let Some(events) = events {
            form.push_list("events", events.iter().copied());
        }
        self.client()?
            .post::<()>(&format!("/_config/webhooks/{id}"), &form, None)
            .await
            .with_context(|| format!("registering webhook {id} at {}", self.endpoint))
    }

    /// Stops the server now (tests of an unreachable provider).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the server exits on its own.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        self.stop();
    }
}
