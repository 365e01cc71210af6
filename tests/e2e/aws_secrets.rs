//! Issue 3: the API key chain DD_API_KEY > AWS Secrets Manager > skip, end to end: the built `ddsky`
//! against moto's Secrets Manager server on loopback, the real Docker daemon and the stand-in agent.
//!
//! One `moto_server` serves the whole test binary (each test uses its own secret names). It runs on a
//! free 127.0.0.1 port and is started from a thread that lives as long as the test process, with
//! PR_SET_PDEATHSIG: the kernel kills it when the process ends, however it ends. Nothing here talks
//! to anything but loopback: ddsky's environment has instance metadata off, dummy credentials, every
//! AWS endpoint on 127.0.0.1, and the tests' own SDK client is built with an explicit endpoint.

use crate::common::*;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `--secret-timeout` for every test: far above what moto (a Python server) takes to answer on a
/// loaded 2-core machine, so its answers are never mistaken for no answer; and how much longer
/// than it a skip may take (process start, loading the AWS config). Generous upper bounds only:
/// the time a lookup takes is measured by benches/bench.sh, not here.
const SECRET_TIMEOUT: Duration = Duration::from_secs(30);
const SLACK: Duration = Duration::from_secs(30);
/// The short `--secret-timeout` of the test that waits it out against an endpoint that never
/// answers.
const HANG_TIMEOUT: Duration = Duration::from_secs(3);
/// A 40-character application key: the classic mix-up.
const APP_KEY: &str = "0123456789abcdef0123456789abcdef01234567";

// ---------------------------------------------------------------------------------------------
// moto's server, once per test binary

#[cfg(target_os = "linux")]
mod process_guard {
    use std::os::raw::{c_int, c_ulong};
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    extern "C" {
        fn atexit(callback: extern "C" fn()) -> c_int;
    }
    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_ulong = 9;

    /// Runs `callback` when the process exits normally (libtest returns from main or calls exit).
    pub fn at_exit(callback: extern "C" fn()) {
        // SAFETY: registering a plain function pointer.
        unsafe {
            atexit(callback);
        }
    }

    /// Makes the child (after fork, before exec) receive SIGKILL when the thread that spawned it dies.
    pub fn kill_with_parent(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

static MOTO_CHILD: Mutex<Option<Child>> = Mutex::new(None);

extern "C" fn stop_moto() {
    if let Some(mut child) = MOTO_CHILD.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The endpoint of the process-wide moto server, e.g. `http://127.0.0.1:41234`.
fn moto() -> &'static str {
    static MOTO: OnceLock<String> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto_server-aws_secrets.log");
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        // PR_SET_PDEATHSIG fires when the *thread* that forked exits, so the spawning thread must
        // outlive every test: it parks until the process exits, which then kills moto too.
        let log_for_thread = log.clone();
        std::thread::Builder::new()
            .name("moto_server".into())
            .spawn(move || {
                let log_file = std::fs::File::create(&log_for_thread).expect("create moto log");
                let mut cmd = Command::new("moto_server");
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().expect("clone log"))
                    .stderr(log_file);
                #[cfg(target_os = "linux")]
                process_guard::kill_with_parent(&mut cmd);
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot run moto_server ({e}); install it with `pip install 'moto[server]'`")));
                        return;
                    }
                };
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let deadline = Instant::now() + Duration::from_secs(60);
                let ready = loop {
                    if let Ok(Some(status)) = child.try_wait() {
                        break Err(format!("moto_server exited ({status}) before it answered"));
                    }
                    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                        break Ok(());
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        break Err("moto_server did not answer within 60s".into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                if ready.is_err() {
                    let _ = child.wait();
                    let _ = tx.send(ready);
                    return;
                }
                // A normal exit kills and reaps moto at once; PR_SET_PDEATHSIG covers any other end.
                *MOTO_CHILD.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                #[cfg(target_os = "linux")]
                process_guard::at_exit(stop_moto);
                let _ = tx.send(ready);
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the moto thread");
        match rx.recv() {
            Ok(Ok(())) => format!("http://127.0.0.1:{port}"),
            Ok(Err(why)) => panic!("{why}\nmoto_server log ({}):\n{}", log.display(), std::fs::read_to_string(&log).unwrap_or_default()),
            Err(_) => panic!("the moto thread died"),
        }
    })
}

/// The tests' own Secrets Manager client (the real SDK) against moto.
struct Secrets {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_secretsmanager::Client,
}

impl Secrets {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        // moto speaks plain http: the SDK only needs a client, ddsky's own kind (no TLS is made).
        let http = aws_smithy_http_client::Builder::new().build_http();
        let conf = aws_sdk_secretsmanager::Config::builder()
            .http_client(http)
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto())
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "ddsky-tests",
            ))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(conf);
        Secrets { rt, client }
    }

    fn create_text(&self, id: &str, value: &str) {
        self.rt
            .block_on(
                self.client
                    .create_secret()
                    .name(id)
                    .secret_string(value)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("create {id}: {e:?}"));
    }

    fn create_binary(&self, id: &str, value: &[u8]) {
        self.rt
            .block_on(
                self.client
                    .create_secret()
                    .name(id)
                    .secret_binary(Blob::new(value))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("create {id}: {e:?}"));
    }

    /// A new current version, as a rotation leaves it.
    fn put_text(&self, id: &str, value: &str) {
        self.rt
            .block_on(
                self.client
                    .put_secret_value()
                    .secret_id(id)
                    .secret_string(value)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("put {id}: {e:?}"));
    }
}

/// A loopback port that accepts connections and never answers (a black-holed route, in effect).
struct HangingEndpoint {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HangingEndpoint {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            // Read what arrives (so the client is not blocked on a full buffer), say nothing.
                            let _ = stream.set_nonblocking(true);
                            let mut buf = [0u8; 4096];
                            let _ = stream.read(&mut buf);
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        HangingEndpoint {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HangingEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback URL on which nothing listens (connection refused).
fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// ddsky with the AWS path

/// `ddsky` without DD_API_KEY, Secrets Manager at `endpoint`, everything logged (RUST_LOG=trace) so
/// the leak scans see all of it.
fn ddsky(s: &Scope, endpoint: &str) -> Command {
    let mut cmd = s.ddsky();
    cmd.env_remove("DD_API_KEY")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
        .env("RUST_LOG", "trace");
    cmd
}

/// `ddsky up` on the scope's ports and run dir, the key from `secret_id` at `endpoint`.
fn up(s: &Scope, endpoint: &str, secret_id: &str) -> Command {
    let mut cmd = ddsky(s, endpoint);
    cmd.args([
        "up",
        "--image",
        agent_image(),
        "--timeout",
        "60s",
        "--expect",
        "none-such",
        "--secret-id",
        secret_id,
    ])
    .args([
        "--secret-timeout",
        &format!("{}s", SECRET_TIMEOUT.as_secs()),
    ])
    .args(s.port_args())
    .args(s.agent_args())
    .arg("--run-dir")
    .arg(s.run_dir.path());
    cmd
}

fn secret_id(s: &Scope, what: &str) -> String {
    format!("{}/datadog/{what}", s.prefix)
}

fn ending(key: &str) -> &str {
    &key[key.len() - 5..]
}

/// No container of this scope exists.
fn assert_nothing_created(s: &Scope) {
    assert!(inspect(&s.agent).is_none(), "no agent container");
    let any = docker(&["ps", "-aq", "--filter", &format!("name=^/?{}", s.prefix)]);
    assert_eq!(any.stdout.trim(), "", "no container of this test exists");
}

/// A skip: exit 0, one line on stdout naming every source, nothing created, within the secret timeout.
fn assert_skipped(s: &Scope, run: &Run, secrets: &[&str]) -> String {
    run.expect_code(0).assert_no_secret(secrets);
    assert!(
        run.elapsed < SECRET_TIMEOUT + SLACK,
        "took {:?}, more than --secret-timeout {SECRET_TIMEOUT:?} + {SLACK:?}\n{run}",
        run.elapsed
    );
    let line = run.stdout.trim_end();
    assert_eq!(line.lines().count(), 1, "one line on stdout:\n{run}");
    assert!(
        line.starts_with("monitoring skipped, nothing created"),
        "{run}"
    );
    assert!(
        line.contains("DD_API_KEY unset; secret "),
        "one reason per source: {run}"
    );
    assert_nothing_created(s);
    line.to_owned()
}

/// The whole life of an agent whose key comes from a secret: dry run, up, status, down, each scanned
/// for the secret at RUST_LOG=trace.
fn full_cycle_from_secret(s: &Scope, id: &str, key: &str, secrets: &[&str]) {
    let m = moto();
    let dry = run(up(s, m, id).args(["--dry-run", "--format", "json"]));
    dry.expect_code(0).assert_no_secret(secrets);
    let plan = dry.json();
    assert_eq!(plan["action"], "create", "{dry}");
    assert_eq!(
        plan["api_key"]["source"],
        format!("aws-secrets-manager:{id}"),
        "{dry}"
    );
    assert_eq!(plan["api_key"]["ending"], ending(key), "{dry}");
    assert!(inspect(&s.agent).is_none(), "a dry run creates nothing");

    let started = run(up(s, m, id).args(["--format", "json"]));
    started.expect_code(0).assert_no_secret(secrets);
    let summary = started.json();
    assert_eq!(summary["action"], "create", "{started}");
    assert_eq!(summary["healthy"], true, "{started}");
    assert_eq!(
        summary["api_key"]["source"],
        format!("aws-secrets-manager:{id}")
    );
    assert_eq!(summary["api_key"]["ending"], ending(key));

    let c = inspect(&s.agent).expect("the agent container exists");
    assert_eq!(c["State"]["Running"], true);
    let env = env_of(&c);
    assert!(
        env.contains(&format!("DD_API_KEY={key}")),
        "the agent got the key from the secret"
    );
    assert_eq!(
        env.iter().filter(|e| e.starts_with("DD_API_KEY=")).count(),
        1
    );

    // Text output too: it names the source and the ending only.
    let again = run(&mut up(s, m, id));
    again.expect_code(0).assert_no_secret(secrets);
    assert!(
        again.stdout.contains(&format!(
            "api key: from aws-secrets-manager:{id}, ending {}",
            ending(key)
        )),
        "{again}"
    );

    for args in [&["status"][..], &["status", "--format", "json"], &["down"]] {
        let out = run(ddsky(s, m).args(args));
        out.expect_code(0).assert_no_secret(secrets);
    }
    assert!(inspect(&s.agent).is_none(), "down removed the agent");
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn the_env_key_wins_over_the_secret() {
    let s = Scope::new("envwins");
    let secrets = Secrets::new();
    let id = secret_id(&s, "api-key");
    secrets.create_text(&id, OTHER_KEY);

    let dry =
        run(up(&s, moto(), &id)
            .env("DD_API_KEY", KEY)
            .args(["--dry-run", "--format", "json"]));
    dry.expect_code(0).assert_no_secret(&[]);
    assert_eq!(dry.json()["api_key"]["source"], "env", "{dry}");
    assert_eq!(dry.json()["api_key"]["ending"], ending(KEY));

    // Surrounding whitespace is trimmed; the env key is the one the agent gets.
    let started = run(up(&s, moto(), &id)
        .env("DD_API_KEY", format!("  {KEY}\n"))
        .args(["--format", "json"]));
    started.expect_code(0).assert_no_secret(&[]);
    assert_eq!(started.json()["api_key"]["source"], "env");
    let env = env_of(&inspect(&s.agent).expect("agent"));
    assert!(
        env.contains(&format!("DD_API_KEY={KEY}")),
        "the env key is used"
    );
    assert!(
        !env.iter().any(|e| e.contains(OTHER_KEY)),
        "the secret is not used"
    );

    // With DD_API_KEY set AWS is not asked at all: a hanging endpoint costs nothing.
    let hanging = HangingEndpoint::start();
    // Asking would take the whole 120 s; not asking takes a fraction of the generous 60 s bound.
    let fast = run(up(&s, &hanging.url, &id).env("DD_API_KEY", KEY).args([
        "--secret-timeout",
        "120s",
        "--dry-run",
        "--format",
        "json",
    ]));
    fast.expect_code(0).assert_no_secret(&[]);
    assert_eq!(fast.json()["api_key"]["source"], "env");
    assert!(
        fast.elapsed < Duration::from_secs(60),
        "AWS was asked although DD_API_KEY is set: {:?}",
        fast.elapsed
    );

    // An empty DD_API_KEY counts as unset: the secret is used.
    let empty =
        run(up(&s, moto(), &id)
            .env("DD_API_KEY", "  ")
            .args(["--dry-run", "--format", "json"]));
    empty.expect_code(0).assert_no_secret(&[]);
    assert_eq!(
        empty.json()["api_key"]["source"],
        format!("aws-secrets-manager:{id}"),
        "{empty}"
    );
    assert_eq!(empty.json()["api_key"]["ending"], ending(OTHER_KEY));
}

#[test]
fn a_plain_string_secret_gives_the_key() {
    let s = Scope::new("plain");
    let id = secret_id(&s, "api-key");
    Secrets::new().create_text(&id, KEY);
    full_cycle_from_secret(&s, &id, KEY, &[]);
}

#[test]
fn a_json_secret_gives_its_api_key_field() {
    let s = Scope::new("jsonapiKey");
    let id = secret_id(&s, "partner");
    // AWS's Datadog partner secret.
    let value = format!(
        r#"{{"apiKey": "{OTHER_KEY}", "apiKeyId": "2f1e6c4d-0000-4000-8000-000000000000"}}"#
    );
    Secrets::new().create_text(&id, &value);
    full_cycle_from_secret(&s, &id, OTHER_KEY, &[&value]);
}

#[test]
fn a_json_secret_gives_its_api_key_snake_case_field() {
    let s = Scope::new("jsonapi_key");
    let id = secret_id(&s, "by-hand");
    let value = format!(r#"{{"site": "datadoghq.com", "api_key": "{KEY}"}}"#);
    Secrets::new().create_text(&id, &value);
    full_cycle_from_secret(&s, &id, KEY, &[&value]);
}

#[test]
fn a_binary_secret_gives_the_key() {
    let s = Scope::new("binary");
    let id = secret_id(&s, "binary");
    Secrets::new().create_binary(&id, format!("{OTHER_KEY}\n").as_bytes());
    full_cycle_from_secret(&s, &id, OTHER_KEY, &[]);
}

#[test]
fn a_missing_secret_skips_and_says_why() {
    let s = Scope::new("missing");
    let id = secret_id(&s, "no-such-secret");
    let out = run(&mut up(&s, moto(), &id));
    let line = assert_skipped(&s, &out, &[]);
    assert!(
        line.contains(&format!(
            "secret {id} in us-east-1: ResourceNotFoundException"
        )),
        "{out}"
    );

    // The same in JSON: action skip, one reason per source.
    let json = run(up(&s, moto(), &id).args(["--format", "json"]));
    json.expect_code(0).assert_no_secret(&[]);
    let plan = json.json();
    assert_eq!(plan["action"], "skip");
    assert_eq!(plan["api_key"], serde_json::Value::Null);
    let reasons = plan["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 2, "{json}");
    assert_eq!(reasons[0], "DD_API_KEY unset");
    assert!(
        reasons[1]
            .as_str()
            .unwrap()
            .contains("ResourceNotFoundException"),
        "{json}"
    );
    assert_nothing_created(&s);

    // A dry run skips the same way.
    let dry = run(up(&s, moto(), &id).arg("--dry-run"));
    assert!(
        assert_skipped(&s, &dry, &[]).contains("ResourceNotFoundException"),
        "{dry}"
    );
}

#[test]
fn an_unreachable_endpoint_skips_and_says_why() {
    let s = Scope::new("unreachable");
    let endpoint = closed_endpoint();
    let out = run(&mut up(&s, &endpoint, "datadog/api-key"));
    let line = assert_skipped(&s, &out, &[]);
    assert!(
        line.contains(
            "secret datadog/api-key in us-east-1: cannot reach the Secrets Manager endpoint"
        ),
        "{out}"
    );
}

#[test]
fn a_hanging_endpoint_skips_within_the_secret_timeout() {
    let s = Scope::new("hanging");
    let hanging = HangingEndpoint::start();
    let out = run(up(&s, &hanging.url, "datadog/api-key")
        .args(["--secret-timeout", &format!("{}s", HANG_TIMEOUT.as_secs())]));
    let line = assert_skipped(&s, &out, &[]);
    assert!(
        out.elapsed >= HANG_TIMEOUT - Duration::from_millis(200),
        "it did wait for the answer: {:?}",
        out.elapsed
    );
    // The skip names the timeout it was given, not the 30 s the other tests give.
    assert!(line.contains("no answer within 3s"), "{out}");
}

#[test]
fn a_malformed_json_secret_skips_and_says_why() {
    let s = Scope::new("malformed");
    let id = secret_id(&s, "broken");
    let value = format!(r#"{{"apiKey": "{KEY}""#);
    Secrets::new().create_text(&id, &value);
    let out = run(&mut up(&s, moto(), &id));
    let line = assert_skipped(&s, &out, &[&value]);
    assert!(
        line.contains(&format!(
            "secret {id} in us-east-1: the secret is JSON but not valid JSON"
        )),
        "{out}"
    );

    // JSON without a key field is reported too.
    let id2 = secret_id(&s, "no-field");
    Secrets::new().create_text(&id2, r#"{"apiKeyId": "2f1e6c4d"}"#);
    let out = run(&mut up(&s, moto(), &id2));
    assert!(
        assert_skipped(&s, &out, &[]).contains("no apiKey, api_key or DD_API_KEY string field"),
        "{out}"
    );
}

#[test]
fn require_key_turns_a_skip_into_exit_1() {
    let s = Scope::new("requirekey");
    let id = secret_id(&s, "no-such-secret");
    let out = run(up(&s, moto(), &id).arg("--require-key"));
    out.expect_code(1).assert_no_secret(&[]);
    assert!(out.elapsed < SECRET_TIMEOUT + SLACK, "{:?}", out.elapsed);
    assert!(
        out.stderr
            .contains("no Datadog API key and --require-key was given"),
        "{out}"
    );
    assert!(out.stderr.contains("ResourceNotFoundException"), "{out}");
    assert_nothing_created(&s);

    // The environment variable turns it on as well; a key found makes it moot.
    let env = run(up(&s, &closed_endpoint(), &id).env("DDSKY_REQUIRE_KEY", "true"));
    env.expect_code(1).assert_no_secret(&[]);
    assert!(env.stderr.contains("cannot reach"), "{env}");
    Secrets::new().create_text(&id, KEY);
    let found = run(up(&s, moto(), &id).args(["--require-key", "--dry-run", "--format", "json"]));
    found.expect_code(0).assert_no_secret(&[]);
    assert_eq!(
        found.json()["api_key"]["source"],
        format!("aws-secrets-manager:{id}")
    );
}

#[test]
fn a_wrong_shaped_key_is_refused_with_the_hint() {
    let s = Scope::new("wrongshape");
    let secrets = Secrets::new();

    // An application key (40 characters) in the secret.
    let app = secret_id(&s, "app-key");
    secrets.create_text(&app, APP_KEY);
    let out = run(&mut up(&s, moto(), &app));
    let line = assert_skipped(&s, &out, &[APP_KEY]);
    assert!(line.contains(&format!("secret {app} in us-east-1: the key is not used: it is 40 characters long, like an application key")), "{out}");

    // The key pasted with its quotes.
    let quoted = secret_id(&s, "quoted");
    let value = format!("\"{KEY}\"");
    secrets.create_text(&quoted, &value);
    let out = run(&mut up(&s, moto(), &quoted));
    let line = assert_skipped(&s, &out, &[&value]);
    assert!(
        line.contains("the key is not used: it contains quotes; store the bare key without quotes"),
        "{out}"
    );

    // A wrong-shaped DD_API_KEY is refused and the chain goes on to the secret.
    let good = secret_id(&s, "good");
    secrets.create_text(&good, KEY);
    let out = run(up(&s, moto(), &good)
        .env("DD_API_KEY", APP_KEY)
        .args(["--format", "json"]));
    out.expect_code(0).assert_no_secret(&[APP_KEY]);
    assert_eq!(
        out.json()["api_key"]["source"],
        format!("aws-secrets-manager:{good}"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("DD_API_KEY is not used: it is 40 characters long, like an application key"),
        "{out}"
    );
    let env = env_of(&inspect(&s.agent).expect("agent"));
    assert!(
        env.contains(&format!("DD_API_KEY={KEY}")),
        "the secret's key is used"
    );
    assert!(
        !env.iter().any(|e| e.contains(APP_KEY)),
        "the application key is not used"
    );
}

#[test]
fn a_rotated_secret_recreates_the_agent() {
    let s = Scope::new("rotated");
    let secrets = Secrets::new();
    let id = secret_id(&s, "api-key");
    secrets.create_text(&id, KEY);

    let first = run(up(&s, moto(), &id).args(["--format", "json"]));
    first.expect_code(0).assert_no_secret(&[]);
    assert_eq!(first.json()["action"], "create", "{first}");
    let first_id = inspect(&s.agent).expect("agent")["Id"]
        .as_str()
        .unwrap()
        .to_owned();

    let same = run(up(&s, moto(), &id).args(["--format", "json"]));
    same.expect_code(0).assert_no_secret(&[]);
    assert_eq!(
        same.json()["action"],
        "none",
        "the same key changes nothing: {same}"
    );

    secrets.put_text(&id, OTHER_KEY);
    let dry = run(up(&s, moto(), &id).args(["--dry-run", "--format", "json"]));
    dry.expect_code(0).assert_no_secret(&[]);
    assert_eq!(dry.json()["action"], "recreate", "{dry}");
    assert_eq!(dry.json()["api_key"]["ending"], ending(OTHER_KEY));

    let rotated = run(up(&s, moto(), &id).args(["--format", "json"]));
    rotated.expect_code(0).assert_no_secret(&[]);
    assert_eq!(rotated.json()["action"], "recreate", "{rotated}");
    assert_eq!(rotated.json()["api_key"]["ending"], ending(OTHER_KEY));
    let c = inspect(&s.agent).expect("agent");
    assert_ne!(c["Id"], first_id.as_str(), "a new container");
    let env = env_of(&c);
    assert!(
        env.contains(&format!("DD_API_KEY={OTHER_KEY}")),
        "the new key"
    );
    assert!(!env.iter().any(|e| e.contains(KEY)), "not the old key");
    let all = docker(&["ps", "-aq", "--filter", &format!("name=^/{}$", s.agent)]);
    assert_eq!(all.stdout.lines().count(), 1, "the old agent is gone");

    let down = run(ddsky(&s, moto()).arg("down"));
    down.expect_code(0).assert_no_secret(&[]);
}

/// Standard base64, as Secrets Manager's JSON carries SecretBinary.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn the_key_stays_hidden_even_when_the_sdk_may_log_sensitive_bodies() {
    // LOG_SENSITIVE_BODIES=true makes the AWS SDK trace-log the GetSecretValue response body, which
    // holds the secret; it must not reach ddsky's output.
    let s = Scope::new("sensitivebodies");
    let secrets = Secrets::new();
    let plain = secret_id(&s, "plain");
    secrets.create_text(&plain, KEY);
    let json = secret_id(&s, "json");
    let json_value = format!(r#"{{"apiKey": "{OTHER_KEY}"}}"#);
    secrets.create_text(&json, &json_value);
    let binary = secret_id(&s, "binary");
    secrets.create_binary(&binary, OTHER_KEY.as_bytes());
    let encoded = base64(OTHER_KEY.as_bytes());
    assert_eq!(base64(b"ab"), "YWI=");

    for (id, key) in [(&plain, KEY), (&json, OTHER_KEY), (&binary, OTHER_KEY)] {
        let out = run(up(&s, moto(), id)
            .env("LOG_SENSITIVE_BODIES", "true")
            .args(["--dry-run", "--format", "json"]));
        out.expect_code(0)
            .assert_no_secret(&[&json_value, &encoded]);
        assert_eq!(
            out.json()["api_key"]["source"],
            format!("aws-secrets-manager:{id}"),
            "{out}"
        );
        assert_eq!(out.json()["api_key"]["ending"], ending(key));
        assert!(
            out.stderr.contains("LOG_SENSITIVE_BODIES is set"),
            "the user is told why the SDK is quiet: {out}"
        );
    }
}
