//! Faults, hostile input and ownership: what a busy GPU cluster throws at ddsky. Each test is one row
//! of the reliability table in docs/reliability.md.

use crate::common::*;
use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_docker_host_that_never_answers_fails_fast_with_the_address() {
    let s = Scope::new("blackhole");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = vec![];
        for conn in listener.incoming().take(8) {
            held.push(conn);
        }
    });
    let host = format!("tcp://127.0.0.1:{port}");
    let out = run(s.up().env("DOCKER_HOST", &host));
    out.expect_code(1).assert_no_secret(&[]);
    assert!(
        out.stderr.contains(&host) && out.stderr.contains("no answer"),
        "{out}"
    );
    assert!(out.stderr.contains("--docker-host"), "names the fix: {out}");
    assert!(
        // ddsky gives up after 1.5 s; without that bound it would hang for bollard's 2 minutes.
        out.elapsed < Duration::from_secs(20),
        "bounded, not hanging: {:?}",
        out.elapsed
    );
}

#[test]
fn an_agent_killed_mid_wait_is_reported_not_waited_on() {
    let s = Scope::new("killed");
    // The agent never becomes healthy (its first health ping is held) and `up` would wait 10
    // minutes: the kill lands once `up` has asked the agent, so certainly in its wait.
    let waiting = s.watch_waiting_up(&["--timeout", "600s"]);
    assert!(
        waiting.wait_until_asked(1, Duration::from_secs(60)),
        "up never asked the agent"
    );
    let pid = inspect(&s.agent)
        .and_then(|c| c["State"]["Pid"].as_i64())
        .unwrap_or(0);
    assert!(pid > 0, "the agent runs");
    let start = Instant::now();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    // Bounded: a ddsky that waits out its timeout (or never returns) is killed at 150 s and fails.
    let out = waiting.finish(Duration::from_secs(150));
    let stderr = &out.stderr;
    assert_eq!(out.code, 6, "the agent-crashed code: {out}");
    assert!(stderr.contains("during start-up"), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "reported, not waited on for the 600 s timeout"
    );
}

#[test]
fn an_agent_removed_behind_our_back_is_recreated_by_the_next_up() {
    let s = Scope::new("removed");
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    docker(&["rm", "-f", &s.agent]).expect_code(0);
    let again = run(s.up().args(["--expect", "none-such", "--format", "json"]));
    again.expect_code(0);
    assert_eq!(again.json()["action"], "create");
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);
}

#[test]
fn an_agent_that_exits_on_start_is_reported_with_its_last_lines_and_not_left_crash_looping() {
    let s = Scope::new("exits");
    let out = run(s.up().args([
        "--agent-env",
        "STANDIN_NO_HOSTNAME=1",
        "--expect",
        "none-such",
    ]));
    out.expect_code(6).assert_no_secret(&[]);
    assert!(
        out.stderr.contains("during start-up") && out.stderr.contains("was removed"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("unable to reliably determine the host name"),
        "the agent's own words: {out}"
    );
    assert!(
        inspect(&s.agent).is_none(),
        "no crash-looping container left behind"
    );
}

#[test]
fn unwritable_stdout_and_stderr_do_not_crash_ddsky() {
    // Its second `up` has no --run-dir: the agent is recreated on the host's default.
    let s = Scope::holding("devfull", &[HostResource::DefaultRunDir]);
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    for args in [
        &["status"][..],
        &["up", "--image", agent_image(), "--expect", "none-such"],
        &["doctor"],
        &["--name", "ddskyt-absent-x", "status"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let full2 = full.try_clone().unwrap();
        let mut cmd = s.ddsky();
        cmd.env("DD_API_KEY", KEY)
            .args(args)
            .args(s.port_args().iter().filter(|_| args[0] == "up"))
            .args(s.agent_args().iter().filter(|_| args[0] == "up"))
            .stdout(full)
            .stderr(full2);
        let status = cmd.status().unwrap();
        let code = status.code().unwrap_or(-1);
        assert!(
            [0, 1, 5].contains(&code),
            "{args:?} exited {code} (101 would be a panic)"
        );
    }
}

/// `up --dry-run --format json` with one `--tag` (or env), returning the DD_TAGS it would set.
fn dry_run_tags(s: &Scope, cmd: &mut Command) -> (Run, Vec<String>) {
    cmd.args(["--dry-run", "--format", "json", "--expect", "none-such"]);
    let out = run(cmd);
    if out.code != 0 {
        return (out, vec![]);
    }
    let env = out.json()["container"]["Env"].clone();
    let dd_tags = env
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .find_map(|e| e.strip_prefix("DD_TAGS="))
        .unwrap()
        .to_owned();
    let _ = s;
    (out, dd_tags.split(' ').map(String::from).collect())
}

#[test]
fn hostile_tags_are_normalised_or_refused_never_passed_through() {
    let s = Scope::new("hostiletags");
    let long = format!("team:{}", "x".repeat(10_000));
    let cases: [(&str, Option<&str>); 8] = [
        ("team:a b", Some("team:a_b")),
        ("team:a,b", Some("team:a_b")),
        ("team:\"quoted\"", Some("team:_quoted_")),
        ("team:line\nbreak", Some("team:line_break")),
        ("team:Ünïcödé", Some("team:ünïcödé")),
        ("team:$(rm -rf /)", Some("team:__rm_-rf_/_")),
        ("@@@:!!!", None),
        ("novalue", None),
    ];
    for (tag, expected) in cases {
        let mut cmd = s.up();
        cmd.args(["--tag", tag]);
        let (out, tags) = dry_run_tags(&s, &mut cmd);
        match expected {
            Some(want) => {
                out.expect_code(0);
                assert!(tags.contains(&want.to_string()), "{tag:?} -> {tags:?}");
                assert!(
                    tags.iter().all(|t| !t.contains([' ', ',', '"', '\n'])),
                    "{tags:?}"
                );
            }
            None => {
                out.expect_code(2);
                assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
            }
        }
    }
    let mut cmd = s.up();
    cmd.args(["--tag", &long]);
    let (out, tags) = dry_run_tags(&s, &mut cmd);
    out.expect_code(0);
    let team = tags.iter().find(|t| t.starts_with("team:")).unwrap();
    assert_eq!(team.chars().count(), 200, "cut to Datadog's limit");
    assert!(out.stderr.contains("cut to 200 characters"));
    // The env twin is split on spaces; a flag value never is.
    let mut from_env = s.up();
    from_env.env("DDSKY_TAGS", "team:ml  owner:alice");
    let (out, tags) = dry_run_tags(&s, &mut from_env);
    out.expect_code(0);
    assert!(
        tags.contains(&"team:ml".to_string()) && tags.contains(&"owner:alice".to_string()),
        "{tags:?}"
    );
    assert!(inspect(&s.agent).is_none(), "dry runs create nothing");
}

#[test]
fn environment_variables_with_invalid_utf8_are_normalised() {
    let s = Scope::new("badutf8");
    let mut cmd = s.up();
    cmd.env("METTA_RUN_ID", OsString::from_vec(b"run\xff\xfe1".to_vec()));
    let (out, tags) = dry_run_tags(&s, &mut cmd);
    out.expect_code(0);
    assert!(
        tags.contains(&"metta_run_id:run__1".to_string()),
        "{tags:?}"
    );
    assert!(
        out.stderr.contains("METTA_RUN_ID is not valid UTF-8"),
        "{out}"
    );

    let mut bad_key = s.up();
    bad_key
        .env(
            "DD_API_KEY",
            OsString::from_vec(b"\xff0123456789abcdef0123456789abcde".to_vec()),
        )
        .args(["--no-aws"]);
    let out = run(&mut bad_key);
    out.expect_code(0);
    assert!(out.stdout.contains("DD_API_KEY is not used"), "{out}");
    assert!(inspect(&s.agent).is_none());
}

#[test]
fn hostile_image_references_and_names_are_usage_errors() {
    let s = Scope::new("hostileimage");
    for image in [
        "$(rm -rf /)",
        "../../etc/passwd",
        "agent;reboot",
        "a b",
        "Datadog/Agent:7",
        "agent:",
        "-agent",
    ] {
        let out = run(s.up().arg(format!("--image={image}")));
        out.expect_code(2);
        assert!(out.stderr.contains("not valid"), "{image}: {out}");
    }
    for name in ["dd/agent", "../x", "a", "dd agent", "-x"] {
        let out = run(s.up().arg(format!("--name={name}")));
        out.expect_code(2);
        assert!(out.stderr.contains("container name"), "{name}: {out}");
    }
    for host in ["ftp://x", "ssh://root@host", "/var/run/docker.sock"] {
        run(s.up().env("DOCKER_HOST", host)).expect_code(2);
    }
    let none = docker(&["ps", "-aq", "--filter", &format!("name={}", s.prefix)]);
    assert!(none.stdout.trim().is_empty(), "nothing created");
}

#[test]
fn a_foreign_container_is_never_touched_whatever_its_labels_and_flags() {
    let s = Scope::new("ownership");
    for (i, labels) in [
        &[][..],
        &["io.ddsky.managed-by=someone-else"],
        &["io.ddsky.spec-hash=0000"],
        &["managed-by=ddsky"],
    ]
    .iter()
    .enumerate()
    {
        let name = s.name(&format!("foreign{i}"));
        let mut args = vec!["run", "-d", "--name", &name];
        for l in labels.iter() {
            args.extend(["--label", l]);
        }
        args.push(job_image());
        docker(&args).expect_code(0);
        let before = inspect(&name).unwrap();

        let attempts: [(&[&str], i32); 6] = [
            (&["up", "--image", agent_image()], 1),
            (&["up", "--image", agent_image(), "--dry-run"], 1),
            (&["up", "--image", agent_image(), "--tag", "other:tags"], 1),
            (&["down"], 1),
            (&["down", "--timeout", "1s"], 1),
            (&["status"], 3),
        ];
        for (cmd_args, code) in attempts {
            let out = run(s
                .ddsky()
                .env("DD_API_KEY", KEY)
                .args(["--name", &name])
                .args(cmd_args));
            assert!(
                out.code == code || (cmd_args[0] == "status" && out.code != 0),
                "{cmd_args:?}: {out}"
            );
        }
        let after = inspect(&name).expect("still there");
        assert_eq!(after["Id"], before["Id"]);
        assert_eq!(
            after["State"]["StartedAt"], before["State"]["StartedAt"],
            "never restarted"
        );
        assert_eq!(after["State"]["Running"], true, "never stopped");
        assert_eq!(
            after["Config"]["Labels"], before["Config"]["Labels"],
            "never modified"
        );
    }
}

/// Lines of the job the agent is killed under, one every 30 ms.
const KILLED_UNDER_LINES: usize = 300;

#[test]
fn an_agent_sigkilled_mid_job_is_restarted_and_every_line_is_sent_and_status_names_the_kill() {
    let s = Scope::new("oomkill");
    let intake = Intake::start(200, 202);
    let job = s.name("job");
    run(s.up().args([
        "--agent-env",
        &format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
        "--expect",
        "none-such",
    ]))
    .expect_code(0);
    // Two seconds of silence so that the agent discovers it, then the first half of its numbered
    // lines; the second half once the test says so, and then it waits to be let go (files in a
    // scratch dir it mounts): it still runs when the restarted agent looks for containers.
    let half = KILLED_UNDER_LINES / 2;
    let gate = scratch_dir("oomkill-job");
    let script = format!(
        "sleep 2; for i in $(seq 1 {half}); do echo \"line $i of the job\"; sleep 0.03; done; \
         while [ ! -e /gate/go ]; do sleep 0.1; done; \
         for i in $(seq {} {KILLED_UNDER_LINES}); do echo \"line $i of the job\"; sleep 0.03; done; \
         while [ ! -e /gate/end ]; do sleep 0.1; done",
        half + 1
    );
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &job,
        "-v",
        &format!("{}:/gate", gate.path().display()),
        "--entrypoint",
        "/bin/bash",
        &format!("{}/skypilot-job:latest", image_namespace()),
        "-c",
        &script,
    ]);
    started.expect_code(0);
    let job_id = started.stdout.trim().to_owned();
    let sent = |line: usize| {
        let text = format!("line {line} of the job");
        intake.logs_of(&job_id).iter().any(|e| e.message == text)
    };
    // The first half is sent and acknowledged...
    assert!(
        eventually(Duration::from_secs(120), || sent(half)),
        "the agent sends the job's first lines"
    );
    // ...then the intake holds its answers and the job prints the rest: once a payload of the
    // second half waits for its answer, its lines are read and sent but not acknowledged (and the
    // ones after it not even sent: a pipeline sends one payload at a time), so the registry cannot
    // hold them when the agent dies. The process dies as the OOM killer ends it: SIGKILL from the
    // host, no flush, no last registry write.
    intake.hold_logs();
    std::fs::write(gate.path().join("go"), b"").unwrap();
    assert!(
        eventually(Duration::from_secs(120), || !intake
            .held_logs_of(&job_id)
            .is_empty()),
        "the agent sends the second half"
    );
    assert!(
        !sent(half + 1),
        "no line of the second half is acknowledged when the agent is killed"
    );
    let pid = inspect(&s.agent).unwrap()["State"]["Pid"].as_i64().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    // Once Docker has seen it exit (its sockets are closed by then), the killed agent's held sends
    // are found hung up, as an intake finds a dead sender: it delivered nothing. The restarted
    // agent's sends, held meanwhile, are answered.
    assert!(
        eventually(Duration::from_secs(60), || inspect(&s.agent)
            .is_some_and(|c| c["RestartCount"].as_i64().unwrap_or(0) >= 1)),
        "Docker sees the agent exit"
    );
    intake.release_logs_and_settle();
    assert!(
        eventually(Duration::from_secs(60), || {
            // Docker counts the restart, and keeps Running true, from the moment it schedules it:
            // the agent is back once it is no longer Restarting.
            inspect(&s.agent).is_some_and(|c| {
                c["RestartCount"].as_i64().unwrap_or(0) >= 1
                    && c["State"]["Running"] == true
                    && c["State"]["Restarting"] == false
            })
        }),
        "Docker restarts the agent (unless-stopped)"
    );
    // The restarted agent finds the job still running, as it finds a long job after an OOM kill.
    let back = run(s
        .ddsky()
        .args(["status", "--wait", "120s", "--expect", &job]));
    back.expect_code(0);
    std::fs::write(gate.path().join("end"), b"").unwrap();
    assert_eq!(
        run(Command::new("docker").args(["wait", &job]))
            .stdout
            .trim(),
        "0"
    );

    let status = run(s.ddsky().args(["status", "--format", "json"]));
    let agent = &status.json()["agent"];
    assert_eq!(agent["restarts"], 1, "{status}");
    assert_eq!(agent["last_exit"]["code"], 137, "{status}");
    assert_eq!(agent["last_exit"]["oom_killed"], false, "{status}");
    assert!(agent["last_exit"]["at"].as_str().is_some(), "{status}");
    assert_ne!(agent["restart_verdict"], "crash_loop", "{status}");
    let text = run(s.ddsky().arg("status"));
    assert!(
        text.stdout
            .contains("restarted once (last exit: exit code 137, at "),
        "{text}"
    );

    // A generous drain budget: what is tested is that every line gets there, not how fast.
    let down = run(s
        .ddsky()
        .args(["down", "--expect", &job, "--timeout", "120s"]));
    let got: std::collections::HashSet<String> = intake
        .logs_of(&job_id)
        .into_iter()
        .map(|e| e.message)
        .collect();
    let missing: Vec<usize> = (1..=KILLED_UNDER_LINES)
        .filter(|i| !got.contains(&format!("line {i} of the job")))
        .collect();
    assert!(
        missing.is_empty() && down.code == 0,
        "lines never sent after the kill: {missing:?}\n{down}"
    );
}

#[test]
fn a_crash_looping_agent_is_named_by_status_doctor_and_up_with_its_last_lines() {
    let s = Scope::new("crashloop");
    // `--no-wait` leaves the agent to Docker: it exits at every start, as a real agent that cannot
    // determine its hostname does, and Docker restarts it again and again.
    let exits = [
        "--agent-env",
        "STANDIN_NO_HOSTNAME=1",
        "--expect",
        "none-such",
    ];
    run(s.up().args(exits).arg("--no-wait")).expect_code(0);
    assert!(
        eventually(Duration::from_secs(30), || {
            inspect(&s.agent).is_some_and(|c| c["RestartCount"].as_i64().unwrap_or(0) >= 2)
        }),
        "Docker restarts it"
    );
    let reason = "unable to reliably determine the host name";

    let status = run(s.ddsky().args(["status", "--format", "json"]));
    status.expect_code(6);
    let agent = &status.json()["agent"];
    assert_eq!(agent["restart_verdict"], "crash_loop", "{status}");
    assert_eq!(agent["last_exit"]["code"], 1, "{status}");
    assert_eq!(agent["last_exit"]["oom_killed"], false, "{status}");
    assert!(
        agent["last_lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l.as_str().unwrap_or("").contains(reason))),
        "{status}"
    );
    let text = run(s.ddsky().arg("status"));
    text.expect_code(6);
    assert!(
        text.stdout.contains("crash loop: restarted") && text.stdout.contains(reason),
        "{text}"
    );
    let agent_line = text.stdout.lines().next().unwrap_or_default();
    assert!(
        agent_line.contains("in a crash loop") && !agent_line.contains("starting"),
        "called a crash loop, not starting: {text}"
    );

    let doctor = run(s.ddsky().args(["doctor", "--format", "json"]));
    doctor.expect_code(1);
    let check = doctor_check(&doctor.json(), "agent container").clone();
    assert_eq!(check["verdict"], "fail", "{doctor}");
    assert!(
        check["evidence"].as_str().unwrap().contains("crash loop"),
        "{doctor}"
    );
    assert!(
        check["details"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l.as_str().unwrap_or("").contains(reason))),
        "{doctor}"
    );
    let doctor_text = run(s.ddsky().arg("doctor"));
    assert!(
        doctor_text.stdout.contains("crash loop") && doctor_text.stdout.contains(reason),
        "{doctor_text}"
    );

    // `up` with the same settings finds the loop at once instead of waiting out its timeout, and
    // leaves the container it did not create this time.
    let start = Instant::now();
    let up = run(s.up().args(exits).args(["--timeout", "120s"]));
    up.expect_code(6).assert_no_secret(&[]);
    assert!(up.stderr.contains("crash loop"), "{up}");
    assert!(up.stderr.contains(reason), "its last lines: {up}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "reported, not waited on for its 120 s timeout: {up}"
    );
}
