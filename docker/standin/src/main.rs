//! The stand-in `agent` binary (also `/probe.sh`). See the crate docs in `lib.rs`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(standin::cli::dispatch(&args));
}
