//! One container's pipeline after the decoder: batches (1000 entries, 5,000,000 bytes or
//! `batch_wait`), encodes them as the HTTP destination does (JSON array, gzip level 6), POSTs to
//! `<url>/api/v2/logs` and retries forever with backoff (1 s doubling to 120 s) until the intake
//! answers below 400, or 400/401/403/413 (dropped, never retried). Either way the payload is
//! audited: the registry moves past its last line.

use super::config::Destination;
use super::registry::Registry;
use crate::logline;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const LOGS_PATH: &str = "/api/v2/logs";
pub const MAX_BATCH_ENTRIES: usize = 1000;
pub const MAX_BATCH_BYTES: usize = 5_000_000;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const BACKOFF_START: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(120);
const SOURCE: &str = "pkg/logs/client/http/destination.go:255 in sendAndRetry";

/// One message on its way, as the decoder produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub content: String,
    pub status: &'static str,
    pub offset: u64,
    /// Unix nanoseconds when it was read.
    pub ingested_ns: i64,
}

/// Collects messages into batches of at most [`MAX_BATCH_ENTRIES`] entries and
/// [`MAX_BATCH_BYTES`] bytes of content.
#[derive(Debug, Default)]
pub struct Batcher {
    pending: Vec<Message>,
    bytes: usize,
}

impl Batcher {
    /// Adds a message; returns a full batch to send, if adding it filled or overflowed one.
    pub fn push(&mut self, m: Message) -> Option<Vec<Message>> {
        let mut out = None;
        if !self.pending.is_empty() && self.bytes + m.content.len() > MAX_BATCH_BYTES {
            out = Some(self.take());
        }
        self.bytes += m.content.len();
        self.pending.push(m);
        if out.is_none()
            && (self.pending.len() >= MAX_BATCH_ENTRIES || self.bytes >= MAX_BATCH_BYTES)
        {
            out = Some(self.take());
        }
        out
    }

    pub fn take(&mut self) -> Vec<Message> {
        self.bytes = 0;
        std::mem::take(&mut self.pending)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What every entry of one tailed file carries besides its message.
#[derive(Clone, Debug)]
pub struct Meta {
    pub hostname: String,
    pub service: String,
    pub source: String,
    /// A container's tags, or a file source's `filename:`/`dirname:`/own tags.
    pub tags: Vec<String>,
    pub host_tags: Vec<String>,
    /// Host tags are added to `ddtags` until then (`expected_tags_duration` after start).
    pub host_tags_until: Option<Instant>,
}

impl Meta {
    pub fn ddtags(&self, now: Instant) -> String {
        let mut tags = self.tags.clone();
        if self.host_tags_until.is_some_and(|until| now < until) {
            tags.extend(self.host_tags.iter().cloned());
        }
        tags.join(",")
    }
}

/// The JSON array the intake receives; `timestamp` is the encoder's clock in ms.
pub fn encode(batch: &[Message], meta: &Meta, now_ms: i64, ddtags: &str) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = batch
        .iter()
        .map(|m| {
            json!({
                "message": m.content,
                "status": m.status,
                "timestamp": now_ms,
                "hostname": meta.hostname,
                "service": meta.service,
                "ddsource": meta.source,
                "ddtags": ddtags,
            })
        })
        .collect();
    serde_json::to_vec(&entries).unwrap_or_default()
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// How the destination reads an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    /// 400/401/403/413: dropped, audited, never retried.
    Dropped(u16),
    Retry(String),
}

pub fn classify(status: u16) -> Verdict {
    match status {
        s if s < 400 => Verdict::Sent,
        400 | 401 | 403 | 413 => Verdict::Dropped(status),
        s => Verdict::Retry(format!("server error: {s}")),
    }
}

/// The backoff before retry number `attempt` (1-based): 1 s doubling, at most 120 s.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64
        .checked_shl(attempt.saturating_sub(1).min(16))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(BACKOFF_MAX)
}

/// The HTTP side of a destination.
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    destination: Destination,
    api_key: String,
    compression: bool,
    /// False after a failed start-up probe: the agent "uses TCP", which the stand-in has no
    /// intake for, so nothing ever arrives.
    pub http: bool,
}

impl Sender {
    pub fn new(destination: Destination, api_key: &str, compression: bool) -> Sender {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Sender {
            client: Client::builder(TokioExecutor::new()).build(connector),
            destination,
            api_key: api_key.to_string(),
            compression,
            http: true,
        }
    }

    pub fn url(&self) -> String {
        match &self.destination {
            Destination::Http { base } => format!("{base}{LOGS_PATH}"),
            Destination::NoNetwork { url, .. } => format!("{url}{LOGS_PATH}"),
        }
    }

    /// The connectivity check: POST `{}`; an answer below 400 means HTTP.
    pub async fn probe(&self) -> bool {
        matches!(self.post(b"{}".to_vec(), false).await, Ok(s) if s < 400)
    }

    /// One POST of a JSON body; the status, or why there is none.
    async fn post(&self, body: Vec<u8>, encode: bool) -> Result<u16, String> {
        let base = match &self.destination {
            Destination::Http { base } if self.http => base,
            Destination::Http { .. } => {
                return Err("the TCP intake is unreachable from the stand-in".into())
            }
            Destination::NoNetwork { why, .. } => return Err(why.clone()),
        };
        let mut request = hyper::Request::post(format!("{base}{LOGS_PATH}"))
            .header("DD-API-KEY", self.api_key.as_str())
            .header("Content-Type", "application/json")
            .header("DD-PROTOCOL", "agent-json")
            .header("DD-EVP-ORIGIN", "agent")
            .header("DD-EVP-ORIGIN-VERSION", crate::VERSION)
            .header("User-Agent", format!("datadog-agent/{}", crate::VERSION));
        let body = if encode && self.compression {
            request = request.header("Content-Encoding", "gzip");
            gzip(&body)
        } else {
            body
        };
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let mut text = e.to_string();
                if let Some(s) = std::error::Error::source(&e) {
                    text = format!("{text}: {s}");
                }
                text
            })?;
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Ok(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err("context deadline exceeded (Client.Timeout exceeded)".into()),
        }
    }

    /// Sends one payload until it is acknowledged (sent or dropped).
    pub async fn send_until_acknowledged(&self, body: &[u8]) -> Verdict {
        let mut attempt = 0u32;
        loop {
            let verdict = match self.post(body.to_vec(), true).await {
                Ok(status) => classify(status),
                Err(e) => Verdict::Retry(e),
            };
            match verdict {
                Verdict::Retry(why) => {
                    attempt += 1;
                    let wait = backoff(attempt);
                    if attempt == 1 || attempt.is_power_of_two() {
                        logline::emit(
                            "CORE",
                            logline::Level::Warn,
                            SOURCE,
                            &format!(
                                "Could not send payload to {}: {why} (retry {attempt} in {}s)",
                                self.url(),
                                wait.as_secs()
                            ),
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
                Verdict::Dropped(status) => {
                    logline::error(
                        SOURCE,
                        &format!("Dropping payload: the intake answered {status}"),
                    );
                    return Verdict::Dropped(status);
                }
                Verdict::Sent => return Verdict::Sent,
            }
        }
    }
}

/// Where a pipeline records what was sent: the registry key and the source's configured
/// position (`TailingMode`). Once `rotated` is set (the tailer reads a file its path no longer
/// names) nothing more is recorded, as a rotated tailer's messages carry no identifier.
#[derive(Clone, Debug)]
pub struct Audit {
    pub identifier: String,
    pub tailing_mode: String,
    pub rotated: Arc<std::sync::atomic::AtomicBool>,
}

impl Audit {
    pub fn new(identifier: String, tailing_mode: &str) -> Audit {
        Audit {
            identifier,
            tailing_mode: tailing_mode.to_string(),
            rotated: Arc::default(),
        }
    }
}

/// Runs one tailer's pipeline until its channel closes (the tailer ended), then flushes.
pub async fn run_pipeline(
    mut rx: mpsc::Receiver<Message>,
    sender: Arc<Sender>,
    meta: Meta,
    audit: Audit,
    registry: Arc<Mutex<Registry>>,
    batch_wait: Duration,
) {
    let mut batcher = Batcher::default();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + batch_wait, batch_wait);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => batcher.push(m),
                None => break,
            },
            _ = ticker.tick() => (!batcher.is_empty()).then(|| batcher.take()),
        };
        if let Some(batch) = batch {
            send_batch(&sender, &meta, &audit, &registry, batch).await;
        }
    }
    if !batcher.is_empty() {
        let batch = batcher.take();
        send_batch(&sender, &meta, &audit, &registry, batch).await;
    }
}

async fn send_batch(
    sender: &Sender,
    meta: &Meta,
    audit: &Audit,
    registry: &Mutex<Registry>,
    batch: Vec<Message>,
) {
    let Some(last) = batch.last().cloned() else {
        return;
    };
    let now_ms = (crate::timefmt::now() * 1000.0) as i64;
    let body = encode(&batch, meta, now_ms, &meta.ddtags(Instant::now()));
    sender.send_until_acknowledged(&body).await;
    if audit.rotated.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let now_ns = (crate::timefmt::now() * 1e9) as i64;
    registry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .acknowledge(
            &audit.identifier,
            last.offset,
            now_ns,
            last.ingested_ns,
            &audit.tailing_mode,
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(content: &str, offset: u64) -> Message {
        Message {
            content: content.into(),
            status: "info",
            offset,
            ingested_ns: 1,
        }
    }

    #[test]
    fn batches_close_at_1000_entries_or_5_mb() {
        let mut b = Batcher::default();
        for i in 0..999 {
            assert!(b.push(msg("x", i)).is_none());
        }
        let full = b.push(msg("x", 999)).unwrap();
        assert_eq!(full.len(), 1000);
        assert!(b.is_empty());

        let big = "y".repeat(3_000_000);
        assert!(b.push(msg(&big, 1)).is_none());
        // The second one would overflow: the first goes alone.
        let first = b.push(msg(&big, 2)).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].offset, 1);
        assert_eq!(b.take().len(), 1);
    }

    #[test]
    fn statuses_and_backoff_follow_the_destination() {
        assert_eq!(classify(200), Verdict::Sent);
        assert_eq!(classify(307), Verdict::Sent);
        for s in [400, 401, 403, 413] {
            assert_eq!(classify(s), Verdict::Dropped(s));
        }
        assert!(matches!(classify(404), Verdict::Retry(_)));
        assert!(matches!(classify(500), Verdict::Retry(_)));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(7), Duration::from_secs(64));
        assert_eq!(backoff(8), Duration::from_secs(120));
        assert_eq!(backoff(100), Duration::from_secs(120));
    }

    #[test]
    fn entries_carry_container_tags_and_host_tags_only_while_expected() {
        let now = Instant::now();
        let mut meta = Meta {
            hostname: "node-1".into(),
            service: "metta".into(),
            source: "metta".into(),
            tags: vec!["container_id:abc".into(), "short_image:metta".into()],
            host_tags: vec!["env:prod".into()],
            host_tags_until: None,
        };
        assert_eq!(meta.ddtags(now), "container_id:abc,short_image:metta");
        meta.host_tags_until = Some(now + Duration::from_secs(60));
        assert_eq!(
            meta.ddtags(now),
            "container_id:abc,short_image:metta,env:prod"
        );
        assert_eq!(
            meta.ddtags(now + Duration::from_secs(61)),
            "container_id:abc,short_image:metta"
        );
        let body = encode(&[msg("hi", 3)], &meta, 42, "a:b");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!([{"message": "hi", "status": "info", "timestamp": 42, "hostname": "node-1",
                    "service": "metta", "ddsource": "metta", "ddtags": "a:b"}])
        );
        let mut plain = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&gzip(&body)[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, body);
    }

    #[tokio::test]
    async fn without_network_nothing_is_sent() {
        let s = Sender::new(super::super::config::destination(None, false), "k", true);
        assert!(!s.probe().await);
        assert!(s.post(b"[]".to_vec(), true).await.is_err());
    }
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each request with the next status of `answers`; counts the requests.
    async fn intake(answers: Vec<u16>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for status in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        base
    }

    fn meta() -> Meta {
        Meta {
            hostname: "h".into(),
            service: "s".into(),
            source: "s".into(),
            tags: vec![],
            host_tags: vec![],
            host_tags_until: None,
        }
    }

    async fn run(answers: Vec<u16>, msgs: Vec<Message>) -> Registry {
        let base = intake(answers).await;
        let sender = Arc::new(Sender::new(Destination::Http { base }, "k", true));
        let registry = Arc::new(Mutex::new(Registry::default()));
        let (tx, rx) = mpsc::channel(10);
        for m in msgs {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        run_pipeline(
            rx,
            sender,
            meta(),
            Audit::new("file:x".into(), "beginning"),
            registry.clone(),
            Duration::from_secs(5),
        )
        .await;
        let r = registry.lock().unwrap().clone();
        r
    }

    fn msg(offset: u64) -> Message {
        Message {
            content: "m".into(),
            status: "info",
            offset,
            ingested_ns: 7,
        }
    }

    #[tokio::test]
    async fn the_offset_moves_only_when_the_intake_acknowledged() {
        // A 500 is retried; the 202 after it acknowledges the whole flushed batch.
        let r = run(vec![500, 202], vec![msg(10), msg(25)]).await;
        assert_eq!(r.offset("file:x"), Some(25));
        assert_eq!(r.entries["file:x"].ingestion_ns, 7);
        // A 413 is a permanent drop: audited, not retried.
        let r = run(vec![413], vec![msg(40)]).await;
        assert_eq!(r.offset("file:x"), Some(40));
    }

    #[tokio::test]
    async fn without_an_answer_the_registry_stays_empty() {
        let sender = Arc::new(Sender::new(
            super::super::config::destination(None, false),
            "k",
            true,
        ));
        let registry = Arc::new(Mutex::new(Registry::default()));
        let (tx, rx) = mpsc::channel(10);
        tx.send(msg(10)).await.unwrap();
        drop(tx);
        let pipeline = run_pipeline(
            rx,
            sender,
            meta(),
            Audit::new("file:x".into(), "beginning"),
            registry.clone(),
            Duration::from_secs(1),
        );
        assert!(tokio::time::timeout(Duration::from_secs(3), pipeline)
            .await
            .is_err());
        assert!(registry.lock().unwrap().entries.is_empty());
    }
}
