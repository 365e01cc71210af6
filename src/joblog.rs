//! The job's output on the VM itself (SkyPilot's default mode, issue 32): there is no job container
//! whose log the agent reads, so `ddsky run` writes the job's lines into files the agent tails as
//! `type: file` log sources, which `ddsky up` declares in the agent's conf.d before the agent starts
//! (conf.d is read once, at the agent's start: shared/datadog-agent.md, "File log sources").
//!
//! On the host, under the job log directory (`--job-log-dir`, `~/.ddsky/job-logs`):
//! - `conf.d/conf.yaml`, mounted read-only at /etc/datadog-agent/conf.d/ddsky.d/: two sources, one
//!   per stream, each a wildcard over the job files with the run's tags, `stream:stdout` or
//!   `stream:stderr` (a file line's status is always `info`), service and `source:skypilot`;
//! - `jobs/<UTC start>-<pid>.stdout.log` and `.stderr.log`, one pair per `ddsky run`, mounted
//!   read-only at /var/log/ddsky-job/ (the sources' `path` is as the agent sees it).
//!
//! Why a new file per run: an unset start_position is END, and 7.6x-7.7x refuse a wildcard path that
//! starts at the beginning; but the agent's scan (every 10 s) reads a file that appears after the
//! source was added from its BEGINNING. So every run's file is new to the agent and read whole,
//! and a file that was there when the agent started (an old run's) starts at its end or at its
//! registry offset: an old run's lines are never sent again.
//!
//! Pure: names, the conf.d text, the mounts and the blank-rest check; the commands do the writing.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

/// Where the job files are, as the agent sees them.
pub const AGENT_JOB_DIR: &str = "/var/log/ddsky-job";
/// Where ddsky's conf.d directory is mounted in the agent: `<name>.d/*.yaml` is read at start.
pub const AGENT_CONFD_DIR: &str = "/etc/datadog-agent/conf.d/ddsky.d";
/// The subdirectories of the job log directory on the host.
pub const JOBS_SUBDIR: &str = "jobs";
pub const CONFD_SUBDIR: &str = "conf.d";
pub const CONF_FILE: &str = "conf.yaml";
/// How often the agent looks for new job files (`logs_config.file_scan_period`, seconds; the
/// agent's default is 10). A run's files are new to the agent, found only by this scan: at 10 s a
/// short job could end, and `run --down`'s drain budget run out, before the agent had read a line.
/// A glob of one directory a second costs the agent nothing.
pub const FILE_SCAN_PERIOD_SECS: &str = "1";
/// The `source` of the job's lines in Datadog (`source:skypilot`).
pub const LOG_SOURCE: &str = "skypilot";
/// The most one run's file of one stream may hold: a job that prints more than this has the rest
/// kept out of the file (counted, one warning), so a runaway job cannot fill the node's disk.
pub const FILE_CAP: u64 = 1024 * 1024 * 1024;

/// Which of the job's streams a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn word(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A run's files' common stem: `<UTC start, to the second>-<pid>`, so names sort by start time
/// (the agent's wildcard takes newest names first) and two runs never share one.
pub fn run_stem(started_rfc3339: &str, pid: u32) -> String {
    format!("{}-{pid}", compact_stamp(started_rfc3339))
}

/// `2026-12-07T16:14:31.123Z` -> `20261207T161431Z` (to the second).
fn compact_stamp(rfc3339: &str) -> String {
    let mut out: String = rfc3339
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    out.push('Z');
    out
}

/// A run's file for one stream.
pub fn file_name(stem: &str, stream: Stream) -> String {
    format!("{stem}.{}.log", stream.word())
}

/// The wildcard path of a stream's source, as the agent sees it.
pub fn source_path(stream: Stream) -> String {
    format!("{AGENT_JOB_DIR}/*.{}.log", stream.word())
}

/// Whether a job file (by name) was begun before the agent started (its `State.StartedAt`): the
/// agent then started it at its end, so what was written before is not its to send (unless its
/// registry has an entry for it). A file of the same second counts as after: it is waited for.
pub fn begun_before(file: &str, agent_started_rfc3339: &str) -> bool {
    let Some(stamp) = file.split('-').next().filter(|s| s.len() == 16) else {
        return false;
    };
    stamp < compact_stamp(agent_started_rfc3339).as_str()
}

/// The agent's mounts of the job log directory `host_dir`: its conf.d and the job files, read-only.
pub fn binds(host_dir: &str) -> [String; 2] {
    let dir = host_dir.trim_end_matches('/');
    [
        format!("{dir}/{CONFD_SUBDIR}:{AGENT_CONFD_DIR}:ro"),
        format!("{dir}/{JOBS_SUBDIR}:{AGENT_JOB_DIR}:ro"),
    ]
}

/// The conf.d file: one `type: file` source per stream, with the run's tags (the agent gives file
/// lines no host or container tags of its own), the stream's tag, the service and the source. No
/// start_position: see the module's comment. Strings are JSON-quoted, which YAML reads as is.
pub fn confd_yaml(tags: &[String], service: &str) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut out = String::from(
        "# Written by `ddsky up`: the job's output on the VM (ddsky run), one source per stream.\nlogs:\n",
    );
    for stream in [Stream::Stdout, Stream::Stderr] {
        let mut source_tags: Vec<String> = tags.to_vec();
        source_tags.push(format!("stream:{}", stream.word()));
        let list = source_tags
            .iter()
            .map(|t| quote(t))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "  - type: file\n    path: {}\n    service: {}\n    source: {}\n    tags: [{list}]\n",
            quote(&source_path(stream)),
            quote(service),
            quote(LOG_SOURCE),
        ));
    }
    out
}

/// Whether the unsent rest of a job file holds only empty lines (spaces, tabs, `\r` aside), which
/// the agent trims and never sends: its offset stops short of them for good.
pub fn only_blank_lines(rest: &[u8]) -> bool {
    rest.iter()
        .all(|b| matches!(b, b'\n' | b' ' | b'\t' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_files_are_named_by_start_and_pid_and_sort_by_start() {
        let stem = run_stem("2026-12-07T16:14:31.123456789Z", 4242);
        assert_eq!(stem, "20261207T161431Z-4242");
        assert_eq!(
            file_name(&stem, Stream::Stdout),
            "20261207T161431Z-4242.stdout.log"
        );
        assert_eq!(
            file_name(&stem, Stream::Stderr),
            "20261207T161431Z-4242.stderr.log"
        );
        let later = run_stem("2026-12-07T16:14:32Z", 17);
        assert!(later > stem, "names sort by start time");
    }

    #[test]
    fn files_begun_before_the_agent_started_are_told_apart() {
        let agent = "2026-12-07T16:14:31.9Z";
        assert!(begun_before("20261207T161430Z-1.stdout.log", agent));
        assert!(
            !begun_before("20261207T161431Z-1.stdout.log", agent),
            "same second: waited for"
        );
        assert!(!begun_before("20261207T161500Z-1.stderr.log", agent));
        assert!(
            !begun_before("notes.log", agent),
            "not a run's file: never taken as old"
        );
    }

    #[test]
    fn the_mounts_are_read_only_at_the_paths_the_sources_name() {
        assert_eq!(
            binds("/home/ubuntu/.ddsky/job-logs/"),
            [
                "/home/ubuntu/.ddsky/job-logs/conf.d:/etc/datadog-agent/conf.d/ddsky.d:ro",
                "/home/ubuntu/.ddsky/job-logs/jobs:/var/log/ddsky-job:ro"
            ]
        );
    }

    #[test]
    fn the_confd_file_declares_a_tagged_source_per_stream_that_the_agent_accepts() {
        let tags = vec![
            "env:production".to_owned(),
            "metta_run_id:alice.20250829.141502".to_owned(),
            "skypilot_node_rank:1".to_owned(),
        ];
        let text = confd_yaml(&tags, "skypilot-worker");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let logs = doc["logs"].as_sequence().unwrap();
        assert_eq!(logs.len(), 2);
        for (source, stream) in logs.iter().zip(["stdout", "stderr"]) {
            assert_eq!(source["type"], "file");
            assert_eq!(
                source["path"],
                format!("/var/log/ddsky-job/*.{stream}.log").as_str()
            );
            assert_eq!(source["service"], "skypilot-worker");
            assert_eq!(source["source"], "skypilot");
            // Unset: a start position of beginning on a wildcard is refused by 7.6x-7.7x.
            assert!(source.get("start_position").is_none());
            let got: Vec<&str> = source["tags"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            let mut want: Vec<String> = tags.clone();
            want.push(format!("stream:{stream}"));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn only_empty_lines_left_do_not_hold_the_drain() {
        assert!(only_blank_lines(b"\n\n  \r\n\t\n"));
        assert!(only_blank_lines(b""));
        assert!(!only_blank_lines(b"\n last line\n"));
    }
}
