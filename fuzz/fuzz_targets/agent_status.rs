//! `agent status --json` (the agent's own JSON, any version, maybe behind log lines).
#![no_main]
use ddsky_fuzz::agent_output::{json_flag_unsupported, parse_status_json};
use ddsky_fuzz::drain::Tailing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(status) = parse_status_json(&text) {
        if let Some(sources) = &status.log_sources {
            if let Tailing::Sources(by_id) = Tailing::from_sources(sources) {
                by_id
                    .keys()
                    .for_each(|id| ddsky_fuzz::assert_container_id(id));
            }
        }
    }
    let _ = json_flag_unsupported(&text, &text);
});
