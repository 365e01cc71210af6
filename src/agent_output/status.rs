//! `agent status --json` (`-j`): one JSON object, possibly after text such as
//! `Getting the status from the agent.`; numbers may be ints or floats; every field optional.

use super::json::{find_object, get_ci, object_field, string_field};
use super::text::non_empty;
use super::OutputError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What the forwarder says about the API key(s).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApiKeyState {
    /// `ending` is the 5 characters in "API key ending with abcde".
    Valid {
        ending: String,
    },
    Invalid {
        ending: String,
        reason: String,
    },
    /// Not validated yet, validation endpoint unreachable, or no forwarder stats.
    #[default]
    Unknown,
}

/// Counters from `forwarderStats.Transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TransactionCounts {
    pub success: u64,
    pub errors: u64,
    pub http_errors: u64,
    pub dropped_on_input: u64,
    pub http_errors_by_code: BTreeMap<String, u64>,
}

/// `runnerStats.Checks.docker`, summed over its instances.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CheckRuns {
    pub total_runs: u64,
    pub total_errors: u64,
    /// The first non-empty `LastError` among the instances.
    pub last_error: Option<String>,
}

/// The parts of `agent status --json` that ddsky reports.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AgentStatus {
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub hostname_provider: Option<String>,
    pub host_tags: Vec<String>,
    pub api_key: ApiKeyState,
    pub transactions: TransactionCounts,
    pub docker_check: Option<CheckRuns>,
    pub logs_enabled: Option<bool>,
    /// `logsStats.integrations[].sources[]`: what the logs agent collects. `None` when the answer
    /// has no integrations list at all (logs off, or an agent that does not say).
    #[serde(skip)]
    pub log_sources: Option<Vec<LogSource>>,
}

/// One source of the logs agent, as `logsStats` lists it: for a container's log tailed from its
/// file, type `file`, `configuration.Path` the json log and `configuration.Identifier` the
/// container id; `status` is `OK`, `Pending` or the source's error text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSource {
    pub kind: String,
    pub path: Option<String>,
    pub identifier: Option<String>,
    pub status: String,
}

pub fn parse_status_json(s: &str) -> Result<AgentStatus, OutputError> {
    const COMMAND: &str = "status --json";
    let top = find_object(s, COMMAND, looks_like_status)?;
    let forwarder = object_field(&top, "forwarderStats");
    Ok(AgentStatus {
        version: string_field(&top, "version"),
        hostname: hostname(&top),
        hostname_provider: object_field(&top, "hostnameStats")
            .and_then(|h| string_field(h, "provider")),
        host_tags: host_tags(&top),
        api_key: forwarder.map_or(ApiKeyState::Unknown, api_key_state),
        transactions: forwarder
            .and_then(|f| object_field(f, "Transactions"))
            .map(transaction_counts)
            .unwrap_or_default(),
        docker_check: object_field(&top, "runnerStats")
            .and_then(|r| object_field(r, "Checks"))
            .and_then(|c| object_field(c, "docker"))
            .and_then(docker_check_runs),
        logs_enabled: logs_enabled(&top),
        log_sources: log_sources(&top),
    })
}

/// Distinguishes the status object from JSON-formatted log lines printed before it.
fn looks_like_status(obj: &Map<String, Value>) -> bool {
    [
        "version",
        "forwarderStats",
        "hostnameStats",
        "runnerStats",
        "hostTags",
    ]
    .iter()
    .any(|key| get_ci(obj, key).is_some())
}

/// The agent's `hostnameStats` only holds `provider` and `errors`; the hostname itself is
/// in `meta` (newer) or `metadata.meta` (older). `hostnameStats.hostname` is read first.
fn hostname(top: &Map<String, Value>) -> Option<String> {
    let from = |path: &[&str]| {
        let (last, parents) = path.split_last()?;
        let mut obj = top;
        for key in parents {
            obj = object_field(obj, key)?;
        }
        string_field(obj, last)
    };
    from(&["hostnameStats", "hostname"])
        .or_else(|| from(&["meta", "hostname"]))
        .or_else(|| from(&["metadata", "meta", "hostname"]))
}

/// `hostTags`; older agents only have `metadata.host-tags.system`.
fn host_tags(top: &Map<String, Value>) -> Vec<String> {
    let tags = get_ci(top, "hostTags")
        .and_then(Value::as_array)
        .or_else(|| {
            object_field(top, "metadata")
                .and_then(|m| object_field(m, "host-tags"))
                .and_then(|t| get_ci(t, "system"))
                .and_then(Value::as_array)
        });
    tags.map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter_map(non_empty)
        .collect()
}

enum KeyVerdict {
    Valid,
    Invalid,
    Unknown,
}

/// `APIKeyFailure` only ever holds invalid keys; `APIKeyStatus` holds the rest ("API Key valid",
/// "Unable to reach the API Key validation endpoint", ...). With several keys, an invalid
/// one wins: some data is being refused.
fn api_key_state(forwarder: &Map<String, Value>) -> ApiKeyState {
    let entries = |key: &str, failure: bool| {
        object_field(forwarder, key)
            .into_iter()
            .flatten()
            .map(move |(k, v)| (k, v, failure))
    };
    let mut valid = None;
    for (key, value, failure) in
        entries("APIKeyFailure", true).chain(entries("APIKeyStatus", false))
    {
        let message = value.as_str().unwrap_or_default().trim();
        match key_verdict(message, failure) {
            KeyVerdict::Invalid => {
                let reason = if message.is_empty() {
                    "API Key invalid"
                } else {
                    message
                };
                return ApiKeyState::Invalid {
                    ending: key_ending(key),
                    reason: reason.to_owned(),
                };
            }
            KeyVerdict::Valid => {
                valid.get_or_insert_with(|| key_ending(key));
            }
            KeyVerdict::Unknown => {}
        }
    }
    valid.map_or(ApiKeyState::Unknown, |ending| ApiKeyState::Valid { ending })
}

fn key_verdict(message: &str, from_failure_map: bool) -> KeyVerdict {
    let message = message.trim_end_matches('.').to_ascii_lowercase();
    if from_failure_map || message.ends_with("invalid") {
        KeyVerdict::Invalid
    } else if message == "valid" || message.ends_with(" valid") {
        KeyVerdict::Valid
    } else {
        KeyVerdict::Unknown
    }
}

/// "API key ending with abcde" -> "abcde".
fn key_ending(key: &str) -> String {
    const MARKER: &str = "ending with";
    let lower = key.to_ascii_lowercase();
    let ending = match lower.rfind(MARKER) {
        Some(at) => key.get(at + MARKER.len()..).unwrap_or_default(),
        None => key,
    };
    ending.trim().trim_end_matches(':').trim().to_owned()
}

fn transaction_counts(tx: &Map<String, Value>) -> TransactionCounts {
    let counter = |key: &str| get_ci(tx, key).and_then(count).unwrap_or(0);
    TransactionCounts {
        success: counter("Success"),
        errors: counter("Errors"),
        http_errors: counter("HTTPErrors"),
        dropped_on_input: counter("DroppedOnInput"),
        http_errors_by_code: object_field(tx, "HTTPErrorsByCode")
            .into_iter()
            .flatten()
            .filter_map(|(code, n)| Some((code.clone(), count(n)?)))
            .collect(),
    }
}

/// Instance ids vary (`docker:<hash>`), so every instance is summed.
fn docker_check_runs(instances: &Map<String, Value>) -> Option<CheckRuns> {
    let mut runs: Option<CheckRuns> = None;
    for instance in instances.values().filter_map(Value::as_object) {
        let stat = |key: &str| get_ci(instance, key).and_then(count).unwrap_or(0);
        let total = runs.get_or_insert_with(CheckRuns::default);
        total.total_runs = total.total_runs.saturating_add(stat("TotalRuns"));
        total.total_errors = total.total_errors.saturating_add(stat("TotalErrors"));
        if total.last_error.is_none() {
            total.last_error = string_field(instance, "LastError");
        }
    }
    runs
}

fn logs_enabled(top: &Map<String, Value>) -> Option<bool> {
    match get_ci(top, "logsStats")? {
        Value::Object(logs) => Some(
            get_ci(logs, "is_running")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ),
        _ => None,
    }
}

/// Go marshals an empty list as `null`: a running logs agent with no source says
/// `"integrations": null`, which is an empty list, not an unknown one.
fn log_sources(top: &Map<String, Value>) -> Option<Vec<LogSource>> {
    let Value::Object(logs) = get_ci(top, "logsStats")? else {
        return None;
    };
    let integrations = match get_ci(logs, "integrations")? {
        Value::Array(list) => list.as_slice(),
        Value::Null => &[],
        _ => return None,
    };
    let text = |obj: &Map<String, Value>, key: &str| {
        get_ci(obj, key).and_then(Value::as_str).and_then(non_empty)
    };
    let mut out = Vec::new();
    for integration in integrations.iter().filter_map(Value::as_object) {
        let sources = get_ci(integration, "sources").and_then(Value::as_array);
        for source in sources.into_iter().flatten().filter_map(Value::as_object) {
            let config = object_field(source, "configuration");
            out.push(LogSource {
                kind: text(source, "type").unwrap_or_default(),
                path: config.and_then(|c| text(c, "Path")),
                identifier: config.and_then(|c| text(c, "Identifier")),
                status: text(source, "status").unwrap_or_default(),
            });
        }
    }
    Some(out)
}

/// Go marshals counters as ints, but floats (and numeric strings) are accepted.
fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::samples::*;
    use super::*;

    /// The shape of pkg/logs/status (Builder.BuildStatus): a container tailed from its file is a
    /// `file` source whose Identifier is the container id; an excluded container has no source.
    #[test]
    fn log_sources_are_read_from_logs_stats() {
        let answer = r#"Getting the status from the agent.
{"version":"7.70.0","logsStats":{"is_running":true,"endpoints":["Reliable: Sending compressed logs in HTTPS to agent-http-intake.logs.datadoghq.com on port 443"],
 "integrations":[{"name":"container_collect_all","sources":[
   {"bytes_read":120,"all_time_avg_latency":0,"type":"file","configuration":{"Identifier":"abc123","Path":"/var/lib/docker/containers/abc123/abc123-json.log","Service":"job","Source":"job"},"status":"OK","inputs":["/var/lib/docker/containers/abc123/abc123-json.log"],"messages":[],"info":{"Bytes Read":["120"]}},
   {"type":"docker","configuration":{"Image":"x"},"status":"Error: open /var/lib/docker/containers/def/def-json.log: no such file or directory","inputs":[]}]}]}}"#;
        let sources = parse_status_json(answer).unwrap().log_sources.unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].kind, "file");
        assert_eq!(sources[0].identifier.as_deref(), Some("abc123"));
        assert_eq!(sources[0].status, "OK");
        assert_eq!(sources[1].identifier, None);
        assert!(sources[1].status.contains("no such file"));
        let none = r#"{"version":"7.70.0","logsStats":{"is_running":true,"integrations":null}}"#;
        assert_eq!(parse_status_json(none).unwrap().log_sources, Some(vec![]));
        let unknown = r#"{"version":"7.70.0","logsStats":{"is_running":false}}"#;
        assert_eq!(parse_status_json(unknown).unwrap().log_sources, None);
    }

    #[test]
    fn a_valid_key_and_a_docker_check_that_ran() {
        // Text mode's first line, and a log line, before the object: both skipped.
        let input = format!(
            "Getting the status from the agent.\n\n2026-12-05 09:15:03 UTC | CORE | INFO | (pkg/x.go:1 in y) | {{ok}}\n{STATUS_JSON}"
        );
        let status = parse_status_json(&input).expect("parses");
        assert_eq!(status.version.as_deref(), Some("7.75.0"));
        assert_eq!(
            status.hostname.as_deref(),
            Some("ip-10-0-0-12.ec2.internal")
        );
        assert_eq!(status.hostname_provider.as_deref(), Some("aws"));
        assert_eq!(status.host_tags.len(), 7);
        assert_eq!(
            status.host_tags.first().map(String::as_str),
            Some("env:production")
        );
        assert_eq!(
            status.api_key,
            ApiKeyState::Valid {
                ending: "abcde".into()
            }
        );
        assert_eq!(
            status.transactions,
            TransactionCounts {
                success: 42,
                errors: 2,
                http_errors: 1,
                dropped_on_input: 0,
                http_errors_by_code: BTreeMap::from([("403".to_owned(), 1)]),
            }
        );
        // The cpu check's instance is not the docker check's.
        assert_eq!(
            status.docker_check,
            Some(CheckRuns {
                total_runs: 4,
                total_errors: 0,
                last_error: None
            })
        );
        assert_eq!(status.logs_enabled, Some(true));
    }

    #[test]
    fn an_older_agent_with_an_invalid_key_and_float_counters() {
        let status = parse_status_json(STATUS_OLDER_JSON).expect("parses");
        assert_eq!(status.hostname.as_deref(), Some("worker-1"));
        assert_eq!(
            status.host_tags,
            vec!["env:production".to_owned(), "team:ml".to_owned()]
        );
        assert_eq!(
            status.api_key,
            ApiKeyState::Invalid {
                ending: "12345".into(),
                reason: "API Key invalid".into()
            }
        );
        assert_eq!(status.transactions.http_errors, 7);
        assert_eq!(status.transactions.dropped_on_input, 3);
        assert_eq!(status.transactions.http_errors_by_code.get("403"), Some(&7));
        let docker = status.docker_check.expect("docker check");
        assert_eq!((docker.total_runs, docker.total_errors), (5, 2));
        assert!(docker
            .last_error
            .expect("error kept")
            .contains("docker daemon"));
        assert_eq!(status.logs_enabled, Some(false));
    }

    #[test]
    fn key_states() {
        let with = |fwd: &str| {
            parse_status_json(&format!("{{\"forwarderStats\":{fwd}}}"))
                .expect("parses")
                .api_key
        };
        assert_eq!(
            with(
                r#"{"APIKeyStatus":{"API key ending with fghij":"Unable to reach the API Key validation endpoint"}}"#
            ),
            ApiKeyState::Unknown
        );
        assert_eq!(
            with(
                r#"{"APIKeyStatus":{"API key ending with 00000":"Fake API Key that skips validation"}}"#
            ),
            ApiKeyState::Unknown
        );
        assert_eq!(
            with(
                r#"{"APIKeyFailure":{"API key ending with ccccc":"Unexpected response code from the API Key validation endpoint"}}"#
            ),
            ApiKeyState::Invalid {
                ending: "ccccc".into(),
                reason: "Unexpected response code from the API Key validation endpoint".into()
            }
        );
        assert_eq!(
            with(
                r#"{"APIKeyStatus":{"API key ending with aaaaa":"API Key valid","API key ending with bbbbb":"API Key invalid"}}"#
            ),
            ApiKeyState::Invalid {
                ending: "bbbbb".into(),
                reason: "API Key invalid".into()
            }
        );
        assert_eq!(with("{}"), ApiKeyState::Unknown);
    }

    #[test]
    fn every_field_is_optional() {
        assert_eq!(parse_status_json("{}"), Ok(AgentStatus::default()));
        let status = parse_status_json(
            r#"{"version":"7.1.0","hostTags":null,"logsStats":null,"runnerStats":{"Checks":{}}}"#,
        )
        .expect("parses");
        assert_eq!(status.version.as_deref(), Some("7.1.0"));
        assert!(status.host_tags.is_empty());
        assert_eq!((status.docker_check, status.logs_enabled), (None, None));
        assert!(matches!(
            parse_status_json("Getting the status from the agent.\n"),
            Err(OutputError::NoJson { .. })
        ));
    }

    #[test]
    fn the_key_state_serializes_with_a_state_tag() {
        let json = serde_json::to_value(ApiKeyState::Invalid {
            ending: "abcde".into(),
            reason: "API Key invalid".into(),
        })
        .expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"state": "invalid", "ending": "abcde", "reason": "API Key invalid"})
        );
        let json = serde_json::to_value(ApiKeyState::Unknown).expect("serializes");
        assert_eq!(json, serde_json::json!({"state": "unknown"}));
    }
}
