//! `agent workload-list` (text, `-v`) and `agent workload-list --json`.
#![no_main]
use ddsky_fuzz::agent_output::{parse_workload_list_json, parse_workload_list_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let from_text = parse_workload_list_text(&text);
    let from_json = parse_workload_list_json(&text).unwrap_or_default();
    for c in from_text.iter().chain(&from_json) {
        ddsky_fuzz::assert_container_id(&c.id);
    }
});
