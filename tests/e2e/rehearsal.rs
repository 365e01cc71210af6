//! Runtime mode rehearsed the way SkyPilot runs it (docker/skypilot/runtime-mode.yaml): a job
//! container started with sky_container's own flags, the example's `setup` block run inside it through
//! `docker exec ... bash -c` with SkyPilot's setup variables, SkyPilot's end of a phase (SIGTERM to the
//! phase's processes, SIGKILL 30 s later), then the `run` block cancelled the same way: its
//! `ddsky run --down` must take the agent down inside that 30 s window.
//!
//! The blocks are read from the YAML itself, so the test breaks when the example does. Only the
//! training command (`python train.py`) is swapped for a `sleep`, the job image having no python.

use crate::common::*;
use serde_yaml_ng::Value as Yaml;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// SkyPilot's watchdog: SIGKILL this long after the SIGTERM that ends a phase or cancels a job
/// (sky/skylet/subprocess_daemon.py).
pub(crate) const SKYPILOT_KILL_GRACE: Duration = Duration::from_secs(30);

/// The job image of the rehearsal (docker/skypilot/job.Dockerfile): static bash, busybox, and ddsky
/// at ~/.ddsky/ddsky, where the setup snippet looks first.
pub(crate) fn skypilot_job_image() -> String {
    format!("{}/skypilot-job:latest", image_namespace())
}

pub(crate) fn runtime_yaml() -> Yaml {
    let text = std::fs::read_to_string(repo().join("docker/skypilot/runtime-mode.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// `docker run` of sky_container as SkyPilot starts it (sky/provision/docker_utils.py): `-d -it`,
/// the task's `config.docker.run_options` (here: the Docker socket), `--net=host`,
/// `--cap-add=SYS_ADMIN`, `--device=/dev/fuse`, `--security-opt=apparmor:unconfined`,
/// `--entrypoint=/bin/bash`, `--shm-size`. Left out: `--cap-add=SYS_RESOURCE`, which this machine's
/// daemon refuses, and `--runtime=nvidia --gpus all` (no GPU here).
pub(crate) fn start_sky_container(s: &Scope, yaml: &Yaml) -> (String, String) {
    let name = s.name("sky_container");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--name".into(),
        name.clone(),
        "-d".into(),
        "-it".into(),
    ];
    let run_options = yaml["config"]["docker"]["run_options"]
        .as_sequence()
        .expect("runtime-mode.yaml has config.docker.run_options");
    for option in run_options {
        // SkyPilot joins the options into its docker run command line: split them as a shell would.
        args.extend(
            option
                .as_str()
                .unwrap()
                .split_whitespace()
                .map(str::to_owned),
        );
    }
    args.extend(
        [
            "--net=host",
            "--cap-add=SYS_ADMIN",
            "--device=/dev/fuse",
            "--security-opt=apparmor:unconfined",
            "--entrypoint=/bin/bash",
            "--shm-size=1g",
        ]
        .map(String::from),
    );
    args.push(skypilot_job_image());
    let out = run(Command::new("docker").args(&args));
    assert_eq!(out.code, 0, "sky_container: {out}");
    (name, out.stdout.trim().to_owned())
}

/// The environment SkyPilot gives a phase: the task's `envs` (with the launch line's --env), its
/// `secrets`, the phase's SKYPILOT_* variables; plus this test's own settings (its agent's name,
/// ports and stand-in knobs, the stand-in image), which a real task leaves at their defaults.
pub(crate) fn phase_env(
    s: &Scope,
    yaml: &Yaml,
    skypilot: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = yaml["envs"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Null => String::new(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect();
    env.push(("METTA_RUN_ID".into(), "alice.20250829.141502".into()));
    env.push(("DD_API_KEY".into(), KEY.into()));
    env.extend(skypilot.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let agent_env = s.agent_env_twin();
    env.extend(
        [
            ("DDSKY_NAME", s.agent.clone()),
            ("DDSKY_IMAGE", agent_image().to_owned()),
            ("DDSKY_APM_PORT", s.apm_port.to_string()),
            ("DDSKY_DOGSTATSD_PORT", s.dogstatsd_port.to_string()),
            ("DDSKY_AGENT_ENV", agent_env),
            ("DDSKY_AGENT_TIMEOUT", AGENT_TIMEOUT.to_owned()),
            // In runtime mode the job container is sky_container itself (`self`); the default's
            // `metta` would also take in other tests' stand-in jobs running at the same time.
            ("DDSKY_EXPECT", "self".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// `docker exec` of `script` in sky_container through `bash -c`, in ~/sky_workdir, with `env`.
pub(crate) fn exec_script(container: &str, env: &[(String, String)], script: &str) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["exec", "-w", "/root/sky_workdir"]);
    for (k, v) in env {
        cmd.args(["-e", &format!("{k}={v}")]);
    }
    cmd.args([container, "/bin/bash", "-c", script]);
    cmd
}

/// SkyPilot's end of a phase: SIGTERM to every process the phase left (here: every process of the
/// container but its entrypoint, PID 1, which is a superset), SIGKILL to the survivors after the
/// grace. Returns how long the processes took to go, or None when the SIGKILL was needed.
pub(crate) fn end_phase_like_skypilot(container: &str) -> Option<Duration> {
    let grace_tenths = SKYPILOT_KILL_GRACE.as_millis() / 100;
    let script = format!(
        r#"pids=()
for d in /proc/[0-9]*; do p=${{d#/proc/}}; if [ "$p" != 1 ] && [ "$p" != $$ ]; then pids+=("$p"); fi; done
[ ${{#pids[@]}} -gt 0 ] && kill -TERM "${{pids[@]}}" 2>/dev/null
for ((i = 0; i < {grace_tenths}; i++)); do
  alive=(); for p in "${{pids[@]}}"; do [ -d /proc/$p ] && alive+=("$p"); done
  if [ ${{#alive[@]}} -eq 0 ]; then echo "gone after $i"; exit 0; fi
  sleep 0.1
done
kill -KILL "${{alive[@]}}"; echo "SIGKILLED ${{alive[*]}}"; exit 9"#
    );
    let start = Instant::now();
    let out = docker(&["exec", container, "/bin/bash", "-c", &script]);
    match out.code {
        0 => Some(start.elapsed()),
        _ => {
            eprintln!("end of phase: {out}");
            None
        }
    }
}

#[test]
fn runtime_mode_setup_survives_skypilots_end_of_setup_and_ddsky_run_down_tears_down_in_the_window()
{
    // As the example task starts it: no DDSKY_RUN_DIR, the host's default run dir.
    let s = Scope::holding("rehearsal", &[HostResource::DefaultRunDir]);
    let yaml = runtime_yaml();
    let (sky, sky_id) = start_sky_container(&s, &yaml);

    // Setup, on node 0 of 1, as SkyPilot sets it up.
    let task_id = "sky-2026-11-29-22-18-31-563597_metta-dd_1";
    let cluster_info = r#"{"cluster_name": "metta-dd", "cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a"}"#;
    let setup_env = phase_env(
        &s,
        &yaml,
        &[
            ("SKYPILOT_SETUP_NODE_RANK", "0"),
            ("SKYPILOT_SETUP_NODE_IPS", "127.0.0.1"),
            ("SKYPILOT_NUM_NODES", "1"),
            ("SKYPILOT_TASK_ID", task_id),
            ("SKYPILOT_CLUSTER_INFO", cluster_info),
        ],
    );
    let setup = yaml["setup"].as_str().unwrap();
    let out = run(&mut exec_script(&sky, &setup_env, setup));
    out.expect_code(0).assert_no_secret(&[]);
    assert!(!out.stderr.contains("WARNING"), "setup warned:\n{out}");

    // SkyPilot ends the setup phase: whatever it left is SIGTERMed, then SIGKILLed.
    assert!(
        end_phase_like_skypilot(&sky).is_some(),
        "setup left a process that ignores SIGTERM"
    );

    // The agent outlives setup, carries the setup phase's tags, and has discovered sky_container.
    let agent = inspect(&s.agent).expect("the agent outlives the setup phase");
    assert_eq!(agent["State"]["Running"], true, "{agent}");
    let tags = env_of(&agent)
        .into_iter()
        .find_map(|e| e.strip_prefix("DD_TAGS=").map(str::to_owned))
        .expect("DD_TAGS");
    for tag in [
        "env:production",
        "service:skypilot-worker",
        "metta_run_id:alice.20250829.141502",
        &format!("skypilot_task_id:{task_id}"),
        "skypilot_node_rank:0",
        "skypilot_num_nodes:1",
        "skypilot_cluster:metta-dd",
        "region:us-east-1",
    ] {
        assert!(tags.split(' ').any(|t| t == tag), "{tag} in {tags}");
    }
    let status = run(s.ddsky().args([
        "status", "--expect", &sky_id, "--wait", "60s", "--format", "json",
    ]));
    status.expect_code(0);
    assert_eq!(status.json()["expected"][0]["discovered"], true, "{status}");

    // Run, cancelled (`sky cancel`): SIGTERM to the run phase's processes; `ddsky run --down` must
    // have drained and removed the agent before SkyPilot's SIGKILL 30 s later.
    let run_env = phase_env(
        &s,
        &yaml,
        &[
            ("SKYPILOT_NODE_RANK", "0"),
            ("SKYPILOT_NODE_IPS", "127.0.0.1"),
            ("SKYPILOT_NUM_NODES", "1"),
            ("SKYPILOT_TASK_ID", task_id),
            ("SKYPILOT_CLUSTER_INFO", cluster_info),
        ],
    );
    let run_block = yaml["run"].as_str().unwrap();
    assert!(
        run_block.contains("python train.py"),
        "the example's training command"
    );
    let run_block = run_block.replace("python train.py", "sleep 600");
    let job = exec_script(&sky, &run_env, &run_block)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let training = eventually(Duration::from_secs(30), || {
        docker(&["top", &sky]).stdout.contains("sleep 600")
    });
    assert!(training, "the run block reached its training command");
    let ended = end_phase_like_skypilot(&sky);
    let out = job.wait_with_output().unwrap();
    let run_out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let within = ended.unwrap_or_else(|| {
        panic!("the run phase was still there {SKYPILOT_KILL_GRACE:?} after SIGTERM: SIGKILLed\n{run_out}")
    });
    assert_eq!(
        out.status.code(),
        Some(143),
        "exit 143: the job's death by SIGTERM, passed on by ddsky run\n{run_out}"
    );
    assert!(
        inspect(&s.agent).is_none(),
        "ddsky run --down removed the agent (within {within:?})\n{run_out}"
    );
    assert!(!run_out.contains(KEY), "{run_out}");
}
