//! `agent tagger-list` (text) and `agent tagger-list --json`.
#![no_main]
use ddsky_fuzz::agent_output::{parse_tagger_list_json, parse_tagger_list_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let from_text = parse_tagger_list_text(&text);
    let from_json = parse_tagger_list_json(&text).unwrap_or_default();
    for id in from_text.keys().chain(from_json.keys()) {
        ddsky_fuzz::assert_container_id(id);
    }
});
