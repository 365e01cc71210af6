//! The stand-in's output against the real agent's samples (tests/fixtures/agent-output, which
//! ddsky's parser tests read too): the same lines, sections and keys; only ids, names and numbers
//! differ. A stand-in that drifts from the real format fails here, not in the field.

use super::*;
use crate::forwarder::{record, Outcome, HOST_METADATA, SERIES};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};

macro_rules! sample {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/agent-output/",
            $file
        ))
    };
}

/// Ten seconds after start: the ping came, the containers are discovered.
const RUNNING: f64 = 1010.0;
/// Past the docker check's second run.
const CHECKED: f64 = 1031.0;

/// A text output line by line, with ids, numbers and field values blanked. An empty value keeps
/// its exact spelling (`Namespace: ` with Go's space); the comma list after a components header
/// becomes `<list>`.
fn shape(text: &str) -> Vec<String> {
    let id = Regex::new(r"sha256:[0-9a-f]+|[0-9a-f]{64}").unwrap();
    let number = Regex::new(r"\b\d+\b").unwrap();
    let sources = Regex::new(r"sources\(merged\):\[[^\]]*\]").unwrap();
    let mut out = Vec::new();
    let mut list_follows = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let line = id.replace_all(line, "<id>");
        let shaped = if std::mem::take(&mut list_follows) {
            "<list>".to_owned()
        } else if line.starts_with("==")
            || line.starts_with("---")
            || line.starts_with("Kind: ")
            || line.starts_with("Agent health: ")
            || line.starts_with("Error: ")
        {
            let line = sources.replace_all(&line, "sources(merged):[..]");
            let line = number.replace_all(&line, "<n>").into_owned();
            list_follows = line.ends_with("components ===");
            line
        } else if let Some((key, value)) = line.split_once(": ") {
            if value.is_empty() {
                format!("{key}: ")
            } else {
                format!("{key}: <v>")
            }
        } else {
            line.into_owned()
        };
        out.push(shaped);
    }
    out
}

/// Entity blocks by kind (`container`, `process`, `container_id`, ...), each block shaped.
fn blocks(text: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut by_kind: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in shape(text) {
        if let Some(rest) = line.strip_prefix("=== Entity ") {
            let kind = rest.split([' ', ':']).next().unwrap_or_default().to_owned();
            current = Some((kind, vec![line]));
        } else if let Some((_, block)) = current.as_mut() {
            block.push(line.clone());
            if line == "===" {
                if let Some((kind, block)) = current.take() {
                    by_kind.entry(kind).or_default().push(block);
                }
            }
        }
    }
    by_kind
}

/// Every block the stand-in prints has the shape of the sample's block of that kind.
fn assert_blocks_match(standin: &str, sample: &str, kinds: &[&str]) {
    let ours = blocks(standin);
    let theirs = blocks(sample);
    assert_eq!(
        ours.keys().map(String::as_str).collect::<Vec<_>>(),
        kinds,
        "{standin}"
    );
    for (kind, list) in &ours {
        let reference = &theirs
            .get(kind)
            .unwrap_or_else(|| panic!("the sample has no {kind} entity"))[0];
        for block in list {
            assert_eq!(block, reference, "{kind} block");
        }
    }
}

#[test]
fn health_has_the_agents_lines() {
    let pass = health(&model::health(&state(), RUNNING));
    assert_eq!(shape(&pass.stdout), shape(sample!("health-pass.stdout")));
    assert_eq!(pass.code, 0);

    let refused = health(&model::health(&with_key(KeyVerdict::Invalid), RUNNING));
    assert_eq!(
        shape(&refused.stdout),
        shape(sample!("health-forwarder-unhealthy.stdout"))
    );
    assert_eq!(
        shape(&refused.stderr),
        shape(sample!("health-forwarder-unhealthy.stderr"))
    );

    let starting = health(&model::health(&state(), 1001.0));
    assert_eq!(
        shape(&starting.stdout),
        shape(sample!("health-starting.stdout"))
    );
    assert_eq!(
        shape(&starting.stderr),
        shape(sample!("health-starting.stderr"))
    );
}

#[test]
fn not_up_yet_is_said_in_the_agents_words() {
    let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
    assert_eq!(
        no_auth_token("/etc/datadog-agent/auth_token", &missing).stderr,
        sample!("no-auth-token.stderr")
    );
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        not_up("/agent/status/health", 5001, &refused).stderr,
        sample!("could-not-reach-agent.stderr")
    );
}

#[test]
fn workload_list_has_the_agents_blocks() {
    let text = workload_text(&state(), RUNNING, &mut Rng::new(7));
    assert_blocks_match(
        &text,
        sample!("workload-list.txt"),
        &["container", "container_image_metadata", "process"],
    );
}

#[test]
fn tagger_list_has_the_agents_blocks() {
    let text = tagger_text(&state(), RUNNING, &mut Rng::new(1));
    assert_blocks_match(&text, sample!("tagger-list.txt"), &["container_id"]);
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn workload_list_json_has_the_agents_fields() {
    let ours: Value =
        serde_json::from_str(&workload_json(&state(), RUNNING, &mut Rng::new(3), true)).unwrap();
    let theirs: Value = serde_json::from_str(sample!("workload-list.json")).unwrap();
    assert_eq!(keys(&ours["Entities"]), keys(&theirs["Entities"]));
    for (kind, entities) in ours["Entities"].as_object().unwrap() {
        let reference = &theirs["Entities"][kind][0];
        for entity in entities.as_array().unwrap() {
            assert_eq!(keys(entity), keys(reference), "{kind}");
            for nested in ["Image", "State", "Resources"] {
                assert_eq!(
                    keys(&entity[nested]),
                    keys(&reference[nested]),
                    "{kind}.{nested}"
                );
            }
        }
    }
}

/// Objects whose keys are data (key endings, status codes, endpoints, check and instance ids,
/// entity ids, tag sources): their keys compare as `*`.
const KEYED_BY_DATA: &[&str] = &[
    "Entities",
    "Entities.*.tags",
    "hostnameStats.errors",
    "forwarderStats.APIKeyStatus",
    "forwarderStats.APIKeyFailure",
    "forwarderStats.Transactions.HTTPErrorsByCode",
    "forwarderStats.Transactions.SuccessByEndpoint",
    "forwarderStats.Transactions.SuccessBytesByEndpoint",
    "forwarderStats.Transactions.DroppedByEndpoint",
    "runnerStats.Checks",
    "runnerStats.Checks.*",
];

/// Every path in a JSON document with the type found there.
fn paths(value: &Value, at: &str, out: &mut BTreeSet<String>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{at}[]"), out);
            }
            "array"
        }
        Value::Object(map) => {
            let by_data = KEYED_BY_DATA.contains(&at);
            for (key, child) in map {
                let key = if by_data { "*" } else { key.as_str() };
                let child_at = if at.is_empty() {
                    key.to_owned()
                } else {
                    format!("{at}.{key}")
                };
                paths(child, &child_at, out);
            }
            "object"
        }
    };
    out.insert(format!("{at}: {kind}"));
}

fn paths_of(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    paths(&serde_json::from_str(text).unwrap(), "", &mut out);
    out
}

#[test]
fn tagger_list_json_has_the_agents_layout() {
    let ours = paths_of(&tagger_json(&state(), RUNNING));
    assert_eq!(ours, paths_of(sample!("tagger-list.json")));
}

#[test]
fn status_json_has_the_agents_fields() {
    let mut forwarder = crate::state::ForwarderStats::default();
    let accepted = Outcome::Accepted {
        status: 202,
        bytes: 100,
    };
    record(&mut forwarder, HOST_METADATA, &accepted);
    record(&mut forwarder, SERIES, &Outcome::HttpError { status: 403 });
    let s = AgentState {
        forwarder,
        ..state()
    };
    let ours = paths_of(&status_json(&s, CHECKED));
    let theirs = paths_of(sample!("status.json"));
    let missing: Vec<_> = theirs.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the stand-in lacks {missing:#?}\nand prints what the agent does not: {extra:#?}"
    );
}
