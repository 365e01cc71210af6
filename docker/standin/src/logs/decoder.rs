//! Docker json-file lines to log messages, as pkg/logs/internal/decoder with the docker file
//! parser: `{"log","stream","time"}` per line; `log` loses one trailing `\n`; an entry whose `log`
//! does not end in `\n` is a partial line (Docker splits at 16 KiB) and is joined with the entries
//! that follow; stderr is `error`, anything else `info`; spaces, tabs and `\r` are trimmed at both
//! ends and empty messages dropped.
//!
//! Every message carries the byte offset just past the last file line it came from, so that the
//! auditor can record "sent up to here". A dropped (empty) line produces nothing: only a later
//! message carries the offset past it.

use serde::Deserialize;

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub content: String,
    /// `info` or `error`.
    pub status: &'static str,
    /// Byte offset just past the last line of the file this message came from.
    pub offset: u64,
}

#[derive(Deserialize)]
struct DockerLine {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
}

/// Stateful decoder of one file, fed chunks in file order.
#[derive(Debug)]
pub struct Decoder {
    /// A plain file (a file log source): each line is a message, status `info`.
    plain: bool,
    /// Bytes of a line not complete yet (no `\n` read so far).
    pending: Vec<u8>,
    /// Absolute offset of `pending[0]`.
    base: u64,
    /// A partial message being joined: its content so far and status.
    partial: Option<(String, &'static str)>,
}

impl Decoder {
    /// A decoder whose first byte is at `start` in the file.
    pub fn new(start: u64) -> Decoder {
        Decoder {
            plain: false,
            pending: Vec::new(),
            base: start,
            partial: None,
        }
    }

    /// A decoder of a plain text file (a `type: file` source) whose first byte is at `start`:
    /// lines split on `\n`, trimmed, empty ones dropped, all `info`.
    pub fn plain(start: u64) -> Decoder {
        Decoder {
            plain: true,
            ..Decoder::new(start)
        }
    }

    /// Feeds the next bytes of the file; returns the messages completed by them.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Decoded> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut consumed = 0usize;
        while let Some(nl) = self.pending[consumed..].iter().position(|&b| b == b'\n') {
            let line_end = consumed + nl + 1;
            let end_offset = self.base + line_end as u64;
            let line = &self.pending[consumed..consumed + nl];
            let decoded = if self.plain {
                plain_line(line, end_offset)
            } else {
                join_line(&mut self.partial, line, end_offset)
            };
            if let Some(d) = decoded {
                out.push(d);
            }
            consumed = line_end;
        }
        self.pending.drain(..consumed);
        self.base += consumed as u64;
        out
    }
}

/// One line of a plain file: a message, or nothing when it is blank.
fn plain_line(raw: &[u8], end_offset: u64) -> Option<Decoded> {
    let text = String::from_utf8_lossy(raw);
    let trimmed = text.trim_matches([' ', '\t', '\r']);
    (!trimmed.is_empty()).then(|| Decoded {
        content: trimmed.to_string(),
        status: "info",
        offset: end_offset,
    })
}

/// One complete file line: a message, or nothing (a partial entry kept in `partial`, or empty).
fn join_line(
    partial: &mut Option<(String, &'static str)>,
    raw: &[u8],
    end_offset: u64,
) -> Option<Decoded> {
    {
        let (log, status) = match serde_json::from_slice::<DockerLine>(raw) {
            Ok(l) => {
                let status = if l.stream == "stderr" {
                    "error"
                } else {
                    "info"
                };
                (l.log, status)
            }
            // Not a docker json line: the raw line is the message, as the parser falls back.
            Err(_) => (String::from_utf8_lossy(raw).into_owned(), "info"),
        };
        let (text, complete) = match log.strip_suffix('\n') {
            Some(t) => (t.to_string(), true),
            None => (log, false),
        };
        let (mut content, status) = match partial.take() {
            Some((mut joined, first_status)) => {
                joined.push_str(&text);
                (joined, first_status)
            }
            None => (text, status),
        };
        if !complete {
            *partial = Some((content, status));
            return None;
        }
        let trimmed = content.trim_matches([' ', '\t', '\r']);
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.len() != content.len() {
            content = trimmed.to_string();
        }
        Some(Decoded {
            content,
            status,
            offset: end_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &str, stream: &str) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": "2024-01-01T00:00:00.000000001Z"})
        )
    }

    #[test]
    fn one_trailing_newline_goes_and_stderr_is_error() {
        let a = line("hello\n", "stdout");
        let b = line("boom \r\n", "stderr");
        let mut d = Decoder::new(0);
        let out = d.feed(format!("{a}{b}").as_bytes());
        assert_eq!(
            out,
            vec![
                Decoded {
                    content: "hello".into(),
                    status: "info",
                    offset: a.len() as u64
                },
                Decoded {
                    content: "boom".into(),
                    status: "error",
                    offset: (a.len() + b.len()) as u64
                },
            ]
        );
    }

    #[test]
    fn lines_split_across_chunks_wait_for_their_newline() {
        let a = line("first\n", "stdout");
        let mut d = Decoder::new(100);
        let (x, y) = a.as_bytes().split_at(7);
        assert!(d.feed(x).is_empty());
        let out = d.feed(y);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 100 + a.len() as u64);
    }

    #[test]
    fn partial_entries_are_joined_and_carry_the_last_offset() {
        let p1 = line(&"x".repeat(16384), "stderr");
        let p2 = line("tail\n", "stderr");
        let mut d = Decoder::new(0);
        assert!(d.feed(p1.as_bytes()).is_empty());
        let out = d.feed(p2.as_bytes());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].content, format!("{}tail", "x".repeat(16384)));
        assert_eq!(out[0].status, "error");
        assert_eq!(out[0].offset, (p1.len() + p2.len()) as u64);
    }

    #[test]
    fn a_plain_file_is_read_line_by_line_and_a_last_line_waits_for_its_newline() {
        let mut d = Decoder::plain(10);
        let json = "{\"log\":\"not docker\\n\",\"stream\":\"stderr\"}";
        let text = format!("first\n  \r\n\tsecond \r\n{json}\nlast");
        let out = d.feed(text.as_bytes());
        let got: Vec<(&str, &str, u64)> = out
            .iter()
            .map(|m| (m.content.as_str(), m.status, m.offset))
            .collect();
        let json_end = 10 + text.len() as u64 - 4;
        assert_eq!(
            got,
            vec![
                ("first", "info", 16),
                ("second", "info", 16 + 4 + 10),
                (json, "info", json_end),
            ]
        );
        assert!(d.feed(b" line").is_empty());
        let out = d.feed(b"\n");
        assert_eq!(out[0].content, "last line");
        assert_eq!(out[0].offset, json_end + 10);
    }

    #[test]
    fn blanks_are_trimmed_and_empty_lines_never_advance_by_themselves() {
        let a = line(" \t\r\n", "stdout");
        let b = line("\n", "stdout");
        let c = line("\t  spaced \r\n", "stdout");
        let mut d = Decoder::new(0);
        assert!(d.feed(a.as_bytes()).is_empty());
        assert!(d.feed(b.as_bytes()).is_empty());
        let out = d.feed(c.as_bytes());
        assert_eq!(out[0].content, "spaced");
        assert_eq!(out[0].offset, (a.len() + b.len() + c.len()) as u64);
    }
}
