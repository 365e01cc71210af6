//! Pulls from a real registry, concurrent runs and signals, against the real daemon.

use crate::common::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's distribution registry (2.8) on a loopback port, with its storage in a temp dir.
struct Registry {
    child: Child,
    port: u16,
    /// Its storage; removed on drop, after the registry is killed.
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let port = free_port();
        let dir = scratch_dir("registry");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n", dir.path().join("data").display()),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "docker-registry is installed (apt-get install docker-registry; .ci/run does it)",
            );
        let up = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "registry did not start");
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_missing_image_is_pulled_from_the_registry_then_used() {
    let s = Scope::new("pull");
    let registry = Registry::start();
    let image = format!("127.0.0.1:{}/datadog/agent:7", registry.port);
    docker(&["tag", agent_image(), &image]).expect_code(0);
    docker(&["push", &image]).expect_code(0);
    docker(&["rmi", &image]).expect_code(0);

    let up = run(s.up().args([
        "--image",
        &image,
        "--expect",
        "none-such",
        "--format",
        "json",
    ]));
    up.expect_code(0).assert_no_secret(&[]);
    assert_eq!(up.json()["action"], "create");
    assert!(
        up.stderr.contains(&format!("pulling {image}")),
        "plain progress lines off a terminal: {up}"
    );
    assert_eq!(
        inspect(&s.agent).unwrap()["Config"]["Image"],
        image.as_str()
    );

    // --pull always on an unchanged image keeps the container.
    let again = run(s.up().args([
        "--image",
        &image,
        "--expect",
        "none-such",
        "--pull",
        "always",
        "--format",
        "json",
    ]));
    again.expect_code(0);
    assert_eq!(again.json()["action"], "none");

    run(s.ddsky().arg("down")).expect_code(0);
    docker(&["rmi", &image]);
}

/// How a [`FakeRegistry`] answers a manifest request.
#[derive(Clone, Copy)]
enum Answer {
    /// Docker Hub's anonymous rate limit: 429 with its error body.
    TooManyRequests,
    /// 500 Internal Server Error.
    ServerError,
    /// Accepts the connection and never answers.
    Never,
}

/// A registry on a loopback port that answers `GET /v2/` like a registry and every manifest
/// request with its [`Answer`]; counts the manifest requests it got.
struct FakeRegistry {
    port: u16,
    manifests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeRegistry {
    fn start(answer: Answer) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let manifests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = manifests.clone();
        std::thread::spawn(move || {
            let mut held = vec![];
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let counter = counter.clone();
                let keep = conn.try_clone().ok();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn);
                    loop {
                        let mut request = String::new();
                        if reader.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        // Headers up to the blank line (no request here has a body).
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line.trim().is_empty() {
                                break;
                            }
                        }
                        let path = request.split_whitespace().nth(1).unwrap_or("");
                        let head = request.starts_with("HEAD");
                        let (status, body) = if !request.contains("HTTP/1.") {
                            // A TLS hello: Docker tries https first, then plain http on loopback.
                            ("400 Bad Request", String::new())
                        } else if path == "/v2/" || path == "/v2" {
                            ("200 OK", "{}".to_owned())
                        } else if path.contains("/manifests/") {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            match answer {
                                Answer::TooManyRequests => ("429 Too Many Requests", r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits"}]}"#.to_owned()),
                                Answer::ServerError => ("500 Internal Server Error", "oops".to_owned()),
                                Answer::Never => {
                                    std::thread::sleep(Duration::from_secs(600));
                                    return;
                                }
                            }
                        } else {
                            ("404 Not Found", r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#.to_owned())
                        };
                        let response = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: {}\r\n\r\n{}",
                            body.len(),
                            if head { "" } else { body.as_str() }
                        );
                        if reader.get_mut().write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
                held.push(keep);
            }
        });
        FakeRegistry { port, manifests }
    }

    fn image(&self) -> String {
        format!("127.0.0.1:{}/datadog/agent:7", self.port)
    }

    fn asked(&self) -> usize {
        self.manifests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The lines of `stderr` that say a registry refused.
fn refusal_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("registry 127.0.0.1:") && l.contains(" refused "))
        .collect()
}

/// A 64-node launch behind one NAT address: Docker Hub answers 429, another mirror 500, a third
/// never answers; the good registry last in the list gives the agent. One line per refusal; a
/// second `up` is a no-op; status names the reference the agent runs.
#[test]
fn refused_pulls_fall_back_to_the_next_registry_and_the_agent_runs() {
    let s = Scope::new("fallback");
    let registry = Registry::start();
    let good = format!("127.0.0.1:{}/datadog/agent:7", registry.port);
    docker(&["tag", agent_image(), &good]).expect_code(0);
    docker(&["push", &good]).expect_code(0);
    docker(&["rmi", &good]).expect_code(0);
    let limited = FakeRegistry::start(Answer::TooManyRequests);
    let broken = FakeRegistry::start(Answer::ServerError);
    let silent = FakeRegistry::start(Answer::Never);
    let list = [
        limited.image(),
        broken.image(),
        silent.image(),
        good.clone(),
    ]
    .join(",");
    let up = |args: &[&str]| {
        run(s
            .up()
            .args([
                "--image",
                &list,
                "--pull-timeout",
                "45s",
                "--expect",
                "none-such",
            ])
            .args(["--format", "json"])
            .args(args))
    };

    let first = up(&[]);
    first.expect_code(0).assert_no_secret(&[]);
    assert_eq!(first.json()["action"], "create", "{first}");
    assert_eq!(first.json()["image"], good.as_str(), "{first}");
    let refusals = refusal_lines(&first.stderr);
    assert_eq!(refusals.len(), 3, "one line per refusal: {first}");
    for (registry, why) in [
        (&limited, "rate limited (toomanyrequests"),
        (&broken, "server error"),
        (&silent, "timed out (no progress for 45s)"),
    ] {
        let line = refusals
            .iter()
            .find(|l| l.contains(&format!("registry 127.0.0.1:{} ", registry.port)))
            .unwrap_or_else(|| panic!("a line for {}: {first}", registry.image()));
        assert!(line.contains(why), "{why:?} in {line}");
        assert!(
            registry.asked() > 0,
            "the daemon asked {}",
            registry.image()
        );
    }
    assert_eq!(inspect(&s.agent).unwrap()["Config"]["Image"], good.as_str());
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);

    // The agent from the good mirror is the agent the list asks for: nothing to do, nothing pulled.
    let second = up(&[]);
    second.expect_code(0);
    assert_eq!(second.json()["action"], "none", "{second}");
    assert!(refusal_lines(&second.stderr).is_empty(), "{second}");

    let status = run(s.ddsky().args(["status", "--format", "json"]));
    status.expect_code(0);
    assert_eq!(status.json()["agent"]["image"], good.as_str(), "{status}");

    run(s.ddsky().arg("down")).expect_code(0);
    docker(&["rmi", &good]);
}

#[test]
fn every_registry_refusing_fails_naming_each_answer_and_creates_nothing() {
    let s = Scope::new("allrefuse");
    let limited = FakeRegistry::start(Answer::TooManyRequests);
    let broken = FakeRegistry::start(Answer::ServerError);
    let list = [limited.image(), broken.image()].join(",");
    let out = run(s.up().args(["--image", &list, "--expect", "none-such"]));
    out.expect_code(1).assert_no_secret(&[]);
    assert_eq!(refusal_lines(&out.stderr).len(), 2, "{out}");
    let last = out
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    for want in [
        format!(
            "127.0.0.1:{} ({}): rate limited",
            limited.port,
            limited.image()
        ),
        format!(
            "127.0.0.1:{} ({}): server error",
            broken.port,
            broken.image()
        ),
        "nothing was created".to_owned(),
    ] {
        assert!(last.contains(&want), "{want:?} in the error: {out}");
    }
    assert!(inspect(&s.agent).is_none(), "nothing created");
}

/// Starts `n` `ddsky up` at once and checks that every one succeeds.
fn ups_at_once(s: &Scope, n: usize, args: &[&str]) {
    let children: Vec<Child> = (0..n)
        .map(|_| {
            s.up()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn concurrent_ups_end_with_exactly_one_agent_and_all_succeed() {
    let s = Scope::new("concurrent");
    ups_at_once(&s, 8, &["--expect", "none-such"]);
    let all = docker(&["ps", "-aq", "--filter", &format!("name=^/{}$", s.agent)]);
    assert_eq!(all.stdout.lines().count(), 1, "exactly one agent");
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);

    // A changed spec raced by several ups still ends with one, up-to-date agent.
    ups_at_once(&s, 4, &["--expect", "none-such", "--tag", "round:two"]);
    let all = docker(&["ps", "-aq", "--filter", &format!("name=^/{}$", s.agent)]);
    assert_eq!(all.stdout.lines().count(), 1);
    assert!(env_of(&inspect(&s.agent).unwrap())
        .iter()
        .any(|e| e.ends_with("round:two")));
}

#[test]
fn up_racing_down_ends_fully_there_or_fully_gone() {
    let s = Scope::new("updown");
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    let up = s
        .up()
        .args(["--expect", "none-such", "--tag", "x:y"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let down = s
        .ddsky()
        .args(["down", "--timeout", "5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = wait_within(up, Duration::from_secs(150));
    let down = wait_within(down, Duration::from_secs(150));
    // Either may lose the race, but each ends as ddsky ends: a code it documents (never a panic,
    // a usage error or a hang), and a reason on stderr when it is not 0.
    for (what, out) in [("up", &up), ("down", &down)] {
        assert!(
            [0, 1, 3, 5, 6].contains(&out.code),
            "{what} ended with {}: {out}",
            out.code
        );
        assert!(!out.stderr.contains("panicked"), "{what}: {out}");
        if out.code != 0 {
            assert!(!out.stderr.trim().is_empty(), "{what} says why: {out}");
        }
    }
    match inspect(&s.agent) {
        None => {
            // Fully gone: nothing of the scope's is left, and ddsky finds no agent.
            let left = docker(&["ps", "-aq", "--filter", &format!("name=^/{}", s.prefix)]);
            assert!(left.stdout.trim().is_empty(), "left behind: {left}");
            run(s.ddsky().arg("status")).expect_code(5);
        }
        Some(c) => {
            // Whatever is left is a complete, ddsky-managed agent that `up` can settle.
            assert_eq!(c["Config"]["Labels"]["io.ddsky.managed-by"], "ddsky");
            run(s.up().args(["--expect", "none-such", "--tag", "x:y"])).expect_code(0);
            assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);
        }
    }
}

/// A signal ends ddsky at once rather than after the 60 s `--timeout` it was waiting out. The bound
/// is generous for a loaded 2-core machine; benches/bench.sh measures the real figure.
const PROMPTLY: Duration = Duration::from_secs(10);

fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
}

fn wait_exit(mut child: Child, within: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = child.try_wait().unwrap() {
            // A signal that lands before ddsky installed its handlers ends it by the default action;
            // a shell reports that as 128 + the signal, like ddsky's own 130/143.
            use std::os::unix::process::ExitStatusExt;
            return (
                status.code().or(status.signal().map(|s| 128 + s)),
                start.elapsed(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    (None, start.elapsed())
}

#[test]
fn sigint_and_sigterm_while_waiting_exit_130_and_143_promptly_leaving_a_whole_agent() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let s = Scope::new(&format!("sig{sig}"));
        // The signal comes once `up` has asked the agent for its health: certainly while waiting.
        let waiting = s.watch_waiting_up(&[]);
        assert!(
            waiting.wait_until_asked(1, Duration::from_secs(60)),
            "up never asked the agent"
        );
        Command::new("kill")
            .args([&format!("-{sig}"), &waiting.id().to_string()])
            .status()
            .unwrap();
        let signalled = Instant::now();
        let out = waiting.finish(Duration::from_secs(30));
        let took = signalled.elapsed();
        assert_eq!(out.code, code, "SIG{sig}: {out}");
        assert!(took < PROMPTLY, "SIG{sig} took {took:?}");
        let c = inspect(&s.agent).expect("the agent was fully created before the signal");
        assert_eq!(c["State"]["Running"], true);
    }
}

#[test]
fn a_signal_at_any_moment_of_up_leaves_no_half_created_container() {
    // Sweep the signal across key lookup, connect, create, start and the health wait.
    for (i, delay_ms) in [0u64, 40, 80, 120, 160, 240, 400].into_iter().enumerate() {
        let sig = if i % 2 == 0 { "INT" } else { "TERM" };
        let s = Scope::new(&format!("sigsweep{i}"));
        let child = s.spawn_waiting_up(&[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        signal(&child, sig);
        let (status, took) = wait_exit(child, Duration::from_secs(30));
        assert!(
            matches!(status, Some(130 | 143)),
            "SIG{sig} after {delay_ms} ms: {status:?}"
        );
        assert!(
            took < PROMPTLY,
            "SIG{sig} after {delay_ms} ms took {took:?}"
        );
        if let Some(c) = inspect(&s.agent) {
            assert_eq!(
                c["State"]["Status"], "running",
                "after {delay_ms} ms: a container exists only whole and started"
            );
        }
    }
}

/// Started with SIGINT ignored (a script's `ddsky up &` without job control), ddsky keeps ignoring
/// it, as a shell's background job does; SIGTERM still ends it with 143.
#[test]
fn an_inherited_ignored_sigint_stays_ignored_and_sigterm_still_ends_up() {
    let s = Scope::new("sigign");
    let mut cmd = s.up();
    // The agent's first health ping is held: `up` waits for as long as the test needs.
    cmd.arg("-v")
        .args(s.hold("STANDIN_HEALTH_GATE").agent_env())
        .args(["--expect", "none-such"]);
    ignoring_sigint(&mut cmd);
    let waiting = Watched::spawn(&mut cmd);
    assert!(
        waiting.wait_until_asked(1, Duration::from_secs(60)),
        "up never asked the agent"
    );
    let kill = |sig: &str| {
        Command::new("kill")
            .args([&format!("-{sig}"), &waiting.id().to_string()])
            .status()
            .unwrap()
    };
    kill("INT");
    // It goes on waiting for health: it asks the agent twice more after the SIGINT (its debug
    // line after each question), however long that takes.
    let asked = waiting.count_in_stderr("agent not healthy yet")
        + waiting.count_in_stderr("agent health could not run");
    assert!(
        waiting.wait_until_asked(asked + 2, Duration::from_secs(90)),
        "an inherited SIG_IGN for SIGINT is kept: up goes on asking"
    );
    kill("TERM");
    let out = waiting.finish(Duration::from_secs(30));
    assert_eq!(out.code, 143, "{out}");
    assert_eq!(inspect(&s.agent).unwrap()["State"]["Running"], true);
}

#[test]
fn sigint_and_sigterm_during_a_pull_exit_130_and_143_and_create_nothing() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        signal_during_a_pull(sig, code);
    }
}

fn signal_during_a_pull(sig: &str, code: i32) {
    let s = Scope::new(&format!("sigpull{sig}"));
    // A "registry" that accepts connections and never answers: the pull hangs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = vec![];
        for conn in listener.incoming().take(16) {
            held.push(conn);
        }
    });
    let image = format!("127.0.0.1:{port}/datadog/agent:7");
    let pulling = Watched::spawn(s.up().args(["--image", &image, "--expect", "none-such"]));
    // The signal comes once ddsky says it is pulling (the pull then hangs for good).
    assert!(
        pulling.wait_for_stderr(
            &[&format!("pulling 127.0.0.1:{port}/")],
            Duration::from_secs(60)
        ),
        "up never began the pull"
    );
    Command::new("kill")
        .args([&format!("-{sig}"), &pulling.id().to_string()])
        .status()
        .unwrap();
    let signalled = Instant::now();
    let out = pulling.finish(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert_eq!(out.code, code, "SIG{sig}: {out}");
    assert!(took < PROMPTLY, "took {took:?}");
    assert!(inspect(&s.agent).is_none(), "nothing created");
}

#[test]
fn status_into_a_closed_pipe_is_not_an_error() {
    let s = Scope::new("pipe");
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    let bin = ddsky_bin();
    let out = run(Command::new("bash").args([
        "-c",
        &format!(
            "set -o pipefail; DDSKY_NAME={} {} status | true",
            s.agent,
            bin.display()
        ),
    ]));
    out.expect_code(0);
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("Broken pipe"),
        "{out}"
    );
}

/// The default image list follows the cloud SkyPilot reports (SKYPILOT_CLUSTER_INFO), Docker Hub
/// always last, and `up --dry-run` shows it, with which entry is present locally.
#[test]
fn the_default_image_list_follows_the_cloud_in_dry_run_with_docker_hub_last() {
    let s = Scope::new("imagelist");
    let first_of = |cloud: Option<&str>| {
        let mut cmd = s.ddsky();
        cmd.env("DD_API_KEY", KEY)
            .args(["up", "--dry-run", "--no-aws", "--format", "json"]);
        if let Some(cloud) = cloud {
            cmd.env(
                "SKYPILOT_CLUSTER_INFO",
                format!(r#"{{"cluster_name": "c", "cloud": "{cloud}", "region": "r"}}"#),
            );
        }
        let out = run(&mut cmd);
        out.expect_code(0).assert_no_secret(&[]);
        let report = out.json();
        let refs: Vec<String> = report["images"]
            .as_array()
            .unwrap_or_else(|| panic!("{out}"))
            .iter()
            .map(|e| {
                assert!(e["present"].is_boolean() || e["present"].is_null(), "{e}");
                e["reference"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            refs.last().map(String::as_str),
            Some("docker.io/datadog/agent:7"),
            "Docker Hub last: {refs:?}"
        );
        assert!(refs.iter().all(|r| r.ends_with(":7")), "{refs:?}");
        refs[0].clone()
    };
    assert_eq!(first_of(Some("AWS")), "public.ecr.aws/datadog/agent:7");
    assert_eq!(first_of(Some("GCP")), "gcr.io/datadoghq/agent:7");
    assert_eq!(first_of(Some("Azure")), "datadoghq.azurecr.io/agent:7");
    assert_eq!(first_of(None), "registry.datadoghq.com/agent:7");
}
