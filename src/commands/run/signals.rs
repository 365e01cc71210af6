//! The job's signals, forwarded once. The job shares ddsky's process group, like a command a shell
//! runs in the foreground, so whoever signals the whole group (a terminal's Ctrl-C, `kill -- -PGID`)
//! already reached it. SkyPilot's job watchdog signals every process of the job's tree itself
//! (or its process group; shared/skypilot.md): forwarding those would deliver each twice, and some
//! training stacks take a second SIGTERM as "stop now". Everything else, a `kill` aimed at ddsky
//! alone, is passed on.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::exfiltrator::origin::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;
use std::time::Instant;
use tokio::sync::watch;

/// Who sent a signal, as far as ddsky can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// The kernel: a terminal's keys or hang-up, sent to the whole foreground process group.
    Kernel,
    /// A process, with its command line (empty when it is gone or hidden).
    Process {
        command_line: String,
    },
    Unknown,
}

/// Whether a signal from `sender` must be passed on to the job.
pub fn forwards(sender: &Sender) -> bool {
    match sender {
        Sender::Kernel => false,
        Sender::Process { command_line } => !command_line.contains("subprocess_daemon"),
        Sender::Unknown => true,
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from before the job starts (a signal that comes meanwhile
/// waits here) for the rest of ddsky's life.
pub struct Listener(SignalsInfo<WithOrigin>);

impl Listener {
    pub fn new() -> std::io::Result<Self> {
        Ok(Listener(SignalsInfo::<WithOrigin>::new([
            SIGINT, SIGTERM, SIGHUP,
        ])?))
    }

    /// Forwards each signal to `pid` when [`forwards`] says so. The receiver holds when the first
    /// one came (the clock of SkyPilot's kill window).
    pub fn forward_to(self, pid: u32) -> watch::Receiver<Option<Instant>> {
        let mut signals = self.0;
        let (tx, rx) = watch::channel(None);
        std::thread::spawn(move || {
            for origin in signals.forever() {
                tx.send_if_modified(|first| {
                    let new = first.is_none();
                    first.get_or_insert_with(Instant::now);
                    new
                });
                let sender = match (&origin.cause, &origin.process) {
                    (Cause::Kernel, _) => Sender::Kernel,
                    (_, Some(p)) => Sender::Process {
                        command_line: std::fs::read(format!("/proc/{}/cmdline", p.pid))
                            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                            .unwrap_or_default(),
                    },
                    _ => Sender::Unknown,
                };
                let name = signal_name(origin.signal);
                if forwards(&sender) {
                    tracing::debug!("forwarding {name} to the job");
                    // SAFETY: kill(2) on the job's pid; ddsky reaps it only after this matters.
                    unsafe {
                        libc::kill(pid as libc::pid_t, origin.signal);
                    }
                } else {
                    tracing::debug!(
                        "not forwarding {name}: its sender ({sender:?}) reached the job too"
                    );
                }
            }
        });
        rx
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_aimed_at_ddsky_is_passed_on() {
        assert!(forwards(&Sender::Process {
            command_line: "kill -TERM 4242".into()
        }));
        assert!(forwards(&Sender::Unknown));
    }

    #[test]
    fn what_already_reached_the_job_is_not_sent_twice() {
        assert!(!forwards(&Sender::Kernel));
        assert!(!forwards(&Sender::Process {
            command_line:
                "/opt/conda/bin/python -u /root/skypilot-runtime/lib/python3.10/site-packages/sky/skylet/subprocess_daemon.py --parent-pid 1 --proc-pid 77"
                    .into()
        }));
    }
}
