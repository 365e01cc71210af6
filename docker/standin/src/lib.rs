//! Stand-ins for the container images ddsky's tests need but cannot pull.
//!
//! * `agent` imitates the official `datadog/agent:7` image as described in
//!   `/work/shared/datadog-agent.md`: a long-running daemon (`agent` / `agent run`) plus the CLI
//!   subcommands ddsky runs through `docker exec` (`health`, `workload-list`, `tagger-list`,
//!   `status`; `version` for the tests). The daemon publishes everything the subcommands need in a JSON state file
//!   ([`state`]); the subcommands only read that file ([`cli`]) and format it ([`render`]).
//! * `job` imitates a SkyPilot/Metta job container (see `src/bin/job.rs`).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod forwarder;
pub mod gate;
pub mod imageref;
pub mod listeners;
pub mod logline;
pub mod logs;
pub mod model;
pub mod render;
pub mod rng;
pub mod state;
pub mod timefmt;

/// Version reported by `agent version` and `agent status`.
pub const VERSION: &str = "7.99.0-standin";
