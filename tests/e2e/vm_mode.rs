//! VM mode (issue 32): SkyPilot's default, the job on the VM itself, no job container. `ddsky up`
//! declares the agent's file sources in its conf.d before the agent starts; `ddsky run` writes the
//! job's two streams into a new pair of files the agent tails; `run --down` waits until the agent
//! has sent them (its registry's offsets) before it stops it. Against the stand-in's file tailing
//! at the real agent's timings (a new file found by the scan within 10 s, 5 s batches).

use crate::common::*;
use crate::fake_datadog::{Behaviour, FakeDatadog, World, APP_KEY};
use std::path::Path;
use std::process::Command;

const RUN_ID: &str = "alice.20261207.161500";
const TRACEBACK: usize = 200;

/// `up`'s flags for this scope's stand-in, logs to `intake`, VM mode: given to `up` and to
/// `ddsky run` alike, so that run's refresh finds the agent up to date.
fn vm_args(s: &Scope, intake: &Intake) -> Vec<String> {
    let mut args: Vec<String> = [
        "--image",
        agent_image(),
        "--timeout",
        "60s",
        "--secret-timeout",
        "2s",
        "--vm-mode",
    ]
    .map(String::from)
    .to_vec();
    args.extend(s.port_args());
    args.extend(s.agent_args());
    args.extend([
        "--run-dir".to_string(),
        s.run_dir.path().to_str().unwrap().to_string(),
        "--agent-env".to_string(),
        format!("DD_LOGS_CONFIG_LOGS_DD_URL={}", intake.url()),
    ]);
    args
}

/// `ddsky <command>` for node 0 of a one-node run, with the key.
fn node(s: &Scope, command: &str) -> Command {
    let mut cmd = s.ddsky();
    cmd.env("DD_API_KEY", KEY)
        .env("METTA_RUN_ID", RUN_ID)
        .env("SKYPILOT_NODE_RANK", "0")
        .env("SKYPILOT_NUM_NODES", "1")
        .arg(command);
    cmd
}

fn up(s: &Scope, intake: &Intake) {
    let out = run(node(s, "up").args(vm_args(s, intake)));
    out.expect_code(0);
    let confd = s.job_log_dir.path().join("conf.d/conf.yaml");
    assert!(
        confd.is_file(),
        "up wrote the agent's conf.d before starting it: {out}"
    );
}

/// A job that logs 300 steps, crashes with a 200-line traceback on stderr, prints a last line and
/// exits 3.
fn failing_job(tag: &str) -> String {
    format!(
        r#"for i in $(seq 1 300); do echo "{tag} step $i loss=0.$i"; done
{{ echo "Traceback (most recent call last):"; for i in $(seq 1 {frames}); do echo "  File \"train.py\", line $i, in {tag}_step_$i"; done; echo "RuntimeError: {tag} boom"; }} >&2
echo "{tag} the last line"
exit 3"#,
        frames = TRACEBACK - 2
    )
}

fn stdout_lines(tag: &str) -> Vec<String> {
    let mut lines: Vec<String> = (1..=300)
        .map(|i| format!("{tag} step {i} loss=0.{i}"))
        .collect();
    lines.push(format!("{tag} the last line"));
    lines
}

/// The traceback as the agent sends it: each line trimmed.
fn stderr_lines(tag: &str) -> Vec<String> {
    let mut lines = vec!["Traceback (most recent call last):".to_string()];
    lines.extend(
        (1..=TRACEBACK - 2).map(|i| format!("File \"train.py\", line {i}, in {tag}_step_{i}")),
    );
    lines.push(format!("RuntimeError: {tag} boom"));
    lines
}

/// The messages the intake got from the stream's file source that belong to `tag`'s job.
fn sent(intake: &Intake, stream: &str, tag: &str) -> Vec<String> {
    let stream_tag = format!("stream:{stream}");
    intake
        .logs()
        .into_iter()
        .filter(|e| e.ddtags.contains(&stream_tag))
        .map(|e| e.message)
        .filter(|m| m.contains(tag) || m.starts_with("Traceback"))
        .collect()
}

fn run_job(s: &Scope, intake: &Intake, down: bool, job: &str) -> Run {
    let mut cmd = node(s, "run");
    cmd.args(vm_args(s, intake));
    if down {
        // A generous bound: a new file is found by the agent's scan up to 10 s late, then waits
        // for its 5 s batch; what is tested is that the drain waits for it, not how fast.
        cmd.args(["--down", "--down-timeout", "90s"]);
    }
    run(cmd.args(["--", "sh", "-c", job]))
}

#[test]
fn vm_mode_every_line_of_a_failing_job_is_sent_tagged_before_the_agent_stops() {
    let s = Scope::new("vmmode");
    let intake = Intake::start(200, 202);
    up(&s, &intake);
    let out = run_job(&s, &intake, true, &failing_job("one"));
    out.expect_code(3).assert_no_secret(&[]);
    // The job's output, each stream unchanged.
    let want_out: String = stdout_lines("one")
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(out.stdout, want_out, "{}", out.stderr);
    let traceback: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| {
            l.starts_with("Traceback") || l.contains("train.py") || l.starts_with("RuntimeError")
        })
        .map(str::trim)
        .collect();
    assert_eq!(traceback, stderr_lines("one"), "{}", out.stderr);
    assert!(
        inspect(&s.agent).is_none(),
        "run --down removed the agent: {out}"
    );
    assert!(
        out.stderr.contains("2 job files") && out.stderr.contains("drained"),
        "the drain's line names the job files: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("WARN"), "{}", out.stderr);

    // Every line, each stream in order, from its own source.
    assert_eq!(sent(&intake, "stdout", "one"), stdout_lines("one"));
    assert_eq!(sent(&intake, "stderr", "one"), stderr_lines("one"));
    let last = intake
        .logs()
        .into_iter()
        .find(|e| e.message == "RuntimeError: one boom")
        .unwrap();
    for tag in [
        format!("metta_run_id:{RUN_ID}"),
        "skypilot_node_rank:0".to_string(),
        "skypilot_num_nodes:1".to_string(),
        "env:production".to_string(),
        "stream:stderr".to_string(),
    ] {
        assert!(last.ddtags.contains(&tag), "{tag} in {:?}", last.ddtags);
    }
    assert_eq!(last.service, "skypilot-worker");
    assert_eq!(last.ddsource, "skypilot");
}

#[test]
fn vm_mode_two_runs_in_a_row_each_send_their_lines_once() {
    let s = Scope::new("vmmodetwice");
    let intake = Intake::start(200, 202);
    up(&s, &intake);
    run_job(&s, &intake, false, &failing_job("first")).expect_code(3);
    assert!(
        inspect(&s.agent).is_some(),
        "without --down the agent stays"
    );
    let second = run_job(&s, &intake, true, &failing_job("second"));
    second.expect_code(3);
    assert!(inspect(&s.agent).is_none(), "{second}");
    // Both runs whole, each line once: the second run's file is new, the first's never re-read.
    for tag in ["first", "second"] {
        assert_eq!(sent(&intake, "stdout", tag), stdout_lines(tag), "{second}");
        let errs: Vec<String> = sent(&intake, "stderr", tag)
            .into_iter()
            .filter(|m| m.contains(tag))
            .collect();
        assert_eq!(errs, stderr_lines(tag)[1..].to_vec(), "{second}");
    }
    // Each run had its own pair of files.
    let names: Vec<String> = std::fs::read_dir(s.job_log_dir.path().join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".stdout.log") || n.ends_with(".stderr.log")),
        "{names:?}"
    );
}

#[test]
fn vm_mode_an_unwritable_job_directory_is_one_warning_and_the_job_is_untouched() {
    let s = Scope::new("vmmodeunwritable");
    let intake = Intake::start(200, 202);
    up(&s, &intake);
    // The job directory replaced by a file: no file can be created there (root ignores modes).
    let jobs = s.job_log_dir.path().join("jobs");
    std::fs::remove_dir_all(&jobs).unwrap();
    std::fs::write(&jobs, "not a directory").unwrap();
    let out = run_job(&s, &intake, false, &failing_job("blocked"));
    out.expect_code(3);
    let want_out: String = stdout_lines("blocked")
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(out.stdout, want_out, "{}", out.stderr);
    assert!(
        out.stderr.contains("RuntimeError: blocked boom"),
        "{}",
        out.stderr
    );
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {}", out.stderr);
    assert!(
        warnings[0].contains("not copied")
            && warnings[0].contains(&Path::new(&jobs).display().to_string()),
        "{}",
        warnings[0]
    );
}

#[test]
fn verify_of_a_vm_mode_run_is_ok_without_a_job_container() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut world = World::synthetic(2, "vmrun", now, &[], &[]);
    // On the VM there is no job container: no container metrics at all.
    world.points.retain(|p| !p.metric.starts_with("docker."));
    let fake = FakeDatadog::start(Behaviour::new(), move || world.clone());
    let verify = |extra: &[&str]| {
        let mut cmd = ddsky_without_docker();
        cmd.env("DD_API_KEY", KEY)
            .env("DD_APP_KEY", APP_KEY)
            .env("DDSKY_API_URL", fake.url())
            .args([
                "verify", "--no-aws", "--run-id", "vmrun", "--format", "json",
            ])
            .args(extra);
        run(&mut cmd)
    };
    let without = verify(&[]);
    without.expect_code(4);
    assert_eq!(without.json()["nodes"][0]["container"]["status"], "missing");
    let vm = verify(&["--vm-mode"]);
    vm.expect_code(0);
    let report = vm.json();
    assert_eq!(report["ok"], true, "{vm}");
    for n in report["nodes"].as_array().unwrap() {
        assert_eq!(n["container"]["status"], "not_expected", "{vm}");
        assert_eq!(n["agent"]["status"], "ok");
        assert_eq!(n["logs"]["status"], "ok");
    }
}

#[test]
fn vm_mode_a_new_run_on_a_kept_cluster_has_every_line_sent_with_its_own_tags() {
    let s = Scope::new("vmmodeexec");
    let intake = Intake::start(200, 202);
    up(&s, &intake);
    // `sky exec` on the kept cluster: no setup, a new run id; `ddsky run`'s refresh recreates the
    // agent with the new tags while the job already prints. Its file must still be read whole.
    // The job prints its steps, then waits (a training job runs on) until the agent carrying the
    // new run's tags runs, then crashes: its first lines were printed before the new agent was up.
    let wait_for_new_agent = format!(
        r#"for i in $(seq 1 600); do docker inspect -f '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' {agent} 2>/dev/null | grep -q 'metta_run_id:bob' && break; sleep 0.2; done"#,
        agent = s.agent
    );
    let job = failing_job("exec").replacen("\n{", &format!("\n{wait_for_new_agent}\n{{"), 1);
    assert!(job.contains("docker inspect"), "{job}");
    let mut cmd = node(&s, "run");
    cmd.env("METTA_RUN_ID", "bob.20261207.170000")
        .args(vm_args(&s, &intake))
        .args(["--down", "--down-timeout", "90s", "--", "sh", "-c"])
        .arg(job);
    let out = run(&mut cmd);
    out.expect_code(3);
    assert!(
        out.stderr.contains("recreated"),
        "the refresh recreated the agent: {out}"
    );
    assert!(inspect(&s.agent).is_none(), "{out}");
    assert_eq!(
        sent(&intake, "stdout", "exec"),
        stdout_lines("exec"),
        "{out}"
    );
    assert_eq!(
        sent(&intake, "stderr", "exec"),
        stderr_lines("exec"),
        "{out}"
    );
    let last = intake
        .logs()
        .into_iter()
        .find(|e| e.message == "exec the last line")
        .unwrap();
    assert!(
        last.ddtags
            .iter()
            .any(|t| t == "metta_run_id:bob.20261207.170000"),
        "the new run's tags: {:?}",
        last.ddtags
    );
}
