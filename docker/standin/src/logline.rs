//! Log lines in the real agent's format:
//! `2026-11-25 12:00:00 UTC | CORE | INFO | (pkg/collector/runner/runner.go:123 in work) | message`.

use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Formats one line (without the trailing newline).
pub fn format(ts: f64, component: &str, level: Level, source: &str, msg: &str) -> String {
    format!(
        "{} | {component} | {} | ({source}) | {msg}",
        crate::timefmt::log_timestamp(ts),
        level.as_str()
    )
}

/// Writes one line to stdout, now. Errors (closed stdout) are ignored: logging must never kill
/// the daemon.
pub fn emit(component: &str, level: Level, source: &str, msg: &str) {
    let line = format(crate::timefmt::now(), component, level, source, msg);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn info(source: &str, msg: &str) {
    emit("CORE", Level::Info, source, msg);
}

pub fn warn(source: &str, msg: &str) {
    emit("CORE", Level::Warn, source, msg);
}

pub fn error(source: &str, msg: &str) {
    emit("CORE", Level::Error, source, msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_agent_layout() {
        assert_eq!(
            format(
                1_795_608_000.0,
                "CORE",
                Level::Warn,
                "pkg/x.go:1 in f",
                "hello"
            ),
            "2026-11-25 12:00:00 UTC | CORE | WARN | (pkg/x.go:1 in f) | hello"
        );
    }
}
