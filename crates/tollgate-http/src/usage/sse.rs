//! An incremental parser of `text/event-stream` bodies: bytes in any split, events out.
//!
//! It follows the WHATWG rules: lines end in `\n`, `\r\n` or `\r`; a blank line ends an event;
//! lines starting with `:` are comments; `data:` lines are joined with `\n`; one space after the
//! colon is dropped; a leading byte order mark is skipped; an event still open when the body ends
//! is discarded. Only the current line and the current event's `data` and `event` are kept.

/// The parser's state between chunks.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// The most bytes kept for one event (its partial line, data and name together).
    cap: usize,
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` starting the next one ends no line.
    after_cr: bool,
    /// Bytes of the current line are being dropped (the event went over the cap).
    dropping_line: bool,
    /// The current event went over the cap: its remaining lines are dropped up to the blank line.
    dropping_event: bool,
    /// No line has ended yet (a byte order mark may start the first).
    first_line: bool,
    dropped: u64,
}

/// One complete event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    /// The `event:` field, empty when there was none.
    pub(crate) name: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub(crate) data: &'a [u8],
}

impl SseParser {
    pub(crate) fn new(cap: usize) -> Self {
        SseParser {
            cap,
            line: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            after_cr: false,
            dropping_line: false,
            dropping_event: false,
            first_line: true,
            dropped: 0,
        }
    }

    /// How many events were dropped for going over the cap.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Parses `chunk`, calling `on_event` for each event it completes.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        if chunk.is_empty() {
            // Nothing to read, and a pending `\r` must still meet the next byte.
            return;
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push(&chunk[..end]);
            let cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            self.end_line(on_event);
        }
        self.push(chunk);
    }

    /// Bytes of the current line.
    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.dropping_line {
            return;
        }
        let kept = self.line.len() + self.data.len() + self.event.len();
        if kept.saturating_add(bytes.len()) > self.cap {
            self.drop_event();
            self.dropping_line = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn drop_event(&mut self) {
        if !self.dropping_event {
            self.dropped += 1;
        }
        self.dropping_event = true;
        self.line.clear();
        self.data.clear();
        self.event.clear();
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        if std::mem::take(&mut self.first_line) && self.line.starts_with("\u{feff}".as_bytes()) {
            self.line.drain(..3);
        }
        if std::mem::take(&mut self.dropping_line) {
            // The line that went over the cap; it was not blank.
            return;
        }
        if self.line.is_empty() {
            if !std::mem::take(&mut self.dropping_event) && !self.data.is_empty() {
                // The last `\n` appended to the data is not part of it.
                self.data.pop();
                on_event(Event {
                    name: &self.event,
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            return;
        }
        if !self.dropping_event {
            self.field();
        }
        self.line.clear();
    }

    /// A `name: value` line (not blank).
    fn field(&mut self) {
        let line = &self.line[..];
        let (name, value) = match line.iter().position(|&b| b == b':') {
            // A comment.
            Some(0) => return,
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // `id`, `retry` and unknown fields matter to no usage.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut |e| {
                out.push((
                    String::from_utf8_lossy(e.name).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            });
        }
        out
    }

    fn pair(name: &str, data: &str) -> (String, String) {
        (name.to_owned(), data.to_owned())
    }

    #[test]
    fn line_endings_comments_and_multiline_data() {
        let mut p = SseParser::new(1 << 20);
        let got = events(
            &mut p,
            &[b"\xef\xbb\xbfevent: a\r\ndata: 1\r\ndata:2\r\n\r\n: keep-alive\n\ndata: x\rdata: y\r\r", b"id: 3\nretry: 5\ndata\n\n"],
        );
        assert_eq!(got, vec![pair("a", "1\n2"), pair("", "x\ny"), pair("", "")]);
    }

    #[test]
    fn split_crlf_is_one_line_end() {
        let mut p = SseParser::new(1 << 20);
        let got = events(
            &mut p,
            &[b"event: a\r", b"\ndata: 1\r", b"\n\r", b"\ndata: 2\n\n"],
        );
        // Read as two line ends, the `\n` would end the event before its data.
        assert_eq!(got, vec![pair("a", "1"), pair("", "2")]);
    }

    /// Regression: an empty chunk between a `\r` and its `\n` forgot the `\r`, so the `\n` ended
    /// a second (blank) line and the event lost its name.
    #[test]
    fn an_empty_chunk_inside_crlf_changes_nothing() {
        let mut p = SseParser::new(1 << 20);
        let got = events(&mut p, &[b"event: a\r", b"", b"\ndata: 1\n\n"]);
        assert_eq!(got, vec![pair("a", "1")]);
    }

    #[test]
    fn an_open_event_at_the_end_is_not_sent() {
        let mut p = SseParser::new(1 << 20);
        assert!(events(&mut p, &[b"data: 1\n"]).is_empty());
    }

    #[test]
    fn an_event_over_the_cap_is_dropped_and_the_next_one_kept() {
        let mut p = SseParser::new(16);
        let got = events(
            &mut p,
            &[
                b"event: big\ndata: 0123",
                b"456789abcdef\ndata: more\n\nevent: ok\ndata: 1\n\n",
            ],
        );
        assert_eq!(got, vec![pair("ok", "1")]);
        assert_eq!(p.dropped(), 1);
        // Buffers grow at most to twice the cap (amortized growth), never with the stream.
        assert!(p.line.capacity() <= 32 && p.data.capacity() <= 32);
    }
}
