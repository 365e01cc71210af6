//! The APM receiver (TCP, minimal HTTP) and the DogStatsD listener (UDP). They only count what
//! they receive; the counts show up in `agent status --json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Default, Debug)]
pub struct Counters {
    pub apm_connections: AtomicU64,
    pub apm_requests: AtomicU64,
    pub apm_bytes: AtomicU64,
    pub dsd_packets: AtomicU64,
    pub dsd_bytes: AtomicU64,
    pub dsd_metric_samples: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Binds `0.0.0.0:port` and serves traces in the background.
pub async fn start_apm(port: u16, counters: Arc<Counters>) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    bump(&counters.apm_connections, 1);
                    tokio::spawn(serve_apm(stream, counters.clone()));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    });
    Ok(())
}

/// Largest request head or body kept in memory; beyond it bytes are only counted.
const MAX_BUFFER: usize = 1 << 20;

async fn serve_apm(mut stream: TcpStream, counters: Arc<Counters>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        bump(&counters.apm_bytes, n as u64);
        buf.extend_from_slice(&chunk[..n]);
        while let Some(request) = take_request(&mut buf) {
            bump(&counters.apm_requests, 1);
            if stream.write_all(&response(&request)).await.is_err() {
                return;
            }
        }
        if buf.len() > MAX_BUFFER {
            buf.clear(); // not HTTP we understand: keep counting, stop buffering
        }
    }
}

/// The request line and headers of one complete HTTP request removed from `buf`.
#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    path: String,
}

fn take_request(buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let content_length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if buf.len() < head_end + content_length {
        return None;
    }
    buf.drain(..head_end + content_length);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    Some(Request {
        method: first.next().unwrap_or("").to_string(),
        path: first.next().unwrap_or("").to_string(),
    })
}

fn response(request: &Request) -> Vec<u8> {
    let body = if request.method == "GET" && request.path.starts_with("/info") {
        format!(
            "{{\"version\":\"{}\",\"endpoints\":[\"/v0.4/traces\",\"/v0.5/traces\",\"/v0.7/traces\",\"/info\"]}}",
            crate::VERSION
        )
    } else {
        "{\"rate_by_service\":{}}".to_string()
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Binds `0.0.0.0:port` (UDP) and counts DogStatsD packets in the background.
pub async fn start_dogstatsd(port: u16, counters: Arc<Counters>) -> std::io::Result<()> {
    let socket = UdpSocket::bind(("0.0.0.0", port)).await?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, _)) => {
                    bump(&counters.dsd_packets, 1);
                    bump(&counters.dsd_bytes, n as u64);
                    bump(&counters.dsd_metric_samples, metric_samples(&buf[..n]));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    });
    Ok(())
}

/// Metric lines in a DogStatsD datagram (events `_e{` and service checks `_sc|` are not metrics).
fn metric_samples(packet: &[u8]) -> u64 {
    packet
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"_e{") && !l.starts_with(b"_sc|"))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_complete_requests_only() {
        let mut buf = b"PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 4\r\n\r\nab".to_vec();
        assert_eq!(take_request(&mut buf), None);
        buf.extend_from_slice(b"cdGET /info HTTP/1.1\r\n\r\n");
        assert_eq!(
            take_request(&mut buf),
            Some(Request {
                method: "PUT".into(),
                path: "/v0.4/traces".into()
            })
        );
        assert_eq!(
            take_request(&mut buf),
            Some(Request {
                method: "GET".into(),
                path: "/info".into()
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn counts_metric_lines() {
        assert_eq!(metric_samples(b"a:1|c\nb:2|g\n_e{1,1}:x|y\n_sc|s|0"), 2);
    }
}
