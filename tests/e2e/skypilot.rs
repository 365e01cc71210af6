//! Where SkyPilot runs ddsky: inside the job container (with and without the Docker socket), on a host
//! without GPUs, and feeding the job's environment through `ddsky env`.

use crate::common::*;

/// `docker run` of the static ddsky in a job-like container named `<prefix>-job`.
fn ddsky_in_container(s: &Scope, with_socket: bool, args: &[&str]) -> Run {
    ddsky_in_container_with(s, with_socket, &[], args)
}

/// The same with extra `docker run` options (`--user`, `--group-add`).
fn ddsky_in_container_with(
    s: &Scope,
    with_socket: bool,
    docker_args: &[&str],
    args: &[&str],
) -> Run {
    let job = s.name("job");
    let mut cmd = vec![
        "run".to_owned(),
        "--rm".into(),
        "--name".into(),
        job,
        "--net=host".into(),
    ];
    cmd.extend(docker_args.iter().map(|a| a.to_string()));
    if with_socket {
        cmd.extend([
            "-v".into(),
            "/var/run/docker.sock:/var/run/docker.sock".into(),
        ]);
    }
    for (k, v) in [
        ("DD_API_KEY", KEY),
        ("DDSKY_NAME", s.agent.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("SKYPILOT_SETUP_NODE_RANK", "0"),
    ] {
        cmd.extend(["-e".into(), format!("{k}={v}")]);
    }
    cmd.push(ddsky_image().into());
    cmd.extend(args.iter().map(|a| a.to_string()));
    run(std::process::Command::new("docker").args(&cmd))
}

#[test]
fn inside_a_container_with_the_socket_it_starts_a_host_agent_and_is_discovered_as_self() {
    // As a task starts it: no --run-dir, so the agent gets the host's default.
    let s = Scope::holding("insideself", &[HostResource::DefaultRunDir]);
    let ports = s.port_args();
    let agent_args = s.agent_args();
    let mut args = vec![
        "up",
        "--image",
        agent_image(),
        "--expect",
        "self",
        "--timeout",
        "60s",
        "--format",
        "json",
    ];
    args.extend(ports.iter().map(String::as_str));
    args.extend(agent_args.iter().map(String::as_str));
    let out = ddsky_in_container(&s, true, &args);
    out.expect_code(0).assert_no_secret(&[]);
    let report = out.json();
    assert_eq!(report["expected"][0]["pattern"], "self");
    assert_eq!(report["expected"][0]["discovered"], true, "{out}");
    assert_eq!(
        report["expected"][0]["matches"][0]["name"],
        s.name("job").as_str()
    );
    // The agent it started is a host agent: host pid namespace and the host's /proc and cgroups.
    let agent = inspect(&s.agent).expect("the agent outlives the job container");
    assert_eq!(agent["HostConfig"]["PidMode"], "host");
    assert_eq!(agent["State"]["Running"], true);
}

#[test]
fn inside_a_container_without_the_socket_it_skips_with_the_fix() {
    let s = Scope::new("insidenosock");
    let out = ddsky_in_container(&s, false, &["up", "--image", agent_image()]);
    out.expect_code(0).assert_no_secret(&[]);
    assert!(out.stdout.contains("monitoring skipped"), "{out}");
    assert!(
        out.stdout.contains("run_options")
            && out
                .stdout
                .contains("/var/run/docker.sock:/var/run/docker.sock"),
        "{out}"
    );
    assert!(inspect(&s.agent).is_none());
}

#[test]
fn the_static_binary_runs_anywhere_and_prints_its_version() {
    let s = Scope::new("version");
    let out = ddsky_in_container(&s, false, &["--version"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        format!("ddsky {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn gpus_all_without_nvidia_fails_cleanly_and_creates_nothing() {
    let s = Scope::new("gpus");
    let out = run(s.up().args(["--gpus", "all"]));
    out.expect_code(1).assert_no_secret(&[]);
    assert!(
        out.stderr.contains("NVIDIA") && out.stderr.contains("--gpus none"),
        "{out}"
    );
    assert!(inspect(&s.agent).is_none());
    // auto on a GPU-less host: no device request, no GPU check.
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    let c = inspect(&s.agent).unwrap();
    assert!(
        c["HostConfig"]["DeviceRequests"].is_null()
            || c["HostConfig"]["DeviceRequests"]
                .as_array()
                .is_some_and(|a| a.is_empty())
    );
    assert!(!env_of(&c).iter().any(|e| e.starts_with("DD_GPU_ENABLED")));
}

#[test]
fn kubernetes_is_left_to_the_helm_chart() {
    let s = Scope::new("k8s");
    let out = run(s.up().env("KUBERNETES_SERVICE_HOST", "10.0.0.1"));
    out.expect_code(0);
    assert!(out.stdout.contains("Helm chart"), "{out}");
    assert!(inspect(&s.agent).is_none());
}

#[test]
fn env_file_feeds_docker_run() {
    let s = Scope::new("envfile");
    let mut env = s.ddsky();
    env.env("METTA_RUN_ID", "alice.1").env("METTA_GIT_REF", "0123456789abcdef0123456789abcdef01234567")
        .env("SKYPILOT_CLUSTER_INFO", r#"{"cluster_name": "c1", "cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a"}"#)
        .args(["env", "--format", "env-file", "--apm-port", "9126"]);
    let out = run(&mut env);
    out.expect_code(0);
    let scratch = scratch_dir("envfile");
    let file = scratch.path().join("job.env");
    std::fs::write(&file, &out.stdout).unwrap();
    // The stand-in job image has no shell; the agent image's `agent` binary is not a shell either, so
    // read the variables back through `docker inspect` of a container created with the env file.
    let name = s.name("envjob");
    docker(&[
        "create",
        "--name",
        &name,
        "--env-file",
        file.to_str().unwrap(),
        job_image(),
    ])
    .expect_code(0);
    let vars = env_of(&inspect(&name).unwrap());
    for expected in [
        "DD_AGENT_HOST=localhost",
        "DD_TRACE_AGENT_PORT=9126",
        "DD_DOGSTATSD_PORT=8125",
        "DD_ENV=production",
        "DD_SERVICE=skypilot-worker",
        "DD_VERSION=0123456789abcdef0123456789abcdef01234567",
        "DD_TAGS=metta_run_id:alice.1 git_ref:0123456789abcdef0123456789abcdef01234567 skypilot_cluster:c1 cloud:aws region:us-east-1 zone:us-east-1a",
    ] {
        assert!(vars.iter().any(|v| v == expected), "missing {expected} in {vars:?}");
    }
    let shell = run(s.ddsky().env("METTA_RUN_ID", "it's").args(["env"]));
    shell.expect_code(0);
    assert!(
        shell.stdout.contains("export DD_AGENT_HOST='localhost'"),
        "{shell}"
    );
    let json = run(s.ddsky().args(["env", "--format", "json"]));
    assert_eq!(json.json()["DD_AGENT_HOST"], "localhost");
    run(s.ddsky().args(["status", "--format", "env-file"])).expect_code(2);
}

#[test]
fn git_ref_falls_back_to_the_checked_out_commit() {
    let s = Scope::new("gitref");
    let scratch = scratch_dir("gitref-repo");
    let dir = scratch.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    ]);
    let head = git(&["rev-parse", "HEAD"]);
    let out = run(s.ddsky().current_dir(dir).args(["env", "--format", "json"]));
    let without_env = out.json();
    let with_env = run(s
        .ddsky()
        .current_dir(dir)
        .env("METTA_GIT_REF", "f".repeat(40))
        .args(["env", "--format", "json"]))
    .json();
    assert_eq!(without_env["DD_VERSION"], head.as_str(), "{out}");
    assert_eq!(
        with_env["DD_VERSION"],
        "f".repeat(40).as_str(),
        "METTA_GIT_REF wins"
    );
}

#[test]
fn malformed_cluster_info_warns_and_keeps_the_other_tags() {
    let s = Scope::new("clusterinfo");
    let out = run(s
        .ddsky()
        .env("SKYPILOT_CLUSTER_INFO", "{not json")
        .env("METTA_RUN_ID", "r1")
        .args(["env", "--format", "json"]));
    out.expect_code(0);
    assert!(out.stderr.contains("SKYPILOT_CLUSTER_INFO"), "{out}");
    assert_eq!(out.json()["DD_TAGS"], "metta_run_id:r1");
}

#[test]
fn the_skypilot_examples_parse() {
    for file in ["runtime-mode.yaml", "task-mode.yaml"] {
        let text = std::fs::read_to_string(repo().join("docker/skypilot").join(file)).unwrap();
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            doc["setup"]
                .as_str()
                .is_some_and(|s| s.contains("ddsky up")),
            "{file} runs ddsky up in setup"
        );
        assert!(doc["run"].as_str().is_some(), "{file} has a run section");
    }
    let snippet = repo().join("docker/skypilot/setup-snippet.sh");
    run(std::process::Command::new("bash").arg("-n").arg(&snippet)).expect_code(0);
}

#[test]
fn a_non_root_job_image_is_told_the_socket_refused_it_and_how_to_fix_it() {
    // A job image that runs as uid 1000 with the host's socket mounted (root:<docker group>, 660).
    let s = Scope::new("nonroot");
    let gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .expect("the daemon's socket is at /var/run/docker.sock");
    let ports = s.port_args();
    let mut args = vec!["up", "--image", agent_image(), "--timeout", "60s"];
    args.extend(ports.iter().map(String::as_str));
    let refused = ddsky_in_container_with(&s, true, &["--user", "1000"], &args);
    refused.expect_code(1).assert_no_secret(&[]);
    let fix = format!("--group-add {gid}");
    assert!(
        refused.stderr.contains("refused this user (uid 1000")
            && refused.stderr.contains(&fix)
            && refused.stderr.contains("run_options"),
        "{refused}"
    );
    assert!(inspect(&s.agent).is_none(), "nothing created");
    // The fix it gives works: the same user with the socket's group reaches the daemon.
    let gid = gid.to_string();
    let fixed = ddsky_in_container_with(
        &s,
        true,
        &["--user", "1000", "--group-add", &gid],
        &["status", "--format", "json"],
    );
    fixed.expect_code(5); // no agent container: the daemon answered
    assert!(fixed.json()["agent"].is_null(), "{fixed}");
}

/// Runs docker/skypilot/setup-snippet.sh with bash, `ddsky` replaced by a script that answers
/// `--version` and does `up_body` for `up`: what setup sees for each outcome, without Docker.
fn snippet_with_fake_ddsky(test: &str, up_body: &str, env: &[(&str, &str)]) -> Run {
    let scratch = scratch_dir(&format!("snippet-{test}"));
    let dir = scratch.path();
    let fake = dir.join("ddsky");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/bash\n[ \"$1\" = --version ] && {{ echo 'ddsky 0'; exit 0; }}\n{up_body}\n"
        ),
    )
    .unwrap();
    run(std::process::Command::new("chmod").arg("755").arg(&fake)).expect_code(0);
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo().join("docker/skypilot/setup-snippet.sh"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("DDSKY_BIN", &fake);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn warnings(out: &Run) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.contains("WARNING"))
        .collect()
}

#[test]
fn the_setup_snippet_never_fails_the_job_and_says_each_outcome_in_one_warning_line() {
    let ok = snippet_with_fake_ddsky("ok", "exit 0", &[]);
    ok.expect_code(0);
    assert!(warnings(&ok).is_empty(), "{ok}");
    for (code, meaning) in [
        ("1", "could not set up"),
        ("2", "bad ddsky flag"),
        ("3", "not healthy in time"),
        ("4", "not discovered the job container"),
    ] {
        let out = snippet_with_fake_ddsky(code, &format!("exit {code}"), &[]);
        out.expect_code(0);
        let lines = warnings(&out);
        assert_eq!(lines.len(), 1, "{out}");
        assert!(
            lines[0].starts_with(&format!("ddsky: WARNING: exit {code}: "))
                && lines[0].contains(meaning)
                && lines[0].ends_with("training continues"),
            "{out}"
        );
    }
    let strict = snippet_with_fake_ddsky("strict", "exit 3", &[("DDSKY_STRICT", "1")]);
    strict.expect_code(3);
    assert!(
        warnings(&strict)[0].ends_with("DDSKY_STRICT=1: setup fails"),
        "{strict}"
    );
    // The agent's wait is bounded at 60 s unless the task says otherwise.
    let timeout = snippet_with_fake_ddsky("timeout", "echo \"timeout=$DDSKY_TIMEOUT\"", &[]);
    assert!(timeout.stdout.contains("timeout=60s"), "{timeout}");
}

#[test]
fn the_setup_snippet_holds_setup_no_longer_than_its_bound() {
    // An `up` that hangs (a pull that never ends): setup goes on after DDSKY_SETUP_LIMIT seconds.
    let out = snippet_with_fake_ddsky("bound", "exec sleep 120", &[("DDSKY_SETUP_LIMIT", "2")]);
    out.expect_code(0);
    assert!(
        out.elapsed < std::time::Duration::from_secs(30),
        "held setup {:?}",
        out.elapsed
    );
    let lines = warnings(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("setup bound") && lines[0].contains("2 s"),
        "{out}"
    );
}
