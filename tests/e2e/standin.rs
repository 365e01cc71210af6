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

// --- Container logs: the stand-in tails `<id>-json.log` and ships it like the real agent -------

/// Where the Docker daemon keeps a container's json log (the host path and, mounted at the same
/// place, the agent's).
fn json_log(id: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/var/lib/docker/containers/{id}/{id}-json.log"))
}

fn log_size(id: &str) -> u64 {
    std::fs::metadata(json_log(id)).map_or(0, |m| m.len())
}

/// The registry's Offset for a container's file (None when it has no entry).
fn registry_offset(run_dir: &std::path::Path, id: &str) -> Option<u64> {
    let text = std::fs::read_to_string(run_dir.join("registry.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let key = format!("file:{}", json_log(id).display());
    v["Registry"][key]["Offset"].as_str()?.parse().ok()
}

/// A stand-in collecting every container's logs as ddsky's spec runs it (socket, the containers
/// directory read-only, `run_dir` as /opt/datadog-agent/run), named `<prefix>-<suffix>`.
fn run_logs_agent(s: &Scope, suffix: &str, run_dir: &std::path::Path, env: &[String]) -> String {
    let name = s.name(suffix);
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        "-v",
        "/var/lib/docker/containers:/var/lib/docker/containers:ro",
        "-v",
        &format!("{}:/opt/datadog-agent/run:rw", run_dir.display()),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for e in [
        format!("DD_API_KEY={KEY}"),
        format!("DD_CMD_PORT={}", s.cmd_port),
        format!("DD_APM_RECEIVER_PORT={}", s.apm_port),
        format!("DD_DOGSTATSD_PORT={}", s.dogstatsd_port),
        "DD_TAGS=env:production service:skypilot-worker".into(),
        "DD_LOGS_ENABLED=true".into(),
        "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL=true".into(),
        format!("DD_CONTAINER_EXCLUDE=name:^{name}$"),
    ]
    .into_iter()
    .chain(env.iter().cloned())
    {
        args.extend(["-e".into(), e]);
    }
    args.push(agent_image().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).expect_code(0);
    name
}

/// The env that points the logs pipeline at `intake`, plain HTTP without the probe.
fn logs_to(intake: &Intake) -> Vec<String> {
    vec![
        format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
        "DD_LOGS_CONFIG_FORCE_USE_HTTP=true".into(),
    ]
}

/// A job container running `script` under the agent image's busybox sh; returns its id.
fn run_sh_job(s: &Scope, suffix: &str, script: &str) -> String {
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &s.name(suffix),
        "--label",
        &format!("ddsky-test={}", s.prefix),
        "--entrypoint",
        "/bin/sh",
        agent_image(),
        "-c",
        script,
    ]);
    assert_eq!(out.code, 0, "{out}");
    out.stdout.trim().to_owned()
}

fn agent_stdout(name: &str) -> String {
    docker(&["logs", name]).stdout
}

/// Waits until the agent has started tailing the job's file.
fn wait_tailing(agent: &str, id: &str) {
    let needle = format!("Start tailing file: {}", json_log(id).display());
    assert!(
        eventually(Duration::from_secs(30), || agent_stdout(agent)
            .contains(&needle)),
        "the agent never tailed {id}:\n{}",
        agent_stdout(agent)
    );
}

/// 300 lines of traceback (about 30 KiB of json log) on stderr, printed after `delay` seconds,
/// then the job fails.
fn traceback_job(delay: u32) -> String {
    format!(
        "busybox sleep {delay}; i=0; while [ $i -lt 300 ]; do \
         echo \"Traceback frame $i: File /sky_workdir/train.py, line $i, in training_step\" >&2; \
         i=$((i+1)); done; echo 'RuntimeError: CUDA out of memory' >&2; exit 1"
    )
}
const TRACEBACK_LINES: usize = 301;

fn wait_exited(name: &str) {
    assert!(
        eventually(Duration::from_secs(60), || inspect(name)
            .is_some_and(|c| c["State"]["Running"] == false)),
        "{name} never exited"
    );
}

#[test]
fn a_jobs_lines_arrive_in_order_with_container_tags_and_the_registry_reaches_the_file_size() {
    let s = Scope::new("logsorder");
    let run_dir = scratch_dir("logsorder");
    let intake = Intake::start(200, 202);
    let agent = run_logs_agent(
        &s,
        "agent",
        run_dir.path(),
        &[logs_to(&intake), vec!["DD_LOGS_CONFIG_BATCH_WAIT=1".into()]].concat(),
    );
    let job = s.name("job");
    let id = run_sh_job(
        &s,
        "job",
        // Docker copies stdout and stderr to the json log separately: a pause between the two
        // streams' lines fixes their order in the file, which is what the agent must keep.
        "busybox sleep 4; echo 'first line'; busybox sleep 0.3; echo '  to stderr \t' >&2; busybox sleep 0.3; echo; \
         echo '   '; busybox head -c 20000 /dev/zero | busybox tr '\\0' x; echo; echo 'last line'",
    );
    wait_tailing(&agent, &id);
    wait_exited(&job);
    let size = log_size(&id);
    assert!(size > 20000, "{size}");
    assert!(
        eventually(Duration::from_secs(60), || registry_offset(
            run_dir.path(),
            &id
        ) == Some(size)),
        "the registry never reached {size}: {:?}",
        registry_offset(run_dir.path(), &id)
    );
    let got = intake.logs_of(&id);
    let messages: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.message.as_str(), e.status.as_str()))
        .collect();
    let long = "x".repeat(20000);
    assert_eq!(
        messages,
        vec![
            ("first line", "info"),
            ("to stderr", "error"),
            (long.as_str(), "info"),
            ("last line", "info"),
        ],
        "partial lines joined, blanks trimmed, empty lines dropped, in file order"
    );
    for e in &got {
        for tag in [
            format!("container_name:{job}"),
            "short_image:agent".to_string(),
            format!("image_name:{}", agent_image().split(':').next().unwrap()),
            "image_tag:7".to_string(),
        ] {
            assert!(e.ddtags.contains(&tag), "{tag} missing: {e:?}");
        }
        assert!(
            !e.ddtags.iter().any(|t| t == "env:production"),
            "no host tags on logs: {e:?}"
        );
        assert_eq!(
            (e.service.as_str(), e.ddsource.as_str()),
            ("agent", "agent")
        );
        assert!(
            !e.hostname.is_empty() && e.timestamp > 1_600_000_000_000,
            "{e:?}"
        );
    }
    let post = intake
        .received_at(LOGS_PATH)
        .into_iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains(&id))
        .unwrap();
    let head = post.head.to_ascii_lowercase();
    for h in [
        format!("dd-api-key: {KEY}"),
        "content-type: application/json".into(),
        "content-encoding: gzip".into(),
        "dd-protocol: agent-json".into(),
        "dd-evp-origin: agent".into(),
        "dd-evp-origin-version: ".into(),
    ] {
        assert!(head.contains(&h), "{h} missing:\n{}", post.head);
    }
    let registry: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.path().join("registry.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(registry["Version"], 2);
    let entry = &registry["Registry"][format!("file:{}", json_log(&id).display())];
    assert!(
        entry["LastUpdated"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );
    assert!(entry["IngestionTimestamp"].as_i64().unwrap() > 0, "{entry}");
    assert!(entry["TailingMode"].is_string(), "{entry}");
}

#[test]
fn a_stop_right_after_the_job_exits_loses_its_last_lines_and_s6_kills_the_agent() {
    let s = Scope::new("logslost");
    let run_dir = scratch_dir("logslost");
    // The intake takes 8 s to answer a logs payload: longer than s6's 3 s grace, shorter than
    // the agent's 10 s request timeout.
    let intake = Intake::start_with_logs_delay(200, 202, Duration::from_secs(8));
    let agent = run_logs_agent(&s, "agent", run_dir.path(), &logs_to(&intake));
    let job = s.name("job");
    let id = run_sh_job(&s, "job", &traceback_job(5));
    wait_tailing(&agent, &id);
    wait_exited(&job);
    docker(&["stop", "-t", "30", &agent]).expect_code(0);

    let out = agent_stdout(&agent);
    assert_eq!(
        out.lines().rfind(|l| !l.trim().is_empty()),
        Some("AGENT EXITED WITH CODE 256, SIGNAL 9"),
        "the flush cannot finish within S6_SERVICES_GRACETIME:\n{out}"
    );
    assert!(!out.contains("logs-agent stopped"), "{out}");
    let got = intake.logs_of(&id);
    assert!(
        got.len() < TRACEBACK_LINES,
        "without a drain the last lines are lost, got all {}",
        got.len()
    );
    assert!(
        registry_offset(run_dir.path(), &id).unwrap_or(0) < log_size(&id),
        "the registry says all was sent"
    );
}

#[test]
fn waiting_for_the_registry_to_reach_the_file_size_before_the_stop_loses_nothing() {
    let s = Scope::new("logsdrain");
    let run_dir = scratch_dir("logsdrain");
    let intake = Intake::start(200, 202);
    let agent = run_logs_agent(&s, "agent", run_dir.path(), &logs_to(&intake));
    let job = s.name("job");
    let id = run_sh_job(&s, "job", &traceback_job(5));
    wait_tailing(&agent, &id);
    wait_exited(&job);
    let size = log_size(&id);
    assert!(
        eventually(Duration::from_secs(60), || registry_offset(
            run_dir.path(),
            &id
        ) == Some(size)),
        "the registry never reached {size}"
    );
    docker(&["stop", "-t", "30", &agent]).expect_code(0);
    let got = intake.logs_of(&id);
    assert_eq!(got.len(), TRACEBACK_LINES);
    assert!(got.iter().all(|e| e.status == "error"));
    assert_eq!(
        got[0].message,
        "Traceback frame 0: File /sky_workdir/train.py, line 0, in training_step"
    );
    assert_eq!(
        got.last().unwrap().message,
        "RuntimeError: CUDA out of memory"
    );
    let out = agent_stdout(&agent);
    assert!(out.contains("logs-agent stopped"), "a clean stop:\n{out}");
    assert!(!out.contains("AGENT EXITED"), "{out}");
}

#[test]
fn without_a_logs_url_nothing_is_sent_not_even_to_dd_url_and_the_offset_stays_0() {
    let s = Scope::new("logsnonet");
    let run_dir = scratch_dir("logsnonet");
    let intake = Intake::start(200, 202);
    // DD_DD_URL is the metrics intake: the logs pipeline never uses it.
    let agent = run_logs_agent(
        &s,
        "agent",
        run_dir.path(),
        &[
            format!("DD_DD_URL={}", intake.url()),
            "DD_LOGS_CONFIG_FORCE_USE_HTTP=true".into(),
            "DD_LOGS_CONFIG_BATCH_WAIT=1".into(),
        ],
    );
    let id = run_sh_job(&s, "job", "busybox sleep 3; echo one; echo two; exit 0");
    wait_tailing(&agent, &id);
    wait_exited(&s.name("job"));
    assert!(
        eventually(Duration::from_secs(30), || agent_stdout(&agent)
            .contains("Could not send payload")),
        "{}",
        agent_stdout(&agent)
    );
    // The auditor has written the registry since (every second).
    assert!(eventually(Duration::from_secs(10), || run_dir
        .path()
        .join("registry.json")
        .exists()));
    assert!(intake.received_at(LOGS_PATH).is_empty());
    assert_eq!(registry_offset(run_dir.path(), &id).unwrap_or(0), 0);
}

#[test]
fn a_restarted_agent_resumes_from_the_registry() {
    let s = Scope::new("logsresume");
    let run_dir = scratch_dir("logsresume");
    let intake = Intake::start(200, 202);
    let env = [logs_to(&intake), vec!["DD_LOGS_CONFIG_BATCH_WAIT=1".into()]].concat();
    // The stand-in job: `metta stand-in: step N` every second.
    let id = s.run_job("job");
    let first = run_logs_agent(&s, "agent1", run_dir.path(), &env);
    assert!(
        eventually(Duration::from_secs(40), || registry_offset(
            run_dir.path(),
            &id
        )
        .is_some_and(|o| o > 0)
            && intake.logs_of(&id).len() >= 3),
        "the first agent sent nothing"
    );
    docker(&["stop", "-t", "30", &first]).expect_code(0);
    assert!(agent_stdout(&first).contains("logs-agent stopped"));
    let sent_by_first = intake.logs_of(&id).len();
    std::thread::sleep(Duration::from_secs(3));
    run_logs_agent(&s, "agent2", run_dir.path(), &env);
    assert!(
        eventually(Duration::from_secs(40), || intake.logs_of(&id).len()
            >= sent_by_first + 5),
        "the second agent sent nothing"
    );
    let steps: Vec<u64> = intake
        .logs_of(&id)
        .iter()
        .filter_map(|e| e.message.strip_prefix("metta stand-in: step "))
        .map(|n| n.parse().unwrap())
        .collect();
    let max = *steps.iter().max().unwrap();
    let unique: std::collections::BTreeSet<u64> = steps.iter().copied().collect();
    assert_eq!(
        unique,
        (1..=max).collect(),
        "every line from the first to the last, none skipped: {steps:?}"
    );
    assert!(
        steps.len() - unique.len() <= 2,
        "at most ~1 s sent twice: {steps:?}"
    );
}

// --- File log sources: conf.d's `type: file` sources, tailed as the real agent tails them -------

/// A stand-in with the logs agent on (no container collection), `logs_dir` mounted read-only at
/// /var/log/job, `mounts` (`host:container[:ro]`) and `run_dir` as /opt/datadog-agent/run, the
/// scan every second; named as the scope's agent so that `status` reads it.
fn run_file_agent(
    s: &Scope,
    run_dir: &std::path::Path,
    logs_dir: &std::path::Path,
    mounts: &[String],
    intake: &Intake,
) {
    let mut args: Vec<String> = ["run", "-d", "--name", &s.agent, "--network", "host"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let volumes = [
        format!("{}:/var/log/job:ro", logs_dir.display()),
        format!("{}:/opt/datadog-agent/run:rw", run_dir.display()),
    ];
    for v in volumes.iter().chain(mounts) {
        args.extend(["-v".into(), v.clone()]);
    }
    for e in [
        format!("DD_API_KEY={KEY}"),
        format!("DD_CMD_PORT={}", s.cmd_port),
        format!("DD_APM_RECEIVER_PORT={}", s.apm_port),
        format!("DD_DOGSTATSD_PORT={}", s.dogstatsd_port),
        "DD_TAGS=env:production service:skypilot-worker".into(),
        "DD_LOGS_ENABLED=true".into(),
        "DD_LOGS_CONFIG_BATCH_WAIT=1".into(),
        "DD_LOGS_CONFIG_FILE_SCAN_PERIOD=1".into(),
    ]
    .into_iter()
    .chain(logs_to(intake))
    {
        args.extend(["-e".into(), e]);
    }
    args.push(agent_image().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).expect_code(0);
}

/// The registry's entry for a file as the agent sees it (None when it has none).
fn file_entry(run_dir: &std::path::Path, agent_path: &str) -> Option<Value> {
    let text = std::fs::read_to_string(run_dir.join("registry.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let entry = v["Registry"][format!("file:{agent_path}")].clone();
    (!entry.is_null()).then_some(entry)
}

fn file_offset(run_dir: &std::path::Path, agent_path: &str) -> Option<u64> {
    file_entry(run_dir, agent_path)?["Offset"]
        .as_str()?
        .parse()
        .ok()
}

/// The entries the intake received from the file named `base`, in arrival order.
fn logs_of_file(intake: &Intake, base: &str) -> Vec<LogEntry> {
    let tag = format!("filename:{base}");
    intake
        .logs()
        .into_iter()
        .filter(|e| e.ddtags.contains(&tag))
        .collect()
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Waits until the agent's output has `needle`.
fn wait_output(agent: &str, needle: &str) {
    assert!(
        eventually(Duration::from_secs(60), || agent_stdout(agent).contains(needle)),
        "never printed {needle:?}:\n{}",
        agent_stdout(agent)
    );
}

/// Waits until the registry says `agent_path` was sent up to `offset`.
fn wait_sent(run_dir: &std::path::Path, agent_path: &str, offset: u64) {
    assert!(
        eventually(Duration::from_secs(60), || file_offset(run_dir, agent_path)
            == Some(offset)),
        "the registry never reached {offset} for {agent_path}: {:?}",
        file_entry(run_dir, agent_path)
    );
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_conf_d_file_source_skips_what_was_written_before_start_and_sends_the_rest_with_its_tags() {
    let s = Scope::new("filesource");
    let run_dir = scratch_dir("filesource-run");
    let logs = scratch_dir("filesource-logs");
    let conf = scratch_dir("filesource-conf");
    let intake = Intake::start(200, 202);
    let run_log = logs.path().join("run.log");
    append(&run_log, "before 1\nbefore 2\n");
    append(&logs.path().join("ignored.log"), "ignored 1\n");
    // The image's s6 step copies /conf.d/**.yaml; a .yml there is not copied, so never read.
    std::fs::create_dir_all(conf.path().join("ddsky.d")).unwrap();
    std::fs::write(
        conf.path().join("ddsky.d/conf.yaml"),
        "logs:\n  - type: file\n    path: /var/log/job/run.log\n    service: skypilot-worker\n    \
         source: ddsky\n    sourcecategory: training\n    tags: [\"metta_run_id:r1\", \"skypilot_node_rank:0\"]\n",
    )
    .unwrap();
    std::fs::write(
        conf.path().join("ignored.yml"),
        "logs:\n  - type: file\n    path: /var/log/job/ignored.log\n    start_position: beginning\n",
    )
    .unwrap();
    run_file_agent(
        &s,
        run_dir.path(),
        logs.path(),
        &[format!("{}:/conf.d:ro", conf.path().display())],
        &intake,
    );
    // Unset start_position is the END: the tailer opens at the file's end.
    wait_output(
        &s.agent,
        "Starting a new tailer for: /var/log/job/run.log (offset: 0, whence: 2)",
    );
    append(&run_log, "after 1\n  \t\nafter 2\r\npartial");
    append(&logs.path().join("ignored.log"), "ignored 2\n");
    // Sent up to the end of "after 2": the last line waits for its newline.
    wait_sent(run_dir.path(), "/var/log/job/run.log", size(&run_log) - 7);
    append(&run_log, " line\n");
    wait_sent(run_dir.path(), "/var/log/job/run.log", size(&run_log));
    let got = logs_of_file(&intake, "run.log");
    let messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, vec!["after 1", "after 2", "partial line"]);
    for e in &got {
        assert_eq!(
            (e.status.as_str(), e.service.as_str(), e.ddsource.as_str()),
            ("info", "skypilot-worker", "ddsky"),
            "{e:?}"
        );
        let mut tags = e.ddtags.clone();
        tags.sort();
        assert_eq!(
            tags,
            vec![
                "dirname:/var/log/job",
                "filename:run.log",
                "metta_run_id:r1",
                "skypilot_node_rank:0",
                "sourcecategory:training",
            ],
            "no container tags, no host tags: {e:?}"
        );
    }
    let entry = file_entry(run_dir.path(), "/var/log/job/run.log").unwrap();
    assert_eq!(entry["TailingMode"], "", "start_position unset: {entry}");
    assert!(entry["IngestionTimestamp"].as_i64().unwrap() > 0, "{entry}");
    // The .yml outside a mounted conf.d was never copied, so never read.
    let out = agent_stdout(&s.agent);
    assert!(!out.contains("ignored.log"), "{out}");
    assert!(logs_of_file(&intake, "ignored.log").is_empty());
    assert!(file_entry(run_dir.path(), "/var/log/job/ignored.log").is_none());
}

#[test]
fn the_scan_reads_a_new_file_whole_and_refused_or_unmounted_sources_show_their_error() {
    let s = Scope::new("filescan");
    let run_dir = scratch_dir("filescan-run");
    let logs = scratch_dir("filescan-logs");
    let conf = scratch_dir("filescan-conf");
    let intake = Intake::start(200, 202);
    let existing = logs.path().join("existing.log");
    append(&existing, "old 1\n");
    // Mounted straight at conf.d/<name>.d, as the real image reads it too.
    std::fs::write(
        conf.path().join("conf.yaml"),
        "logs:\n  - type: file\n    path: /var/log/job/*.log\n    service: skypilot-worker\n    source: ddsky\n  \
         - type: file\n    path: /var/log/job/*.log\n    start_position: beginning\n  \
         - type: file\n    path: /var/log/unmounted/run.log\n",
    )
    .unwrap();
    run_file_agent(
        &s,
        run_dir.path(),
        logs.path(),
        &[format!(
            "{}:/etc/datadog-agent/conf.d/ddsky.d:ro",
            conf.path().display()
        )],
        &intake,
    );
    wait_output(
        &s.agent,
        "Starting a new tailer for: /var/log/job/existing.log (offset: 0, whence: 2)",
    );
    // A conf.d file added after the start is never read (conf.d is read once).
    std::fs::write(
        conf.path().join("late.yaml"),
        "logs:\n  - type: file\n    path: /var/log/job/late/*.log\n",
    )
    .unwrap();
    // A file that appears later is found by the scan and read from its beginning.
    let new = logs.path().join("new.log");
    let lines: Vec<String> = (1..=50).map(|i| format!("new line {i}")).collect();
    append(&new, &format!("{}\n", lines.join("\n")));
    append(&existing, "old 2\n");
    wait_sent(run_dir.path(), "/var/log/job/new.log", size(&new));
    wait_sent(run_dir.path(), "/var/log/job/existing.log", size(&existing));
    let got: Vec<String> = logs_of_file(&intake, "new.log")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(got, lines, "the new file whole, in order");
    let old: Vec<String> = logs_of_file(&intake, "existing.log")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(old, vec!["old 2"], "what was there at start is skipped");

    let v = status(&s);
    let integrations = v["logsStats"]["integrations"].as_array().unwrap();
    assert_eq!(integrations.len(), 1, "{integrations:?}");
    assert_eq!(integrations[0]["name"], "ddsky");
    let sources = integrations[0]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3, "the late conf.d file is not read: {sources:?}");
    assert_eq!(sources[0]["status"], "OK");
    let mut inputs: Vec<&str> = sources[0]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    inputs.sort();
    assert_eq!(inputs, vec!["/var/log/job/existing.log", "/var/log/job/new.log"]);
    assert_eq!(
        sources[1]["status"],
        "Error: tailing from the beginning is not supported for wildcard path /var/log/job/*.log"
    );
    assert_eq!(sources[1]["inputs"], serde_json::json!([]));
    assert_eq!(
        sources[2]["status"],
        "Error: cannot read file /var/log/unmounted/run.log: stat /var/log/unmounted/run.log: no such file or directory"
    );
    let out = agent_stdout(&s.agent);
    assert!(
        out.contains("Invalid logs configuration: tailing from the beginning is not supported for wildcard path /var/log/job/*.log"),
        "{out}"
    );
    // The refused source read nothing: each line arrived once.
    assert_eq!(logs_of_file(&intake, "new.log").len(), 50);
}

#[test]
fn a_truncated_file_is_read_again_from_0_and_a_restarted_agent_resumes_from_the_registry() {
    let s = Scope::new("filetrunc");
    let run_dir = scratch_dir("filetrunc-run");
    let logs = scratch_dir("filetrunc-logs");
    let conf = scratch_dir("filetrunc-conf");
    let intake = Intake::start(200, 202);
    let log = logs.path().join("job.log");
    append(&log, "");
    std::fs::write(
        conf.path().join("conf.yaml"),
        "logs:\n  - type: file\n    path: /var/log/job/job.log\n    start_position: beginning\n",
    )
    .unwrap();
    let mounts = [format!(
        "{}:/etc/datadog-agent/conf.d/ddsky.d:ro",
        conf.path().display()
    )];
    run_file_agent(&s, run_dir.path(), logs.path(), &mounts, &intake);
    wait_output(
        &s.agent,
        "Starting a new tailer for: /var/log/job/job.log (offset: 0, whence: 0)",
    );
    append(&log, "first a\nfirst b\n");
    wait_sent(run_dir.path(), "/var/log/job/job.log", size(&log));
    let entry = file_entry(run_dir.path(), "/var/log/job/job.log").unwrap();
    assert_eq!(entry["TailingMode"], "beginning");
    // Truncated and rewritten shorter: the scan sees size < what was read and starts over.
    std::fs::write(&log, "second\n").unwrap();
    wait_sent(run_dir.path(), "/var/log/job/job.log", 7);
    let messages = |intake: &Intake| -> Vec<String> {
        logs_of_file(intake, "job.log")
            .into_iter()
            .map(|e| e.message)
            .collect()
    };
    assert_eq!(messages(&intake), vec!["first a", "first b", "second"]);

    // A restart resumes from the registry's offset (beginning honours it).
    docker(&["stop", "-t", "30", &s.agent]).expect_code(0);
    docker(&["rm", &s.agent]).expect_code(0);
    append(&log, "while down\n");
    run_file_agent(&s, run_dir.path(), logs.path(), &mounts, &intake);
    wait_output(
        &s.agent,
        "Starting a new tailer for: /var/log/job/job.log (offset: 7, whence: 0)",
    );
    wait_sent(run_dir.path(), "/var/log/job/job.log", size(&log));
    assert_eq!(
        messages(&intake),
        vec!["first a", "first b", "second", "while down"]
    );
}
