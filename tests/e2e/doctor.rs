//! `ddsky doctor` catches each failure by breaking exactly that thing; `ddsky logs` shows the agent's.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

fn doctor(s: &Scope, extra: &[&str]) -> (Run, Value) {
    let out = run(s
        .ddsky()
        .args(["doctor", "--format", "json"])
        .args(s.port_args())
        .args(extra));
    let json = out.json();
    (out, json)
}

fn verdict<'a>(report: &'a Value, name: &str) -> &'a str {
    doctor_check(report, name)["verdict"].as_str().unwrap()
}

/// Starts the stand-in by hand (not through ddsky) at the real timings, with the recipe's mounts
/// minus `skip_mount`, sending to `dd_url` when given; returns once its health has had its first
/// ping (~16 s). The run dir is the host's own /opt/datadog-agent/run, as the recipe has it: the
/// test holds [`HostResource::DefaultRunDir`].
fn agent_by_hand(s: &Scope, key: &str, skip_mount: Option<&str>, dd_url: Option<&str>) {
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        &s.agent,
        "--pid",
        "host",
        "--network",
        "host",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for bind in [
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        "/proc/:/host/proc/:ro",
        "/sys/fs/cgroup/:/host/sys/fs/cgroup:ro",
        "/var/lib/docker/containers:/var/lib/docker/containers:ro",
        "/opt/datadog-agent/run:/opt/datadog-agent/run:rw",
    ] {
        if skip_mount.is_some_and(|m| bind.starts_with(m)) {
            continue;
        }
        args.extend(["-v".into(), bind.into()]);
    }
    for env in [
        format!("DD_API_KEY={key}"),
        format!("DD_CMD_PORT={}", s.cmd_port),
        format!("DD_APM_RECEIVER_PORT={}", s.apm_port),
        format!("DD_DOGSTATSD_PORT={}", s.dogstatsd_port),
        "DD_LOGS_ENABLED=true".into(),
        "DD_TAGS=env:production service:skypilot-worker".into(),
    ] {
        args.extend(["-e".into(), env]);
    }
    if let Some(url) = dd_url {
        args.extend(["-e".into(), format!("DD_DD_URL={url}")]);
    }
    args.push(agent_image().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).expect_code(0);
    // Only past the first health ping is there a healthy section (before, all are unhealthy).
    assert!(eventually(Duration::from_secs(60), || docker(&[
        "exec", &s.agent, "agent", "health"
    ])
    .stdout
    .contains(" healthy components ===")));
}

#[test]
fn a_healthy_setup_passes_every_check_and_the_tags_reach_the_intake() {
    let s = Scope::new("doctorok");
    let intake = Intake::start(200, 202);
    s.run_job("metta");
    let job = s.name("metta");
    run(s.up_at_real_timing().env("METTA_RUN_ID", "r1").args([
        "--dd-url",
        &intake.url(),
        "--expect",
        &job,
    ]))
    .expect_code(0);
    let accepted = eventually(Duration::from_secs(20), || {
        let (_, report) = doctor(&s, &["--expect", &job]);
        doctor_check(&report, "data accepted")["verdict"] == "ok"
    });
    assert!(accepted, "the intake accepted payloads");
    let (out, report) = {
        let mut cmd = s.ddsky();
        cmd.env("METTA_RUN_ID", "r1")
            .args(["doctor", "--format", "json", "--expect", &job])
            .args(s.port_args());
        let out = run(&mut cmd);
        let json = out.json();
        (out, json)
    };
    out.expect_code(0).assert_no_secret(&[]);
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["verdict"], "ok", "{c}");
    }
    assert!(doctor_check(&report, "expected containers")["evidence"]
        .as_str()
        .unwrap()
        .contains(&format!("container_name:{job}")));

    let validations = intake.received_at("/api/v1/validate");
    assert!(
        validations
            .iter()
            .any(|r| r.method == "GET" && r.target.ends_with(&format!("api_key={KEY}"))),
        "the agent validated the key: {validations:?}"
    );
    let metadata = intake.received_at("/intake/");
    let last = metadata.last().expect("a host-metadata payload arrived");
    assert!(
        last.head
            .to_lowercase()
            .contains(&format!("dd-api-key: {KEY}")),
        "{}",
        last.head
    );
    let host_tags = intake.host_tags().unwrap();
    for tag in [
        "env:production",
        "service:skypilot-worker",
        "metta_run_id:r1",
    ] {
        assert!(host_tags.iter().any(|t| t == tag), "{tag} in {host_tags:?}");
    }
    let text = run(s
        .ddsky()
        .env("METTA_RUN_ID", "r1")
        .args(["doctor", "--expect", &job])
        .args(s.port_args()));
    text.expect_code(0).assert_no_secret(&[]);
    assert!(text.stdout.contains("[ok  ] api key"), "{text}");
}

#[test]
fn an_intake_answering_403_fails_the_data_check() {
    let s = Scope::new("doctor403");
    let intake = Intake::start(403, 403);
    // The agent stays unhealthy (its key is refused): doctor is what this test is about.
    let _ = run(s.up_at_real_timing().args([
        "--dd-url",
        &intake.url(),
        "--expect",
        "none-such",
        "--timeout",
        "20s",
    ]));
    let failed = eventually(Duration::from_secs(20), || {
        let (_, report) = doctor(&s, &["--expect", "none-such"]);
        verdict(&report, "data accepted") == "fail"
    });
    assert!(failed, "data accepted fails once the intake refuses");
    let (out, report) = doctor(&s, &["--expect", "none-such"]);
    out.expect_code(1);
    let data = doctor_check(&report, "data accepted");
    assert!(data["evidence"].as_str().unwrap().contains("403"), "{data}");
    assert!(data["fix"].as_str().unwrap().contains("403"), "{data}");
}

#[test]
fn an_absent_then_stopped_agent_fail_with_their_fix() {
    let s = Scope::new("doctorabsent");
    let (out, report) = doctor(&s, &[]);
    out.expect_code(1);
    assert_eq!(verdict(&report, "agent container"), "fail");
    assert_eq!(verdict(&report, "api key"), "skipped");
    assert!(doctor_check(&report, "agent container")["fix"]
        .as_str()
        .unwrap()
        .contains("ddsky up"));

    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    docker(&["stop", "-t", "2", &s.agent]).expect_code(0);
    let (out, report) = doctor(&s, &[]);
    out.expect_code(1);
    assert_eq!(verdict(&report, "agent container"), "fail");
    assert!(doctor_check(&report, "agent container")["evidence"]
        .as_str()
        .unwrap()
        .contains("exited"));
    assert_eq!(verdict(&report, "agent health"), "skipped");
}

#[test]
fn a_key_the_backend_rejects_fails_the_key_check() {
    let s = Scope::holding("doctorkey", &[HostResource::DefaultRunDir]);
    let intake = Intake::start(403, 403);
    agent_by_hand(&s, "not-a-valid-datadog-key", None, Some(&intake.url()));
    let (out, report) = doctor(&s, &["--expect", "none-such"]);
    out.expect_code(1);
    assert_eq!(verdict(&report, "api key"), "fail", "{report}");
    assert_eq!(
        verdict(&report, "agent health"),
        "fail",
        "forwarder is unhealthy"
    );
    assert!(doctor_check(&report, "agent health")["fix"]
        .as_str()
        .unwrap()
        .contains("API key"));
    assert_eq!(
        verdict(&report, "agent container"),
        "warn",
        "created by hand, not by ddsky"
    );
}

#[test]
fn a_missing_socket_mount_fails_mounts_and_discovery() {
    let s = Scope::holding("doctorsock", &[HostResource::DefaultRunDir]);
    s.run_job("metta");
    agent_by_hand(&s, KEY, Some("/var/run/docker.sock"), None);
    let (out, report) = doctor(&s, &["--expect", &s.name("metta")]);
    out.expect_code(1);
    let mounts = doctor_check(&report, "mounts");
    assert_eq!(mounts["verdict"], "fail");
    assert!(
        mounts["evidence"]
            .as_str()
            .unwrap()
            .contains("/var/run/docker.sock"),
        "{mounts}"
    );
    assert_eq!(verdict(&report, "expected containers"), "fail");
    assert_eq!(verdict(&report, "docker check"), "fail");
}

#[test]
fn stale_host_tags_after_a_new_run_name_the_fix() {
    let s = Scope::new("doctortags");
    run(s
        .up()
        .env("METTA_RUN_ID", "run-one")
        .args(["--expect", "none-such"]))
    .expect_code(0);
    let mut cmd = s.ddsky();
    cmd.env("METTA_RUN_ID", "run-two")
        .args(["doctor", "--format", "json", "--expect", "none-such"])
        .args(s.port_args());
    let out = run(&mut cmd);
    out.expect_code(1);
    let tags = doctor_check(&out.json(), "host tags").clone();
    assert_eq!(tags["verdict"], "fail");
    assert!(
        tags["evidence"]
            .as_str()
            .unwrap()
            .contains("metta_run_id:run-two"),
        "{tags}"
    );
    assert!(tags["fix"].as_str().unwrap().contains("ddsky up"));
}

#[test]
fn an_expected_container_the_agent_does_not_list_fails() {
    let s = Scope::new("doctorexpect");
    run(s.up().args([
        "--agent-env",
        "STANDIN_DISCOVERY_DELAY_SECS=600",
        "--expect",
        "none-such",
    ]))
    .expect_code(0);
    s.run_job("metta");
    let (out, report) = doctor(&s, &["--expect", &s.name("metta")]);
    out.expect_code(1);
    let expected = doctor_check(&report, "expected containers");
    assert_eq!(expected["verdict"], "fail");
    assert!(
        expected["evidence"]
            .as_str()
            .unwrap()
            .contains("NOT discovered"),
        "{expected}"
    );
}

#[test]
fn logs_tail_and_follow() {
    let s = Scope::new("logs");
    // An intake for the agent's logs: without one (no network), its logs pipeline holds unsent
    // payloads at the stop for up to its 30 s stop_grace_period, as the real agent does, and
    // `docker stop -t 5` kills it before its last line.
    let intake = Intake::start(200, 202);
    run(s.up().args([
        "--expect",
        "none-such",
        "--dd-url",
        &intake.url(),
        "--agent-env",
        &format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
    ]))
    .expect_code(0);
    let tail = run(s.ddsky().args(["logs", "--tail", "5"]));
    tail.expect_code(0);
    let all = run(s.ddsky().arg("logs"));
    all.expect_code(0).assert_no_secret(&[]);
    let lines: Vec<&str> = tail.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{tail}");
    let all_lines: Vec<&str> = all.stdout.lines().collect();
    assert!(all_lines.len() > 5, "{all}");
    // The agent may log more in between; the tail is still five consecutive lines of the full log,
    // and not its first five.
    let at = all_lines
        .windows(5)
        .position(|w| w == lines.as_slice())
        .expect("the tail is in the full log");
    assert!(at > 0, "{tail}");

    let mut follower = s
        .ddsky()
        .args(["logs", "-f", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The stop comes once the follower has printed its tail line: it is certainly following.
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = lines.send(());
        }
        all
    });
    printed
        .recv_timeout(Duration::from_secs(60))
        .expect("logs -f prints the tail");
    docker(&["stop", "-t", "5", &s.agent]).expect_code(0);
    let status = follower.wait().unwrap();
    let followed = reader.join().unwrap();
    assert!(
        status.success(),
        "follow ends cleanly when the container stops"
    );
    assert!(followed.contains("Agent stopped"), "{followed}");
    run(s.ddsky().args(["logs"])).expect_code(0);
    run(s.ddsky().args(["--name", "ddskyt-none-such-agent", "logs"])).expect_code(5);
}
