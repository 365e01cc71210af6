//! `ddsky run [--down] -- CMD ARGS...`: the job's supervisor. The job starts at once with the
//! variables `ddsky env` prints; meanwhile the agent is refreshed like `up --no-wait` (a no-op when
//! it already carries this run's tags); the job's output passes through unchanged and, inside a
//! container whose PID 1 output is not ddsky's own (SkyPilot's runtime mode), is copied there,
//! where the agent collects it; signals are forwarded once; with --down the agent is drained and
//! stopped after the job, inside SkyPilot's 30 s kill window. ddsky exits with the job's status.
//!
//! Nothing ddsky fails at may change the job: every failure of ddsky's own is one warning line.

mod signals;
mod supervisor;

use super::{down, env, up, Context, Failure};
use crate::drain;
use crate::interrupt::Interrupt;
use crate::joblog;
use crate::placement::{self, Placement};
use crate::reconcile::is_managed;
use crate::settings::{RunSettings, UpSettings};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use supervisor::{Copy, CopyTo, Gate, Job};

/// SkyPilot SIGKILLs a cancelled job 30 s after its SIGTERM: the teardown ends before.
const KILL_WINDOW: Duration = Duration::from_secs(28);
/// How long the job's last output may take to be passed on once it exited (a grandchild that keeps
/// the pipe open is not waited for longer).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long the job's buffered output may take to reach the log once the job's output ended: a
/// pty logger takes a 100,000-line burst in about a second; a log that takes nothing at all is not
/// waited for longer.
const COPY_GRACE: Duration = Duration::from_secs(10);
/// How long a refresh interrupted by the job's end may take to leave things whole.
const REFRESH_GRACE: Duration = Duration::from_secs(15);

pub async fn run(ctx: &Context, args: RunSettings) -> Result<u8, Failure> {
    let run_started = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let placement = placement::detect(&placement::read_surroundings());
    let job = Job {
        command: args.command.clone(),
        env: job_env(&args).await,
    };
    let copy = copy_target(&placement, &args, args.copy_buffer);
    let listener = signals::Listener::new()
        .map_err(|e| tracing::warn!("cannot forward signals to the job: {e}"))
        .ok();
    let mut started = match supervisor::start(&job, &copy) {
        Ok(started) => started,
        Err(e) => {
            crate::output::error_line(&format!("ddsky: {e}"));
            if args.down {
                teardown(ctx, &args, &placement, None).await;
            }
            return Ok(e.exit_code());
        }
    };
    let first_signal = listener.map(|l| l.forward_to(started.pid()));

    let (stop_refresh, refresh_interrupt) = Interrupt::manual();
    let gate = match &copy {
        Copy::To(to) => to.gate.clone(),
        Copy::Nowhere => None,
    };
    let refresh = async {
        refresh_agent(ctx, &args, &placement, refresh_interrupt).await;
        if let Some(gate) = &gate {
            agent_tails_files(ctx, &run_started).await;
            gate.open();
        }
    };
    let waited = tokio::task::spawn_blocking(move || {
        let code = started.wait();
        (code, started)
    });
    tokio::pin!(refresh);
    tokio::pin!(waited);
    let mut refreshed = false;
    let joined = loop {
        tokio::select! {
            joined = &mut waited => break joined,
            () = &mut refresh, if !refreshed => refreshed = true,
        }
    };
    if !refreshed {
        stop_refresh.raise();
        if tokio::time::timeout(REFRESH_GRACE, &mut refresh)
            .await
            .is_err()
        {
            tracing::warn!("the agent refresh did not end in time after the job; left as it is");
        }
    }
    // Whatever happened to the refresh, the job's files are written now.
    if let Some(gate) = &gate {
        gate.open();
    }
    let (code, started) = match joined {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!("lost track of the job: {e}");
            return Ok(crate::exit::FAILURE);
        }
    };
    // The copy ends before the drain starts (the agent must see the last lines to send them), and
    // within SkyPilot's kill window when a signal ended the job.
    let signalled = first_signal.and_then(|rx| *rx.borrow());
    let copy_grace = match signalled {
        Some(at) => COPY_GRACE.min(KILL_WINDOW.saturating_sub(at.elapsed()) / 2),
        None => COPY_GRACE,
    };
    let report = tokio::task::spawn_blocking(move || started.finish(OUTPUT_GRACE, copy_grace))
        .await
        .ok()
        .flatten();
    if let (Some(report), Copy::To(to)) = (report, &copy) {
        say_how_the_copy_went(&report, to);
    }
    if args.down {
        teardown(ctx, &args, &placement, signalled).await;
    }
    Ok(code)
}

/// The inherited environment with the variables `ddsky env` prints on top; without them (and a
/// warning) when the job's identity cannot be worked out.
async fn job_env(args: &RunSettings) -> Vec<(OsString, OsString)> {
    let mut env = args.inherited_env.clone();
    match env::job_vars(&args.job).await {
        Ok(vars) => {
            for (k, v) in vars {
                env.retain(|(existing, _)| existing.as_os_str() != k.as_str());
                env.push((k.into(), v.into()));
            }
        }
        Err(e) => tracing::warn!("the job runs without ddsky's DD_* variables: {e}"),
    }
    env
}

/// Inside a container whose PID 1 output is not already ddsky's (SkyPilot's runtime mode: an idle
/// bash on a pty, while the job comes in over SSH), the agent collects only PID 1's output: copy
/// the job's there. On a host, the job runs on the VM itself (SkyPilot's default mode) unless
/// `--expect` names its container (task mode: a `docker run` whose own log the agent reads): its
/// output goes to a new pair of files the agent tails (`joblog`). On Kubernetes (the pod's output
/// is SkyPilot's) nothing is copied.
fn copy_target(placement: &Placement, args: &RunSettings, bound: usize) -> Copy {
    const PID1_OUT: &str = "/proc/1/fd/1";
    const PID1_ERR: &str = "/proc/1/fd/2";
    // On a host, or where ddsky cannot name a container it would be in (a VM image's stray
    // /.dockerenv): the job is on the VM.
    if *placement != Placement::Kubernetes && !placement::knows_own_container(placement) {
        return match &args.agent {
            // Only where `up` prepared the directory: an agent on this host tails it.
            Ok(up) if (up.vm_mode || up.expect.is_empty()) && confd_written(up) => {
                vm_files(up, bound)
            }
            _ => Copy::Nowhere,
        };
    }
    let command = &args.command;
    // Only where ddsky can name its container: a VM image's stray /.dockerenv must not send the
    // job's output to the VM's init.
    if !placement::knows_own_container(placement)
        || std::process::id() == 1
        || supervisor::stdout_is(PID1_OUT)
    {
        return Copy::Nowhere;
    }
    let shown = command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    Copy::To(CopyTo {
        stdout: PID1_OUT.into(),
        stderr: PID1_ERR.into(),
        what: "this container's log".into(),
        create: false,
        header: Some(format!("ddsky: the output of `{shown}` follows")),
        split_streams: false,
        cap: None,
        bound,
        gate: None,
        name_when_created: None,
    })
}

/// The job on the VM: this run's own new files under the job log directory, one per stream (the
/// agent's two sources tag them `stream:stdout` and `stream:stderr`), after removing earlier
/// runs' files the agent's registry shows sent to their end.
fn vm_files(up: &UpSettings, bound: usize) -> Copy {
    let jobs = std::path::Path::new(&up.job_log_dir).join(joblog::JOBS_SUBDIR);
    remove_sent_files(&jobs, &up.run_dir);
    Copy::To(CopyTo {
        // Named when created (`name_when_created`).
        stdout: jobs.clone(),
        stderr: jobs.clone(),
        what: format!(
            "{}/<UTC start>-{}.*.log for the agent",
            jobs.display(),
            std::process::id()
        ),
        create: true,
        header: None,
        split_streams: true,
        cap: Some(joblog::FILE_CAP),
        bound,
        // Opened once the agent is known to have added its file sources (see `agent_tails_files`).
        gate: Some(Arc::new(Gate::default())),
        name_when_created: Some(jobs.clone()),
    })
}

fn confd_written(up: &UpSettings) -> bool {
    std::path::Path::new(&up.job_log_dir)
        .join(joblog::CONFD_SUBDIR)
        .join(joblog::CONF_FILE)
        .is_file()
}

/// Earlier runs' files that the agent has sent whole (its registry, in the host's run dir, has
/// their offset at their size): removed, so what ddsky writes does not grow without bound. A file
/// not sent yet (an agent that was stopped without a drain) stays for the next agent to send.
fn remove_sent_files(jobs: &std::path::Path, run_dir: &str) {
    let Ok(text) = std::fs::read_to_string(std::path::Path::new(run_dir).join("registry.json"))
    else {
        return;
    };
    let Ok(registry) = drain::Registry::parse(&text) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(jobs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let seen_as = format!("{}/{name}", joblog::AGENT_JOB_DIR);
        if registry
            .path_offset(&seen_as)
            .is_some_and(|offset| offset >= meta.len())
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::debug!("removed {name}: the agent sent it whole"),
                Err(e) => tracing::debug!("cannot remove {name}: {e}"),
            }
        }
    }
}

fn say_how_the_copy_went(report: &supervisor::CopyReport, to: &CopyTo) {
    let what = &to.what;
    let from = report
        .first_lost_line
        .map(|n| format!(" from line {n} of its output on"))
        .unwrap_or_default();
    if let Some(why) = &report.failure {
        // Refused at the start is a matter of permissions; refused later, PID 1's output went away.
        let hint = if report.copied == 0 && !to.create {
            " A job running as another user needs root, or the group owning PID 1's output (see docs/skypilot.md)"
        } else {
            ""
        };
        tracing::warn!(
            "the job's output was not copied into {what}{from} ({why}; {} lines were, {} were not); it still reaches SkyPilot's log whole.{hint}",
            report.copied,
            report.not_copied()
        );
    } else if report.dropped > 0 || report.stuck {
        let why = match (report.dropped, report.stuck) {
            (0, _) => "it took too little of the job's output in the time left after the job".to_owned(),
            (dropped, false) => format!("the copy buffer's bound was full for {dropped} of them (--copy-buffer raises it)"),
            (dropped, true) => format!("the copy buffer's bound was full for {dropped} of them (--copy-buffer raises it), the rest was still buffered when the time after the job ran out"),
        };
        tracing::warn!(
            "{what} did not keep up{from}: {} lines of the job's output were not copied into it ({} copied; {why}); \
             the job's own output was not affected",
            report.not_copied(),
            report.copied
        );
    } else {
        tracing::debug!("{} lines copied into {what}", report.copied);
    }
}

/// How long a VM-mode run waits for an agent that started after it to add its file sources.
const SOURCES_WAIT: Duration = Duration::from_secs(30);

/// VM mode: returns once a file this run creates will be read whole by the agent. The agent adds its
/// conf.d sources at its start, and a file already there then starts at its END; a file created
/// later is found by its scan and read from the beginning. So when the agent started after this run
/// began (the run's own refresh created or recreated it, e.g. `sky exec` with a new task id), wait
/// until `agent status` lists the job files' source (at most [`SOURCES_WAIT`]); an agent that was up
/// before costs nothing.
async fn agent_tails_files(ctx: &Context, run_started: &str) {
    let Ok(engine) = ctx.connect().await else {
        return;
    };
    let Ok(Some(agent)) = engine.inspect(&ctx.name).await else {
        return;
    };
    // RFC 3339 in UTC on both sides: the text orders like the time.
    if agent
        .state
        .started_at
        .as_deref()
        .is_none_or(|at| at < run_started)
    {
        return;
    }
    let wanted = joblog::source_path(joblog::Stream::Stdout);
    let deadline = Instant::now() + SOURCES_WAIT;
    while Instant::now() < deadline {
        let answer = engine
            .exec(
                &agent.id,
                &["agent", "status", "--json"],
                &["DD_LOG_LEVEL=off"],
            )
            .await;
        if let Ok(out) = answer {
            let listed = crate::agent_output::parse_status_json(&out.stdout)
                .ok()
                .and_then(|s| s.log_sources)
                .is_some_and(|sources| {
                    sources
                        .iter()
                        .any(|s| s.path.as_deref() == Some(wanted.as_str()))
                });
            if listed {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::warn!(
        "the agent did not list the job files' log source within {}s; the job's first lines may not be sent",
        SOURCES_WAIT.as_secs()
    );
}

/// `up --no-wait` for this run's tags, its result logged (stdout is the job's). Never fails: the
/// job runs unmonitored with a warning instead.
async fn refresh_agent(
    ctx: &Context,
    args: &RunSettings,
    placement: &Placement,
    interrupt: Interrupt,
) {
    if *placement == Placement::Kubernetes {
        return;
    }
    let settings = match &args.agent {
        Ok(settings) => UpSettings {
            no_wait: true,
            ..settings.clone()
        },
        Err(problem) => {
            tracing::warn!("monitoring is off for this run: {problem}; the job runs anyway");
            return;
        }
    };
    let refresh_ctx = Context {
        name: ctx.name.clone(),
        docker_host: ctx.docker_host.clone(),
        format: ctx.format,
        agent_timeout: ctx.agent_timeout,
        interrupt,
        results_on_stdout: false,
    };
    match up::run(&refresh_ctx, settings).await {
        Ok(_) => {}
        Err(Failure::Interrupted(_)) => {
            tracing::info!("the job ended before the agent refresh did; it stopped there, leaving nothing half-made")
        }
        Err(e) => tracing::warn!("the agent was not refreshed ({e}); the job runs anyway"),
    }
}

/// `down` after the job: drain, stop, remove, each failure a warning. Within `--down-timeout`, and
/// when a signal came (a cancel), within SkyPilot's kill window from that signal.
async fn teardown(
    ctx: &Context,
    args: &RunSettings,
    placement: &Placement,
    signalled: Option<Instant>,
) {
    if *placement == Placement::Kubernetes {
        return;
    }
    if args.agent.is_err() {
        return;
    }
    let budget = match signalled {
        Some(at) => args
            .down_timeout
            .min(KILL_WINDOW.saturating_sub(at.elapsed())),
        None => args.down_timeout,
    };
    let result = async {
        let engine = ctx.connect().await?;
        let Some(agent) = engine.inspect(&ctx.name).await? else {
            tracing::info!("no agent container named {}; nothing to stop", ctx.name);
            return Ok(());
        };
        if !is_managed(&agent) {
            tracing::warn!(
                "{} was not created by ddsky; left running (use `ddsky down --force`)",
                ctx.name
            );
            return Ok(());
        }
        let ended = down::drain_and_stop(&engine, &agent, budget, !args.no_drain).await?;
        engine.remove(&agent.id).await?;
        let drained = ended
            .drained
            .map(|d| format!("; {}", d.summary()))
            .unwrap_or_default();
        tracing::info!("agent {} stopped and removed{drained}", ctx.name);
        Ok::<(), Failure>(())
    };
    if let Err(e) = result.await {
        tracing::warn!("the agent was not stopped cleanly: {e}");
    }
}
