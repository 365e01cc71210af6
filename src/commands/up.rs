//! `ddsky up`: key, tags, spec, converge the container, wait for health, check discovery.

use super::identity;
use super::{Context, Failure};
use crate::agent::AgentClient;
use crate::agent_output::HealthReport;
use crate::discovery::{self, DiscoveryReport, Pattern, WaitFor};
use crate::engine::{
    short_id, ContainerInfo, CreateOutcome, DockerHost, Engine, EngineError,
};
use crate::exit;
use crate::key::{self, FoundKey, KeyLookup, SecretLookup};
use crate::placement::{self, GpuMode, Placement};
use crate::ports;
use crate::progress::PullReporter;
use crate::reconcile::{self, Action, Decision};
use crate::secrets::AwsSecretStore;
use crate::settings::{PullPolicy, UpSettings, DEFAULT_DOCKER_HOST};
use crate::spec::{self, AgentSettings, AgentSpec, DaemonFacts, NetworkMode};
use crate::startup;
use crate::tags::TagSet;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long a stale agent gets to flush before it is replaced.
const RECREATE_GRACE: Duration = Duration::from_secs(30);
/// Concurrent `up`s can each find the name taken by another (or still being removed by another);
/// rounds with a growing pause settle it within a few seconds.
const CONVERGE_ATTEMPTS: u32 = 12;

pub async fn run(ctx: &Context, args: UpSettings) -> Result<u8, Failure> {
    // The job's identity (which may ask git), the key (which may ask AWS) and Docker are independent:
    // ask all three at once. What each answer means is decided below, in order.
    let (tags, key, engine) = tokio::join!(
        identity::resolve(&args.agent),
        ctx.interrupt.run(find_key(&args)),
        ctx.engine()
    );
    let tags = tags?;
    let placement = placement::detect(&placement::read_surroundings());
    if placement == Placement::Kubernetes {
        let why = "running on Kubernetes (KUBERNETES_SERVICE_HOST is set): there the Datadog Helm chart or Operator runs the agent as a DaemonSet, so ddsky starts none; give the pods the job's tags and the agent's address with `ddsky k8s` where you launch the task (its config.kubernetes.pod_config), and `ddsky env` in run";
        return skip(ctx, &args, &tags, vec![why.to_owned()], false);
    }

    let found = match key? {
        KeyLookup::Found { found, notes } => {
            // A key taken out of a JSON or binary secret is known only now.
            crate::redact::register(found.key.expose());
            notes.iter().for_each(|n| tracing::info!("{n}"));
            found
        }
        KeyLookup::Missing { reasons } => {
            return skip(ctx, &args, &tags, reasons, args.key.require_key)
        }
    };

    let engine = match engine {
        Ok(engine) => Some(engine),
        Err(e) if args.dry_run => {
            tracing::info!("{e}");
            None
        }
        // In a container with no socket and no DOCKER_HOST: the task did not mount the socket. An
        // explicit --docker-host that does not answer is an error like anywhere else.
        Err(Failure::Engine(EngineError::Unreachable { .. }))
            if matches!(placement, Placement::Container { .. })
                && ctx.docker_host == DockerHost::Unix(DEFAULT_DOCKER_HOST.to_owned())
                && !Path::new(DEFAULT_SOCKET).exists() =>
        {
            let why = "ddsky runs inside a container that cannot reach the Docker socket; give the task \
                       `config: {docker: {run_options: [\"-v /var/run/docker.sock:/var/run/docker.sock\"]}}` (SkyPilot), \
                       or run ddsky on the host";
            return skip(ctx, &args, &tags, vec![why.to_owned()], false);
        }
        Err(e) => return Err(e),
    };
    let nvidiactl = Path::new("/dev/nvidiactl").exists();
    // On the host, /dev/nvidiactl is the answer (a registered runtime without a loaded driver could
    // not start the agent anyway). Inside a container the host's devices may be hidden, so the
    // daemon's runtimes are asked, which costs a `GET /info`.
    let ask_daemon = !nvidiactl
        && (args.gpus == GpuMode::All
            || (args.gpus == GpuMode::Auto && placement::knows_own_container(&placement)));
    let nvidia_runtime = match &engine {
        Some(engine) if ask_daemon => engine.has_nvidia_runtime().await?,
        _ => false,
    };
    let gpus =
        placement::gpu_decision(args.gpus, nvidia_runtime, nvidiactl).map_err(Failure::Gpu)?;

    let settings = AgentSettings {
        name: ctx.name.clone(),
        image: args.image.clone(),
        site: args.site.clone(),
        network: args.agent.network,
        apm_port: args.agent.apm_port,
        dogstatsd_port: args.agent.dogstatsd_port,
        tags: tags.tags.clone(),
        env: tags.value_of("env").unwrap_or(&args.agent.env).to_owned(),
        gpus,
        dd_url: args.dd_url.clone(),
        extra_env: args.extra_env.clone(),
    };
    let spec = spec::agent_spec(&settings, &found.key);
    let plan = Plan {
        // --gpus auto never costs the user their monitoring: if Docker refuses the GPUs, this
        // agent (no GPUs) runs instead.
        gpu_fallback: (gpus && args.gpus == GpuMode::Auto).then(|| {
            let without = AgentSettings {
                gpus: false,
                ..settings.clone()
            };
            spec::agent_spec(&without, &found.key)
        }),
        ports: ports::needed(
            settings.network == NetworkMode::Host,
            ports::cmd_port(&settings.extra_env),
            settings.apm_port,
            settings.dogstatsd_port,
        ),
        spec,
    };
    let spec = &plan.spec;

    let engine = match engine {
        Some(engine) if !args.dry_run => engine,
        engine => return dry_run(ctx, engine.as_ref(), &args, &tags, &found, spec).await,
    };
    let patterns = expectations(&args.expect, &placement);
    let (action, id, known) = converge(ctx, &engine, &plan, &args).await?;
    let (healthy, report) = if args.no_wait {
        (None, DiscoveryReport::default())
    } else {
        let (healthy, report) =
            wait_for_agent(ctx, &engine, action, &id, known, &patterns, &args).await?;
        (Some(healthy), report)
    };
    let code = if report.matched_are_discovered() {
        exit::OK
    } else {
        exit::NOT_DISCOVERED
    };

    let summary = UpSummary {
        action,
        name: &ctx.name,
        id: &id,
        image: &args.image,
        tags: &tags.tags,
        api_key: KeySummary::of(&found),
        healthy,
        expected: &report,
    };
    crate::output::emit(ctx.format, &summary, || up_text(&summary));
    Ok(code)
}

/// Waits until the agent is healthy, then until it lists the expected containers that run.
async fn wait_for_agent(
    ctx: &Context,
    engine: &Engine,
    action: Action,
    id: &str,
    known: Option<ContainerInfo>,
    patterns: &[Pattern],
    args: &UpSettings,
) -> Result<(bool, DiscoveryReport), Failure> {
    let agent = AgentClient::new(engine.clone(), id.to_owned());
    let deadline = Instant::now() + args.timeout;
    let started = Instant::now();
    let health = match wait_healthy(
        ctx,
        engine,
        &agent,
        id,
        deadline,
        known,
        !patterns.is_empty(),
    )
    .await
    {
        // An agent this run created that cannot even start would crash-loop forever under
        // unless-stopped: remove it (its last words are in the error) rather than leave it behind.
        Err(Failure::AgentExited {
            name,
            what,
            exit_code,
            last_lines,
            ..
        }) if matches!(action, Action::Create | Action::Recreate) => {
            let removed = engine.remove(id).await.is_ok();
            return Err(Failure::AgentExited {
                name,
                what,
                exit_code,
                last_lines,
                removed,
            });
        }
        other => other?,
    };
    tracing::info!(
        "agent {} healthy after {}",
        ctx.name,
        humantime::format_duration(round(started.elapsed()))
    );

    let look = discovery::wait(
        engine,
        &agent,
        patterns,
        deadline,
        WaitFor::MatchedOnly,
        health.listed_early,
        &ctx.interrupt,
    )
    .await?;
    if let Some(e) = &look.agent_error {
        tracing::warn!("the agent did not list what it discovered in time: {e}");
    }
    Ok((health.report.healthy, look.report))
}

/// The user's patterns, or the default: the Metta job, plus ddsky's own container when ddsky runs in
/// one it can name (a stray /.dockerenv on a VM image must not add a pattern nobody can satisfy).
/// `self` becomes that container's id; asked for where it cannot be known, it is dropped with a warning.
fn expectations(given: &[String], placement: &Placement) -> Vec<Pattern> {
    let defaults: Vec<String> = if placement::knows_own_container(placement) {
        vec!["metta".into(), "self".into()]
    } else {
        vec!["metta".into()]
    };
    let texts = if given.is_empty() { &defaults } else { given };
    texts
        .iter()
        .filter_map(|text| {
            if text != "self" {
                return Some(Pattern::new(text));
            }
            match placement {
                Placement::Container { own_id: Some(id), .. } => Some(Pattern { label: "self".into(), needle: id.clone() }),
                Placement::Container { id_hint: Some(hint), .. } => Some(Pattern { label: "self".into(), needle: hint.clone() }),
                Placement::Container { .. } => {
                    tracing::warn!("cannot tell which container ddsky runs in (no id in its cgroup or mounts); `self` is not checked");
                    None
                }
                _ => {
                    tracing::warn!("ddsky is not running in a container; `--expect self` is ignored");
                    None
                }
            }
        })
        .collect()
}

async fn find_key(args: &UpSettings) -> KeyLookup {
    let env_key = crate::settings::env_var(spec::API_KEY_ENV);
    let store = AwsSecretStore {
        region: args.key.aws_region.clone(),
        timeout: args.key.secret_timeout,
    };
    let secret = (!args.key.no_aws).then(|| SecretLookup {
        store: &store,
        secret_id: &args.key.secret_id,
    });
    key::lookup(env_key.as_deref(), secret).await
}

/// Monitoring is not possible here: say exactly why, create nothing, and succeed (a setup script
/// must not fail for want of monitoring) unless the user asked for strictness.
fn skip(
    ctx: &Context,
    args: &UpSettings,
    tags: &TagSet,
    reasons: Vec<String>,
    strict: bool,
) -> Result<u8, Failure> {
    let reasons_line = reasons.join("; ");
    if strict {
        return Err(Failure::KeyRequired {
            reasons: reasons_line,
        });
    }
    let plan = SkipPlan {
        action: Action::Skip,
        name: &ctx.name,
        image: &args.image,
        tags: &tags.tags,
        api_key: None,
        container: None,
        reasons: &reasons,
    };
    crate::output::emit(ctx.format, &plan, || {
        format!("monitoring skipped, nothing created: {reasons_line}")
    });
    Ok(exit::OK)
}

#[derive(Serialize)]
struct SkipPlan<'a> {
    action: Action,
    name: &'a str,
    image: &'a str,
    tags: &'a [String],
    api_key: Option<KeySummary>,
    container: Option<()>,
    reasons: &'a [String],
}

#[derive(Serialize)]
struct KeySummary {
    source: String,
    ending: String,
}

impl KeySummary {
    fn of(found: &FoundKey) -> Self {
        KeySummary {
            source: found.source.to_string(),
            ending: found.key.ending().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct DryRunPlan<'a> {
    action: Action,
    reason: String,
    name: &'a str,
    image: &'a str,
    tags: &'a [String],
    api_key: KeySummary,
    container: bollard::models::ContainerCreateBody,
}

/// Works out what `up` would do without changing anything. Without a daemon, it assumes no agent.
async fn dry_run(
    ctx: &Context,
    engine: Option<&Engine>,
    args: &UpSettings,
    tags: &TagSet,
    found: &FoundKey,
    spec: &AgentSpec,
) -> Result<u8, Failure> {
    let (action, reason) = match engine {
        None => (
            Action::Create,
            "Docker is not reachable; assuming there is no agent yet".to_owned(),
        ),
        Some(engine) => match reconcile::decide(
            engine.inspect(&ctx.name).await?.as_ref(),
            &spec.hash,
            args.replace,
            false,
        ) {
            Decision::Act(action, why) => (action, why.to_owned()),
            Decision::Foreign { image } => {
                return Err(Failure::Foreign {
                    name: ctx.name.clone(),
                    image,
                    flag: "--replace",
                })
            }
        },
    };
    let plan = DryRunPlan {
        action,
        reason,
        name: &ctx.name,
        image: &args.image,
        tags: &tags.tags,
        api_key: KeySummary::of(found),
        container: spec.redacted_body(),
    };
    crate::output::emit(ctx.format, &plan, || {
        let body = serde_json::to_string_pretty(&plan.container).unwrap_or_default();
        format!(
            "dry run: would {action} agent {name} ({reason})\nimage: {image}\ntags: {tags}\napi key: from {source}, ending {ending}\ncontainer:\n{body}",
            action = plan.action.verb(),
            name = plan.name,
            reason = plan.reason,
            image = plan.image,
            tags = plan.tags.join(" "),
            source = plan.api_key.source,
            ending = plan.api_key.ending,
        )
    });
    Ok(exit::OK)
}

/// What `up` wants: the agent's spec, the spec to fall back to if Docker refuses GPUs
/// (`--gpus auto` only), and the host ports the agent will bind.
struct Plan {
    spec: AgentSpec,
    gpu_fallback: Option<AgentSpec>,
    ports: Vec<ports::NeededPort>,
}

impl Plan {
    /// The spec to compare `existing` with: an agent that fell back to no GPUs (its label says
    /// Docker refused them) stays without GPUs, rather than being recreated to fail again.
    fn wanted(&self, existing: Option<&ContainerInfo>) -> (&AgentSpec, Option<String>) {
        let refused = existing
            .filter(|c| reconcile::is_managed(c))
            .and_then(|c| c.labels.get(spec::LABEL_GPUS_REFUSED));
        match (&self.gpu_fallback, refused) {
            (Some(fallback), Some(why)) => (fallback, Some(why.clone())),
            _ => (&self.spec, None),
        }
    }
}

/// Brings the container to the spec; returns what was done, the container id, and for a no-op the
/// container as just inspected (so the health wait need not ask again).
async fn converge(
    ctx: &Context,
    engine: &Engine,
    plan: &Plan,
    args: &UpSettings,
) -> Result<(Action, String, Option<ContainerInfo>), Failure> {
    let image = &args.image;
    let mut image_checked = false;
    for attempt in 0..CONVERGE_ATTEMPTS {
        if attempt > 0 {
            let pause = Duration::from_millis(50u64 << attempt.min(5));
            ctx.interrupt.run(tokio::time::sleep(pause)).await?;
        }
        let existing = engine.inspect(&plan.spec.name).await?;
        let (spec, gpus_refused) = plan.wanted(existing.as_ref());
        // Refuse a foreign container before anything else happens, a pull included.
        if let Decision::Foreign { image } =
            reconcile::decide(existing.as_ref(), &spec.hash, args.replace, false)
        {
            return Err(Failure::Foreign {
                name: spec.name.clone(),
                image,
                flag: "--replace",
            });
        }
        let mut image_changed = false;
        if args.pull == PullPolicy::Always && !image_checked {
            ensure_image(ctx, engine, image, args.pull).await?;
            image_checked = true;
            if let (Some(c), Some(id)) = (&existing, engine.image_id(image).await?) {
                image_changed = c.image_id != id;
            }
        }
        let (action, why) =
            match reconcile::decide(existing.as_ref(), &spec.hash, args.replace, image_changed) {
                Decision::Foreign { image } => {
                    return Err(Failure::Foreign {
                        name: spec.name.clone(),
                        image,
                        flag: "--replace",
                    })
                }
                Decision::Act(action, why) => (action, why),
            };
        tracing::debug!(?action, why, "deciding what to do");
        match (action, existing) {
            (Action::None, Some(c)) => {
                tracing::info!("agent {} is {why}", spec.name);
                return Ok((Action::None, c.id.clone(), Some(c)));
            }
            (Action::Start, Some(c)) => {
                ports_free(engine, &plan.ports).await?;
                tracing::info!("starting agent {}: {why}", spec.name);
                engine.start(&c.id).await?;
                return Ok((Action::Start, c.id, None));
            }
            (Action::Create | Action::Recreate, existing) => {
                if !image_checked {
                    ensure_image(ctx, engine, image, args.pull).await?;
                    image_checked = true;
                }
                ctx.interrupt.check()?;
                if let Some(old) = existing {
                    tracing::info!("replacing agent {}: {why}", spec.name);
                    engine.stop(&old.id, RECREATE_GRACE).await?;
                    engine.remove(&old.id).await?;
                }
                // After the old agent let go of its ports, before anything new exists. A
                // concurrent `up` may have just created the agent, which holds them now.
                if let Err(taken) = ports_free(engine, &plan.ports).await {
                    if engine.inspect(&spec.name).await?.is_some() {
                        tracing::debug!("another ddsky created {} first; looking again", spec.name);
                        continue;
                    }
                    return Err(taken);
                }
                let (docker_root, start_interval) = engine.daemon_facts().await?;
                let facts = DaemonFacts {
                    docker_root,
                    start_interval,
                    gpus_refused,
                };
                if let Some(id) = create_with_gpu_fallback(engine, spec, plan, facts, args).await? {
                    tracing::info!(
                        "agent {} {} ({})",
                        spec.name,
                        if action == Action::Create {
                            "created"
                        } else {
                            "recreated"
                        },
                        short_id(&id)
                    );
                    return Ok((action, id, None));
                }
                tracing::debug!("another ddsky created {} first; looking again", spec.name);
            }
            // Skip is never decided here; None/Start without a container cannot happen.
            _ => {}
        }
    }
    Err(Failure::Engine(EngineError::Container {
        action: "settle",
        name: plan.spec.name.clone(),
        cause: "it kept changing under concurrent ddsky runs; run `ddsky up` again".into(),
    }))
}

/// Creates and starts the agent; when Docker refuses its GPUs, `--gpus auto` creates the agent
/// without them (and says how to get them), `--gpus all` fails with that fix.
async fn create_with_gpu_fallback(
    engine: &Engine,
    spec: &AgentSpec,
    plan: &Plan,
    facts: DaemonFacts,
    args: &UpSettings,
) -> Result<Option<String>, Failure> {
    let refusal = match create_and_start(engine, &spec.for_daemon(&facts)).await {
        Err(Failure::Engine(EngineError::Container { cause, .. }))
            if placement::docker_refused_gpus(&cause) =>
        {
            cause
        }
        other => return other,
    };
    match &plan.gpu_fallback {
        Some(fallback) if args.gpus == GpuMode::Auto && fallback.hash != spec.hash => {
            tracing::warn!(
                "Docker refused the agent GPUs ({refusal}): the NVIDIA driver is here but Docker has no NVIDIA runtime; \
                 the agent runs without GPU monitoring. To get it: {}, then `ddsky up` again (or --gpus none to silence this)",
                placement::GPU_RUNTIME_FIX
            );
            let facts = DaemonFacts {
                gpus_refused: Some(refusal),
                ..facts
            };
            create_and_start(engine, &fallback.for_daemon(&facts)).await
        }
        _ => Err(Failure::Gpu(format!(
            "Docker refused the agent GPUs: {refusal}; the NVIDIA driver is here but Docker has no NVIDIA runtime: {}, or use --gpus none (--gpus auto falls back to no GPUs by itself); nothing was created",
            placement::GPU_RUNTIME_FIX
        ))),
    }
}

/// Fails, before anything is created or started, when something on the host holds a port the
/// agent will bind: the agent would exit and restart forever.
async fn ports_free(engine: &Engine, needed: &[ports::NeededPort]) -> Result<(), Failure> {
    let mut conflicts = ports::conflicts(needed);
    if conflicts.is_empty() {
        return Ok(());
    }
    name_containers(engine, &mut conflicts).await;
    Err(Failure::PortsTaken(ports::explain(
        &conflicts,
        needed.iter().any(|n| n.port_is_cmd()),
    )))
}

/// Names the containers that hold ports, where the holder is in one.
pub async fn name_containers(engine: &Engine, conflicts: &mut [ports::Conflict]) {
    for holder in conflicts.iter_mut().flat_map(|c| c.holders.iter_mut()) {
        if let Some(id) = holder.container_id.clone() {
            if let Ok(Some(c)) = engine.inspect(&id).await {
                holder.container_name = Some(c.name);
            }
        }
    }
}

/// Creates and starts the container as one step: if start fails, the new container is removed again
/// so no half-made agent is left. `None` when another process took the name first.
async fn create_and_start(engine: &Engine, spec: &AgentSpec) -> Result<Option<String>, Failure> {
    let start_interval = spec
        .body
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.start_interval.is_some());
    let id = match engine
        .create(&spec.name, spec.body.clone(), start_interval)
        .await?
    {
        CreateOutcome::Created { id } => id,
        CreateOutcome::NameTaken => return Ok(None),
    };
    if let Err(e) = engine.start(&id).await {
        if let Err(cleanup) = engine.remove(&id).await {
            tracing::warn!("could not remove the container that failed to start: {cleanup}");
        }
        return Err(e.into());
    }
    Ok(Some(id))
}

async fn ensure_image(
    ctx: &Context,
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
) -> Result<(), Failure> {
    let present = engine.image_id(image).await?.is_some();
    match (policy, present) {
        (PullPolicy::Never, false) => Err(EngineError::ImageMissing {
            image: image.to_owned(),
        }
        .into()),
        (PullPolicy::Never | PullPolicy::Missing, true) => Ok(()),
        (PullPolicy::Missing | PullPolicy::Always, _) => {
            tracing::info!("pulling {image}");
            let mut reporter = PullReporter::new(image, crate::output::stderr_is_terminal());
            let result = ctx
                .interrupt
                .run(engine.pull(image, |p| reporter.update(p)))
                .await;
            reporter.finish();
            Ok(result??)
        }
    }
}

/// Waits until `agent health` passes. A no-op `up` (`unchanged`: the container as converge saw it)
/// trusts Docker's `healthy`, which costs no exec: Docker runs the image's check every 30 s, so that
/// word is at most a check old, and turning healthy is what the image's check lags on, not what it
/// lets through. Anything else (`starting`, `unhealthy`, no word) is asked of the agent itself.
async fn wait_healthy(
    ctx: &Context,
    engine: &Engine,
    agent: &AgentClient,
    id: &str,
    deadline: Instant,
    unchanged: Option<ContainerInfo>,
    list_early: bool,
) -> Result<startup::Healthy, Failure> {
    if unchanged
        .as_ref()
        .is_some_and(|c| c.state.health.as_deref() == Some("healthy"))
    {
        return Ok(startup::Healthy {
            report: HealthReport {
                healthy: true,
                ..Default::default()
            },
            listed_early: None,
        });
    }
    startup::wait_healthy(
        engine,
        agent,
        id,
        deadline,
        unchanged,
        list_early,
        &ctx.interrupt,
    )
    .await
    .map_err(|e| Failure::from_health_wait(&ctx.name, e))
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 100 * 100)
}

#[derive(Serialize)]
struct UpSummary<'a> {
    action: Action,
    name: &'a str,
    id: &'a str,
    image: &'a str,
    tags: &'a [String],
    api_key: KeySummary,
    /// `null` with --no-wait.
    healthy: Option<bool>,
    #[serde(flatten)]
    expected: &'a DiscoveryReport,
}

fn up_text(s: &UpSummary<'_>) -> String {
    let verb = match s.action {
        Action::Create => "created",
        Action::Recreate => "recreated",
        Action::Start => "started",
        Action::None | Action::Skip => "already up",
    };
    let health = match s.healthy {
        Some(true) => "healthy",
        Some(false) => "not healthy",
        None => "not waiting for health (--no-wait; check with `ddsky status`)",
    };
    let mut lines = vec![
        format!(
            "agent {} {verb} ({}, image {}), {health}",
            s.name,
            short_id(s.id),
            s.image
        ),
        format!("tags: {}", s.tags.join(" ")),
        format!(
            "api key: from {}, ending {}",
            s.api_key.source, s.api_key.ending
        ),
    ];
    for m in s.expected.expected.iter().flat_map(|e| e.matches.iter()) {
        let state = discovery::discovered_word(m.discovered);
        lines.push(format!(
            "container {} ({}, {}) {state}",
            m.name,
            short_id(&m.id),
            m.image
        ));
    }
    for pattern in s.expected.unmatched() {
        lines.push(format!(
            "no running container matches {pattern:?} yet: the agent will discover it when it starts; check with `ddsky status --expect {pattern} --wait 2m`"
        ));
    }
    if !s.expected.matched_are_discovered() {
        let pending: Vec<&str> = s.expected.undiscovered().map(|m| m.name.as_str()).collect();
        lines.push(format!(
            "not discovered in time: {}; see `ddsky status`",
            pending.join(", ")
        ));
    }
    lines.join("\n")
}
