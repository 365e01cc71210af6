//! ddsky against an agent as slow, strict and picky as the real one (issue 11 B): the stand-in at its
//! real default timings (the auth-token second, then every component unhealthy until the first
//! health ping 15 s later, 300 ms of CPU per `agent` command), ports already taken on the host, a
//! daemon whose data root is not /var/lib/docker, an agent made by another ddsky version, and a
//! host whose NVIDIA driver Docker cannot use.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn no_container_named(name: &str) -> bool {
    inspect(name).is_none()
}

#[test]
fn up_waits_through_the_auth_token_second_and_15_s_of_fail_asking_less_than_once_a_second() {
    let s = Scope::new("realup");
    let job = s.name("job");
    s.run_job("job");
    let since = unix_now();
    let out = run(s
        .up_at_real_timing()
        .args(["--expect", &job, "--format", "json"]));
    out.expect_code(0).assert_no_secret(&[]);
    let report = out.json();
    assert_eq!(report["action"], "create");
    assert_eq!(report["healthy"], true, "{out}");
    assert_eq!(report["expected"][0]["discovered"], true, "{out}");
    // The stand-in, like the real agent, cannot pass `agent health` before its first 15 s ping:
    // `up` went through the auth-token second and the FAIL phase without giving up.
    assert!(out.elapsed >= Duration::from_secs(14), "{:?}", out.elapsed);
    let execs = execs_since(&s.agent, &since);
    let seconds = out.elapsed.as_secs_f64();
    assert!(
        (execs.len() as f64) < seconds,
        "{} agent commands in {seconds:.1} s (a 1-per-second poll would be {seconds:.0}): {execs:?}",
        execs.len()
    );
    assert!(
        execs.iter().all(|e| e.starts_with("agent ")),
        "only agent commands: {execs:?}"
    );
}

#[test]
fn status_wait_right_after_up_no_wait_exits_0_once_the_job_is_discovered() {
    let s = Scope::new("waitnowait");
    let job = s.name("job");
    s.run_job("job");
    // The auth-token phase is held until `status --wait` has asked the agent in it.
    let token_phase = s.hold("STANDIN_STARTUP_GATE");
    run(s
        .up_at_real_timing()
        .args(token_phase.agent_env())
        .args(["--no-wait", "--expect", &job]))
    .expect_code(0);
    // `-v`: its debug lines say when it has asked the agent (the claim below is about what it
    // reports, the lines at the default verbosity).
    let waiting = Watched::spawn(s.ddsky().args([
        "-v", "status", "--expect", &job, "--wait", "90s", "--format", "json",
    ]));
    // ddsky's first question fails on the missing auth token (the phase is held: it cannot have
    // ended); only then does the agent go on.
    assert!(
        waiting.wait_for_stderr(
            &["agent not healthy yet", "agent health could not run"],
            Duration::from_secs(60)
        ),
        "status --wait never asked the agent"
    );
    let in_token_phase = docker(&["exec", &s.agent, "agent", "health"]);
    assert!(
        in_token_phase.stderr.contains("unable to fetch auth token"),
        "still the auth-token phase: {in_token_phase}"
    );
    token_phase.release();
    let out = waiting.finish(Duration::from_secs(150));
    out.expect_code(0).assert_no_secret(&[]);
    let report = out.json();
    assert_eq!(report["expected"][0]["discovered"], true, "{out}");
    let reported: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim_start().starts_with("DEBUG"))
        .collect();
    assert!(
        reported.iter().all(|l| !l.contains("auth token")),
        "'not up yet' is waited through, not reported: {out}"
    );
}

#[test]
fn doctor_in_the_agents_first_seconds_warns_starting_skips_with_one_reason_and_exits_0() {
    let s = Scope::new("doctorstart");
    // An intake that accepts everything: only start-up may make doctor unhappy here.
    let intake = Intake::start(200, 202);
    // The first health ping is held for the whole test: both doctors look at an agent that is
    // starting (no auth token yet, or every component unhealthy), however slow the machine.
    let first_ping = s.hold("STANDIN_HEALTH_GATE");
    run(s.up_at_real_timing().args(first_ping.agent_env()).args([
        "--no-wait",
        "--expect",
        "none-such",
        "--dd-url",
        &intake.url(),
    ]))
    .expect_code(0);
    let mut args = vec!["doctor", "--expect", "none-such", "--format", "json"];
    let ports = s.port_args();
    args.extend(ports.iter().map(String::as_str));
    let out = run(s.ddsky().args(&args));
    out.assert_no_secret(&[]);
    let report = out.json();
    let health = doctor_check(&report, "agent health");
    assert_eq!(health["verdict"], "warn", "{report:#}");
    let evidence = health["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("starting: the container started "),
        "{evidence}"
    );
    assert!(
        evidence.contains("not answering yet") || evidence.contains("unhealthy: "),
        "{evidence}"
    );
    assert!(
        !evidence.ends_with("unhealthy: "),
        "never an empty list: {evidence}"
    );
    let checks = report["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["verdict"] == "fail").collect();
    assert!(
        failed.is_empty(),
        "nothing fails while starting: {failed:#?}"
    );
    out.expect_code(0);
    assert!(
        checks
            .iter()
            .filter(|c| c["evidence"].as_str().unwrap().contains("auth token"))
            .count()
            <= 1,
        "the agent's answer is said once: {report:#}"
    );
    // The text form says the same (on the scope's ports, as the JSON form).
    let mut args = vec!["doctor", "--expect", "none-such"];
    args.extend(ports.iter().map(String::as_str));
    let text = run(s.ddsky().args(&args));
    assert!(text.stdout.contains("[warn] agent health: "), "{text}");
    text.expect_code(0);
}

#[test]
fn doctor_sends_no_dogstatsd_datagram() {
    let s = Scope::new("doctornodsd");
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
    // Stand in for the agent's DogStatsD on a port of our own and watch what arrives.
    let dogstatsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = dogstatsd.local_addr().unwrap().port().to_string();
    let apm = s.apm_port.to_string();
    let out = run(s.ddsky().args([
        "doctor",
        "--expect",
        "none-such",
        "--format",
        "json",
        "--apm-port",
        &apm,
        "--dogstatsd-port",
        &port,
    ]));
    let report = out.json();
    let ports = doctor_check(&report, "logs and ports");
    assert!(
        ports["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("DogStatsD is bound on port {port}")),
        "{report:#}"
    );
    dogstatsd
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    match dogstatsd.recv(&mut buf) {
        Ok(n) => panic!(
            "doctor sent a DogStatsD datagram (a billable custom metric): {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
}

/// `up` at the real timings against an intake answering the key validation with `validate`
/// (None: a closed port); returns up's and then doctor's answer.
fn key_outcome(name: &str, validate: Option<u16>) -> (Scope, Run, Value) {
    let s = Scope::new(name);
    let intake = validate.map(|code| Intake::start(code, 202));
    let url = intake
        .as_ref()
        .map_or_else(|| format!("http://127.0.0.1:{}", free_port()), Intake::url);
    let up = run(s.up_at_real_timing().args([
        "--dd-url",
        &url,
        "--expect",
        "none-such",
        "--timeout",
        "45s",
    ]));
    let mut args = vec!["doctor", "--expect", "none-such", "--format", "json"];
    let ports = s.port_args();
    args.extend(ports.iter().map(String::as_str));
    let doctor = run(s.ddsky().args(&args)).json();
    (s, up, doctor)
}

#[test]
fn key_outcomes_200_403_and_an_unreachable_intake_give_valid_invalid_and_a_warning() {
    let valid = std::thread::spawn(|| key_outcome("key200", Some(200)));
    let invalid = std::thread::spawn(|| key_outcome("key403", Some(403)));
    let unreachable = std::thread::spawn(|| key_outcome("keynet", None));

    let (_s, up, doctor) = valid.join().unwrap();
    up.expect_code(0).assert_no_secret(&[]);
    assert_eq!(
        doctor_check(&doctor, "api key")["verdict"],
        "ok",
        "{doctor:#}"
    );

    let (_s, up, doctor) = invalid.join().unwrap();
    up.expect_code(3).assert_no_secret(&[]);
    assert!(
        up.stderr.contains("forwarder") && up.stderr.contains("API key"),
        "exit 3 names the forwarder and the key: {up}"
    );
    let key = doctor_check(&doctor, "api key");
    assert_eq!(key["verdict"], "fail", "{doctor:#}");
    assert!(
        key["evidence"].as_str().unwrap().contains("invalid"),
        "{key}"
    );

    let (_s, up, doctor) = unreachable.join().unwrap();
    up.expect_code(0).assert_no_secret(&[]);
    let key = doctor_check(&doctor, "api key");
    assert_eq!(
        key["verdict"], "warn",
        "assumed valid, not failed: {doctor:#}"
    );
    assert_eq!(
        doctor_check(&doctor, "agent health")["verdict"],
        "ok",
        "{doctor:#}"
    );
}

/// Holds `127.0.0.1:<port>` for the test, or finds it held already (then by someone else).
fn hold_tcp(port: u16) -> Option<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).ok()
}

#[test]
fn a_taken_command_port_5001_stops_up_before_it_creates_anything_and_doctor_names_it() {
    let s = Scope::holding("port5001", &[HostResource::DefaultCmdPort]);
    // The real default: no DD_CMD_PORT, so the agent would bind 5001 (held here, or by someone).
    let _held = hold_tcp(5001);
    let mut up = s.ddsky();
    up.env("DD_API_KEY", KEY)
        .args(["up", "--image", agent_image(), "--timeout", "30s"])
        .args(s.port_args());
    let out = run(&mut up);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("5001/tcp (the agent's command API) is taken"),
        "names the port: {out}"
    );
    assert!(
        out.stderr.contains("--network bridge") && out.stderr.contains("nothing was created"),
        "says what to do: {out}"
    );
    if _held.is_some() {
        assert!(
            out.stderr
                .contains(&format!("by process {}", std::process::id())),
            "names the holder: {out}"
        );
    }
    assert!(no_container_named(&s.agent), "nothing left behind");
    out.assert_no_secret(&[]);

    let mut args = vec!["doctor", "--format", "json"];
    let ports = s.port_args();
    args.extend(ports.iter().map(String::as_str));
    let doctor = run(s.ddsky().args(&args));
    let report = doctor.json();
    let c = doctor_check(&report, "host ports");
    assert_eq!(c["verdict"], "fail", "{report:#}");
    assert!(c["evidence"].as_str().unwrap().contains("5001/tcp"), "{c}");
}

#[test]
fn a_taken_apm_port_stops_up_before_it_creates_anything() {
    let s = Scope::new("port8126");
    let held = hold_tcp(s.apm_port).expect("the scope's APM port is free");
    let out = run(s.up().args(["--expect", "none-such"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}/tcp (APM) is taken by process {}",
            s.apm_port,
            std::process::id()
        )),
        "{out}"
    );
    assert!(out.stderr.contains("--apm-port"), "{out}");
    assert!(no_container_named(&s.agent), "nothing left behind");
    drop(held);
    run(s.up().args(["--expect", "none-such"])).expect_code(0);
}

/// A second dockerd, in its own network namespace (so `--bridge=none` cannot touch the host's
/// docker0), with its data root, exec root and socket in a scratch directory; killed and removed
/// on drop, also when the test fails.
struct SecondDaemon {
    child: Child,
    socket: PathBuf,
    /// Its data root, exec root, config and log; removed after `drop` has unmounted what dockerd
    /// left there.
    scratch: tempfile::TempDir,
    /// One second daemon on the host at a time; let go after the scratch dir is removed.
    _turn: HostLock,
}

/// Which dockerd a [`SecondDaemon`] runs.
enum Engine {
    /// The machine's own (Debian bookworm's docker.io 20.10: API 1.41).
    Installed,
    /// Debian trixie's docker.io 26.1.5 and containerd (API 1.45), unpacked, not installed.
    Newer,
}

/// Where scripts/test.sh unpacked the newer engine (`DDSKY_NEWER_ENGINE`, else
/// ~/.cache/ddsky/newer-engine).
fn newer_engine_root() -> PathBuf {
    let root = tool_dir("DDSKY_NEWER_ENGINE", "newer-engine");
    assert!(
        root.join("root/usr/sbin/dockerd").is_file() && root.join("root/usr/bin/containerd").is_file(),
        "no newer Docker Engine under {}: run the tests with `bash scripts/test.sh`, which unpacks \
         Debian trixie's docker.io and containerd there (or set DDSKY_NEWER_ENGINE to such a folder)",
        root.display()
    );
    root
}

impl SecondDaemon {
    fn start(name: &str) -> Self {
        Self::start_engine(name, Engine::Installed)
    }

    fn start_engine(name: &str, engine: Engine) -> Self {
        let turn = hold(HostResource::SecondDaemon);
        let scratch = scratch_dir(&format!("dockerd-{name}"));
        let dir = scratch.path().to_owned();
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut unshare = Command::new("unshare");
        // `listen` is the socket as dockerd sees it, `socket` as this process does.
        let (listen, socket) = match engine {
            Engine::Installed => {
                unshare.args(["--net", "--fork", "dockerd"]);
                let socket = dir.join("docker.sock");
                (socket.clone(), socket)
            }
            Engine::Newer => {
                // In a mount namespace of its own with a private /run, its socket is its own
                // /var/run/docker.sock: the agent it runs mounts that path and so discovers this
                // daemon's containers. Its dockerd starts the containerd (and shims) first on PATH;
                // runc is the host's.
                let private_run = dir.join("run");
                std::fs::create_dir_all(&private_run).unwrap();
                let root = newer_engine_root().join("root");
                let path = std::env::var("PATH").unwrap_or_default();
                unshare
                    .args(["--net", "--mount", "--fork", "sh", "-c"])
                    .arg(r#"mount --bind "$0" /run && exec "$@""#)
                    .arg(&private_run)
                    .arg(root.join("usr/sbin/dockerd"))
                    .env(
                        "PATH",
                        format!(
                            "{}:{}:{path}",
                            root.join("usr/bin").display(),
                            root.join("usr/sbin").display()
                        ),
                    );
                (
                    PathBuf::from("/run/docker.sock"),
                    private_run.join("docker.sock"),
                )
            }
        };
        let child = unshare
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", listen.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare + dockerd start (root needed)");
        let daemon = SecondDaemon {
            child,
            socket,
            scratch,
            _turn: turn,
        };
        let ready = eventually(Duration::from_secs(60), || {
            daemon
                .docker(&["info", "--format", "{{.DockerRootDir}}"])
                .code
                == 0
        });
        assert!(ready, "second dockerd did not come up: {}", daemon.log());
        daemon
    }

    fn dir(&self) -> &std::path::Path {
        self.scratch.path()
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn docker(&self, args: &[&str]) -> Run {
        run(Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(args))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// `up` again on this daemon is a no-op, and none of it ever reached the shared daemon.
    fn assert_up_again_changes_nothing(&self, s: &Scope) {
        let again = run(s.up().env("DOCKER_HOST", self.host()).args([
            "--no-wait",
            "--expect",
            "none-such",
            "--format",
            "json",
        ]));
        again.expect_code(0);
        assert_eq!(again.json()["action"], "none", "{again}");
        assert!(
            no_container_named(&s.agent),
            "nothing of it reached the shared daemon"
        );
    }

    /// Copies an image from the shared daemon into this one.
    /// Gives this daemon the stand-in images and starts the scope's job container on it (no
    /// network: the daemon has no bridge); returns its name.
    fn start_job(&self, s: &Scope) -> String {
        self.load(agent_image());
        self.load(job_image());
        let job = s.name("job");
        let started = self.docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &job,
            job_image(),
        ]);
        assert_eq!(started.code, 0, "{started}");
        job
    }

    /// `ddsky up --expect job` against this daemon: exit 0, no secret in the output; its JSON report.
    fn up_expecting(&self, s: &Scope, job: &str) -> (Run, Value) {
        let out = run(s
            .up()
            .env("DOCKER_HOST", self.host())
            .args(["--expect", job, "--format", "json"]));
        out.expect_code(0).assert_no_secret(&[]);
        let report = out.json();
        (out, report)
    }

    fn load(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut load = Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(["load", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut bytes = Vec::new();
        save.stdout.take().unwrap().read_to_end(&mut bytes).unwrap();
        load.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(save.wait().unwrap().success() && load.wait().unwrap().success());
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in ids.stdout.split_whitespace() {
            self.docker(&["rm", "-f", id]);
        }
        // SIGTERM to unshare's child (dockerd) through its pidfile, then to unshare itself.
        if let Ok(pid) = std::fs::read_to_string(self.dir().join("dockerd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd leaves mounts under its dirs (exec/netns/default is an nsfs bind in the host's
        // mount namespace): unmount each, deepest first, or the directory cannot be removed.
        // `scratch` removes it once this returns.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| std::path::Path::new(p).starts_with(self.dir()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}

#[test]
fn the_logs_mount_follows_the_daemons_data_root() {
    let s = Scope::new("dataroot");
    let daemon = SecondDaemon::start("dataroot");
    daemon.load(agent_image());
    let root = daemon.dir().join("data");
    let out = run(s.up().env("DOCKER_HOST", daemon.host()).args([
        "--no-wait",
        "--expect",
        "none-such",
        "--format",
        "json",
    ]));
    out.expect_code(0).assert_no_secret(&[]);
    let inspected = daemon.docker(&["inspect", &s.agent]);
    assert_eq!(inspected.code, 0, "{inspected}");
    let c: Value = serde_json::from_str::<Value>(&inspected.stdout).unwrap()[0].clone();
    let logs = format!("{}/containers", root.display());
    let binds: Vec<&str> = c["HostConfig"]["Binds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        binds.contains(&format!("{logs}:{logs}:ro").as_str()),
        "{binds:?}"
    );
    assert!(
        !binds.iter().any(|b| b.starts_with("/var/lib/docker")),
        "{binds:?}"
    );
    assert_eq!(
        c["Config"]["Labels"]["io.ddsky.docker-root"],
        root.display().to_string()
    );
    // A no-op `up` reads the root from the label; nothing changes.
    daemon.assert_up_again_changes_nothing(&s);
}

/// ddsky talks to a daemon whose socket is not /var/run/docker.sock (rootless Docker, a second
/// daemon): the agent mounts that socket, so it watches that daemon and discovers its job; doctor
/// names the socket. (On the shared daemon's /var/run/docker.sock it would see none of it.)
#[test]
fn the_agent_watches_the_daemon_at_a_socket_elsewhere_and_discovers_its_job() {
    let s = Scope::new("socket");
    let daemon = SecondDaemon::start("socket");
    assert_ne!(daemon.socket, PathBuf::from("/var/run/docker.sock"));
    let job = daemon.start_job(&s);
    let (out, report) = daemon.up_expecting(&s, &job);
    assert_eq!(report["healthy"], true, "{out}");
    assert_eq!(report["expected"][0]["pattern"], job.as_str(), "{out}");
    assert_eq!(report["expected"][0]["discovered"], true, "{out}");
    let inspected = daemon.docker(&["inspect", &s.agent]);
    assert_eq!(inspected.code, 0, "{inspected}");
    let c: Value = serde_json::from_str::<Value>(&inspected.stdout).unwrap()[0].clone();
    let bind = format!("{}:/var/run/docker.sock:ro", daemon.socket.display());
    assert!(
        c["HostConfig"]["Binds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == bind.as_str()),
        "{}",
        c["HostConfig"]["Binds"]
    );
    assert!(env_of(&c).contains(&"DOCKER_HOST=unix:///var/run/docker.sock".to_string()));
    let doctor = run(s
        .ddsky()
        .env("DOCKER_HOST", daemon.host())
        .args(["doctor", "--format", "json"])
        .args(s.port_args()));
    let report = doctor.json();
    let socket = daemon.socket.display().to_string();
    let api = doctor_check(&report, "docker api")["evidence"].to_string();
    let mounts = doctor_check(&report, "mounts")["evidence"].to_string();
    assert!(
        api.contains(&socket),
        "doctor names the socket ddsky talks to: {api}"
    );
    assert!(
        mounts.contains(&socket),
        "and the one the agent watches: {mounts}"
    );
    daemon.assert_up_again_changes_nothing(&s);
}

/// Docker 25+ (API 1.44) keeps a health check's `StartInterval`; an older API drops it. On such an
/// engine ddsky creates the agent at 1.44 (it asked the daemon's version first), so the health
/// check is probed every 5 s while the agent starts instead of every 30 s; the rest (inspect, start,
/// events, the execs that ask the agent) works as on 20.10: the job is discovered.
#[test]
fn on_a_newer_engine_the_agent_keeps_its_start_interval_and_discovers_the_job() {
    let s = Scope::new("newengine");
    let daemon = SecondDaemon::start_engine("newengine", Engine::Newer);
    let api = daemon.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let api_minor: u32 = api
        .stdout
        .trim()
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("API version: {api}"));
    assert!(api_minor >= 44, "this engine speaks API 1.{api_minor}");
    let job = daemon.start_job(&s);
    let (out, report) = daemon.up_expecting(&s, &job);
    assert_eq!(report["action"], "create", "{out}");
    assert_eq!(report["healthy"], true, "{out}");
    let expected = &report["expected"][0];
    assert_eq!(expected["pattern"], job.as_str(), "{out}");
    assert_eq!(expected["discovered"], true, "{out}");
    // Read at the engine's own API version: at 1.41 (the CLI's) it hides StartInterval.
    let inspected = api_get(
        &daemon.socket,
        &format!("/v1.{api_minor}/containers/{}/json", s.agent),
    );
    let check = &inspected["Config"]["Healthcheck"];
    assert_eq!(check["StartInterval"], 5_000_000_000u64, "{check}");
    assert_eq!(check["Interval"], 30_000_000_000u64, "{check}");
    // doctor names the API version this daemon answers at, not the client's 1.41.
    let doctor = run(s
        .ddsky()
        .env("DOCKER_HOST", daemon.host())
        .args(["doctor", "--format", "json"])
        .args(s.port_args()));
    let docker_api = doctor_check(&doctor.json(), "docker api")["evidence"].to_string();
    assert!(
        docker_api.contains(&format!("API 1.{api_minor}, Docker 26.")),
        "{docker_api}"
    );
    // A second `up` on this engine changes nothing: it compares the spec, not what the API kept.
    daemon.assert_up_again_changes_nothing(&s);
}

/// `GET path` on a daemon's socket: the JSON body.
fn api_get(socket: &std::path::Path, path: &str) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Creates `name` through the Engine API from `body` (the create body exactly), and starts it.
fn create_by_api(name: &str, body: &Value) -> String {
    let text = body.to_string();
    let mut stream = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").unwrap();
    write!(
        stream,
        "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    docker(&["start", name]).expect_code(0);
    inspect(name).unwrap()["Id"].as_str().unwrap().to_owned()
}

#[test]
fn an_agent_made_by_another_ddsky_version_with_the_same_spec_is_left_running_untouched() {
    let s = Scope::new("otherversion");
    let plan = run(s
        .up()
        .args(["--expect", "none-such", "--dry-run", "--format", "json"]));
    plan.expect_code(0);
    let mut body = plan.json()["container"].clone();
    let env = body["Env"].as_array_mut().unwrap();
    for e in env.iter_mut() {
        if e == "DD_API_KEY=<redacted>" {
            *e = Value::String(format!("DD_API_KEY={KEY}"));
        }
    }
    let labels = body["Labels"].as_object_mut().unwrap();
    assert!(labels.contains_key("io.ddsky.version"), "{labels:?}");
    labels.insert("io.ddsky.version".into(), "0.0.1-older".into());
    let id = create_by_api(&s.agent, &body);
    let started = inspect(&s.agent).unwrap()["State"]["StartedAt"].clone();

    let out = run(s.up().args(["--expect", "none-such", "--format", "json"]));
    out.expect_code(0);
    assert_eq!(out.json()["action"], "none", "{out}");
    let after = inspect(&s.agent).unwrap();
    assert_eq!(after["Id"], id.as_str(), "the same container");
    assert_eq!(after["State"]["StartedAt"], started, "not restarted");
    assert_eq!(after["Config"]["Labels"]["io.ddsky.version"], "0.0.1-older");

    // A changed spec still recreates.
    let changed = run(s.up().args([
        "--expect",
        "none-such",
        "--tag",
        "team:other",
        "--format",
        "json",
    ]));
    changed.expect_code(0);
    assert_eq!(changed.json()["action"], "recreate", "{changed}");
}

/// `ddsky up` in a container (host network, the socket) where /dev/nvidiactl exists, standing for a
/// node whose NVIDIA driver is installed but whose Docker has no NVIDIA runtime: this daemon
/// refuses every GPU request.
fn up_with_a_driver_but_no_runtime(s: &Scope, gpus: &str) -> Run {
    let scratch = scratch_dir("nvidiactl");
    let device = scratch.path().join("nvidiactl");
    std::fs::write(&device, "").unwrap();
    let mut cmd: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        s.name(&format!("ddsky-{gpus}")),
        "--net=host".into(),
        "-v".into(),
        "/var/run/docker.sock:/var/run/docker.sock".into(),
        "-v".into(),
        format!("{}:/dev/nvidiactl:ro", device.display()),
    ];
    for (k, v) in [
        ("DD_API_KEY", KEY),
        ("DDSKY_NAME", s.agent.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ] {
        cmd.extend(["-e".into(), format!("{k}={v}")]);
    }
    cmd.push(ddsky_image().into());
    cmd.extend(
        [
            "up",
            "--image",
            agent_image(),
            "--gpus",
            gpus,
            "--expect",
            "none-such",
            "--timeout",
            "60s",
        ]
        .map(String::from),
    );
    cmd.extend(s.port_args());
    cmd.extend(s.agent_args());
    run(Command::new("docker").args(&cmd))
}

#[test]
fn gpus_auto_falls_back_to_an_agent_without_gpus_and_gpus_all_fails_with_the_fix() {
    // The agent it falls back to is started in a container, without --run-dir.
    let s = Scope::holding("gpufallback", &[HostResource::DefaultRunDir]);
    let all = up_with_a_driver_but_no_runtime(&s, "all");
    assert_eq!(all.code, 1, "{all}");
    assert!(
        all.stderr.contains("could not select device driver")
            && all.stderr.contains("nvidia-ctk runtime configure"),
        "Docker's refusal and the fix: {all}"
    );
    assert!(
        no_container_named(&s.agent),
        "nothing left after --gpus all"
    );

    let auto = up_with_a_driver_but_no_runtime(&s, "auto");
    auto.expect_code(0).assert_no_secret(&[]);
    assert!(
        auto.stderr.contains("without GPU monitoring")
            && auto.stderr.contains("nvidia-ctk runtime configure"),
        "a warning with the fix: {auto}"
    );
    let agent = inspect(&s.agent).expect("an agent runs");
    assert_eq!(agent["State"]["Running"], true);
    assert!(
        agent["HostConfig"]["DeviceRequests"].is_null()
            || agent["HostConfig"]["DeviceRequests"]
                .as_array()
                .is_some_and(Vec::is_empty),
        "{}",
        agent["HostConfig"]
    );
    assert!(!env_of(&agent).contains(&"DD_GPU_ENABLED=true".to_string()));
    let id = agent["Id"].clone();

    // The next `up` in auto mode keeps the fallback instead of recreating to fail again.
    let again = up_with_a_driver_but_no_runtime(&s, "auto");
    again.expect_code(0);
    assert_eq!(inspect(&s.agent).unwrap()["Id"], id, "{again}");
}
