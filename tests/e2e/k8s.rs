//! SkyPilot on Kubernetes: `ddsky k8s` (the pod_config printed at launch), `ddsky env` inside a pod,
//! `up`'s skip, and the example task. The built binary only: no Docker, no images.

use crate::common::{ddsky_without_docker, repo, run, KEY};
use serde_json::{json, Value};
use std::process::Command;

const EXAMPLE: &str = "docker/skypilot/kubernetes.yaml";

fn ddsky() -> Command {
    ddsky_without_docker()
}

fn pod_config(doc: &Value) -> &Value {
    &doc["config"]["kubernetes"]["pod_config"]
}

#[test]
fn the_kubernetes_example_holds_exactly_what_ddsky_k8s_prints_for_its_launch() {
    let text = std::fs::read_to_string(repo().join(EXAMPLE)).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{EXAMPLE}: {e}"));
    // The comment line that printed the block: `#   K=V ... ddsky k8s [ARGS]`.
    let line = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .find(|l| l.contains(" ddsky k8s"))
        .unwrap_or_else(|| panic!("{EXAMPLE} says which `ddsky k8s` printed its block"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "ddsky").unwrap();
    let vars: Vec<(&str, &str)> = words[..at]
        .iter()
        .map(|w| w.split_once('=').expect("K=V before `ddsky`"))
        .collect();
    let out = run(ddsky()
        .envs(vars.iter().copied())
        .args(&words[at + 1..])
        .args(["--format", "json"]));
    out.expect_code(0);
    assert_eq!(
        doc["config"],
        out.json()["config"],
        "{EXAMPLE}'s config block is not what `{}` prints now: paste its output",
        line.trim()
    );
    // The pods' own `ddsky env` sees the same run: the launch line passes the same values.
    let launch = text
        .lines()
        .find(|l| l.starts_with("# sky launch "))
        .expect("a launch line");
    for (k, v) in &vars {
        assert!(
            launch.contains(&format!("--env {k}={v}")),
            "{launch} passes {k}={v}"
        );
    }
    // Both halves: the pod_config's downward-API host, and `ddsky env` evaluated in run.
    assert_eq!(doc["resources"]["cloud"], "kubernetes");
    let run_section = doc["run"].as_str().unwrap();
    assert!(
        run_section.contains("env --format shell") && run_section.contains("eval"),
        "{run_section}"
    );
    assert!(doc.get("setup").is_none(), "no `ddsky up` on Kubernetes");
}

#[test]
fn ddsky_k8s_prints_the_pod_config_as_yaml_and_json() {
    let mut cmd = ddsky();
    cmd.env("METTA_RUN_ID", "alice.1")
        .env("METTA_GIT_REF", "0123456789abcdef0123456789abcdef01234567")
        .args(["k8s", "--tag", "team:ml", "--apm-port", "9126"]);
    let yaml = run(&mut cmd);
    yaml.expect_code(0);
    let json = run(cmd.args(["--format", "json"]));
    json.expect_code(0);
    let from_yaml: Value = serde_yaml_ng::from_str(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, json.json(), "YAML and JSON say the same");
    let pod = pod_config(&from_yaml);
    let tags: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["ad.datadoghq.com/tags"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        tags,
        json!({"metta_run_id": "alice.1", "git_ref": "0123456789abcdef0123456789abcdef01234567", "team": "ml"})
    );
    assert_eq!(
        pod["metadata"]["labels"],
        json!({
            "tags.datadoghq.com/env": "production",
            "tags.datadoghq.com/service": "skypilot-worker",
            "tags.datadoghq.com/version": "0123456789abcdef0123456789abcdef01234567",
        })
    );
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert_eq!(
        env[0],
        json!({"name": "DD_AGENT_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
    );
    assert!(env.contains(&json!({"name": "DD_TRACE_AGENT_PORT", "value": "9126"})));
    assert!(env.contains(&json!({"name": "DD_DOGSTATSD_PORT", "value": "8125"})));
    assert!(yaml.stderr.is_empty(), "nothing to warn about: {yaml}");
}

#[test]
fn ddsky_k8s_warns_about_what_it_changed_or_left_out() {
    let long_run = format!("Run {}", "x".repeat(90));
    let out = run(ddsky()
        .env("METTA_RUN_ID", &long_run)
        .env("SKYPILOT_NODE_RANK", "3")
        .env(
            "SKYPILOT_TASK_ID",
            "sky-2023-07-06-21-18-31-563597_launcher_1",
        )
        .args(["k8s", "--format", "json", "--service", "ml/trainer"]));
    out.expect_code(0);
    let pod = out.json()["config"]["kubernetes"]["pod_config"].clone();
    let tags: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["ad.datadoghq.com/tags"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    // Whole (after Datadog's tag rules, as `up` tags it) in the annotation; no launcher's rank or id.
    assert_eq!(
        tags,
        json!({"metta_run_id": format!("run_{}", "x".repeat(90))})
    );
    assert_eq!(
        pod["metadata"]["labels"]["tags.datadoghq.com/service"],
        "ml_trainer"
    );
    for said in [
        "became \"metta_run_id:run_",
        "tags.datadoghq.com/service: \"ml/trainer\" became \"ml_trainer\"",
        "skypilot_task_id, skypilot_node_rank left out of the pod_config",
    ] {
        assert!(out.stderr.contains(said), "{said}\n{out}");
    }
    // shell and env-file are `ddsky env`'s forms.
    run(ddsky().args(["k8s", "--format", "env-file"])).expect_code(2);
}

#[test]
fn ddsky_env_inside_a_pod_keeps_the_downward_api_host_and_adds_the_pods_tags() {
    let pod = |cmd: &mut Command| {
        cmd.env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("SKYPILOT_NODE_RANK", "1")
            .env("METTA_RUN_ID", "alice.1")
            .args(["env", "--format", "json"]);
    };
    let mut with_host = ddsky();
    pod(with_host
        .env("DD_AGENT_HOST", "10.0.3.7")
        .env("DD_ENV", "production"));
    let out = run(&mut with_host);
    out.expect_code(0);
    let vars = out.json();
    assert_eq!(vars["DD_AGENT_HOST"], "10.0.3.7", "{out}");
    assert_eq!(vars["DD_TAGS"], "metta_run_id:alice.1 skypilot_node_rank:1");
    assert!(out.stderr.is_empty(), "{out}");

    // A pod without the pod_config: no `localhost` (the agent is the node's), and the fix is named.
    let mut without = ddsky();
    pod(&mut without);
    let out = run(&mut without);
    out.expect_code(0);
    assert!(out.json().get("DD_AGENT_HOST").is_none(), "{out}");
    assert!(out.stderr.contains("ddsky k8s"), "{out}");

    // Off Kubernetes nothing changes: the agent is beside the job, at localhost.
    let out = run(ddsky()
        .env("DD_AGENT_HOST", "10.0.3.7")
        .args(["env", "--format", "json"]));
    assert_eq!(out.json()["DD_AGENT_HOST"], "localhost");
}

#[test]
fn up_on_kubernetes_skips_and_names_ddsky_k8s() {
    let out = run(ddsky()
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("DD_API_KEY", KEY)
        // No daemon is needed to decide: a socket that is not there.
        .env("DOCKER_HOST", "unix:///nonexistent/ddsky-k8s-test.sock")
        .args(["up", "--name", "ddskyt-k8s-never-created"]));
    out.expect_code(0);
    assert!(
        out.stdout.contains("Helm chart") && out.stdout.contains("`ddsky k8s`"),
        "{out}"
    );
    out.assert_no_secret(&[]);
}
