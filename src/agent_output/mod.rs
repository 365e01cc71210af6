//! Parsers for what `docker exec <agent> agent ...` prints, one file per command.
//!
//! Everything here is pure (`&str` in, data out) and never panics. The agent's output
//! varies across versions, may be coloured, and may be preceded by log lines, so every
//! parser is tolerant: unknown fields are ignored and missing ones become `None`.
//! Container ids are always returned as 64 lowercase hex characters; anything else is
//! not a container id and is skipped. The sample outputs the tests read are in
//! tests/fixtures/agent-output, where the stand-in's renderer is checked against them too.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

mod health;
mod json;
mod status;
mod tagger_list;
mod text;
mod workload_list;

#[cfg(test)]
mod samples;

pub use health::{parse_health, says_not_up_yet, HealthReport};
pub use status::{parse_status_json, AgentStatus, ApiKeyState, LogSource};
// The types of AgentStatus's fields; only tests build them by name.
#[cfg(test)]
pub use status::{CheckRuns, TransactionCounts};
pub use tagger_list::{parse_tagger_list_json, parse_tagger_list_text};
pub use text::strip_ansi;
pub use workload_list::{parse_workload_list_json, parse_workload_list_text, WorkloadContainer};

use text::contains_ignore_ascii_case;

/// Why a `--json` output could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("`agent {command}` printed no JSON object")]
    NoJson { command: &'static str },
    #[error("`agent {command}` printed unusable JSON: {reason}")]
    Malformed {
        command: &'static str,
        reason: String,
    },
}

/// True when a `--json` invocation failed because the agent is too old (`unknown flag: --json`,
/// in stdout or stderr): the caller asks again without it.
pub fn json_flag_unsupported(stdout: &str, stderr: &str) -> bool {
    [stdout, stderr].into_iter().any(|text| {
        let text = strip_ansi(text);
        contains_ignore_ascii_case(&text, "unknown flag: --json")
            || contains_ignore_ascii_case(&text, "unknown shorthand flag: 'j'")
    })
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_agent_without_json_output_is_recognised() {
        assert!(json_flag_unsupported("", UNKNOWN_FLAG_JSON));
        assert!(json_flag_unsupported(UNKNOWN_FLAG_JSON, ""));
        assert!(json_flag_unsupported(
            "",
            "\x1b[31mError: unknown flag: --json\x1b[0m"
        ));
        assert!(json_flag_unsupported(
            "",
            "Error: unknown shorthand flag: 'j' in -j"
        ));
        assert!(!json_flag_unsupported(WORKLOAD_LIST_JSON, ""));
        assert!(!json_flag_unsupported("", NO_AUTH_TOKEN));
        assert!(!json_flag_unsupported(
            "",
            "Error: unknown flag: --verbose-json-output-x"
        ));
    }

    /// Lines that exercise every parser's branches, for line-soup inputs.
    const LINE_SOUP: &[&str] = &[
        "=== Entity container sources(merged):[runtime] id: 8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4 ===",
        "=== Entity container 0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0 ===",
        "=== Entity container_id://8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4 ===",
        "=== Entity process 42 ===",
        "=== Entity ===",
        "===",
        "======",
        "----------- Entity Meta -----------",
        "----------- Image -----------",
        "----------- Container Info -----------",
        "------",
        "Name: x",
        "Tag: y",
        "Running: true",
        "Running: maybe",
        "== Source docker =",
        "=Tags: [a:b c: d]",
        "Tags: [",
        "Tags: ]",
        "=== 3 healthy components ===",
        "=== 1 unhealthy components ===",
        "a, b,, c",
        "Error: could not reach agent: nope",
        "{",
        "}",
        "{\"Entities\":{\"container\":[",
        "{\"entities\":",
        "{\"version\":\"7\",\"forwarderStats\":{\"APIKeyStatus\":{\"API key ending with\":1}}}",
        "\x1b[32m",
        "\x1b]0;",
        "",
    ];

    fn line_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LINE_SOUP), 0..40)
            .prop_map(|lines| lines.join("\n"))
    }

    fn run_all_parsers(s: &str) {
        let _ = strip_ansi(s);
        let _ = parse_health(0, s, s);
        let _ = json_flag_unsupported(s, s);
        let _ = parse_workload_list_json(s);
        let _ = parse_workload_list_text(s);
        let _ = parse_tagger_list_text(s);
        let _ = parse_tagger_list_json(s);
        let _ = parse_status_json(s);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_strings(s in any::<String>()) {
            run_all_parsers(&s);
        }

        #[test]
        fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            run_all_parsers(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn parsers_never_panic_on_line_soup(s in line_soup()) {
            run_all_parsers(&s);
        }
    }
}
