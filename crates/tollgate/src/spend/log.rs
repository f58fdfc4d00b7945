//! The per-call log: one JSON line per call, written by a background thread, and its replay at
//! start-up so that a restarted process remembers the day's spend.

use crate::ScopeKey;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;
use tollgate_core::Micros;

/// One call, as written to the [`CallLog`]: one JSON object per line.
///
/// Nothing of the request itself is written: no body, no headers (so no `authorization` or
/// `x-api-key`), only what the layer measured. Fields that are unknown are `null`.
///
/// **Format version 1** (`"v": 1`, [`FORMAT_VERSION`](Self::FORMAT_VERSION)): the fields below,
/// with these names and meanings. A later version only adds fields; a reader of version 1 ignores
/// fields it does not know. A line without `v` (written before the version was) reads as
/// version 1 without `arrived_unix_ms`. The simulator replays such a log (`sim --replay`).
///
/// ```
/// use tollgate::spend::CallRecord;
/// let line = r#"{"v":1,"arrived_unix_ms":1795348799180,"time":"2026-11-22T10:00:00.000Z","unix_ms":1795348800000,"scopes":["global","agent:a"],"priority":0,"attempt":1,"model":"claude-sonnet-4-5","estimated":{"requests":1,"input_tokens":1000,"output_tokens":500},"actual":{"input_tokens":900,"output_tokens":120,"cache_read":0,"cache_write":0},"estimated_cost_micros":10500,"cost_micros":4500,"cost_usd":0.0045,"wait_ms":0,"latency_ms":820,"outcome":"ok"}"#;
/// let record: CallRecord = serde_json::from_str(line)?;
/// assert_eq!(record.cost_micros, 4_500);
/// assert_eq!(record.scopes, ["global", "agent:a"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// The version of the log's format: [`CallRecord::FORMAT_VERSION`].
    #[serde(default = "format_version_1")]
    pub v: u32,
    /// When the call reached the layer, in Unix milliseconds (`null` in lines written before
    /// format version 1 had it).
    #[serde(default)]
    pub arrived_unix_ms: Option<u64>,
    /// When the call ended (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The same instant in Unix milliseconds.
    pub unix_ms: u64,
    /// Every scope key of the call (the layer's `always` keys first).
    pub scopes: Vec<String>,
    /// The call's priority tier.
    pub priority: u8,
    /// The attempt number (1 for a first try), as the call's metadata hook says.
    pub attempt: u32,
    /// The model, if the metadata hook names one.
    pub model: Option<String>,
    /// The estimate charged before the call.
    pub estimated: EstimateRecord,
    /// The real usage the provider reported (`null` when the call failed or gave none).
    pub actual: Option<TokensRecord>,
    /// The estimated cost in micro-dollars (0 without prices).
    pub estimated_cost_micros: u64,
    /// The real cost in micro-dollars, as charged to the budgets.
    pub cost_micros: u64,
    /// `cost_micros` in dollars, for people reading the log.
    pub cost_usd: f64,
    /// Time spent waiting for admission (queue, cap hold), in milliseconds.
    pub wait_ms: u64,
    /// Time from admission to the answer, in milliseconds (`null` when never admitted).
    pub latency_ms: Option<u64>,
    /// `ok`, `rate_limited`, `overloaded`, `spend_cap`, `transient`, `fatal`, `error` (the inner
    /// service failed), `dropped` (the caller gave up while the call ran) or `refused` (the layer
    /// refused the call; `refused_because` says why).
    pub outcome: String,
    /// Why the layer refused the call (its error message), for `refused` calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_because: Option<String>,
}

impl CallRecord {
    /// The version of the format this layer writes.
    pub const FORMAT_VERSION: u32 = 1;
}

fn format_version_1() -> u32 {
    1
}

/// The estimate of a call in a [`CallRecord`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EstimateRecord {
    /// Requests (1).
    pub requests: u64,
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// Estimated (maximum) output tokens.
    pub output_tokens: u64,
}

/// The real usage of a call in a [`CallRecord`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokensRecord {
    /// Input tokens at the full price.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

enum Msg {
    Record(Box<CallRecord>),
    Flush(mpsc::SyncSender<()>),
}

/// Where the layer writes one JSON line per call ([`CallRecord`]).
///
/// A background thread owns the writer: a call only hands its record over a channel, so disk
/// I/O never blocks the calls. Records are written in the order calls end and flushed whenever
/// the channel runs empty; when the last clone of the layer is dropped, the thread writes what is
/// left and ends. A write error is reported once as a `tracing` error and the thread goes on.
///
/// Give it to [`ThrottleBuilder::call_log`](crate::ThrottleBuilder::call_log). With
/// [`append_to_file`](CallLog::append_to_file), the calls already in the file are replayed at
/// start-up, so the spend of the current windows survives a restart.
///
/// ```
/// use tollgate::spend::CallLog;
/// let dir = std::env::temp_dir().join(format!("tollgate-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let log = CallLog::append_to_file(dir.join("calls.jsonl"))?;
/// assert_eq!(log.replay().map(|r| r.calls().len()), Some(0)); // a new file
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct CallLog {
    tx: mpsc::Sender<Msg>,
    replay: Option<std::sync::Arc<Replay>>,
}

impl fmt::Debug for CallLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallLog")
            .field("replay", &self.replay.as_ref().map(|r| r.calls().len()))
            .finish_non_exhaustive()
    }
}

impl CallLog {
    /// A log that writes to `writer` (a file, stdout, a buffer) from a background thread.
    ///
    /// ```
    /// let log = tollgate::spend::CallLog::to_writer(std::io::sink());
    /// log.flush();
    /// ```
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        CallLog::spawn(writer, None)
    }

    /// Opens (or creates) a JSON-lines file, replays the calls already in it (see [`Replay`]) and
    /// appends new calls to it. A last line cut short by a crash is skipped with a warning and
    /// the next record starts on a line of its own.
    ///
    /// # Errors
    /// When the file cannot be opened, read or written.
    pub fn append_to_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let replay = Replay::from_reader(BufReader::new(&mut file))?;
        if ends_without_newline(&mut file)? {
            file.write_all(b"\n")?;
        }
        if replay.skipped() > 0 {
            tracing::warn!(
                path = %path.display(),
                skipped = replay.skipped(),
                "call log: skipped lines that are not call records"
            );
        }
        Ok(CallLog::spawn(file, Some(replay)))
    }

    fn spawn(mut writer: impl Write + Send + 'static, replay: Option<Replay>) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("tollgate-call-log".into())
            .spawn(move || {
                let mut failed = false;
                let mut report = |e: io::Error| {
                    if !std::mem::replace(&mut failed, true) {
                        tracing::error!(error = %e, "call log: writing failed; later errors are not reported");
                    }
                };
                while let Ok(msg) = rx.recv() {
                    let mut next = Some(msg);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Record(r) => {
                                let mut line = serde_json::to_vec(&r).unwrap_or_default();
                                line.push(b'\n');
                                if let Err(e) = writer.write_all(&line) {
                                    report(e);
                                }
                            }
                            Msg::Flush(ack) => {
                                if let Err(e) = writer.flush() {
                                    report(e);
                                }
                                let _ = ack.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(e) = writer.flush() {
                        report(e);
                    }
                }
            })
            .expect("spawning the call log thread");
        CallLog {
            tx,
            replay: replay.map(std::sync::Arc::new),
        }
    }

    /// What [`append_to_file`](CallLog::append_to_file) read from the file, if anything.
    pub fn replay(&self) -> Option<&Replay> {
        self.replay.as_deref()
    }

    /// Hands a record to the writer thread (never blocks).
    pub fn write(&self, record: CallRecord) {
        let _ = self.tx.send(Msg::Record(Box::new(record)));
    }

    /// Blocks until every record handed over before is written and flushed. For tests and
    /// shutdown; never call it from a task on a current-thread runtime that the log waits on
    /// (the log itself waits on nothing).
    pub fn flush(&self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

fn ends_without_newline(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// One call read back from a log: when it ended, its scopes and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedCall {
    /// When the call ended, in Unix milliseconds.
    pub unix_ms: u64,
    /// Its scope keys.
    pub scopes: Vec<ScopeKey>,
    /// Its real cost.
    pub cost: Micros,
}

/// How far back of the newest record calls are kept: 32 days, more than the longest window.
const KEEP_MS: u64 = 32 * 86_400 * 1000;

/// The calls of a log read back at start-up, to seed the spend of the current windows.
///
/// Only calls of the 32 days before the newest record are kept (more than the longest window, a
/// calendar month), so a log of years costs the memory of a month. Lines that are not call records (a last line cut short by a crash, garbage) are skipped and
/// counted, never fatal. Calls that cost nothing are not kept.
///
/// ```
/// use tollgate::spend::Replay;
/// let log = "{\"time\":\"2026-11-22T10:00:00.000Z\",\"unix_ms\":1795348800000,\"scopes\":[\"global\"],\
///     \"priority\":0,\"attempt\":1,\"model\":null,\"estimated\":{\"requests\":1,\"input_tokens\":0,\
///     \"output_tokens\":0},\"actual\":null,\"estimated_cost_micros\":0,\"cost_micros\":250,\
///     \"cost_usd\":0.00025,\"wait_ms\":0,\"latency_ms\":5,\"outcome\":\"ok\"}\n{\"time\":\"2026-11-2";
/// let replay = Replay::from_reader(log.as_bytes())?;
/// assert_eq!(replay.calls().len(), 1);
/// assert_eq!(replay.calls()[0].cost.as_u64(), 250);
/// assert_eq!(replay.skipped(), 1); // the torn last line
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    calls: Vec<ReplayedCall>,
    skipped: usize,
    /// The most calls held at once while the log was read.
    #[cfg(test)]
    peak: usize,
}

impl Replay {
    /// Reads JSON lines of [`CallRecord`]s.
    ///
    /// # Errors
    /// Only when reading fails; unreadable lines are skipped.
    pub fn from_reader(reader: impl BufRead) -> io::Result<Self> {
        let mut replay = Replay::default();
        let mut newest = 0u64;
        let mut kept = 0usize;
        for line in reader.split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<CallRecord>(&line) {
                Ok(r) if r.cost_micros > 0 => {
                    newest = newest.max(r.unix_ms);
                    replay.calls.push(ReplayedCall {
                        unix_ms: r.unix_ms,
                        scopes: r.scopes.into_iter().map(ScopeKey::from).collect(),
                        cost: Micros::new(r.cost_micros),
                    });
                    #[cfg(test)]
                    {
                        replay.peak = replay.peak.max(replay.calls.len());
                    }
                    // Only the current windows are seeded, and the longest is a calendar month:
                    // older calls are let go as the file is read, so memory stays bounded.
                    if replay.calls.len() > 2 * kept + 4096 {
                        replay
                            .calls
                            .retain(|c| c.unix_ms.saturating_add(KEEP_MS) >= newest);
                        kept = replay.calls.len();
                    }
                }
                Ok(_) => {}
                Err(_) => replay.skipped += 1,
            }
        }
        replay
            .calls
            .retain(|c| c.unix_ms.saturating_add(KEEP_MS) >= newest);
        Ok(replay)
    }

    /// The calls that cost something, in the order of the log.
    pub fn calls(&self) -> &[ReplayedCall] {
        &self.calls
    }

    /// How many lines were not call records.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unix_ms: u64, cost: u64) -> String {
        format!(
            "{{\"time\":\"\",\"unix_ms\":{unix_ms},\"scopes\":[\"global\"],\"priority\":0,\
             \"attempt\":1,\"model\":null,\"estimated\":{{\"requests\":1,\"input_tokens\":0,\
             \"output_tokens\":0}},\"actual\":null,\"estimated_cost_micros\":0,\
             \"cost_micros\":{cost},\"cost_usd\":0,\"wait_ms\":0,\"latency_ms\":null,\
             \"outcome\":\"ok\"}}\n"
        )
    }

    #[test]
    fn only_the_last_32_days_of_a_long_log_are_kept() {
        // 90 days of calls, one an hour.
        let hour = 3_600_000u64;
        let text: String = (0..90 * 24).map(|h| line(h * hour, 1)).collect();
        let replay = Replay::from_reader(text.as_bytes()).unwrap();
        let newest = (90 * 24 - 1) * hour;
        assert_eq!(replay.calls().len(), 32 * 24 + 1);
        assert!(replay.calls().iter().all(|c| c.unix_ms + KEEP_MS >= newest));
        assert_eq!(replay.calls().last().unwrap().unix_ms, newest);
    }

    /// The log is read as a stream: 100 days of calls, one a minute, with garbage between them, is
    /// never held at once. At most twice the calls of the last 32 days (plus 4,096) are held
    /// while reading, the same calls are kept as when every line is parsed first and filtered
    /// after, and the garbage is counted.
    #[test]
    fn a_long_log_is_held_a_window_at_a_time() {
        let minute = 60_000u64;
        let calls = 100 * 24 * 60;
        let mut text = String::new();
        for m in 0..calls {
            text.push_str(&line(m * minute, 1 + m % 7));
            if m % 10_000 == 0 {
                text.push_str("not a call\n");
            }
        }
        let replay = Replay::from_reader(text.as_bytes()).unwrap();
        // Every line parsed first, then filtered: what the replay must equal.
        let newest = (calls - 1) * minute;
        let all: Vec<ReplayedCall> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<CallRecord>(l).ok())
            .filter(|r| r.unix_ms + KEEP_MS >= newest)
            .map(|r| ReplayedCall {
                unix_ms: r.unix_ms,
                scopes: r.scopes.into_iter().map(ScopeKey::from).collect(),
                cost: Micros::new(r.cost_micros),
            })
            .collect();
        assert_eq!(replay.calls(), &all[..]);
        assert_eq!(replay.skipped(), calls.div_ceil(10_000) as usize);
        let window = (KEEP_MS / minute + 1) as usize;
        assert_eq!(all.len(), window);
        assert!(
            replay.peak <= 2 * window + 4097,
            "{} calls held at once, for a window of {window}",
            replay.peak
        );
    }

    /// A record dated at the end of `u64` (a corrupt line) is read without an overflow; the
    /// calls a month before it are let go, the record itself is kept.
    #[test]
    fn a_record_at_the_end_of_time_is_read() {
        let text = line(5, 1) + &line(u64::MAX, 1) + &line(u64::MAX - 1, 1);
        let replay = Replay::from_reader(text.as_bytes()).unwrap();
        let kept: Vec<u64> = replay.calls().iter().map(|c| c.unix_ms).collect();
        assert_eq!(kept, [u64::MAX, u64::MAX - 1]);
    }
}
