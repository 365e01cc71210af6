//! Stopping the agent after the drain (`crate::drain`) with a grace the agent really gets, then
//! saying how it ended. Used by `down` and `run --down`.

use crate::engine::{ContainerInfo, Engine, EngineError};
use std::time::Duration;

/// The line the image's s6 prints when it had to SIGKILL the agent (its stop did not finish in time).
pub const KILLED_LINE: &str = "AGENT EXITED WITH CODE 256, SIGNAL 9";

/// How a stopped agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Clean,
    /// Killed before it finished stopping (s6's SIGKILL, or Docker's after the grace).
    Killed,
}

/// Stops the agent within `grace` and reads how it ended from its exit code and last lines.
pub async fn stop(
    engine: &Engine,
    agent: &ContainerInfo,
    grace: Duration,
) -> Result<Ending, EngineError> {
    engine.stop(&agent.id, grace).await?;
    let exit_code = engine
        .inspect(&agent.id)
        .await?
        .and_then(|c| c.state.exit_code);
    let killed_by_s6 = engine
        .last_log_lines(&agent.id, 20)
        .await
        .iter()
        .any(|l| l.contains(KILLED_LINE));
    Ok(if killed_by_s6 || exit_code == Some(137) {
        Ending::Killed
    } else {
        Ending::Clean
    })
}
