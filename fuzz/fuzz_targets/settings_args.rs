//! The command line and its DDSKY_* twins (clap reads a twin with the flag's own parser): a
//! subcommand and its arguments, cut at NUL bytes, through clap and ddsky's validation.
#![no_main]
use clap::Parser;
use ddsky_fuzz::cli::Cli;
use ddsky_fuzz::settings::{from_cli, parse_agent_env};
use libfuzzer_sys::fuzz_target;

const COMMANDS: [&str; 9] = [
    "up", "status", "down", "run", "env", "verify", "doctor", "logs", "k8s",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let _ = parse_agent_env(&text);
    let mut args = vec![
        "ddsky".to_owned(),
        COMMANDS[usize::from(which) % COMMANDS.len()].to_owned(),
    ];
    args.extend(text.split('\0').take(16).map(str::to_owned));
    if let Ok(cli) = Cli::try_parse_from(&args) {
        if let Err(e) = from_cli(cli, None, Vec::new()) {
            let _ = e.to_string();
        }
    }
});
