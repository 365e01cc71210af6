//! Argument dispatch and the subcommands that run inside the container through `docker exec`.
//! Like the real Go CLI, each one first spends CPU starting up and loading the configuration
//! ([`cpu_cost`]), then needs the auth token the daemon writes once its command API is up, then
//! the command API itself on 127.0.0.1:`DD_CMD_PORT`; it reads the daemon's state file
//! ([`crate::state`]) and prints what [`crate::render`] makes of it.

use crate::render::{self, Output};
use crate::rng::Rng;
use crate::state::{self, AgentState};
use crate::{daemon, model, timefmt};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// CPU time each CLI command costs by default: the real agent's CLI is a large Go binary that
/// loads the whole configuration before doing anything (about 0.3-1 s of CPU).
pub const DEFAULT_CLI_CPU_MS: u64 = 300;

/// Runs the program for `args` (argv) and returns the exit status.
pub fn dispatch(args: &[String]) -> i32 {
    let argv0 = args.first().map(String::as_str).unwrap_or("agent");
    let probe = argv0.ends_with("probe.sh");
    if !probe && matches!(args.get(1).map(String::as_str), None | Some("run")) {
        return daemon::run();
    }
    spend_cpu(cpu_cost());
    if probe {
        return emit(health(&[]));
    }
    let rest = args.get(2..).unwrap_or(&[]);
    let output = match args.get(1).map(String::as_str) {
        None | Some("run") => unreachable!("the daemon is dispatched above"),
        Some("health") => health(rest),
        Some("workload-list") => workload_list(rest),
        Some("tagger-list") => tagger_list(rest),
        Some("status") => status(rest),
        Some("version") => Output::ok(format!(
            "Agent {} - Meta: standin - Commit: 0000000 - Serialization version: v5.0.0 - Go version: go1.24.0\n",
            crate::VERSION
        )),
        Some("-h" | "--help" | "help") => Output::ok(USAGE.to_string()),
        Some(other) => {
            Output::error(&format!("unknown command \"{other}\" for \"agent\"\nRun 'agent --help' for usage."))
        }
    };
    emit(output)
}

const USAGE: &str = "The Datadog Agent (ddsky test stand-in)\n\n\
Usage:\n  agent [command]\n\n\
Available Commands:\n\
  health         Print the current agent health\n\
  run            Run the Agent\n\
  status         Print the current status\n\
  tagger-list    Print the tagger content of a running agent\n\
  version        Print the version info\n\
  workload-list  Print the workload content of a running agent\n";

/// Prints an output and returns its exit status. A closed stdout (`| head`) is not an error.
pub fn emit(output: Output) -> i32 {
    let _ = std::io::stdout().lock().write_all(output.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().lock().write_all(output.stderr.as_bytes());
    output.code
}

/// The flags a subcommand accepts.
#[derive(Debug, Default, PartialEq)]
struct Flags {
    json: bool,
    pretty: bool,
}

/// Cobra-like flag parsing: `-v/--verbose` and `-c/--cfgpath <dir>` (ignored), plus `-j/--json`
/// and `-p/--pretty(-json)` when `json_ok`; anything else is `unknown flag`.
fn parse_flags(args: &[String], json_ok: bool) -> Result<Flags, Output> {
    let mut flags = Flags::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-j" | "--json" if json_ok => flags.json = true,
            "-p" | "--pretty" | "--pretty-json" if json_ok => {
                flags.json = true;
                flags.pretty = true;
            }
            "-v" | "--verbose" => {}
            "-c" | "--cfgpath" => {
                iter.next();
            }
            a if a.starts_with("--cfgpath=") => {}
            a if a.starts_with("--") => return Err(Output::error(&format!("unknown flag: {a}"))),
            a if a.starts_with('-') && a.len() > 1 => {
                let c = a.chars().nth(1).unwrap_or('-');
                return Err(Output::error(&format!(
                    "unknown shorthand flag: '{c}' in {a}"
                )));
            }
            _ => {} // positional arguments are ignored, as cobra does without Args validation
        }
    }
    Ok(flags)
}

/// `workload-list` and `tagger-list` take `--json` unless `STANDIN_NO_JSON=1` makes them an
/// old agent's (`status -j` is older and always works).
fn list_json_supported() -> bool {
    !env_is("STANDIN_NO_JSON", "1")
}

fn env_is(key: &str, value: &str) -> bool {
    std::env::var(key).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// `STANDIN_CLI_CPU_MS` (default [`DEFAULT_CLI_CPU_MS`]).
pub fn cpu_cost() -> Duration {
    let ms = std::env::var("STANDIN_CLI_CPU_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_CLI_CPU_MS);
    Duration::from_millis(ms)
}

/// This process's CPU time so far (user + system).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::MAX;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Works until the process has used `target` of CPU (CPU time, not wall time: on a loaded node
/// the command takes longer, as the real one does).
pub fn spend_cpu(target: Duration) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while process_cpu_time() < target {
        for i in 0..20_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
    }
}

/// `DD_CMD_PORT` as the CLI reads it (the container's environment).
fn cmd_port() -> u16 {
    std::env::var("DD_CMD_PORT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(crate::config::DEFAULT_CMD_PORT)
}

/// What every command needs before asking the agent anything: the auth token (written once the
/// command API is up), then the command API answering, then the daemon's state.
fn running_agent(endpoint: &str) -> Result<(AgentState, f64), Output> {
    let token = state::auth_token_file();
    if let Err(e) = std::fs::read(&token) {
        return Err(render::no_auth_token(&token.display().to_string(), &e));
    }
    let port = cmd_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        return Err(render::not_up(endpoint, port, &e));
    }
    let now = timefmt::now();
    state::load(&state::state_dir(), now)
        .map(|s| (s, now))
        .map_err(|_| {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            render::not_up(endpoint, port, &refused)
        })
}

/// Real agents log a line on stdout before JSON output unless `DD_LOG_LEVEL=off`.
fn json_output(json: String, now: f64) -> Output {
    if env_is("DD_LOG_LEVEL", "off") {
        Output::ok(json)
    } else {
        Output::ok(render::log_preamble(now) + &json)
    }
}

fn health(args: &[String]) -> Output {
    if let Err(e) = parse_flags(args, false) {
        return e;
    }
    match running_agent("/agent/status/health") {
        Ok((s, now)) => render::health(&model::health(&s, now)),
        Err(e) => e,
    }
}

fn workload_list(args: &[String]) -> Output {
    let flags = match parse_flags(args, list_json_supported()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let (s, now) = match running_agent("/agent/workload-list") {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut rng = Rng::from_entropy();
    if flags.json {
        json_output(render::workload_json(&s, now, &mut rng, flags.pretty), now)
    } else {
        Output::ok(render::workload_text(&s, now, &mut rng))
    }
}

fn tagger_list(args: &[String]) -> Output {
    let flags = match parse_flags(args, list_json_supported()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let (s, now) = match running_agent("/agent/tagger-list") {
        Ok(v) => v,
        Err(e) => return e,
    };
    if flags.json {
        json_output(render::tagger_json(&s, now), now)
    } else {
        Output::ok(render::tagger_text(&s, now, &mut Rng::from_entropy()))
    }
}

fn status(args: &[String]) -> Output {
    let flags = match parse_flags(args, true) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let (s, now) = match running_agent("/agent/status") {
        Ok(v) => v,
        Err(e) => return e,
    };
    if flags.json {
        json_output(render::status_json(&s, now), now)
    } else {
        Output::ok(render::status_text(&s, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags() {
        assert_eq!(
            parse_flags(&args(&["--json"]), true).unwrap(),
            Flags {
                json: true,
                pretty: false
            }
        );
        assert_eq!(
            parse_flags(&args(&["-p", "-c", "/etc/dd"]), true).unwrap(),
            Flags {
                json: true,
                pretty: true
            }
        );
        let e = parse_flags(&args(&["--json"]), false).unwrap_err();
        assert_eq!(e.stderr, "Error: unknown flag: --json\n");
        assert_eq!(e.code, 255);
        let e = parse_flags(&args(&["-x"]), true).unwrap_err();
        assert_eq!(e.stderr, "Error: unknown shorthand flag: 'x' in -x\n");
    }

    #[test]
    fn unknown_command_fails() {
        std::env::set_var("STANDIN_CLI_CPU_MS", "0");
        assert_eq!(dispatch(&args(&["agent", "frobnicate"])), 255);
        assert_eq!(dispatch(&args(&["agent", "version"])), 0);
    }

    /// In a process of its own: the test harness's other threads would add their CPU time to
    /// this process's clock and end the spending early.
    #[test]
    fn spends_cpu_time_not_wall_time() {
        const CHILD: &str = "STANDIN_TEST_SPEND_CPU_ALONE";
        if std::env::var_os(CHILD).is_some() {
            let before = process_cpu_time();
            let target = before + Duration::from_millis(150);
            let start = std::time::Instant::now();
            spend_cpu(target);
            assert!(process_cpu_time() >= target);
            assert!(
                start.elapsed() >= Duration::from_millis(100),
                "{:?}",
                start.elapsed()
            );
            return;
        }
        let alone = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cli::tests::spends_cpu_time_not_wall_time"])
            .args(["--test-threads", "1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&alone.stdout);
        assert!(
            alone.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&alone.stderr)
        );
    }
}
