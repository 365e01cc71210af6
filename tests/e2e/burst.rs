//! A burst is copied whole (issue 31): in SkyPilot's runtime mode a job that prints 100,000 lines at
//! once and exits has every one of them in sky_container's own log, and `ddsky run --down` has the
//! agent send them all before it stops; the job's own output and exit status are unchanged.

use crate::common::*;
use crate::rehearsal::{exec_script, phase_env, runtime_yaml, start_sky_container};

const BURST: usize = 100_000;

/// The job: the whole burst in one go (a config dump, NCCL's start-up lines), then a non-zero exit.
/// (bash's printf builtin: the image has no sed.)
const BURST_JOB: &str = "printf 'burst line %s\\n' {1..100000}; exit 4";

fn burst_lines() -> Vec<String> {
    (1..=BURST).map(|i| format!("burst line {i}")).collect()
}

/// `got` is the burst, whole and in order; else a short description of the first difference
/// (never 100,000 lines in a failure message).
fn check_whole(what: &str, got: &[impl AsRef<str>], context: &str) {
    let want = burst_lines();
    let first_bad = got
        .iter()
        .zip(&want)
        .position(|(g, w)| g.as_ref() != w.as_str());
    assert!(
        got.len() == BURST && first_bad.is_none(),
        "{what}: {} of {BURST} lines, first difference at index {first_bad:?} ({:?}); {context}",
        got.len(),
        first_bad.map(|i| got[i].as_ref().to_owned()),
    );
}

#[test]
fn a_burst_of_100000_lines_reaches_the_container_log_and_the_intake_whole_and_the_job_is_unchanged()
{
    let s = Scope::new("burst");
    let intake = Intake::start(200, 202);
    let run_dir = scratch_dir("burst-run");
    let yaml = runtime_yaml();
    let (sky, sky_id) = start_sky_container(&s, &yaml);
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
        // A generous bound: the stand-in (a debug build, on a busy 2-core machine) sends a few
        // hundred lines a second here; what is tested is that every line is sent before the
        // agent stops, not how fast (bench.sh figure 9b measures the copy).
        env.push(("DDSKY_DOWN_TIMEOUT".into(), "240s".into()));
        env
    };
    let task_id = "sky-2026-12-07-03-18-31-563597_burst_1";
    let setup_env = with_intake(phase_env(
        &s,
        &yaml,
        &[
            ("SKYPILOT_SETUP_NODE_RANK", "0"),
            ("SKYPILOT_NUM_NODES", "1"),
            ("SKYPILOT_TASK_ID", task_id),
        ],
    ));
    run(&mut exec_script(
        &sky,
        &setup_env,
        yaml["setup"].as_str().unwrap(),
    ))
    .expect_code(0);
    assert!(inspect(&s.agent).is_some(), "setup started the agent");

    let run_block = yaml["run"]
        .as_str()
        .unwrap()
        .replace("python train.py", &format!("bash -c \"{BURST_JOB}\""));
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
    out.expect_code(4);
    // The job's own output, unchanged and whole, in SkyPilot's log.
    let job_out: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("burst line "))
        .collect();
    check_whole("the job's stdout", &job_out, &out.stderr);
    assert!(
        !out.stderr.contains("not copied"),
        "no line was lost on the way to the container log: {}",
        out.stderr
    );
    assert!(
        inspect(&s.agent).is_none(),
        "run --down removed the agent: {out}"
    );

    // Every line in sky_container's own log (the pty's \r\n line ends trimmed), in order.
    let logs = docker(&["logs", &sky]);
    let in_log: Vec<&str> = logs
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("burst line "))
        .collect();
    check_whole("the container log", &in_log, &out.stderr);

    // And every one of them sent by the agent before it stopped, in order.
    let sent: Vec<String> = intake
        .logs_of(&sky_id)
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m.starts_with("burst line "))
        .collect();
    check_whole("the lines the agent sent", &sent, &out.stderr);
}
