//! Argument dispatch and the subcommands that run inside the container through `docker exec`.
//! They read the daemon's state file ([`crate::state`]) and print what [`crate::render`] makes
//! of it.

use crate::render::{self, Output};
use crate::rng::Rng;
use crate::state::{self, AgentState};
use crate::{daemon, model, timefmt};
use std::io::Write;

/// Runs the program for `args` (argv) and returns the exit status.
pub fn dispatch(args: &[String]) -> i32 {
    let argv0 = args.first().map(String::as_str).unwrap_or("agent");
    if argv0.ends_with("probe.sh") {
        return emit(health(&[]));
    }
    let rest = args.get(2..).unwrap_or(&[]);
    let output = match args.get(1).map(String::as_str) {
        None | Some("run") => return daemon::run(),
        Some("health") => health(rest),
        Some("workload-list") => workload_list(rest),
        Some("tagger-list") => tagger_list(rest),
        Some("status") => status(rest),
        Some("stop") => return stop(rest),
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
  stop           Stops a running Agent\n\
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

/// Loads the state, or the "could not reach agent" output for `endpoint`.
fn running_agent(endpoint: &str) -> Result<(AgentState, f64), Output> {
    let now = timefmt::now();
    state::load(&state::state_dir(), now)
        .map(|s| (s, now))
        .map_err(|_| render::not_up(endpoint))
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

/// `agent stop`: SIGTERM to the daemon named by the pid file. The message is printed first: when
/// the daemon is the container's main process, the container (and this exec) ends with it.
fn stop(args: &[String]) -> i32 {
    if let Err(e) = parse_flags(args, false) {
        return emit(e);
    }
    let dir = state::state_dir();
    let pid = std::fs::read_to_string(state::pid_file(&dir))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|&p| p > 0 && state::pid_alive(p as u32));
    let Some(pid) = pid else {
        return emit(render::not_up("/agent/stop"));
    };
    let code = emit(Output::ok("Agent successfully stopped\n".to_string()));
    // SAFETY: plain kill(2) on a pid we just checked.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let err = std::io::Error::last_os_error();
        return emit(Output::error(&format!("error stopping the agent: {err}")));
    }
    code
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
        assert_eq!(dispatch(&args(&["agent", "frobnicate"])), 255);
        assert_eq!(dispatch(&args(&["agent", "version"])), 0);
    }
}
