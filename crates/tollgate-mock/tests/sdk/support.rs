//! The mock binary as a child process, its stats, and the SDK scripts' python.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The venv python from `TOLLGATE_SDK_PYTHON`; `None` (skip) only when `TOLLGATE_SKIP_SDK=1`.
///
/// # Panics
///
/// When the variable is unset and the SDK tests are not explicitly skipped: a test that skips
/// silently would hide that the SDKs were never run.
pub(crate) fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("TOLLGATE_SDK_PYTHON") {
        return Some(PathBuf::from(python));
    }
    if std::env::var("TOLLGATE_SKIP_SDK").as_deref() == Ok("1") {
        eprintln!("TOLLGATE_SKIP_SDK=1: the SDK test is skipped");
        return None;
    }
    panic!(
        "TOLLGATE_SDK_PYTHON is not set: run `scripts/sdk-venv.sh` and export \
         TOLLGATE_SDK_PYTHON=<the python it prints> (scripts/test.sh does both), \
         or set TOLLGATE_SKIP_SDK=1 to skip the SDK tests"
    );
}

/// A running `tollgate-mock`, killed on drop.
pub(crate) struct Mock {
    child: Child,
    url: String,
}

impl Mock {
    /// Starts the binary on 127.0.0.1:0 with `args` and reads the address from its first line.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-mock"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tollgate-mock");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address line");
        let url = line.trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "first line: {line:?}");
        Self { child, url }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `GET /mock/stats`, parsed.
    pub(crate) fn stats(&self) -> Value {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to the mock");
        write!(
            stream,
            "GET /mock/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send the stats request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the stats");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).expect("stats JSON")
    }

    /// Runs the SDK script `args[0]` (in tests/sdk) with `python`; asserts it succeeded and
    /// returns the JSON object it printed last.
    pub(crate) fn run(&self, python: &Path, args: &[&str]) -> Value {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
        let output = Command::new(python)
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", python.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{args:?} printed {last:?}: {e}"))
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
