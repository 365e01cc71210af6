//! Which running containers the user expects the agent to see, and whether it does.
//!
//! The matching and the report are pure; [`wait`] drives them against Docker and the agent, sleeping on
//! Docker's event stream rather than polling when nothing can change.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::agent::{AgentClient, AgentError, DiscoveredIds};
use crate::engine::{ContainerEvent, Engine, EngineError, RunningContainer};
use crate::interrupt::{Interrupt, Interrupted};
use crate::reference::image_repository;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// While a matching container is not yet listed, when to ask the agent again, counted from when it
/// was first seen unlisted: the agent lists a container about a second after it starts, and each
/// look runs the agent's Go CLI (0.3-1 s of CPU) in an exec, so the looks cluster around that
/// second and then thin out.
const DISCOVERY_POLLS_MS: [u64; 6] = [1_000, 1_250, 1_500, 2_000, 3_000, 5_000];
/// After those, or while the agent does not answer at all, ask this often.
const SLOW_POLL_INTERVAL: Duration = Duration::from_secs(3);
/// However long the last look took, leave the agent this much air before the next.
const MIN_PAUSE: Duration = Duration::from_millis(100);
/// While the agent is not up yet (no auth token), ask this often: it is up a second later.
const NOT_UP_POLL_INTERVAL: Duration = Duration::from_millis(700);

/// How long after a look to ask again, `pending` after a matching container was first seen unlisted.
pub fn next_discovery_poll(pending: Duration, agent_not_up: bool) -> Duration {
    if agent_not_up {
        return NOT_UP_POLL_INTERVAL;
    }
    DISCOVERY_POLLS_MS
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .find(|at| *at > pending)
        .map_or(SLOW_POLL_INTERVAL, |at| at - pending)
}

/// Ids shorter than this are not matched as prefixes: "a" would match a sixteenth of all containers.
const MIN_ID_PREFIX: usize = 4;

/// Whether `pattern` names this container: by id prefix, by name, or by image repository.
pub fn matches(pattern: &str, container: &RunningContainer) -> bool {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return false;
    }
    let is_id_prefix = pattern.len() >= MIN_ID_PREFIX
        && pattern.chars().all(|c| c.is_ascii_hexdigit())
        && container.id.starts_with(&pattern.to_ascii_lowercase());
    is_id_prefix
        || container.name == pattern.trim_start_matches('/')
        || image_repository(&container.image) == pattern
}

/// What the user wrote (`label`, e.g. `self`) and what is matched (`needle`, e.g. the container id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub label: String,
    pub needle: String,
}

impl Pattern {
    pub fn new(text: &str) -> Self {
        Pattern {
            label: text.to_owned(),
            needle: text.to_owned(),
        }
    }

    pub fn all(texts: &[String]) -> Vec<Pattern> {
        texts.iter().map(|t| Pattern::new(t)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub discovered: bool,
}

/// How every command words whether the agent lists a container.
pub fn discovered_word(discovered: bool) -> &'static str {
    if discovered {
        "discovered"
    } else {
        "NOT discovered"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub pattern: String,
    pub matches: Vec<MatchedContainer>,
    /// At least one container matches and the agent lists every one of them.
    pub discovered: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryReport {
    pub expected: Vec<Expectation>,
}

impl DiscoveryReport {
    /// Every matching container is discovered (patterns with no match yet are not waited for).
    pub fn matched_are_discovered(&self) -> bool {
        self.expected
            .iter()
            .all(|e| e.matches.iter().all(|m| m.discovered))
    }

    /// Every pattern has a match and all are discovered.
    pub fn all_discovered(&self) -> bool {
        self.expected.iter().all(|e| e.discovered)
    }

    pub fn has_matches(&self) -> bool {
        self.expected.iter().any(|e| !e.matches.is_empty())
    }

    /// Patterns that no running container matches.
    pub fn unmatched(&self) -> impl Iterator<Item = &str> {
        self.expected
            .iter()
            .filter(|e| e.matches.is_empty())
            .map(|e| e.pattern.as_str())
    }

    /// Matching containers the agent does not list.
    pub fn undiscovered(&self) -> impl Iterator<Item = &MatchedContainer> {
        self.expected
            .iter()
            .flat_map(|e| e.matches.iter())
            .filter(|m| !m.discovered)
    }
}

/// Matches every pattern against the running containers (the agent's own excluded) and marks which
/// ones the agent discovered.
pub fn evaluate(
    patterns: &[Pattern],
    running: &[RunningContainer],
    discovered: &HashSet<String>,
    agent_id: &str,
) -> DiscoveryReport {
    let expected = patterns
        .iter()
        .map(|pattern| {
            let matches: Vec<MatchedContainer> = running
                .iter()
                .filter(|c| c.id != agent_id && matches(&pattern.needle, c))
                .map(|c| MatchedContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    discovered: discovered.contains(&c.id),
                })
                .collect();
            let discovered = !matches.is_empty() && matches.iter().all(|m| m.discovered);
            Expectation {
                pattern: pattern.label.clone(),
                matches,
                discovered,
            }
        })
        .collect();
    DiscoveryReport { expected }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Only containers that match now (or start while waiting) must be discovered; `up` uses this,
    /// since the job container may start long after setup.
    MatchedOnly,
    /// Every pattern must match a container and all must be discovered (`status --wait`).
    EveryPattern,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// The agent's container stopped while waiting: no point waiting for it any longer.
    #[error("the agent container stopped while ddsky waited for it to discover {what}")]
    AgentStopped { what: String },
}

/// One look at the host and the agent.
#[derive(Debug, Default)]
pub struct Look {
    pub running: Vec<RunningContainer>,
    /// What the agent lists; `None` when nothing expected was running, so the agent was not asked,
    /// or when it did not answer.
    pub discovered: Option<HashSet<String>>,
    pub report: DiscoveryReport,
    /// The agent's answer when it could not list what it discovered (not up yet, or an error).
    pub agent_error: Option<AgentError>,
}

/// Re-checks until done or `deadline`, then returns the last look (the caller judges it).
/// `listed`: container ids the agent listed a moment ago; when they cover every matching running
/// container, the first look needs no agent command.
pub async fn wait(
    engine: &Engine,
    agent: &AgentClient,
    patterns: &[Pattern],
    deadline: Instant,
    mode: WaitFor,
    listed: Option<HashSet<String>>,
    interrupt: &Interrupt,
) -> Result<Look, WaitError> {
    // Subscribe before the first look so a container starting in between is not missed.
    let mut events: Pin<Box<dyn Stream<Item = ContainerEvent> + Send>> =
        Box::pin(engine.container_events());
    let agent_id = agent.container();
    let mut first_pending: Option<Instant> = None;
    let mut listed = listed;
    loop {
        // Looks are spaced start to start: a slow look (a loaded node) does not push the next one
        // past the second in which the agent lists a new container. An exec can take seconds on a
        // busy node: a signal must not wait for it.
        let look_started = Instant::now();
        let look = match listed.take() {
            Some(ids) => {
                interrupt
                    .run(check_with(engine, agent, agent_id, patterns, ids))
                    .await??
            }
            None => {
                interrupt
                    .run(check_once(engine, agent, agent_id, patterns))
                    .await??
            }
        };
        let done = look.agent_error.is_none()
            && match mode {
                WaitFor::MatchedOnly => look.report.matched_are_discovered(),
                WaitFor::EveryPattern => look.report.all_discovered(),
            };
        if done || Instant::now() >= deadline {
            return Ok(look);
        }
        if let Some(e) = &look.agent_error {
            // No agent error ends the wait, unless its container is gone.
            if !engine
                .inspect(agent_id)
                .await?
                .is_some_and(|a| a.state.running)
            {
                let what: Vec<&str> = patterns.iter().map(|p| p.label.as_str()).collect();
                return Err(WaitError::AgentStopped {
                    what: what.join(", "),
                });
            }
            tracing::debug!("the agent cannot list containers yet: {e}");
        }
        // Undiscovered matches: ask on a schedule around the second the agent takes to list a new
        // container. Otherwise nothing can change until a container starts: sleep on the event
        // stream, which costs nothing.
        let poll_soon = look.agent_error.is_some() || look.report.undiscovered().next().is_some();
        if !poll_soon {
            first_pending = None;
        }
        let pending_since = *first_pending.get_or_insert(look_started);
        let not_up = look
            .agent_error
            .as_ref()
            .is_some_and(AgentError::is_not_up_yet);
        let interval = next_discovery_poll(look_started - pending_since, not_up);
        let wake = if poll_soon {
            (look_started + interval)
                .max(Instant::now() + MIN_PAUSE)
                .min(deadline)
        } else {
            deadline
        };
        tracing::debug!(?interval, poll_soon, "waiting for discovery");
        interrupt
            .run(async {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    Some(ev) = events.next(), if !poll_soon => tracing::debug!(id = %ev.id, action = %ev.action, "container event"),
                }
            })
            .await?;
    }
}

/// One look using what the agent listed a moment ago, asking it again only if that does not cover
/// every matching running container.
async fn check_with(
    engine: &Engine,
    agent: &AgentClient,
    agent_id: &str,
    patterns: &[Pattern],
    listed: HashSet<String>,
) -> Result<Look, WaitError> {
    let running = engine.running_containers().await?;
    let report = evaluate(patterns, &running, &listed, agent_id);
    if report.undiscovered().next().is_some() {
        return check_once(engine, agent, agent_id, patterns).await;
    }
    Ok(Look {
        running,
        discovered: Some(listed),
        report,
        agent_error: None,
    })
}

/// One look: the running containers, and (only if any is expected) what the agent lists.
async fn check_once(
    engine: &Engine,
    agent: &AgentClient,
    agent_id: &str,
    patterns: &[Pattern],
) -> Result<Look, WaitError> {
    let running = engine.running_containers().await?;
    let report = evaluate(patterns, &running, &HashSet::new(), agent_id);
    if !report.has_matches() {
        return Ok(Look {
            running,
            discovered: None,
            report,
            agent_error: None,
        });
    }
    let discovered: HashSet<String> = match agent.ask(DiscoveredIds).await {
        Ok(ids) => ids,
        Err(e) => {
            return Ok(Look {
                running,
                discovered: None,
                report,
                agent_error: Some(e),
            })
        }
    };
    let report = evaluate(patterns, &running, &discovered, agent_id);
    Ok(Look {
        running,
        discovered: Some(discovered),
        report,
        agent_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, name: &str, image: &str) -> RunningContainer {
        RunningContainer {
            id: id.repeat(64 / id.len()),
            name: name.into(),
            image: image.into(),
        }
    }

    #[test]
    fn matches_by_image_name_or_id_prefix() {
        let job = c(
            "ab",
            "sky_container",
            "751442549699.dkr.ecr.us-east-1.amazonaws.com/metta:latest",
        );
        assert!(matches("metta", &job));
        assert!(matches("sky_container", &job));
        assert!(matches("abab", &job));
        assert!(matches("ABAB", &job));
        assert!(!matches("ab", &job), "too short to be an id prefix");
        assert!(!matches("met", &job));
        assert!(!matches("metta-runner", &job));
        assert!(!matches("", &job));
        assert!(!matches("latest", &job));
    }

    #[test]
    fn report_excludes_the_agent_and_marks_discovery() {
        let running = [
            c("aa", "dd-agent", "datadog/agent:7"),
            c("bb", "job", "metta:latest"),
            c("cc", "job2", "metta:latest"),
        ];
        let discovered = HashSet::from([running[1].id.clone()]);
        let report = evaluate(
            &Pattern::all(&["metta".into(), "agent".into(), "other".into()]),
            &running,
            &discovered,
            &running[0].id,
        );
        assert_eq!(report.expected[0].matches.len(), 2);
        assert!(
            !report.expected[0].discovered,
            "one of two is not discovered"
        );
        assert!(
            report.expected[1].matches.is_empty(),
            "the agent never counts as the job"
        );
        assert_eq!(report.unmatched().collect::<Vec<_>>(), ["agent", "other"]);
        assert_eq!(
            report
                .undiscovered()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["job2"]
        );
        assert!(!report.matched_are_discovered());
        assert!(!report.all_discovered());
    }

    #[test]
    fn a_resolved_pattern_matches_by_needle_and_reports_its_label() {
        let running = [c("ab", "sky_container", "metta:latest")];
        let me = Pattern {
            label: "self".into(),
            needle: running[0].id.clone(),
        };
        let report = evaluate(&[me], &running, &HashSet::new(), "");
        assert_eq!(report.expected[0].pattern, "self");
        assert_eq!(report.expected[0].matches.len(), 1);
    }

    #[test]
    fn discovery_looks_cluster_around_the_agents_second_then_thin_out() {
        let ms = Duration::from_millis;
        assert_eq!(next_discovery_poll(ms(0), false), ms(1_000));
        assert_eq!(next_discovery_poll(ms(1_010), false), ms(240));
        assert_eq!(next_discovery_poll(ms(4_000), false), ms(1_000));
        assert_eq!(next_discovery_poll(ms(60_000), false), SLOW_POLL_INTERVAL);
        assert_eq!(next_discovery_poll(ms(60_000), true), NOT_UP_POLL_INTERVAL);
        // A minute of waiting costs a handful of looks, not one per 100 ms.
        let (mut t, mut looks) = (ms(0), 0);
        while t < ms(60_000) {
            t += next_discovery_poll(t, false);
            looks += 1;
        }
        assert!(looks <= 26, "{looks} looks in a minute");
    }

    #[test]
    fn no_match_is_done_for_up_but_not_for_status_wait() {
        let report = evaluate(&Pattern::all(&["metta".into()]), &[], &HashSet::new(), "");
        assert!(report.matched_are_discovered());
        assert!(!report.all_discovered());
        assert!(!report.has_matches());
    }
}
