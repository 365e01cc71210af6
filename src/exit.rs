//! Every exit code ddsky uses, in one place.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

pub const OK: u8 = 0;
/// A runtime error: Docker refused, a foreign container is in the way.
pub const FAILURE: u8 = 1;
/// Bad flags or values (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// The agent did not become healthy in time (or `status` found it unhealthy).
pub const UNHEALTHY: u8 = 3;
/// An expected container was not discovered by the agent in time.
pub const NOT_DISCOVERED: u8 = 4;
/// `status`, `logs`: there is no agent container to read.
pub const NO_AGENT: u8 = 5;
/// The agent container exited during start-up or keeps exiting (a crash loop): its last log lines
/// follow the error. Waiting longer cannot help; its configuration must change.
pub const AGENT_CRASHED: u8 = 6;
/// Interrupted by SIGINT (128 + 2).
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const TERMINATED: u8 = 143;
