//! Who holds the ports the agent needs, read from the kernel's socket tables (`/proc/net/*`) of
//! ddsky's network namespace: the host's, where ddsky runs on the host or with the host network
//! (SkyPilot's runtime mode). Nothing is sent to any port: a DogStatsD datagram would become a
//! (billable) custom metric in the user's account.
//!
//! The real agent binds its command API on localhost:5001 (`DD_CMD_PORT`), DogStatsD on 8125/udp
//! and APM on 8126/tcp; with the host network these are the host's ports, and if 5001 is taken
//! (a host-installed agent, a leftover agent container) it exits, `Error while starting api
//! server, exiting`, and Docker restarts it forever. Parsing is pure; [`holders`] reads the tables
//! and looks up the processes.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The agent's command API port unless `DD_CMD_PORT` moves it.
pub const DEFAULT_CMD_PORT: u16 = 5001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A port the agent needs, and what for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededPort {
    pub port: u16,
    pub proto: Proto,
    pub what: &'static str,
}

impl NeededPort {
    /// The agent's command API (only needed on the host network).
    pub fn port_is_cmd(&self) -> bool {
        self.what == CMD_API
    }
}

const CMD_API: &str = "the agent's command API";

impl fmt::Display for NeededPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.port, self.proto, self.what)
    }
}

/// A bound socket from a `/proc/net/{tcp,udp}[6]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSocket {
    pub local: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// A process holding a socket, as far as ddsky may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// `comm` and the start of the command line.
    pub command: Option<String>,
    /// The container the process runs in, from its cgroup.
    pub container_id: Option<String>,
    /// The container's name, when Docker knows it.
    pub container_name: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "process {pid} ({cmd})")?,
            (Some(pid), None) => write!(f, "process {pid}")?,
            _ => f.write_str("a process ddsky may not see (run as root to name it)")?,
        }
        match (&self.container_name, &self.container_id) {
            (Some(name), _) => write!(f, " in container {name}"),
            (None, Some(id)) => write!(f, " in container {}", crate::reference::short_id(id)),
            _ => Ok(()),
        }
    }
}

/// A needed port that something already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub needed: NeededPort,
    pub holders: Vec<Holder>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is taken", self.needed)?;
        if !self.holders.is_empty() {
            let names: Vec<String> = self.holders.iter().map(ToString::to_string).collect();
            write!(f, " by {}", names.join(", "))?;
        }
        Ok(())
    }
}

impl Conflict {
    /// The holder looks like a Datadog Agent (a host package or another agent container).
    pub fn looks_like_an_agent(&self) -> bool {
        self.holders.iter().any(|h| {
            h.command
                .as_deref()
                .is_some_and(|c| c.contains("datadog") || c.starts_with("agent"))
        })
    }
}

/// The ports the agent will bind on the host: with the host network its command API
/// (`cmd_port`), APM and DogStatsD; on a bridge only the two published on 127.0.0.1.
pub fn needed(
    host_network: bool,
    cmd_port: u16,
    apm_port: u16,
    dogstatsd_port: u16,
) -> Vec<NeededPort> {
    let mut ports = Vec::new();
    if host_network {
        ports.push(NeededPort {
            port: cmd_port,
            proto: Proto::Tcp,
            what: CMD_API,
        });
    }
    ports.push(NeededPort {
        port: apm_port,
        proto: Proto::Tcp,
        what: "APM",
    });
    ports.push(NeededPort {
        port: dogstatsd_port,
        proto: Proto::Udp,
        what: "DogStatsD",
    });
    ports
}

/// `DD_CMD_PORT` as the user gave it to the agent (`--agent-env`), else 5001.
pub fn cmd_port(extra_env: &[(String, String)]) -> u16 {
    extra_env
        .iter()
        .rev()
        .find(|(k, _)| k == "DD_CMD_PORT")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CMD_PORT)
}

/// The one-line error for ports taken: each port with its holder, and what to do.
pub fn explain(conflicts: &[Conflict], host_network: bool) -> String {
    let taken: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    let agent_here = conflicts.iter().any(Conflict::looks_like_an_agent)
        || conflicts.iter().any(|c| c.needed.port_is_cmd());
    let mut fix = String::from("stop what holds it");
    if agent_here {
        fix += " (a Datadog Agent already runs here? a host package: `sudo systemctl stop datadog-agent`; a leftover container: `docker rm -f <name>`)";
    }
    if host_network {
        fix += ", or run ddsky's agent in its own network namespace with `--network bridge`";
        if conflicts.iter().any(|c| !c.needed.port_is_cmd()) {
            fix += " and move APM / DogStatsD with --apm-port / --dogstatsd-port";
        }
    } else {
        fix += ", or move APM / DogStatsD with --apm-port / --dogstatsd-port";
    }
    format!(
        "the agent cannot start on this host: {}; nothing was created: {fix}",
        taken.join("; ")
    )
}

/// Parses a `/proc/net/{tcp,tcp6,udp,udp6}` table. TCP sockets count only when listening (state
/// 0A); UDP sockets when bound (any state: an unconnected UDP socket is 07).
pub fn parse_table(text: &str, proto: Proto) -> Vec<BoundSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if proto == Proto::Tcp && *state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(BoundSocket {
                local: parse_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints an address as the 32-bit words it holds in memory (network byte order),
/// each read as a little-endian number (x86, arm64) and printed in hex.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_le_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Sockets on `port` that the agent's own socket would collide with: on the port, bound to the
/// loopback, the wildcard, or (the agent's APM and DogStatsD take every address) anything.
pub fn on_port(sockets: &[BoundSocket], port: u16) -> Vec<&BoundSocket> {
    sockets.iter().filter(|s| s.port == port).collect()
}

/// The `socket:[inode]` links of a process's fds name the sockets it holds.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Reads this network namespace's tables for `proto`.
fn read_tables(proto: Proto) -> Vec<BoundSocket> {
    let names: [&str; 2] = match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    names
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_table(&t, proto))
        .collect()
}

/// Whether `port` is bound (udp) or listened on (tcp) in this network namespace; `None` when the
/// tables cannot be read.
pub fn is_bound(port: u16, proto: Proto) -> Option<bool> {
    let readable = match proto {
        Proto::Tcp => std::path::Path::new("/proc/net/tcp").exists(),
        Proto::Udp => std::path::Path::new("/proc/net/udp").exists(),
    };
    readable.then(|| !on_port(&read_tables(proto), port).is_empty())
}

/// The needed ports that something holds now, each with the processes holding it.
pub fn conflicts(needed: &[NeededPort]) -> Vec<Conflict> {
    let tcp = read_tables(Proto::Tcp);
    let udp = read_tables(Proto::Udp);
    let mut found: Vec<(NeededPort, Vec<u64>)> = needed
        .iter()
        .filter_map(|n| {
            let table = if n.proto == Proto::Tcp { &tcp } else { &udp };
            let inodes: Vec<u64> = on_port(table, n.port).iter().map(|s| s.inode).collect();
            (!inodes.is_empty()).then(|| (n.clone(), inodes))
        })
        .collect();
    if found.is_empty() {
        return vec![];
    }
    let owners = socket_owners(found.iter().flat_map(|(_, i)| i.iter().copied()).collect());
    found
        .drain(..)
        .map(|(needed, inodes)| {
            let mut holders: Vec<Holder> = Vec::new();
            for inode in inodes {
                match owners.iter().find(|(i, _)| *i == inode) {
                    Some((_, h)) if !holders.contains(h) => holders.push(h.clone()),
                    Some(_) => {}
                    None if holders.is_empty() => holders.push(Holder::default()),
                    None => {}
                }
            }
            Conflict { needed, holders }
        })
        .collect()
}

/// Finds which processes hold these socket inodes (those whose fds this user may read).
fn socket_owners(inodes: Vec<u64>) -> Vec<(u64, Holder)> {
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            if inodes.contains(&inode) && !owners.iter().any(|(i, _)| *i == inode) {
                owners.push((inode, describe_process(opener(pid, inode))));
            }
        }
    }
    owners
}

/// The process that opened the socket rather than a child holding a copy: a child forked by the
/// holder has all its parent's descriptors until it execs (seen here: a forking test harness named
/// by its own fork), so the holder's ancestors that hold the socket too are walked up.
fn opener(mut pid: u32, inode: u64) -> u32 {
    while let Some(parent) = parent_of(pid).filter(|p| *p > 1 && holds(*p, inode)) {
        pid = parent;
    }
    pid
}

/// The parent pid, from /proc/<pid>/stat (the field after the state, past the command's parens).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn holds(pid: u32, inode: u64) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(&l.to_string_lossy()))
                == Some(inode)
        })
    })
}

fn describe_process(pid: u32) -> Holder {
    let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).ok();
    let comm = read("comm").map(|c| String::from_utf8_lossy(&c).trim().to_owned());
    let cmdline = read("cmdline").map(|c| {
        let words: Vec<String> = c
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        words.join(" ").chars().take(120).collect::<String>()
    });
    let command = match (comm, cmdline) {
        (Some(comm), Some(cmd)) if !cmd.is_empty() => Some(format!("{comm}: {cmd}")),
        (comm, _) => comm,
    };
    let container_id =
        read("cgroup").and_then(|c| crate::placement::id_from_cgroup(&String::from_utf8_lossy(&c)));
    Holder {
        pid: Some(pid),
        command,
        container_id,
        container_name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1FBE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1389 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  12: 00000000000000000000000001000000:1FBD 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5151 2 0000000000000000 0
";

    #[test]
    fn listening_tcp_sockets_with_their_addresses_and_inodes() {
        let sockets = parse_table(TCP, Proto::Tcp);
        assert_eq!(
            sockets,
            vec![
                BoundSocket {
                    local: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: 5001,
                    inode: 4242
                },
                BoundSocket {
                    local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 8126,
                    inode: 4343
                },
            ],
            "the established connection (state 01) is not a holder"
        );
        assert_eq!(on_port(&sockets, 5001).len(), 1);
        assert!(on_port(&sockets, 5002).is_empty());
    }

    #[test]
    fn bound_udp6_sockets() {
        let sockets = parse_table(UDP6, Proto::Udp);
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].port, 8125);
        assert_eq!(sockets[0].local, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(sockets[0].inode, 5151);
    }

    #[test]
    fn garbage_is_skipped_not_a_panic() {
        assert!(parse_table("header\nnot a socket line\n  0: zz:zz 0 0A\n", Proto::Tcp).is_empty());
        assert!(parse_table("", Proto::Udp).is_empty());
    }

    #[test]
    fn the_ports_the_agent_binds_on_the_host() {
        let host = needed(true, 5001, 8126, 8125);
        assert_eq!(
            host.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "5001/tcp (the agent's command API)",
                "8126/tcp (APM)",
                "8125/udp (DogStatsD)"
            ]
        );
        let bridge = needed(false, 5001, 18126, 18125);
        assert_eq!(
            bridge.len(),
            2,
            "the command API stays in the agent's own namespace"
        );
        assert_eq!(cmd_port(&[("DD_CMD_PORT".into(), "15001".into())]), 15001);
        assert_eq!(cmd_port(&[("DD_CMD_PORT".into(), "x".into())]), 5001);
        assert_eq!(cmd_port(&[]), 5001);
    }

    #[test]
    fn the_explanation_names_every_port_and_the_way_out() {
        let c = Conflict {
            needed: needed(true, 5001, 8126, 8125)[0].clone(),
            holders: vec![Holder {
                pid: Some(9),
                command: Some("nc: nc -l 5001".into()),
                ..Holder::default()
            }],
        };
        let text = explain(&[c], true);
        assert!(
            text.contains(
                "5001/tcp (the agent's command API) is taken by process 9 (nc: nc -l 5001)"
            ),
            "{text}"
        );
        assert!(text.contains("nothing was created"), "{text}");
        assert!(
            text.contains("systemctl stop datadog-agent") && text.contains("--network bridge"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn a_conflict_names_the_port_its_use_and_the_holder() {
        let c = Conflict {
            needed: NeededPort {
                port: 5001,
                proto: Proto::Tcp,
                what: "the agent's command API",
            },
            holders: vec![Holder {
                pid: Some(812),
                command: Some("agent: /opt/datadog-agent/bin/agent/agent run".into()),
                container_id: None,
                container_name: None,
            }],
        };
        assert_eq!(
            c.to_string(),
            "5001/tcp (the agent's command API) is taken by process 812 (agent: /opt/datadog-agent/bin/agent/agent run)"
        );
        assert!(c.looks_like_an_agent());
        let unknown = Conflict {
            holders: vec![Holder::default()],
            ..c
        };
        assert!(unknown.to_string().contains("run as root to name it"));
        assert!(!unknown.looks_like_an_agent());
    }

    #[test]
    fn a_process_parent_is_read_from_its_stat() {
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }

    #[test]
    fn this_processs_own_listener_is_found_with_its_pid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let needed = NeededPort {
            port,
            proto: Proto::Tcp,
            what: "test",
        };
        let found = conflicts(std::slice::from_ref(&needed));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].holders[0].pid, Some(std::process::id()));
        drop(listener);
        assert!(conflicts(&[needed]).is_empty());
    }
}
