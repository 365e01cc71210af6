//! ddsky's modules that parse outside input, compiled as they are (`#[path]` to ../src), under the
//! names they have in the binary so that their `crate::` paths resolve. ddsky stays a binary crate
//! with no library target; its tests never see this crate. Included: each parser's module and the
//! modules those name. Code only the binary calls is dead here.
#![allow(dead_code, unused_imports)]

#[path = "../../src/agent_output/mod.rs"]
pub mod agent_output;
#[path = "../../src/cli.rs"]
pub mod cli;
#[path = "../../src/datadog_api.rs"]
pub mod datadog_api;
#[path = "../../src/drain/mod.rs"]
pub mod drain;
#[path = "../../src/engine.rs"]
pub mod engine;
#[path = "../../src/gpu.rs"]
pub mod gpu;
#[path = "../../src/key.rs"]
pub mod key;
#[path = "../../src/output.rs"]
pub mod output;
#[path = "../../src/placement.rs"]
pub mod placement;
#[path = "../../src/ports.rs"]
pub mod ports;
#[path = "../../src/redact.rs"]
pub mod redact;
#[path = "../../src/reference.rs"]
pub mod reference;
#[path = "../../src/registry.rs"]
pub mod registry;
#[path = "../../src/settings.rs"]
pub mod settings;
#[path = "../../src/spec.rs"]
pub mod spec;
#[path = "../../src/tags.rs"]
pub mod tags;
#[path = "../../src/verify.rs"]
pub mod verify;

/// The fuzzer's bytes as up to `n` text fields cut at NUL bytes (invalid UTF-8 replaced, as ddsky
/// reads text it did not write), missing ones empty.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}

/// What every container id a parser returns must be: 64 lowercase hex characters.
pub fn assert_container_id(id: &str) {
    assert!(
        id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "not a full container id: {id:?}"
    );
}
