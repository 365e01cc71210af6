//! The forwarder, for real when `DD_DD_URL` is set: every [`INTERVAL`] (the first time right at
//! start) it posts a one-point series carrying the host tags to `{DD_DD_URL}/api/v2/series` with
//! the `DD-API-KEY` header, and counts the outcome the way the real forwarder's
//! `forwarderStats.Transactions` does. Without `DD_DD_URL` nothing is sent and `agent status`
//! shows simulated counters (see `render`).
//!
//! Only plain `http://` intakes are supported (the tests run one on 127.0.0.1); an `https://`
//! URL fails every post with a connection error, logged, without stopping the daemon.

use crate::config::Config;
use crate::logline;
use crate::state::{ForwarderStats, KeyCheck};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the series go, below `DD_DD_URL`.
pub const SERIES_PATH: &str = "/api/v2/series";
/// The endpoint's name in `SuccessByEndpoint`.
pub const SERIES_ENDPOINT: &str = "series_v2";
/// The metric the payload carries.
pub const METRIC: &str = "datadog.agent.running";
/// Time between two posts.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Bound on one post, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on connecting, below [`TIMEOUT`] so that an unreachable intake counts as a connection error.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The keys of `ErrorsByType`, all shown (zero when nothing happened), as the real agent does.
pub const ERROR_TYPES: [&str; 5] = [
    "ConnectionErrors",
    "DNSErrors",
    "SentRequestErrors",
    "TLSErrors",
    "WroteRequestErrors",
];

const SOURCE: &str =
    "comp/forwarder/defaultforwarder/transaction/transaction.go:433 in internalProcess";

/// How one post ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer; `bytes` is the size of the payload sent.
    Accepted { status: u16, bytes: u64 },
    /// Any other HTTP status.
    HttpError { status: u16 },
    /// No HTTP answer: `kind` is one of [`ERROR_TYPES`].
    Failed { kind: &'static str, message: String },
}

/// `{"series":[{"metric":"datadog.agent.running","type":3,"points":[{"timestamp":<ts>,"value":1}],
/// "resources":[{"name":"<hostname>","type":"host"}],"tags":[<host tags>]}]}` (type 3 = gauge).
pub fn series_payload(hostname: &str, host_tags: &[String], timestamp: i64) -> Value {
    json!({
        "series": [{
            "metric": METRIC,
            "type": 3,
            "points": [{ "timestamp": timestamp, "value": 1 }],
            "resources": [{ "name": hostname, "type": "host" }],
            "tags": host_tags,
        }]
    })
}

/// Adds one outcome to the counters.
pub fn record(stats: &mut ForwarderStats, outcome: &Outcome) {
    match outcome {
        Outcome::Accepted { bytes, .. } => {
            stats.success += 1;
            *stats
                .success_by_endpoint
                .entry(SERIES_ENDPOINT.to_string())
                .or_default() += 1;
            *stats
                .success_bytes_by_endpoint
                .entry(SERIES_ENDPOINT.to_string())
                .or_default() += bytes;
            stats.key_check = KeyCheck::Accepted;
        }
        Outcome::HttpError { status } => {
            stats.errors += 1;
            stats.http_errors += 1;
            *stats
                .http_errors_by_code
                .entry(status.to_string())
                .or_default() += 1;
            stats.key_check = if *status == 403 {
                KeyCheck::Rejected
            } else {
                KeyCheck::Unknown
            };
        }
        Outcome::Failed { kind, .. } => {
            stats.errors += 1;
            *stats.errors_by_type.entry(kind.to_string()).or_default() += 1;
            stats.key_check = KeyCheck::Unknown;
        }
    }
}

/// Posts series to one intake.
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `{DD_DD_URL}/api/v2/series`.
    url: String,
    api_key: String,
}

impl Forwarder {
    pub fn new(base_url: &str, api_key: &str) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Forwarder {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: format!("{}{SERIES_PATH}", base_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One POST of `body`, bounded by [`TIMEOUT`] (the answer's body is read and dropped).
    pub async fn post(&self, body: Vec<u8>) -> Outcome {
        let bytes = body.len() as u64;
        let request = match hyper::Request::post(self.url.as_str())
            .header("DD-API-KEY", self.api_key.as_str())
            .header("Content-Type", "application/json")
            .header("User-Agent", format!("datadog-agent/{}", crate::VERSION))
            .header("DD-Agent-Version", crate::VERSION)
            .body(Full::new(Bytes::from(body)))
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    kind: "ConnectionErrors",
                    message: format!("invalid URL: {e}"),
                }
            }
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            // Drain the answer so the connection can be reused; its content does not matter.
            let _ = response.into_body().collect().await;
            Ok::<u16, hyper_util::client::legacy::Error>(status)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Accepted { status, bytes },
            Ok(Ok(status)) => Outcome::HttpError { status },
            Ok(Err(e)) => Outcome::Failed {
                kind: error_kind(&e),
                message: error_chain(&e),
            },
            Err(_) => Outcome::Failed {
                kind: "SentRequestErrors",
                message:
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                        .to_string(),
            },
        }
    }
}

fn error_kind(e: &hyper_util::client::legacy::Error) -> &'static str {
    if !e.is_connect() {
        "SentRequestErrors"
    } else if error_chain(e).contains("dns error") {
        "DNSErrors"
    } else {
        "ConnectionErrors"
    }
}

/// The error and its sources, `: `-joined (what Go prints for a wrapped error).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The log line for an outcome: an error for each failure, an info line when posts start (again)
/// to succeed. Never contains the key.
fn log_outcome(url: &str, outcome: &Outcome, previous_ok: bool) {
    match outcome {
        Outcome::Accepted { status, .. } if !previous_ok => logline::info(
            SOURCE,
            &format!("Successfully posted payload to \"{url}\" (HTTP {status})"),
        ),
        Outcome::Accepted { .. } => {}
        Outcome::HttpError { status: 403 } => logline::error(
            SOURCE,
            &format!("API Key invalid, dropping transaction for {url}"),
        ),
        Outcome::HttpError { status } => logline::error(
            SOURCE,
            &format!(
                "Error code \"{status} {}\" received while sending transaction to \"{url}\", dropping it",
                reason(*status)
            ),
        ),
        Outcome::Failed { message, .. } => logline::error(
            SOURCE,
            &format!("Error while sending transaction, rescheduling it: Post \"{url}\": {message}"),
        ),
    }
}

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Posts forever: right away, then every [`INTERVAL`]. `on_change` runs after each outcome is
/// recorded in `stats` (the state writer picks it up).
pub async fn run(
    config: Arc<Config>,
    base_url: String,
    stats: Arc<Mutex<ForwarderStats>>,
    on_change: impl Fn() + Send + 'static,
) {
    let forwarder = Forwarder::new(&base_url, config.api_key.reveal());
    logline::info(
        "comp/forwarder/defaultforwarder/default_forwarder.go:424 in Start",
        &format!(
            "Forwarder started, sending to 1 endpoint(s) with 1 worker(s) each: \"{base_url}\" (1 api key(s))"
        ),
    );
    if !base_url.starts_with("http://") {
        logline::warn(
            "comp/forwarder/defaultforwarder/default_forwarder.go:430 in Start",
            &format!(
                "the stand-in forwarder only speaks plain http: posts to \"{base_url}\" will fail"
            ),
        );
    }
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous_ok = false;
    loop {
        ticker.tick().await;
        let payload = series_payload(
            &config.hostname,
            &config.host_tags,
            crate::timefmt::now() as i64,
        );
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let outcome = forwarder.post(body).await;
        log_outcome(forwarder.url(), &outcome, previous_ok);
        previous_ok = matches!(outcome, Outcome::Accepted { .. });
        record(
            &mut stats.lock().unwrap_or_else(|p| p.into_inner()),
            &outcome,
        );
        on_change();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn payload_shape() {
        let v = series_payload("node-1", &["a:b".into(), "c:d".into()], 1_700_000_000);
        assert_eq!(
            v,
            json!({"series": [{
                "metric": "datadog.agent.running",
                "type": 3,
                "points": [{"timestamp": 1_700_000_000, "value": 1}],
                "resources": [{"name": "node-1", "type": "host"}],
                "tags": ["a:b", "c:d"],
            }]})
        );
    }

    #[test]
    fn counts_like_the_real_forwarder() {
        let mut s = ForwarderStats::default();
        record(
            &mut s,
            &Outcome::Accepted {
                status: 202,
                bytes: 10,
            },
        );
        record(
            &mut s,
            &Outcome::Accepted {
                status: 200,
                bytes: 5,
            },
        );
        assert_eq!((s.success, s.errors), (2, 0));
        assert_eq!(s.success_by_endpoint[SERIES_ENDPOINT], 2);
        assert_eq!(s.success_bytes_by_endpoint[SERIES_ENDPOINT], 15);
        assert_eq!(s.key_check, KeyCheck::Accepted);
        record(&mut s, &Outcome::HttpError { status: 403 });
        assert_eq!(s.key_check, KeyCheck::Rejected);
        record(&mut s, &Outcome::HttpError { status: 500 });
        record(
            &mut s,
            &Outcome::Failed {
                kind: "ConnectionErrors",
                message: "refused".into(),
            },
        );
        assert_eq!((s.success, s.errors, s.http_errors), (2, 3, 2));
        assert_eq!(s.http_errors_by_code["403"], 1);
        assert_eq!(s.http_errors_by_code["500"], 1);
        assert_eq!(s.errors_by_type["ConnectionErrors"], 1);
        assert_eq!(s.key_check, KeyCheck::Unknown);
    }

    /// Answers `status` to one request and hands back the request's bytes.
    async fn intake(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}");
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        });
        (base, task)
    }

    #[tokio::test]
    async fn posts_the_series_with_the_key() {
        let (base, task) = intake(202).await;
        let f = Forwarder::new(&format!("{base}/"), "0123456789abcdef0123456789abcdef");
        let body = br#"{"series":[]}"#.to_vec();
        assert_eq!(
            f.post(body.clone()).await,
            Outcome::Accepted {
                status: 202,
                bytes: body.len() as u64
            }
        );
        let request = task.await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("POST /api/v2/series HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(lower.contains("\r\ndd-api-key: 0123456789abcdef0123456789abcdef\r\n"));
        assert!(lower.contains("\r\ncontent-type: application/json\r\n"));
        assert!(request.ends_with(r#"{"series":[]}"#));
    }

    #[tokio::test]
    async fn http_and_connection_errors() {
        let (base, task) = intake(403).await;
        let f = Forwarder::new(&base, "k");
        assert_eq!(
            f.post(b"{}".to_vec()).await,
            Outcome::HttpError { status: 403 }
        );
        task.await.unwrap();

        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let f = Forwarder::new(&format!("http://127.0.0.1:{port}"), "k");
        match f.post(b"{}".to_vec()).await {
            Outcome::Failed { kind, message } => {
                assert_eq!(kind, "ConnectionErrors");
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }

        let f = Forwarder::new("https://127.0.0.1:1", "k");
        assert!(matches!(
            f.post(b"{}".to_vec()).await,
            Outcome::Failed {
                kind: "ConnectionErrors",
                ..
            }
        ));
    }
}
