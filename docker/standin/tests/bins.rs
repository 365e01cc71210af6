//! The stand-in's two programs as the test images run them, without Docker: the job's output and
//! its stop, and the agent CLI's answers that need no running daemon.
//!
//! Being an integration test, this file also makes `cargo test --workspace` build `agent` and
//! `job` themselves (not only their unit-test harnesses), with the same features and flags as the
//! rest of the test build: scripts/test.sh makes the test images from exactly those binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_job_logs_a_step_a_second_and_exits_0_on_sigterm() {
    let mut job = Command::new(env!("CARGO_BIN_EXE_job"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the job runs");
    let mut lines = BufReader::new(job.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    assert_eq!(first, "metta stand-in: step 1");
    let started = Instant::now();
    let second = lines.next().expect("a second line").unwrap();
    assert_eq!(second, "metta stand-in: step 2");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "steps come a second apart, not in a burst"
    );
    // SAFETY: signals a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(job.id() as i32, libc::SIGTERM) }, 0);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = job.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is the job's normal stop");
    assert!(
        rest.last()
            .is_some_and(|l| l.starts_with("metta stand-in: stopping after ")),
        "the last line says it stopped: {rest:?}"
    );
}

#[test]
fn the_agent_cli_answers_version_and_refuses_an_unknown_command_as_cobra_does() {
    let version = Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("version")
        .output()
        .expect("the agent CLI runs");
    assert_eq!(version.status.code(), Some(0));
    let stdout = String::from_utf8(version.stdout).unwrap();
    assert!(stdout.starts_with("Agent 7."), "{stdout}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_agent"))
        .arg("frobnicate")
        .output()
        .expect("the agent CLI runs");
    assert_eq!(unknown.status.code(), Some(255), "cobra's exit status");
    assert!(unknown.stdout.is_empty());
    let stderr = String::from_utf8(unknown.stderr).unwrap();
    assert!(
        stderr.starts_with("Error: unknown command \"frobnicate\" for \"agent\""),
        "{stderr}"
    );
}
