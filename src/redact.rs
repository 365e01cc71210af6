//! Keeps the API key out of every byte ddsky writes: logs, output, errors and panics all pass through
//! [`redact`], which replaces any registered secret with `<redacted>`. The key type already redacts
//! itself; this also covers what dependencies might log and values that never became an `ApiKey`
//! (a wrong-shaped key is still a secret).
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use std::io::{self, Write};
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter strings would redact ordinary words; real keys are 32 characters.
const MIN_SECRET_LEN: usize = 8;

/// Registers a value that must never be printed.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
    }
}

/// `text` with every registered secret replaced.
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    secrets.iter().fold(text.to_owned(), |acc, s| {
        acc.replace(s.as_str(), crate::key::REDACTED)
    })
}

/// A writer that redacts each write. tracing's fmt layer writes one whole event per call, so a
/// secret cannot be split across two writes. A log line that cannot be written (stderr closed or
/// full) is dropped: reporting the failure would mean writing to the same stderr, and tracing's own
/// fallback for that panics.
pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self
            .0
            .write_all(redact(&String::from_utf8_lossy(buf)).as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_everywhere() {
        register("feedfacefeedfacefeedfacefeedface");
        register("short");
        let out =
            redact("a feedfacefeedfacefeedfacefeedface b feedfacefeedfacefeedfacefeedface short");
        assert_eq!(out, "a <redacted> b <redacted> short");
        let mut buf = Vec::new();
        RedactingWriter(&mut buf)
            .write_all(b"key=feedfacefeedfacefeedfacefeedface\n")
            .unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "key=<redacted>\n");
    }
}
