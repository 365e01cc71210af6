//! Logs on stderr through tracing, redacted, at a level from -v/-q unless RUST_LOG says otherwise.
//!
//! Layer: edge (see `src/layers.rs`): may use the core only.

use crate::redact::{self, RedactingWriter};
use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: u8) {
    // Any DD_API_KEY value is a secret even if it is malformed and never becomes an ApiKey.
    if let Some(raw) = std::env::var_os(crate::spec::API_KEY_ENV) {
        redact::register(&raw.to_string_lossy());
    }
    // So is the application key (`ddsky verify`).
    if let Some(raw) = std::env::var_os("DD_APP_KEY") {
        redact::register(&raw.to_string_lossy());
    }
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    // Dependencies stay at warn by default: their debug output is for ddsky's developers, not users.
    let default = format!("warn,ddsky={level}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_target(false)
        .with_ansi(crate::output::stderr_is_terminal())
        .without_time()
        .try_init();

    // The default hook prints the panic message as is; this one redacts it first.
    std::panic::set_hook(Box::new(|info| {
        crate::output::error_line(&format!("ddsky: internal error (please report it): {info}"));
    }));
}

/// Prints the one-line error, followed by each `source()` it names (`what: why: why`), and
/// returns its exit code.
pub fn fail(error: &dyn std::error::Error, code: u8) -> u8 {
    crate::output::error_line(&format!("ddsky: error: {}", chain(error)));
    code
}

/// `error: its source: that one's source ...`, leaving out a source the message already quotes
/// (most of ddsky's errors say their cause in the middle, followed by what to do).
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = source.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot {what}")]
    struct Outer {
        what: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("pulling failed: {source}; check the name")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn the_chain_names_each_source_once() {
        let io = || std::io::Error::other("no such file");
        let outer = Outer {
            what: "read it",
            source: io(),
        };
        assert_eq!(chain(&outer), "cannot read it: no such file");
        let quoting = Quoting { source: io() };
        assert_eq!(
            chain(&quoting),
            "pulling failed: no such file; check the name"
        );
    }
}
