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

mod wait;

pub use wait::{drain_and_log, Drained};

use crate::reference::full_container_id;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// A job container's json log as Docker reports it, with its size when the drain began: what was
/// written before the stop was asked for is what must be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLog {
    pub id: String,
    pub name: String,
    /// `LogPath`, the same path inside the agent (ddsky mounts the data root's containers/ there).
    pub path: String,
    pub size: u64,
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

/// The auditor's registry, by container id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    positions: HashMap<String, Position>,
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
        for (key, entry) in raw.registry {
            if let Some(path) = key.strip_prefix("file:") {
                let file = path.rsplit('/').next().unwrap_or_default();
                let Some(id) = file.strip_suffix("-json.log").and_then(full_container_id) else {
                    continue;
                };
                let offset = match &entry.offset {
                    Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                    Some(serde_json::Value::Number(n)) => n.as_u64(),
                    _ => None,
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
        Ok(Registry { positions })
    }

    pub fn position(&self, id: &str) -> Option<Position> {
        self.positions.get(id).copied()
    }
}

/// Where one container's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    /// Every byte written before the drain began was acknowledged.
    Sent,
    /// Bytes still to be sent (the agent may not even have opened the file yet).
    Unsent { bytes: u64 },
    /// Read through the socket: not comparable, so not waited for.
    NotComparable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDrain {
    pub name: String,
    pub id: String,
    pub state: LogState,
}

/// Every job log's state at one look.
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

/// Compares each log's size at the drain's start with the registry's offset for it.
pub fn verdict(registry: &Registry, logs: &[JobLog]) -> DrainVerdict {
    let containers = logs
        .iter()
        .map(|log| {
            let state = match registry.position(&log.id) {
                Some(Position::Socket) => LogState::NotComparable,
                // An offset past the size: the file was rotated and the agent has not sent the new
                // one's bytes yet (its entry restarts from 0 when it switches files).
                Some(Position::File { offset }) if offset > log.size => {
                    LogState::Unsent { bytes: log.size }
                }
                Some(Position::File { offset }) => match log.size - offset {
                    0 => LogState::Sent,
                    bytes => LogState::Unsent { bytes },
                },
                None if log.size == 0 => LogState::Sent,
                None => LogState::Unsent { bytes: log.size },
            };
            ContainerDrain {
                name: log.name.clone(),
                id: log.id.clone(),
                state,
            }
        })
        .collect();
    DrainVerdict { containers }
}

/// How a teardown of `total` splits: the stop's grace first (what the agent needs to end its way,
/// s6's graces and a second of Docker's, or half the total when that is shorter), the drain the
/// rest.
pub fn split_budget(total: Duration, stop_grace: Duration) -> (Duration, Duration) {
    let grace = stop_grace.min(total / 2);
    (total.saturating_sub(grace), grace)
}

/// One line for the user: how long the drain took, or what it could not send in time.
pub fn summary(verdict: &DrainVerdict, took: Duration, budget: Duration) -> String {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let n = verdict.containers.len();
    let containers = if n == 1 {
        "1 container's log".to_owned()
    } else {
        format!("{n} containers' logs")
    };
    if verdict.done() {
        let socket = verdict
            .containers
            .iter()
            .filter(|c| c.state == LogState::NotComparable)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>();
        let note = if socket.is_empty() {
            String::new()
        } else {
            format!(
                " ({} read through the Docker socket: not checked)",
                socket.join(", ")
            )
        };
        return format!("drained {containers} in {}{note}", secs(took));
    }
    let left = verdict
        .unsent()
        .map(|(c, bytes)| format!("{} {bytes} bytes", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "the {} drain budget ran out with logs unsent: {left}; they may be lost (a longer --timeout gives the agent more time)",
        secs(budget)
    )
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
            size,
        }
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
        let v = verdict(&registry, &[log(ID, 20480)]);
        assert!(v.done());
        assert_eq!(v.containers[0].state, LogState::Sent);
    }

    #[test]
    fn unsent_bytes_are_counted_and_keep_the_drain_going() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = verdict(&registry, &[log(ID, 25000)]);
        assert!(!v.done());
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 4520 });
    }

    #[test]
    fn a_log_the_agent_never_opened_is_all_unsent_unless_empty() {
        let registry = Registry::parse(r#"{"Version":2,"Registry":{}}"#).unwrap();
        let third = ID.replace("3c0a", "bb0a");
        let v = verdict(&registry, &[log(&third, 100), log(&third, 0)]);
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 100 });
        assert_eq!(v.containers[1].state, LogState::Sent);
    }

    #[test]
    fn a_rotated_file_counts_its_new_bytes_as_unsent() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = verdict(&registry, &[log(ID, 300)]);
        assert_eq!(v.containers[0].state, LogState::Unsent { bytes: 300 });
    }

    #[test]
    fn a_socket_read_log_is_not_waited_for() {
        let registry = Registry::parse(&fixture("agent-7.6x.json")).unwrap();
        let v = verdict(&registry, &[log(OTHER, 999)]);
        assert!(v.done());
        assert!(
            summary(&v, Duration::from_millis(1400), Duration::from_secs(8))
                .contains("read through the Docker socket: not checked")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Registry::parse("").is_err());
        assert!(Registry::parse("[1,2]").is_err());
        let odd = r#"{"Version":2,"Registry":{"file:/x/y.log":{"Offset":"12"},"file:/a/zz-json.log":{"Offset":"nope"},"journald:x":{}}}"#;
        assert_eq!(Registry::parse(odd).unwrap(), Registry::default());
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
        let done = verdict(&registry, &[log(ID, 20480), log(ID, 20480), log(ID, 20480)]);
        assert_eq!(
            summary(&done, Duration::from_millis(1420), Duration::from_secs(8)),
            "drained 3 containers' logs in 1.4 s"
        );
        let left = verdict(&registry, &[log(ID, 25000)]);
        let line = summary(&left, Duration::from_secs(8), Duration::from_secs(8));
        assert!(line.contains("8.0 s drain budget ran out"), "{line}");
        assert!(line.contains("c-3c0a 4520 bytes"), "{line}");
    }
}
