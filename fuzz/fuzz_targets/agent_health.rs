//! `agent health`: its exit code, stdout and stderr (first byte: the exit code; then stdout NUL
//! stderr).
#![no_main]
use ddsky_fuzz::agent_output::{parse_health, says_not_up_yet, strip_ansi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&code, rest)) = data.split_first() else {
        return;
    };
    let f = ddsky_fuzz::fields(rest, 2);
    let code = match code {
        0..=127 => i64::from(code),
        128..=191 => -1,
        _ => i64::MAX,
    };
    let report = parse_health(code, &f[0], &f[1]);
    let _ = report.summary();
    let _ = says_not_up_yet(&f[0]);
    let stripped = strip_ansi(&f[1]);
    assert!(!stripped.contains('\u{1b}') || f[1].contains('\u{1b}'));
});
