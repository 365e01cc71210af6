//! The state file: the daemon's only interface to the CLI subcommands.
//!
//! The daemon rewrites `<dir>/state.json` atomically (write + rename) at least every 500 ms and
//! whenever discovery changes; the subcommands (run in the same container by `docker exec`)
//! read it. A missing file, a heartbeat older than [`STALE_AFTER_SECS`] or a dead pid means
//! "the agent is not up". `<dir>` is `/var/run/standin` unless `STANDIN_STATE_DIR` says otherwise.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/run/standin";
pub const STALE_AFTER_SECS: f64 = 3.0;

pub fn state_dir() -> PathBuf {
    std::env::var_os("STANDIN_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub fn pid_file(dir: &Path) -> PathBuf {
    dir.join("agent.pid")
}

/// The real agent's default `auth_token_file_path`: written once the command API is up; every CLI
/// command reads it first. `DD_AUTH_TOKEN_FILE_PATH` moves it, as the real setting does.
pub const DEFAULT_AUTH_TOKEN_FILE: &str = "/etc/datadog-agent/auth_token";

pub fn auth_token_file() -> PathBuf {
    std::env::var_os("DD_AUTH_TOKEN_FILE_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_AUTH_TOKEN_FILE))
}

/// Everything the subcommands need, as of `heartbeat`. Time-dependent views (health during the
/// warm-up, discovery delay, check run counts) are derived by the reader from the timestamps, so
/// they are exact whatever the write period.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AgentState {
    pub version: String,
    pub pid: u32,
    pub started_at: f64,
    pub heartbeat: f64,
    pub hostname: String,
    pub hostname_provider: String,
    pub host_tags: Vec<String>,
    pub env: Option<String>,
    pub site: String,
    /// Last five characters of the API key (never the key).
    pub api_key_suffix: String,
    /// When the command API came up and the health components registered; `None` before.
    #[serde(default)]
    pub api_up_at: Option<f64>,
    /// The API key validation's outcome; `None` until it has ended.
    #[serde(default)]
    pub key_check: Option<KeyCheck>,
    pub unhealthy_secs: f64,
    pub discovery_delay_secs: f64,
    /// The docker check is scheduled: the Docker socket was there at start.
    #[serde(default)]
    pub docker_check: bool,
    #[serde(default)]
    pub check_interval_secs: f64,
    pub logs_enabled: bool,
    /// The logs agent's file sources: container id -> the json log it tails.
    #[serde(default)]
    pub log_sources: BTreeMap<String, String>,
    /// The conf.d `type: file` sources, in the order they were read.
    #[serde(default)]
    pub file_sources: Vec<FileSourceStatus>,
    pub apm_enabled: bool,
    pub process_collection_enabled: bool,
    pub labels_as_tags: BTreeMap<String, String>,
    /// Errors of the docker check (missing mounts, unreachable socket); empty when fine.
    pub check_errors: Vec<String>,
    pub apm: ApmStats,
    pub dogstatsd: DogstatsdStats,
    /// What the forwarder's transactions came to.
    #[serde(default)]
    pub forwarder: ForwarderStats,
    /// Every running container the daemon knows of, visible or not yet.
    pub containers: Vec<ContainerRecord>,
}

/// A conf.d file source as `agent status` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct FileSourceStatus {
    /// The config's name: the integration it is listed under.
    pub name: String,
    pub path: String,
    pub service: Option<String>,
    pub source: Option<String>,
    pub tailing_mode: String,
    /// `OK`, `Pending`, or `Error: <why>`.
    pub status: String,
    /// The files tailed now.
    pub inputs: Vec<String>,
    pub messages: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ApmStats {
    pub enabled: bool,
    pub port: u16,
    pub listening: bool,
    pub error: Option<String>,
    pub connections: u64,
    pub requests: u64,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DogstatsdStats {
    pub enabled: bool,
    pub port: u16,
    pub listening: bool,
    pub error: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub metric_samples: u64,
}

/// The forwarder's `forwarderStats.Transactions` counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ForwarderStats {
    pub success: u64,
    pub success_by_endpoint: BTreeMap<String, u64>,
    pub success_bytes_by_endpoint: BTreeMap<String, u64>,
    /// Transactions that failed and were rescheduled (no answer, or a retryable HTTP error).
    pub errors: u64,
    /// `ConnectionErrors`, `DNSErrors`, `SentRequestErrors`, `TLSErrors`, `WroteRequestErrors`.
    pub errors_by_type: BTreeMap<String, u64>,
    /// Every answer >= 400.
    pub http_errors: u64,
    /// Status code (as a string) -> count.
    pub http_errors_by_code: BTreeMap<String, u64>,
    /// Transactions given up on: 400, 403, 404, 413 answers, and evictions from a full retry queue.
    pub dropped: u64,
    pub dropped_by_endpoint: BTreeMap<String, u64>,
    pub requeued: u64,
    pub retried: u64,
    pub retry_queue_size: u64,
}

/// How the API key validation (`GET <intake>/api/v1/validate`) ended, and when.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct KeyCheck {
    pub verdict: KeyVerdict,
    pub at: f64,
}

/// The validation endpoint's answer, as comp/forwarder/defaultforwarder/forwarder_health.go reads it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// 200.
    Valid,
    /// 403: the forwarder stays unhealthy.
    Invalid,
    /// Another status: the key is assumed valid.
    UnexpectedCode,
    /// No answer: the key is assumed valid.
    Unreachable,
}

impl KeyVerdict {
    /// The agent's words for it in `forwarderStats`.
    pub fn text(self) -> &'static str {
        match self {
            KeyVerdict::Valid => "API Key valid",
            KeyVerdict::Invalid => "API Key invalid",
            KeyVerdict::UnexpectedCode => {
                "Unexpected response code from the API Key validation endpoint"
            }
            KeyVerdict::Unreachable => "Unable to reach the API Key validation endpoint",
        }
    }

    /// Whether it lands in `APIKeyFailure` (else `APIKeyStatus`), as `setAPIKeyStatus` files it.
    pub fn is_failure(self) -> bool {
        matches!(self, KeyVerdict::Invalid | KeyVerdict::UnexpectedCode)
    }

    /// Only a 403 keeps the forwarder unhealthy: on an error the agent assumes the key is valid
    /// ("to avoid killing lots of agents on an outage").
    pub fn keeps_forwarder_unhealthy(self) -> bool {
        self == KeyVerdict::Invalid
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ContainerRecord {
    /// Full 64-hex id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image as the container was created with (`ddsky-test/metta:latest`).
    pub image: String,
    /// `sha256:...`.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// Host pid of the container's main process (0 when unknown).
    pub pid: i64,
    pub hostname: String,
    /// RFC 3339, from the daemon.
    pub started_at: String,
    /// When the stand-in first saw it running (Unix seconds).
    pub seen_at: f64,
    /// Matched by `DD_CONTAINER_EXCLUDE` (hidden from tagger-list only).
    pub excluded: bool,
    /// Excluded from log collection (the global lists plus `DD_CONTAINER_*_LOGS`).
    pub logs_excluded: bool,
}

/// Why the subcommands consider the agent down.
#[derive(Debug, PartialEq)]
pub enum NotUp {
    Missing,
    Unreadable(String),
    Stale { age_secs: f64 },
    Dead { pid: u32 },
}

impl std::fmt::Display for NotUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotUp::Missing => write!(f, "no state file"),
            NotUp::Unreadable(e) => write!(f, "unreadable state file: {e}"),
            NotUp::Stale { age_secs } => write!(f, "state is {age_secs:.1}s old"),
            NotUp::Dead { pid } => write!(f, "pid {pid} is gone"),
        }
    }
}

/// Reads the state and checks that the daemon is alive.
pub fn load(dir: &Path, now: f64) -> Result<AgentState, NotUp> {
    let bytes = match std::fs::read(state_file(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(NotUp::Missing),
        Err(e) => return Err(NotUp::Unreadable(e.to_string())),
    };
    let state: AgentState =
        serde_json::from_slice(&bytes).map_err(|e| NotUp::Unreadable(e.to_string()))?;
    check_alive(&state, now, pid_alive)?;
    Ok(state)
}

fn check_alive(state: &AgentState, now: f64, alive: impl Fn(u32) -> bool) -> Result<(), NotUp> {
    let age_secs = now - state.heartbeat;
    if age_secs > STALE_AFTER_SECS {
        return Err(NotUp::Stale { age_secs });
    }
    if !alive(state.pid) {
        return Err(NotUp::Dead { pid: state.pid });
    }
    Ok(())
}

/// Writes `state.json` atomically (temporary file in the same directory, then rename).
pub fn store(dir: &Path, state: &AgentState) -> io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
    write_atomic(&state_file(dir), &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `kill(pid, 0)`: the process exists (EPERM still means it exists).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_directory() {
        let dir = std::env::temp_dir().join(format!("standin-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir, 0.0), Err(NotUp::Missing));
        let state = AgentState {
            pid: std::process::id(),
            heartbeat: 100.0,
            containers: vec![ContainerRecord {
                id: "a".repeat(64),
                ..Default::default()
            }],
            ..Default::default()
        };
        store(&dir, &state).unwrap();
        assert_eq!(load(&dir, 101.0).unwrap(), state);
        assert!(matches!(load(&dir, 104.0), Err(NotUp::Stale { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dead_pid_means_not_up() {
        let state = AgentState {
            pid: 42,
            heartbeat: 10.0,
            ..Default::default()
        };
        assert_eq!(
            check_alive(&state, 10.5, |_| false),
            Err(NotUp::Dead { pid: 42 })
        );
        assert_eq!(check_alive(&state, 10.5, |_| true), Ok(()));
        assert!(!pid_alive(0));
    }
}
