//! The job's identity as Datadog tags: SkyPilot/Metta environment in, normalised `key:value` tags out.
//!
//! Pure: the environment arrives as a lookup function so tests can feed any combination of variables.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use serde_json::Value;
use std::fmt;

/// Datadog truncates longer tags; we do it ourselves so the user is told.
pub const MAX_TAG_LEN: usize = 200;

/// Tag keys ddsky sets from dedicated flags; `--tag` must not smuggle in a second value for them.
const FLAG_OWNED_KEYS: [&str; 2] = ["env", "service"];

/// Where the job runs, read from SkyPilot's and Metta's variables. Every field may be missing:
/// a missing source leaves its tag out rather than inventing a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobIdentity {
    pub metta_run_id: Option<String>,
    pub task_id: Option<String>,
    pub node_rank: Option<String>,
    pub num_nodes: Option<String>,
    pub git_ref: Option<String>,
    /// Where the cluster runs (skypilot_cluster, cloud, region, zone), from SKYPILOT_CLUSTER_INFO.
    pub cluster: Vec<(String, String)>,
}

impl JobIdentity {
    /// Reads the identity with the setup-phase fallbacks of SkyPilot: SKYPILOT_NODE_RANK is only set in
    /// `run`, SKYPILOT_SETUP_NODE_RANK in `setup`; SKYPILOT_NUM_NODES may be unset on one node, in which
    /// case the IP lists are counted. Values that are not what they claim to be are dropped with a warning.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Self {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let node_rank = first_number(
            &[
                ("SKYPILOT_NODE_RANK", get("SKYPILOT_NODE_RANK")),
                ("SKYPILOT_SETUP_NODE_RANK", get("SKYPILOT_SETUP_NODE_RANK")),
            ],
            warnings,
        );
        let num_nodes = first_number(
            &[("SKYPILOT_NUM_NODES", get("SKYPILOT_NUM_NODES"))],
            warnings,
        )
        .or_else(|| {
            ["SKYPILOT_NODE_IPS", "SKYPILOT_SETUP_NODE_IPS"]
                .iter()
                .filter_map(|name| get(name))
                .map(|ips| ips.lines().filter(|l| !l.trim().is_empty()).count())
                .find(|&n| n > 0)
                .map(|n| n.to_string())
        });

        JobIdentity {
            metta_run_id: get("METTA_RUN_ID"),
            task_id: get("SKYPILOT_TASK_ID"),
            node_rank,
            num_nodes,
            git_ref: get("METTA_GIT_REF"),
            cluster: Vec::new(),
        }
    }
}

fn first_number(
    candidates: &[(&str, Option<String>)],
    warnings: &mut Vec<String>,
) -> Option<String> {
    for (name, value) in candidates {
        let Some(value) = value else { continue };
        match value.parse::<u32>() {
            Ok(n) => return Some(n.to_string()),
            Err(_) => warnings.push(format!(
                "{name}={value:?} is not a whole number; its tag is left out"
            )),
        }
    }
    None
}

/// What the user asked for on the command line, besides the job identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRequest {
    pub env: String,
    pub service: String,
    /// Extra `key:value` tags from `--tag`.
    pub extra: Vec<String>,
}

/// The tags to hand to the agent, normalised, with what normalisation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSet {
    pub tags: Vec<String>,
    pub warnings: Vec<String>,
}

impl TagSet {
    /// The first value of `key`, as normalised.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.split_once(':').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {raw:?} is not key:value; pass it as --tag key:value")]
    NotKeyValue { raw: String },
    #[error("tag {raw:?} has nothing left after Datadog's tag rules (a tag must start with a letter); use letters, digits and _ - : . /")]
    NothingLeft { raw: String },
    #[error("tag {raw:?} sets {key}, which has its own flag; use --{key} instead")]
    FlagOwned { raw: String, key: String },
}

/// Builds the full tag set: env, service, the job identity, then the user's extra tags.
pub fn build(request: &TagRequest, identity: &JobIdentity) -> Result<TagSet, TagError> {
    let mut set = TagSet::default();
    let identity_pairs = [
        ("env", Some(&request.env)),
        ("service", Some(&request.service)),
        ("metta_run_id", identity.metta_run_id.as_ref()),
        ("skypilot_task_id", identity.task_id.as_ref()),
        ("skypilot_node_rank", identity.node_rank.as_ref()),
        ("skypilot_num_nodes", identity.num_nodes.as_ref()),
        ("git_ref", identity.git_ref.as_ref()),
    ];
    let cluster_pairs = identity.cluster.iter().map(|(k, v)| (k.as_str(), Some(v)));
    for (key, value) in identity_pairs.into_iter().chain(cluster_pairs) {
        let Some(value) = value.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        let raw = format!("{key}:{value}");
        push_normalized(&mut set, &raw)?;
    }
    for raw in &request.extra {
        check_extra(raw)?;
        push_normalized(&mut set, raw)?;
    }
    Ok(set)
}

/// The rules for a user's extra tag (`--tag`, DDSKY_TAGS): key:value, not a key that has its own
/// flag, and something left after normalisation. `settings` applies them before anything runs; the
/// tags ddsky builds from the job's identity always pass them.
pub fn check_extra(raw: &str) -> Result<(), TagError> {
    let (key, value) = raw.split_once(':').ok_or_else(|| TagError::NotKeyValue {
        raw: raw.to_owned(),
    })?;
    if value.trim().is_empty() || key.trim().is_empty() {
        return Err(TagError::NotKeyValue {
            raw: raw.to_owned(),
        });
    }
    let key_lower = key.trim().to_lowercase();
    if FLAG_OWNED_KEYS.contains(&key_lower.as_str()) {
        return Err(TagError::FlagOwned {
            raw: raw.to_owned(),
            key: key_lower,
        });
    }
    if normalize(raw).tag.is_none() {
        return Err(TagError::NothingLeft {
            raw: raw.to_owned(),
        });
    }
    Ok(())
}

fn push_normalized(set: &mut TagSet, raw: &str) -> Result<(), TagError> {
    let normalized = normalize(raw);
    let tag = normalized.tag.ok_or_else(|| TagError::NothingLeft {
        raw: raw.to_owned(),
    })?;
    if !normalized.changes.is_empty() {
        set.warnings.push(format!(
            "tag {:?} became {:?} ({})",
            shorten(raw),
            shorten(&tag),
            normalized
                .changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !set.tags.contains(&tag) {
        set.tags.push(tag);
    }
    Ok(())
}

/// Keeps warnings readable when a 10 kB value is normalised.
fn shorten(s: &str) -> String {
    const KEEP: usize = 60;
    if s.chars().count() <= KEEP {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(KEEP).collect::<String>())
    }
}

/// One thing Datadog's tag rules changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChange {
    Lowercased,
    IllegalCharacters,
    LeadingNonLetters,
    TrailingColons,
    Truncated,
}

impl fmt::Display for TagChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagChange::Lowercased => "lowercased",
            TagChange::IllegalCharacters => {
                "characters other than letters, digits and _ - : . / became _"
            }
            TagChange::LeadingNonLetters => "a tag must start with a letter",
            TagChange::TrailingColons => "a tag must not end with ':'",
            TagChange::Truncated => "cut to 200 characters",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `None` when nothing valid is left.
    pub tag: Option<String>,
    pub changes: Vec<TagChange>,
}

/// Datadog's tag rules: lowercase; letters, digits and `_ - : . /` kept, anything else becomes `_`;
/// must start with a letter; must not end with `:`; at most 200 characters.
pub fn normalize(raw: &str) -> Normalized {
    let mut changes = Vec::new();
    let note = |c: TagChange, changes: &mut Vec<TagChange>| {
        if !changes.contains(&c) {
            changes.push(c);
        }
    };

    let mut out = String::with_capacity(raw.len().min(MAX_TAG_LEN * 4));
    for c in raw.chars() {
        if c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/') {
            let mut lower = c.to_lowercase();
            if lower.len() != 1 || lower.next() != Some(c) {
                note(TagChange::Lowercased, &mut changes);
            }
            // Full lowercasing turns 'İ' (U+0130) into 'i' and a combining dot (U+0307), which is
            // neither a letter nor allowed: kept, it became '_' on the next normalisation (the
            // fuzzer's find). Datadog's agent lowercases rune by rune (Go's unicode.ToLower: 'i').
            out.extend(
                c.to_lowercase()
                    .filter(|l| l.is_alphanumeric() || matches!(l, '_' | '-' | ':' | '.' | '/')),
            );
        } else {
            note(TagChange::IllegalCharacters, &mut changes);
            out.push('_');
        }
    }

    let start = out.find(|c: char| c.is_alphabetic()).unwrap_or(out.len());
    if start > 0 {
        note(TagChange::LeadingNonLetters, &mut changes);
        out.drain(..start);
    }
    if out.chars().count() > MAX_TAG_LEN {
        note(TagChange::Truncated, &mut changes);
        out = out.chars().take(MAX_TAG_LEN).collect();
    }
    if out.ends_with(':') {
        note(TagChange::TrailingColons, &mut changes);
        out.truncate(out.trim_end_matches(':').len());
    }
    Normalized {
        tag: (!out.is_empty()).then_some(out),
        changes,
    }
}

/// SKYPILOT_CLUSTER_INFO (`{"cluster_name": "c", "cloud": "AWS", "region": "us-east-1", "zone":
/// "us-east-1a", ...}`) as tags: `skypilot_cluster`, `cloud` (lowercased), `region`, `zone`, in that
/// order. Missing, null or empty fields are skipped (zone is null when SkyPilot did not pin one);
/// numbers and booleans are written as JSON writes them; arrays and objects are skipped. Blank input
/// (the variable set but empty) gives no tags. Values are returned trimmed but otherwise raw: tag
/// normalisation is the caller's. Malformed JSON or a non-object: `Err(reason)`, for a warning.
pub fn cluster_tags(cluster_info: &str) -> Result<Vec<(String, String)>, String> {
    let text = cluster_info.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("SKYPILOT_CLUSTER_INFO is not valid JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "SKYPILOT_CLUSTER_INFO is not a JSON object (it is {})",
            json_kind(&value)
        ));
    };
    let mut tags = Vec::new();
    for (field, key) in [
        ("cluster_name", "skypilot_cluster"),
        ("cloud", "cloud"),
        ("region", "region"),
        ("zone", "zone"),
    ] {
        let raw = match fields.get(field) {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        if raw.is_empty() {
            continue;
        }
        let value = if key == "cloud" {
            raw.to_lowercase()
        } else {
            raw
        };
        tags.push((key.to_owned(), value));
    }
    Ok(tags)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn request() -> TagRequest {
        TagRequest {
            env: "production".into(),
            service: "skypilot-worker".into(),
            extra: vec![],
        }
    }

    #[test]
    fn full_identity_in_metta_order() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[
                ("METTA_RUN_ID", "alice.20250829.141502"),
                (
                    "SKYPILOT_TASK_ID",
                    "sky-2023-07-06-21-18-31-563597_myclus_1",
                ),
                ("SKYPILOT_NODE_RANK", "1"),
                ("SKYPILOT_NUM_NODES", "4"),
                ("METTA_GIT_REF", "0123456789abcdef0123456789abcdef01234567"),
            ]),
            &mut w,
        );
        let set = build(&request(), &id).unwrap();
        assert_eq!(
            set.tags,
            [
                "env:production",
                "service:skypilot-worker",
                "metta_run_id:alice.20250829.141502",
                "skypilot_task_id:sky-2023-07-06-21-18-31-563597_myclus_1",
                "skypilot_node_rank:1",
                "skypilot_num_nodes:4",
                "git_ref:0123456789abcdef0123456789abcdef01234567",
            ]
        );
        assert!(w.is_empty() && set.warnings.is_empty());
    }

    #[test]
    fn setup_phase_uses_setup_rank_and_counts_ips() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[
                ("SKYPILOT_SETUP_NODE_RANK", "2"),
                ("SKYPILOT_SETUP_NODE_IPS", "10.0.0.1\n10.0.0.2\n10.0.0.3\n"),
            ]),
            &mut w,
        );
        assert_eq!(id.node_rank.as_deref(), Some("2"));
        assert_eq!(id.num_nodes.as_deref(), Some("3"));
    }

    #[test]
    fn run_phase_rank_wins_over_setup_rank() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[
                ("SKYPILOT_NODE_RANK", "0"),
                ("SKYPILOT_SETUP_NODE_RANK", "3"),
                ("SKYPILOT_NODE_IPS", "a\nb"),
            ]),
            &mut w,
        );
        assert_eq!(id.node_rank.as_deref(), Some("0"));
        assert_eq!(id.num_nodes.as_deref(), Some("2"));
    }

    #[test]
    fn num_nodes_variable_wins_over_ip_count() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[("SKYPILOT_NUM_NODES", "8"), ("SKYPILOT_NODE_IPS", "a")]),
            &mut w,
        );
        assert_eq!(id.num_nodes.as_deref(), Some("8"));
    }

    #[test]
    fn nothing_set_leaves_only_env_and_service() {
        let mut w = vec![];
        let id = JobIdentity::from_env(env(&[]), &mut w);
        assert_eq!(id, JobIdentity::default());
        assert_eq!(
            build(&request(), &id).unwrap().tags,
            ["env:production", "service:skypilot-worker"]
        );
    }

    #[test]
    fn empty_and_blank_values_count_as_missing() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[("METTA_RUN_ID", "  "), ("SKYPILOT_NODE_RANK", "")]),
            &mut w,
        );
        assert_eq!(id, JobIdentity::default());
    }

    #[test]
    fn non_numeric_rank_is_dropped_with_a_warning_and_falls_back() {
        let mut w = vec![];
        let id = JobIdentity::from_env(
            env(&[
                ("SKYPILOT_NODE_RANK", "first"),
                ("SKYPILOT_SETUP_NODE_RANK", "1"),
            ]),
            &mut w,
        );
        assert_eq!(id.node_rank.as_deref(), Some("1"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("SKYPILOT_NODE_RANK"));
    }

    #[test]
    fn normalises_case_and_illegal_characters_with_warnings() {
        let mut w = vec![];
        let id = JobIdentity::from_env(env(&[("METTA_RUN_ID", "Alice Run,1")]), &mut w);
        let set = build(&request(), &id).unwrap();
        assert_eq!(set.value_of("metta_run_id"), Some("alice_run_1"));
        assert_eq!(set.warnings.len(), 1);
        assert!(set.warnings[0].contains("lowercased"));
        assert!(set.warnings[0].contains("became _"));
    }

    #[test]
    fn commas_never_split_and_spaces_never_survive() {
        let r = TagRequest {
            extra: vec!["team:a,b c".into()],
            ..request()
        };
        let set = build(&r, &JobIdentity::default()).unwrap();
        assert_eq!(set.value_of("team"), Some("a_b_c"));
        assert!(set.tags.iter().all(|t| !t.contains(' ')));
    }

    #[test]
    fn normalize_rules() {
        assert_eq!(normalize("Env:Prod").tag.as_deref(), Some("env:prod"));
        assert_eq!(normalize("a/b.c-d_e:f").changes, vec![]);
        assert_eq!(normalize("9lives:x").tag.as_deref(), Some("lives:x"));
        assert_eq!(normalize("key:").tag.as_deref(), Some("key"));
        assert_eq!(normalize("!!!").tag, None);
        assert_eq!(normalize("héllo:wörld").tag.as_deref(), Some("héllo:wörld"));
        assert_eq!(normalize("a\nb").tag.as_deref(), Some("a_b"));
        let long = format!("k:{}", "v".repeat(10_000));
        let n = normalize(&long);
        assert_eq!(n.tag.unwrap().chars().count(), MAX_TAG_LEN);
        assert!(n.changes.contains(&TagChange::Truncated));
    }

    #[test]
    fn cluster_tags_follow_the_identity() {
        let id = JobIdentity {
            cluster: vec![
                ("cloud".into(), "AWS".into()),
                ("region".into(), "us-east-1".into()),
            ],
            ..Default::default()
        };
        let set = build(&request(), &id).unwrap();
        assert_eq!(set.tags[2..], ["cloud:aws", "region:us-east-1"]);
    }

    #[test]
    fn extra_tags_must_be_key_value() {
        for bad in ["novalue", "key:", ":value", "  :  "] {
            let r = TagRequest {
                extra: vec![bad.into()],
                ..request()
            };
            assert!(
                matches!(
                    build(&r, &JobIdentity::default()),
                    Err(TagError::NotKeyValue { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn extra_tag_of_only_illegal_characters_is_an_error() {
        let r = TagRequest {
            extra: vec!["@@@:!!!".into()],
            ..request()
        };
        // "@@@:!!!" -> "___:___" -> no letter at all -> nothing left.
        assert!(matches!(
            build(&r, &JobIdentity::default()),
            Err(TagError::NothingLeft { .. })
        ));
    }

    #[test]
    fn env_and_service_belong_to_their_flags() {
        let r = TagRequest {
            extra: vec!["ENV:staging".into()],
            ..request()
        };
        assert!(matches!(
            build(&r, &JobIdentity::default()),
            Err(TagError::FlagOwned { .. })
        ));
    }

    #[test]
    fn duplicate_tags_are_kept_once() {
        let r = TagRequest {
            extra: vec!["team:ml".into(), "Team:ML".into()],
            ..request()
        };
        let set = build(&r, &JobIdentity::default()).unwrap();
        assert_eq!(
            set.tags.iter().filter(|t| t.starts_with("team:")).count(),
            1
        );
    }
}

#[cfg(test)]
mod cluster_info_tests {
    use super::*;

    fn tags(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cluster_info_full() {
        let info = r#"{"cluster_name": "alice-train-3", "cloud": "AWS", "region": "us-east-1", "zone": "us-east-1a"}"#;
        assert_eq!(
            cluster_tags(info).unwrap(),
            tags(&[
                ("skypilot_cluster", "alice-train-3"),
                ("cloud", "aws"),
                ("region", "us-east-1"),
                ("zone", "us-east-1a")
            ])
        );
    }

    #[test]
    fn cluster_info_as_setup_sees_it_with_extra_fields_and_null_zone() {
        // What a setup phase gets when SkyPilot did not pin a zone; python_path is SkyPilot's own field.
        let info = r#"{"cluster_name": "sky-5f3a-alice", "cloud": "AWS", "region": "us-west-2", "zone": null, "python_path": "/opt/conda/bin/python3"}"#;
        assert_eq!(
            cluster_tags(info).unwrap(),
            tags(&[
                ("skypilot_cluster", "sky-5f3a-alice"),
                ("cloud", "aws"),
                ("region", "us-west-2")
            ])
        );
    }

    #[test]
    fn cluster_info_missing_and_odd_fields_are_skipped() {
        assert_eq!(
            cluster_tags(r#"{"cloud": "Kubernetes"}"#).unwrap(),
            tags(&[("cloud", "kubernetes")])
        );
        assert_eq!(cluster_tags("{}").unwrap(), vec![]);
        assert_eq!(
            cluster_tags(
                r#"{"cluster_name": "  ", "cloud": ["AWS"], "region": {"name": "x"}, "zone": 3}"#
            )
            .unwrap(),
            tags(&[("zone", "3")])
        );
        assert_eq!(
            cluster_tags(" \n").unwrap(),
            vec![],
            "set but empty counts as unset"
        );
    }

    #[test]
    fn cluster_info_malformed_is_an_error() {
        for bad in [
            r#"{"cluster_name": "c""#,
            "cluster_name=c",
            "'{}'",
            r#"{"a":1}x"#,
        ] {
            let err = cluster_tags(bad).unwrap_err();
            assert!(
                err.starts_with("SKYPILOT_CLUSTER_INFO is not valid JSON"),
                "{bad}: {err}"
            );
        }
        for (bad, kind) in [
            ("[]", "an array"),
            ("null", "null"),
            (r#""AWS""#, "a string"),
            ("42", "a number"),
        ] {
            let err = cluster_tags(bad).unwrap_err();
            assert!(
                err.contains("not a JSON object") && err.contains(kind),
                "{bad}: {err}"
            );
        }
    }

    /// Found by the `tags` fuzz target (fuzz/artifacts): 'İ' lowercases to two characters, the
    /// second a combining mark, so the tag normalised once changed when normalised again.
    #[test]
    fn a_capital_i_with_dot_lowercases_to_a_tag_that_stays_put() {
        let once = normalize("City:İstanbul").tag.unwrap();
        assert_eq!(once, "city:istanbul");
        assert_eq!(normalize(&once).tag.as_deref(), Some(once.as_str()));
        let raw = std::fs::read("tests/fixtures/fuzz/tags-capital-i-with-dot").unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let field = raw.split('\0').next().unwrap();
        let once = normalize(field).tag.unwrap();
        assert!(follows_datadog_rules(&once), "{once:?}");
        assert_eq!(normalize(&once).tag, Some(once));
    }

    /// Datadog's rules for a tag, as normalize promises them.
    fn follows_datadog_rules(tag: &str) -> bool {
        tag.chars().count() <= MAX_TAG_LEN
            && tag.starts_with(char::is_alphabetic)
            && !tag.ends_with(':')
            && tag
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/'))
            && tag.chars().flat_map(char::to_lowercase).eq(tag.chars())
    }

    proptest::proptest! {
        /// Any text normalises to a tag that follows Datadog's rules (or to nothing), and a tag
        /// normalises to itself with no change to report.
        #[test]
        fn normalize_gives_valid_tags_and_is_idempotent(raw in "\\PC{0,300}|[A-Za-z0-9_:./ İ-]{0,220}") {
            if let Some(tag) = normalize(&raw).tag {
                proptest::prop_assert!(follows_datadog_rules(&tag), "{raw:?} -> {tag:?}");
                let again = normalize(&tag);
                proptest::prop_assert_eq!(again.tag.as_deref(), Some(tag.as_str()));
                proptest::prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
            }
        }

        /// What `build` writes, `value_of` reads back: a value already in Datadog's form exactly
        /// and without a warning; any other value as normalize makes it.
        #[test]
        fn built_tags_read_back(
            env in "\\PC{1,40}",
            service in "[a-z][a-z0-9_./-]{0,40}",
            rank in proptest::prelude::any::<u32>(),
            extra in proptest::collection::vec(("[a-z][a-z0-9_]{0,10}", "[a-z0-9][a-z0-9_./-]{0,30}"), 0..4),
        ) {
            let request = TagRequest {
                env: env.clone(),
                service: service.clone(),
                extra: extra.iter().map(|(k, v)| format!("{k}:{v}")).collect(),
            };
            let identity = JobIdentity { node_rank: Some(rank.to_string()), ..JobIdentity::default() };
            let flag_owned = extra.iter().any(|(k, _)| FLAG_OWNED_KEYS.contains(&k.as_str()));
            let built = build(&request, &identity);
            if flag_owned {
                let refused = matches!(built, Err(TagError::FlagOwned { .. }));
                proptest::prop_assert!(refused);
                return Ok(());
            }
            let Ok(set) = built else {
                // Only an env with nothing in it after trimming is left out; it never fails.
                proptest::prop_assert!(false, "{built:?}");
                return Ok(());
            };
            for tag in &set.tags {
                proptest::prop_assert!(follows_datadog_rules(tag), "{tag:?}");
            }
            proptest::prop_assert_eq!(set.value_of("service"), Some(service.as_str()));
            let rank_text = rank.to_string();
            proptest::prop_assert_eq!(set.value_of("skypilot_node_rank"), Some(rank_text.as_str()));
            for (k, v) in &extra {
                let tag = format!("{k}:{v}");
                proptest::prop_assert!(set.tags.contains(&tag), "{tag} not in {:?}", set.tags);
            }
            let env_trimmed = env.trim();
            if !env_trimmed.is_empty() {
                let want = normalize(&format!("env:{env_trimmed}")).tag.unwrap();
                proptest::prop_assert_eq!(set.value_of("env"), want.split_once(':').map(|(_, v)| v));
            }
            // Warnings only for what normalisation changed: clean extra tags and service add none.
            let noisy = set.warnings.iter().filter(|w| !w.starts_with("tag \"env:")).count();
            proptest::prop_assert_eq!(noisy, 0, "{:?}", set.warnings);
        }

        /// SKYPILOT_CLUSTER_INFO as SkyPilot writes it (serde's JSON) gives back its values, trimmed,
        /// the cloud lowercased, empty ones left out.
        #[test]
        fn cluster_info_reads_back(
            name in "\\PC{0,30}",
            cloud in "\\PC{0,12}",
            region in proptest::option::of("[a-z0-9-]{1,20}"),
            zone in proptest::option::of("\\PC{0,20}"),
        ) {
            let json = serde_json::json!({
                "cluster_name": name, "cloud": cloud, "region": region, "zone": zone,
                "provider_config": {"nested": [1, 2]},
            });
            let tags = cluster_tags(&json.to_string()).unwrap();
            let mut want = vec![];
            let mut add = |key: &str, value: Option<String>| {
                if let Some(v) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                    want.push((key.to_owned(), v));
                }
            };
            add("skypilot_cluster", Some(name.clone()));
            add("cloud", Some(cloud.trim().to_lowercase()));
            add("region", region.clone());
            add("zone", zone.clone());
            proptest::prop_assert_eq!(tags, want);
        }
    }
}
