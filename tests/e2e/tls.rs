//! Issue 31, part 3: TLS in any image. The static ddsky in a `FROM scratch` image (no CA
//! certificates at all, as in a distroless job image) trusts the roots it carries, still refuses a
//! server no trusted CA signed, says so in words, and trusts a CA the image's own store holds (a
//! company proxy's). Both HTTPS clients: the AWS SDK's (the key's Secrets Manager lookup) and
//! `ddsky verify`'s (Datadog's API).
//!
//! The server is this test's, on 127.0.0.1 (the container shares the host's network): its
//! certificate, for 127.0.0.1, is signed by a test CA whose key was thrown away
//! (tests/fixtures/tls: ca.pem, server.pem, server.key, valid until 2126). It answers every
//! request it gets through a completed handshake with HTTP 400 and Secrets Manager's
//! `ResourceNotFoundException`, so an answer proves the certificate was verified and accepted.

use crate::common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures/tls").join(name)
}

/// An HTTPS server on loopback with the test CA's certificate; counts the requests it answered.
struct TlsServer {
    port: u16,
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start() -> Self {
        let chain: Vec<CertificateDer<'static>> = [fixture("server.pem"), fixture("ca.pem")]
            .iter()
            .map(|p| CertificateDer::from_pem_file(p).expect("a fixture certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("the fixture key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring's defaults")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the fixture's key fits its certificate"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((tcp, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                        continue;
                    };
                    if serve(rustls::StreamOwned::new(conn, tcp)).is_ok() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        TlsServer {
            port,
            answered,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Reads one request (headers and Content-Length body), answers 400 ResourceNotFoundException.
fn serve(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let body_start = loop {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;
    write!(
        tls,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The static ddsky in its `FROM scratch` image on the host's network: AWS on loopback only
/// (instance metadata off, dummy credentials), every endpoint `server`; with `system_ca`, the
/// test CA is the image's system store (where Debian's ca-certificates keeps it).
fn in_scratch(server: &TlsServer, system_ca: bool, env: &[(&str, &str)], args: &[&str]) -> Run {
    ensure_images();
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "host"]);
    if system_ca {
        cmd.arg("-v").arg(format!(
            "{}:/etc/ssl/certs/ca-certificates.crt:ro",
            fixture("ca.pem").display()
        ));
    }
    let endpoint = server.url();
    for (k, v) in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]
    .iter()
    .chain(env)
    {
        cmd.args(["-e", &format!("{k}={v}")]);
    }
    cmd.arg(ddsky_image()).args(args);
    run(&mut cmd)
}

use std::process::Command;

/// `up --dry-run` without DD_API_KEY: the key's lookup, through the AWS SDK's client.
const LOOKUP: &[&str] = &["up", "--dry-run", "--secret-timeout", "60s"];

const NOT_TRUSTED: &str = "the server's certificate is not trusted: no certificate authority ddsky trusts signed it (self-signed, or a private CA); if a proxy or a private CA signs it, add that CA to the system's store or name its PEM file in SSL_CERT_FILE";

fn assert_quiet_about_the_store(out: &Run) {
    let both = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !both.contains("no native root CA certificates found") && !both.contains("WARN"),
        "no warning for an image without CA certificates\n{out}"
    );
    let forms = crate::words::debug_forms(&both);
    assert!(forms.is_empty(), "Debug forms {forms:?}\n{out}");
}

#[test]
fn a_scratch_image_trusts_mozillas_roots_and_still_refuses_an_unknown_ca() {
    let server = TlsServer::start();

    // The roots ddsky carries are its store when the image has none (-v says how many).
    let verbose = in_scratch(&server, false, &[], &[LOOKUP, &["-v"]].concat());
    verbose.expect_code(0);
    assert_quiet_about_the_store(&verbose);
    let count: usize = verbose
        .stderr
        .lines()
        .find_map(|l| {
            l.split_once("TLS: the system has no CA certificates; trusting the ")?
                .1
                .split_once(" roots ddsky carries (Mozilla's)")
                .map(|(n, _)| n.parse().expect("a count"))
        })
        .unwrap_or_else(|| panic!("-v names the bundled roots\n{verbose}"));
    assert!(count > 100, "Mozilla's roots number well over 100: {count}");

    // Secrets Manager's client refuses the test CA's server, in words, on the one skip line.
    let lookup = in_scratch(&server, false, &[], LOOKUP);
    lookup.expect_code(0);
    assert_quiet_about_the_store(&lookup);
    assert_eq!(lookup.stderr, "", "{lookup}");
    let line = lookup.stdout.trim_end();
    assert_eq!(line.lines().count(), 1, "{lookup}");
    assert!(
        line.contains(&format!(
            "secret datadog/api-key in us-east-1: cannot reach the Secrets Manager endpoint: {NOT_TRUSTED}"
        )),
        "{lookup}"
    );

    // So does verify's client (Datadog's API).
    let keys = [
        ("DD_API_KEY", KEY),
        ("DD_APP_KEY", "0123456789abcdef0123456789abcdef01234567"),
    ];
    let url = server.url();
    let api = [&keys[..], &[("DDSKY_API_URL", url.as_str())]].concat();
    let verify = in_scratch(
        &server,
        false,
        &api,
        &["verify", "--no-aws", "--run-id", "r1"],
    );
    assert_quiet_about_the_store(&verify);
    // One line, at once: a refused certificate is not retried.
    assert_eq!(verify.stderr.lines().count(), 1, "{verify}");
    assert!(
        verify
            .stderr
            .contains(&format!("cannot reach {url}: {NOT_TRUSTED}")),
        "{verify}"
    );
    assert_ne!(verify.code, 0, "{verify}");
    verify.assert_no_secret(&[]);
    assert_eq!(server.answered(), 0, "no request got through a handshake");
}

#[test]
fn a_ca_in_the_images_own_store_is_trusted_by_both_clients() {
    let server = TlsServer::start();

    let verbose = in_scratch(&server, true, &[], &[LOOKUP, &["-v"]].concat());
    assert!(
        verbose
            .stderr
            .contains("TLS: trusting the system's 1 CA certificates"),
        "the image's store, alone\n{verbose}"
    );
    // Through the handshake: the answer is the server's.
    let line = verbose.stdout.trim_end();
    assert!(
        line.contains("secret datadog/api-key in us-east-1: ResourceNotFoundException"),
        "{verbose}"
    );
    let after_lookup = server.answered();
    assert!(after_lookup >= 1, "the server answered the lookup");

    let url = server.url();
    let verify = in_scratch(
        &server,
        true,
        &[
            ("DD_API_KEY", KEY),
            ("DD_APP_KEY", "0123456789abcdef0123456789abcdef01234567"),
            ("DDSKY_API_URL", url.as_str()),
        ],
        &["verify", "--no-aws", "--run-id", "r1"],
    );
    assert_quiet_about_the_store(&verify);
    assert!(
        !verify.stderr.contains("not trusted") && verify.stderr.contains("HTTP 400"),
        "verify's client reached the server through TLS\n{verify}"
    );
    assert!(
        server.answered() > after_lookup,
        "the server answered verify"
    );
    verify.assert_no_secret(&[]);
}
