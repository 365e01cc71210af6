//! Gates: a test holds one of the stand-in's timed phases for as long as it looks at it.
//!
//! `STANDIN_<PHASE>_GATE=/path` means the phase does not end before `/path` exists (the test mounts
//! a scratch directory of its own into the agent and creates the file once it has looked). A gate
//! only ever holds a phase longer: the phase still lasts at least its real time, so a gated stand-in
//! is never kinder than the real agent. Without the variable the phase runs on the clock alone.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How often a closed gate looks for its file.
const POLL: Duration = Duration::from_millis(100);

/// The auth-token phase: the command API and the auth token wait for it.
pub const STARTUP: &str = "STANDIN_STARTUP_GATE";
/// The first health ping: every component stays unhealthy until it has opened.
pub const HEALTH: &str = "STANDIN_HEALTH_GATE";
/// The docker check's first run.
pub const CHECK: &str = "STANDIN_CHECK_GATE";
/// The APM and DogStatsD listeners: not bound until it has opened.
pub const LISTENERS: &str = "STANDIN_LISTENERS_GATE";
/// Every logs payload: not sent before it has opened.
pub const LOGS_SEND: &str = "STANDIN_LOGS_SEND_GATE";

/// One gate, read from the environment; `None` path: no gate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    path: Option<PathBuf>,
}

impl Gate {
    pub fn from_env(key: &str) -> Gate {
        Gate::from_value(std::env::var_os(key).map(PathBuf::from))
    }

    pub fn from_value(path: Option<PathBuf>) -> Gate {
        Gate {
            path: path.filter(|p| !p.as_os_str().is_empty()),
        }
    }

    /// Whether the phase may end now (always, without a gate).
    pub fn is_open(&self) -> bool {
        self.path.as_ref().is_none_or(|p| p.exists())
    }

    /// Returns once the gate is open.
    pub async fn opened(&self) {
        while !self.is_open() {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where the state file records this gate: absent, closed, or open since now.
    pub fn observe(&self, before: GateState, now: f64) -> GateState {
        match (&self.path, before) {
            (None, _) => GateState::Absent,
            (Some(_), GateState::OpenedAt(t)) => GateState::OpenedAt(t),
            (Some(_), _) if self.is_open() => GateState::OpenedAt(now),
            (Some(_), _) => GateState::Closed,
        }
    }
}

/// A gate as the state file carries it to the CLI, which derives health and check runs from it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub enum GateState {
    /// No gate: the phase runs on the clock.
    #[default]
    Absent,
    /// The phase is held.
    Closed,
    /// The test let the phase go on at this time (Unix seconds).
    OpenedAt(f64),
}

impl GateState {
    /// The earliest time the phase may end: `None` while held.
    pub fn not_before(self) -> Option<f64> {
        match self {
            GateState::Absent => Some(f64::NEG_INFINITY),
            GateState::Closed => None,
            GateState::OpenedAt(t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gate_is_always_open_and_a_gate_opens_with_its_file() {
        assert!(Gate::from_value(None).is_open());
        assert!(Gate::from_value(Some(PathBuf::new())).is_open());
        let dir = std::env::temp_dir().join(format!("standin-gate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("go");
        let gate = Gate::from_value(Some(file.clone()));
        assert!(!gate.is_open());
        assert_eq!(gate.observe(GateState::Absent, 5.0), GateState::Closed);
        std::fs::write(&file, b"").unwrap();
        assert!(gate.is_open());
        assert_eq!(
            gate.observe(GateState::Closed, 7.0),
            GateState::OpenedAt(7.0)
        );
        // Opened once, it keeps the time it opened.
        assert_eq!(
            gate.observe(GateState::OpenedAt(7.0), 9.0),
            GateState::OpenedAt(7.0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_held_phase_has_no_end_and_an_absent_gate_adds_nothing() {
        assert_eq!(GateState::Closed.not_before(), None);
        assert_eq!(GateState::OpenedAt(3.0).not_before(), Some(3.0));
        assert!(GateState::Absent.not_before().unwrap() < -1e300);
    }
}
