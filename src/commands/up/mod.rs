//! `ddsky up`, by job: gather the inputs (tags, key, Docker) and build the plan here, then
//! [`converge`] the container, wait until it is [`ready`], and [`report`] what was done.

mod converge;
mod ready;
mod report;

pub use converge::name_containers;

use super::identity;
use super::{Context, Failure};
use crate::discovery::DiscoveryReport;
use crate::engine::{DockerHost, Engine, EngineError};
use crate::exit;
use crate::gpu::{self, GpuMode};
use crate::joblog;
use crate::key::{self, FoundKey, KeyLookup, SecretLookup};
use crate::placement::{self, Placement};
use crate::ports;
use crate::reconcile::{self, Action, Decision};
use crate::registry::{self, ImageList};
use crate::secrets::AwsSecretStore;
use crate::settings::{PullPolicy, UpSettings, DEFAULT_DOCKER_HOST};
use crate::spec::{self, AgentSettings, AgentSpec, DaemonAccess, NetworkMode};
use crate::tags::TagSet;
use converge::Plan;
use std::path::Path;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

pub async fn run(ctx: &Context, args: UpSettings) -> Result<u8, Failure> {
    // The job's identity (which may ask git), the key (which may ask AWS) and Docker are independent:
    // ask all three at once. What each answer means is decided below, in order.
    let (tags, key, engine) = tokio::join!(
        identity::resolve(&args.agent),
        ctx.interrupt.run(find_key(&args)),
        ctx.engine()
    );
    let tags = tags?;
    // The default list follows the cloud SkyPilot reports (the `cloud` tag, from SKYPILOT_CLUSTER_INFO).
    let images = args
        .image
        .clone()
        .unwrap_or_else(|| registry::default_images(tags.value_of("cloud")));
    let placement = placement::detect(&placement::read_surroundings());
    if placement == Placement::Kubernetes {
        let why = "running on Kubernetes (KUBERNETES_SERVICE_HOST is set): there the Datadog Helm chart or Operator runs the agent as a DaemonSet, so ddsky starts none; give the pods the job's tags and the agent's address with `ddsky k8s` where you launch the task (its config.kubernetes.pod_config), and `ddsky env` in run";
        return skip(ctx, &images, &tags, vec![why.to_owned()], false);
    }

    let found = match key? {
        KeyLookup::Found { found, notes } => {
            // A key taken out of a JSON or binary secret is known only now.
            crate::redact::register(found.key.expose());
            notes.iter().for_each(|n| tracing::info!("{n}"));
            found
        }
        KeyLookup::Missing { reasons } => {
            return skip(ctx, &images, &tags, reasons, args.key.require_key)
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
            return skip(ctx, &images, &tags, vec![why.to_owned()], false);
        }
        Err(e) => return Err(e),
    };
    let gpus = gpus_wanted(args.gpus, engine.as_ref(), &placement).await?;

    let settings = AgentSettings {
        name: ctx.name.clone(),
        image: images.identity(),
        site: args.site.clone(),
        network: args.agent.network,
        apm_port: args.agent.apm_port,
        dogstatsd_port: args.agent.dogstatsd_port,
        tags: tags.tags.clone(),
        env: tags.value_of("env").unwrap_or(&args.agent.env).to_owned(),
        gpus,
        dd_url: args.dd_url.clone(),
        extra_env: args.extra_env.clone(),
        run_dir: args.run_dir.clone(),
        daemon: daemon_access(&ctx.docker_host, &placement),
        job_logs: job_logs(ctx, &args, &placement, &tags),
    };
    if settings.daemon != DaemonAccess::DefaultSocket {
        tracing::info!(
            "the agent watches the daemon ddsky talks to: {}",
            settings.daemon.describe()
        );
    }
    let spec = spec::agent_spec(&settings, &found.key);
    // On the VM itself the job has no container: health is all there is to wait for.
    let patterns = if args.vm_mode && args.expect.is_empty() {
        Vec::new()
    } else {
        ready::expectations(&args.expect, &placement)
    };
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
        images: images.clone(),
        pull_timeout: args.pull_timeout,
        pull: args.pull,
        replace: args.replace,
    };

    let engine = match engine {
        Some(engine) if !args.dry_run => engine,
        engine => {
            return dry_run(
                ctx,
                engine.as_ref(),
                &args,
                &images,
                &tags,
                &found,
                &plan.spec,
            )
            .await
        }
    };
    let converged = converge::converge(&engine, &ctx.interrupt, &plan).await?;
    let (healthy, discovered) = if args.no_wait {
        (None, DiscoveryReport::default())
    } else {
        let waiting = ready::Waiting {
            name: &ctx.name,
            id: &converged.id,
            action: converged.action,
            unchanged: converged.unchanged,
            timeout: args.timeout,
        };
        let (healthy, discovered) =
            ready::wait_for_agent(&engine, &ctx.interrupt, waiting, &patterns).await?;
        (Some(healthy), discovered)
    };
    let code = if discovered.matched_are_discovered() {
        exit::OK
    } else {
        exit::NOT_DISCOVERED
    };

    let summary = report::Up {
        action: converged.action,
        name: &ctx.name,
        id: &converged.id,
        image: &converged.image,
        tags: &tags.tags,
        api_key: report::KeySummary::of(&found),
        healthy,
        expected: &discovered,
    };
    ctx.emit(&summary, || summary.text());
    Ok(code)
}

/// Whether the agent gets the GPUs. On the host, /dev/nvidiactl is the answer (a registered runtime
/// without a loaded driver could not start the agent anyway). Inside a container the host's devices
/// may be hidden, so the daemon's runtimes are asked, which costs a `GET /info`.
async fn gpus_wanted(
    mode: GpuMode,
    engine: Option<&Engine>,
    placement: &Placement,
) -> Result<bool, Failure> {
    let nvidiactl = Path::new("/dev/nvidiactl").exists();
    let ask_daemon = !nvidiactl
        && (mode == GpuMode::All
            || (mode == GpuMode::Auto && placement::knows_own_container(placement)));
    let nvidia_runtime = match engine {
        Some(engine) if ask_daemon => engine.has_nvidia_runtime().await?,
        _ => false,
    };
    gpu::gpu_decision(mode, nvidia_runtime, nvidiactl).map_err(Failure::Gpu)
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
    images: &ImageList,
    tags: &TagSet,
    reasons: Vec<String>,
    strict: bool,
) -> Result<u8, Failure> {
    if strict {
        return Err(Failure::KeyRequired {
            reasons: reasons.join("; "),
        });
    }
    let skipped = report::Skipped::new(&ctx.name, images.first(), &tags.tags, &reasons);
    ctx.emit(&skipped, || skipped.text());
    Ok(exit::OK)
}

/// Works out what `up` would do without changing anything. Without a daemon, it assumes no agent.
async fn dry_run(
    ctx: &Context,
    engine: Option<&Engine>,
    args: &UpSettings,
    images: &ImageList,
    tags: &TagSet,
    found: &FoundKey,
    spec: &AgentSpec,
) -> Result<u8, Failure> {
    // Which entries are here already (`None`: Docker not asked).
    let mut present = Vec::new();
    for image in images.entries() {
        present.push(match engine {
            Some(engine) => Some(engine.image_id(image).await?.is_some()),
            None => None,
        });
    }
    let entries = report::ImageEntry::list(images, &present);
    let image = report::ImageEntry::would_use(&entries, args.pull == PullPolicy::Always);
    let spec = &spec.with_image(image);
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
    let plan = report::DryRun {
        action,
        reason,
        name: &ctx.name,
        image,
        images: entries.clone(),
        tags: &tags.tags,
        api_key: report::KeySummary::of(found),
        container: spec.redacted_body(),
    };
    crate::output::emit(ctx.format, &plan, || plan.text());
    Ok(exit::OK)
}

/// How the agent reaches the daemon ddsky talks to. On the host a unix socket other than
/// /var/run/docker.sock is mounted in its place, and a tcp:// daemon is passed on as DOCKER_HOST
/// (with the TLS settings ddsky has). Inside a container (one ddsky can name: a VM image's stray
/// /.dockerenv does not count) the paths ddsky sees are not the host's: the agent gets the host's
/// /var/run/docker.sock, as Datadog's recipe has it.
/// On a host, with the local daemon: the job log directory the agent mounts, its conf.d written
/// first (the agent reads conf.d once, at its start, so it must be there before the agent is
/// created). Anything that fails here is one warning: the agent runs without the file sources.
fn job_logs(
    ctx: &Context,
    args: &UpSettings,
    placement: &Placement,
    tags: &TagSet,
) -> Option<String> {
    // On a host (or where ddsky cannot name a container it would be in: a VM image's stray
    // /.dockerenv), with a local daemon that resolves the mounts on this machine.
    if *placement == Placement::Kubernetes
        || placement::knows_own_container(placement)
        || !matches!(ctx.docker_host, DockerHost::Unix(_))
    {
        return None;
    }
    let dir = args.job_log_dir.clone();
    if args.dry_run {
        return Some(dir);
    }
    let service = tags.value_of("service").unwrap_or(&args.agent.service);
    let text = joblog::confd_yaml(&tags.tags, service);
    let prepare = || -> std::io::Result<()> {
        let base = Path::new(&dir);
        let confd = base.join(joblog::CONFD_SUBDIR);
        let file = confd.join(joblog::CONF_FILE);
        // Already prepared for these tags (a no-op `up`, `ddsky run`'s refresh): nothing to do; a
        // job directory that went bad since is `ddsky run`'s to report, once.
        if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        std::fs::create_dir_all(base.join(joblog::JOBS_SUBDIR))?;
        std::fs::create_dir_all(&confd)?;
        // Whole or not at all: an agent starting meanwhile reads the old file or the new one.
        let tmp = confd.join(format!(".{}.{}", joblog::CONF_FILE, std::process::id()));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &file)
    };
    match prepare() {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(
                "cannot prepare {dir} for the job's output ({e}): a job run on this VM with `ddsky run` will not have its lines in Datadog; give --job-log-dir a directory this user may write"
            );
            None
        }
    }
}

fn daemon_access(host: &DockerHost, placement: &Placement) -> DaemonAccess {
    if *placement == Placement::Kubernetes || placement::knows_own_container(placement) {
        return DaemonAccess::DefaultSocket;
    }
    match host {
        DockerHost::Unix(url) => {
            let path = url.trim_start_matches("unix://");
            let same =
                |a: &str, b: &str| match (Path::new(a).canonicalize(), Path::new(b).canonicalize())
                {
                    (Ok(a), Ok(b)) => a == b,
                    _ => a == b,
                };
            if same(path, DEFAULT_SOCKET) {
                DaemonAccess::DefaultSocket
            } else {
                DaemonAccess::Socket(path.to_owned())
            }
        }
        DockerHost::Http(url) => DaemonAccess::Tcp {
            host: url.clone(),
            tls_verify: crate::settings::env_var("DOCKER_TLS_VERIFY").filter(|v| !v.is_empty()),
            cert_path: crate::settings::env_var("DOCKER_CERT_PATH").filter(|v| !v.is_empty()),
        },
    }
}
