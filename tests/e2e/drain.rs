//! The job's every line, in Datadog: the runtime-mode rehearsal with `ddsky run --down` and a job
//! that crashes with a traceback, `ddsky down` right after a task-mode job, and `--no-drain` losing
//! what the drain keeps (against an intake slow enough that the stand-in's stop cannot send it).

use crate::common::*;
use crate::rehearsal::{exec_script, phase_env, runtime_yaml, start_sky_container};
use std::process::Command;
use std::time::Duration;

const TRACEBACK_FRAMES: usize = 300;

/// A training job that logs its steps, then crashes: a ~21 KiB traceback on stderr, exit 1 at once.
/// It runs a few seconds first, as any training job does: an agent, the real one too, discovers a
/// container about a second after it starts, and never collects one that was gone before that.
/// (The pause before the traceback fixes the two streams' order in a json log: Docker copies a
/// container's stdout and stderr to it separately.)
fn crashing_job() -> String {
    format!(
        r#"sleep 3; for i in $(seq 1 50); do echo "step $i loss=0.$i"; done
sleep 0.3
{{ echo "Traceback (most recent call last):"; for i in $(seq 1 {TRACEBACK_FRAMES}); do echo "  File \"/workspace/metta/metta/rl/trainer.py\", line $i, in train_step_$i"; done; echo "RuntimeError: CUDA error: device-side assert triggered"; }} >&2
exit 1"#
    )
}

/// The lines the job printed, in order.
fn expected_lines() -> Vec<String> {
    let mut lines: Vec<String> = (1..=50).map(|i| format!("step {i} loss=0.{i}")).collect();
    lines.push("Traceback (most recent call last):".into());
    lines.extend((1..=TRACEBACK_FRAMES).map(|i| {
        format!("File \"/workspace/metta/metta/rl/trainer.py\", line {i}, in train_step_{i}")
    }));
    lines.push("RuntimeError: CUDA error: device-side assert triggered".into());
    lines
}

/// The job's lines as the intake received them (the agent trims each message), in arrival order.
fn received_lines(intake: &Intake, container: &str) -> Vec<String> {
    intake
        .logs_of(container)
        .into_iter()
        .map(|e| e.message)
        .filter(|m| {
            m.starts_with("step ")
                || m.contains("Traceback")
                || m.contains("trainer.py")
                || m.starts_with("RuntimeError")
        })
        .collect()
}

fn write_job_script(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("job.sh");
    std::fs::write(&path, crashing_job()).unwrap();
    path
}

#[test]
fn runtime_mode_every_line_of_a_crashing_job_reaches_the_intake_before_the_agent_stops() {
    let s = Scope::new("drainrehearsal");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("drainrehearsal-run");
    let yaml = runtime_yaml();
    let (sky, sky_id) = start_sky_container(&s, &yaml);
    let scripts = scratch_dir("drainrehearsal-job");
    docker(&[
        "cp",
        write_job_script(&scripts).to_str().unwrap(),
        &format!("{sky}:/root/job.sh"),
    ])
    .expect_code(0);

    let with_intake = |mut env: Vec<(String, String)>| {
        for (k, v) in env.iter_mut() {
            if k == "DDSKY_AGENT_ENV" {
                v.push_str(&format!(" DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()));
            }
        }
        env.push((
            "DDSKY_RUN_DIR".into(),
            run_dir.path().to_str().unwrap().into(),
        ));
        env
    };
    let task_id = "sky-2026-12-06-03-18-31-563597_metta-dd_1";
    let setup_env = with_intake(phase_env(
        &s,
        &yaml,
        &[
            ("SKYPILOT_SETUP_NODE_RANK", "0"),
            ("SKYPILOT_NUM_NODES", "1"),
            ("SKYPILOT_TASK_ID", task_id),
        ],
    ));
    let setup = run(&mut exec_script(
        &sky,
        &setup_env,
        yaml["setup"].as_str().unwrap(),
    ));
    setup.expect_code(0);
    assert!(
        inspect(&s.agent).is_some(),
        "setup started the agent: {setup}"
    );

    // The run block, exactly as the example has it, with the training command swapped for the job.
    let run_block = yaml["run"].as_str().unwrap();
    assert!(
        run_block.contains("run --down --} python train.py"),
        "{run_block}"
    );
    let run_block = run_block.replace("python train.py", "bash /root/job.sh");
    let run_env = with_intake(phase_env(
        &s,
        &yaml,
        &[
            ("SKYPILOT_NODE_RANK", "0"),
            ("SKYPILOT_NUM_NODES", "1"),
            ("SKYPILOT_TASK_ID", task_id),
        ],
    ));
    let out = run(&mut exec_script(&sky, &run_env, &run_block));
    out.expect_code(1).assert_no_secret(&[]);
    // What SkyPilot's log gets is the job's own output.
    assert!(out.stdout.contains("step 50 loss=0.50"), "{out}");
    assert!(out.stderr.contains("RuntimeError: CUDA error"), "{out}");
    // The agent tails every container on the daemon: the sky container is among those drained.
    let drained = drained_line(&out.stderr);
    assert!(
        drained.contains(&format!(": {sky}")) || drained.contains(&format!(", {sky}")),
        "{out}"
    );
    assert!(
        inspect(&s.agent).is_none(),
        "run --down removed the agent: {out}"
    );

    // Every line, the traceback's last included, arrived, in order, with the run's tags.
    assert_eq!(received_lines(&intake, &sky_id), expected_lines(), "{out}");
    let last = intake
        .logs_of(&sky_id)
        .into_iter()
        .find(|e| e.message.starts_with("RuntimeError"))
        .unwrap();
    for tag in [
        "metta_run_id:alice.20250829.141502",
        "skypilot_node_rank:0",
        &format!("skypilot_task_id:{task_id}"),
        &format!("container_id:{sky_id}"),
    ] {
        assert!(
            last.ddtags.iter().any(|t| t == tag),
            "{tag} in {:?}",
            last.ddtags
        );
    }
}

/// The drain's one line (`drained N containers' logs in ...: names; skipped: ...`) in `text`.
fn drained_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("drained ") && l.contains(" in "))
        .unwrap_or_else(|| panic!("no drain line in:\n{text}"))
}

/// The entry of `down --format json`'s drain report for one container.
fn drained_container<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["drain"]["containers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the drain report: {report}"))
}

/// The agent's logs filter narrowed to the named job containers of this test, in place of the
/// harness's whole scope ([`Scope::own_logs_only`]; the last of duplicate settings wins): the
/// test's other containers are not collected, and `DD_CONTAINER_INCLUDE_LOGS` wins over the
/// exclusion of all.
fn only_the_tests_jobs(s: &Scope, jobs: &str) -> [String; 4] {
    [
        "--agent-env".into(),
        "DD_CONTAINER_EXCLUDE_LOGS=name:.*".into(),
        "--agent-env".into(),
        format!("DD_CONTAINER_INCLUDE_LOGS=name:^{}-({jobs})$", s.prefix),
    ]
}

/// `ddsky up` on the host with the intake for logs and the test's own run dir, collecting the logs
/// of the test's `job`, `kept` and `lost` containers.
fn up_with_logs(s: &Scope, intake: &Intake, run_dir: &tempfile::TempDir, expect: &str) {
    run(s.up().args(only_the_tests_jobs(s, "job|kept|lost")).args([
        "--agent-env",
        &format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
        "--run-dir",
        run_dir.path().to_str().unwrap(),
        "--expect",
        expect,
    ]))
    .expect_code(0);
}

/// A task-mode job: a named host container, in the foreground, not removed when it exits.
fn run_task_mode_job(name: &str, script: &std::path::Path) -> String {
    let out = run(Command::new("docker").args([
        "run",
        "--name",
        name,
        "-v",
        &format!("{}:/root/job.sh:ro", script.display()),
        "--entrypoint",
        "/bin/bash",
        &format!("{}/skypilot-job:latest", image_namespace()),
        "/root/job.sh",
    ]));
    out.expect_code(1);
    inspect(name).unwrap()["Id"].as_str().unwrap().to_owned()
}

#[test]
fn down_right_after_a_task_mode_job_loses_nothing_and_says_how_long_the_drain_took() {
    let s = Scope::new("draintask");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("draintask-run");
    let scripts = scratch_dir("draintask-job");
    let script = write_job_script(&scripts);
    let job = s.name("job");
    up_with_logs(&s, &intake, &run_dir, &job);
    let id = run_task_mode_job(&job, &script);
    // A budget far above the agent's cadence (5 s batches): the drain's end is what is tested,
    // not its speed on a busy machine.
    let down = run(s.ddsky().args([
        "down",
        "--expect",
        &job,
        "--format",
        "json",
        "--timeout",
        "120s",
    ]));
    down.expect_code(0);
    let report = down.json();
    assert_eq!(report["drain"]["done"], true, "{down}");
    let drained = drained_container(&report, &id);
    assert_eq!(drained["state"], "sent", "{down}");
    assert_eq!(drained["unsent_bytes"], 0, "{down}");
    assert_eq!(report["killed"], false, "{down}");
    assert!(drained_line(&down.stderr).contains(&job), "{down}");
    assert_eq!(received_lines(&intake, &id), expected_lines());
    // Not a TTY: stderr lines are errors.
    let last = intake.logs_of(&id).into_iter().last().unwrap();
    assert_eq!(last.status, "error", "{last:?}");
}

#[test]
fn no_drain_loses_the_tail_that_the_drain_keeps() {
    let s = Scope::new("drainnodrain");
    // An intake that answers logs after 9 s: longer than the agent lives after SIGTERM (s6's
    // services grace, 8 s as ddsky sets it), so a send still waiting at the stop is lost, and
    // shorter than the agent's 10 s request timeout, so a send that is waited for succeeds.
    let intake = Intake::start_with_logs_delay(200, 202, Duration::from_secs(9));
    let run_dir = scratch_dir("drainnodrain-run");
    let scripts = scratch_dir("drainnodrain-job");
    let script = write_job_script(&scripts);

    // With the drain (a budget long enough for one slow answer), nothing is lost.
    let kept = s.name("kept");
    up_with_logs(&s, &intake, &run_dir, &kept);
    let kept_id = run_task_mode_job(&kept, &script);
    let down = run(s
        .ddsky()
        .args(["down", "--expect", &kept, "--timeout", "60s"]));
    down.expect_code(0);
    assert!(drained_line(&down.stdout).contains(&kept), "{down}");
    assert_eq!(
        received_lines(&intake, &kept_id),
        expected_lines(),
        "{down}"
    );

    // Without it, the same job's lines are lost: the agent is stopped while its sends wait. An
    // intake that holds its answers until the agent is gone makes the stop land before any
    // answer, however slow the machine: the lines were sent, never acknowledged.
    let held = Intake::start_holding_logs(200, 202);
    let lost = s.name("lost");
    up_with_logs(&s, &held, &run_dir, &lost);
    let lost_id = run_task_mode_job(&lost, &script);
    assert!(
        eventually(Duration::from_secs(120), || !held
            .held_logs_of(&lost_id)
            .is_empty()),
        "the agent sends the job's lines before the stop"
    );
    let down = run(s.ddsky().args(["down", "--expect", &lost, "--no-drain"]));
    down.expect_code(0);
    held.release_logs_and_settle();
    let got = received_lines(&held, &lost_id);
    assert!(
        got.len() < expected_lines().len(),
        "without the drain the stand-in must lose the tail (got all {} lines): it is kinder than the real agent",
        got.len()
    );
}

/// A job that prints its lines, then ends with empty and whitespace-only lines (`print()`, a tty's
/// `\r\n`), as many training scripts do: the agent sends none of those, so its registry offset
/// stays at the end of the last real line.
const BLANK_TAIL_JOB: &str = r#"sleep 3; for i in $(seq 1 40); do echo "epoch $i done"; done
echo; echo "   "; printf '\t \r\n'; echo
exit 1"#;

fn blank_tail_lines(intake: &Intake, id: &str) -> Vec<String> {
    intake
        .logs_of(id)
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m.starts_with("epoch "))
        .collect()
}

#[test]
fn down_after_a_job_ending_in_blank_lines_returns_once_the_last_real_line_is_sent() {
    let s = Scope::new("drainblank");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("drainblank-run");
    let scripts = scratch_dir("drainblank-job");
    let script = scripts.path().join("job.sh");
    std::fs::write(&script, BLANK_TAIL_JOB).unwrap();
    let job = s.name("job");
    up_with_logs(&s, &intake, &run_dir, &job);
    let id = run_task_mode_job(&job, &script);
    // A budget far above the agent's cadence: a drain that waits for the empty lines runs it out.
    let down = run(s
        .ddsky()
        .args(["down", "--format", "json", "--timeout", "60s"]));
    down.expect_code(0);
    let report = down.json();
    eprintln!(
        "bench: down after a job ending in blank lines drained in {} s",
        report["drain"]["seconds"]
    );
    assert_eq!(report["drain"]["done"], true, "{down}");
    assert_eq!(drained_container(&report, &id)["state"], "sent", "{down}");
    let expected: Vec<String> = (1..=40).map(|i| format!("epoch {i} done")).collect();
    assert_eq!(blank_tail_lines(&intake, &id), expected, "{down}");
}

#[test]
fn down_drains_a_job_container_of_another_image_than_expect_names() {
    let s = Scope::new("drainother");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("drainother-run");
    let scripts = scratch_dir("drainother-job");
    let script = write_job_script(&scripts);
    // `up` expects metta (the default); the job runs the skypilot-job image under another name.
    up_with_logs(&s, &intake, &run_dir, "metta");
    let job = s.name("job");
    let id = run_task_mode_job(&job, &script);
    let down = run(s
        .ddsky()
        .args(["down", "--format", "json", "--timeout", "120s"]));
    down.expect_code(0);
    let report = down.json();
    assert_eq!(report["drain"]["done"], true, "{down}");
    assert_eq!(drained_container(&report, &id)["state"], "sent", "{down}");
    assert_eq!(received_lines(&intake, &id), expected_lines(), "{down}");
}

#[test]
fn a_container_the_agent_excludes_is_reported_skipped_with_the_reason() {
    let s = Scope::new("drainexcluded");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("drainexcluded-run");
    let scripts = scratch_dir("drainexcluded-job");
    let script = write_job_script(&scripts);
    let excluded = s.name("excluded");
    let job = s.name("job");
    // Every container but the job is excluded: the excluded one too.
    run(s.up().args(only_the_tests_jobs(&s, "job")).args([
        "--agent-env",
        &format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
        "--run-dir",
        run_dir.path().to_str().unwrap(),
        "--expect",
        &job,
    ]))
    .expect_code(0);
    let excluded_id = run_task_mode_job(&excluded, &script);
    let job_id = run_task_mode_job(&job, &script);
    let down = run(s
        .ddsky()
        .args(["down", "--format", "json", "--timeout", "120s"]));
    down.expect_code(0);
    let report = down.json();
    assert_eq!(report["drain"]["done"], true, "{down}");
    let skipped = drained_container(&report, &excluded_id);
    assert_eq!(skipped["state"], "skipped", "{down}");
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the agent does not tail it")),
        "{down}"
    );
    assert!(
        down.stderr
            .contains(&format!("{excluded} (the agent does not tail it")),
        "{down}"
    );
    assert_eq!(
        drained_container(&report, &job_id)["state"],
        "sent",
        "{down}"
    );
    assert_eq!(received_lines(&intake, &job_id), expected_lines(), "{down}");
    assert!(received_lines(&intake, &excluded_id).is_empty(), "{down}");
}
