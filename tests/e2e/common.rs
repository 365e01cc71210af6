//! Shared end-to-end test harness: builds the stand-in images once, runs the built `ddsky` with a
//! clean, loopback-only environment, and removes every container a test made, even when it fails.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The repository namespace of the test images: `ddsky-test`, or DDSKY_TEST_IMAGES so that two
/// checkouts testing against one daemon do not replace each other's images mid-run.
pub fn image_namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        std::env::var("DDSKY_TEST_IMAGES")
            .ok()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "ddsky-test".into())
    })
}

/// `<namespace>/<name>`, made once per test image.
macro_rules! test_image {
    ($name:literal) => {{
        static TAG: OnceLock<String> = OnceLock::new();
        TAG.get_or_init(|| format!("{}/{}", image_namespace(), $name))
            .as_str()
    }};
}

/// The stand-in for `datadog/agent:7`.
pub fn agent_image() -> &'static str {
    test_image!("agent:7")
}
/// The same stand-in without a shell, as a minimal agent image could be.
pub fn agent_noshell_image() -> &'static str {
    test_image!("agent-noshell:7")
}
/// The stand-in job (`metta:latest`).
pub fn job_image() -> &'static str {
    test_image!("metta:latest")
}
/// The static release build of ddsky alone.
pub fn ddsky_image() -> &'static str {
    test_image!("ddsky:latest")
}
/// A key of the right shape (32 hex). Every test scans output for it.
pub const KEY: &str = "c0ffee0123456789abcdef0123456789";
pub const OTHER_KEY: &str = "beef00112233445566778899aabbccdd";

/// A scratch directory in the temp dir, `ddskyt-<pid>-<what>-XXXXXX`, removed when dropped: also
/// when the test fails.
pub fn scratch_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ddskyt-{}-{what}-", std::process::id()))
        .tempdir()
        .expect("a scratch directory in the temp dir")
}

/// What the tests give `--agent-timeout` (see `Scope::ddsky`).
pub const AGENT_TIMEOUT: &str = "120s";

/// `ddsky` for commands that need no Docker: nothing from the developer's shell, outside any git
/// checkout (no git_ref of its own), AWS kept local (no call is expected).
pub fn ddsky_without_docker() -> Command {
    let mut cmd = Command::new(ddsky_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .current_dir(std::env::temp_dir());
    cmd
}

/// Where scripts/test.sh keeps a tool it installs once per machine: `$<var>`, else
/// `${XDG_CACHE_HOME:-~/.cache}/ddsky/<name>`, as the script decides.
pub fn tool_dir(var: &str, name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("ddsky").join(name)
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds ddsky-test/agent:7 and ddsky-test/metta:latest once per test binary.
pub fn ensure_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("docker/build-test-images.sh"))
            .env("DDSKY_TEST_IMAGES", image_namespace())
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "docker/build-test-images.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    fn from(out: Output, elapsed: Duration) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Fails the test if the key (or any given secret) appears anywhere in the output.
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        for s in secrets.iter().chain([&KEY, &OTHER_KEY]) {
            assert!(
                !self.stdout.contains(s) && !self.stderr.contains(s),
                "secret leaked:\nstdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Starts `cmd` with SIGINT, SIGQUIT and SIGTERM at their default dispositions, whatever this test
/// process inherited: run as `cmd &` from a script without job control (`(bash scripts/test.sh &)`),
/// the tests start with SIGINT and SIGQUIT ignored, and ddsky keeps an inherited "ignore" (see
/// docs/reliability.md), so the signal tests would signal a process that ignores them.
pub fn default_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls (signal) are made.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts `cmd` with SIGINT ignored, as a background job of a non-interactive shell starts.
pub fn ignoring_sigint(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: as in `default_signals`.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub fn ddsky_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ddsky"))
}

/// A free port on loopback for both TCP and UDP (the stand-in binds both on the host network).
///
/// Ports come from 20000-32767, below Linux's ephemeral range (32768-60999), so no outgoing
/// connection of any process can be handed the port between this check and the stand-in binding it,
/// and this process never hands out the same port twice.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: OnceLock<Mutex<(u64, HashSet<u16>)>> = OnceLock::new();
    let mut state = GIVEN
        .get_or_init(|| {
            let seed = u64::from(std::process::id())
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
            Mutex::new((seed, HashSet::new()))
        })
        .lock()
        .unwrap();
    loop {
        // xorshift: a different sequence in each test process, so two processes rarely try the same.
        let (seed, given) = &mut *state;
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let port = 20000 + (*seed % 12768) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            given.insert(port);
            return port;
        }
    }
}

/// The stand-in's knobs that shorten its phases for tests that are not about start-up: healthy
/// 2 s after its command API is up instead of at the first 15 s health ping, a flush and a docker
/// check run every 2 s instead of 15 s. The auth-token second, the CLI's CPU cost, key validation
/// and everything else stay real.
pub const FAST_AGENT_ENV: [&str; 3] = [
    "STANDIN_UNHEALTHY_SECS=2",
    "STANDIN_FLUSH_SECS=2",
    "STANDIN_CHECK_INTERVAL_SECS=2",
];

/// Where a scope's agent sees the scope's run dir (`--run-dir`, mounted read-write): the gate files
/// of [`Scope::hold`] live there.
pub const AGENT_RUN_DIR: &str = "/opt/datadog-agent/run";

/// One of the stand-in's timed phases held by the test (`STANDIN_<PHASE>_GATE`): the phase does
/// not end before [`HeldPhase::release`] creates the gate file in the scope's run dir, so a test
/// looks at the agent in that phase for as long as it needs, however busy the machine. The phase
/// still lasts at least its real time: a gate never makes the stand-in kinder.
pub struct HeldPhase {
    env: String,
    file: PathBuf,
}

impl HeldPhase {
    /// `STANDIN_<PHASE>_GATE=<file in the agent>`, for `--agent-env` or `docker run -e`.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// `["--agent-env", env]`, for `up`.
    pub fn agent_env(&self) -> [&str; 2] {
        ["--agent-env", &self.env]
    }

    /// Lets the phase end (at once, or when its real time is up if that is later).
    pub fn release(&self) {
        std::fs::write(&self.file, b"")
            .unwrap_or_else(|e| panic!("cannot create the gate {}: {e}", self.file.display()));
    }
}

/// A host resource that no two tests may use at once. Everything else a test touches is its own
/// (see [`Scope`]), so the tests run side by side (scripts/test.sh sets how many); a test that uses
/// one of these holds it for its life ([`Scope::holding`], [`hold`]).
#[derive(Clone, Copy, Debug)]
pub enum HostResource {
    /// The host's /opt/datadog-agent/run: the run dir (registry.json, the log tailers' offsets) of
    /// every agent started without `--run-dir`, as users start it (in a job container, by hand).
    DefaultRunDir,
    /// 127.0.0.1:5001, the agent's command API port when `DD_CMD_PORT` does not move it.
    DefaultCmdPort,
    /// A second dockerd on this host (its own network namespace, data and exec roots, but the
    /// host's cgroups, runc and kernel): one at a time.
    SecondDaemon,
}

impl HostResource {
    fn file_name(self) -> &'static str {
        match self {
            HostResource::DefaultRunDir => "ddsky-e2e-default-run-dir.lock",
            HostResource::DefaultCmdPort => "ddsky-e2e-port-5001.lock",
            HostResource::SecondDaemon => "ddsky-e2e-second-dockerd.lock",
        }
    }
}

/// A [`HostResource`] held: an exclusive flock on a file in the temp dir, so this binary's test
/// threads and the test processes of other checkouts on the machine take turns. Released when
/// dropped (also when the test panics) or when the process dies.
pub struct HostLock {
    _file: std::fs::File,
}

/// Waits until `resource` is free, then holds it until the returned lock is dropped.
pub fn hold(resource: HostResource) -> HostLock {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(resource.file_name());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return HostLock { _file: file };
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "flock {}: {err}",
            path.display()
        );
    }
}

/// One test's world: unique names, its own ports, and everything named with its prefix removed on
/// drop.
pub struct Scope {
    pub prefix: String,
    pub agent: String,
    pub apm_port: u16,
    pub dogstatsd_port: u16,
    /// The agent's command API port (`DD_CMD_PORT`; the real default 5001 would collide: every
    /// test agent runs on the host network, many tests at a time).
    pub cmd_port: u16,
    /// The agent's run dir on the host (`--run-dir`): its registry.json is this test's alone.
    pub run_dir: tempfile::TempDir,
    /// The job log directory on the host (DDSKY_JOB_LOG_DIR): where `ddsky run` on the host
    /// writes the job's output and `up` the agent's conf.d for it, this test's alone.
    pub job_log_dir: tempfile::TempDir,
    /// What this test holds of the host; released after its containers are removed.
    locks: Vec<HostLock>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Scope {
    pub fn new(test: &str) -> Self {
        Scope::holding(test, &[])
    }

    /// A scope whose test uses `resources` of the host: it waits for each, holds them for its life,
    /// and lets go only once its containers are gone.
    pub fn holding(test: &str, resources: &[HostResource]) -> Self {
        ensure_images();
        let locks = resources.iter().map(|r| hold(*r)).collect();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect();
        let prefix = format!("ddskyt-{}-{n}-{short}", std::process::id());
        let scope = Scope {
            agent: format!("{prefix}-agent"),
            prefix,
            apm_port: free_port(),
            dogstatsd_port: free_port(),
            cmd_port: free_port(),
            run_dir: scratch_dir("run"),
            job_log_dir: scratch_dir("joblogs"),
            locks,
        };
        scope.cleanup();
        scope
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Holds the phase that the stand-in's `gate` knob (`STANDIN_STARTUP_GATE`,
    /// `STANDIN_HEALTH_GATE`, `STANDIN_CHECK_GATE`, `STANDIN_LISTENERS_GATE`,
    /// `STANDIN_LOGS_SEND_GATE`) names, through a file in this scope's run dir: pass
    /// [`HeldPhase::agent_env`] to `up` (or mount the run dir at [`AGENT_RUN_DIR`]).
    pub fn hold(&self, gate: &str) -> HeldPhase {
        let name = format!("{}.released", gate.to_ascii_lowercase());
        HeldPhase {
            env: format!("{gate}={AGENT_RUN_DIR}/{name}"),
            file: self.run_dir.path().join(name),
        }
    }

    /// `ddsky` with a clean environment: no AWS credentials or endpoints but loopback ones, instance
    /// metadata off, the scope's agent name, and nothing inherited from the developer's shell.
    pub fn ddsky(&self) -> Command {
        let mut cmd = Command::new(ddsky_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            // A closed loopback port: any AWS call a test did not set up fails fast and stays local.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("DDSKY_NAME", &self.agent)
            // A generous bound on each `agent` command: the stand-in's CLI costs 300 ms of CPU as
            // the real one does, and on a loaded 2-core machine the default 15 s is not the thing
            // any test looks at.
            .env("DDSKY_AGENT_TIMEOUT", AGENT_TIMEOUT)
            .env("DDSKY_JOB_LOG_DIR", self.job_log_dir.path())
            // Outside any git checkout, so `git rev-parse HEAD` adds no git_ref tag of its own.
            .current_dir(std::env::temp_dir());
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
        default_signals(&mut cmd);
        cmd
    }

    /// `ddsky up` against the stand-in on this scope's ports, with the test key, the stand-in's
    /// phases shortened ([`FAST_AGENT_ENV`]): for tests that are not about start-up.
    pub fn up(&self) -> Command {
        let mut cmd = self.up_at_real_timing();
        for knob in FAST_AGENT_ENV {
            cmd.args(["--agent-env", knob]);
        }
        cmd
    }

    /// `ddsky up` against a stand-in at the real agent's timings: the auth-token second, then
    /// every component unhealthy until the first health ping 15 s later, 15 s flushes and checks.
    pub fn up_at_real_timing(&self) -> Command {
        let mut cmd = self.ddsky();
        cmd.env("DD_API_KEY", KEY)
            .args([
                "up",
                "--image",
                agent_image(),
                "--timeout",
                "60s",
                "--secret-timeout",
                "2s",
            ])
            .args(self.port_args())
            .args(["--agent-env", &format!("DD_CMD_PORT={}", self.cmd_port)])
            .args(self.own_logs_only())
            .arg("--run-dir")
            .arg(self.run_dir.path());
        cmd
    }

    /// Agent settings that keep this scope's agent to the logs of this scope's containers, as a
    /// node's agent has only its node's: on the daemon the tests share, every agent would tail every
    /// other test's containers too, and its drain before a stop would wait for logs it was never
    /// given an intake for. `DD_CONTAINER_*_LOGS` filter log collection alone (discovery, tags and
    /// checks still see every container), and the include wins over the exclude, so the include
    /// names every `<prefix>-<suffix>` but the scope's own agent, `<prefix>-agent` (RE2 has no
    /// look-ahead: "not `agent`" is spelt out letter by letter).
    pub fn own_logs_only(&self) -> [String; 4] {
        [
            "--agent-env".into(),
            "DD_CONTAINER_EXCLUDE_LOGS=name:.*".into(),
            "--agent-env".into(),
            format!(
                "DD_CONTAINER_INCLUDE_LOGS=name:^{}-([^a]|a($|[^g]|g($|[^e]|e($|[^n]|n($|[^t]|t.)))))",
                self.prefix
            ),
        ]
    }

    /// The `up` arguments that give the agent this scope's command port and the shortening knobs,
    /// for tests that build their own `up` (as [`Scope::up`] would pass them).
    pub fn agent_args(&self) -> Vec<String> {
        let mut args = vec![
            "--agent-env".to_string(),
            format!("DD_CMD_PORT={}", self.cmd_port),
        ];
        args.extend(self.own_logs_only());
        for knob in FAST_AGENT_ENV {
            args.extend(["--agent-env".to_string(), knob.to_string()]);
        }
        args
    }

    /// [`Scope::agent_args`] as the value of their environment twin, `DDSKY_AGENT_ENV` (space
    /// separated), for tests that run `up` from a setup script.
    pub fn agent_env_twin(&self) -> String {
        self.agent_args()
            .into_iter()
            .filter(|a| a != "--agent-env")
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `ddsky up` in the background against a stand-in whose first health ping is held for the
    /// test's life (its `STANDIN_HEALTH_GATE` is never released), so the command is certainly still
    /// waiting when the test acts on it.
    pub fn spawn_waiting_up(&self, extra: &[&str]) -> std::process::Child {
        self.up()
            .args(self.hold("STANDIN_HEALTH_GATE").agent_env())
            .args(["--expect", "none-such"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ddsky starts")
    }

    /// [`Scope::spawn_waiting_up`] with `-v`, watched: [`Scope::wait_until_asked`] tells when it is
    /// certainly in its wait for health.
    pub fn watch_waiting_up(&self, extra: &[&str]) -> Watched {
        let mut cmd = self.up();
        cmd.arg("-v")
            .args(self.hold("STANDIN_HEALTH_GATE").agent_env())
            .args(["--expect", "none-such"])
            .args(extra);
        Watched::spawn(&mut cmd)
    }

    pub fn port_args(&self) -> [String; 4] {
        [
            "--apm-port".into(),
            self.apm_port.to_string(),
            "--dogstatsd-port".into(),
            self.dogstatsd_port.to_string(),
        ]
    }

    /// Starts a stand-in job container named `<prefix>-<suffix>`; returns its id.
    pub fn run_job(&self, suffix: &str) -> String {
        let name = self.name(suffix);
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &format!("ddsky-test={}", self.prefix),
            job_image(),
        ]);
        assert_eq!(out.code, 0, "docker run {name}: {out}");
        out.stdout.trim().to_owned()
    }

    fn cleanup(&self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("name=^/?{}", self.prefix)]);
        let ids: Vec<&str> = ids.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cleanup();
        // Only now may the next test take what this one held.
        self.locks.clear();
    }
}

/// Waits for a spawned command (its stdout and stderr piped) at most `limit`; past it the command is
/// killed and reported as `exit -1` with a note on stderr, so that a hang fails the test instead of
/// stalling the suite.
pub fn wait_within(mut child: std::process::Child, limit: Duration) -> Run {
    let start = Instant::now();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut timed_out = false;
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        stderr.push_str(&format!(
            "\n[test harness: still running after {limit:?}: killed]\n"
        ));
    }
    Run {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr,
        elapsed: start.elapsed(),
    }
}

/// A command running in the background whose stderr the test reads as it comes, to act once the
/// command has reached a point it logs (`-v` debug lines say where ddsky is).
pub struct Watched {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: std::thread::JoinHandle<()>,
    start: Instant,
}

impl Watched {
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("command starts");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_done = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Watched {
            child,
            stdout,
            stderr,
            stderr_done,
            start: Instant::now(),
        }
    }

    /// The process id, to signal it.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// How many lines of stderr so far contain `needle`.
    pub fn count_in_stderr(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until ddsky (run with `-v`) has asked the agent for its health `n` times: its debug
    /// line after each answer (or failure to answer) says so.
    pub fn wait_until_asked(&self, n: usize, limit: Duration) -> bool {
        eventually(limit, || {
            self.count_in_stderr("agent not healthy yet")
                + self.count_in_stderr("agent health could not run")
                >= n
        })
    }

    /// Waits (at most `limit`) until a line of stderr contains one of `needles`.
    pub fn wait_for_stderr(&self, needles: &[&str], limit: Duration) -> bool {
        eventually(limit, || {
            let all = self.stderr.lock().unwrap();
            all.lines().any(|l| needles.iter().any(|n| l.contains(n)))
        })
    }

    /// Waits for the command at most `limit` from now (killed past it, as [`wait_within`] does).
    pub fn finish(mut self, limit: Duration) -> Run {
        let mut timed_out = false;
        let waited = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status.code().unwrap_or(-1);
            }
            if waited.elapsed() > limit {
                timed_out = true;
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = self.stderr_done.join();
        let mut stderr = self.stderr.lock().unwrap().clone();
        if timed_out {
            stderr.push_str(&format!(
                "\n[test harness: still running after {limit:?}: killed]\n"
            ));
        }
        Run {
            code,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr,
            elapsed: self.start.elapsed(),
        }
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let start = Instant::now();
    let out = cmd.output().expect("command runs");
    Run::from(out, start.elapsed())
}

pub fn docker(args: &[&str]) -> Run {
    run(Command::new("docker").args(args))
}

/// `docker inspect` of one container, or None when there is none.
pub fn inspect(name: &str) -> Option<Value> {
    let out = docker(&["inspect", "--type", "container", name]);
    if out.code != 0 {
        return None;
    }
    serde_json::from_str::<Value>(&out.stdout)
        .ok()?
        .as_array()?
        .first()
        .cloned()
}

pub fn env_of(container: &Value) -> Vec<String> {
    container["Config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` until true or the timeout passes (test helper only; the product never sleeps fixed).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// One request an [`Intake`] received; `body` decompressed when it came zlib-compressed.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    /// The request line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method,
                self.target,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A Datadog intake on loopback for the stand-in's `DD_DD_URL`: answers the key validation
/// (`GET /api/v1/validate`) with `validate` and every payload with `payload`, and keeps what
/// arrived (decompressed).
pub struct Intake {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    logs_hold: Arc<LogsHold>,
}

/// Whether an [`Intake`] answers logs payloads now or holds them until the test lets them go.
#[derive(Default)]
struct LogsHold {
    /// (held, the payloads waiting for an answer: arrived, not yet delivered)
    state: Mutex<(bool, Vec<Received>)>,
    changed: Condvar,
}

impl Intake {
    pub fn start(validate: u16, payload: u16) -> Self {
        Intake::start_with_logs_delay(validate, payload, Duration::ZERO)
    }

    /// Like [`Intake::start`], but every `POST /api/v2/logs` waits for its answer until the test
    /// calls [`Intake::release_logs`], and counts as arrived only if its sender is still connected
    /// then: a sender stopped before the release delivered nothing, however slow the machine.
    /// What waits is in [`Intake::held_logs_of`].
    pub fn start_holding_logs(validate: u16, payload: u16) -> Self {
        let intake = Intake::start(validate, payload);
        intake.hold_logs();
        intake
    }

    /// From now on, logs payloads wait for [`Intake::release_logs`].
    pub fn hold_logs(&self) {
        self.logs_hold.state.lock().unwrap().0 = true;
    }

    /// Answers every logs payload waiting, and the later ones at once.
    pub fn release_logs(&self) {
        self.logs_hold.state.lock().unwrap().0 = false;
        self.logs_hold.changed.notify_all();
    }

    /// Lets every held logs payload go and waits until each is delivered (its sender still
    /// connected) or dropped (its sender gone): after this, [`Intake::logs`] is final for them.
    pub fn release_logs_and_settle(&self) {
        self.release_logs();
        assert!(
            eventually(Duration::from_secs(30), || self
                .logs_hold
                .state
                .lock()
                .unwrap()
                .1
                .is_empty()),
            "held logs payloads never settled"
        );
    }

    /// The entries of the logs payloads waiting for an answer, tagged `container_id:<id>`.
    pub fn held_logs_of(&self, container_id: &str) -> Vec<LogEntry> {
        let tag = format!("container_id:{container_id}");
        log_entries(&self.logs_hold.state.lock().unwrap().1)
            .into_iter()
            .filter(|e| e.ddtags.contains(&tag))
            .collect()
    }

    /// Like [`Intake::start`], but every `POST /api/v2/logs` is answered only after `delay`, and
    /// counts as arrived only if its sender is still connected then (an intake commits a payload
    /// when it answers; a sender killed meanwhile delivered nothing).
    pub fn start_with_logs_delay(validate: u16, payload: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let logs_hold = Arc::new(LogsHold::default());
        let hold = logs_hold.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(2000) {
                let Ok(mut conn) = conn else { continue };
                let sink = sink.clone();
                let hold = hold.clone();
                // One thread per connection: a slow answer to one sender (every agent on the host
                // sends every container's logs, each pipeline its own connection) holds up no other.
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let lower = head.to_ascii_lowercase();
                    if lower.contains("\r\ncontent-encoding: deflate") {
                        let mut plain = Vec::new();
                        if flate2::read::ZlibDecoder::new(&body[..])
                            .read_to_end(&mut plain)
                            .is_ok()
                        {
                            body = plain;
                        }
                    } else if lower.contains("\r\ncontent-encoding: gzip") {
                        let mut plain = Vec::new();
                        if flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut plain)
                            .is_ok()
                        {
                            body = plain;
                        }
                    }
                    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
                    let method = request_line.next().unwrap_or("").to_owned();
                    let target = request_line.next().unwrap_or("").to_owned();
                    let is_logs = target.starts_with(LOGS_PATH);
                    let mut waited = false;
                    // Only payloads of entries are held: the start-up probe (`{}`) is answered, or
                    // the agent would fall back to TCP and send nothing at all.
                    let is_entries = is_logs
                        && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_array());
                    if is_entries {
                        let mut state = hold.state.lock().unwrap();
                        if state.0 {
                            waited = true;
                            let me = Received {
                                method: method.clone(),
                                target: target.clone(),
                                head: head.clone(),
                                body: body.clone(),
                            };
                            state.1.push(me);
                            while state.0 {
                                state = hold.changed.wait(state).unwrap();
                            }
                        }
                    }
                    // Taken off the waiting list once delivered or found undeliverable, so that
                    // an empty list after a release means every held payload is settled.
                    let settled = || {
                        let mut state = hold.state.lock().unwrap();
                        if let Some(i) = state
                            .1
                            .iter()
                            .position(|r| r.head == head && r.body == body)
                        {
                            state.1.remove(i);
                        }
                    };
                    if is_logs && !delay.is_zero() {
                        std::thread::sleep(delay);
                        waited = true;
                    }
                    if waited {
                        // The sender hung up meanwhile (EOF): nothing was delivered.
                        conn.set_nonblocking(true).ok();
                        let mut probe = [0u8; 1];
                        let gone = match conn.peek(&mut probe) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        };
                        conn.set_nonblocking(false).ok();
                        if gone {
                            settled();
                            return;
                        }
                    }
                    let status = if target.starts_with("/api/v1/validate") {
                        validate
                    } else {
                        payload
                    };
                    sink.lock().unwrap().push(Received {
                        method,
                        target,
                        head: head.clone(),
                        body: body.clone(),
                    });
                    if is_entries {
                        settled();
                    }
                    let reason = match status {
                        200 => "OK",
                        202 => "Accepted",
                        403 => "Forbidden",
                        _ => "Error",
                    };
                    let _ = write!(
                    conn,
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                });
            }
        });
        Intake {
            port,
            received,
            logs_hold,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The live list of what arrived, for a reader on another thread (the fake Datadog API).
    pub fn feed(&self) -> Arc<Mutex<Vec<Received>>> {
        self.received.clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn received_at(&self, prefix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect()
    }

    /// Every entry of every `POST /api/v2/logs` (a JSON array; the start-up probe's `{}` is not
    /// one), in arrival order.
    pub fn logs(&self) -> Vec<LogEntry> {
        log_entries(&self.received_at(LOGS_PATH))
    }

    /// The [`Intake::logs`] entries tagged `container_id:<id>`.
    pub fn logs_of(&self, container_id: &str) -> Vec<LogEntry> {
        let tag = format!("container_id:{container_id}");
        self.logs()
            .into_iter()
            .filter(|e| e.ddtags.contains(&tag))
            .collect()
    }

    /// The host tags of the last host-metadata payload (`POST /intake/`, `host-tags.system`).
    pub fn host_tags(&self) -> Option<Vec<String>> {
        let last = self.received_at("/intake/").pop()?;
        last.json()["host-tags"]["system"].as_array().map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
    }
}

impl Drop for Intake {
    /// Lets every held answer go, so no connection thread waits past the test.
    fn drop(&mut self) {
        self.release_logs();
    }
}

/// Every entry of the logs payloads among `requests` (a JSON array each; the start-up probe's
/// `{}` is not one), in order.
fn log_entries(requests: &[Received]) -> Vec<LogEntry> {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.target.starts_with(LOGS_PATH))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v.as_array().cloned())
        .flatten()
        .map(|e| LogEntry::from_json(&e))
        .collect()
}

/// Where the agent sends logs, below `DD_LOGS_CONFIG_LOGS_DD_URL`.
pub const LOGS_PATH: &str = "/api/v2/logs";

/// One log entry as the intake received it (`ddtags` split on commas).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub message: String,
    pub status: String,
    pub ddtags: Vec<String>,
    pub hostname: String,
    pub service: String,
    pub ddsource: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl LogEntry {
    fn from_json(v: &Value) -> Self {
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        LogEntry {
            message: text("message"),
            status: text("status"),
            ddtags: v["ddtags"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            hostname: text("hostname"),
            service: text("service"),
            ddsource: text("ddsource"),
            timestamp: v["timestamp"].as_i64().unwrap_or(0),
        }
    }
}

/// Now, as `docker events --since/--until` take it.
pub fn unix_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The commands run by exec in `container` between `since` and now, Docker's own health probes
/// included (each is an `agent` command too).
pub fn execs_since(container: &str, since: &str) -> Vec<String> {
    let until = unix_now();
    let events = docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &format!("container={container}"),
        "--filter",
        "event=exec_create",
        "--format",
        "{{json .Action}}",
    ]);
    assert_eq!(events.code, 0, "{events}");
    events
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap())
        .map(|a| a.trim_start_matches("exec_create: ").to_owned())
        .collect()
}

/// The commands ddsky ran by exec in `container` since `since`: Docker's own health probes left out
/// (the image's `/probe.sh` and the health check ddsky configures, which Docker runs as its own exec
/// and which, at the real CLI's cost, often falls inside the window).
pub fn ddsky_execs_since(container: &str, since: &str) -> Vec<String> {
    let health_check = inspect(container)
        .and_then(|c| {
            let test: Vec<String> = c["Config"]["Healthcheck"]["Test"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (test.first().map(String::as_str) == Some("CMD")).then(|| test[1..].join(" "))
        })
        .unwrap_or_default();
    execs_since(container, since)
        .into_iter()
        .filter(|c| !c.starts_with("/probe.sh") && (health_check.is_empty() || *c != health_check))
        .collect()
}

/// One check of `ddsky doctor --format json`'s report, by name.
pub fn doctor_check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}
