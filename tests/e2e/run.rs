//! `ddsky run`: the job's supervisor must never change the job's output, timing or exit status on
//! failures of its own, must forward signals exactly once, and must copy the job's output into the
//! container's log where the agent collects it (SkyPilot's runtime mode) without ever blocking it.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The job image of the rehearsal: static bash, busybox, ddsky at /root/.ddsky/ddsky.
fn job_image() -> String {
    format!("{}/skypilot-job:latest", image_namespace())
}

/// `ddsky run` on this machine without a key (monitoring skipped at once), for tests about the job.
fn run_unmonitored(s: &Scope) -> Command {
    let mut cmd = s.ddsky();
    cmd.args(["run", "--no-aws"]);
    cmd
}

#[test]
fn the_jobs_output_and_exit_status_pass_through_unchanged() {
    let s = Scope::new("runpassthrough");
    // Bytes a line-based copy could mangle: no trailing newline, \r, invalid UTF-8, a long line.
    let script = r#"printf 'out 1\nout \342\200\224 2\r\n'; printf 'err 1\n' >&2; head -c 70000 /dev/zero | tr '\0' x; printf '\377tail without newline'; exit 3"#;
    let alone = Command::new("sh").args(["-c", script]).output().unwrap();
    let out = run_unmonitored(&s)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the job's exit status");
    assert_eq!(out.stdout, alone.stdout, "stdout byte for byte");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("err 1\n") || stderr.contains("\nerr 1\n"),
        "{stderr}"
    );
}

#[test]
fn a_missing_or_unrunnable_command_ends_like_in_a_shell() {
    let s = Scope::new("runmissing");
    let missing = run(run_unmonitored(&s).args(["--", "ddsky-no-such-program"]));
    missing.expect_code(127);
    assert!(
        missing
            .stderr
            .contains("ddsky-no-such-program: command not found"),
        "{missing}"
    );
    let scratch = scratch_dir("runnoexec");
    let file = scratch.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    run(run_unmonitored(&s).arg("--").arg(&file)).expect_code(126);
}

#[test]
fn a_job_killed_by_a_signal_exits_128_plus_n() {
    let s = Scope::new("runsignaldeath");
    run(run_unmonitored(&s).args(["--", "sh", "-c", "kill -KILL $$"])).expect_code(137);
    run(run_unmonitored(&s).args(["--", "sh", "-c", "kill -TERM $$"])).expect_code(143);
}

/// A job that counts the SIGTERMs it gets and ends 143 after the first (a training loop's
/// checkpoint-then-exit), reporting how many came in its last line.
const COUNTING_JOB: &str = r#"n=0; trap 'n=$((n+1))' TERM; echo ready; while [ "$n" = 0 ]; do sleep 0.1; done; sleep 1; echo "terms=$n"; exit 143"#;

fn spawn_counting_job(cmd: &mut Command) -> std::process::Child {
    let mut child = cmd
        .args(["--", "sh", "-c", COUNTING_JOB])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "ready": ddsky is listening for signals before it starts the job.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0, "the job never said ready");
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(stdout);
    child
}

#[test]
fn sigterm_to_ddsky_alone_reaches_the_job_once() {
    let s = Scope::new("runforward");
    let child = spawn_counting_job(&mut run_unmonitored(&s));
    let pid = child.id().to_string();
    run(Command::new("kill").args(["-TERM", &pid])).expect_code(0);
    let out = wait_within(child, Duration::from_secs(30));
    out.expect_code(143);
    assert!(out.stdout.contains("terms=1"), "{out}");
}

#[test]
fn skypilots_watchdog_signals_the_job_itself_so_ddsky_does_not_forward_it_twice() {
    let s = Scope::new("runwatchdog");
    let child = spawn_counting_job(&mut run_unmonitored(&s));
    let ddsky = child.id().to_string();
    let job = run(Command::new("pgrep").args(["-P", &ddsky, "-x", "sh"]));
    let job = job.stdout.trim().to_owned();
    assert!(!job.is_empty(), "the job is ddsky's child");
    // Like sky/skylet/subprocess_daemon.py: SIGTERM to every process of the tree, one by one, and
    // then alive for its 30 s kill window. The sender stays alive until ddsky has exited (its
    // stdin closes then), so ddsky reads who sent the signal however late it gets to it; a sender
    // gone at once would leave an empty /proc/<pid>/cmdline, as a `kill` aimed at ddsky alone
    // does, and that one ddsky must pass on.
    let mut watchdog = Command::new("sh")
        .args([
            "-c",
            "kill -TERM \"$1\" \"$2\" && { read -r _ || true; }",
            "subprocess_daemon.py",
            &ddsky,
            &job,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh starts");
    let out = wait_within(child, Duration::from_secs(60));
    drop(watchdog.stdin.take());
    let sent = watchdog.wait().expect("the watchdog ends");
    assert!(sent.success(), "the watchdog's kill failed: {sent}");
    out.expect_code(143);
    assert!(out.stdout.contains("terms=1"), "{out}");
}

#[test]
fn ddskys_own_failures_never_stop_or_change_the_job() {
    let s = Scope::new("runfailures");
    let script = "echo job ran; echo to stderr >&2; exit 7";
    // Docker unreachable, with a key and --down.
    let out = run(s
        .ddsky()
        .env("DD_API_KEY", KEY)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["run", "--down", "--", "sh", "-c", script]));
    out.expect_code(7).assert_no_secret(&[]);
    assert_eq!(out.stdout, "job ran\n", "{out}");
    assert!(out.stderr.contains("to stderr"), "{out}");
    assert!(
        out.stderr.contains("WARN"),
        "ddsky says what it could not do: {out}"
    );
    // A bad value in the environment is a warning, the job runs.
    let out = run(run_unmonitored(&s)
        .env("DDSKY_TIMEOUT", "soon")
        .env("DDSKY_PULL", "sometimes")
        .args(["--", "sh", "-c", script]));
    out.expect_code(7);
    assert_eq!(out.stdout, "job ran\n", "{out}");
    assert!(
        out.stderr.contains("monitoring is off for this run"),
        "{out}"
    );
    // A bad flag on ddsky's own command line is a usage error before the job starts.
    let marker = scratch_dir("runbadflag");
    let touched = marker.path().join("ran");
    let out = run(run_unmonitored(&s).args([
        "--pull",
        "sometimes",
        "--",
        "touch",
        touched.to_str().unwrap(),
    ]));
    out.expect_code(2);
    assert!(
        !touched.exists(),
        "the job must not start after a usage error"
    );
}

#[test]
fn the_job_gets_the_variables_ddsky_env_prints_on_top_of_its_own() {
    let s = Scope::new("runenv");
    let out = run(run_unmonitored(&s)
        .env("METTA_RUN_ID", "alice.1")
        .env("KEEP_ME", "yes")
        .env("DD_ENV", "overridden")
        .args(["--env", "staging", "--", "sh", "-c", "env"]));
    out.expect_code(0);
    let env = run(s
        .ddsky()
        .env("METTA_RUN_ID", "alice.1")
        .args(["env", "--env", "staging", "--format", "env-file"]));
    for line in env.stdout.lines() {
        assert!(out.stdout.lines().any(|l| l == line), "{line} in\n{out}");
    }
    assert!(out.stdout.lines().any(|l| l == "KEEP_ME=yes"), "{out}");
}

/// A container like SkyPilot's sky_container but with PID 1's output set up by `pid1`, and ddsky
/// run inside it through `docker exec`, as SkyPilot's SSH session would.
fn exec_in_container_with_pid1(s: &Scope, what: &str, pid1: &str, job: &str) -> Run {
    let name = s.name(what);
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--entrypoint",
        "/bin/bash",
        &job_image(),
        "-c",
        pid1,
    ]);
    started.expect_code(0);
    let child = Command::new("docker")
        .args([
            "exec",
            "-e",
            "DDSKY_NO_AWS=1",
            &name,
            "/root/.ddsky/ddsky",
            "run",
            "--",
            "/bin/bash",
            "-c",
            job,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_within(child, Duration::from_secs(120))
}

const MANY_LINES: &str = "for i in $(seq 1 20000); do echo \"line $i of the job\"; done; exit 5";

#[test]
fn a_closed_pid1_output_is_one_warning_and_the_job_is_untouched() {
    let s = Scope::new("runpid1closed");
    let out = exec_in_container_with_pid1(&s, "closed", "exec 1>&- 2>&-; sleep 600", MANY_LINES);
    out.expect_code(5);
    assert_eq!(out.stdout.lines().count(), 20000, "{}", out.stderr);
    assert_eq!(out.stdout.lines().last(), Some("line 20000 of the job"));
    assert_eq!(
        out.stderr
            .matches("was not copied into this container's log")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn a_blocked_pid1_output_drops_lines_for_the_log_but_never_blocks_the_job() {
    let s = Scope::new("runpid1blocked");
    // PID 1's stdout is a FIFO whose reader never reads: the copy blocks after 64 KiB.
    let pid1 = "mkfifo /tmp/f; sleep 600 < /tmp/f & exec > /tmp/f 2>&1; sleep 600";
    let out = exec_in_container_with_pid1(&s, "blocked", pid1, MANY_LINES);
    out.expect_code(5);
    assert_eq!(out.stdout.lines().count(), 20000, "{}", out.stderr);
    assert!(
        out.stderr.contains("did not keep up")
            && out
                .stderr
                .contains("lines of the job's output were not copied"),
        "{}",
        out.stderr
    );
    // The copy got the first 64 KiB through, then stopped: ddsky says from which line.
    let from = from_line(&out.stderr);
    assert!(from > 1 && from <= 20000, "{}", out.stderr);
}

/// The line number in ddsky's "... from line N of its output on" warning.
fn from_line(stderr: &str) -> u64 {
    let (_, rest) = stderr
        .split_once("from line ")
        .unwrap_or_else(|| panic!("no `from line` in: {stderr}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in: {stderr}"))
}

#[test]
fn a_pid1_output_that_closes_mid_run_is_said_once_from_its_line_and_the_job_is_untouched() {
    let s = Scope::new("runpid1closes");
    // PID 1's stdout is a FIFO whose reader takes 4 KiB and exits: the copy works, then every
    // write fails (EPIPE), as when PID 1's log goes away in the middle of the job.
    let pid1 = "mkfifo /tmp/f; head -c 4096 < /tmp/f > /dev/null & exec > /tmp/f 2>&1; sleep 600";
    let out = exec_in_container_with_pid1(&s, "closes", pid1, MANY_LINES);
    out.expect_code(5);
    let want: Vec<String> = (1..=20000)
        .map(|i| format!("line {i} of the job"))
        .collect();
    let got: Vec<&str> = out.stdout.lines().collect();
    assert!(
        got == want,
        "the job's output unchanged and in order: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .matches("was not copied into this container's log")
            .count(),
        1,
        "said once: {}",
        out.stderr
    );
    let from = from_line(&out.stderr);
    assert!(
        from > 1 && from <= 20000,
        "it copied some lines, then stopped at one: {}",
        out.stderr
    );
}

#[test]
fn inside_a_container_the_jobs_output_also_lands_in_the_container_log() {
    let s = Scope::new("runpid1copy");
    let name = s.name("sky");
    docker(&[
        "run",
        "-d",
        "-it",
        "--name",
        &name,
        "--entrypoint",
        "/bin/bash",
        &job_image(),
    ])
    .expect_code(0);
    let job = "echo first line; echo an error >&2; echo last line; exit 1";
    // ddsky's stdout and stderr are one pipe, as under SkyPilot: the job's two streams then share
    // one pipe too, so the container log has them in the order the job wrote them.
    let out = run(Command::new("docker").args([
        "exec",
        "-e",
        "DDSKY_NO_AWS=1",
        "-e",
        &format!("JOB={job}"),
        &name,
        "/bin/bash",
        "-c",
        "/root/.ddsky/ddsky run -- /bin/bash -c \"$JOB\" 2>&1",
    ]));
    out.expect_code(1);
    let job_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| ["first line", "an error", "last line"].contains(l))
        .collect();
    assert_eq!(job_lines, ["first line", "an error", "last line"], "{out}");
    let logs = docker(&["logs", &name]);
    let lines: Vec<&str> = logs
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the container log:\n{}", logs.stdout))
    };
    // The header is a line of its own, not glued to PID 1's prompt; the job's lines follow whole,
    // in order.
    let header = format!("ddsky: the output of `/bin/bash -c {job}` follows");
    assert!(at(&header) < at("first line"));
    assert!(at("first line") < at("an error") && at("an error") < at("last line"));
    // In the json log the agent tails, the header is one whole message (the agent trims the line
    // end; the empty line before it, if any, it drops).
    let log_path = inspect(&name).unwrap()["LogPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let json_log = std::fs::read_to_string(&log_path).unwrap();
    let messages: Vec<String> = json_log
        .lines()
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).unwrap();
            entry["log"].as_str().unwrap().trim_end().to_owned()
        })
        .collect();
    assert!(
        messages.contains(&header),
        "{header:?} as a message of its own in {messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m == &header || !m.contains("ddsky: the output of")),
        "{messages:?}"
    );
}
