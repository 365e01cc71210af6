//! What every text output needs: ANSI stripping, entity headers, case-insensitive matching.

use std::borrow::Cow;

const ESC: char = '\u{1b}';

/// Removes ANSI escape sequences (colour, OSC titles and links, ...): the agent colours its output
/// when it runs on a terminal, and a user's wrapper may give it one.
///
/// Line by line, so an unterminated OSC never swallows the rest of the output.
pub fn strip_ansi(s: &str) -> Cow<'_, str> {
    if !s.contains(ESC) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.extend(anstream::adapter::strip_str(line));
    }
    Cow::Owned(out)
}

/// `=== Entity <rest> ===` -> `<rest>` (workload-list and tagger-list both head entities this way).
pub(super) fn entity_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("===")?.strip_suffix("===")?.trim();
    let rest = inner.strip_prefix("Entity")?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// The value trimmed, or None when nothing is left (Go prints an empty field as `Name: `).
pub(super) fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub(super) fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strip_ansi_removes_colour_and_osc() {
        assert_eq!(
            strip_ansi("Agent health: \x1b[32mPASS\x1b[0m"),
            "Agent health: PASS"
        );
        assert_eq!(strip_ansi("\x1b[1;31;48;5;16mred\x1b[m"), "red");
        assert_eq!(strip_ansi("\x1b]0;title\x07text"), "text");
        assert_eq!(
            strip_ansi("\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(strip_ansi("a\x1b(Bb\x1b7c"), "abc");
        assert_eq!(strip_ansi("broken \x1b[31"), "broken ");
        assert_eq!(strip_ansi("osc \x1b]unterminated\nnext"), "osc \nnext");
        assert!(matches!(strip_ansi("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn entity_headers() {
        assert_eq!(
            entity_header("=== Entity container sources(merged):[runtime] id: abc ==="),
            Some("container sources(merged):[runtime] id: abc")
        );
        assert_eq!(
            entity_header("=== Entity container_id://x ==="),
            Some("container_id://x")
        );
        assert_eq!(entity_header("=== Entityx ==="), None);
        assert_eq!(entity_header("=== 3 healthy components ==="), None);
        assert_eq!(entity_header("==="), None);
    }

    fn ansi_soup() -> impl Strategy<Value = String> {
        let alphabet = vec![
            '\x1b', '[', ']', '(', '0', '1', '9', ';', 'm', 'K', '\x07', '\\', 'a', ' ', '\n', 'é',
        ];
        prop::collection::vec(prop::sample::select(alphabet), 0..80).prop_map(String::from_iter)
    }

    proptest! {
        #[test]
        fn strip_ansi_is_idempotent(s in ansi_soup()) {
            let once = strip_ansi(&s).into_owned();
            prop_assert!(!once.contains(ESC));
            prop_assert_eq!(strip_ansi(&once), once.as_str());
        }

        #[test]
        fn strip_ansi_is_idempotent_on_any_string(s in any::<String>()) {
            let once = strip_ansi(&s).into_owned();
            prop_assert_eq!(strip_ansi(&once), once.as_str());
        }

        #[test]
        fn strip_ansi_leaves_text_without_esc_unchanged(s in "[^\x1b]*") {
            prop_assert!(matches!(strip_ansi(&s), Cow::Borrowed(b) if b == s));
        }
    }
}
