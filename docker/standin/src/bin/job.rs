//! The stand-in job container (`ddsky-test/metta:latest`): logs `metta stand-in: step N` once a
//! second until SIGTERM or SIGINT, then exits 0.

use std::io::Write;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("metta stand-in: cannot handle signals");
        std::process::exit(1);
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut step: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                step += 1;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "metta stand-in: step {step}");
                let _ = out.flush();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = writeln!(
        std::io::stdout(),
        "metta stand-in: stopping after {step} steps"
    );
    std::process::exit(0);
}
