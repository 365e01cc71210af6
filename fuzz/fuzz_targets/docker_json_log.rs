//! The unsent rest of a Docker json-file log (`{"log":"...","stream":"stdout","time":"..."}` lines).
#![no_main]
use ddsky_fuzz::drain::only_empty_messages;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let empty = only_empty_messages(data);
    // A line cut short (no final newline) is always something still to send.
    if !data.is_empty() && !data.ends_with(b"\n") {
        assert!(!empty, "a cut line counted as empty");
    }
});
