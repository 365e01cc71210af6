//! An error and its chain of causes as one line of words: each cause's Display (never its Debug),
//! each said once. Dependencies' errors often repeat their source in their own Display (the AWS SDK's
//! do, hyper's wrap it in a few words), so a cause that the line already says is left out, and one
//! that says its wrapper's words and more takes the wrapper's place.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use std::error::Error;

/// `error: its cause: that one's cause ...`, on one line, without repeats.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes(error) {
        add(&mut parts, flatten(&cause.to_string()));
    }
    parts.join(": ")
}

/// The error, then each `source()` in turn.
pub fn causes<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// The first error of type `T` in the chain, looking inside `io::Error`s too: their `source()`
/// skips the error they carry (its Display is theirs), and TLS errors travel in them.
pub fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    causes(error).find_map(|cause| {
        cause.downcast_ref::<T>().or_else(|| {
            let io = cause.downcast_ref::<std::io::Error>()?;
            find::<T>(io.get_ref()?)
        })
    })
}

/// A multi-line message as one line: its lines trimmed and joined with "; ".
fn flatten(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_end_matches([':', ';']).trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

fn add(parts: &mut Vec<String>, text: String) {
    if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
        return;
    }
    match parts.last_mut() {
        Some(last) if text.contains(last.as_str()) => *last = text,
        _ => parts.push(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a message and an optional source, as dependencies build them.
    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        source: Option<Box<dyn Error + Send + Sync + 'static>>,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn layers(texts: &[&'static str]) -> Box<dyn Error + Send + Sync + 'static> {
        let mut error: Option<Box<dyn Error + Send + Sync + 'static>> = None;
        for text in texts.iter().rev() {
            error = Some(Box::new(Layer {
                text,
                source: error,
            }));
        }
        error.expect("at least one layer")
    }

    #[test]
    fn each_cause_is_said_once_in_display_form() {
        // The SDK's dispatch failure: each layer names the next, the last one says it all.
        let e = layers(&[
            "dispatch failure",
            "io error",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            one_line(e.as_ref()),
            "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        assert!(
            !one_line(e.as_ref()).contains("Layer"),
            "never the Debug form"
        );
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_left_out() {
        let e = layers(&[
            "pulling failed: no such file; check the name",
            "no such file",
        ]);
        assert_eq!(
            one_line(e.as_ref()),
            "pulling failed: no such file; check the name"
        );
        // A wrapper that repeats its source in its own Display (as the SDK's errors do).
        let e = layers(&["service error: timed out", "timed out"]);
        assert_eq!(one_line(e.as_ref()), "service error: timed out");
        // The same text twice in a row.
        let e = layers(&["refused", "refused", "refused"]);
        assert_eq!(one_line(e.as_ref()), "refused");
    }

    #[test]
    fn a_cause_that_says_its_wrappers_words_and_more_replaces_it() {
        let e = layers(&["cannot connect", "cannot connect: refused by 127.0.0.1:9"]);
        assert_eq!(
            one_line(e.as_ref()),
            "cannot connect: refused by 127.0.0.1:9"
        );
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let e = layers(&[
            "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: none\n",
            "",
        ]);
        assert_eq!(
            one_line(e.as_ref()),
            "no credentials found in chain. Attempted; Environment: not set; Profile: none"
        );
    }

    #[test]
    fn find_looks_inside_io_errors() {
        let inner = Layer {
            text: "bad certificate",
            source: None,
        };
        let io = std::io::Error::other(inner);
        let outer = Layer {
            text: "connect failed",
            source: Some(Box::new(io)),
        };
        let found = find::<Layer>(&outer).expect("the outer layer itself");
        assert_eq!(found.text, "connect failed");
        let io = std::io::Error::other(Layer {
            text: "bad certificate",
            source: None,
        });
        assert_eq!(find::<Layer>(&io).map(|l| l.text), Some("bad certificate"));
        assert!(find::<std::fmt::Error>(&io).is_none());
    }
}
