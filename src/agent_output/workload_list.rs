//! `agent workload-list` (text) and `agent workload-list --json`: the containers the agent's
//! workloadmeta store knows, i.e. the ones it discovered.

use super::json::{
    entities_of, find_object, get_ci, has_entities, malformed, object_field, string_field,
};
use super::text::{entity_header, non_empty, strip_ansi};
use super::OutputError;
use crate::reference::full_container_id;
use serde::Serialize;
use serde_json::Value;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

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

/// `agent workload-list --json`: tolerate any text (log lines) before the first `{`; top key
/// `Entities` or `entities`; only the `container` kind counts; unknown fields are ignored and
/// missing optional ones are None.
pub fn parse_workload_list_json(s: &str) -> Result<Vec<WorkloadContainer>, OutputError> {
    const COMMAND: &str = "workload-list --json";
    let top = find_object(s, COMMAND, has_entities)?;
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
    let mut container = WorkloadContainer::new(full_container_id(id?.as_str()?)?);
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

/// `agent workload-list` text: ONLY blocks whose header is a container entity count, in both
/// header forms: `=== Entity container sources(merged):[runtime] id: <id> ===` (sources vary:
/// `[docker]`, `[node_orchestrator runtime]`, ...) and `=== Entity container <id> ===`. Other kinds
/// (process, container_image_metadata, ...) are ignored even when their lines name container ids.
/// Takes Name (Entity Meta section), Image Name/Tag (Image section), Running (Container Info).
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
                apply_field(container, section, key.trim(), value);
            }
        }
    }
    found.extend(current);
    collect_containers(found)
}

/// `container sources(merged):[docker] id: <id>` or `container <id>`: the id is the last token.
fn container_from_header(header: &str) -> Option<String> {
    let mut tokens = header.split_whitespace();
    if tokens.next()? != "container" {
        return None;
    }
    let last = tokens.last()?;
    // Tolerates `id:<id>` written without a space.
    full_container_id(last.rsplit(':').next().unwrap_or(last))
}

/// `----------- Entity Meta -----------` -> `Entity Meta`.
fn section_title(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("---")?.strip_suffix("---")?;
    Some(inner.trim_matches('-').trim())
}

/// A `Key: value` line; the same key means different things per section (`Name` is the
/// container's in Entity Meta, the image's in Image, a device's in Allocated Resources).
fn apply_field(container: &mut WorkloadContainer, section: &str, key: &str, value: &str) {
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

#[cfg(test)]
mod tests {
    use super::super::samples::*;
    use super::*;
    use proptest::prelude::*;

    fn ids(containers: &[WorkloadContainer]) -> Vec<&str> {
        containers.iter().map(|c| c.id.as_str()).collect()
    }

    fn by_id<'a>(containers: &'a [WorkloadContainer], id: &str) -> &'a WorkloadContainer {
        containers
            .iter()
            .find(|c| c.id == id)
            .expect("container listed")
    }

    fn described(id: &str, name: &str, image: &str, tag: &str, running: bool) -> WorkloadContainer {
        WorkloadContainer {
            id: id.into(),
            name: Some(name.into()),
            image_name: Some(image.into()),
            image_tag: Some(tag.into()),
            running: Some(running),
        }
    }

    /// What workload-list.txt and workload-list.json both describe.
    fn the_job_and_the_agent() -> Vec<WorkloadContainer> {
        let mut both = vec![
            described(JOB, "metta-job", JOB_IMAGE, "latest", true),
            described(AGENT, "dd-agent", "datadog/agent", "7", true),
        ];
        both.sort_by(|a, b| a.id.cmp(&b.id));
        both
    }

    #[test]
    fn the_text_form_counts_container_entities_only() {
        let containers = parse_workload_list_text(WORKLOAD_LIST);
        assert_eq!(containers, the_job_and_the_agent());
        assert!(!ids(&containers).contains(&PROCESS_ONLY));
    }

    #[test]
    fn the_newest_text_form_reads_the_same() {
        let containers = parse_workload_list_text(WORKLOAD_LIST_NEWEST);
        assert_eq!(ids(&containers), sorted(&[NEWEST_JOB, AGENT]));
        // Allocated Resources' `Name: nvidia.com/gpu, ...` is a device, not the container.
        assert_eq!(
            by_id(&containers, NEWEST_JOB),
            &described(NEWEST_JOB, "metta-job", JOB_IMAGE, "latest", true)
        );
        assert_eq!(by_id(&containers, AGENT).running, Some(false));
    }

    #[test]
    fn the_json_form_says_what_the_text_form_says() {
        assert_eq!(
            parse_workload_list_json(WORKLOAD_LIST_JSON),
            Ok(the_job_and_the_agent())
        );
    }

    #[test]
    fn a_coloured_listing_reads_like_a_plain_one() {
        for sample in [WORKLOAD_LIST, WORKLOAD_LIST_NEWEST] {
            assert_eq!(
                parse_workload_list_text(&on_a_terminal(sample)),
                parse_workload_list_text(sample)
            );
        }
    }

    #[test]
    fn the_order_of_entities_does_not_matter() {
        let blocks: Vec<&str> = WORKLOAD_LIST.split("\n\n").collect();
        let reversed: Vec<&str> = blocks.iter().rev().copied().collect();
        assert_eq!(
            parse_workload_list_text(&reversed.join("\n\n")),
            the_job_and_the_agent()
        );
    }

    #[test]
    fn odd_headers_and_empty_fields() {
        let text = format!(
            "{WORKLOAD_LIST}\n=== Entity container sources(merged):[docker] id: not-a-container-id ===\n\
             Name: ghost\n===\n\
             \n=== Entity container sources(merged):[node_orchestrator runtime] id: {PROCESS_ONLY} ===\n\
             ----------- Entity Meta -----------\nName: \n----------- Image -----------\nName: redis\nTag: \n===\n"
        );
        let containers = parse_workload_list_text(&text);
        assert_eq!(ids(&containers), sorted(&[JOB, AGENT, PROCESS_ONLY]));
        let bare = by_id(&containers, PROCESS_ONLY);
        assert_eq!(
            (bare.name.as_deref(), bare.image_name.as_deref()),
            (None, Some("redis"))
        );
        assert_eq!((bare.image_tag.as_deref(), bare.running), (None, None));
    }

    #[test]
    fn a_missing_block_end_and_crlf_are_tolerated() {
        let text = format!(
            "=== Entity container {JOB} ===\r\n----------- Entity Meta -----------\r\nName: a\r\n\
=== Entity container {AGENT} ===\r\n----------- Container Info -----------\r\nRunning: true"
        );
        let containers = parse_workload_list_text(&text);
        assert_eq!(by_id(&containers, JOB).name.as_deref(), Some("a"));
        assert_eq!(by_id(&containers, AGENT).running, Some(true));
    }

    #[test]
    fn text_without_containers_is_empty() {
        assert!(parse_workload_list_text("").is_empty());
        assert!(parse_workload_list_text(NO_AUTH_TOKEN).is_empty());
    }

    #[test]
    fn json_after_log_lines_and_in_lowercase() {
        let after_a_log_line = format!(
            "2026-01-02 10:00:00 UTC | CORE | WARN | (pkg/config/setup/config.go:123 in LoadProxyFromEnv) | proxy {{not json}}\n{WORKLOAD_LIST_JSON}"
        );
        assert_eq!(
            parse_workload_list_json(&after_a_log_line),
            Ok(the_job_and_the_agent())
        );
        let lowercase = format!(
            "{{\"level\":\"INFO\",\"msg\":\"starting\"}}\n{}",
            WORKLOAD_LIST_JSON.replacen("\"Entities\"", "\"entities\"", 1)
        );
        assert_eq!(
            parse_workload_list_json(&lowercase),
            Ok(the_job_and_the_agent())
        );
    }

    #[test]
    fn json_entities_without_details_or_a_real_id() {
        let input = format!(
            r#"{{"Entities":{{"container":[{{"Kind":"container","ID":"{JOB}","Image":{{"Name":"redis"}}}},{{"Kind":"container","ID":"short"}},{{"EntityID":{{"Kind":"container","ID":"{}"}},"EntityMeta":{{"Name":"nested"}}}}]}}}}"#,
            AGENT.to_uppercase()
        );
        let containers = parse_workload_list_json(&input).expect("parses");
        assert_eq!(ids(&containers), sorted(&[JOB, AGENT]));
        let job = by_id(&containers, JOB);
        assert_eq!(
            (job.name.as_deref(), job.image_name.as_deref()),
            (None, Some("redis"))
        );
        assert_eq!(by_id(&containers, AGENT).name.as_deref(), Some("nested"));
    }

    #[test]
    fn json_empty_and_null_stores() {
        assert_eq!(parse_workload_list_json("{\"Entities\":null}"), Ok(vec![]));
        assert_eq!(parse_workload_list_json("{\"Entities\":{}}"), Ok(vec![]));
        assert_eq!(
            parse_workload_list_json("{\"entities\":{\"process\":[]}}"),
            Ok(vec![])
        );
    }

    #[test]
    fn json_errors() {
        assert!(matches!(
            parse_workload_list_json(UNKNOWN_FLAG_JSON),
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

    proptest! {
        #[test]
        fn the_text_form_finds_exactly_the_container_blocks(
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
