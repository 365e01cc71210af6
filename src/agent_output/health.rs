//! `agent health`: `Agent health: PASS|FAIL`, then `=== N healthy components ===` and/or
//! `=== N unhealthy components ===`, each followed by a comma-separated line; exit 0 or 255.

use super::text::{contains_ignore_ascii_case, strip_ansi};
use serde::Serialize;

/// Result of `agent health`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HealthReport {
    /// Exit code 0, no unhealthy component and the agent was reachable.
    pub healthy: bool,
    pub healthy_components: Vec<String>,
    pub unhealthy_components: Vec<String>,
    /// Set when the agent is not up yet (its CLI has no auth token yet, or cannot reach the agent
    /// process), with that line: not a failure, only "not ready" until a deadline says otherwise.
    pub not_up_yet: Option<String>,
    /// When `agent health` failed without saying which components or why: its last line.
    pub other_error: Option<String>,
}

impl HealthReport {
    /// The agent's answer in one line: what is unhealthy, why it did not answer, or what it said.
    pub fn summary(&self) -> String {
        if !self.unhealthy_components.is_empty() {
            format!("unhealthy: {}", self.unhealthy_components.join(", "))
        } else if let Some(line) = self.not_up_yet.as_ref().or(self.other_error.as_ref()) {
            format!("not answering yet: {line}")
        } else if self.healthy {
            format!("healthy ({} components)", self.healthy_components.len())
        } else {
            "`agent health` failed without output".into()
        }
    }
}

/// The agent's CLI saying the agent is not up yet: the first ~second without an auth token
/// (`unable to fetch auth token`), or older agents' `could not reach agent`. Every `agent` command
/// answers this way then; it means "wait", never "broken".
pub fn says_not_up_yet(text: &str) -> bool {
    contains_ignore_ascii_case(text, "could not reach agent")
        || contains_ignore_ascii_case(text, "unable to fetch auth token")
}

#[derive(Clone, Copy)]
enum ComponentList {
    Healthy,
    Unhealthy,
}

/// Parses `agent health`'s exit code and both streams.
pub fn parse_health(exit_code: i64, stdout: &str, stderr: &str) -> HealthReport {
    let stdout = strip_ansi(stdout);
    let stderr = strip_ansi(stderr);
    let mut report = HealthReport::default();
    for text in [&*stdout, &*stderr] {
        let mut pending = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if says_not_up_yet(line) {
                report.not_up_yet.get_or_insert_with(|| line.to_owned());
            } else if let Some(list) = component_header(line) {
                pending = Some(list);
            } else if let Some(list) = pending.take() {
                let target = match list {
                    ComponentList::Healthy => &mut report.healthy_components,
                    ComponentList::Unhealthy => &mut report.unhealthy_components,
                };
                target.extend(
                    line.split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                );
            }
        }
    }
    report.healthy =
        exit_code == 0 && report.unhealthy_components.is_empty() && report.not_up_yet.is_none();
    let said_why = report.not_up_yet.is_some() || !report.unhealthy_components.is_empty();
    if !report.healthy && !said_why {
        report.other_error = [&*stderr, &*stdout]
            .into_iter()
            .flat_map(|t| t.lines().rev())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(300).collect());
    }
    report
}

/// `=== 19 healthy components ===`; the agent's HTTP health port omits the count.
fn component_header(line: &str) -> Option<ComponentList> {
    let inner = line.strip_prefix("===")?.strip_suffix("===")?;
    let inner = inner.trim().to_ascii_lowercase();
    if inner.ends_with("unhealthy components") {
        Some(ComponentList::Unhealthy)
    } else if inner.ends_with("healthy components") {
        Some(ComponentList::Healthy)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::samples::*;
    use super::*;

    #[test]
    fn a_passing_agent_lists_its_components() {
        let report = parse_health(0, HEALTH_PASS, "");
        assert!(report.healthy);
        assert_eq!(report.healthy_components.len(), 19);
        assert_eq!(
            report.healthy_components.first().map(String::as_str),
            Some("ad-autoconfig")
        );
        assert_eq!(
            report.healthy_components.last().map(String::as_str),
            Some("workloadmeta-store")
        );
        assert!(report.unhealthy_components.is_empty());
        assert_eq!((&report.not_up_yet, &report.other_error), (&None, &None));
        assert_eq!(report.summary(), "healthy (19 components)");
    }

    #[test]
    fn a_forwarder_refusing_the_key_is_unhealthy() {
        let (stdout, stderr) = HEALTH_FORWARDER_UNHEALTHY;
        let report = parse_health(255, stdout, stderr);
        assert!(!report.healthy);
        assert_eq!(report.unhealthy_components, vec!["forwarder".to_owned()]);
        assert_eq!(report.healthy_components.len(), 18);
        assert_eq!(report.not_up_yet, None);
        assert_eq!(report.summary(), "unhealthy: forwarder");
        assert!(report.other_error.is_none());
    }

    #[test]
    fn before_the_first_ping_every_component_is_unhealthy() {
        let (stdout, stderr) = HEALTH_STARTING;
        let report = parse_health(255, stdout, stderr);
        assert!(!report.healthy);
        assert_eq!(report.unhealthy_components.len(), 19);
        assert!(report
            .unhealthy_components
            .contains(&"healthcheck".to_owned()));
        assert!(report.healthy_components.is_empty());
        assert_eq!(report.not_up_yet, None);
    }

    #[test]
    fn a_coloured_health_reads_like_a_plain_one() {
        for (code, stdout, stderr) in [
            (0, HEALTH_PASS, ""),
            (
                255,
                HEALTH_FORWARDER_UNHEALTHY.0,
                HEALTH_FORWARDER_UNHEALTHY.1,
            ),
            (255, HEALTH_STARTING.0, HEALTH_STARTING.1),
        ] {
            assert_eq!(
                parse_health(code, &on_a_terminal(stdout), stderr),
                parse_health(code, stdout, stderr)
            );
        }
    }

    #[test]
    fn unhealthy_components_make_it_unhealthy_even_with_exit_zero() {
        let stdout = "Agent health: FAIL\n=== Healthy components ===\na, b\n=== Unhealthy components ===\nforwarder, logs-agent\n";
        let report = parse_health(0, stdout, "");
        assert!(!report.healthy);
        assert_eq!(
            report.healthy_components,
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(
            report.unhealthy_components,
            vec!["forwarder".to_owned(), "logs-agent".to_owned()]
        );
    }

    #[test]
    fn an_unreachable_agent_is_not_up_yet() {
        let report = parse_health(255, "", COULD_NOT_REACH_AGENT);
        assert!(!report.healthy);
        let line = report.not_up_yet.expect("unreachable detected");
        assert!(
            line.starts_with("Error: could not reach agent: Get"),
            "{line}"
        );
        assert!(line.ends_with("connection refused"), "{line}");
        assert!(report.healthy_components.is_empty());
    }

    #[test]
    fn without_an_auth_token_the_agent_is_not_up_yet() {
        let report = parse_health(255, "", NO_AUTH_TOKEN);
        assert!(!report.healthy);
        let line = report.not_up_yet.clone().expect("not up yet detected");
        assert!(line.contains("unable to fetch auth token"), "{line}");
        assert!(report
            .summary()
            .starts_with("not answering yet: Error: unable to fetch auth token"));
        assert!(report.other_error.is_none());
        assert!(says_not_up_yet(NO_AUTH_TOKEN) && says_not_up_yet(COULD_NOT_REACH_AGENT));
        assert!(!says_not_up_yet(HEALTH_FORWARDER_UNHEALTHY.1));
    }

    #[test]
    fn a_failed_health_says_what_the_agent_said() {
        let report = parse_health(255, "", "Error: something odd\n\n");
        assert_eq!(report.other_error.as_deref(), Some("Error: something odd"));
        assert_eq!(report.summary(), "not answering yet: Error: something odd");
    }

    #[test]
    fn the_exit_code_alone_can_decide_failure() {
        assert!(!parse_health(1, HEALTH_PASS, "").healthy);
        let silent = parse_health(255, "", "");
        assert!(!silent.healthy);
        assert_eq!(silent.summary(), "`agent health` failed without output");
    }
}
