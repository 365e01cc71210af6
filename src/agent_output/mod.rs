//! Parsers for what `docker exec <agent> agent ...` prints.
//!
//! Everything here is pure (`&str` in, data out) and never panics. The agent's output
//! varies across versions, may be coloured, and may be preceded by log lines, so every
//! parser is tolerant: unknown fields are ignored and missing ones become `None`.
//! Container ids are always returned as 64 lowercase hex characters; anything else is
//! not a container id and is skipped.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

const ESC: char = '\u{1b}';

/// How many `{` positions [`find_json_object`] tries; keeps hostile input linear.
const MAX_JSON_CANDIDATES: usize = 64;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

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

/// A container the agent's workloadmeta store knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadContainer {
    /// 64 lowercase hex characters.
    pub id: String,
    pub name: Option<String>,
    pub image_name: Option<String>,
    pub image_tag: Option<String>,
    pub running: Option<bool>,
}

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
}

/// Why a `--json` output could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("`agent {command}` printed no JSON object")]
    NoJson { command: &'static str },
    #[error("`agent {command}` printed unusable JSON: {reason}")]
    Malformed {
        command: &'static str,
        reason: String,
    },
}

// ---------------------------------------------------------------------------
// ANSI
// ---------------------------------------------------------------------------

/// Removes ANSI escape sequences (colour, OSC titles and links, ...) - agent output may be coloured.
///
/// Line by line, so an unterminated OSC never swallows the rest of the output.
pub fn strip_ansi(s: &str) -> Cow<'_, str> {
    if !s.contains(ESC) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.extend(anstream::adapter::strip_str(line));
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// agent health
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum ComponentList {
    Healthy,
    Unhealthy,
}

/// Parses `agent health`: `Agent health: PASS|FAIL`, then `=== N healthy components ===`
/// and/or `=== N unhealthy components ===`, each followed by a comma-separated line.
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

/// True when a `--json` invocation failed because the agent is too old (`unknown flag: --json`, in stdout or stderr).
pub fn json_flag_unsupported(stdout: &str, stderr: &str) -> bool {
    [stdout, stderr].into_iter().any(|text| {
        let text = strip_ansi(text);
        contains_ignore_ascii_case(&text, "unknown flag: --json")
            || contains_ignore_ascii_case(&text, "unknown shorthand flag: 'j'")
    })
}

// ---------------------------------------------------------------------------
// agent workload-list
// ---------------------------------------------------------------------------

impl WorkloadContainer {
    fn new(id: String) -> Self {
        WorkloadContainer {
            id,
            name: None,
            image_name: None,
            image_tag: None,
            running: None,
        }
    }

    /// The same container listed twice: keep what we have, fill the gaps.
    fn fill_missing_from(&mut self, other: WorkloadContainer) {
        self.name = self.name.take().or(other.name);
        self.image_name = self.image_name.take().or(other.image_name);
        self.image_tag = self.image_tag.take().or(other.image_tag);
        self.running = self.running.or(other.running);
    }
}

/// Merges duplicates and sorts by id: the agent lists entities in random order.
fn collect_containers(
    found: impl IntoIterator<Item = WorkloadContainer>,
) -> Vec<WorkloadContainer> {
    let mut by_id: BTreeMap<String, WorkloadContainer> = BTreeMap::new();
    for container in found {
        match by_id.entry(container.id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(container);
            }
            Entry::Occupied(mut slot) => slot.get_mut().fill_missing_from(container),
        }
    }
    by_id.into_values().collect()
}

/// `agent workload-list --json`: tolerate any text (log lines) before the first `{`; top key `Entities` or `entities`; only the `container` kind counts; ignore unknown fields; missing optional fields are None.
pub fn parse_workload_list_json(s: &str) -> Result<Vec<WorkloadContainer>, OutputError> {
    const COMMAND: &str = "workload-list --json";
    let top = find_json_object(s, COMMAND, has_entities)?;
    let mut found = Vec::new();
    match entities_of(&top, COMMAND)? {
        // A Go nil map marshals to null: an empty store.
        Value::Null => {}
        Value::Object(by_kind) => {
            for (kind, list) in by_kind {
                if kind.eq_ignore_ascii_case("container") {
                    let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
                    found.extend(list.iter().filter_map(container_from_json));
                }
            }
        }
        // Not seen in the wild, but cheap to accept: a flat list of entities with `Kind`.
        Value::Array(list) => found.extend(
            list.iter()
                .filter(|e| e.get("Kind").and_then(Value::as_str) == Some("container"))
                .filter_map(container_from_json),
        ),
        _ => {
            return Err(malformed(
                COMMAND,
                "`Entities` is neither an object nor an array",
            ))
        }
    }
    Ok(collect_containers(found))
}

/// One entity of the `container` kind. Go embeds `EntityID` and `EntityMeta`, so `ID`
/// and `Name` sit at the top level; the nested spelling is accepted too.
fn container_from_json(entity: &Value) -> Option<WorkloadContainer> {
    let entity = entity.as_object()?;
    let entity_id = object_field(entity, "EntityID");
    let kind = get_ci(entity, "Kind").or_else(|| entity_id.and_then(|e| get_ci(e, "Kind")));
    if kind
        .and_then(Value::as_str)
        .is_some_and(|k| !k.eq_ignore_ascii_case("container"))
    {
        return None;
    }
    let id = get_ci(entity, "ID").or_else(|| entity_id.and_then(|e| get_ci(e, "ID")));
    let mut container = WorkloadContainer::new(container_id(id?.as_str()?)?);
    container.name = string_field(entity, "Name")
        .or_else(|| object_field(entity, "EntityMeta").and_then(|m| string_field(m, "Name")));
    if let Some(image) = object_field(entity, "Image") {
        container.image_name = string_field(image, "Name");
        container.image_tag = string_field(image, "Tag");
    }
    container.running = object_field(entity, "State")
        .and_then(|state| get_ci(state, "Running"))
        .and_then(Value::as_bool);
    Some(container)
}

/// `agent workload-list` text: ONLY blocks whose header is a container entity count - both header forms
/// `=== Entity container sources(merged):[runtime] id: <id> ===` (sources vary: `[docker]`, `[node_orchestrator runtime]`, ...) and `=== Entity container <id> ===`.
/// Other kinds (process, container_image_metadata, ...) are ignored even when their lines mention container ids.
/// Takes Name (Entity Meta section), Image Name/Tag (Image section), Running (Container Info).
/// Random entity order; the result is sorted by id. ANSI colour is stripped first.
pub fn parse_workload_list_text(s: &str) -> Vec<WorkloadContainer> {
    let text = strip_ansi(s);
    let mut found = Vec::new();
    let mut current: Option<WorkloadContainer> = None;
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if let Some(header) = entity_header(line) {
            found.extend(current.take());
            current = container_from_header(header).map(WorkloadContainer::new);
            section = "";
        } else if line == "===" {
            found.extend(current.take());
        } else if let Some(container) = current.as_mut() {
            if let Some(title) = section_title(line) {
                section = title;
            } else if let Some((key, value)) = line.split_once(':') {
                apply_workload_field(container, section, key.trim(), value);
            }
        }
    }
    found.extend(current);
    collect_containers(found)
}

/// `=== Entity <rest> ===` -> `<rest>`.
fn entity_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("===")?.strip_suffix("===")?.trim();
    let rest = inner.strip_prefix("Entity")?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// `container sources(merged):[docker] id: <id>` or `container <id>`: the id is the last token.
fn container_from_header(header: &str) -> Option<String> {
    let mut tokens = header.split_whitespace();
    if tokens.next()? != "container" {
        return None;
    }
    let last = tokens.last()?;
    // Tolerates `id:<id>` written without a space.
    container_id(last.rsplit(':').next().unwrap_or(last))
}

/// `----------- Entity Meta -----------` -> `Entity Meta`.
fn section_title(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("---")?.strip_suffix("---")?;
    Some(inner.trim_matches('-').trim())
}

fn apply_workload_field(container: &mut WorkloadContainer, section: &str, key: &str, value: &str) {
    let is = |s: &str, k: &str| section.eq_ignore_ascii_case(s) && key.eq_ignore_ascii_case(k);
    let slot = if is("Entity Meta", "Name") {
        &mut container.name
    } else if is("Image", "Name") {
        &mut container.image_name
    } else if is("Image", "Tag") {
        &mut container.image_tag
    } else {
        if is("Container Info", "Running") && container.running.is_none() {
            container.running = parse_bool(value);
        }
        return;
    };
    if slot.is_none() {
        *slot = non_empty(value);
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// agent tagger-list
// ---------------------------------------------------------------------------

/// `agent tagger-list` text, both Source forms: `== Source X =` followed by `=Tags: [a b c]` on the next line,
/// and the older `== Source X ==` then `Tags: [a b c]`. Key = the container id (from
/// `=== Entity container_id://<id> ===`); value = all tags of that entity across sources, sorted,
/// deduplicated. Entities that are not `container_id://` are ignored.
pub fn parse_tagger_list_text(s: &str) -> BTreeMap<String, Vec<String>> {
    let text = strip_ansi(s);
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(entity) = entity_header(line) {
            current = tagger_container_id(entity);
            if let Some(id) = &current {
                tags.entry(id.clone()).or_default();
            }
        } else if line == "===" {
            current = None;
        } else if let (Some(id), Some(list)) = (&current, tags_line(line)) {
            let entity_tags = tags.entry(id.clone()).or_default();
            entity_tags.extend(list.split_whitespace().map(text_tag).map(str::to_owned));
        }
    }
    into_sorted_vecs(tags)
}

/// `agent tagger-list --json` (`{"entities": {"container_id://<id>": {"tags": {"<source>": [...]}}}}`),
/// text before the first `{` tolerated. Every string inside an array under the entity counts as a tag.
pub fn parse_tagger_list_json(s: &str) -> Result<BTreeMap<String, Vec<String>>, OutputError> {
    const COMMAND: &str = "tagger-list --json";
    let top = find_json_object(s, COMMAND, has_entities)?;
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match entities_of(&top, COMMAND)? {
        Value::Null => {}
        Value::Object(entities) => {
            for (entity, value) in entities {
                if let Some(id) = tagger_container_id(entity) {
                    collect_array_strings(value, tags.entry(id).or_default());
                }
            }
        }
        _ => return Err(malformed(COMMAND, "`Entities` is not an object")),
    }
    Ok(into_sorted_vecs(tags))
}

fn tagger_container_id(entity: &str) -> Option<String> {
    container_id(entity.trim().strip_prefix("container_id://")?)
}

/// `=Tags: [a b c]` (newer) or `Tags: [a b c]` (older) -> `a b c`.
fn tags_line(line: &str) -> Option<&str> {
    let body = line
        .trim_start_matches('=')
        .trim_start()
        .strip_prefix("Tags:")?
        .trim();
    let body = body.strip_prefix('[').unwrap_or(body);
    Some(body.strip_suffix(']').unwrap_or(body))
}

/// The text form prints a tag as `key:value` split at its first colon, so a tag without
/// a colon comes out as `tag:`. Valid tags never end with `:`, so that colon is dropped.
fn text_tag(tag: &str) -> &str {
    match tag.strip_suffix(':') {
        Some(base) if !base.contains(':') => base,
        _ => tag,
    }
}

/// Strings inside arrays, at any depth (serde_json caps the depth at 128).
fn collect_array_strings(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(tag) if !tag.trim().is_empty() => {
                        out.insert(tag.trim().to_owned());
                    }
                    other => collect_array_strings(other, out),
                }
            }
        }
        Value::Object(map) => map.values().for_each(|v| collect_array_strings(v, out)),
        _ => {}
    }
}

fn into_sorted_vecs(tags: BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, Vec<String>> {
    tags.into_iter()
        .map(|(id, set)| (id, set.into_iter().collect()))
        .collect()
}

// ---------------------------------------------------------------------------
// agent status --json
// ---------------------------------------------------------------------------

/// `agent status --json` / `-j`: one JSON object, possibly preceded by text such as
/// `Getting the status from the agent.`; numbers may be ints or floats; every field optional.
pub fn parse_status_json(s: &str) -> Result<AgentStatus, OutputError> {
    const COMMAND: &str = "status --json";
    let top = find_json_object(s, COMMAND, looks_like_status)?;
    let forwarder = object_field(&top, "forwarderStats");
    Ok(AgentStatus {
        version: string_field(&top, "version"),
        hostname: status_hostname(&top),
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
fn status_hostname(top: &Map<String, Value>) -> Option<String> {
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

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Finds the JSON object in `s`, skipping text (log lines) before it. Candidates are every
/// `{` that starts a line plus the first `{` anywhere; the first object that `wanted`
/// accepts wins, else the first object that parsed at all.
fn find_json_object(
    s: &str,
    command: &'static str,
    wanted: impl Fn(&Map<String, Value>) -> bool,
) -> Result<Map<String, Value>, OutputError> {
    let text = strip_ansi(s);
    let mut first_object = None;
    let mut first_error = None;
    for start in json_candidates(&text) {
        let Some(rest) = text.get(start..) else {
            continue;
        };
        match serde_json::Deserializer::from_str(rest)
            .into_iter::<Value>()
            .next()
        {
            Some(Ok(Value::Object(obj))) if wanted(&obj) => return Ok(obj),
            Some(Ok(Value::Object(obj))) => {
                first_object.get_or_insert(obj);
            }
            Some(Err(err)) => {
                first_error.get_or_insert_with(|| err.to_string());
            }
            Some(Ok(_)) | None => {}
        }
    }
    match (first_object, first_error) {
        (Some(obj), _) => Ok(obj),
        (None, Some(reason)) => Err(OutputError::Malformed { command, reason }),
        (None, None) => Err(OutputError::NoJson { command }),
    }
}

fn json_candidates(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        if body.starts_with('{') {
            starts.push(offset + (line.len() - body.len()));
            if starts.len() >= MAX_JSON_CANDIDATES {
                break;
            }
        }
        offset += line.len();
    }
    if let Some(first) = text.find('{') {
        if starts.first() != Some(&first) {
            starts.insert(0, first);
        }
    }
    starts
}

fn has_entities(obj: &Map<String, Value>) -> bool {
    get_ci(obj, "entities").is_some()
}

fn entities_of<'a>(
    top: &'a Map<String, Value>,
    command: &'static str,
) -> Result<&'a Value, OutputError> {
    get_ci(top, "entities").ok_or_else(|| malformed(command, "no `Entities` key"))
}

fn malformed(command: &'static str, reason: &str) -> OutputError {
    OutputError::Malformed {
        command,
        reason: reason.to_owned(),
    }
}

/// Exact key first, then ASCII case-insensitive: revisions spell `Entities`/`entities`.
fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn object_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    get_ci(obj, key)?.as_object()
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    non_empty(get_ci(obj, key)?.as_str()?)
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// 64 hex characters, returned lowercase; anything else is not a container id.
fn container_id(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID_A: &str = "8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
    const ID_B: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
    const ID_C: &str = "d884b5186b651429e5b7a8c0f3e2d1c4b6a7980e1f2d3c4b5a6978877665544a";
    const ID_D: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    fn ids(containers: &[WorkloadContainer]) -> Vec<&str> {
        containers.iter().map(|c| c.id.as_str()).collect()
    }

    fn by_id<'a>(containers: &'a [WorkloadContainer], id: &str) -> &'a WorkloadContainer {
        containers
            .iter()
            .find(|c| c.id == id)
            .expect("container listed")
    }

    #[test]
    fn sample_ids_are_64_hex() {
        for id in [ID_A, ID_B, ID_C, ID_D] {
            assert_eq!(container_id(id).as_deref(), Some(id));
        }
        assert_eq!(container_id(&ID_A.to_uppercase()).as_deref(), Some(ID_A));
        assert_eq!(container_id(&ID_A[1..]), None);
        assert_eq!(container_id(&format!("{}z", &ID_A[1..])), None);
    }

    // ---- strip_ansi ----

    #[test]
    fn strip_ansi_removes_colour_and_osc() {
        assert_eq!(
            strip_ansi("Agent health: \x1b[32mPASS\x1b[0m"),
            "Agent health: PASS"
        );
        assert_eq!(strip_ansi("\x1b[1;31;48;5;16mred\x1b[m"), "red");
        assert_eq!(strip_ansi("\x1b]0;title\x07text"), "text");
        assert_eq!(
            strip_ansi("\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(strip_ansi("a\x1b(Bb\x1b7c"), "abc");
        assert_eq!(strip_ansi("broken \x1b[31"), "broken ");
        assert_eq!(strip_ansi("osc \x1b]unterminated\nnext"), "osc \nnext");
        assert!(matches!(strip_ansi("plain"), Cow::Borrowed("plain")));
    }

    // ---- health ----

    const HEALTH_PASS: &str = "Agent health: \x1b[32mPASS\x1b[0m\n\
=== \x1b[32m19\x1b[0m healthy components ===\n\
ad-autoconfig, ad-containerlistener, ad-servicelistening, aggregator, collector-queue-15s, \
dogstatsd-main, forwarder, healthcheck, logs-agent, metadata-agent_checks, metadata-host, \
metadata-inventories, metadata-resources, runner-1, runner-2, runner-3, runner-4, tagger-store, \
workloadmeta-store\n";

    #[test]
    fn health_pass() {
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
        assert_eq!(report.not_up_yet, None);
    }

    #[test]
    fn health_fail_with_unhealthy_forwarder() {
        let stdout = "Agent health: \x1b[31mFAIL\x1b[0m\n\
=== \x1b[32m18\x1b[0m healthy components ===\n\
ad-autoconfig, ad-containerlistener, aggregator, collector-queue-15s, dogstatsd-main, healthcheck\n\
=== \x1b[31m1\x1b[0m unhealthy components ===\n\
forwarder\n";
        let stderr = "Error: found 1 unhealthy components\n";
        let report = parse_health(255, stdout, stderr);
        assert!(!report.healthy);
        assert_eq!(report.unhealthy_components, vec!["forwarder".to_owned()]);
        assert_eq!(report.healthy_components.len(), 6);
        assert_eq!(report.not_up_yet, None);
    }

    #[test]
    fn health_unhealthy_components_make_it_unhealthy_even_with_exit_zero() {
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
    fn health_unreachable_agent() {
        let stderr = "Error: could not reach agent: Get \"https://localhost:5001/agent/status/health\": \
dial tcp [::1]:5001: connect: connection refused \n\
Make sure the agent is running before requesting the status and contact support if you continue having issues\n";
        let report = parse_health(255, "", stderr);
        assert!(!report.healthy);
        let line = report.not_up_yet.expect("unreachable detected");
        assert!(line.starts_with("Error: could not reach agent: Get"));
        assert!(line.ends_with("connection refused"));
        assert!(report.healthy_components.is_empty());
    }

    #[test]
    fn health_without_an_auth_token_is_not_up_yet() {
        let stderr = "Error: unable to fetch auth token (please check that the Agent is running, this file is normally generated during the first run of the Agent service.): open /etc/datadog-agent/auth_token: no such file or directory\n";
        let report = parse_health(255, "", stderr);
        assert!(!report.healthy);
        let line = report.not_up_yet.clone().expect("not up yet detected");
        assert!(line.contains("unable to fetch auth token"), "{line}");
        assert!(report
            .summary()
            .starts_with("not answering yet: Error: unable to fetch auth token"));
        assert!(report.other_error.is_none());
    }

    #[test]
    fn a_failed_health_says_what_the_agent_said() {
        let report = parse_health(255, "", "Error: something odd\n\n");
        assert_eq!(report.other_error.as_deref(), Some("Error: something odd"));
        let listed = parse_health(
            255,
            "Agent health: FAIL\n=== 1 unhealthy components ===\nforwarder\n",
            "Error: found 1 unhealthy components\n",
        );
        assert_eq!(listed.summary(), "unhealthy: forwarder");
        assert!(listed.other_error.is_none());
    }

    #[test]
    fn health_exit_code_alone_decides_failure() {
        assert!(!parse_health(1, HEALTH_PASS, "").healthy);
        assert!(!parse_health(255, "", "").healthy);
    }

    // ---- json_flag_unsupported ----

    #[test]
    fn unknown_json_flag_is_detected() {
        let usage = "Error: unknown flag: --json\nUsage:\n  agent workload-list [flags]\n";
        assert!(json_flag_unsupported("", usage));
        assert!(json_flag_unsupported(usage, ""));
        assert!(json_flag_unsupported(
            "",
            "\x1b[31mError: unknown flag: --json\x1b[0m"
        ));
        assert!(json_flag_unsupported(
            "",
            "Error: unknown shorthand flag: 'j' in -j"
        ));
        assert!(!json_flag_unsupported("{\"Entities\":{}}", ""));
        assert!(!json_flag_unsupported(
            "",
            "Error: unknown flag: --verbose-json-output-x"
        ));
    }

    // ---- workload-list text ----

    fn workload_text() -> String {
        format!(
            "\n=== Entity \x1b[32mprocess\x1b[0m \x1b[32msources(merged):[process_collector] id: 4242\x1b[0m ===\n\
----------- Entity ID -----------\n\
Kind: process ID: 4242\n\
----------- Process Info -----------\n\
Name: python3\n\
Container ID: {ID_D}\n\
===\n\
\n=== Entity \x1b[32mcontainer\x1b[0m \x1b[32msources(merged):[runtime] id: {ID_A}\x1b[0m ===\n\
----------- Entity ID -----------\n\
Kind: container ID: {ID_A}\n\
----------- Entity Meta -----------\n\
Name: myapp\n\
Namespace:\n\
----------- Image -----------\n\
Name: nginx\n\
Tag: latest\n\
----------- Container Info -----------\n\
Runtime: docker\n\
RuntimeFlavor:\n\
Running: true\n\
----------- Resources -----------\n\
----------- Allocated Resources -----------\n\
Name: nvidia.com/gpu, ID: GPU-1\n\
===\n\
\n=== Entity container_image_metadata sources(merged):[docker] id: sha256:{ID_D} ===\n\
----------- Entity ID -----------\n\
Kind: container_image_metadata ID: sha256:{ID_D}\n\
----------- Entity Meta -----------\n\
Name: redis\n\
===\n\
\n=== Entity container {ID_B} ===\n\
----------- Entity ID -----------\n\
Kind: container ID: {ID_B}\n\
----------- Entity Meta -----------\n\
Name: sky-job-1\n\
Namespace:\n\
----------- Image -----------\n\
Name: public.ecr.aws/skypilot/worker\n\
Tag: v1.2\n\
----------- Container Info -----------\n\
Runtime: docker\n\
Running: false\n\
===\n\
\n=== Entity container sources(merged):[node_orchestrator runtime] id: {ID_C} ===\n\
----------- Entity ID -----------\n\
Kind: container ID: {ID_C}\n\
----------- Entity Meta -----------\n\
Name:\n\
----------- Image -----------\n\
Name: redis\n\
Tag:\n\
===\n\
\n=== Entity container sources(merged):[docker] id: not-a-container-id ===\n\
Name: ghost\n\
===\n"
        )
    }

    /// Container A as both workload-list forms describe it.
    fn myapp() -> WorkloadContainer {
        WorkloadContainer {
            id: ID_A.to_owned(),
            name: Some("myapp".to_owned()),
            image_name: Some("nginx".to_owned()),
            image_tag: Some("latest".to_owned()),
            running: Some(true),
        }
    }

    #[test]
    fn workload_text_only_counts_container_entities() {
        let containers = parse_workload_list_text(&workload_text());
        let mut expected = vec![ID_A, ID_B, ID_C];
        expected.sort_unstable();
        assert_eq!(ids(&containers), expected);

        assert_eq!(by_id(&containers, ID_A), &myapp());
        let b = by_id(&containers, ID_B);
        assert_eq!(b.name.as_deref(), Some("sky-job-1"));
        assert_eq!(
            b.image_name.as_deref(),
            Some("public.ecr.aws/skypilot/worker")
        );
        assert_eq!(b.image_tag.as_deref(), Some("v1.2"));
        assert_eq!(b.running, Some(false));
        let c = by_id(&containers, ID_C);
        assert_eq!(
            (c.name.as_deref(), c.image_name.as_deref()),
            (None, Some("redis"))
        );
        assert_eq!((c.image_tag.as_deref(), c.running), (None, None));
    }

    #[test]
    fn workload_text_order_does_not_matter() {
        let text = workload_text();
        let blocks: Vec<&str> = text.split("\n\n").collect();
        let reversed: Vec<&str> = blocks.iter().rev().copied().collect();
        assert_eq!(
            parse_workload_list_text(&reversed.join("\n\n")),
            parse_workload_list_text(&text)
        );
    }

    #[test]
    fn workload_text_tolerates_missing_block_end_and_crlf() {
        let text = format!(
            "=== Entity container {ID_A} ===\r\n----------- Entity Meta -----------\r\nName: a\r\n\
=== Entity container {ID_B} ===\r\n----------- Container Info -----------\r\nRunning: true"
        );
        let containers = parse_workload_list_text(&text);
        assert_eq!(by_id(&containers, ID_A).name.as_deref(), Some("a"));
        assert_eq!(by_id(&containers, ID_B).running, Some(true));
    }

    #[test]
    fn workload_text_without_containers_is_empty() {
        assert!(parse_workload_list_text("").is_empty());
        assert!(parse_workload_list_text(
            "Failed to query the agent (running?): connection refused"
        )
        .is_empty());
    }

    // ---- workload-list --json ----

    fn workload_json(top_key: &str) -> String {
        format!(
            r#"{{"{top_key}":{{"container":[{{"Kind":"container","ID":"{ID_A}","Name":"myapp","Namespace":"","Annotations":null,"Labels":{{"com.datadoghq.ad.tags":"[\"team:ml\"]"}},"EnvVars":null,"Hostname":"myapp-host","Image":{{"ID":"sha256:abc","RawName":"nginx:latest","Name":"nginx","Registry":"","ShortName":"nginx","Tag":"latest","RepoDigest":""}},"NetworkIPs":{{"bridge":"172.17.0.2"}},"PID":1234,"Ports":null,"Runtime":"docker","RuntimeFlavor":"","State":{{"Running":true,"Status":"running","Health":"","CreatedAt":"2026-01-01T00:00:00Z","StartedAt":"2026-01-01T00:00:01Z","FinishedAt":"0001-01-01T00:00:00Z","ExitCode":null}},"CollectorTags":null,"Owner":null,"SecurityContext":null,"Resources":{{}},"CgroupPath":"/docker/{ID_A}","RestartCount":0}},{{"Kind":"container","ID":"{ID_B}","Image":{{"Name":"redis"}}}},{{"Kind":"container","ID":"short"}}],"process":[{{"Kind":"process","ID":"4242","Pid":4242,"ContainerID":"{ID_C}","Name":"python3"}}],"container_image_metadata":[{{"Kind":"container_image_metadata","ID":"sha256:{ID_D}","Name":"redis"}}]}}}}"#
        )
    }

    #[test]
    fn workload_json_with_log_line_before() {
        let input = format!(
            "2026-01-02 10:00:00 UTC | CORE | WARN | (pkg/config/setup/config.go:123 in LoadProxyFromEnv) | proxy {{not json}}\n{}\n",
            workload_json("Entities")
        );
        let containers = parse_workload_list_json(&input).expect("parses");
        let mut expected = vec![ID_A, ID_B];
        expected.sort_unstable();
        assert_eq!(ids(&containers), expected);
        assert_eq!(by_id(&containers, ID_A), &myapp());
        let b = by_id(&containers, ID_B);
        assert_eq!(
            (b.name.as_deref(), b.image_name.as_deref()),
            (None, Some("redis"))
        );
        assert_eq!((b.image_tag.as_deref(), b.running), (None, None));
    }

    #[test]
    fn workload_json_lowercase_entities_and_json_log_lines() {
        let input = format!(
            "{{\"level\":\"INFO\",\"msg\":\"starting\"}}\n{}",
            workload_json("entities")
        );
        let containers = parse_workload_list_json(&input).expect("parses");
        assert_eq!(containers.len(), 2);
    }

    #[test]
    fn workload_json_empty_and_null_stores() {
        assert_eq!(parse_workload_list_json("{\"Entities\":null}"), Ok(vec![]));
        assert_eq!(parse_workload_list_json("{\"Entities\":{}}"), Ok(vec![]));
        assert_eq!(
            parse_workload_list_json("{\"entities\":{\"process\":[]}}"),
            Ok(vec![])
        );
    }

    #[test]
    fn workload_json_errors() {
        assert!(matches!(
            parse_workload_list_json("Error: unknown flag: --json"),
            Err(OutputError::NoJson { .. })
        ));
        assert!(matches!(
            parse_workload_list_json("{\"Entities\": {\"container\": [tru"),
            Err(OutputError::Malformed { .. })
        ));
        assert!(matches!(
            parse_workload_list_json("{\"error\": \"boom\"}"),
            Err(OutputError::Malformed { .. })
        ));
    }

    // ---- tagger-list ----

    fn tagger_text() -> String {
        format!(
            "\n=== Entity \x1b[32mcontainer_id://{ID_A}\x1b[0m ===\n\
== Source docker =\n\
=Tags: [\x1b[34mcontainer_name\x1b[0m:\x1b[36mmyapp\x1b[0m \x1b[34mimage_name\x1b[0m:\x1b[36mnginx\x1b[0m team:ml]\n\
== Source workloadmeta-container =\n\
=Tags: [container_id:{ID_A} container_name:myapp docker_image:nginx:latest image_name:nginx image_tag:latest short_image:nginx standalone:]\n\
===\n\
\n=== Entity kubernetes_pod_uid://1234-5678 ===\n\
== Source workloadmeta-kubernetes_pod =\n\
=Tags: [pod_name:web]\n\
===\n\
\n=== Entity container_id://{ID_B} ===\n\
== Source docker ==\n\
Tags: [container_name:sky-job-1 env:prod]\n\
== Source workloadmeta-container ==\n\
Tags: [container_id:{ID_B} image_name:redis]\n\
===\n\
\n=== Entity container_id://tooshort ===\n\
=Tags: [container_name:ghost]\n\
===\n"
        )
    }

    #[test]
    fn tagger_text_both_source_forms() {
        let tags = parse_tagger_list_text(&tagger_text());
        assert_eq!(tags.keys().map(String::as_str).collect::<Vec<_>>(), {
            let mut k = vec![ID_A, ID_B];
            k.sort_unstable();
            k
        });
        let a: Vec<String> = [
            format!("container_id:{ID_A}"),
            "container_name:myapp".into(),
            "docker_image:nginx:latest".into(),
            "image_name:nginx".into(),
            "image_tag:latest".into(),
            "short_image:nginx".into(),
            "standalone".into(),
            "team:ml".into(),
        ]
        .into();
        assert_eq!(tags.get(ID_A), Some(&a));
        let b: Vec<String> = [
            format!("container_id:{ID_B}"),
            "container_name:sky-job-1".into(),
            "env:prod".into(),
            "image_name:redis".into(),
        ]
        .into();
        assert_eq!(tags.get(ID_B), Some(&b));
    }

    #[test]
    fn tagger_json_collects_all_sources() {
        let input = format!(
            "Some warning line\n{{\n  \"entities\": {{\n    \"container_id://{ID_A}\": {{\n      \"tags\": {{\n        \"docker\": [\"team:ml\", \"container_name:myapp\"],\n        \"workloadmeta-container\": [\"container_name:myapp\", \"image_name:nginx\", \"standalone\"]\n      }}\n    }},\n    \"kubernetes_pod_uid://abc\": {{\"tags\": {{\"x\": [\"pod_name:web\"]}}}},\n    \"container_id://{}\": {{\"Tags\": {{\"docker\": [\"env:prod\"]}}}}\n  }}\n}}\n",
            ID_B.to_uppercase()
        );
        let tags = parse_tagger_list_json(&input).expect("parses");
        assert_eq!(tags.len(), 2);
        let a: Vec<String> = [
            "container_name:myapp",
            "image_name:nginx",
            "standalone",
            "team:ml",
        ]
        .map(String::from)
        .into();
        assert_eq!(tags.get(ID_A), Some(&a));
        assert_eq!(tags.get(ID_B), Some(&vec!["env:prod".to_owned()]));
    }

    #[test]
    fn tagger_json_uppercase_top_key_and_errors() {
        let input = format!("{{\"Entities\":{{\"container_id://{ID_C}\":{{\"tags\":{{}}}}}}}}");
        assert_eq!(
            parse_tagger_list_json(&input).expect("parses").get(ID_C),
            Some(&vec![])
        );
        assert!(matches!(
            parse_tagger_list_json(""),
            Err(OutputError::NoJson { .. })
        ));
        assert!(matches!(
            parse_tagger_list_json("{\"Entities\": 3}"),
            Err(OutputError::Malformed { .. })
        ));
    }

    // ---- status --json ----

    fn status_valid() -> String {
        r#"Getting the status from the agent.

{"agent_metadata":{},"version":"7.75.0","hostnameStats":{"errors":{"'hostname' configuration/environment":"hostname is empty"},"provider":"container"},"meta":{"hostname":"ip-10-0-0-12.ec2.internal","socket-hostname":"4f2a","timezones":["UTC"]},"hostTags":["env:production","service:skypilot-worker"],"forwarderStats":{"APIKeyFailure":{},"APIKeyStatus":{"API key ending with abcde":"API Key valid"},"Transactions":{"Success":42,"Errors":2,"ErrorsByType":{"DNSErrors":0,"SentRequestErrors":2},"HTTPErrors":1,"HTTPErrorsByCode":{"403":1},"DroppedOnInput":0,"Requeued":0,"Retried":1,"SuccessByEndpoint":{"series_v2":20,"check_run_v1":22}}},"runnerStats":{"Checks":{"docker":{"docker:a1b2c3d4e5f6a7b8":{"CheckName":"docker","CheckID":"docker:a1b2c3d4e5f6a7b8","TotalRuns":12,"TotalErrors":0,"TotalWarnings":0,"LastError":"","LastWarnings":[]}},"cpu":{"cpu":{"TotalRuns":99,"TotalErrors":5,"LastError":"nope"}}}},"logsStats":{"is_running":true,"endpoints":{}}}
"#
        .to_owned()
    }

    #[test]
    fn status_with_valid_key() {
        let status = parse_status_json(&status_valid()).expect("parses");
        assert_eq!(status.version.as_deref(), Some("7.75.0"));
        assert_eq!(
            status.hostname.as_deref(),
            Some("ip-10-0-0-12.ec2.internal")
        );
        assert_eq!(status.hostname_provider.as_deref(), Some("container"));
        assert_eq!(
            status.host_tags,
            vec![
                "env:production".to_owned(),
                "service:skypilot-worker".to_owned()
            ]
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
        assert_eq!(
            status.docker_check,
            Some(CheckRuns {
                total_runs: 12,
                total_errors: 0,
                last_error: None
            })
        );
        assert_eq!(status.logs_enabled, Some(true));
    }

    #[test]
    fn status_with_invalid_key_and_varying_instances() {
        let input = r#"{"version":"7.60.1","hostnameStats":{"provider":"os","hostname":"worker-1"},"metadata":{"meta":{"hostname":"ignored"},"host-tags":{"system":["team:ml"]}},"forwarderStats":{"APIKeyFailure":{"API key ending with 12345":"API Key invalid"},"APIKeyStatus":{},"Transactions":{"Success":0.0,"Errors":7.0,"HTTPErrors":7,"HTTPErrorsByCode":{"403":7.0},"DroppedOnInput":3}},"runnerStats":{"Checks":{"docker":{"docker:d884b5186b651429":{"TotalRuns":3.0,"TotalErrors":1,"LastError":"[{\"message\": \"temporary failure to access the docker daemon\"}]"},"docker:0000":{"TotalRuns":2,"TotalErrors":1,"LastError":""}}}},"logsStats":{"is_running":false}}"#;
        let status = parse_status_json(input).expect("parses");
        assert_eq!(status.hostname.as_deref(), Some("worker-1"));
        assert_eq!(status.host_tags, vec!["team:ml".to_owned()]);
        assert_eq!(
            status.api_key,
            ApiKeyState::Invalid {
                ending: "12345".into(),
                reason: "API Key invalid".into()
            }
        );
        assert_eq!(status.transactions.errors, 7);
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
    fn status_key_states() {
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
    fn status_everything_optional() {
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
    fn api_key_state_serializes_with_state_tag() {
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

    // ---- properties ----

    /// Lines that exercise every parser's branches, for line-soup inputs.
    const LINE_SOUP: &[&str] = &[
        "=== Entity container sources(merged):[runtime] id: 8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4 ===",
        "=== Entity container 0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0 ===",
        "=== Entity container_id://8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4 ===",
        "=== Entity process 42 ===",
        "=== Entity ===",
        "===",
        "======",
        "----------- Entity Meta -----------",
        "----------- Image -----------",
        "----------- Container Info -----------",
        "------",
        "Name: x",
        "Tag: y",
        "Running: true",
        "Running: maybe",
        "== Source docker =",
        "=Tags: [a:b c: d]",
        "Tags: [",
        "Tags: ]",
        "=== 3 healthy components ===",
        "=== 1 unhealthy components ===",
        "a, b,, c",
        "Error: could not reach agent: nope",
        "{",
        "}",
        "{\"Entities\":{\"container\":[",
        "{\"entities\":",
        "{\"version\":\"7\",\"forwarderStats\":{\"APIKeyStatus\":{\"API key ending with\":1}}}",
        "\x1b[32m",
        "\x1b]0;",
        "",
    ];

    fn line_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LINE_SOUP), 0..40)
            .prop_map(|lines| lines.join("\n"))
    }

    fn ansi_soup() -> impl Strategy<Value = String> {
        let alphabet = vec![
            '\x1b', '[', ']', '(', '0', '1', '9', ';', 'm', 'K', '\x07', '\\', 'a', ' ', '\n', 'é',
        ];
        prop::collection::vec(prop::sample::select(alphabet), 0..80).prop_map(String::from_iter)
    }

    fn run_all_parsers(s: &str) {
        let _ = strip_ansi(s);
        let _ = parse_health(0, s, s);
        let _ = json_flag_unsupported(s, s);
        let _ = parse_workload_list_json(s);
        let _ = parse_workload_list_text(s);
        let _ = parse_tagger_list_text(s);
        let _ = parse_tagger_list_json(s);
        let _ = parse_status_json(s);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_strings(s in any::<String>()) {
            run_all_parsers(&s);
        }

        #[test]
        fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            run_all_parsers(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn parsers_never_panic_on_line_soup(s in line_soup()) {
            run_all_parsers(&s);
        }

        #[test]
        fn strip_ansi_is_idempotent(s in ansi_soup()) {
            let once = strip_ansi(&s).into_owned();
            prop_assert!(!once.contains(ESC));
            prop_assert_eq!(strip_ansi(&once), once.as_str());
        }

        #[test]
        fn strip_ansi_is_idempotent_on_any_string(s in any::<String>()) {
            let once = strip_ansi(&s).into_owned();
            prop_assert_eq!(strip_ansi(&once), once.as_str());
        }

        #[test]
        fn strip_ansi_leaves_text_without_esc_unchanged(s in "[^\x1b]*") {
            prop_assert!(matches!(strip_ansi(&s), Cow::Borrowed(b) if b == s));
        }

        #[test]
        fn workload_text_finds_exactly_the_container_blocks(
            containers in prop::collection::btree_set("[0-9a-f]{64}", 0..6),
            noise in prop::collection::vec("[0-9a-f]{64}", 0..6),
            seed in any::<u64>(),
        ) {
            let mut blocks: Vec<String> = containers
                .iter()
                .enumerate()
                .map(|(i, id)| if i % 2 == 0 {
                    format!("=== Entity container {id} ===\nKind: container ID: {id}\n===")
                } else {
                    format!("=== Entity container sources(merged):[docker] id: {id} ===\n===")
                })
                .collect();
            blocks.extend(noise.iter().map(|id| format!(
                "=== Entity process sources(merged):[process_collector] id: 1 ===\nContainer ID: {id}\n===\n\
                 === Entity container_image_metadata sources(merged):[docker] id: sha256:{id} ===\n==="
            )));
            // A cheap deterministic shuffle: the agent prints entities in random order.
            let len = blocks.len().max(1);
            blocks.rotate_left(usize::try_from(seed % len as u64).unwrap_or(0));
            let found = parse_workload_list_text(&blocks.join("\n"));
            let found: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
            let expected: Vec<&str> = containers.iter().map(String::as_str).collect();
            prop_assert_eq!(found, expected);
        }
    }
}
