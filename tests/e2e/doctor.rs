//! `ddsky doctor` catches each failure by breaking exactly that thing; `ddsky logs` shows the agent's.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tiny intake on loopback: answers every request with `status`, keeps what arrived.
struct Intake {
    port: u16,
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl Intake {
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(200) {
                let Ok(mut conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                sink.lock()
                    .unwrap()
                    .push((head, String::from_utf8_lossy(&body).into_owned()));
                let reason = if status < 300 {
                    "Accepted"
                } else {
                    "Forbidden"
                };
                let _ = write!(conn, "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
            }
        });
        Intake { port, received }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn doctor(s: &Scope, extra: &[&str]) -> (Run, Value) {
    let out = run(s
        .ddsky()
        .args(["doctor", "--format", "json"])
        .args(s.port_args())
        .args(extra));
    let json = out.json();
    (out, json)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

fn verdict<'a>(report: &'a Value, name: &str) -> &'a str {
    check(report, name)["verdict"].as_str().unwrap()
}

/// Starts the stand-in by hand (not through ddsky), with the recipe's mounts minus `skip_mount`.
fn agent_by_hand(s: &Scope, key: &str, skip_mount: Option<&str>) {
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
        format!("DD_APM_RECEIVER_PORT={}", s.apm_port),
        format!("DD_DOGSTATSD_PORT={}", s.dogstatsd_port),
        "DD_LOGS_ENABLED=true".into(),
        "DD_TAGS=env:production service:skypilot-worker".into(),
    ] {
        args.extend(["-e".into(), env]);
    }
    args.push(agent_image().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).expect_code(0);
    assert!(eventually(Duration::from_secs(15), || docker(&[
        "exec", &s.agent, "agent", "health"
    ])
    .stdout
    .contains("healthy components")));
}

#[test]
fn a_healthy_setup_passes_every_check_and_the_tags_reach_the_intake() {
    let s = Scope::new("doctorok");
    let intake = Intake::start(202);
    s.run_job("metta");
    let job = s.name("metta");
    run(s
        .up()
        .env("METTA_RUN_ID", "r1")
        .args(["--dd-url", &intake.url(), "--expect", &job]))
    .expect_code(0);
    let accepted = eventually(Duration::from_secs(20), || {
        let (_, report) = doctor(&s, &["--expect", &job]);
        check(&report, "data accepted")["verdict"] == "ok"
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
    assert!(check(&report, "expected containers")["evidence"]
        .as_str()
        .unwrap()
        .contains(&format!("container_name:{job}")));

    let received = intake.received.lock().unwrap().clone();
    let (head, body) = received.last().expect("a payload arrived");
    assert!(
        head.to_lowercase().contains(&format!("dd-api-key: {KEY}")),
        "{head}"
    );
    for tag in [
        "env:production",
        "service:skypilot-worker",
        "metta_run_id:r1",
    ] {
        assert!(body.contains(tag), "{tag} in {body}");
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
    let intake = Intake::start(403);
    // The agent may report unhealthy once the intake refuses it; doctor is what this test is about.
    let _ = run(s.up().args([
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
    let data = check(&report, "data accepted");
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
    assert!(check(&report, "agent container")["fix"]
        .as_str()
        .unwrap()
        .contains("ddsky up"));

    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    docker(&["stop", "-t", "2", &s.agent]).expect_code(0);
    let (out, report) = doctor(&s, &[]);
    out.expect_code(1);
    assert_eq!(verdict(&report, "agent container"), "fail");
    assert!(check(&report, "agent container")["evidence"]
        .as_str()
        .unwrap()
        .contains("exited"));
    assert_eq!(verdict(&report, "agent health"), "skipped");
}

#[test]
fn a_key_the_backend_rejects_fails_the_key_check() {
    let s = Scope::new("doctorkey");
    agent_by_hand(&s, "not-a-valid-datadog-key", None);
    let (out, report) = doctor(&s, &["--expect", "none-such"]);
    out.expect_code(1);
    assert_eq!(verdict(&report, "api key"), "fail", "{report}");
    assert_eq!(
        verdict(&report, "agent health"),
        "fail",
        "forwarder is unhealthy"
    );
    assert!(check(&report, "agent health")["fix"]
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
    let s = Scope::new("doctorsock");
    s.run_job("metta");
    agent_by_hand(&s, KEY, Some("/var/run/docker.sock"));
    let (out, report) = doctor(&s, &["--expect", &s.name("metta")]);
    out.expect_code(1);
    let mounts = check(&report, "mounts");
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
    let tags = check(&out.json(), "host tags").clone();
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
    let expected = check(&report, "expected containers");
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
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
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

    let follower = s
        .ddsky()
        .args(["logs", "-f", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    docker(&["stop", "-t", "5", &s.agent]).expect_code(0);
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "follow ends cleanly when the container stops"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Agent stopped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    run(s.ddsky().args(["logs"])).expect_code(0);
    run(s.ddsky().args(["--name", "ddskyt-none-such-agent", "logs"])).expect_code(5);
}
