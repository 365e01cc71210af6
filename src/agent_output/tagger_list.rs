//! `agent tagger-list` (text) and `agent tagger-list --json`: the tags the agent attaches to each
//! container, keyed by container id.

use super::json::{entities_of, find_object, has_entities, malformed};
use super::text::{entity_header, strip_ansi};
use super::OutputError;
use crate::reference::full_container_id;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Both Source forms: `== Source X =` followed by `=Tags: [a b c]`, and the older `== Source X ==`
/// then `Tags: [a b c]`. Key = the container id (from `=== Entity container_id://<id> ===`); value =
/// all tags of that entity across sources, sorted, deduplicated. Other entities are ignored.
pub fn parse_tagger_list_text(s: &str) -> BTreeMap<String, Vec<String>> {
    let text = strip_ansi(s);
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(entity) = entity_header(line) {
            current = container_of(entity);
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

/// `{"Entities": {"container_id://<id>": {"tags": {"<source>": [...]}}}}`, text before the first
/// `{` tolerated. Every string inside an array under the entity counts as a tag.
pub fn parse_tagger_list_json(s: &str) -> Result<BTreeMap<String, Vec<String>>, OutputError> {
    const COMMAND: &str = "tagger-list --json";
    let top = find_object(s, COMMAND, has_entities)?;
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match entities_of(&top, COMMAND)? {
        Value::Null => {}
        Value::Object(entities) => {
            for (entity, value) in entities {
                if let Some(id) = container_of(entity) {
                    collect_array_strings(value, tags.entry(id).or_default());
                }
            }
        }
        _ => return Err(malformed(COMMAND, "`Entities` is not an object")),
    }
    Ok(into_sorted_vecs(tags))
}

fn container_of(entity: &str) -> Option<String> {
    full_container_id(entity.trim().strip_prefix("container_id://")?)
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

#[cfg(test)]
mod tests {
    use super::super::samples::*;
    use super::*;

    const JOB_IMAGE_ID: &str =
        "sha256:3e6b8f0a1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";

    fn job_tags() -> Vec<String> {
        vec![
            format!("container_id:{JOB}"),
            "container_name:metta-job".into(),
            format!("docker_image:{JOB_IMAGE}:latest"),
            format!("image_id:{JOB_IMAGE_ID}"),
            format!("image_name:{JOB_IMAGE}"),
            "image_tag:latest".into(),
            "short_image:metta".into(),
        ]
    }

    #[test]
    fn the_text_form_keys_tags_by_container() {
        let tags = parse_tagger_list_text(TAGGER_LIST);
        assert_eq!(
            tags.keys().map(String::as_str).collect::<Vec<_>>(),
            sorted(&[JOB, AGENT])
        );
        assert_eq!(tags.get(JOB), Some(&job_tags()));
        let agent = tags.get(AGENT).expect("agent listed");
        assert!(agent.contains(&"container_name:dd-agent".to_owned()));
        assert!(agent.contains(&"short_image:agent".to_owned()));
    }

    #[test]
    fn the_older_text_form_merges_every_source() {
        let tags = parse_tagger_list_text(TAGGER_LIST_OLDER);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags.get(JOB), Some(&job_tags()));
    }

    #[test]
    fn the_json_form_says_what_the_text_form_says() {
        assert_eq!(
            parse_tagger_list_json(TAGGER_LIST_JSON),
            Ok(parse_tagger_list_text(TAGGER_LIST))
        );
    }

    #[test]
    fn a_coloured_listing_reads_like_a_plain_one() {
        for sample in [TAGGER_LIST, TAGGER_LIST_OLDER] {
            assert_eq!(
                parse_tagger_list_text(&on_a_terminal(sample)),
                parse_tagger_list_text(sample)
            );
        }
    }

    #[test]
    fn a_tag_without_a_value_loses_the_colon_the_text_form_adds() {
        let text = format!(
            "=== Entity container_id://{JOB} ===\n== Source docker =\n=Tags: [standalone: team:ml url:http://x]\n===\n\
             === Entity container_id://tooshort ===\n=Tags: [container_name:ghost]\n===\n"
        );
        let tags = parse_tagger_list_text(&text);
        assert_eq!(tags.len(), 1);
        assert_eq!(
            tags.get(JOB),
            Some(&vec![
                "standalone".to_owned(),
                "team:ml".to_owned(),
                "url:http://x".to_owned()
            ])
        );
    }

    #[test]
    fn json_in_other_spellings_and_errors() {
        let input = format!(
            "Some warning line\n{{\"entities\":{{\"container_id://{}\":{{\"Tags\":{{\"docker\":[\"env:prod\"]}}}},\"container_id://{AGENT}\":{{\"tags\":{{}}}}}}}}",
            JOB.to_uppercase()
        );
        let tags = parse_tagger_list_json(&input).expect("parses");
        assert_eq!(tags.get(JOB), Some(&vec!["env:prod".to_owned()]));
        assert_eq!(tags.get(AGENT), Some(&vec![]));
        assert!(matches!(
            parse_tagger_list_json(""),
            Err(OutputError::NoJson { .. })
        ));
        assert!(matches!(
            parse_tagger_list_json("{\"Entities\": 3}"),
            Err(OutputError::Malformed { .. })
        ));
    }
}
