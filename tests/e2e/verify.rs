//! `ddsky verify` against the fake Datadog API: fed by what stand-in agents really sent to the test
//! intake (two "nodes" on the one daemon), or by a synthesized world of 4 or 64 nodes built from the
//! same payload shapes.

use crate::common::*;
use crate::fake_datadog::{Behaviour, FakeDatadog, World, APP_KEY, OTHER_APP_KEY};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// For the tests on a synthesized world: no Docker, so no images or containers to make; the same
/// clean, loopback-only environment as `Scope::ddsky`.
struct NoDocker;

trait Ddsky {
    fn ddsky(&self) -> Command;
}

impl Ddsky for Scope {
    fn ddsky(&self) -> Command {
        Scope::ddsky(self)
    }
}

impl Ddsky for NoDocker {
    fn ddsky(&self) -> Command {
        ddsky_without_docker()
    }
}

/// `ddsky verify` against `fake`, keys in the environment, AWS not asked.
fn verify(s: &impl Ddsky, fake: &FakeDatadog, args: &[&str]) -> Command {
    let mut cmd = s.ddsky();
    cmd.env("DD_API_KEY", KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DDSKY_API_URL", fake.url())
        .args(["verify", "--no-aws"])
        .args(args);
    cmd
}

/// A fake answering from a synthesized world of `nodes` nodes of run `run`.
fn synthetic(
    behaviour: Behaviour,
    nodes: u32,
    run: &str,
    silent: &[u32],
    absent: &[u32],
) -> FakeDatadog {
    let world = World::synthetic(nodes, run, now(), silent, absent);
    FakeDatadog::start(behaviour, move || world.clone())
}

/// One look at run `run_id` as JSON.
fn look_json(s: &impl Ddsky, fake: &FakeDatadog, run_id: &str) -> Run {
    run(&mut verify(
        s,
        fake,
        &["--run-id", run_id, "--format", "json"],
    ))
}

fn ranks_where(report: &Value, pred: impl Fn(&Value) -> bool) -> Vec<i64> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| pred(n))
        .map(|n| n["rank"].as_i64().unwrap_or(-1))
        .collect()
}

/// `up` for node `rank` of a `nodes`-node run on this scope's ports, sending to `intake`.
fn up_node(s: &Scope, intake: &Intake, run_id: &str, rank: u32, nodes: u32, expect: &str) -> Run {
    let host = format!("{}-node{rank}", s.prefix);
    let mut cmd = s.up();
    cmd.env("METTA_RUN_ID", run_id)
        .env("SKYPILOT_NODE_RANK", rank.to_string())
        .env("SKYPILOT_NUM_NODES", nodes.to_string())
        .args(["--dd-url", &intake.url(), "--expect", expect])
        .args(["--agent-env", &format!("DD_HOSTNAME={host}")])
        .args([
            "--agent-env",
            &format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
        ])
        // The node's job is its container to collect, whichever scope started it (the two "nodes"
        // share one daemon and one job); the last of duplicate settings wins.
        .args([
            "--agent-env",
            &format!("DD_CONTAINER_INCLUDE_LOGS=name:^{expect}$"),
        ]);
    run(&mut cmd)
}

#[test]
fn verify_sees_two_nodes_then_names_the_one_that_stopped() {
    let s0 = Scope::new("verify2n0");
    let s1 = Scope::new("verify2n1");
    let intake = Intake::start(200, 202);
    let feed = intake.feed();
    let fake = FakeDatadog::start(Behaviour::new(), move || {
        World::from_intake(&feed.lock().unwrap())
    });
    let run_id = format!("{}-run", s0.prefix).to_lowercase();
    s0.run_job("job");
    let job = s0.name("job");
    up_node(&s0, &intake, &run_id, 0, 2, &job).expect_code(0);
    up_node(&s1, &intake, &run_id, 1, 2, &job).expect_code(0);

    // Both nodes, every column (logs: the job's lines the stand-ins sent), at trace level: the
    // keys never appear.
    let out = run(verify(&s0, &fake, &["--run-id", &run_id, "--expect", &job])
        .args(["--wait", "90s", "--format", "json", "-vv"])
        .env("RUST_LOG", "trace"));
    out.assert_no_secret(&[APP_KEY]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["expected_nodes"], 2);
    assert_eq!(ranks_where(&report, |n| n["ok"] == true), vec![0, 1]);
    assert_eq!(report["nodes"][1]["host"], format!("{}-node1", s1.prefix));
    assert_eq!(report["nodes"][0]["container"]["status"], "ok");
    assert_eq!(report["logs"]["checked"], true, "{report:#}");
    assert_eq!(report["nodes"][0]["logs"]["status"], "ok", "{report:#}");

    // Node 1's agent stops; once its last point is out of the window, the next look names rank 1.
    run(s1.ddsky().args(["down", "--timeout", "5s"])).expect_code(0);
    std::thread::sleep(Duration::from_secs(12));
    let out = run(verify(
        &s0,
        &fake,
        &["--run-id", &run_id, "--expect", &job, "--no-logs"],
    )
    .args(["--since", "10s", "--format", "json"]));
    out.assert_no_secret(&[APP_KEY]);
    out.expect_code(4);
    let report = out.json();
    assert_eq!(
        ranks_where(&report, |n| n["ok"] == false),
        vec![1],
        "{report:#}"
    );
    assert_eq!(report["nodes"][1]["agent"]["status"], "missing");
    let text = run(verify(
        &s0,
        &fake,
        &["--run-id", &run_id, "--expect", &job, "--no-logs"],
    )
    .args(["--since", "10s"]));
    text.expect_code(4);
    assert!(text.stdout.contains("1 of 2 expected nodes ok"), "{text}");
    assert!(
        text.stdout.contains("rank 1 (agent, host, container)"),
        "{text}"
    );
    assert!(text.stdout.contains("ddsky doctor"), "{text}");
}

#[test]
fn verify_names_the_node_without_the_job_container_until_it_runs() {
    let s = Scope::new("verifynojob");
    let intake = Intake::start(200, 202);
    let feed = intake.feed();
    let fake = FakeDatadog::start(Behaviour::new(), move || {
        World::from_intake(&feed.lock().unwrap())
    });
    let run_id = format!("{}-run", s.prefix).to_lowercase();
    let job = s.name("job");
    run(s
        .up()
        .env("METTA_RUN_ID", &run_id)
        .env("SKYPILOT_NODE_RANK", "0")
        .args(["--dd-url", &intake.url(), "--no-wait"]))
    .expect_code(0);
    // The agent reports (its second flush carries system.cpu.user) but no job container runs.
    assert!(eventually(Duration::from_secs(30), || {
        World::from_intake(&intake.received())
            .points
            .iter()
            .any(|p| p.metric == "system.cpu.user")
    }));
    let out = run(verify(
        &s,
        &fake,
        &["--run-id", &run_id, "--expect", &job, "--no-logs"],
    )
    .args(["--format", "json"]));
    out.expect_code(4);
    let report = out.json();
    let node = &report["nodes"][0];
    assert_eq!(node["rank"], 0, "{report:#}");
    assert_eq!(node["agent"]["status"], "ok");
    assert_eq!(node["host_metrics"]["status"], "ok");
    assert_eq!(node["container"]["status"], "missing");
    assert!(node["container"]["detail"].as_str().unwrap().contains(&job));

    // The job starts; --wait looks again until its metrics arrive.
    s.run_job("job");
    let out = run(verify(
        &s,
        &fake,
        &["--run-id", &run_id, "--expect", &job, "--no-logs"],
    )
    .args(["--wait", "90s", "--format", "json"]));
    out.expect_code(0);
    assert!(out.json()["looks"].as_u64().unwrap() >= 1);
}

#[test]
fn verify_names_the_refused_key_and_permission() {
    let s = NoDocker;
    // A wrong application key: exit 1, naming the application key, never printing either key.
    let fake = synthetic(
        Behaviour {
            app_key: OTHER_APP_KEY.into(),
            ..Behaviour::new()
        },
        4,
        "r1",
        &[],
        &[],
    );
    let out = run(verify(&s, &fake, &["--run-id", "r1"]).env("RUST_LOG", "trace"));
    out.assert_no_secret(&[APP_KEY, OTHER_APP_KEY]);
    out.expect_code(1);
    assert!(out.stderr.contains("refused the application key"), "{out}");
    assert!(
        out.stderr.contains("hosts_read") || out.stderr.contains("timeseries_query"),
        "{out}"
    );
    assert!(!out.stderr.contains("refused the API key"), "{out}");

    // A wrong API key: the validation says so.
    let fake = synthetic(
        Behaviour {
            api_key: OTHER_KEY.into(),
            ..Behaviour::new()
        },
        4,
        "r1",
        &[],
        &[],
    );
    let out = run(&mut verify(&s, &fake, &["--run-id", "r1"]));
    out.assert_no_secret(&[APP_KEY]);
    out.expect_code(1);
    assert!(out.stderr.contains("refused the API key"), "{out}");

    // No logs_read_data: logs "not checked" with the reason, the exit code unaffected.
    let fake = synthetic(
        Behaviour {
            logs_read_data: false,
            ..Behaviour::new()
        },
        4,
        "r1",
        &[],
        &[],
    );
    let out = look_json(&s, &fake, "r1");
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["logs"]["checked"], false);
    assert!(report["logs"]["reason"]
        .as_str()
        .unwrap()
        .contains("logs_read_data"));
    assert_eq!(report["nodes"][0]["logs"]["status"], "not_checked");

    // Bad usage: no run named, plain http to a non-loopback API.
    run(&mut verify(&s, &fake, &[])).expect_code(2);
    let out = run(verify(&s, &fake, &["--run-id", "r1"]).env("DDSKY_API_URL", "http://10.1.2.3"));
    out.expect_code(2);
    assert!(out.stderr.contains("use https"), "{out}");
}

#[test]
fn verify_survives_throttling_and_5xx() {
    let s = NoDocker;
    let fake = synthetic(
        Behaviour {
            throttle_first: 2,
            fail_first: 1,
            ..Behaviour::new()
        },
        4,
        "r1",
        &[],
        &[],
    );
    let out = look_json(&s, &fake, "r1");
    out.assert_no_secret(&[APP_KEY]);
    out.expect_code(0);
    assert!(out.stderr.contains("X-RateLimit-Reset"), "{out}");
    let statuses: Vec<u16> = fake.calls().iter().map(|(_, s)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        out.json()["api_calls"].as_u64().unwrap() as usize,
        statuses.len()
    );
    fake.check_against_spec();
}

#[test]
fn verify_64_nodes_cost_the_calls_of_4_and_name_exactly_the_bad_ranks() {
    let s = NoDocker;
    let mut calls = Vec::new();
    for nodes in [4u32, 64] {
        let fake = synthetic(Behaviour::new(), nodes, "big", &[], &[]);
        let out = look_json(&s, &fake, "big");
        out.expect_code(0);
        let report = out.json();
        assert_eq!(report["nodes"].as_array().unwrap().len(), nodes as usize);
        assert!(report["nodes"][0]["logs"]["count"].as_u64().unwrap() > 0);
        // The look's calls; after it, one list of dashboards for the link to the run's dashboard.
        let look_calls = fake
            .calls()
            .iter()
            .filter(|(c, _)| !c.starts_with("GET /api/v1/dashboard"))
            .count();
        assert_eq!(
            report["api_calls_last_look"].as_u64().unwrap() as usize,
            look_calls
        );
        assert_eq!(fake.calls().len(), look_calls + 1);
        calls.push(look_calls);
    }
    assert_eq!(
        calls[0], calls[1],
        "calls per look must not grow with the nodes"
    );

    // Rank 5 silent (stopped 11 minutes ago), rank 9 never started: exactly those are named.
    let fake = synthetic(Behaviour::new(), 64, "big", &[5], &[9]);
    let out = look_json(&s, &fake, "big");
    out.expect_code(4);
    let report = out.json();
    assert_eq!(ranks_where(&report, |n| n["ok"] == false), vec![5, 9]);
    assert_eq!(report["missing_ranks"], serde_json::json!([9]));
    assert!(report["nodes"][9]["host"].is_null());
    assert_eq!(report["nodes"][5]["agent"]["status"], "missing");
    fake.check_against_spec();
}

#[test]
fn verify_links_the_runs_dashboard_when_it_exists() {
    let s = NoDocker;
    let fake = synthetic(Behaviour::new(), 2, "r1", &[], &[]);
    let report = look_json(&s, &fake, "r1").json();
    assert_eq!(report["dashboard"], Value::Null, "{report:#}");

    let id = fake
        .store
        .lock()
        .unwrap()
        .add_dashboard("[ddsky] SkyPilot runs (env:production, service:skypilot-worker)");
    let out = look_json(&s, &fake, "r1");
    out.expect_code(0);
    assert_eq!(
        out.json()["dashboard"],
        format!("https://app.datadoghq.com/dashboard/{id}?tpl_var_metta_run_id=r1")
    );
    let out = run(&mut verify(&s, &fake, &["--run-id", "r1"]));
    assert!(
        out.stdout.contains(&format!(
            "dashboard:      https://app.datadoghq.com/dashboard/{id}?tpl_var_metta_run_id=r1"
        )),
        "{out}"
    );
    // Another identity's dashboard is not this run's.
    let out = look_json(&s, &fake, "r1");
    let mut cmd = verify(&s, &fake, &["--run-id", "r1", "--format", "json"]);
    cmd.env("DDSKY_ENV", "staging");
    assert_eq!(run(&mut cmd).json()["dashboard"], Value::Null, "{out}");
    fake.check_against_spec();
}

/// The bench figure (benches/bench.sh): API calls and wall time per look for 4 and 64 nodes.
#[test]
#[ignore = "a figure for benches/bench.sh, not a check"]
fn verify_scale_figure() {
    let s = NoDocker;
    for nodes in [4u32, 64] {
        let fake = synthetic(Behaviour::new(), nodes, "big", &[], &[]);
        let started = Instant::now();
        let out = look_json(&s, &fake, "big");
        let wall = started.elapsed();
        out.expect_code(0);
        println!(
            "verify: {nodes} nodes: {} API calls per look, {} ms wall",
            fake.calls().len(),
            wall.as_millis()
        );
    }
}
