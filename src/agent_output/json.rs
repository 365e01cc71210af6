//! Finding the one JSON object in a `--json` output and reading its fields whatever their case.

use super::text::{non_empty, strip_ansi};
use super::OutputError;
use serde_json::{Map, Value};

/// How many `{` positions [`find_object`] tries; keeps hostile input linear.
const MAX_CANDIDATES: usize = 64;

/// Finds the JSON object in `s`, skipping text (log lines) before it. Candidates are every
/// `{` that starts a line plus the first `{` anywhere; the first object that `wanted`
/// accepts wins, else the first object that parsed at all.
pub(super) fn find_object(
    s: &str,
    command: &'static str,
    wanted: impl Fn(&Map<String, Value>) -> bool,
) -> Result<Map<String, Value>, OutputError> {
    let text = strip_ansi(s);
    let mut first_object = None;
    let mut first_error = None;
    for start in candidates(&text) {
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

fn candidates(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        if body.starts_with('{') {
            starts.push(offset + (line.len() - body.len()));
            if starts.len() >= MAX_CANDIDATES {
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

/// workload-list and tagger-list: `{"Entities": ...}`.
pub(super) fn has_entities(obj: &Map<String, Value>) -> bool {
    get_ci(obj, "entities").is_some()
}

pub(super) fn entities_of<'a>(
    top: &'a Map<String, Value>,
    command: &'static str,
) -> Result<&'a Value, OutputError> {
    get_ci(top, "entities").ok_or_else(|| malformed(command, "no `Entities` key"))
}

pub(super) fn malformed(command: &'static str, reason: &str) -> OutputError {
    OutputError::Malformed {
        command,
        reason: reason.to_owned(),
    }
}

/// Exact key first, then ASCII case-insensitive: revisions spell `Entities`/`entities`.
pub(super) fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

pub(super) fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Option<&'a Map<String, Value>> {
    get_ci(obj, key)?.as_object()
}

pub(super) fn string_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    non_empty(get_ci(obj, key)?.as_str()?)
}
