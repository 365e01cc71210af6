//! `ddsky up`, `status` and `down` against the real Docker daemon and the stand-in agent.

use crate::common::*;
use std::time::Duration;

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `up` as SkyPilot's setup phase runs it on node 1 of 2 of a Metta job, at the real agent's
/// timings (the auth-token second, then 15 s until the first health ping).
fn setup_phase_up(s: &Scope) -> std::process::Command {
    let mut cmd = s.up_at_real_timing();
    cmd.env("METTA_RUN_ID", "Alice.Run 1")
        .env(
            "SKYPILOT_TASK_ID",
            "sky-2023-07-06-21-18-31-563597_myclus_1",
        )
        .env("SKYPILOT_SETUP_NODE_RANK", "1")
        .env("SKYPILOT_SETUP_NODE_IPS", "10.0.0.1\n10.0.0.2")
        .env("METTA_GIT_REF", "0123456789abcdef0123456789abcdef01234567")
        .args(["--expect", "no-such-job", "--format", "json"]);
    cmd
}

#[test]
fn up_creates_exactly_the_recipe_and_a_second_up_is_a_no_op() {
    let s = Scope::new("recipe");
    let first = run(&mut setup_phase_up(&s));
    first.expect_code(0).assert_no_secret(&[]);
    let plan = first.json();
    assert_eq!(plan["action"], "create");
    assert_eq!(plan["healthy"], true);
    assert!(
        first.stderr.contains("became"),
        "the normalised run id is reported: {first}"
    );

    let c = inspect(&s.agent).expect("agent container exists");
    let host = &c["HostConfig"];
    assert_eq!(host["PidMode"], "host");
    assert_eq!(host["CgroupnsMode"], "host");
    assert_eq!(host["NetworkMode"], "host");
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "10m");
    // The run dir is the test's own (`--run-dir`; the default, /opt/datadog-agent/run, is in the
    // dry-run snapshot tests/fixtures/up-dry-run.json).
    assert_eq!(
        strs(&host["Binds"]),
        [
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "/proc/:/host/proc/:ro",
            "/sys/fs/cgroup/:/host/sys/fs/cgroup:ro",
            "/var/lib/docker/containers:/var/lib/docker/containers:ro",
            &format!("{}:/opt/datadog-agent/run:rw", s.run_dir.path().display()),
            "/etc/passwd:/etc/passwd:ro",
            // On a host: the job log directory (the test's own, DDSKY_JOB_LOG_DIR), read-only, for
            // a job run on the VM itself (VM mode).
            &format!(
                "{}/conf.d:/etc/datadog-agent/conf.d/ddsky.d:ro",
                s.job_log_dir.path().display()
            ),
            &format!(
                "{}/jobs:/var/log/ddsky-job:ro",
                s.job_log_dir.path().display()
            ),
        ]
    );
    let env = env_of(&c);
    let tags = "env:production service:skypilot-worker metta_run_id:alice.run_1 skypilot_task_id:sky-2023-07-06-21-18-31-563597_myclus_1 \
                skypilot_node_rank:1 skypilot_num_nodes:2 git_ref:0123456789abcdef0123456789abcdef01234567";
    for expected in [
        format!("DD_API_KEY={KEY}"),
        "DD_SITE=datadoghq.com".into(),
        format!("DD_TAGS={tags}"),
        "DD_ENV=production".into(),
        "DD_LOGS_ENABLED=true".into(),
        "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL=true".into(),
        "DD_APM_ENABLED=true".into(),
        "DD_APM_NON_LOCAL_TRAFFIC=true".into(),
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=true".into(),
        "DD_PROCESS_CONFIG_PROCESS_COLLECTION_ENABLED=true".into(),
        format!("DD_CONTAINER_EXCLUDE=name:^{}$", s.agent),
    ] {
        assert!(env.contains(&expected), "missing {expected} in {env:?}");
    }
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["io.ddsky.managed-by"], "ddsky");
    assert_eq!(
        labels["io.ddsky.spec-hash"].as_str().map(str::len),
        Some(64)
    );
    assert!(
        !labels.to_string().contains(KEY),
        "the key is not in any label"
    );
    assert_eq!(
        strs(&c["Config"]["Healthcheck"]["Test"]),
        ["CMD", "agent", "health"]
    );

    // The agent really got the tags as separate host tags.
    let status = run(s.ddsky().args(["status", "--format", "json"]));
    status.expect_code(0).assert_no_secret(&[]);
    assert_eq!(
        strs(&status.json()["agent"]["host_tags"]),
        tags.split(' ').collect::<Vec<_>>()
    );

    let id = c["Id"].as_str().unwrap().to_owned();
    let second = run(&mut setup_phase_up(&s));
    second.expect_code(0);
    assert_eq!(second.json()["action"], "none");
    assert_eq!(
        inspect(&s.agent).unwrap()["Id"],
        id.as_str(),
        "same container"
    );
}

#[test]
fn a_changed_tag_recreates_and_a_stopped_agent_is_started() {
    let s = Scope::new("recreate");
    run(s.up().args(["--tag", "team:a", "--expect", "none-such"])).expect_code(0);
    let first_id = inspect(&s.agent).unwrap()["Id"].clone();

    let changed = run(s.up().args([
        "--tag",
        "team:b",
        "--expect",
        "none-such",
        "--format",
        "json",
    ]));
    changed.expect_code(0);
    assert_eq!(changed.json()["action"], "recreate");
    let c = inspect(&s.agent).unwrap();
    assert_ne!(c["Id"], first_id, "a new container");
    assert!(env_of(&c)
        .iter()
        .any(|e| e.starts_with("DD_TAGS=") && e.ends_with("team:b")));
    let all = docker(&["ps", "-aq", "--filter", &format!("name=^/{}$", s.agent)]);
    assert_eq!(all.stdout.lines().count(), 1, "the old one is gone");

    docker(&["stop", "-t", "5", &s.agent]).expect_code(0);
    let started = run(s.up().args([
        "--tag",
        "team:b",
        "--expect",
        "none-such",
        "--format",
        "json",
    ]));
    started.expect_code(0);
    assert_eq!(started.json()["action"], "start");
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);
}

#[test]
fn a_foreign_container_of_that_name_is_left_untouched() {
    let s = Scope::new("foreign");
    let created = docker(&["run", "-d", "--name", &s.agent, job_image()]);
    created.expect_code(0);
    let id = created.stdout.trim().to_owned();

    let up = run(s.up().args(["--expect", "none-such"]));
    up.expect_code(1).assert_no_secret(&[]);
    assert!(
        up.stderr.contains("did not create") && up.stderr.contains("--replace"),
        "{up}"
    );
    let down = run(s.ddsky().arg("down"));
    down.expect_code(1);
    assert!(down.stderr.contains("--force"), "{down}");
    let c = inspect(&s.agent).expect("still there");
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["Config"]["Image"], job_image());

    let replaced = run(s
        .up()
        .args(["--replace", "--expect", "none-such", "--format", "json"]));
    replaced.expect_code(0);
    assert_eq!(replaced.json()["action"], "recreate");
    assert_eq!(
        inspect(&s.agent).unwrap()["Config"]["Labels"]["io.ddsky.managed-by"],
        "ddsky"
    );
}

#[test]
fn the_job_container_is_discovered_by_up_and_status() {
    let s = Scope::new("discover");
    let job_id = s.run_job("metta");
    let job = s.name("metta");

    let up = run(s
        .up_at_real_timing()
        .args(["--expect", &job, "--format", "json"]));
    up.expect_code(0).assert_no_secret(&[]);
    let expected = &up.json()["expected"][0];
    assert_eq!(expected["discovered"], true, "{up}");
    assert_eq!(expected["matches"][0]["id"], job_id.as_str());

    let status = run(s
        .ddsky()
        .args(["status", "--expect", &job, "--format", "json"]));
    status.expect_code(0);
    let report = status.json();
    let containers = report["containers"].as_array().unwrap();
    let entry = containers
        .iter()
        .find(|c| c["id"] == job_id.as_str())
        .expect("job listed");
    assert_eq!(entry["discovered"], true);
    assert_eq!(entry["is_agent"], false);
    assert!(
        strs(&entry["tags"]).contains(&format!("container_name:{job}")),
        "{entry}"
    );
    let agent_entry = containers
        .iter()
        .find(|c| c["name"] == s.agent.as_str())
        .expect("agent listed");
    assert_eq!(agent_entry["is_agent"], true);
    assert_eq!(report["agent"]["state"], "running");
    assert!(
        report["agent"]["uptime_seconds"]
            .as_u64()
            .is_some_and(|s| s < 600),
        "{report}"
    );
    assert_eq!(report["expected"][0]["discovered"], true);

    let text = run(s.ddsky().args(["status", "--expect", &job]));
    text.expect_code(0);
    assert!(
        text.stdout
            .contains(&format!("{job} ({}): discovered", job_image())),
        "{text}"
    );
}

#[test]
fn the_default_expectation_finds_a_metta_image_by_repository() {
    let s = Scope::new("defaultexpect");
    let job_id = s.run_job("job");
    let up = run(s.up().args(["--format", "json"]));
    up.expect_code(0);
    let report = up.json();
    assert_eq!(report["expected"][0]["pattern"], "metta");
    let ids: Vec<&str> = report["expected"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&job_id.as_str()), "{report}");
}

#[test]
fn a_container_started_later_is_waited_for_and_a_stopped_one_disappears() {
    let s = Scope::new("later");
    let job = s.name("late");
    let up = run(s.up_at_real_timing().args(["--expect", &job]));
    up.expect_code(0);
    assert!(
        up.stdout.contains("will discover it when it starts"),
        "{up}"
    );

    // The job starts only once `status --wait` waits for it (its debug line says so, after it
    // subscribed to Docker's events and looked once): the wait certainly began before the job
    // existed.
    let waiting = Watched::spawn(s.ddsky().args([
        "-v", "status", "--expect", &job, "--wait", "90s", "--format", "json",
    ]));
    assert!(
        waiting.wait_for_stderr(&["waiting for discovery"], Duration::from_secs(60)),
        "status --wait never began to wait"
    );
    assert!(inspect(&job).is_none(), "the job is not there yet");
    docker(&["run", "-d", "--name", &job, job_image()]).expect_code(0);
    let waited = waiting.finish(Duration::from_secs(150));
    waited.expect_code(0);
    assert_eq!(waited.json()["expected"][0]["discovered"], true, "{waited}");

    docker(&["stop", "-t", "1", &job]).expect_code(0);
    let gone = eventually(Duration::from_secs(20), || {
        let st = run(s.ddsky().args(["status", "--format", "json"])).json();
        !st["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == job.as_str())
    });
    assert!(gone, "a stopped container is no longer listed");
    // The wait runs out (nothing can be discovered); 30 s leave room for the health answer that
    // comes first on a loaded machine, where one `agent health` can take many seconds (a 1 s wait
    // ran out before it: unhealthy, exit 3).
    let not_found = run(s
        .ddsky()
        .args(["status", "--expect", &job, "--wait", "30s"]));
    not_found.expect_code(4);
}

#[test]
fn down_removes_the_agent_and_is_idempotent() {
    let s = Scope::new("down");
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    let down = run(s.ddsky().args(["down", "--format", "json"]));
    down.expect_code(0);
    assert_eq!(down.json()["result"], "removed");
    assert!(inspect(&s.agent).is_none());
    let again = run(s.ddsky().arg("down"));
    again.expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{again}");
    run(s.ddsky().arg("status")).expect_code(5);
}

#[test]
fn no_key_exits_0_and_creates_nothing() {
    let s = Scope::new("nokey");
    let mut cmd = s.ddsky();
    cmd.args(["up", "--image", agent_image(), "--no-aws"]);
    let out = run(&mut cmd);
    out.expect_code(0);
    assert!(
        out.stdout.contains("monitoring skipped") && out.stdout.contains("DD_API_KEY unset"),
        "{out}"
    );
    assert!(inspect(&s.agent).is_none());
    let strict = run(s
        .ddsky()
        .args(["up", "--image", agent_image(), "--no-aws", "--require-key"]));
    strict.expect_code(1);
    assert!(inspect(&s.agent).is_none());
}

#[test]
fn an_unpullable_image_is_a_clear_error_and_nothing_is_created() {
    let s = Scope::new("unpullable");
    // A registry address on loopback where nothing listens.
    let image = "127.0.0.1:9/datadog/agent:7";
    let out = run(s.up().args(["--image", image]));
    out.expect_code(1).assert_no_secret(&[]);
    assert!(
        out.stderr
            .contains(&format!("pulling image {image} failed")),
        "{out}"
    );
    assert!(inspect(&s.agent).is_none(), "nothing created");
    let never = run(s
        .up()
        .args(["--image", "ddsky-test/absent:1", "--pull", "never"]));
    never.expect_code(1);
    assert!(never.stderr.contains("--pull never"), "{never}");
}

#[test]
fn an_agent_that_stays_unhealthy_times_out_with_exit_3_and_the_components() {
    let s = Scope::new("unhealthy");
    // The first health ping is held for the whole test: the agent never becomes healthy. `up`
    // creates it without waiting, and the `up` under test starts only once the agent answers
    // (FAIL), so its timeout runs out in the FAIL phase, not in the auth-token one (30 s: room for
    // several answers even where one exec takes many seconds).
    let first_ping = s.hold("STANDIN_HEALTH_GATE");
    let args = ["--expect", "none-such"];
    run(s
        .up()
        .args(first_ping.agent_env())
        .args(args)
        .arg("--no-wait"))
    .expect_code(0);
    assert!(
        eventually(Duration::from_secs(60), || {
            let health = docker(&["exec", &s.agent, "agent", "health"]);
            health.stdout.starts_with("Agent health: FAIL")
        }),
        "the agent's command API never came up"
    );
    let out = run(s
        .up()
        .args(first_ping.agent_env())
        .args(args)
        .args(["--timeout", "30s"]));
    out.expect_code(3).assert_no_secret(&[]);
    assert!(
        out.stderr.contains("not healthy after") && out.stderr.contains("forwarder"),
        "{out}"
    );
    // Every component (`healthcheck` included) unhealthy is start-up, not the key (issue 11): the
    // forwarder hint comes once start-up is over (startup::key_outcomes_...).
    assert!(
        out.stderr.contains("still starting") && !out.stderr.contains("API key"),
        "the start-up hint: {out}"
    );
    run(s.ddsky().arg("status")).expect_code(3);
}

#[test]
fn the_key_appears_in_no_output_at_any_verbosity() {
    let s = Scope::new("secret");
    let job = s.name("job");
    s.run_job("job");
    let mut outputs = vec![];
    for extra in [
        &["-vv"][..],
        &["--format", "json"],
        &["--dry-run", "--format", "json"],
        &["--dry-run"],
    ] {
        outputs.push(run(s
            .up()
            .env("RUST_LOG", "trace")
            .args(["--expect", &job])
            .args(extra)));
    }
    outputs.push(run(s
        .ddsky()
        .env("RUST_LOG", "trace")
        .args(["status", "-vv", "--expect", &job])));
    outputs.push(run(s
        .ddsky()
        .env("RUST_LOG", "trace")
        .args(["status", "--format", "json"])));
    outputs.push(run(s
        .ddsky()
        .env("RUST_LOG", "trace")
        .args(["down", "-vv"])));
    for out in &outputs {
        out.assert_no_secret(&[]);
    }
    assert!(
        outputs[0].stderr.lines().count() > 10,
        "trace logging was on: {}",
        outputs[0]
    );
}

#[test]
fn docker_unreachable_fails_fast_with_the_address() {
    let s = Scope::new("nodocker");
    let out = run(s.up().env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    out.expect_code(1);
    assert!(
        out.stderr.contains("unix:///nonexistent/docker.sock"),
        "{out}"
    );
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    let bad_scheme = run(s.ddsky().env("DOCKER_HOST", "ftp://x").arg("status"));
    bad_scheme.expect_code(2);
}

#[test]
fn bad_input_is_a_usage_error_naming_the_fix() {
    let s = Scope::new("usage");
    for (args, needle) in [
        (&["--tag", "novalue"][..], "key:value"),
        (&["--image", "$(rm -rf /)"], "not valid"),
        (&["--agent-env", "DD_API_KEY=x"], "not accepted"),
        (&["--timeout", "soon"], "soon"),
    ] {
        let out = run(s.up().args(args));
        out.expect_code(2);
        assert!(out.stderr.contains(needle), "{args:?}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
    }
    let bad_name = run(s.ddsky().args(["--name", "dd/agent", "status"]));
    bad_name.expect_code(2);
    assert!(inspect(&s.agent).is_none());
}

#[test]
fn no_wait_returns_once_the_container_runs() {
    let s = Scope::new("nowait");
    let out = run(s.up().args([
        "--no-wait",
        "--agent-env",
        "STANDIN_UNHEALTHY_SECS=60",
        "--format",
        "json",
    ]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["action"], "create");
    assert!(report["healthy"].is_null(), "{report}");
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);
}

#[test]
fn status_asks_the_agent_in_one_exec_and_still_answers_without_a_shell() {
    let mut reports = Vec::new();
    for (image, label) in [(agent_image(), "shell"), (agent_noshell_image(), "noshell")] {
        let s = Scope::new(&format!("batch{label}"));
        let job_id = s.run_job("metta");
        let job = s.name("metta");
        run(s.up().args(["--image", image, "--expect", &job])).expect_code(0);

        let since = unix_now();
        let status = run(s
            .ddsky()
            .args(["status", "--expect", &job, "--format", "json"]));
        status.expect_code(0);
        let execs = ddsky_execs_since(&s.agent, &since);
        let report = status.json();
        let entry = report["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == job_id.as_str())
            .cloned()
            .expect("job listed");
        assert_eq!(entry["discovered"], true, "{label}: {report}");
        assert!(
            strs(&entry["tags"]).contains(&format!("container_name:{job}")),
            "{label}: {entry}"
        );
        assert!(report["agent"]["version"].is_string(), "{label}: {report}");
        assert!(
            strs(&report["agent"]["host_tags"]).contains(&"env:production".to_owned()),
            "{label}: {report}"
        );

        let agent_execs = execs.iter().filter(|c| c.starts_with("agent ")).count();
        let shell_execs = execs.iter().filter(|c| c.starts_with("sh -c")).count();
        if image == agent_image() {
            assert_eq!((shell_execs, agent_execs), (1, 0), "{execs:#?}");
        } else {
            // The one batch attempt fails on the missing shell; each question is then its own exec.
            assert!(shell_execs <= 1, "{execs:#?}");
            assert!(agent_execs >= 3, "{execs:#?}");
        }
        reports.push((entry["tags"].clone(), report["agent"]["host_tags"].clone()));
    }
    assert_eq!(
        strs(&reports[0].1),
        strs(&reports[1].1),
        "the same host tags either way"
    );
}
