//! The agent's auditor registry (`/opt/datadog-agent/run/registry.json`), read in the drain.
#![no_main]
use ddsky_fuzz::drain::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(registry) = Registry::parse(&text) {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let _ = registry.position(id);
        let _ = registry.file_offset(id);
    }
});
