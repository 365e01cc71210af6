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
    redact_with(text, &secrets)
}

/// `text` with every byte that lies in an occurrence of one of `secrets` replaced, each run of such
/// bytes by one `<redacted>`. Occurrences are found in the text as given, overlapping ones too:
/// replacing one secret after the other would cut a second secret that overlaps the first (or
/// contains it) and print the rest of it.
fn redact_with<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let secrets: Vec<&str> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty() && text.contains(*s))
        .collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    let mut covered = vec![false; text.len()];
    for secret in secrets {
        for (start, _) in text.char_indices() {
            if text[start..].starts_with(secret) {
                covered[start..start + secret.len()].fill(true);
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if !covered[at] {
            out.push(c);
            continue;
        }
        out.push_str(crate::key::REDACTED);
        while chars.next_if(|(next, _)| covered[*next]).is_some() {}
    }
    out
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
    use proptest::prelude::*;

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

    #[test]
    fn overlapping_and_nested_secrets_leave_no_part_of_either() {
        let (a, b) = ("12345678abcd", "abcd87654321");
        assert_eq!(
            redact_with("x 12345678abcd87654321 y", &[a, b]),
            "x <redacted> y"
        );
        // One secret inside another (a secret's payload and the key in it).
        let payload = r#"{"api_key":"feedfacefeedfacefeedfacefeedface"}"#;
        let key = "feedfacefeedfacefeedfacefeedface";
        assert_eq!(redact_with(payload, &[key, payload]), "<redacted>");
        assert_eq!(redact_with("no secret here", &[key]), "no secret here");
    }

    /// Secrets from a small alphabet (so that they overlap, nest and repeat), or any text.
    fn secret() -> impl Strategy<Value = String> {
        prop_oneof!["[ab]{8,12}", "\\PC{8,24}"]
    }

    proptest! {
        /// Whatever surrounds them, whatever else is registered, no registered secret survives in
        /// the output, and text that holds none comes out unchanged.
        #[test]
        fn no_secret_survives_redaction(
            secrets in proptest::collection::vec(secret(), 1..4),
            pieces in proptest::collection::vec((0usize..8, "\\PC{0,6}|[ab<>]{0,5}"), 0..10),
        ) {
            let text: String = pieces
                .iter()
                .map(|(pick, filler)| secrets.get(*pick).cloned().unwrap_or_else(|| filler.clone()))
                .collect();
            let out = redact_with(&text, &secrets);
            for s in &secrets {
                prop_assert!(!out.contains(s.as_str()), "{s:?} survives in {out:?} (from {text:?})");
            }
            if !secrets.iter().any(|s| text.contains(s.as_str())) {
                prop_assert_eq!(out, text);
            }
        }
    }
}
