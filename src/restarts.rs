//! What the agent container's restarts mean: none, one it recovered from, one it is still starting
//! after, or a crash loop. Docker restarts ddsky's agent (`unless-stopped`) whenever it exits: the
//! real image's s6 takes the container down when the agent process dies (OOM-killed, crashed), and
//! Docker starts it again after a back-off (100 ms, doubling, reset once it ran 10 s). Pure: Docker's
//! plain facts in, a verdict out.

use serde::Serialize;
use std::time::Duration;

/// Exits this close together, with no health in between, are a loop rather than bad luck.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// Exits it takes to call it a loop: one is an accident Docker repairs (an OOM kill on a busy node).
pub const CRASH_LOOP_EXITS: i64 = 2;

/// The facts the verdict is made of, as Docker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartFacts {
    /// Docker's `RestartCount`.
    pub restarts: i64,
    /// Docker's `Running` (which stays true while it waits to restart the container).
    pub running: bool,
    /// Docker's `Restarting`: down, waiting out the back-off before its next start.
    pub restarting: bool,
    /// Docker's health status is `healthy` (or the agent said so).
    pub healthy: bool,
    /// Since the last exit (Docker's `FinishedAt`); `None` when it never exited.
    pub since_last_exit: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartVerdict {
    /// Never restarted (or stopped by hand: nothing restarts it).
    None,
    /// Restarted, and healthy again since.
    RecoveredHealthy,
    /// Restarted once, now starting again: wait for it.
    RestartedStarting,
    /// Exits again and again and is not healthy in between: waiting cannot help.
    CrashLoop,
}

impl RestartFacts {
    /// How many times it exited: every restart followed an exit, and while Docker waits out the
    /// back-off the latest exit has no restart yet.
    pub fn exits(&self) -> i64 {
        self.restarts + i64::from(self.restarting)
    }
}

pub fn verdict(f: &RestartFacts) -> RestartVerdict {
    let exits = f.exits();
    if exits == 0 || !(f.running || f.restarting) {
        return RestartVerdict::None;
    }
    if f.healthy && !f.restarting {
        return RestartVerdict::RecoveredHealthy;
    }
    let recent = f.restarting || f.since_last_exit.is_some_and(|d| d < CRASH_LOOP_WINDOW);
    if exits >= CRASH_LOOP_EXITS && recent {
        RestartVerdict::CrashLoop
    } else {
        RestartVerdict::RestartedStarting
    }
}

/// The last exit, as far as Docker still knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastExit {
    /// The exit code (137 for SIGKILL, as the OOM killer sends); `None` when Docker no longer says.
    pub code: Option<i64>,
    /// Docker's `OOMKilled`.
    pub oom_killed: bool,
    /// Docker's `FinishedAt` (RFC 3339).
    pub at: String,
}

impl LastExit {
    /// One phrase: `exit code 137, OOM-killed, at 2026-...`.
    pub fn describe(&self) -> String {
        let code = self.code.map_or_else(
            || "exit code unknown".to_owned(),
            |c| format!("exit code {c}"),
        );
        let oom = if self.oom_killed { ", OOM-killed" } else { "" };
        format!("{code}{oom}, at {}", self.at)
    }
}

/// Docker's `FinishedAt`, or `None` for its zero time (never exited).
pub fn finished_at(raw: Option<&str>) -> Option<&str> {
    raw.filter(|t| !t.is_empty() && !t.starts_with("0001-"))
}

/// The line `status` and `doctor` give the restarts, with the last exit when there was one.
pub fn describe(verdict: RestartVerdict, restarts: i64, last: Option<&LastExit>) -> String {
    let times = if restarts == 1 {
        "once".to_owned()
    } else {
        format!("{restarts} times")
    };
    let last = last
        .map(|l| format!(" (last exit: {})", l.describe()))
        .unwrap_or_default();
    match verdict {
        RestartVerdict::None => format!("restarts {restarts}{last}"),
        RestartVerdict::RecoveredHealthy => {
            format!("restarted {times}{last}, healthy since")
        }
        RestartVerdict::RestartedStarting => {
            format!("restarted {times}{last}, starting again")
        }
        RestartVerdict::CrashLoop => {
            format!("crash loop: restarted {times}{last}, never healthy in between")
        }
    }
}

/// What to do about it: an OOM kill is the agent's memory; anything else is in its last lines.
pub fn advice(verdict: RestartVerdict, last: Option<&LastExit>) -> Option<String> {
    let oom = last.is_some_and(|l| l.oom_killed);
    if oom {
        return Some(
            "the kernel killed the agent for memory: its memory grows with the containers and log files it \
             follows, so give the node headroom, or lower it with `ddsky up --agent-env DD_CHECK_RUNNERS=1` \
             (check_runners, default 4) and `--agent-env DD_LOGS_CONFIG_OPEN_FILES_LIMIT=100` \
             (logs_config.open_files_limit, default 500), and leave noisy containers out with \
             DD_CONTAINER_EXCLUDE; Docker restarted it and it resumed its logs where it had sent them"
                .to_owned(),
        );
    }
    match verdict {
        RestartVerdict::None => None,
        RestartVerdict::CrashLoop => Some(
            "the agent exits at every start: its last lines say why (often the API key, the hostname or a \
             mount); run `ddsky up` with that fixed (changed settings recreate the agent)"
                .to_owned(),
        ),
        RestartVerdict::RestartedStarting => Some(
            "Docker restarted it; check again in a minute, and see `ddsky logs` for why it exited".to_owned(),
        ),
        RestartVerdict::RecoveredHealthy => Some(
            "Docker restarted it and it recovered (its logs resume where they were sent); see `ddsky logs` for why it exited"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        restarts: i64,
        running: bool,
        restarting: bool,
        healthy: bool,
        ago: Option<u64>,
    ) -> RestartFacts {
        RestartFacts {
            restarts,
            running,
            restarting,
            healthy,
            since_last_exit: ago.map(Duration::from_secs),
        }
    }

    #[test]
    fn never_restarted_is_none_whatever_its_health() {
        assert_eq!(
            verdict(&facts(0, true, false, false, None)),
            RestartVerdict::None
        );
        assert_eq!(
            verdict(&facts(0, true, false, true, None)),
            RestartVerdict::None
        );
    }

    #[test]
    fn one_kill_then_healthy_is_recovered_and_starting_in_between() {
        assert_eq!(
            verdict(&facts(1, true, false, true, Some(5))),
            RestartVerdict::RecoveredHealthy
        );
        assert_eq!(
            verdict(&facts(1, true, false, false, Some(5))),
            RestartVerdict::RestartedStarting
        );
        // Many restarts long ago, healthy now: recovered, not a loop.
        assert_eq!(
            verdict(&facts(7, true, false, true, Some(3600))),
            RestartVerdict::RecoveredHealthy
        );
    }

    #[test]
    fn exits_again_and_again_without_health_is_a_crash_loop() {
        // Down, waiting out the back-off after its second exit.
        assert_eq!(
            verdict(&facts(1, true, true, false, Some(0))),
            RestartVerdict::CrashLoop
        );
        // Up for a moment between exits.
        assert_eq!(
            verdict(&facts(4, true, false, false, Some(2))),
            RestartVerdict::CrashLoop
        );
        // Docker's health word is stale while it restarts: still a loop.
        assert_eq!(
            verdict(&facts(3, true, true, true, Some(0))),
            RestartVerdict::CrashLoop
        );
    }

    #[test]
    fn the_first_exit_is_not_a_loop_yet_nor_old_exits() {
        assert_eq!(
            verdict(&facts(0, true, true, false, Some(0))),
            RestartVerdict::RestartedStarting
        );
        assert_eq!(
            verdict(&facts(5, true, false, false, Some(600))),
            RestartVerdict::RestartedStarting
        );
    }

    #[test]
    fn a_container_stopped_by_hand_is_not_restarting() {
        assert_eq!(
            verdict(&facts(5, false, false, false, Some(1))),
            RestartVerdict::None
        );
    }

    #[test]
    fn the_lines_name_the_exit_and_the_oom_kill() {
        let last = LastExit {
            code: Some(137),
            oom_killed: true,
            at: "2026-12-06T20:01:59Z".into(),
        };
        assert_eq!(
            describe(RestartVerdict::CrashLoop, 3, Some(&last)),
            "crash loop: restarted 3 times (last exit: exit code 137, OOM-killed, at 2026-12-06T20:01:59Z), never healthy in between"
        );
        assert!(advice(RestartVerdict::RecoveredHealthy, Some(&last))
            .unwrap()
            .contains("DD_CHECK_RUNNERS"));
        let plain = LastExit {
            code: None,
            oom_killed: false,
            at: "t".into(),
        };
        assert_eq!(plain.describe(), "exit code unknown, at t");
        assert!(advice(RestartVerdict::CrashLoop, Some(&plain))
            .unwrap()
            .contains("last lines"));
        assert_eq!(advice(RestartVerdict::None, None), None);
        assert_eq!(finished_at(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            finished_at(Some("2026-12-06T20:01:59Z")),
            Some("2026-12-06T20:01:59Z")
        );
    }
}
