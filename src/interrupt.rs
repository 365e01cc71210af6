//! SIGINT/SIGTERM as a value commands can wait on, so long waits end promptly with 130/143 while short
//! critical steps (create + start) are allowed to finish and never leave a half-made container.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => crate::exit::INTERRUPTED,
            Signal::Terminate => crate::exit::TERMINATED,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// A long wait ended by a signal; short critical steps were let finish, so nothing is half-made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}; nothing was left half-made")]
pub struct Interrupted(pub Signal);

/// Whether `sig`'s disposition is SIG_IGN (inherited: ddsky has installed nothing yet).
fn inherited_ignore(sig: libc::c_int) -> bool {
    // SAFETY: a null new action only reads the current one into `old`, which is plain data.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The next delivery of a signal listened to; never for one left ignored.
async fn recv(listener: &mut Option<tokio::signal::unix::Signal>) {
    match listener {
        Some(l) => {
            l.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[derive(Clone)]
pub struct Interrupt(watch::Receiver<Option<Signal>>);

/// Raises a [`Interrupt::manual`] interrupt.
pub struct Trigger(watch::Sender<Option<Signal>>);

impl Trigger {
    pub fn raise(&self) {
        let _ = self.0.send(Some(Signal::Terminate));
    }
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM. Must be called inside the runtime.
    ///
    /// A signal this process was started with ignored (a non-interactive shell starts `cmd &` with
    /// SIGINT and SIGQUIT ignored, `nohup`-like wrappers may ignore more) stays ignored: ddsky does
    /// what a shell does, so a Ctrl-C meant for the script that started it in the background does
    /// not end it; SIGTERM still does unless it too was ignored.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = watch::channel(None);
        let listen = |sig: libc::c_int, kind: SignalKind| -> std::io::Result<_> {
            if inherited_ignore(sig) {
                tracing::debug!("signal {sig} was ignored when ddsky started; it stays ignored");
                Ok(None)
            } else {
                signal(kind).map(Some)
            }
        };
        let mut int = listen(libc::SIGINT, SignalKind::interrupt())?;
        let mut term = listen(libc::SIGTERM, SignalKind::terminate())?;
        tokio::spawn(async move {
            let got = tokio::select! {
                _ = recv(&mut int) => Signal::Interrupt,
                _ = recv(&mut term) => Signal::Terminate,
            };
            let _ = tx.send(Some(got));
            // Keep the sender alive so receivers see the value rather than a closed channel.
            std::future::pending::<()>().await;
        });
        Ok(Interrupt(rx))
    }

    /// An interrupt that never comes, for tests.
    #[cfg(test)]
    pub fn never() -> Self {
        // The sender is dropped: `signalled` then waits forever, as documented there.
        Interrupt(watch::channel(None).1)
    }

    /// An interrupt ddsky raises itself: `ddsky run` ends its agent refresh this way when the job
    /// ends, so the refresh stops as at a signal (nothing half-made) instead of being dropped.
    pub fn manual() -> (Trigger, Self) {
        let (tx, rx) = watch::channel(None);
        (Trigger(tx), Interrupt(rx))
    }

    /// The signal, if one has arrived.
    pub fn received(&self) -> Option<Signal> {
        *self.0.borrow()
    }

    /// Errs if a signal has arrived: call before starting something that should not begin any more.
    pub fn check(&self) -> Result<(), Interrupted> {
        self.received().map_or(Ok(()), |s| Err(Interrupted(s)))
    }

    /// Resolves when a signal arrives.
    pub async fn signalled(&self) -> Signal {
        let mut rx = self.0.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Runs `fut` unless a signal arrives first.
    pub async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Interrupted> {
        tokio::select! {
            out = fut => Ok(out),
            s = self.signalled() => Err(Interrupted(s)),
        }
    }
}
