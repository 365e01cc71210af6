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
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_target(false)
        .with_ansi(crate::output::stderr_is_terminal())
        .without_time()
        .try_init();

    // The default hook prints the panic message as is; this one redacts it first.
    std::panic::set_hook(Box::new(|info| {
        // One line: the panic's own text puts the message on a line after its location.
        let text = info.to_string().replace('\n', " ");
        crate::output::error_line(&format!("ddsky: internal error (please report it): {text}"));
    }));
}

/// What reaches stderr when RUST_LOG does not say: ddsky's own lines at the level -v/-q ask for,
/// and nothing of its dependencies' unless -v. Their lines (the AWS SDK's credential and region
/// probes, rustls's) are for debugging: ddsky says what matters in its own words.
fn default_filter(verbose: u8, quiet: u8) -> String {
    let (ddsky, dependencies) = match (verbose, quiet) {
        (0, 0) => ("info", "off"),
        (1, _) => ("debug", "info"),
        (2, _) => ("trace", "debug"),
        (v, _) if v > 2 => ("trace", "trace"),
        (_, 1) => ("warn", "off"),
        _ => ("error", "off"),
    };
    format!("{dependencies},ddsky={ddsky}")
}

/// Prints the one-line error, followed by each `source()` it names (`what: why: why`), and
/// returns its exit code.
pub fn fail(error: &(dyn std::error::Error + 'static), code: u8) -> u8 {
    crate::output::error_line(&format!(
        "ddsky: error: {}",
        crate::error_chain::one_line(error)
    ));
    code
}

#[cfg(test)]
mod tests {
    use super::default_filter;

    #[test]
    fn dependencies_are_silent_unless_verbose() {
        assert_eq!(default_filter(0, 0), "off,ddsky=info");
        assert_eq!(default_filter(0, 1), "off,ddsky=warn");
        assert_eq!(default_filter(0, 2), "off,ddsky=error");
        assert_eq!(default_filter(1, 0), "info,ddsky=debug");
        assert_eq!(default_filter(2, 0), "debug,ddsky=trace");
        assert_eq!(default_filter(3, 0), "trace,ddsky=trace");
    }
}
