//! Starts the local AWS stack: `infra/moto_server.py` from the project's `.venv`, on a free
//! loopback port, serving one request at a time, first come first served.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};

#[derive(Debug, Default, Clone)]
pub struct MotoOptions {
    /// 0 for any free port.
    pub port: u16,
    /// Append one JSON line per AWS call here (benchmarks count calls, and read each call's
    /// lock wait and moto's handling time).
    pub request_log: Option<PathBuf>,
    /// Exit when this process ends (the server watches its standard input).
    pub tie_to_parent: bool,
}

pub struct MotoServer {
    child: Child,
    /// Kept open: closing it tells a tied server to exit.
    _stdin: Option<ChildStdin>,
    pub port: u16,
    pub endpoint: String,
}

/// The Python that has moto: `LUMI_PYTHON`, else the project's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("LUMI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".venv/bin/python"))
}

impl MotoServer {
    pub fn start(options: &MotoOptions) -> anyhow::Result<Self> {
        let python = python();
        if !python.exists() {
            bail!(
                "{} not found: run `make venv` (make dev and make test do it)",
                python.display()
            );
        }
        let script = crate::workspace_root().join("infra/moto_server.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &options.port.to_string()])
            // The images function's malloc settings (`lumi-bench image-get` runs with them, as
            // Lambda runs that function) are not moto's: its speed is the baseline, not ours.
            .env_remove("GLIBC_TUNABLES")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(log) = &options.request_log {
            command.arg("--request-log").arg(log);
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
            .ok_or_else(|| anyhow!("moto's stdout is not piped"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or_else(|| anyhow!("moto said {line:?} instead of READY <port>"))?,
            Ok(_) => {
                let _ = child.kill();
                bail!("moto exited before it was ready")
            }
            Err(_) => {
                let _ = child.kill();
                bail!("moto was not ready within 60 s")
            }
        };
        Ok(Self {
            _stdin: child.stdin.take(),
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Stops the server now (tests of an unreachable stack).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the server exits on its own (Ctrl-C in `make dev`).
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
