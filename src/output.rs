//! stdout for results (text or JSON), stderr for logs and progress. Everything printed is redacted, and
//! a closed pipe (`ddsky status | head -1`) ends output quietly instead of failing.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use serde::Serialize;
use std::io::{self, IsTerminal, Write};

/// What stdout carries: text, one JSON document, or (`ddsky env` only) shell or env-file lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// `export KEY='value'` lines (ddsky env).
    Shell,
    /// `KEY=value` lines for `docker run --env-file` (ddsky env).
    EnvFile,
}

/// Prints the result: `text()` in text mode, `json` as one pretty JSON document otherwise.
pub fn emit<T: Serialize>(format: Format, json: &T, text: impl FnOnce() -> String) {
    let body = match format {
        Format::Text | Format::Shell | Format::EnvFile => text(),
        Format::Json => {
            serde_json::to_string_pretty(json).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        }
    };
    write_stdout(&body);
}

/// Writes to stdout, redacted; a broken pipe is not an error for a CLI whose reader went away.
pub fn write_stdout(body: &str) {
    let mut out = io::stdout().lock();
    let redacted = crate::redact::redact(body);
    let result = out
        .write_all(redacted.as_bytes())
        .and_then(|()| {
            if redacted.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = result {
        if e.kind() != io::ErrorKind::BrokenPipe {
            tracing::warn!("cannot write the result to stdout: {e}");
        }
    }
}

/// Whether progress may be drawn (a person is watching stderr).
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// One line on stderr, redacted. A closed or full stderr is ignored: a CLI must not crash because
/// nobody can read its complaints.
pub fn error_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{}", crate::redact::redact(line));
}
