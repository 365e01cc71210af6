//! The stand-in agent image itself, driven through `docker run` / `docker exec` as a user would drive
//! the real `datadog/agent:7`: it must be as slow, strict and picky as the real one
//! (../shared/datadog-agent.md), or ddsky's other tests prove nothing.

use crate::common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Starts the stand-in by hand on the host network with the test key, this scope's ports and
/// `env`; with the Docker socket when `socket`.
fn run_agent(s: &Scope, env: &[String], socket: bool) {
    let mut args: Vec<String> = ["run", "-d", "--name", &s.agent, "--network", "host"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if socket {
        args.extend([
            "-v".into(),
            "/var/run/docker.sock:/var/run/docker.sock:ro".into(),
        ]);
    }
    for e in [
        format!("DD_API_KEY={KEY}"),
        format!("DD_CMD_PORT={}", s.cmd_port),
        format!("DD_APM_RECEIVER_PORT={}", s.apm_port),
        format!("DD_DOGSTATSD_PORT={}", s.dogstatsd_port),
        "DD_TAGS=env:production service:skypilot-worker".into(),
    ]
    .into_iter()
    .chain(env.iter().cloned())
    {
        args.extend(["-e".into(), e]);
    }
    args.push(agent_image().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).expect_code(0);
}

fn exec(s: &Scope, args: &[&str]) -> Run {
    let mut all = vec!["exec", &s.agent];
    all.extend(args);
    docker(&all)
}

fn is_auth_token_error(out: &Run) -> bool {
    out.code == 255
        && out.stderr.starts_with(
            "Error: unable to fetch auth token (please check that the Agent is running, this file is normally generated during the first run of the Agent service.)",
        )
}

/// `agent status --json` once the command API answers.
fn status(s: &Scope) -> Value {
    let mut out = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            let o = docker(&[
                "exec",
                "-e",
                "DD_LOG_LEVEL=off",
                &s.agent,
                "agent",
                "status",
                "--json",
            ]);
            let ok = o.code == 0;
            out = Some(o);
            ok
        }),
        "status never answered: {}",
        out.unwrap()
    );
    out.unwrap().json()
}

#[test]
fn start_up_fails_every_command_without_the_auth_token_then_lists_every_component_unhealthy_for_15_s(
) {
    let s = Scope::new("standinstartup");
    // The auth-token phase lengthened to 5 s so that the first execs surely fall into it on a loaded
    // machine; the health phase is the real one (first ping 15 s after the components register).
    run_agent(&s, &["STANDIN_STARTUP_SECS=5".into()], true);
    let commands: [&[&str]; 4] = [
        &["agent", "health"],
        &["agent", "workload-list"],
        &["agent", "status", "--json"],
        &["/probe.sh"],
    ];
    std::thread::scope(|scope| {
        let runs: Vec<_> = commands
            .iter()
            .map(|cmd| {
                let s = &s;
                scope.spawn(move || (cmd, exec(s, cmd)))
            })
            .collect();
        for r in runs {
            let (cmd, out) = r.join().unwrap();
            assert!(is_auth_token_error(&out), "{cmd:?}: {out}");
        }
    });

    let start = Instant::now();
    let mut api_up = None;
    let mut passed = None;
    while start.elapsed() < Duration::from_secs(90) {
        let out = exec(&s, &["agent", "health"]);
        if is_auth_token_error(&out) {
            assert!(api_up.is_none(), "the token does not vanish: {out}");
        } else if out.code == 0 {
            assert!(
                out.stdout
                    .starts_with("Agent health: PASS\n=== 20 healthy components ===\n"),
                "{out}"
            );
            passed = Some(Instant::now());
            break;
        } else {
            api_up.get_or_insert_with(Instant::now);
            assert_eq!(
                out.stdout.lines().take(2).collect::<Vec<_>>(),
                ["Agent health: FAIL", "=== 20 unhealthy components ==="],
                "every component, not some: {out}"
            );
            assert!(out.stdout.contains("healthcheck"), "{out}");
            assert_eq!(out.stderr, "Error: found 20 unhealthy components\n");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let api_up = api_up.expect("the command API came up");
    let passed = passed.expect("health passed within 90 s");
    // Observed from outside through execs that take their own time: the real gap is 15 s.
    assert!(
        passed - api_up >= Duration::from_secs(12),
        "FAIL for only {:?}",
        passed - api_up
    );
}

#[test]
fn a_taken_command_port_makes_the_agent_exit_with_the_api_server_error() {
    let s = Scope::new("standinport");
    let _holder = TcpListener::bind(("127.0.0.1", s.cmd_port)).unwrap();
    run_agent(&s, &[], false);
    assert!(
        eventually(Duration::from_secs(30), || inspect(&s.agent)
            .is_some_and(|c| c["State"]["Running"] == false)),
        "the agent exits"
    );
    let c = inspect(&s.agent).unwrap();
    assert_ne!(c["State"]["ExitCode"], 0);
    let logs = docker(&["logs", &s.agent]);
    let all = format!("{}{}", logs.stdout, logs.stderr);
    assert!(
        all.contains("Error while starting api server, exiting")
            && all.contains(&format!("127.0.0.1:{}", s.cmd_port)),
        "{all}"
    );
}

#[test]
fn each_cli_command_costs_300_ms_of_cpu() {
    let s = Scope::new("standincpu");
    run_agent(&s, &[], false);
    for cmd in [
        &["agent", "version"][..],
        &["agent", "health"],
        &["/probe.sh"],
    ] {
        let mut args = vec!["busybox", "time", "-p"];
        args.extend(cmd);
        let out = exec(&s, &args);
        let field = |name: &str| -> f64 {
            out.stderr
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        let cpu = field("user") + field("sys");
        assert!(cpu >= 0.28, "{cmd:?} spent {cpu} s of CPU: {out}");
    }
}

/// One agent sending to `intake` (or nowhere), its status once the forwarder has flushed.
fn forwarder_case(name: &str, dd_url: Option<String>) -> (Scope, Value, Run) {
    let s = Scope::new(name);
    let mut env: Vec<String> = FAST_AGENT_ENV.iter().map(|e| e.to_string()).collect();
    if let Some(url) = dd_url {
        env.push(format!("DD_DD_URL={url}"));
    }
    run_agent(&s, &env, false);
    // The validation, the host metadata and two 2 s flushes.
    let mut last = Value::Null;
    let settled = eventually(Duration::from_secs(40), || {
        last = status(&s);
        let t = &last["forwarderStats"]["Transactions"];
        let f = &last["forwarderStats"];
        let validated = f["APIKeyStatus"].as_object().is_some_and(|m| !m.is_empty())
            || f["APIKeyFailure"]
                .as_object()
                .is_some_and(|m| !m.is_empty());
        let handled = ["Success", "Errors", "Dropped"]
            .iter()
            .map(|k| t[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        validated && handled >= 3
    });
    assert!(settled, "{name}: {last}");
    // Past the first ping (2 s after the API): health says what the key is worth.
    std::thread::sleep(Duration::from_secs(3));
    let health = exec(&s, &["agent", "health"]);
    (s, last, health)
}

fn key_text(status: &Value, field: &str) -> String {
    let map = status["forwarderStats"][field].as_object().unwrap();
    assert_eq!(map.len(), 1, "{field}: {status}");
    let (label, text) = map.iter().next().unwrap();
    assert_eq!(
        label,
        &format!("API key ending with {}", &KEY[KEY.len() - 5..])
    );
    text.as_str().unwrap().to_owned()
}

#[test]
fn the_intake_validates_the_key_and_accepts_compressed_payloads_with_the_host_tags_in_host_metadata(
) {
    let intake = Intake::start(200, 202);
    let (s, status, health) = forwarder_case("standinvalid", Some(intake.url()));
    assert_eq!(key_text(&status, "APIKeyStatus"), "API Key valid");
    assert_eq!(
        status["forwarderStats"]["APIKeyFailure"],
        serde_json::json!({})
    );
    health.expect_code(0);
    let t = &status["forwarderStats"]["Transactions"];
    assert!(t["SuccessByEndpoint"]["intake"].as_u64() >= Some(1), "{t}");
    assert!(
        t["SuccessByEndpoint"]["series_v2"].as_u64() >= Some(1),
        "{t}"
    );
    assert_eq!(t["Errors"], 0, "{t}");

    let validation = &intake.received_at("/api/v1/validate")[0];
    assert_eq!(validation.method, "GET");
    assert_eq!(validation.target, format!("/api/v1/validate?api_key={KEY}"));
    assert_eq!(
        intake.host_tags().unwrap(),
        ["env:production", "service:skypilot-worker"]
    );
    let series = intake.received_at("/api/v2/series");
    assert!(!series.is_empty());
    for r in intake
        .received_at("/api/v2/series")
        .iter()
        .chain(&intake.received_at("/intake/"))
    {
        let head = r.head.to_lowercase();
        assert!(head.contains("\r\ncontent-encoding: deflate"), "{head}");
        assert!(head.contains(&format!("\r\ndd-api-key: {KEY}")), "{head}");
    }
    for r in &series {
        let body = String::from_utf8_lossy(&r.body);
        assert!(r.json()["series"].is_array(), "{body}");
        assert!(
            !body.contains("service:skypilot-worker"),
            "no host tags on series: {body}"
        );
    }

    // The hostname is in meta.hostname only.
    let hostname = status["meta"]["hostname"].as_str().unwrap().to_owned();
    assert!(!hostname.is_empty());
    assert!(
        status["hostnameStats"].get("hostname").is_none(),
        "{status}"
    );
    assert_eq!(
        status
            .to_string()
            .matches(&format!("\"{hostname}\""))
            .count(),
        1,
        "{status}"
    );
    drop(s);
}

#[test]
fn a_403_makes_the_key_invalid_and_counts_as_http_error_and_dropped_not_error() {
    let intake = Intake::start(403, 403);
    let (_s, status, health) = forwarder_case("standin403", Some(intake.url()));
    assert_eq!(key_text(&status, "APIKeyFailure"), "API Key invalid");
    assert_eq!(
        status["forwarderStats"]["APIKeyStatus"],
        serde_json::json!({})
    );
    let t = &status["forwarderStats"]["Transactions"];
    assert_eq!(t["Success"], 0, "{t}");
    assert_eq!(t["Errors"], 0, "{t}");
    assert!(t["HTTPErrors"].as_u64() >= Some(2), "{t}");
    assert_eq!(t["HTTPErrors"], t["HTTPErrorsByCode"]["403"], "{t}");
    assert_eq!(t["Dropped"], t["HTTPErrors"], "{t}");
    health.expect_code(255);
    assert!(
        health
            .stdout
            .ends_with("=== 1 unhealthy components ===\nforwarder\n"),
        "{health}"
    );
}

#[test]
fn another_code_or_no_answer_leaves_the_key_assumed_valid_and_no_intake_means_no_success() {
    let intake = Intake::start(500, 202);
    let (_a, status, health) = forwarder_case("standin500", Some(intake.url()));
    assert_eq!(
        key_text(&status, "APIKeyFailure"),
        "Unexpected response code from the API Key validation endpoint"
    );
    health.expect_code(0);

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, url) in [
        ("standinunreach", Some(format!("http://127.0.0.1:{closed}"))),
        ("standinoffline", None),
    ] {
        let (_s, status, health) = forwarder_case(name, url);
        assert_eq!(
            key_text(&status, "APIKeyStatus"),
            "Unable to reach the API Key validation endpoint",
            "{name}"
        );
        health.expect_code(0);
        let t = &status["forwarderStats"]["Transactions"];
        assert_eq!(t["Success"], 0, "{name}: {t}");
        assert!(
            t["ErrorsByType"]["ConnectionErrors"].as_u64() >= Some(2),
            "{name}: {t}"
        );
        assert_eq!(t["HTTPErrors"], 0, "{name}: {t}");
    }
}

#[test]
fn the_docker_check_appears_after_its_first_run_and_never_without_the_socket() {
    let with = Scope::new("standincheck");
    let without = Scope::new("standinnocheck");
    let env = ["STANDIN_CHECK_INTERVAL_SECS=10".to_string()];
    run_agent(&with, &env, true);
    run_agent(&without, &env, false);
    let early = status(&with);
    assert_eq!(
        early["runnerStats"]["Checks"],
        serde_json::json!({}),
        "{early}"
    );
    assert!(
        eventually(Duration::from_secs(40), || status(&with)["runnerStats"]
            ["Checks"]["docker"]
            .is_object()),
        "the docker check ran"
    );
    let checks = status(&without)["runnerStats"]["Checks"].clone();
    assert_eq!(checks, serde_json::json!({}), "no socket, no docker check");
}
