//! Where SkyPilot runs ddsky: inside the job container (with and without the Docker socket), on a host
//! without GPUs, and feeding the job's environment through `ddsky env`.

use crate::common::*;

/// `docker run` of the static ddsky in a job-like container named `<prefix>-job`.
fn ddsky_in_container(s: &Scope, with_socket: bool, args: &[&str]) -> Run {
    let job = s.name("job");
    let mut cmd = vec![
        "run".to_owned(),
        "--rm".into(),
        "--name".into(),
        job,
        "--net=host".into(),
    ];
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
    let s = Scope::new("insideself");
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
    let file = std::env::temp_dir().join(format!("{}.env", s.prefix));
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
    let _ = std::fs::remove_file(&file);
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
    let dir = std::env::temp_dir().join(format!("{}-repo", s.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
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
    let out = run(s
        .ddsky()
        .current_dir(&dir)
        .args(["env", "--format", "json"]));
    let without_env = out.json();
    let with_env = run(s
        .ddsky()
        .current_dir(&dir)
        .env("METTA_GIT_REF", "f".repeat(40))
        .args(["env", "--format", "json"]))
    .json();
    let _ = std::fs::remove_dir_all(&dir);
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
