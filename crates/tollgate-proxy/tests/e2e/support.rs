//! The mock provider and the gateway as child processes, a plain HTTP/1.1 client, the SDK
//! fleet's python, and the call log's windows.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The venv python from `TOLLGATE_SDK_PYTHON`; `None` (skip) only when `TOLLGATE_SKIP_SDK=1`.
pub(crate) fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("TOLLGATE_SDK_PYTHON") {
        return Some(PathBuf::from(python));
    }
    if std::env::var("TOLLGATE_SKIP_SDK").as_deref() == Ok("1") {
        eprintln!("TOLLGATE_SKIP_SDK=1: the SDK fleet test is skipped");
        return None;
    }
    panic!(
        "TOLLGATE_SDK_PYTHON is not set: run `scripts/sdk-venv.sh` and export \
         TOLLGATE_SDK_PYTHON=<the python it prints> (scripts/test.sh does both), \
         or set TOLLGATE_SKIP_SDK=1 to skip the SDK tests"
    );
}

/// A fresh directory for one test's files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-proxy-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Starts `bin` with `args`, reads the URL it prints first.
fn spawn(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address line");
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {line:?}");
    (child, url)
}

/// A running `tollgate-mock`, killed on drop.
pub(crate) struct Mock {
    child: Child,
    pub(crate) url: String,
}

impl Mock {
    /// The mock binary, built beside this test's (by `cargo test --workspace --features
    /// tollgate-mock/http`), or `TOLLGATE_MOCK_BIN`.
    fn bin() -> PathBuf {
        if let Some(bin) = std::env::var_os("TOLLGATE_MOCK_BIN") {
            return bin.into();
        }
        let exe = std::env::current_exe().expect("the test's path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .join("tollgate-mock");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p tollgate-mock --features http` \
             (scripts/test.sh does), or set TOLLGATE_MOCK_BIN",
            bin.display()
        );
        bin
    }

    pub(crate) fn start(args: &[&str]) -> Mock {
        let mut cmd = Command::new(Self::bin());
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let (child, url) = spawn(cmd);
        Mock { child, url }
    }

    /// `GET /mock/stats`.
    pub(crate) fn stats(&self) -> Value {
        let (status, body) = get(&self.url, "/mock/stats");
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("stats JSON")
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `tollgate-proxy`, its stderr in a file; killed on drop.
pub(crate) struct Proxy {
    child: Child,
    pub(crate) url: String,
    pub(crate) stderr: PathBuf,
}

impl Proxy {
    /// Writes `config` to `dir/tollgate.toml` and starts the gateway on it with `env` set.
    pub(crate) fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Proxy {
        let path = dir.join("tollgate.toml");
        std::fs::write(&path, config).expect("write the config");
        let stderr = dir.join(format!("proxy-{}.log", std::process::id()));
        let stderr = unique(stderr);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"));
        cmd.arg("--config")
            .arg(&path)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&stderr).expect("the stderr file"));
        let (child, url) = spawn(cmd);
        Proxy { child, url, stderr }
    }

    /// Sends SIGTERM (the shell's `kill`).
    pub(crate) fn terminate(&self) {
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit; whether it exited with success.
    pub(crate) fn wait(&mut self) -> bool {
        self.child.wait().is_ok_and(|s| s.success())
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

fn unique(mut path: PathBuf) -> PathBuf {
    let mut n = 0;
    while path.exists() {
        n += 1;
        path.set_extension(format!("{n}.log"));
    }
    path
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request (HTTP/1.1, `Connection: close`) and reads the whole answer: status, head
/// and body.
pub(crate) fn request(url: &str, head: &str, body: &str) -> (u16, String, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    let (h, b) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = h[9..12].parse().expect("a status");
    (status, h.to_owned(), b.to_owned())
}

/// `GET path`: status and body.
pub(crate) fn get(url: &str, path: &str) -> (u16, String) {
    let (status, _, body) = request(url, &format!("GET {path} HTTP/1.1"), "");
    (status, body)
}

/// Runs the SDK fleet script; the JSON it printed.
pub(crate) fn fleet(python: &Path, args: &[&str]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    let output = Command::new(python)
        .current_dir(&dir)
        .arg("fleet.py")
        .args(args)
        .output()
        .expect("run the fleet");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fleet failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("fleet printed {last:?}: {e}"))
}

/// Each call of some call logs: (admitted at, in ms since the epoch; input tokens settled).
pub(crate) fn admissions(logs: &[&Path]) -> Vec<(u64, u64)> {
    let text: String = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).expect("the call log"))
        .collect();
    let mut calls: Vec<(u64, u64)> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a call log line"))
        .filter(|c| c["outcome"] == "ok")
        .map(|c| {
            let end = c["unix_ms"].as_u64().unwrap_or(0);
            let latency = c["latency_ms"].as_u64().unwrap_or(0);
            (
                end - latency,
                c["actual"]["input_tokens"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    calls.sort_unstable();
    calls
}

/// The most calls, and the most input tokens settled, admitted in any window of `window_ms`.
pub(crate) fn busiest(calls: &[(u64, u64)], window_ms: u64) -> (u64, u64) {
    let mut most = (0, 0);
    for (i, &(t, _)) in calls.iter().enumerate() {
        let inside = calls[i..].iter().take_while(|c| c.0 < t + window_ms);
        let (n, tokens) = inside.fold((0, 0), |(n, s), c| (n + 1, s + c.1));
        most = (most.0.max(n), most.1.max(tokens));
    }
    most
}
