//! Where ddsky runs: on a host, inside a container (SkyPilot's runtime mode runs setup inside
//! `sky_container`), or on Kubernetes.
//!
//! Pure over plain data: [`read_surroundings`] is the only function that touches the system, and it
//! only reads a handful of files and one environment variable. Everything else takes a
//! [`Surroundings`] (or strings) so the unit tests can feed real samples of `/proc/*/cgroup` and
//! `/proc/self/mountinfo` from every kind of machine. Nothing here panics, whatever the input.
//!
//! How a container is recognised, strongest evidence first:
//! - mountinfo: Docker (and Podman) bind-mount the container's own `/etc/hostname`, `/etc/resolv.conf`
//!   and `/etc/hosts` from a per-container directory, e.g.
//!   `88 71 254:0 /var/lib/docker/containers/<64 hex>/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw`
//!   (4th field: the root inside the source filesystem; 5th: the mount point). This survives cgroup v2
//!   with a private cgroup namespace (where `/proc/self/cgroup` is only `0::/`) and `--net=host` (where
//!   the hostname is the host's). With the data-root on its own filesystem the root reads
//!   `/containers/<id>/...`; rootless Docker `/home/u/.local/share/docker/containers/<id>/...`; Podman
//!   `.../overlay-containers/<id>/userdata/...`.
//! - cgroups: `/docker/<id>` (cgroupfs driver), `/system.slice/docker-<id>.scope` (systemd driver),
//!   `/kubepods/...`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>`, `/lxc/...`.
//! - marker files: `/.dockerenv` (Docker), `/run/.containerenv` (Podman). They are believed on their
//!   own: a false "container" only changes which advice ddsky gives, a false "host" would make it fail
//!   a job. (Note: some CI VMs carry a `/.dockerenv` although PID 1 is their init.)
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use crate::reference::full_container_id;
use std::fs;
use std::path::Path;

/// What the process could read about its surroundings (gathered by [`read_surroundings`]).
/// Missing or unreadable files are `false` / empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (Podman).
    pub containerenv: bool,
    /// `/proc/1/cgroup`.
    pub pid1_cgroup: String,
    /// `/proc/self/cgroup`.
    pub self_cgroup: String,
    /// `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// The UTS hostname, trimmed.
    pub hostname: String,
    /// `KUBERNETES_SERVICE_HOST` is set (and not empty).
    pub kubernetes: bool,
}

/// Reads the files [`detect`] looks at. The only impure function of this module; never fails.
pub fn read_surroundings() -> Surroundings {
    fn text(path: &str) -> String {
        // Lossy: a mount path may hold bytes that are not UTF-8; the parts we look for are ASCII.
        fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
    let mut hostname = text("/proc/sys/kernel/hostname").trim().to_owned();
    if hostname.is_empty() {
        hostname = text("/etc/hostname").trim().to_owned();
    }
    Surroundings {
        dockerenv: Path::new("/.dockerenv").exists(),
        containerenv: Path::new("/run/.containerenv").exists(),
        pid1_cgroup: text("/proc/1/cgroup"),
        self_cgroup: text("/proc/self/cgroup"),
        mountinfo: text("/proc/self/mountinfo"),
        hostname,
        kubernetes: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
    }
}

/// Where ddsky runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Directly on the machine.
    Host,
    /// Inside a container (Docker, Podman, containerd, LXC).
    Container {
        /// The container's full id (64 lowercase hex) when mountinfo or the cgroups name it.
        own_id: Option<String>,
        /// The hostname when it looks like a Docker short id (12 lowercase hex): Docker's default
        /// hostname, unless `--net=host` or `--hostname`. A hint only: match it as an id prefix.
        /// Left out when it is not a prefix of `own_id`.
        id_hint: Option<String>,
    },
    /// In a Kubernetes pod (`KUBERNETES_SERVICE_HOST`): the Datadog Helm chart / Operator's DaemonSet
    /// is the right tool there, not a container started beside the pod.
    Kubernetes,
}

/// Where ddsky runs, from what it could read. Kubernetes wins; then any container evidence
/// (see the module docs); else the host.
/// Whether ddsky runs in a container it can name: then it is really in one (a VM image may carry a
/// stray /.dockerenv) and `self` can be matched.
pub fn knows_own_container(placement: &Placement) -> bool {
    matches!(
        placement,
        Placement::Container {
            own_id: Some(_),
            ..
        } | Placement::Container {
            id_hint: Some(_),
            ..
        }
    )
}

pub fn detect(s: &Surroundings) -> Placement {
    if s.kubernetes {
        return Placement::Kubernetes;
    }
    if container_evidence(s).is_empty() {
        return Placement::Host;
    }
    let own_id = own_container_id(s);
    // A hint that contradicts the id found (`--hostname 0123456789ab`) would only mislead.
    let id_hint = hostname_id_hint(&s.hostname).filter(|hint| {
        own_id
            .as_ref()
            .is_none_or(|id| id.starts_with(hint.as_str()))
    });
    Placement::Container { own_id, id_hint }
}

/// Why [`detect`] believes it runs in a container, one short phrase per piece of evidence (for a
/// debug log line); empty on a host.
pub fn container_evidence(s: &Surroundings) -> Vec<&'static str> {
    let mut why = Vec::new();
    if id_from_mountinfo(&s.mountinfo).is_some() {
        why.push("mountinfo: /etc/hostname, /etc/resolv.conf or /etc/hosts bind-mounted from a container directory");
    }
    if cgroup_names_container(&s.pid1_cgroup) {
        why.push("PID 1's cgroup is a container's");
    }
    if id_from_cgroup(&s.self_cgroup).is_some() {
        why.push("own cgroup names a container id");
    }
    if s.dockerenv {
        why.push("/.dockerenv exists");
    }
    if s.containerenv {
        why.push("/run/.containerenv exists");
    }
    why
}

/// The full id (64 lowercase hex) of the container this process runs in, if anything names it:
/// the mountinfo bind mounts of `/etc/hostname` & co. first (they survive a private cgroup namespace),
/// then this process's cgroup, then PID 1's. On Kubernetes the cgroup comes first, because the pod's
/// `/etc/hostname` belongs to the pod sandbox (the pause container), not to this container.
pub fn own_container_id(s: &Surroundings) -> Option<String> {
    let from_mounts = || id_from_mountinfo(&s.mountinfo);
    let from_cgroups = || id_from_cgroup(&s.self_cgroup).or_else(|| id_from_cgroup(&s.pid1_cgroup));
    if s.kubernetes {
        from_cgroups().or_else(from_mounts)
    } else {
        from_mounts().or_else(from_cgroups)
    }
}

/// The hostname when it is exactly 12 lowercase hex characters (a Docker short id).
fn hostname_id_hint(hostname: &str) -> Option<String> {
    let h = hostname.trim();
    (h.len() == 12 && h.bytes().all(is_lower_hex)).then(|| h.to_owned())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// The 64 hex characters at the start of `s` when they are not followed by another hex character.
fn hex64_prefix(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let head = bytes.get(..64)?;
    if !head.iter().all(u8::is_ascii_hexdigit) || bytes.get(64).is_some_and(u8::is_ascii_hexdigit) {
        return None;
    }
    // The first 64 bytes are ASCII, so 64 is a char boundary.
    Some(&s[..64])
}

/// The mount points a container runtime fills from its per-container directory.
const CONTAINER_FILES: [&str; 3] = ["/etc/hostname", "/etc/resolv.conf", "/etc/hosts"];

/// The container id named by the roots of the `/etc/hostname`, `/etc/resolv.conf` or `/etc/hosts`
/// mounts: `.../containers/<64 hex>/...` (Docker) or `.../overlay-containers/<64 hex>/...` (Podman).
/// Mounts elsewhere are ignored (the agent itself bind-mounts `/var/lib/docker/containers`).
fn id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let mut fields = line.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if !CONTAINER_FILES.contains(&mount_point) {
            return None;
        }
        root.match_indices("containers/").find_map(|(at, pat)| {
            let rest = &root[at + pat.len()..];
            let id = hex64_prefix(rest)?;
            rest[64..].starts_with('/').then(|| id.to_ascii_lowercase())
        })
    })
}

/// The cgroup paths of a `/proc/<pid>/cgroup` file (`hierarchy:controllers:path`, one a line).
fn cgroup_paths(cgroup: &str) -> impl Iterator<Item = &str> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .map(str::trim)
}

/// Per-container cgroup directory names: `<prefix><64 hex>[.scope]`.
const SCOPE_PREFIXES: [&str; 5] = ["docker-", "cri-containerd-", "crio-", "libpod-", "nerdctl-"];

/// The container id a cgroup file names; the innermost one of a path (Docker in Docker), the first
/// line that names one. A bare 64-hex path component counts too (`/docker/<id>`,
/// `/kubepods/besteffort/pod<uid>/<id>`, containerd's `/<namespace>/<id>`, ECS's `/ecs/<task>/<id>`).
pub fn id_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup_paths(cgroup).find_map(|path| {
        path.rsplit('/').find_map(|component| {
            let name = component.strip_suffix(".scope").unwrap_or(component);
            let id = SCOPE_PREFIXES
                .iter()
                .find_map(|prefix| name.strip_prefix(prefix))
                .unwrap_or(name);
            full_container_id(id)
        })
    })
}

/// A cgroup file whose paths run through a container runtime's hierarchy. On a host PID 1 (systemd)
/// sits in `/` or `/init.scope`; daemons' own units (`docker.service`) do not count.
fn cgroup_names_container(cgroup: &str) -> bool {
    id_from_cgroup(cgroup).is_some()
        || cgroup_paths(cgroup).any(|path| {
            path.split('/').any(|c| {
                c == "docker"
                    || c.starts_with("kubepods")
                    || c == "libpod_parent"
                    || c == "lxc"
                    || c.starts_with("lxc.payload")
                    || (c.ends_with(".scope") && SCOPE_PREFIXES.iter().any(|p| c.starts_with(p)))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421";
    const ID2: &str = "8d8e5c3b6f1c4c0b9e7a1f2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3";
    const SANDBOX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn host(pid1: &str, own: &str, mountinfo: &str) -> Surroundings {
        Surroundings {
            pid1_cgroup: pid1.to_owned(),
            self_cgroup: own.to_owned(),
            mountinfo: mountinfo.to_owned(),
            hostname: "ip-172-31-5-10".to_owned(),
            ..Surroundings::default()
        }
    }

    // ---- samples -------------------------------------------------------------------------------

    /// Ubuntu 20.04 EC2 host, cgroup v1 (hybrid), PID 1 = systemd.
    const V1_HOST_PID1: &str = "\
12:hugetlb:/
11:memory:/init.scope
10:cpuset:/
9:devices:/init.scope
8:pids:/init.scope
7:net_cls,net_prio:/
6:blkio:/init.scope
5:perf_event:/
4:freezer:/
3:rdma:/
2:cpu,cpuacct:/init.scope
1:name=systemd:/init.scope
0::/init.scope
";
    /// The same host, a login shell.
    const V1_HOST_SELF: &str = "\
12:hugetlb:/
11:memory:/user.slice/user-1000.slice/session-3.scope
10:cpuset:/
9:devices:/user.slice
8:pids:/user.slice/user-1000.slice/session-3.scope
7:net_cls,net_prio:/
6:blkio:/user.slice
5:perf_event:/
4:freezer:/
3:rdma:/
2:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-3.scope
0::/user.slice/user-1000.slice/session-3.scope
";
    /// A host running Docker containers: overlay and shm mounts of containers, netns, and the
    /// agent-style bind mount of /var/lib/docker/containers - none of them is /etc/hostname & co.
    const HOST_MOUNTINFO: &str = "\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
24 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=8119680k,nr_inodes=2029920,mode=755
28 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,discard,errors=remount-ro
31 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
620 28 0:52 / /var/lib/docker/overlay2/3f1d6c0a9e2b/merged rw,relatime shared:310 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/3f1d6c0a9e2b/diff,workdir=/var/lib/docker/overlay2/3f1d6c0a9e2b/work
652 28 0:55 / /var/lib/docker/containers/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421/mounts/shm rw,nosuid,nodev,noexec,relatime shared:320 - tmpfs shm rw,size=65536k
700 25 0:4 net:[4026532301] /run/docker/netns/6b2a1f0e9d8c rw shared:330 - nsfs nsfs rw
701 28 259:1 /var/lib/docker/containers /mnt/agent/var/lib/docker/containers ro,relatime - ext4 /dev/nvme0n1p1 rw
";

    /// This machine's own container test (Docker 20.10, cgroup v1, cgroupfs driver, fuse-overlayfs):
    /// `docker run -d ddsky-test/metta:latest`, then /proc/<pid>/{cgroup,mountinfo} read from the host.
    const V1_DOCKER_CGROUP: &str = "\
9:name=systemd:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
8:pids:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
7:blkio:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
6:freezer:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
5:devices:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
4:memory:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
3:cpuset:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
2:cpuacct:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
1:cpu:/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
0::/docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421
";
    const V1_DOCKER_MOUNTINFO: &str = "\
71 46 0:39 / / rw,nodev,noatime master:2 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0,default_permissions,allow_other
72 71 0:41 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
73 71 0:42 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
74 73 0:43 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
75 71 0:44 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
76 75 0:45 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
77 76 0:29 /docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
85 76 0:37 /docker/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421 /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,name=systemd
86 73 0:40 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
87 73 0:46 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
88 71 254:0 /var/lib/docker/containers/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
89 71 254:0 /var/lib/docker/containers/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
90 71 254:0 /var/lib/docker/containers/c2d66207092e0be0265bac62cb77bc3efbb69c0b2f73677f6aab6e647666e421/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
91 71 254:0 /run/docker.sock /var/run/docker.sock rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
47 72 0:41 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
52 72 0:42 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
";

    /// Ubuntu 22.04 host, cgroup v2 only.
    const V2_HOST_PID1: &str = "0::/init.scope\n";
    const V2_HOST_SELF: &str = "0::/user.slice/user-1000.slice/session-1.scope\n";

    /// SkyPilot's sky_container on an Ubuntu 22.04 host: cgroup v2, private cgroup namespace
    /// (Docker's default on v2), `--net=host` (hostname is the host's), overlay2, the socket mounted.
    /// Modelled on the layout, not captured (the real captures are in the cgroup v2 section below).
    const V2_PRIVATE_NS_MOUNTINFO: &str = "\
574 476 0:52 / / rw,relatime master:299 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/Q2X7:/var/lib/docker/overlay2/l/ZK4N,upperdir=/var/lib/docker/overlay2/9b1c/diff,workdir=/var/lib/docker/overlay2/9b1c/work,nouserxattr
575 574 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
576 574 0:56 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
579 574 0:58 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
581 579 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
583 576 0:54 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
584 574 259:2 /var/lib/docker/containers/8d8e5c3b6f1c4c0b9e7a1f2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
585 574 259:2 /var/lib/docker/containers/8d8e5c3b6f1c4c0b9e7a1f2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
586 574 259:2 /var/lib/docker/containers/8d8e5c3b6f1c4c0b9e7a1f2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3/hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
587 574 0:25 /docker.sock /var/run/docker.sock rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=3274356k,mode=755,inode64
";

    // ---- detection -----------------------------------------------------------------------------

    #[test]
    fn cgroup_v1_host_is_host() {
        let s = host(V1_HOST_PID1, V1_HOST_SELF, HOST_MOUNTINFO);
        assert_eq!(detect(&s), Placement::Host);
        assert_eq!(own_container_id(&s), None);
        assert!(container_evidence(&s).is_empty());
    }

    #[test]
    fn cgroup_v2_host_is_host() {
        let s = host(V2_HOST_PID1, V2_HOST_SELF, HOST_MOUNTINFO);
        assert_eq!(detect(&s), Placement::Host);
    }

    #[test]
    fn a_hint_that_contradicts_the_id_is_dropped() {
        let s = Surroundings {
            mountinfo: V1_DOCKER_MOUNTINFO.into(),
            hostname: "0123456789ab".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID.into()),
                id_hint: None
            }
        );
        let s = Surroundings {
            dockerenv: true,
            hostname: "0123456789ab".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: None,
                id_hint: Some("0123456789ab".into())
            }
        );
    }

    #[test]
    fn host_with_a_twelve_hex_hostname_is_still_a_host() {
        let mut s = host(V2_HOST_PID1, V2_HOST_SELF, HOST_MOUNTINFO);
        s.hostname = "0123456789ab".into();
        assert_eq!(detect(&s), Placement::Host);
    }

    #[test]
    fn host_daemon_units_do_not_count_as_containers() {
        // dockerd / containerd themselves, should ddsky ever read their cgroup.
        let s = host(
            "0::/system.slice/docker.service\n",
            "0::/system.slice/containerd.service\n",
            "",
        );
        assert_eq!(detect(&s), Placement::Host);
    }

    #[test]
    fn cgroup_v1_docker_container_sample_from_this_machine() {
        let s = Surroundings {
            dockerenv: true,
            pid1_cgroup: V1_DOCKER_CGROUP.into(),
            self_cgroup: V1_DOCKER_CGROUP.into(),
            mountinfo: V1_DOCKER_MOUNTINFO.into(),
            hostname: "c2d66207092e".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID.into()),
                id_hint: Some("c2d66207092e".into())
            }
        );
        assert_eq!(container_evidence(&s).len(), 4);
    }

    #[test]
    fn cgroup_v1_docker_container_found_by_pid1_cgroup_alone() {
        // No marker file, mountinfo unreadable: the cgroups still say it.
        let s = Surroundings {
            pid1_cgroup: V1_DOCKER_CGROUP.into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID.into()),
                id_hint: None
            }
        );
    }

    #[test]
    fn cgroup_v1_systemd_driver() {
        let cg = format!("4:memory:/system.slice/docker-{ID2}.scope\n1:name=systemd:/system.slice/docker-{ID2}.scope\n0::/system.slice/docker-{ID2}.scope\n");
        let s = Surroundings {
            pid1_cgroup: cg.clone(),
            self_cgroup: cg,
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID2.into()),
                id_hint: None
            }
        );
    }

    #[test]
    fn cgroup_v2_private_namespace_found_by_mountinfo() {
        // sky_container: `0::/`, host network (the host's hostname), no /.dockerenv checked.
        let s = Surroundings {
            pid1_cgroup: "0::/\n".into(),
            self_cgroup: "0::/\n".into(),
            mountinfo: V2_PRIVATE_NS_MOUNTINFO.into(),
            hostname: "ip-172-31-5-10".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID2.into()),
                id_hint: None
            }
        );
    }

    #[test]
    fn cgroup_v2_host_cgroupns_systemd_driver() {
        let cg = format!("0::/system.slice/docker-{ID2}.scope\n");
        let s = Surroundings {
            self_cgroup: cg.clone(),
            pid1_cgroup: cg,
            ..Surroundings::default()
        };
        assert_eq!(own_container_id(&s).as_deref(), Some(ID2));
        assert!(matches!(detect(&s), Placement::Container { .. }));
    }

    #[test]
    fn mountinfo_wins_over_cgroup_for_the_id() {
        // Docker in Docker with a shared cgroup namespace: the cgroup names the outer container first.
        let s = Surroundings {
            self_cgroup: format!("0::/docker/{SANDBOX}\n"),
            mountinfo: V2_PRIVATE_NS_MOUNTINFO.into(),
            ..Surroundings::default()
        };
        assert_eq!(own_container_id(&s).as_deref(), Some(ID2));
    }

    #[test]
    fn nested_cgroup_path_gives_the_innermost_id() {
        let s = Surroundings {
            self_cgroup: format!("0::/docker/{SANDBOX}/docker/{ID}\n"),
            ..Surroundings::default()
        };
        assert_eq!(own_container_id(&s).as_deref(), Some(ID));
    }

    #[test]
    fn data_root_on_its_own_filesystem() {
        // /var/lib/docker is a separate volume: the root is relative to it.
        let mi = format!(
            "412 390 259:3 /containers/{ID}/hostname /etc/hostname rw,relatime - xfs /dev/nvme1n1 rw,attr2,inode64\n"
        );
        let s = Surroundings {
            pid1_cgroup: "0::/\n".into(),
            mountinfo: mi,
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID.into()),
                id_hint: None
            }
        );
    }

    #[test]
    fn rootless_docker() {
        let mi = format!("600 580 0:40 /home/ubuntu/.local/share/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/root rw\n");
        assert_eq!(id_from_mountinfo(&mi).as_deref(), Some(ID));
    }

    #[test]
    fn dockerenv_alone_is_believed() {
        // E.g. a CI VM that carries /.dockerenv although PID 1 is its init: a container with no id.
        let s = Surroundings {
            dockerenv: true,
            pid1_cgroup: "9:name=systemd:/\n4:memory:/\n0::/\n".into(),
            self_cgroup: "4:memory:/process_api/8839872300d131d6bfa9ea7ab7b952a1\n0::/\n".into(),
            mountinfo: "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw\n".into(),
            hostname: "vm".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: None,
                id_hint: None
            }
        );
        assert_eq!(container_evidence(&s), vec!["/.dockerenv exists"]);
    }

    #[test]
    fn kubernetes_wins() {
        let s = Surroundings {
            kubernetes: true,
            dockerenv: true,
            pid1_cgroup: V1_DOCKER_CGROUP.into(),
            mountinfo: V1_DOCKER_MOUNTINFO.into(),
            ..Surroundings::default()
        };
        assert_eq!(detect(&s), Placement::Kubernetes);
    }

    #[test]
    fn containerd_kubernetes_pod_ids_come_from_the_cgroup_not_the_sandbox() {
        // cgroup v1 + systemd driver; /etc/hostname comes from the pod sandbox, /etc/hosts from kubelet.
        let cg = format!(
            "11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID2}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID2}.scope\n"
        );
        let mi = format!(
            "1290 1270 259:1 /var/lib/kubelet/pods/6a1b2c3d-4e5f-6789-abcd-ef0123456789/etc-hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p1 rw\n\
             1292 1270 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw\n\
             1293 1270 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{SANDBOX}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p1 rw\n"
        );
        let mut s = Surroundings {
            kubernetes: true,
            pid1_cgroup: cg.clone(),
            self_cgroup: cg,
            mountinfo: mi,
            hostname: "trainer-7d9f8c6b5-x2x9q".into(),
            ..Surroundings::default()
        };
        assert_eq!(detect(&s), Placement::Kubernetes);
        assert_eq!(own_container_id(&s).as_deref(), Some(ID2));
        // Without the variable (a pod with the env stripped) it is still a container, with the right id.
        s.kubernetes = false;
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID2.into()),
                id_hint: None
            }
        );
    }

    #[test]
    fn dockershim_kubernetes_prefers_the_cgroup_over_the_pause_container() {
        let s = Surroundings {
            kubernetes: true,
            self_cgroup: format!("4:memory:/kubepods/besteffort/pod0c1d2e3f-aaaa-bbbb-cccc-0123456789ab/{ID}\n"),
            mountinfo: format!(
                "900 880 259:1 /var/lib/docker/containers/{SANDBOX}/hostname /etc/hostname rw - ext4 /dev/root rw\n"
            ),
            ..Surroundings::default()
        };
        assert_eq!(own_container_id(&s).as_deref(), Some(ID));
    }

    #[test]
    fn kubepods_cgroup_without_an_id_still_means_container() {
        let s = Surroundings {
            pid1_cgroup: "0::/kubepods/besteffort/pod0c1d\n".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: None,
                id_hint: None
            }
        );
    }

    #[test]
    fn podman_rootful_systemd() {
        let s = Surroundings {
            containerenv: true,
            pid1_cgroup: format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            self_cgroup: format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            mountinfo: format!(
                "700 680 0:45 /containers/storage/overlay-containers/{ID}/userdata/hostname /etc/hostname rw,nosuid,nodev - tmpfs tmpfs rw,size=1628636k\n\
                 701 680 0:45 /containers/storage/overlay-containers/{ID}/userdata/.containerenv /run/.containerenv rw,nosuid,nodev - tmpfs tmpfs rw\n"
            ),
            hostname: "c2d66207092e".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID.into()),
                id_hint: Some("c2d66207092e".into())
            }
        );
    }

    #[test]
    fn podman_rootless_and_cgroupfs() {
        let mi = format!("812 790 0:52 /run/user/1000/containers/overlay-containers/{ID2}/userdata/resolv.conf /etc/resolv.conf rw - tmpfs tmpfs rw\n");
        assert_eq!(id_from_mountinfo(&mi).as_deref(), Some(ID2));
        let s = Surroundings {
            pid1_cgroup: format!("3:memory:/libpod_parent/libpod-{ID2}\n"),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: Some(ID2.into()),
                id_hint: None
            }
        );
        let s = Surroundings {
            containerenv: true,
            pid1_cgroup: "0::/\n".into(),
            ..Surroundings::default()
        };
        assert_eq!(
            detect(&s),
            Placement::Container {
                own_id: None,
                id_hint: None
            }
        );
    }

    #[test]
    fn lxc_containers_have_no_docker_id() {
        for cg in ["0::/lxc.payload.build01\n", "4:memory:/lxc/build01\n"] {
            let s = Surroundings {
                pid1_cgroup: cg.into(),
                ..Surroundings::default()
            };
            assert_eq!(
                detect(&s),
                Placement::Container {
                    own_id: None,
                    id_hint: None
                },
                "{cg}"
            );
        }
    }

    #[test]
    fn ids_are_lowercased_and_must_be_exactly_64_hex() {
        let upper = ID.to_uppercase();
        let mi = format!("1 0 0:1 /var/lib/docker/containers/{upper}/hostname /etc/hostname rw - ext4 /dev/x rw\n");
        assert_eq!(id_from_mountinfo(&mi).as_deref(), Some(ID));
        // 65 hex, 63 hex, no trailing slash, or another mount point: not an id.
        for bad in [
            format!("1 0 0:1 /var/lib/docker/containers/{ID}a/hostname /etc/hostname rw - ext4 /dev/x rw"),
            format!("1 0 0:1 /var/lib/docker/containers/{}/hostname /etc/hostname rw - ext4 /dev/x rw", &ID[1..]),
            format!("1 0 0:1 /var/lib/docker/containers/{ID} /etc/hostname rw - ext4 /dev/x rw"),
            format!("1 0 0:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname.bak rw - ext4 /dev/x rw"),
        ] {
            assert_eq!(id_from_mountinfo(&bad), None, "{bad}");
        }
        assert_eq!(id_from_cgroup(&format!("0::/docker/{ID}0\n")), None);
        assert_eq!(
            id_from_cgroup(&format!("0::/docker-{ID}.scope\n")).as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn hostname_hint_is_exactly_twelve_lowercase_hex() {
        assert_eq!(
            hostname_id_hint("c2d66207092e\n").as_deref(),
            Some("c2d66207092e")
        );
        for h in [
            "C2D66207092E",
            "c2d66207092",
            "c2d66207092e0",
            "ip-172-31-5-1",
            "",
            "g2d66207092e",
            "ü2d66207092e",
        ] {
            assert_eq!(hostname_id_hint(h), None, "{h}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "",
            ":",
            "::",
            "\n\n\n",
            "0::",
            "1 2",
            "1 2 3 4 /etc/hostname",
            "1 2 3 containers/ /etc/hostname",
            "1 2 3 /containers/ü€ /etc/hosts x",
            "1 2 3 /containers/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef /etc/hosts",
            "0::/docker/ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€ü€",
            "0::/docker-.scope",
            "\u{0}\u{1}\u{7f}",
        ];
        for a in inputs {
            for b in inputs {
                let s = Surroundings {
                    pid1_cgroup: a.into(),
                    self_cgroup: b.into(),
                    mountinfo: a.to_owned() + "\n" + b,
                    hostname: b.into(),
                    ..Surroundings::default()
                };
                let _ = detect(&s);
                let _ = own_container_id(&s);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            pid1 in "(?s).{0,300}",
            own in "[0-9a-f:/.\\-a-z\n]{0,300}",
            mounts in "([0-9a-fA-F /:.\\-]{0,90}(containers/|/etc/hostname |\n)){0,8}",
            hostname in "\\PC{0,20}",
            flags in proptest::prelude::any::<(bool, bool, bool)>(),
        ) {
            let s = Surroundings {
                dockerenv: flags.0, containerenv: flags.1, kubernetes: flags.2,
                pid1_cgroup: pid1, self_cgroup: own, mountinfo: mounts, hostname,
            };
            let placement = detect(&s);
            if let Placement::Container { own_id: Some(id), .. } = &placement {
                proptest::prop_assert!(full_container_id(id).as_deref() == Some(id.as_str()));
            }
            let _ = crate::tags::cluster_tags(&s.pid1_cgroup);
        }
    }

    #[test]
    fn reads_this_machine_without_failing() {
        let s = read_surroundings();
        let _ = detect(&s);
        assert_eq!(s.hostname.trim(), s.hostname);
    }

    // ---- cgroup v2 hosts: real captures ----------------------------------------------------------
    //
    // SkyPilot's AWS host image is Ubuntu 22.04: cgroup v2, and Docker gives each container a private
    // cgroup namespace, so inside sky_container `/proc/self/cgroup` (and PID 1's) is only `0::/` and
    // its hostname is the host's (`--net=host`). The id must come from mountinfo. This machine runs
    // cgroup v1, so these are captures published by others (cited beside each) plus one of this
    // machine's with `--net=host`; each is cut to the lines that matter, otherwise verbatim.

    /// Docker on a cgroup v2 host (systemd's mount options `nsdelegate,memory_recursiveprot`, an EC2-
    /// style `/dev/root` ext4), private cgroup namespace. Source: DataDog/datadog-go,
    /// statsd/container_test.go, `TestParseMountinfo` (added by DataDog/datadog-go#268, "this
    /// technique stopped working with cgroup v2 which comes with cgroup namespace").
    const V2_DATADOG_GO_ID: &str =
        "0cfa82bf3ab29da271548d6a044e95c948c6fd2f7578fb41833a44ca23da425f";
    const V2_DATADOG_GO_MOUNTINFO: &str = "\
608 554 0:42 / / rw,relatime master:289 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/RQH52YWGJKBXL6THNS7EASIUNY:/var/lib/docker/overlay2/l/EHJME4ZW2BP2W7SGOCNTKY76NI,upperdir=/var/lib/docker/overlay2/241a77e9a6a048e54d5b5700afaeab6071cb5ffef1fd2acbebbf19935a429897/diff,workdir=/var/lib/docker/overlay2/241a77e9a6a048e54d5b5700afaeab6071cb5ffef1fd2acbebbf19935a429897/work
609 608 0:46 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
615 608 0:49 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
623 615 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
626 608 259:1 /var/lib/docker/containers/0cfa82bf3ab29da271548d6a044e95c948c6fd2f7578fb41833a44ca23da425f/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/root rw,discard,errors=remount-ro
627 608 259:1 /var/lib/docker/containers/0cfa82bf3ab29da271548d6a044e95c948c6fd2f7578fb41833a44ca23da425f/hostname /etc/hostname rw,relatime - ext4 /dev/root rw,discard,errors=remount-ro
628 608 259:1 /var/lib/docker/containers/0cfa82bf3ab29da271548d6a044e95c948c6fd2f7578fb41833a44ca23da425f/hosts /etc/hosts rw,relatime - ext4 /dev/root rw,discard,errors=remount-ro
";

    /// A Kubernetes pod on containerd with cgroup v2: `/etc/hostname` comes from the pod SANDBOX's
    /// directory (the pause container's id, not this container's). Same source, whose expected
    /// result is "no id".
    const V2_K8S_SANDBOX_MOUNTINFO: &str = "\
2775 2588 0:310 / / rw,relatime master:760 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/163/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/164/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/164/work
2781 2780 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw
2782 2775 8:1 /var/lib/kubelet/pods/e50f2933-b36b-4e3b-89b1-280707f7bc53/etc-hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw,commit=30
2784 2775 8:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/c5866f3bfef020a8c045540b4a05dd9d193443740be76437a6130c7759ab2076/hostname /etc/hostname rw,nosuid,nodev,relatime - ext4 /dev/sda1 rw,commit=30
2785 2775 8:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/c5866f3bfef020a8c045540b4a05dd9d193443740be76437a6130c7759ab2076/resolv.conf /etc/resolv.conf rw,nosuid,nodev,relatime - ext4 /dev/sda1 rw,commit=30
";

    /// Docker with its data-root on its own filesystem, cgroup v2 (`cat /proc/self/cgroup` printed
    /// `0::/` in the same report). Source: rpm-software-management/mock#986 ("Add docker check for
    /// containers with cgroupv2"), the description's capture.
    const V2_MOCK_ID: &str = "66826257e096f3c9d04f17577dab7ef5d84078c88f18f646fd37050ec5b6b4f6";
    const V2_MOCK_MOUNTINFO: &str = "\
505 496 254:1 /docker/containers/66826257e096f3c9d04f17577dab7ef5d84078c88f18f646fd37050ec5b6b4f6/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
506 496 254:1 /docker/containers/66826257e096f3c9d04f17577dab7ef5d84078c88f18f646fd37050ec5b6b4f6/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
";

    /// A cgroup v2 Docker container whose user bind-mounted their own files over /etc/resolv.conf,
    /// /etc/hostname and /etc/hosts: no container id anywhere in mountinfo. Source:
    /// lucaslorentz/caddy-docker-proxy#207 (comment of 2021-01-06, `docker run -v
    /// "$(pwd)/empty":/etc/hostname ... cat /proc/self/mountinfo`; first lines, the rest cut there).
    const V2_CADDY_NO_ID_MOUNTINFO: &str = "\
1629 1448 0:29 /@/var/lib/docker/btrfs/subvolumes/a8c73e312a758780b3dafd09d3064f578756afb2910e9a564c5f4ebbeccc825a / rw master:1 - btrfs /dev/sda2 rw,lazytime,compress=zstd:3,ssd,discard=async,space_cache,subvolid=4442,subvol=/@/var/lib/docker/btrfs/subvolumes/a8c73e312a758780b3dafd09d3064f578756afb2910e9a564c5f4ebbeccc825a
1630 1629 0:206 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1633 1629 0:209 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1634 1633 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
";

    /// `--net=host` does not take the bind mounts away (Docker still writes the container's own
    /// hostname, hosts and resolv.conf and binds them). Captured on this project's machine (Docker
    /// 20.10, fuse-overlayfs): `docker run --rm --net=host --entrypoint /bin/cat ddsky-test/agent:7
    /// /proc/self/mountinfo`.
    const NET_HOST_ID: &str = "f64f83b394499c3bdcdfff91de630d128caae40ddd0476594ab255554a7f805c";
    const NET_HOST_MOUNTINFO: &str = "\
168 67 0:46 / / rw,nodev,noatime master:4 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0,default_permissions,allow_other
185 168 254:0 /var/lib/docker/containers/f64f83b394499c3bdcdfff91de630d128caae40ddd0476594ab255554a7f805c/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
186 168 254:0 /var/lib/docker/containers/f64f83b394499c3bdcdfff91de630d128caae40ddd0476594ab255554a7f805c/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
187 168 254:0 /var/lib/docker/containers/f64f83b394499c3bdcdfff91de630d128caae40ddd0476594ab255554a7f805c/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
";

    /// sky_container as SkyPilot starts it on a cgroup v2 host: private cgroup namespace (`0::/` for
    /// every process), the host's hostname, no /.dockerenv consulted.
    fn sky_container_on_v2(mountinfo: &str) -> Surroundings {
        Surroundings {
            pid1_cgroup: "0::/\n".into(),
            self_cgroup: "0::/\n".into(),
            mountinfo: mountinfo.into(),
            hostname: "ip-172-31-5-10".into(),
            ..Surroundings::default()
        }
    }

    #[test]
    fn cgroup_v2_docker_capture_names_the_container_through_mountinfo() {
        let s = sky_container_on_v2(V2_DATADOG_GO_MOUNTINFO);
        let want = Placement::Container {
            own_id: Some(V2_DATADOG_GO_ID.into()),
            id_hint: None,
        };
        assert_eq!(detect(&s), want);
        assert!(knows_own_container(&detect(&s)));
        assert_eq!(
            container_evidence(&s).len(),
            1,
            "mountinfo alone: {:?}",
            container_evidence(&s)
        );
    }

    #[test]
    fn cgroup_v2_with_host_network_keeps_the_bind_mounts_that_name_the_container() {
        let s = sky_container_on_v2(NET_HOST_MOUNTINFO);
        assert_eq!(own_container_id(&s).as_deref(), Some(NET_HOST_ID));
        // The socket mounted as SkyPilot's run_options do changes nothing.
        let with_socket = format!(
            "{NET_HOST_MOUNTINFO}188 168 0:25 /docker.sock /var/run/docker.sock rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755\n"
        );
        assert_eq!(
            own_container_id(&sky_container_on_v2(&with_socket)).as_deref(),
            Some(NET_HOST_ID)
        );
    }

    #[test]
    fn cgroup_v2_docker_with_its_data_root_on_its_own_filesystem() {
        let s = sky_container_on_v2(V2_MOCK_MOUNTINFO);
        assert_eq!(own_container_id(&s).as_deref(), Some(V2_MOCK_ID));
    }

    #[test]
    fn cgroup_v2_pod_sandbox_hostname_is_not_taken_for_the_own_id() {
        // The pause container's id would make `--expect self` wait for a container that is not ddsky's.
        let s = sky_container_on_v2(V2_K8S_SANDBOX_MOUNTINFO);
        assert_eq!(own_container_id(&s), None);
        let pod = Surroundings {
            kubernetes: true,
            ..s
        };
        assert_eq!(detect(&pod), Placement::Kubernetes);
    }

    #[test]
    fn cgroup_v2_container_with_the_files_bind_mounted_over_has_no_id_and_does_not_claim_one() {
        // Only /.dockerenv says "container"; with nothing naming it, `self` cannot be expected.
        let s = Surroundings {
            dockerenv: true,
            ..sky_container_on_v2(V2_CADDY_NO_ID_MOUNTINFO)
        };
        let placement = detect(&s);
        assert_eq!(
            placement,
            Placement::Container {
                own_id: None,
                id_hint: None
            }
        );
        assert!(!knows_own_container(&placement));
        // Without the marker file nothing says container at all: a host, never a guessed id.
        assert_eq!(
            detect(&sky_container_on_v2(V2_CADDY_NO_ID_MOUNTINFO)),
            Placement::Host
        );
    }
}
