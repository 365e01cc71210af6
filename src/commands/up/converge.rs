//! Converge: decide what the agent container needs (reconcile::decide) and do it, through the
//! [`ContainerEngine`] trait so the decisions are unit-tested against a fake daemon.

use super::Failure;
use crate::engine::{ContainerEngine, ContainerInfo, CreateOutcome, EngineError};
use crate::gpu;
use crate::interrupt::Interrupt;
use crate::ports;
use crate::progress::PullReporter;
use crate::reconcile::{self, Action, Decision};
use crate::reference::short_id;
use crate::registry::{self, ImageList, PullRefusal};
use crate::settings::PullPolicy;
use crate::spec::{self, AgentSpec, DaemonFacts};
use std::time::Duration;

/// How long a stale agent gets to flush before it is replaced.
const RECREATE_GRACE: Duration = Duration::from_secs(30);
/// How long a stale agent gets to send the job's logs before it is stopped. The new agent resumes
/// from the registry it leaves (the run dir is the host's), so this only covers a lost run dir.
const RECREATE_DRAIN: Duration = Duration::from_secs(10);
/// Concurrent `up`s can each find the name taken by another (or still being removed by another);
/// rounds with a growing pause settle it within a few seconds.
const CONVERGE_ATTEMPTS: u32 = 12;

/// What `up` wants: the agent's spec, the spec to fall back to if Docker refuses GPUs
/// (`--gpus auto` only), the host ports the agent will bind, and how to treat the image and a
/// foreign container of the same name.
pub struct Plan {
    pub spec: AgentSpec,
    pub gpu_fallback: Option<AgentSpec>,
    pub ports: Vec<ports::NeededPort>,
    /// The references to try, in order (`--image`, else the default list for the cloud).
    pub images: ImageList,
    /// How long a pull may go without progress before the next reference is tried.
    pub pull_timeout: Duration,
    pub pull: PullPolicy,
    /// --replace: a container of that name that ddsky did not create may be replaced.
    pub replace: bool,
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

/// What converge did.
#[derive(Debug)]
pub struct Converged {
    pub action: Action,
    pub id: String,
    /// For a no-op, the container as just inspected (so the health wait need not ask again).
    pub unchanged: Option<ContainerInfo>,
    /// The reference the agent runs (the entry of the list that was present or pulled).
    pub image: String,
}

/// Brings the container to the plan's spec.
pub async fn converge<E: ContainerEngine>(
    engine: &E,
    interrupt: &Interrupt,
    plan: &Plan,
) -> Result<Converged, Failure> {
    let mut image_checked: Option<String> = None;
    for attempt in 0..CONVERGE_ATTEMPTS {
        if attempt > 0 {
            let pause = Duration::from_millis(50u64 << attempt.min(5));
            interrupt.run(tokio::time::sleep(pause)).await?;
        }
        let existing = engine.inspect(&plan.spec.name).await?;
        let (spec, gpus_refused) = plan.wanted(existing.as_ref());
        // Refuse a foreign container before anything else happens, a pull included.
        if let Decision::Foreign { image } =
            reconcile::decide(existing.as_ref(), &spec.hash, plan.replace, false)
        {
            return Err(Failure::Foreign {
                name: spec.name.clone(),
                image,
                flag: "--replace",
            });
        }
        let mut image_changed = false;
        if plan.pull == PullPolicy::Always && image_checked.is_none() {
            let image = ensure_image(engine, interrupt, plan).await?;
            // The same agent from another mirror has the same image id: no change.
            if let (Some(c), Some(id)) = (&existing, engine.image_id(&image).await?) {
                image_changed = c.image_id != id;
            }
            image_checked = Some(image);
        }
        let (action, why) =
            match reconcile::decide(existing.as_ref(), &spec.hash, plan.replace, image_changed) {
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
                return Ok(Converged {
                    action: Action::None,
                    id: c.id.clone(),
                    image: c.image.clone(),
                    unchanged: Some(c),
                });
            }
            (Action::Start, Some(c)) => {
                ports_free(engine, &plan.ports).await?;
                tracing::info!("starting agent {}: {why}", spec.name);
                engine.start(&c.id).await?;
                return Ok(Converged {
                    action: Action::Start,
                    id: c.id,
                    image: c.image,
                    unchanged: None,
                });
            }
            (Action::Create | Action::Recreate, existing) => {
                let image = match &image_checked {
                    Some(image) => image.clone(),
                    None => {
                        let image = ensure_image(engine, interrupt, plan).await?;
                        image_checked = Some(image.clone());
                        image
                    }
                };
                interrupt.check()?;
                if let Some(old) = existing {
                    tracing::info!("replacing agent {}: {why}", spec.name);
                    if old.state.running && reconcile::is_managed(&old) {
                        crate::drain::drain_and_log(engine, &old, RECREATE_DRAIN).await;
                    }
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
                let spec = &spec.with_image(&image);
                if let Some(id) =
                    create_with_gpu_fallback(engine, spec, plan, &image, facts).await?
                {
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
                    return Ok(Converged {
                        action,
                        id,
                        image,
                        unchanged: None,
                    });
                }
                tracing::debug!("another ddsky created {} first; looking again", spec.name);
            }
            // Skip is never decided here; None/Start without a container cannot happen.
            _ => {}
        }
    }
    Err(Failure::LostRaces {
        name: plan.spec.name.clone(),
        attempts: CONVERGE_ATTEMPTS,
    })
}

/// Creates and starts the agent; when Docker refuses its GPUs, `--gpus auto` (the plan has a
/// fallback) creates the agent without them and says how to get them; otherwise it fails with that fix.
async fn create_with_gpu_fallback<E: ContainerEngine>(
    engine: &E,
    spec: &AgentSpec,
    plan: &Plan,
    image: &str,
    facts: DaemonFacts,
) -> Result<Option<String>, Failure> {
    let refusal = match create_and_start(engine, &spec.for_daemon(&facts)).await {
        Err(Failure::Engine(EngineError::Container { cause, .. }))
            if gpu::docker_refused_gpus(&cause.to_string()) =>
        {
            cause.to_string()
        }
        other => return other,
    };
    match &plan.gpu_fallback {
        Some(fallback) if fallback.hash != spec.hash => {
            tracing::warn!(
                "Docker refused the agent GPUs ({refusal}): the NVIDIA driver is here but Docker has no NVIDIA runtime; \
                 the agent runs without GPU monitoring. To get it: {}, then `ddsky down && ddsky up` (or --gpus none to silence this)",
                gpu::GPU_RUNTIME_FIX
            );
            let facts = DaemonFacts {
                gpus_refused: Some(refusal),
                ..facts
            };
            create_and_start(engine, &fallback.with_image(image).for_daemon(&facts)).await
        }
        _ => Err(Failure::Gpu(format!(
            "Docker refused the agent GPUs: {refusal}; the NVIDIA driver is here but Docker has no NVIDIA runtime: {}, or use --gpus none (--gpus auto falls back to no GPUs by itself); nothing was created",
            gpu::GPU_RUNTIME_FIX
        ))),
    }
}

/// Fails, before anything is created or started, when something on the host holds a port the
/// agent will bind: the agent would exit and restart forever.
async fn ports_free<E: ContainerEngine>(
    engine: &E,
    needed: &[ports::NeededPort],
) -> Result<(), Failure> {
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
pub async fn name_containers<E: ContainerEngine>(engine: &E, conflicts: &mut [ports::Conflict]) {
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
async fn create_and_start<E: ContainerEngine>(
    engine: &E,
    spec: &AgentSpec,
) -> Result<Option<String>, Failure> {
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

/// Makes one reference of the list present and returns it: under `--pull missing|never` the
/// first one already present is used as it is; otherwise each is pulled in turn until one
/// succeeds, one line per refusal naming the registry and why. All refused: nothing is created.
async fn ensure_image<E: ContainerEngine>(
    engine: &E,
    interrupt: &Interrupt,
    plan: &Plan,
) -> Result<String, Failure> {
    let images = plan.images.entries();
    if plan.pull != PullPolicy::Always {
        for image in images {
            if engine.image_id(image).await?.is_some() {
                return Ok(image.clone());
            }
        }
    }
    if plan.pull == PullPolicy::Never {
        return Err(EngineError::ImageMissing {
            image: plan.images.to_string(),
        }
        .into());
    }
    let mut refusals = Vec::new();
    for (i, image) in images.iter().enumerate() {
        tracing::info!("pulling {image}");
        let mut reporter = PullReporter::new(image, crate::output::stderr_is_terminal());
        let result = interrupt
            .run(pull_bounded(engine, image, plan.pull_timeout, &mut |p| {
                reporter.update(p)
            }))
            .await;
        reporter.finish();
        let (kind, why) = match result? {
            Ok(()) => return Ok(image.clone()),
            // One reference: no fallback, the daemon's error as it always was.
            Err(PullError::Engine(e)) if images.len() == 1 => return Err(e.into()),
            Err(PullError::Stalled) => (
                PullRefusal::TimedOut,
                format!(
                    "no progress for {}",
                    humantime::format_duration(plan.pull_timeout)
                ),
            ),
            Err(PullError::Engine(e)) => {
                let cause = match &e {
                    EngineError::Pull { cause, .. } => cause.to_string(),
                    other => other.to_string(),
                };
                (registry::classify(&cause), cause)
            }
        };
        let registry = registry::registry_of(image);
        let next = images
            .get(i + 1)
            .map(|n| format!("; trying {n}"))
            .unwrap_or_default();
        tracing::warn!(
            "registry {registry} refused {image}: {} ({why}){next}",
            kind.describe()
        );
        refusals.push(format!("{registry} ({image}): {} ({why})", kind.describe()));
    }
    Err(Failure::PullsRefused {
        refusals: refusals.join("; "),
    })
}

enum PullError {
    Engine(EngineError),
    /// No progress message within the bound: a registry that never answers.
    Stalled,
}

/// One pull, ended when it goes `stall` without a progress message (a registry that accepts the
/// connection and never answers would otherwise hold `up` forever).
async fn pull_bounded<E: ContainerEngine>(
    engine: &E,
    image: &str,
    stall: Duration,
    on_progress: &mut dyn FnMut(crate::engine::PullProgress),
) -> Result<(), PullError> {
    let last = std::cell::Cell::new(tokio::time::Instant::now());
    let mut report = |p| {
        last.set(tokio::time::Instant::now());
        on_progress(p)
    };
    let pull = engine.pull(image, &mut report);
    let watchdog = async {
        loop {
            let deadline = last.get() + stall;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = pull => result.map_err(PullError::Engine),
        () = watchdog => Err(PullError::Stalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ContainerState, ExecOutput, PullProgress, RunningContainer};
    use crate::key::test_key;
    use crate::spec::{AgentSettings, NetworkMode};
    use bollard::models::ContainerCreateBody;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const IMAGE: &str = "datadog/agent:7";

    /// A daemon in memory: containers by name, the images present, and every call in order.
    #[derive(Default)]
    struct FakeEngine {
        containers: RefCell<HashMap<String, ContainerInfo>>,
        images: RefCell<HashMap<String, String>>,
        calls: RefCell<Vec<String>>,
        /// `create` answers 409 this many times (a concurrent `up` took the name).
        name_taken: RefCell<u32>,
        /// `create` fails like Docker without an NVIDIA runtime when the body asks for GPUs.
        refuse_gpus: bool,
        next_id: RefCell<u32>,
        /// Pulls of these references fail with the daemon's message.
        refuse_pulls: HashMap<String, String>,
        /// Pulls of these references never answer.
        hang_pulls: Vec<String>,
        /// Files as every container sees them (the agent's registry, the job logs), by path.
        files: RefCell<HashMap<String, Vec<u8>>>,
    }

    impl FakeEngine {
        fn with_image() -> Self {
            let fake = FakeEngine::default();
            fake.images
                .borrow_mut()
                .insert(IMAGE.into(), "sha256:img1".into());
            fake
        }

        fn add(&self, name: &str, labels: HashMap<String, String>, running: bool) {
            let info = container(name, labels, running);
            self.containers.borrow_mut().insert(name.into(), info);
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }

        fn did(&self, what: &str) -> bool {
            self.calls.borrow().iter().any(|c| c.starts_with(what))
        }

        fn log(&self, call: String) {
            self.calls.borrow_mut().push(call);
        }
    }

    fn container(name: &str, labels: HashMap<String, String>, running: bool) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-id"),
            name: name.into(),
            image: IMAGE.into(),
            image_id: "sha256:img1".into(),
            labels,
            state: ContainerState {
                status: if running { "running" } else { "exited" }.into(),
                running,
                restarting: false,
                health: None,
                restart_count: 0,
                started_at: None,
                finished_at: None,
                exit_code: None,
                error: None,
                oom_killed: false,
            },
            binds: vec![],
            mounts: vec![],
            pid_mode: None,
            cgroupns_mode: None,
            network_mode: None,
            cmd_port: None,
            log_path: None,
            created: None,
        }
    }

    impl ContainerEngine for FakeEngine {
        async fn all_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
            self.log("list containers".into());
            Ok(self
                .containers
                .borrow()
                .values()
                .map(|c| RunningContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                })
                .collect())
        }

        async fn file_size(&self, id: &str, path: &str) -> Result<Option<u64>, EngineError> {
            self.log(format!("size {path} in {id}"));
            Ok(self.files.borrow().get(path).map(|f| f.len() as u64))
        }

        async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
            self.log(format!("read {path} in {id}"));
            Ok(self.files.borrow().get(path).cloned())
        }

        /// An agent image without the commands asked for: the drain then waits for every log.
        async fn exec(
            &self,
            container: &str,
            cmd: &[&str],
            _env: &[&str],
        ) -> Result<ExecOutput, EngineError> {
            self.log(format!("exec {} in {container}", cmd.join(" ")));
            Ok(ExecOutput {
                exit_code: 127,
                stdout: String::new(),
                stderr: format!("{}: not found", cmd[0]),
            })
        }
        async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
            self.log(format!("inspect {name}"));
            let containers = self.containers.borrow();
            Ok(containers
                .get(name)
                .or_else(|| containers.values().find(|c| c.id == name))
                .cloned())
        }

        async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
            Ok(self.images.borrow().get(image).cloned())
        }

        async fn pull(
            &self,
            image: &str,
            _on_progress: &mut dyn FnMut(PullProgress),
        ) -> Result<(), EngineError> {
            self.log(format!("pull {image}"));
            if self.hang_pulls.iter().any(|h| h == image) {
                std::future::pending::<()>().await;
            }
            if let Some(message) = self.refuse_pulls.get(image) {
                return Err(EngineError::Pull {
                    image: image.into(),
                    cause: message.clone().into(),
                });
            }
            self.images
                .borrow_mut()
                .insert(image.into(), "sha256:img2".into());
            Ok(())
        }

        async fn create(
            &self,
            name: &str,
            body: ContainerCreateBody,
            _start_interval_api: bool,
        ) -> Result<CreateOutcome, EngineError> {
            self.log(format!("create {name}"));
            let wants_gpus = body
                .host_config
                .as_ref()
                .and_then(|h| h.device_requests.as_ref())
                .is_some_and(|d| !d.is_empty());
            if self.refuse_gpus && wants_gpus {
                return Err(EngineError::Container {
                    action: "create",
                    name: name.into(),
                    cause: "could not select device driver \"\" with capabilities: [[gpu]]".into(),
                });
            }
            if *self.name_taken.borrow() > 0 {
                *self.name_taken.borrow_mut() -= 1;
                return Ok(CreateOutcome::NameTaken);
            }
            *self.next_id.borrow_mut() += 1;
            let mut info = container(name, body.labels.unwrap_or_default(), false);
            info.image = body.image.unwrap_or_default();
            info.id = format!("new{}", self.next_id.borrow());
            let id = info.id.clone();
            self.containers.borrow_mut().insert(name.into(), info);
            Ok(CreateOutcome::Created { id })
        }

        async fn start(&self, id: &str) -> Result<(), EngineError> {
            self.log(format!("start {id}"));
            for c in self.containers.borrow_mut().values_mut() {
                if c.id == id {
                    c.state.running = true;
                    c.state.status = "running".into();
                }
            }
            Ok(())
        }

        async fn stop(&self, id: &str, _grace: Duration) -> Result<(), EngineError> {
            self.log(format!("stop {id}"));
            Ok(())
        }

        async fn remove(&self, id: &str) -> Result<(), EngineError> {
            self.log(format!("remove {id}"));
            self.containers.borrow_mut().retain(|_, c| c.id != id);
            Ok(())
        }

        async fn daemon_facts(&self) -> Result<(String, bool), EngineError> {
            Ok(("/var/lib/docker".into(), true))
        }
    }

    fn settings(gpus: bool) -> AgentSettings {
        AgentSettings {
            name: "dd-agent".into(),
            image: IMAGE.into(),
            site: "datadoghq.com".into(),
            network: NetworkMode::Host,
            apm_port: spec::DEFAULT_APM_PORT,
            dogstatsd_port: spec::DEFAULT_DOGSTATSD_PORT,
            tags: vec!["env:production".into()],
            env: "production".into(),
            gpus,
            dd_url: None,
            extra_env: vec![],
            run_dir: crate::spec::AGENT_RUN_DIR.into(),
            daemon: spec::DaemonAccess::DefaultSocket,
            job_logs: None,
        }
    }

    fn plan(pull: PullPolicy, replace: bool) -> Plan {
        let key = test_key(&"a".repeat(32));
        Plan {
            spec: spec::agent_spec(&settings(false), &key),
            gpu_fallback: None,
            ports: vec![],
            images: ImageList::parse(IMAGE).unwrap(),
            pull_timeout: Duration::from_secs(60),
            pull,
            replace,
        }
    }

    /// `--gpus auto` on a host with the driver: GPUs wanted, the no-GPU spec as fallback.
    fn gpu_auto_plan() -> Plan {
        let key = test_key(&"a".repeat(32));
        Plan {
            spec: spec::agent_spec(&settings(true), &key),
            gpu_fallback: Some(spec::agent_spec(&settings(false), &key)),
            ..plan(PullPolicy::Missing, false)
        }
    }

    fn labels_of(spec: &AgentSpec) -> HashMap<String, String> {
        spec.body.labels.clone().unwrap_or_default()
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn no_agent_is_created_and_started() {
        let fake = FakeEngine::with_image();
        let out = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Missing, false),
        ))
        .unwrap();
        assert_eq!(out.action, Action::Create);
        assert_eq!(out.id, "new1");
        assert!(fake.did("create dd-agent") && fake.did("start new1"));
        assert!(
            !fake.did("pull"),
            "the image is present: {:?}",
            fake.calls()
        );
    }

    #[test]
    fn a_missing_image_is_pulled_first_and_never_means_nothing_is_created() {
        let fake = FakeEngine::default();
        let out = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Missing, false),
        ))
        .unwrap();
        assert_eq!(out.action, Action::Create);
        assert_eq!(fake.calls()[1], format!("pull {IMAGE}"));

        let fake = FakeEngine::default();
        let err = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Never, false),
        ))
        .unwrap_err();
        assert!(
            matches!(err, Failure::Engine(EngineError::ImageMissing { .. })),
            "{err}"
        );
        assert!(!fake.did("create"));
    }

    #[test]
    fn an_up_to_date_running_agent_is_left_alone() {
        let fake = FakeEngine::with_image();
        let plan = plan(PullPolicy::Missing, false);
        fake.add("dd-agent", labels_of(&plan.spec), true);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.action, Action::None);
        assert_eq!(out.id, "dd-agent-id");
        assert!(
            out.unchanged.is_some(),
            "the health wait reuses this inspect"
        );
        assert_eq!(fake.calls(), ["inspect dd-agent"]);
    }

    #[test]
    fn a_stopped_agent_is_started() {
        let fake = FakeEngine::with_image();
        let plan = plan(PullPolicy::Missing, false);
        fake.add("dd-agent", labels_of(&plan.spec), false);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.action, Action::Start);
        assert!(fake.did("start dd-agent-id") && !fake.did("create"));
    }

    #[test]
    fn a_stale_agent_is_stopped_removed_and_recreated() {
        let fake = FakeEngine::with_image();
        let plan = plan(PullPolicy::Missing, false);
        let mut stale = labels_of(&plan.spec);
        stale.insert(spec::LABEL_SPEC_HASH.into(), "old".into());
        fake.add("dd-agent", stale, true);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.action, Action::Recreate);
        let calls = fake.calls();
        let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
        assert!(at("list containers") < at("stop dd-agent-id"));
        assert!(at("stop dd-agent-id") < at("remove dd-agent-id"));
        assert!(at("remove dd-agent-id") < at("create dd-agent"));
    }

    /// The drain runs for real against the fake: the stale agent is stopped only once its registry
    /// says the job's log was sent.
    #[test]
    fn a_stale_agent_is_stopped_after_its_registry_says_the_job_log_was_sent() {
        const JOB_ID: &str = "3c0a7f4d2b9e8c1a6f5d4e3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";
        let fake = FakeEngine::with_image();
        let plan = plan(PullPolicy::Missing, false);
        let mut stale = labels_of(&plan.spec);
        stale.insert(spec::LABEL_SPEC_HASH.into(), "old".into());
        fake.add("dd-agent", stale, true);
        let log_path = format!("/var/lib/docker/containers/{JOB_ID}/{JOB_ID}-json.log");
        let mut job = container("metta-job", HashMap::new(), true);
        job.id = JOB_ID.into();
        job.log_path = Some(log_path.clone());
        fake.containers.borrow_mut().insert("metta-job".into(), job);
        fake.files
            .borrow_mut()
            .insert(log_path.clone(), vec![b'x'; 20480]);
        let registry =
            format!(r#"{{"Version":2,"Registry":{{"file:{log_path}":{{"Offset":"20480"}}}}}}"#);
        fake.files
            .borrow_mut()
            .insert(spec::REGISTRY_PATH.into(), registry.into_bytes());
        run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        let calls = fake.calls();
        let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
        let registry_read = format!("read {} in dd-agent-id", spec::REGISTRY_PATH);
        assert!(at(&format!("size {log_path} in dd-agent-id")) < at(&registry_read));
        assert!(at(&registry_read) < at("stop dd-agent-id"));
    }

    #[test]
    fn a_foreign_container_is_refused_before_any_pull_unless_replace() {
        let fake = FakeEngine::default();
        fake.add("dd-agent", HashMap::new(), true);
        let err = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Always, false),
        ))
        .unwrap_err();
        assert!(matches!(err, Failure::Foreign { .. }), "{err}");
        assert_eq!(
            fake.calls(),
            ["inspect dd-agent"],
            "nothing pulled, stopped or created"
        );

        let out = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Always, true),
        ))
        .unwrap();
        assert_eq!(out.action, Action::Recreate);
        assert!(fake.did("remove dd-agent-id"));
    }

    #[test]
    fn pull_always_recreates_an_agent_on_an_older_image() {
        let fake = FakeEngine::with_image();
        let plan = plan(PullPolicy::Always, false);
        fake.add("dd-agent", labels_of(&plan.spec), true);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.action, Action::Recreate, "the pull brought sha256:img2");
        assert_eq!(
            fake.calls()
                .iter()
                .filter(|c| c.starts_with("pull"))
                .count(),
            1
        );
    }

    #[test]
    fn losing_the_name_to_a_concurrent_up_looks_again() {
        let fake = FakeEngine::with_image();
        *fake.name_taken.borrow_mut() = 1;
        let out = run(converge(
            &fake,
            &Interrupt::never(),
            &plan(PullPolicy::Missing, false),
        ))
        .unwrap();
        assert_eq!(out.action, Action::Create);
        assert_eq!(
            fake.calls()
                .iter()
                .filter(|c| c.starts_with("create"))
                .count(),
            2
        );
    }

    /// Concurrent `up`s that always get there first: every round is lost, then ddsky gives up with
    /// its own error (exit 1) instead of looping, having created and started nothing. The clock is
    /// tokio's paused one, so the ~13 s of growing pauses take no real time.
    #[test]
    fn losing_every_race_gives_up_with_its_own_error() {
        let fake = FakeEngine::with_image();
        *fake.name_taken.borrow_mut() = u32::MAX;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (result, paused_for) = runtime.block_on(async {
            let started = tokio::time::Instant::now();
            let result = converge(
                &fake,
                &Interrupt::never(),
                &plan(PullPolicy::Missing, false),
            )
            .await;
            (result, started.elapsed())
        });
        let failure = result.expect_err("every race lost");
        assert!(
            matches!(
                &failure,
                Failure::LostRaces { name, attempts } if name == "dd-agent" && *attempts == CONVERGE_ATTEMPTS
            ),
            "{failure}"
        );
        assert_eq!(failure.exit_code(), crate::exit::FAILURE);
        assert!(failure.to_string().contains("run `ddsky up` again"));
        let creates = fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        assert_eq!(creates, CONVERGE_ATTEMPTS as usize);
        assert!(!fake.did("start"), "{:?}", fake.calls());
        // 50 ms doubling up to 1.6 s, then 1.6 s per round: 12.7 s in all (the timer wheel may
        // round each pause up to its next millisecond).
        assert!(
            paused_for >= Duration::from_millis(12_700) && paused_for < Duration::from_secs(13),
            "{paused_for:?}"
        );
    }

    #[test]
    fn gpus_refused_under_auto_fall_back_to_an_agent_without_them() {
        let fake = FakeEngine {
            refuse_gpus: true,
            ..FakeEngine::with_image()
        };
        let out = run(converge(&fake, &Interrupt::never(), &gpu_auto_plan())).unwrap();
        assert_eq!(out.action, Action::Create);
        let agent = fake.containers.borrow()["dd-agent"].clone();
        assert!(
            agent.labels.contains_key(spec::LABEL_GPUS_REFUSED),
            "the label keeps the next up from retrying GPUs"
        );

        // The next `up` compares with the fallback: nothing to do.
        let again = run(converge(&fake, &Interrupt::never(), &gpu_auto_plan())).unwrap();
        assert_eq!(again.action, Action::None);
    }

    #[test]
    fn gpus_refused_without_a_fallback_create_nothing() {
        let fake = FakeEngine {
            refuse_gpus: true,
            ..FakeEngine::with_image()
        };
        let plan = Plan {
            gpu_fallback: None,
            ..gpu_auto_plan()
        };
        let err = run(converge(&fake, &Interrupt::never(), &plan)).unwrap_err();
        assert!(matches!(err, Failure::Gpu(_)), "{err}");
        assert!(fake.containers.borrow().is_empty());
    }

    const RATE_LIMITED: &str = "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits";
    const SERVER_ERROR: &str = "received unexpected HTTP status: 500 Internal Server Error";

    fn list_plan(list: &str, pull: PullPolicy) -> Plan {
        let key = test_key(&"a".repeat(32));
        let images = ImageList::parse(list).unwrap();
        Plan {
            spec: spec::agent_spec(
                &AgentSettings {
                    image: images.identity(),
                    ..settings(false)
                },
                &key,
            ),
            images,
            ..plan(pull, false)
        }
    }

    fn refusing(pairs: &[(&str, &str)]) -> FakeEngine {
        FakeEngine {
            refuse_pulls: pairs
                .iter()
                .map(|(i, m)| (i.to_string(), m.to_string()))
                .collect(),
            ..FakeEngine::default()
        }
    }

    #[test]
    fn refused_pulls_fall_back_to_the_next_registry_and_the_mirror_is_no_change() {
        let fake = refusing(&[
            ("a.io/agent:7", RATE_LIMITED),
            ("b.io/agent:7", SERVER_ERROR),
        ]);
        let plan = list_plan(
            "a.io/agent:7,b.io/agent:7,c.io/agent:7",
            PullPolicy::Missing,
        );
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.action, Action::Create);
        assert_eq!(out.image, "c.io/agent:7");
        let pulls: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("pull"))
            .collect();
        assert_eq!(
            pulls,
            [
                "pull a.io/agent:7",
                "pull b.io/agent:7",
                "pull c.io/agent:7"
            ]
        );
        let agent = fake.containers.borrow()["dd-agent"].clone();
        assert_eq!(
            agent.image, "c.io/agent:7",
            "created from the one that answered"
        );
        assert_eq!(agent.labels[spec::LABEL_SPEC_HASH], plan.spec.hash);

        // Next time a.io answers: the agent from c.io is the same agent.
        let fake_again = FakeEngine::with_image();
        fake_again
            .containers
            .borrow_mut()
            .insert("dd-agent".into(), agent);
        let again = run(converge(&fake_again, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(again.action, Action::None);
        assert_eq!(again.image, "c.io/agent:7");
        assert!(!fake_again.did("pull"));
    }

    #[test]
    fn every_registry_refusing_creates_nothing_and_names_each_answer() {
        let fake = refusing(&[
            ("a.io/agent:7", RATE_LIMITED),
            ("127.0.0.1:5000/agent:7", SERVER_ERROR),
            ("datadog/agent:7", "manifest unknown: manifest unknown"),
        ]);
        let plan = list_plan(
            "a.io/agent:7,127.0.0.1:5000/agent:7,datadog/agent:7",
            PullPolicy::Missing,
        );
        let err = run(converge(&fake, &Interrupt::never(), &plan)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Failure::PullsRefused { .. }), "{text}");
        assert_eq!(err.exit_code(), crate::exit::FAILURE);
        for want in [
            "a.io (a.io/agent:7): rate limited (toomanyrequests",
            "127.0.0.1:5000 (127.0.0.1:5000/agent:7): server error (received unexpected HTTP status: 500",
            "docker.io (datadog/agent:7): image not found",
            "nothing was created",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        assert!(!fake.did("create"));
    }

    #[test]
    fn an_entry_already_present_is_used_without_pulling() {
        let fake = FakeEngine::default();
        fake.images
            .borrow_mut()
            .insert("b.io/agent:7".into(), "sha256:b".into());
        let plan = list_plan("a.io/agent:7,b.io/agent:7", PullPolicy::Missing);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.image, "b.io/agent:7");
        assert!(!fake.did("pull"), "{:?}", fake.calls());

        // --pull always tries the list from the top.
        let fake = FakeEngine::default();
        let plan = list_plan("a.io/agent:7,b.io/agent:7", PullPolicy::Always);
        let out = run(converge(&fake, &Interrupt::never(), &plan)).unwrap();
        assert_eq!(out.image, "a.io/agent:7");

        // --pull never: none present is an error naming the list.
        let fake = FakeEngine::default();
        let plan = list_plan("a.io/agent:7,b.io/agent:7", PullPolicy::Never);
        let err = run(converge(&fake, &Interrupt::never(), &plan)).unwrap_err();
        assert!(
            err.to_string().contains("a.io/agent:7, b.io/agent:7"),
            "{err}"
        );
    }

    /// A registry that never answers holds the pull only for the bound, then the next is tried
    /// (tokio's paused clock: no real waiting).
    #[test]
    fn a_registry_that_never_answers_is_left_after_the_bound() {
        let fake = FakeEngine {
            hang_pulls: vec!["a.io/agent:7".into()],
            ..FakeEngine::default()
        };
        let plan = list_plan("a.io/agent:7,b.io/agent:7", PullPolicy::Missing);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let out = runtime
            .block_on(converge(&fake, &Interrupt::never(), &plan))
            .unwrap();
        assert_eq!(out.image, "b.io/agent:7");
        assert!(fake.did("pull a.io/agent:7"));
    }
}
