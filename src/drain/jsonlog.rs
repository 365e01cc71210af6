//! Whether the unsent rest of a json-file log holds anything the agent would send.
//!
//! The agent drops empty messages (after trimming spaces, tabs and `\r` at both ends) and its
//! registry offset only moves when a later message is sent, so a log that ends with empty lines
//! keeps its offset short of the size forever (shared/datadog-agent.md, "Logs"). Those bytes,
//! decoded as the agent decodes them, say whether the drain is done anyway.

use serde::Deserialize;

#[derive(Deserialize)]
struct DockerLine {
    #[serde(default)]
    log: String,
}

/// True when `bytes` (whole lines of a Docker json-file log, from the registry offset on) hold
/// only messages the agent drops: `{"log":"\n"}`, `{"log":" \t\r\n"}`, partial entries (Docker
/// splits a line at 16 KiB; an entry whose `log` does not end in `\n` is joined with the next)
/// that join to blank. Anything else, or a line cut short (no final `\n`), is something to send.
pub fn only_empty_messages(bytes: &[u8]) -> bool {
    let Some(whole) = bytes
        .strip_suffix(b"\n")
        .or(bytes.is_empty().then_some(bytes))
    else {
        return false;
    };
    let mut joined = String::new();
    for line in whole.split(|&b| b == b'\n').filter(|_| !whole.is_empty()) {
        let log = match serde_json::from_slice::<DockerLine>(line) {
            Ok(l) => l.log,
            // Not a json line: the agent takes the raw line as the message.
            Err(_) => format!("{}\n", String::from_utf8_lossy(line)),
        };
        let (text, complete) = match log.strip_suffix('\n') {
            Some(t) => (t, true),
            None => (log.as_str(), false),
        };
        joined.push_str(text);
        if !is_blank(&joined) {
            return false;
        }
        if complete {
            joined.clear();
        }
    }
    true
}

fn is_blank(message: &str) -> bool {
    message.trim_matches([' ', '\t', '\r']).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &str) -> String {
        format!(
            "{{\"log\":{},\"stream\":\"stdout\",\"time\":\"2026-12-06T20:00:00.123456789Z\"}}\n",
            serde_json::to_string(log).unwrap()
        )
    }

    fn lines(logs: &[&str]) -> Vec<u8> {
        logs.iter()
            .map(|l| line(l))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn empty_and_whitespace_only_lines_are_nothing_to_send() {
        assert!(only_empty_messages(b""));
        assert!(only_empty_messages(&lines(&["\n"])));
        assert!(only_empty_messages(&lines(&[
            "\n", "  \t \n", "\r\n", " \r\n"
        ])));
    }

    #[test]
    fn any_real_message_is_something_to_send() {
        assert!(!only_empty_messages(&lines(&["\n", "done\n", "\n"])));
        assert!(!only_empty_messages(&lines(&["  x  \n"])));
        assert!(
            !only_empty_messages(&lines(&["\u{a0}\n"])),
            "only space, tab and \\r are trimmed"
        );
    }

    #[test]
    fn a_tty_container_blank_line_ends_in_cr_lf() {
        assert!(only_empty_messages(&lines(&["\r\n", "\r\n"])));
        assert!(!only_empty_messages(&lines(&["epoch 3\r\n", "\r\n"])));
    }

    #[test]
    fn partial_entries_are_joined_before_judging() {
        // Docker split a 16 KiB line: the first entry has no trailing \n.
        let blank_head = " ".repeat(16 * 1024);
        assert!(only_empty_messages(&lines(&[&blank_head, "  \n"])));
        assert!(!only_empty_messages(&lines(&[&blank_head, " x\n"])));
        let text_head = "y".repeat(16 * 1024);
        assert!(!only_empty_messages(&lines(&[&text_head, "\n"])));
    }

    #[test]
    fn a_line_cut_short_or_not_json_is_not_known_to_be_empty() {
        let mut cut = lines(&["\n"]);
        cut.extend_from_slice(b"{\"log\":\"\\n\",\"str");
        assert!(!only_empty_messages(&cut));
        assert!(!only_empty_messages(b"plain text\n"));
        assert!(only_empty_messages(b"   \n"));
    }
}
