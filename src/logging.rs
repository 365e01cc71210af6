//! Logs on stderr through tracing, redacted, at a level from -v/-q unless RUST_LOG says otherwise.

use crate::redact::{self, RedactingWriter};
use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: u8) {
    // Any DD_API_KEY value is a secret even if it is malformed and never becomes an ApiKey.
    if let Some(raw) = std::env::var_os(crate::spec::API_KEY_ENV) {
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

/// Prints the one-line error and returns its exit code.
pub fn fail(error: &anyhow::Error, code: u8) -> u8 {
    crate::output::error_line(&format!("ddsky: error: {error:#}"));
    code
}
