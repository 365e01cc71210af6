//! The drain before a stop: has the agent SENT every byte of each job container's log?
//!
//! The agent tails a container's json log and its auditor records, per file, the offset the intake
//! acknowledged (`/opt/datadog-agent/run/registry.json`, written every second). Stopping the agent
//! earlier loses what it had not sent yet: on SIGTERM a tailer reads at most one more 4 KiB chunk, and
//! s6 may kill the agent seconds later (shared/datadog-agent.md, "Logs"). So before a stop ddsky
//! compares each job log's size with its registry offset, until they meet or the budget runs out.
//!
//! Pure here: the registry's JSON and the logs' sizes in, a verdict out; [`wait`] is the loop that
//! gathers them through the engine.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

mod jsonlog;
mod wait;

pub use jsonlog::only_empty_messages;

pub use wait::{drain_and_log, Drained};

use crate::agent_output::LogSource;
use crate::reference::full_container_id;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// A container's json log as Docker reports it, with its size when the drain began: what was
/// written before the stop was asked for is what must be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLog {
    pub id: String,
    pub name: String,
    /// `LogPath`, the same path inside the agent (ddsky mounts the data root's containers/ there).
    pub path: String,
    /// `None`: the file is not there (any more) as the agent sees it.
    pub size: Option<u64>,
    /// The container's labels, which may say why the agent does not tail it.
    pub labels: HashMap<String, String>,
    /// The log was seen to reach the registry's offset after `size` was taken (the container
    /// kept writing): an offset past `size` then means sent, not a rotated file.
    pub grown: bool,
    /// A job file of `ddsky run` on the VM (`joblog`), tailed by a conf.d file source: `id` and
    /// `path` are its path as the agent sees it, `name` its file name.
    pub job_file: bool,
}

/// What the agent said it collects, from one `agent status --json` at the drain's start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tailing {
    /// No answer (or one without a sources list): every log is waited for.
    #[default]
    Unknown,
    /// Container id -> its source's status (`OK`, `Pending`, or the source's error).
    Sources(HashMap<String, String>),
    /// The agent's logs agent is not running (`DD_LOGS_ENABLED` off): it tails nothing.
    Off,
}

impl Tailing {
    /// The agent's `logsStats` sources, by container: the Identifier, else the id in the file name.
    pub fn from_sources(sources: &[LogSource]) -> Self {
        let by_id = sources
            .iter()
            .filter_map(|s| {
                let id = s
                    .identifier
                    .as_deref()
                    .and_then(full_container_id)
                    .or_else(|| {
                        let file = s.path.as_deref()?.rsplit('/').next()?;
                        full_container_id(file.strip_suffix("-json.log")?)
                    })?;
                Some((id, s.status.clone()))
            })
            .collect();
        Tailing::Sources(by_id)
    }
}

/// Labels with which the real agent leaves a container's logs alone (Autodiscovery).
const EXCLUDING_LABELS: [&str; 2] = ["com.datadoghq.ad.logs_exclude", "com.datadoghq.ad.exclude"];

/// Why the agent does not tail a container it lists no source for.
fn not_tailed_reason(labels: &HashMap<String, String>) -> String {
    for label in EXCLUDING_LABELS {
        if labels
            .get(label)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return format!("excluded by its label {label}=true");
        }
    }
    "the agent does not tail it: excluded by name or image (DD_CONTAINER_EXCLUDE_LOGS, DD_CONTAINER_EXCLUDE) or its logs disabled".into()
}

/// What the agent's auditor knows about one container's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Tailed from the file: bytes acknowledged by the intake.
    File { offset: u64 },
    /// Read through the Docker socket (the file could not be opened): the registry keeps a
    /// timestamp there, not a byte offset, so nothing can be compared.
    Socket,
}

/// The auditor's registry, by container id, and every file entry by its path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    positions: HashMap<String, Position>,
    paths: HashMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("the agent's registry.json is not the auditor's format ({0})")]
pub struct RegistryError(String);

#[derive(Deserialize)]
struct RawRegistry {
    #[serde(rename = "Registry", default)]
    registry: HashMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    /// A decimal string in every version seen; a number is taken too.
    #[serde(rename = "Offset", default)]
    offset: Option<serde_json::Value>,
}

impl Registry {
    /// Parses `registry.json`. Entries are keyed `file:<path>` (a tailed file: the id is in the
    /// file's name, `<id>-json.log`) or `docker:<id>` (read through the socket); others are ignored.
    pub fn parse(json: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry =
            serde_json::from_str(json).map_err(|e| RegistryError(e.to_string()))?;
        let mut positions = HashMap::new();
        let mut paths = HashMap::new();
        for (key, entry) in raw.registry {
            if let Some(path) = key.strip_prefix("file:") {
                let offset = match &entry.offset {
                    Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                    Some(serde_json::Value::Number(n)) => n.as_u64(),
                    _ => None,
                };
                paths.insert(path.to_owned(), offset.unwrap_or(0));
                let file = path.rsplit('/').next().unwrap_or_default();
                let Some(id) = file.strip_suffix("-json.log").and_then(full_container_id) else {
                    continue;
                };
                // A file entry wins over a socket one for the same container.
                positions.insert(
                    id,
                    Position::File {
                        offset: offset.unwrap_or(0),
                    },
                );
            } else if let Some(id) = key.strip_prefix("docker:").and_then(full_container_id) {
                positions.entry(id).or_insert(Position::Socket);
            }
        }
        Ok(Registry { positions, paths })
    }

    pub fn position(&self, id: &str) -> Option<Position> {
        self.positions.get(id).copied()
    }

    /// The sent offset of the file at `path` (as the agent sees it), when it has an entry.
    pub fn path_offset(&self, path: &str) -> Option<u64> {
        self.paths.get(path).copied()
    }

    /// A log's position: a container's by its id, a job file's by its path.
    fn position_of(&self, log: &JobLog) -> Option<Position> {
        if log.job_file {
            self.path_offset(&log.path)
                .map(|offset| Position::File { offset })
        } else {
            self.position(&log.id)
        }
    }

    /// [`Registry::file_offset`] of a log, whichever kind.
    pub fn offset_of(&self, log: &JobLog) -> Option<u64> {
        if log.job_file {
            Some(self.path_offset(&log.path).unwrap_or(0))
        } else {
            self.file_offset(&log.id)
        }
    }

    /// The byte offset sent of a file-tailed log: 0 when the agent has recorded none yet.
    pub fn file_offset(&self, id: &str) -> Option<u64> {
        match self.position(id) {
            Some(Position::File { offset }) => Some(offset),
            Some(Position::Socket) => None,
            None => Some(0),
        }
    }
}

/// Where one container's log stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// Every byte written before the drain began was acknowledged, or all that is left of it are
    /// empty lines, which the agent never sends.
    Sent,
    /// Bytes still to be sent (the agent may not even have opened the file yet).
    Unsent { bytes: u64 },
    /// Read through the socket: not comparable, so not waited for.
    NotComparable,
    /// Not waited for: the agent does not tail it, or its file is gone.
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDrain {
    pub name: String,
    pub id: String,
    pub state: LogState,
    /// A job file of `ddsky run` on the VM, not a container's log.
    pub job_file: bool,
}

/// Every container log's state at one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainVerdict {
    pub containers: Vec<ContainerDrain>,
}

impl DrainVerdict {
    /// Nothing left to wait for.
    pub fn done(&self) -> bool {
        self.containers
            .iter()
            .all(|c| !matches!(c.state, LogState::Unsent { .. }))
    }

    pub fn unsent(&self) -> impl Iterator<Item = (&ContainerDrain, u64)> {
        self.containers.iter().filter_map(|c| match c.state {
            LogState::Unsent { bytes } => Some((c, bytes)),
            _ => None,
        })
    }
}

/// Compares each log's size at the drain's start with the registry's offset for it. `blank_from`:
/// container id -> an offset from which the rest of its log was found to hold only empty lines.
pub fn verdict(
    registry: &Registry,
    logs: &[JobLog],
    tailing: &Tailing,
    blank_from: &HashMap<String, u64>,
) -> DrainVerdict {
    let containers = logs
        .iter()
        .map(|log| ContainerDrain {
            name: log.name.clone(),
            id: log.id.clone(),
            state: log_state(registry, log, tailing, blank_from),
            job_file: log.job_file,
        })
        .collect();
    DrainVerdict { containers }
}

fn log_state(
    registry: &Registry,
    log: &JobLog,
    tailing: &Tailing,
    blank_from: &HashMap<String, u64>,
) -> LogState {
    let Some(size) = log.size else {
        return LogState::Skipped {
            reason: "its log file is gone".into(),
        };
    };
    let position = registry.position_of(log);
    if *tailing == Tailing::Off {
        return LogState::Skipped {
            reason: "the agent's log collection is off".into(),
        };
    }
    // A job file's source is a wildcard over many files: the sources list says nothing of one.
    if let (Tailing::Sources(sources), false) = (tailing, log.job_file) {
        match sources.get(&log.id) {
            Some(status) if !matches!(status.as_str(), "OK" | "Pending" | "") => {
                return LogState::Skipped {
                    reason: format!("the agent's source for it failed: {status}"),
                }
            }
            // Tailed before, and not listed now (its tailer stopped): its registry entry counts.
            None if position.is_none() => {
                return LogState::Skipped {
                    reason: not_tailed_reason(&log.labels),
                }
            }
            _ => {}
        }
    }
    if size == 0 {
        // Nothing was written before the drain began.
        return LogState::Sent;
    }
    let offset = match position {
        Some(Position::Socket) => return LogState::NotComparable,
        Some(Position::File { offset }) => offset,
        None => 0,
    };
    // An offset past the size of a log not seen to grow that far: the file was rotated and the
    // agent has not sent the new one's bytes yet (its entry restarts from 0 when it switches).
    if offset > size && !log.grown {
        return LogState::Unsent { bytes: size };
    }
    if offset >= size || blank_from.get(&log.id) == Some(&offset) {
        return LogState::Sent;
    }
    LogState::Unsent {
        bytes: size - offset,
    }
}

/// How a teardown of `total` splits: the stop's grace first (what the agent needs to end its way,
/// s6's graces and a second of Docker's, or half the total when that is shorter), the drain the
/// rest.
pub fn split_budget(total: Duration, stop_grace: Duration) -> (Duration, Duration) {
    let grace = stop_grace.min(total / 2);
    (total.saturating_sub(grace), grace)
}

/// One line for the user: which logs were waited for and how long it took (or what the budget
/// left unsent), which were not checked, which were skipped and why.
pub fn summary(verdict: &DrainVerdict, took: Duration, budget: Duration) -> String {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let names = |wanted: fn(&LogState) -> bool| {
        verdict
            .containers
            .iter()
            .filter(|c| wanted(&c.state))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
    };
    let sent = names(|s| matches!(s, LogState::Sent));
    let files = verdict
        .containers
        .iter()
        .filter(|c| c.job_file && matches!(c.state, LogState::Sent))
        .count();
    let mut line = if verdict.done() {
        let logs = sent.len() - files;
        let mut parts = Vec::new();
        if logs > 0 || files == 0 {
            parts.push(match logs {
                1 => "1 container's log".to_owned(),
                n => format!("{n} containers' logs"),
            });
        }
        match files {
            0 => {}
            1 => parts.push("1 job file".to_owned()),
            n => parts.push(format!("{n} job files")),
        }
        let containers = parts.join(" and ");
        let list = if sent.is_empty() {
            String::new()
        } else {
            format!(": {}", sent.join(", "))
        };
        format!("drained {containers} in {}{list}", secs(took))
    } else {
        let left = verdict
            .unsent()
            .map(|(c, bytes)| format!("{} {bytes} bytes", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sent = if sent.is_empty() {
            String::new()
        } else {
            format!("; sent: {}", sent.join(", "))
        };
        format!(
            "the {} drain budget ran out with logs unsent: {left}; they may be lost (a longer --timeout gives the agent more time){sent}",
            secs(budget)
        )
    };
    let socket = names(|s| matches!(s, LogState::NotComparable));
    if !socket.is_empty() {
        line.push_str(&format!(
            "; not checked (read through the Docker socket): {}",
            socket.join(", ")
        ));
    }
    let skipped = verdict
        .containers
        .iter()
        .filter_map(|c| match &c.state {
            LogState::Skipped { reason } => Some(format!("{} ({reason})", c.name)),
            _ => None,
        })
        .collect::<Vec<_>>();
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped: {}", skipped.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3c0a7f4d2b9e8c1a6f5d4e3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";
    const OTHER: &str = "aa0a7f4d2b9e8c1a6f5d4e3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/registry/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn log(id: &str, size: u64) -> JobLog {
        JobLog {
            id: id.into(),
            name: format!("c-{}", &id[..4]),
            path: format!("/var/lib/docker/containers/{id}/{id}-json.log"),
            size: Some(size),
            labels: HashMap::new(),
            grown: false,
            job_file: false,
        }
    }

    fn job_file(name: &str, size: u64) -> JobLog {
        let path = format!("/var/log/ddsky-job/{name}");
        JobLog {
            id: path.clone(),
            name: name.into(),
            path,
            size: Some(size),
            labels: HashMap::new(),
            grown: false,
            job_file: true,
        }
    }

    #[test]
    fn a_job_file_is_drained_by_its_registry_path_and_named_in_the_line() {
        let json = r#"{"Version":2,"Registry":{
            "file:/var/log/ddsky-job/20261207T161431Z-7.stdout.log":{"Offset":"3000","TailingMode":""},
            "file:/var/log/ddsky-job/20261207T161431Z-7.stderr.log":{"Offset":"900","TailingMode":""}}}"#;
        let registry = Registry::parse(json).unwrap();
        // The sources list names container ids and wildcard patterns, never one job file.
        let tailing = Tailing::from_sources(&[source(ID, "OK")]);
        let out = job_file("20261207T161431Z-7.stdout.log", 3000);
        let err = job_file("20261207T161431Z-7.stderr.log", 1000);
        let v = verdict(
            &registry,
            &[out.clone(), err.clone()],
            &tailing,
            &HashMap::new(),
        );
        assert_eq!(v.containers[0].state, LogState::Sent);
        assert_eq!(v.containers[1].state, LogState::Unsent { bytes: 100 });
        let line = summary(&v, Duration::from_secs(8), Duration::from_secs(8));
        assert!(
            line.contains("20261207T161431Z-7.stderr.log 100 bytes"),
            "{line}"
        );
        // A file the agent has not sent from yet waits from 0; its blank rest does not hold it.
        let fresh = job_file("20261207T161500Z-8.stdout.log", 64);
        let v = verdict(
            &registry,
            std::slice::from_ref(&fresh),
            &tailing,
            &HashMap::new(),
        );
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 64 });
        let blank = HashMap::from([(fresh.id.clone(), 0)]);
        let v = verdict(&registry, &[fresh, out], &tailing, &blank);
        assert!(v.done());
        assert_eq!(
            summary(&v, Duration::from_millis(1500), Duration::from_secs(8)),
            "drained 2 job files in 1.5 s: 20261207T161500Z-8.stdout.log, 20261207T161431Z-7.stdout.log"
        );
    }

    fn look(registry: &Registry, logs: &[JobLog]) -> DrainVerdict {
        verdict(registry, logs, &Tailing::Unknown, &HashMap::new())
    }

    #[test]
    fn a_recorded_registry_reads_file_offsets_by_container_id() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        assert_eq!(
            registry.position(ID),
            Some(Position::File { offset: 20480 })
        );
        assert_eq!(registry.position(OTHER), Some(Position::Socket));
    }

    #[test]
    fn newer_registries_with_fingerprints_read_the_same() {
        let registry = Registry::parse(&fixture("agent-7.7x-fingerprint.json")).unwrap();
        assert_eq!(
            registry.position(ID),
            Some(Position::File { offset: 20480 })
        );
    }

    #[test]
    fn sent_when_the_offset_reaches_the_size() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = look(&registry, &[log(ID, 20480)]);
        assert!(v.done());
        assert_eq!(v.containers[0].state, LogState::Sent);
    }

    #[test]
    fn unsent_bytes_are_counted_and_keep_the_drain_going() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = look(&registry, &[log(ID, 25000)]);
        assert!(!v.done());
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 4520 });
    }

    #[test]
    fn a_log_the_agent_never_opened_is_all_unsent_unless_empty() {
        let registry = Registry::parse(r#"{"Version":2,"Registry":{}}"#).unwrap();
        let third = ID.replace("3c0a", "bb0a");
        let v = look(&registry, &[log(&third, 100), log(&third, 0)]);
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 100 });
        assert_eq!(v.containers[1].state, LogState::Sent);
    }

    #[test]
    fn a_rotated_file_counts_its_new_bytes_as_unsent() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = look(&registry, &[log(ID, 300)]);
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 300 });
        // The same offset past a log that kept growing after the drain began: sent.
        let grown = JobLog {
            grown: true,
            ..log(ID, 300)
        };
        assert_eq!(
            look(&registry, &[grown]).containers[0].state,
            LogState::Sent
        );
    }

    #[test]
    fn a_socket_read_log_is_not_waited_for() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = look(&registry, &[log(OTHER, 999)]);
        assert!(v.done());
        assert!(
            summary(&v, Duration::from_millis(1400), Duration::from_secs(8))
                .contains("not checked (read through the Docker socket): c-aa0a")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Registry::parse("").is_err());
        assert!(Registry::parse("[1,2]").is_err());
        let odd = r#"{"Version":2,"Registry":{"file:/x/y.log":{"Offset":"12"},"file:/a/zz-json.log":{"Offset":"nope"},"journald:x":{}}}"#;
        let registry = Registry::parse(odd).unwrap();
        assert!(
            registry.positions.is_empty(),
            "no container's log among them"
        );
        // Every file entry is kept by its path (a job file's), an unreadable offset as 0.
        assert_eq!(registry.path_offset("/x/y.log"), Some(12));
        assert_eq!(registry.path_offset("/a/zz-json.log"), Some(0));
        assert_eq!(registry.path_offset("x"), None);
    }

    #[test]
    fn the_stop_grace_comes_first_and_never_takes_more_than_half() {
        let grace = Duration::from_secs(12);
        assert_eq!(
            split_budget(Duration::from_secs(30), grace),
            (Duration::from_secs(18), grace)
        );
        assert_eq!(
            split_budget(Duration::from_secs(10), grace),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
    }

    #[test]
    fn the_summary_says_how_long_or_what_is_left() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let done = look(&registry, &[log(ID, 20480), log(ID, 20480), log(ID, 20480)]);
        assert_eq!(
            summary(&done, Duration::from_millis(1420), Duration::from_secs(8)),
            "drained 3 containers' logs in 1.4 s: c-3c0a, c-3c0a, c-3c0a"
        );
        let left = look(&registry, &[log(ID, 25000)]);
        let line = summary(&left, Duration::from_secs(8), Duration::from_secs(8));
        assert!(line.contains("8.0 s drain budget ran out"), "{line}");
        assert!(line.contains("c-3c0a 4520 bytes"), "{line}");
    }

    fn source(id: &str, status: &str) -> LogSource {
        LogSource {
            kind: "file".into(),
            path: Some(format!("/var/lib/docker/containers/{id}/{id}-json.log")),
            identifier: Some(id.into()),
            status: status.into(),
        }
    }

    #[test]
    fn the_agents_sources_name_containers_by_identifier_or_file() {
        let by_path = LogSource {
            identifier: None,
            ..source(OTHER, "OK")
        };
        let Tailing::Sources(ids) = Tailing::from_sources(&[source(ID, "OK"), by_path]) else {
            panic!("sources");
        };
        assert_eq!(ids.get(ID).map(String::as_str), Some("OK"));
        assert_eq!(ids.get(OTHER).map(String::as_str), Some("OK"));
    }

    #[test]
    fn a_container_the_agent_does_not_tail_is_skipped_with_the_reason() {
        let registry = Registry::parse(r#"{"Version":2,"Registry":{}}"#).unwrap();
        let tailing = Tailing::from_sources(&[source(ID, "OK")]);
        let mut labelled = log(OTHER, 500);
        labelled
            .labels
            .insert("com.datadoghq.ad.logs_exclude".into(), "true".into());
        let third = ID.replace("3c0a", "bb0a");
        let v = verdict(
            &registry,
            &[log(ID, 100), labelled, log(&third, 200)],
            &tailing,
            &HashMap::new(),
        );
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 100 });
        assert_eq!(
            v.containers[1].state,
            LogState::Skipped {
                reason: "excluded by its label com.datadoghq.ad.logs_exclude=true".into()
            }
        );
        assert!(
            matches!(&v.containers[2].state, LogState::Skipped { reason } if reason.contains("DD_CONTAINER_EXCLUDE_LOGS"))
        );
        assert!(!v.done(), "the tailed one is still waited for");
        let line = summary(&v, Duration::from_secs(8), Duration::from_secs(8));
        assert!(line.contains("skipped: c-aa0a (excluded by its label com.datadoghq.ad.logs_exclude=true), c-bb0a (the agent does not tail it"), "{line}");
    }

    #[test]
    fn nothing_is_waited_for_when_the_agent_collects_no_logs() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = verdict(&registry, &[log(ID, 25000)], &Tailing::Off, &HashMap::new());
        assert!(v.done());
        assert_eq!(
            v.containers[0].state,
            LogState::Skipped {
                reason: "the agent's log collection is off".into()
            }
        );
    }

    #[test]
    fn a_failed_source_or_a_gone_file_is_skipped() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let tailing = Tailing::from_sources(&[source(ID, "Error: file not found")]);
        let mut gone = log(OTHER, 0);
        gone.size = None;
        let v = verdict(
            &registry,
            &[log(ID, 25000), gone],
            &tailing,
            &HashMap::new(),
        );
        assert!(v.done());
        assert!(
            matches!(&v.containers[0].state, LogState::Skipped { reason } if reason.contains("file not found"))
        );
        assert!(
            matches!(&v.containers[1].state, LogState::Skipped { reason } if reason == "its log file is gone")
        );
    }

    #[test]
    fn a_rest_of_only_empty_lines_counts_as_sent_at_that_offset_only() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let blank = HashMap::from([(ID.to_owned(), 20480)]);
        let v = verdict(&registry, &[log(ID, 20600)], &Tailing::Unknown, &blank);
        assert_eq!(v.containers[0].state, LogState::Sent);
        assert_eq!(
            summary(&v, Duration::from_millis(1200), Duration::from_secs(8)),
            "drained 1 container's log in 1.2 s: c-3c0a"
        );
        // Found blank from another offset: the bytes between are not known to be empty.
        let earlier = HashMap::from([(ID.to_owned(), 20000)]);
        let v = verdict(&registry, &[log(ID, 20600)], &Tailing::Unknown, &earlier);
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 120 });
    }

    #[test]
    fn a_log_the_agent_tails_but_never_sent_from_waits_from_zero() {
        let registry = Registry::parse(r#"{"Version":2,"Registry":{}}"#).unwrap();
        let tailing = Tailing::from_sources(&[source(ID, "OK")]);
        let v = verdict(&registry, &[log(ID, 64)], &tailing, &HashMap::new());
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 64 });
        let blank = HashMap::from([(ID.to_owned(), 0)]);
        let v = verdict(&registry, &[log(ID, 64)], &tailing, &blank);
        assert_eq!(v.containers[0].state, LogState::Sent);
    }
}
