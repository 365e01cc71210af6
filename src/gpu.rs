//! The GPU decision: whether the agent is given the host's NVIDIA GPUs (`--gpus`), and what Docker's
//! refusal of them means. Pure: the caller says what the host and the daemon have.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

/// `--gpus auto|all|none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GpuMode {
    /// All GPUs when the host has NVIDIA support (an nvidia runtime or /dev/nvidiactl), else none.
    #[default]
    Auto,
    /// All GPUs; an error when the host has no NVIDIA support.
    All,
    /// No GPUs.
    None,
}

/// Whether the agent gets every GPU (DeviceRequest count -1, capability `gpu`, and
/// `DD_GPU_ENABLED=true`). `nvidia_runtime`: the daemon lists a runtime whose name contains
/// "nvidia"; `nvidiactl`: `/dev/nvidiactl` exists. `All` without either: a one-line error naming
/// the fix, to be reported before anything is created.
pub fn gpu_decision(mode: GpuMode, nvidia_runtime: bool, nvidiactl: bool) -> Result<bool, String> {
    let nvidia = nvidia_runtime || nvidiactl;
    match mode {
        GpuMode::None => Ok(false),
        GpuMode::Auto => Ok(nvidia),
        GpuMode::All if nvidia => Ok(true),
        GpuMode::All => Err("--gpus all: this host has no NVIDIA GPU support (the Docker daemon lists no \
             nvidia runtime and /dev/nvidiactl does not exist); install the NVIDIA driver and \
             nvidia-container-toolkit (then `nvidia-ctk runtime configure --runtime=docker` and restart Docker), \
             or use --gpus none"
            .to_owned()),
    }
}

/// Docker's refusal of a GPU request when no runtime on the daemon provides GPUs: the NVIDIA
/// driver may be installed (so /dev/nvidiactl exists) while nvidia-container-toolkit is not set up.
pub fn docker_refused_gpus(cause: &str) -> bool {
    cause.contains("could not select device driver")
}

/// What makes Docker give containers GPUs.
pub const GPU_RUNTIME_FIX: &str = "install nvidia-container-toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_gpu_refusal_is_recognised() {
        assert!(docker_refused_gpus(
            "could not select device driver \"\" with capabilities: [[gpu]] (HTTP 500)"
        ));
        assert!(!docker_refused_gpus("no such image (HTTP 404)"));
    }

    #[test]
    fn gpu_auto_follows_the_host() {
        assert_eq!(gpu_decision(GpuMode::Auto, false, false), Ok(false));
        assert_eq!(gpu_decision(GpuMode::Auto, true, false), Ok(true));
        assert_eq!(gpu_decision(GpuMode::Auto, false, true), Ok(true));
        assert_eq!(gpu_decision(GpuMode::Auto, true, true), Ok(true));
    }

    #[test]
    fn gpu_none_never_requests() {
        for (r, c) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(gpu_decision(GpuMode::None, r, c), Ok(false));
        }
    }

    #[test]
    fn gpu_all_requires_nvidia_support() {
        assert_eq!(gpu_decision(GpuMode::All, true, false), Ok(true));
        assert_eq!(gpu_decision(GpuMode::All, false, true), Ok(true));
        assert_eq!(gpu_decision(GpuMode::All, true, true), Ok(true));
        let err = gpu_decision(GpuMode::All, false, false).unwrap_err();
        assert!(!err.contains('\n'), "one line: {err}");
        assert!(
            err.contains("nvidia-container-toolkit") && err.contains("--gpus none"),
            "{err}"
        );
    }
}
