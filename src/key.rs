//! The Datadog API key: a type that cannot leak, its shape check, secret parsing, and the lookup chain
//! DD_API_KEY > AWS Secrets Manager > skip.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use sha2::{Digest, Sha256};
use std::fmt;
use std::future::Future;

/// An API key. Debug and Display print `<redacted>`; only [`ApiKey::expose`] gives the value, and only
/// the agent's environment should ever receive it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

pub const REDACTED: &str = "<redacted>";

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last 5 characters: what the agent itself prints ("API key ending with abcde").
    pub fn ending(&self) -> &str {
        let start = self.0.char_indices().rev().nth(4).map_or(0, |(i, _)| i);
        &self.0[start..]
    }

    /// A digest that stands for the key in the spec hash, so a rotated key changes the hash
    /// without the key ever being written to a label.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a candidate key was refused. Never carries the candidate itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeProblem {
    #[error("it is 40 characters long, like an application key; the agent needs the 32-character API key")]
    ApplicationKey,
    #[error("it contains quotes; store the bare key without quotes")]
    Quotes,
    #[error("it contains whitespace or a newline inside; store the key on one line with nothing around it")]
    InnerWhitespace,
    #[error("it is {len} characters long; a Datadog API key is 32 hexadecimal characters")]
    WrongLength { len: usize },
    #[error(
        "it has characters other than 0-9 and a-f; a Datadog API key is 32 hexadecimal characters"
    )]
    NotHex,
}

/// Trims the candidate and checks it is 32 hexadecimal characters, naming the likely mistake otherwise.
pub fn check_shape(candidate: &str) -> Result<ApiKey, ShapeProblem> {
    let key = candidate.trim();
    if key.contains(['"', '\'']) {
        return Err(ShapeProblem::Quotes);
    }
    if key.contains(char::is_whitespace) {
        return Err(ShapeProblem::InnerWhitespace);
    }
    let len = key.chars().count();
    if len == 40 {
        return Err(ShapeProblem::ApplicationKey);
    }
    if len != 32 {
        return Err(ShapeProblem::WrongLength { len });
    }
    if !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ShapeProblem::NotHex);
    }
    Ok(ApiKey(key.to_owned()))
}

/// What a secret holds, as Secrets Manager returns it. Debug never prints the content.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretPayload {
    Text(String),
    Binary(Vec<u8>),
}

impl fmt::Debug for SecretPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretPayload::Text(_) => write!(f, "Text({REDACTED})"),
            SecretPayload::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("SecretBinary is not UTF-8 text; store the key as SecretString")]
    BinaryNotText,
    #[error("the secret is JSON but not valid JSON ({0}); store the bare key or {{\"apiKey\": \"...\"}}")]
    MalformedJson(String),
    #[error("the JSON secret has no apiKey, api_key or DD_API_KEY string field; add one")]
    NoKeyField,
    #[error("the secret is empty")]
    Empty,
}

/// JSON fields that may hold the key, in the order they are tried: AWS's Datadog partner secret uses
/// `apiKey`; the others are what people name it by hand.
const JSON_KEY_FIELDS: [&str; 3] = ["apiKey", "api_key", "DD_API_KEY"];

/// Gets the key candidate out of a secret: a plain string is the key (Metta's format); a JSON object
/// gives one of [`JSON_KEY_FIELDS`]; binary must be UTF-8 text and is then read the same way.
pub fn key_from_secret(payload: &SecretPayload) -> Result<String, SecretFormatError> {
    let text = match payload {
        SecretPayload::Text(t) => t.as_str(),
        SecretPayload::Binary(b) => {
            std::str::from_utf8(b).map_err(|_| SecretFormatError::BinaryNotText)?
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SecretFormatError::Empty);
    }
    if !trimmed.starts_with('{') {
        return Ok(trimmed.to_owned());
    }
    // serde_json's error names a position, never the content, so it is safe to report.
    let value: serde_json::Value = serde_json::from_str(trimmed)
        .map_err(|e| SecretFormatError::MalformedJson(e.to_string()))?;
    JSON_KEY_FIELDS
        .iter()
        .find_map(|field| value.get(field).and_then(|v| v.as_str()))
        .map(str::to_owned)
        .ok_or(SecretFormatError::NoKeyField)
}

/// Where the key came from, as reported in dry-run JSON (`env` or `aws-secrets-manager:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    AwsSecretsManager { secret_id: String },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => f.write_str("env"),
            KeySource::AwsSecretsManager { secret_id } => {
                write!(f, "aws-secrets-manager:{secret_id}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct FoundKey {
    pub key: ApiKey,
    pub source: KeySource,
}

/// The end of the chain: a key, or one line per source saying why it gave none.
#[derive(Debug)]
pub enum KeyLookup {
    Found { found: FoundKey, notes: Vec<String> },
    Missing { reasons: Vec<String> },
}

/// What a secret store answered.
#[derive(Debug)]
pub struct SecretAnswer {
    /// Names the secret for messages, e.g. `secret datadog/api-key in us-east-1`.
    pub place: String,
    /// The content, or one line saying why it could not be had and what to do.
    pub payload: Result<SecretPayload, String>,
}

/// A place that can hand out the content of a named secret: AWS Secrets Manager in production.
pub trait SecretStore {
    fn fetch(&self, secret_id: &str) -> impl Future<Output = SecretAnswer> + Send;
}

/// The second source, when enabled.
pub struct SecretLookup<'a, S> {
    pub store: &'a S,
    pub secret_id: &'a str,
}

/// Runs the chain: `env_value` (DD_API_KEY) first, then the secret store, stopping at the first key
/// of the right shape. Refused candidates are reported, never used.
pub async fn lookup<S: SecretStore>(
    env_value: Option<&str>,
    secret: Option<SecretLookup<'_, S>>,
) -> KeyLookup {
    let mut reasons = Vec::new();
    match env_value.map(str::trim).filter(|v| !v.is_empty()) {
        None => reasons.push("DD_API_KEY unset".to_owned()),
        Some(candidate) => match check_shape(candidate) {
            Ok(key) => {
                return KeyLookup::Found {
                    found: FoundKey {
                        key,
                        source: KeySource::Env,
                    },
                    notes: reasons,
                }
            }
            Err(problem) => reasons.push(format!("DD_API_KEY is not used: {problem}")),
        },
    }
    match secret {
        None => reasons.push("AWS Secrets Manager not asked (--no-aws)".to_owned()),
        Some(SecretLookup { store, secret_id }) => {
            let SecretAnswer { place, payload } = store.fetch(secret_id).await;
            let outcome = payload
                .and_then(|payload| key_from_secret(&payload).map_err(|e| e.to_string()))
                .and_then(|candidate| {
                    check_shape(&candidate).map_err(|p| format!("the key is not used: {p}"))
                });
            match outcome {
                Ok(key) => {
                    let source = KeySource::AwsSecretsManager {
                        secret_id: secret_id.to_owned(),
                    };
                    return KeyLookup::Found {
                        found: FoundKey { key, source },
                        notes: reasons,
                    };
                }
                Err(why) => reasons.push(format!("{place}: {why}")),
            }
        }
    }
    KeyLookup::Missing { reasons }
}

/// A Datadog application key, which `ddsky verify` needs to read data (40 hexadecimal characters).
/// Like [`ApiKey`], Debug and Display print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct AppKey(String);

impl AppKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Checks an application key candidate: trimmed, 40 hexadecimal characters. The message never
/// carries the candidate.
pub fn check_app_key_shape(candidate: &str) -> Result<AppKey, String> {
    let key = candidate.trim();
    if key.contains(['"', '\'']) {
        return Err(ShapeProblem::Quotes.to_string());
    }
    if key.contains(char::is_whitespace) {
        return Err(ShapeProblem::InnerWhitespace.to_string());
    }
    let len = key.chars().count();
    if len == 32 {
        return Err("it is 32 characters long, like an API key; an application key is 40 hexadecimal characters (Organization Settings > Application Keys)".into());
    }
    if len != 40 {
        return Err(format!(
            "it is {len} characters long; an application key is 40 hexadecimal characters"
        ));
    }
    if !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("it has characters other than 0-9 and a-f; an application key is 40 hexadecimal characters".into());
    }
    Ok(AppKey(key.to_owned()))
}

/// JSON fields that may hold the application key in a secret.
const JSON_APP_KEY_FIELDS: [&str; 5] = [
    "appKey",
    "app_key",
    "applicationKey",
    "application_key",
    "DD_APP_KEY",
];

/// The application key chain: `env_value` (DD_APP_KEY) first, then the secret store (a plain
/// string, or a JSON object with one of [`JSON_APP_KEY_FIELDS`]). Gives the key, or one line per
/// source saying why it gave none.
pub async fn lookup_app_key<S: SecretStore>(
    env_value: Option<&str>,
    secret: Option<SecretLookup<'_, S>>,
) -> Result<AppKey, Vec<String>> {
    let mut reasons = Vec::new();
    match env_value.map(str::trim).filter(|v| !v.is_empty()) {
        None => reasons.push("DD_APP_KEY unset".to_owned()),
        Some(candidate) => match check_app_key_shape(candidate) {
            Ok(key) => return Ok(key),
            Err(problem) => reasons.push(format!("DD_APP_KEY is not used: {problem}")),
        },
    }
    match secret {
        None => reasons.push("AWS Secrets Manager not asked (--no-aws)".to_owned()),
        Some(SecretLookup { store, secret_id }) => {
            let SecretAnswer { place, payload } = store.fetch(secret_id).await;
            let outcome = payload
                .and_then(|payload| app_key_from_secret(&payload))
                .and_then(|candidate| {
                    check_app_key_shape(&candidate).map_err(|p| format!("the key is not used: {p}"))
                });
            match outcome {
                Ok(key) => return Ok(key),
                Err(why) => reasons.push(format!("{place}: {why}")),
            }
        }
    }
    Err(reasons)
}

fn app_key_from_secret(payload: &SecretPayload) -> Result<String, String> {
    let text = match payload {
        SecretPayload::Text(t) => t.clone(),
        SecretPayload::Binary(b) => String::from_utf8(b.clone())
            .map_err(|_| SecretFormatError::BinaryNotText.to_string())?,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SecretFormatError::Empty.to_string());
    }
    if !trimmed.starts_with('{') {
        return Ok(trimmed.to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(trimmed)
        .map_err(|e| SecretFormatError::MalformedJson(e.to_string()).to_string())?;
    JSON_APP_KEY_FIELDS
        .iter()
        .find_map(|field| value.get(field).and_then(|v| v.as_str()))
        .map(str::to_owned)
        .ok_or_else(|| "the JSON secret has no appKey, app_key, applicationKey, application_key or DD_APP_KEY string field; add one".to_owned())
}

#[cfg(test)]
pub(crate) fn test_key(raw: &str) -> ApiKey {
    check_shape(raw).expect("test keys are 32 hex characters")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn key_never_prints_itself() {
        let key = test_key(KEY);
        assert_eq!(format!("{key}"), REDACTED);
        assert_eq!(format!("{key:?}"), REDACTED);
        assert!(!format!(
            "{:?}",
            FoundKey {
                key: key.clone(),
                source: KeySource::Env
            }
        )
        .contains(KEY));
        assert_eq!(key.ending(), "bcdef");
        assert_ne!(key.digest(), KEY);
        assert_eq!(key.digest().len(), 64);
    }

    #[test]
    fn shape_check_names_the_mistake() {
        assert!(
            check_shape(&format!("  {KEY}\n")).is_ok(),
            "surrounding whitespace is trimmed"
        );
        assert_eq!(
            check_shape(&format!("\"{KEY}\"")),
            Err(ShapeProblem::Quotes)
        );
        assert_eq!(
            check_shape(&format!("{}\n{}", &KEY[..16], &KEY[16..])),
            Err(ShapeProblem::InnerWhitespace)
        );
        assert_eq!(
            check_shape(&"a".repeat(40)),
            Err(ShapeProblem::ApplicationKey)
        );
        assert_eq!(
            check_shape("abc"),
            Err(ShapeProblem::WrongLength { len: 3 })
        );
        assert_eq!(check_shape(&"g".repeat(32)), Err(ShapeProblem::NotHex));
    }

    #[test]
    fn shape_errors_never_contain_the_candidate() {
        for bad in [format!("'{KEY}'"), format!("{KEY}ff"), format!("{KEY} x")] {
            let msg = check_shape(&bad).unwrap_err().to_string();
            assert!(!msg.contains(&KEY[..10]), "{msg}");
        }
    }

    #[test]
    fn secret_formats() {
        let text = |s: &str| SecretPayload::Text(s.to_owned());
        assert_eq!(key_from_secret(&text(KEY)).unwrap(), KEY);
        assert_eq!(key_from_secret(&text(&format!("{KEY}\n"))).unwrap(), KEY);
        assert_eq!(
            key_from_secret(&text(&format!(r#"{{"apiKey":"{KEY}","apiKeyId":"x"}}"#))).unwrap(),
            KEY
        );
        assert_eq!(
            key_from_secret(&text(&format!(r#"{{"api_key":"{KEY}"}}"#))).unwrap(),
            KEY
        );
        assert_eq!(
            key_from_secret(&text(&format!(r#"{{"DD_API_KEY":"{KEY}"}}"#))).unwrap(),
            KEY
        );
        assert_eq!(
            key_from_secret(&SecretPayload::Binary(KEY.as_bytes().to_vec())).unwrap(),
            KEY
        );
        assert_eq!(
            key_from_secret(&text(r#"{"other":"x"}"#)),
            Err(SecretFormatError::NoKeyField)
        );
        assert_eq!(
            key_from_secret(&text(r#"{"apiKey": 5}"#)),
            Err(SecretFormatError::NoKeyField)
        );
        assert!(matches!(
            key_from_secret(&text(r#"{"apiKey": "#)),
            Err(SecretFormatError::MalformedJson(_))
        ));
        assert_eq!(
            key_from_secret(&SecretPayload::Binary(vec![0xff, 0xfe])),
            Err(SecretFormatError::BinaryNotText)
        );
        assert_eq!(key_from_secret(&text("  ")), Err(SecretFormatError::Empty));
    }

    #[test]
    fn malformed_json_error_does_not_echo_the_secret() {
        let err =
            key_from_secret(&SecretPayload::Text(format!(r#"{{"apiKey": "{KEY}""#))).unwrap_err();
        assert!(!err.to_string().contains(KEY));
    }

    struct FakeStore(Result<SecretPayload, String>);
    impl SecretStore for FakeStore {
        async fn fetch(&self, id: &str) -> SecretAnswer {
            SecretAnswer {
                place: format!("secret {id} in test-region"),
                payload: self.0.clone(),
            }
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn env_wins_over_the_secret() {
        let store = FakeStore(Ok(SecretPayload::Text("f".repeat(32))));
        let got = block_on(lookup(
            Some(KEY),
            Some(SecretLookup {
                store: &store,
                secret_id: "s",
            }),
        ));
        let KeyLookup::Found { found, .. } = got else {
            panic!("expected a key")
        };
        assert_eq!(found.key.expose(), KEY);
        assert_eq!(found.source, KeySource::Env);
    }

    #[test]
    fn empty_env_falls_through_to_the_secret() {
        let store = FakeStore(Ok(SecretPayload::Text(KEY.to_owned())));
        let got = block_on(lookup(
            Some("  "),
            Some(SecretLookup {
                store: &store,
                secret_id: "datadog/api-key",
            }),
        ));
        let KeyLookup::Found { found, .. } = got else {
            panic!("expected a key")
        };
        assert_eq!(
            found.source.to_string(),
            "aws-secrets-manager:datadog/api-key"
        );
    }

    #[test]
    fn wrong_shaped_env_key_is_refused_and_the_chain_goes_on() {
        let store = FakeStore(Err("AccessDeniedException".into()));
        let got = block_on(lookup(
            Some(&"a".repeat(40)),
            Some(SecretLookup {
                store: &store,
                secret_id: "s",
            }),
        ));
        let KeyLookup::Missing { reasons } = got else {
            panic!("expected no key")
        };
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].contains("application key"), "{reasons:?}");
        assert_eq!(reasons[1], "secret s in test-region: AccessDeniedException");
    }

    #[test]
    fn every_source_says_why() {
        let got = block_on(lookup::<FakeStore>(None, None));
        let KeyLookup::Missing { reasons } = got else {
            panic!("expected no key")
        };
        assert_eq!(
            reasons,
            [
                "DD_API_KEY unset",
                "AWS Secrets Manager not asked (--no-aws)"
            ]
        );
    }

    #[test]
    fn application_keys() {
        let app = "0123456789abcdef0123456789abcdef01234567";
        let key = check_app_key_shape(&format!(" {app}\n")).unwrap();
        assert_eq!(key.expose(), app);
        assert_eq!(format!("{key} {key:?}"), "<redacted> <redacted>");
        assert!(check_app_key_shape(KEY)
            .unwrap_err()
            .contains("like an API key"));
        assert!(check_app_key_shape(&"g".repeat(40))
            .unwrap_err()
            .contains("0-9"));
        let store = FakeStore(Ok(SecretPayload::Text(format!(r#"{{"appKey":"{app}"}}"#))));
        let got = block_on(lookup_app_key(
            None,
            Some(SecretLookup {
                store: &store,
                secret_id: "datadog/app-key",
            }),
        ));
        assert_eq!(got.unwrap().expose(), app);
        let reasons = block_on(lookup_app_key::<FakeStore>(Some(KEY), None)).unwrap_err();
        assert!(
            reasons[0].starts_with("DD_APP_KEY is not used"),
            "{reasons:?}"
        );
        assert!(!reasons.concat().contains(KEY));
    }

    #[test]
    fn a_malformed_secret_is_reported() {
        let store = FakeStore(Ok(SecretPayload::Text("{oops".into())));
        let got = block_on(lookup(
            None,
            Some(SecretLookup {
                store: &store,
                secret_id: "s",
            }),
        ));
        let KeyLookup::Missing { reasons } = got else {
            panic!("expected no key")
        };
        assert!(reasons[1].contains("not valid JSON"), "{reasons:?}");
    }
}
