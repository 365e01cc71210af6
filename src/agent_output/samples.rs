//! The agent's sample outputs (tests/fixtures/agent-output, whose README says where each comes
//! from). The stand-in's renderer is tested against the same files.

macro_rules! sample {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/agent-output/",
            $file
        ))
    };
}

pub const HEALTH_PASS: &str = sample!("health-pass.stdout");
pub const HEALTH_FORWARDER_UNHEALTHY: (&str, &str) = (
    sample!("health-forwarder-unhealthy.stdout"),
    sample!("health-forwarder-unhealthy.stderr"),
);
pub const HEALTH_STARTING: (&str, &str) = (
    sample!("health-starting.stdout"),
    sample!("health-starting.stderr"),
);
pub const NO_AUTH_TOKEN: &str = sample!("no-auth-token.stderr");
pub const COULD_NOT_REACH_AGENT: &str = sample!("could-not-reach-agent.stderr");
pub const UNKNOWN_FLAG_JSON: &str = sample!("unknown-flag-json.stderr");
pub const WORKLOAD_LIST: &str = sample!("workload-list.txt");
pub const WORKLOAD_LIST_NEWEST: &str = sample!("workload-list-newest.txt");
pub const WORKLOAD_LIST_JSON: &str = sample!("workload-list.json");
pub const TAGGER_LIST: &str = sample!("tagger-list.txt");
pub const TAGGER_LIST_OLDER: &str = sample!("tagger-list-older.txt");
pub const TAGGER_LIST_JSON: &str = sample!("tagger-list.json");
pub const STATUS_JSON: &str = sample!("status.json");
pub const STATUS_OLDER_JSON: &str = sample!("status-older.json");

/// The job container (`metta-job`) in workload-list, tagger-list and their `--json` forms.
pub const JOB: &str = "8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
/// The agent's own container (`dd-agent`).
pub const AGENT: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
/// The job container in workload-list-newest.txt.
pub const NEWEST_JOB: &str = "d884b5186b651429e5b7a8c0f3e2d1c4b6a7980e1f2d3c4b5a6978877665544a";
/// Only ever named by a process entity: never a discovered container.
pub const PROCESS_ONLY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// The job's image as workload-list names it (Metta's ECR repository).
pub const JOB_IMAGE: &str = "751442549699.dkr.ecr.us-east-1.amazonaws.com/metta";

/// A sample as the agent prints it on a terminal: headers, PASS/FAIL and each tag's key and value
/// coloured (fatih/color, as the agent's CLI does when stdout is a TTY).
pub fn on_a_terminal(text: &str) -> String {
    let green = |s: &str| format!("\x1b[32m{s}\x1b[0m");
    let tag = |t: &str| match t.split_once(':') {
        Some((k, v)) => format!("\x1b[34m{k}\x1b[0m:\x1b[36m{v}\x1b[0m"),
        None => t.to_owned(),
    };
    text.split('\n')
        .map(|line| {
            if let Some(inner) = line
                .strip_prefix("=== ")
                .and_then(|l| l.strip_suffix(" ==="))
            {
                format!("=== {} ===", green(inner))
            } else if let Some(verdict) = line.strip_prefix("Agent health: ") {
                format!("Agent health: {}", green(verdict))
            } else if let Some(list) = line
                .strip_prefix("=Tags: [")
                .and_then(|l| l.strip_suffix(']'))
            {
                let tags: Vec<String> = list.split(' ').map(tag).collect();
                format!("=Tags: [{}]", tags.join(" "))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ids sorted, as every parser returns them.
pub fn sorted<'a>(ids: &[&'a str]) -> Vec<&'a str> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}
