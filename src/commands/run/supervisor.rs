//! The job under ddsky, in the spirit of tini and `op run --`: spawned with its environment, its
//! output passed through unchanged and unbuffered (and copied, line by line, into the container's
//! log when asked), SIGINT/SIGTERM/SIGHUP forwarded once, and its exit status returned as a shell
//! would (a signal death as 128+n, 127 when the command is not found).
//!
//! Nothing here may harm the job: the copy never blocks the job's output (lines it cannot take are
//! dropped and counted), and every failure of ddsky's own is a report, never an error of the job's.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Lines waiting for the container log, at most: a stalled log loses lines, never memory or time.
const COPY_QUEUE_LINES: usize = 4096;
/// A line longer than this is copied in pieces (Docker splits its json log at 16 KiB anyway).
const COPY_MAX_LINE: usize = 16 * 1024;

/// What to run: the program and its arguments, and its whole environment.
pub struct Job {
    pub command: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// Where the job's output also goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copy {
    Nowhere,
    /// Into files opened for writing (PID 1's stdout and stderr, `/proc/1/fd/1` and `/proc/1/fd/2`),
    /// after a first line saying what follows.
    To {
        stdout: PathBuf,
        stderr: PathBuf,
        header: String,
    },
}

/// Why the job did not start, as a shell would say it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: {source}")]
    CannotRun { program: String, source: io::Error },
}

impl StartError {
    /// The shell's codes: 127 not found, 126 found but not runnable.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::NotFound { .. } => 127,
            StartError::CannotRun { .. } => 126,
        }
    }
}

/// How the copy into the container log went.
#[derive(Debug, Default)]
struct CopyState {
    copied: AtomicU64,
    dropped: AtomicU64,
    /// Lines of the job's output offered to the copy so far: the next one's number, less one.
    offered: AtomicU64,
    /// The number (from 1) of the first line the log did not get; 0 while none was lost.
    first_lost: AtomicU64,
    /// The first reason the copy stopped (cannot open, write failed), said once.
    failure: Mutex<Option<String>>,
}

impl CopyState {
    /// Line `n` did not reach the container log: remember the earliest such line.
    fn lost(&self, n: u64) {
        let _ = self
            .first_lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |first| {
                (first == 0 || n < first).then_some(n)
            });
    }
}

/// What the copy did, for the closing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub copied: u64,
    pub dropped: u64,
    pub failure: Option<String>,
    /// Lines still queued when ddsky stopped waiting (a log that blocks).
    pub stuck: bool,
    /// The first line of the job's output (counted from 1, both streams together) that the log
    /// did not get: where the copy stopped.
    pub first_lost_line: Option<u64>,
}

/// A running job.
pub struct Started {
    child: Child,
    /// Signalled by each output reader at its end of file.
    readers_done: Receiver<()>,
    readers: usize,
    copy: Option<(Arc<CopyState>, Receiver<()>)>,
}

/// Starts the job. Its stdin is ddsky's; its stdout and stderr are ddsky's own when nothing is
/// copied, else pipes read by a thread each (one pipe when ddsky's stdout and stderr are the same
/// file, as under SkyPilot, so their order is kept exactly).
pub fn start(job: &Job, copy: &Copy) -> Result<Started, StartError> {
    let (program, args) = job
        .command
        .split_first()
        .ok_or_else(|| StartError::NotFound {
            program: String::new(),
        })?;
    let mut command = Command::new(program);
    command.args(args).env_clear().envs(job.env.iter().cloned());
    let program_name = program.to_string_lossy().into_owned();
    let spawn_error = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => StartError::NotFound {
            program: program_name.clone(),
        },
        _ => StartError::CannotRun {
            program: program_name.clone(),
            source: e,
        },
    };

    let Copy::To {
        stdout,
        stderr,
        header,
    } = copy
    else {
        let child = command.spawn().map_err(spawn_error)?;
        let (_, readers_done) = mpsc::channel();
        return Ok(Started {
            child,
            readers_done,
            readers: 0,
            copy: None,
        });
    };

    let own_out = dup_stdio(io::stdout().as_fd());
    let own_err = dup_stdio(io::stderr().as_fd());
    let merged = match (&own_out, &own_err) {
        (Some(o), Some(e)) => same_file(o, e),
        _ => false,
    };
    let (out_read, out_write) = io::pipe().map_err(spawn_error)?;
    let err_pipe = if merged {
        command.stderr(out_write.try_clone().map_err(spawn_error)?);
        None
    } else {
        let (r, w) = io::pipe().map_err(spawn_error)?;
        command.stderr(w);
        Some(r)
    };
    command.stdout(out_write);
    let child = command.spawn().map_err(spawn_error)?;
    // The write ends live on in `command` until it is dropped: then only the job holds them, and
    // the readers see end of file when the job (and whatever inherited them) is done.
    drop(command);

    let state = Arc::new(CopyState::default());
    let (lines_tx, lines_rx) = mpsc::sync_channel(COPY_QUEUE_LINES);
    let (copier_done_tx, copier_done) = mpsc::channel();
    {
        let state = state.clone();
        let (stdout, stderr, header) = (stdout.clone(), stderr.clone(), header.clone());
        thread::spawn(move || {
            write_copies(lines_rx, &stdout, &stderr, &header, &state);
            let _ = copier_done_tx.send(());
        });
    }
    let (done_tx, readers_done) = mpsc::channel();
    let mut readers = 0;
    for (pipe, own, stream) in [
        (Some(out_read), own_out, Stream::Out),
        (err_pipe, own_err, Stream::Err),
    ] {
        let Some(pipe) = pipe else { continue };
        let copy = LineCopy::new(lines_tx.clone(), stream, state.clone());
        let done = done_tx.clone();
        readers += 1;
        thread::spawn(move || {
            pass_through(pipe, own, copy);
            let _ = done.send(());
        });
    }
    Ok(Started {
        child,
        readers_done,
        readers,
        copy: Some((state, copier_done)),
    })
}

impl Started {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the job to end (blocking) and returns its exit code as a shell would.
    pub fn wait(&mut self) -> u8 {
        match self.child.wait() {
            Ok(status) => exit_code(status),
            // Only a bug of ours (the child reaped elsewhere) lands here; say the job's state is unknown.
            Err(e) => {
                tracing::warn!("cannot learn how the job ended: {e}");
                1
            }
        }
    }

    /// After the job ended: waits up to `limit` for its output to be passed on and copied, and says
    /// how the copy went (`None` when nothing was copied).
    pub fn finish(self, limit: Duration) -> Option<CopyReport> {
        let deadline = Instant::now() + limit;
        let left = || deadline.saturating_duration_since(Instant::now());
        for _ in 0..self.readers {
            if self.readers_done.recv_timeout(left()).is_err() {
                break;
            }
        }
        let (state, copier_done) = self.copy?;
        let stuck = copier_done.recv_timeout(left()).is_err();
        let failure = state.failure.lock().ok().and_then(|f| f.clone());
        let first_lost = state.first_lost.load(Ordering::Relaxed);
        Some(CopyReport {
            copied: state.copied.load(Ordering::Relaxed),
            dropped: state.dropped.load(Ordering::Relaxed),
            failure,
            stuck,
            first_lost_line: (first_lost > 0).then_some(first_lost),
        })
    }
}

/// A shell's exit code for a status: the code, or 128+n for a death by signal n.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

/// An unbuffered handle on one of ddsky's own outputs (Rust's stdout buffers lines).
fn dup_stdio(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
    fd.try_clone_to_owned().ok().map(File::from)
}

fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether ddsky's stdout already is `path` (e.g. `/proc/1/fd/1`): then copying there would
/// print everything twice.
pub fn stdout_is(path: &str) -> bool {
    let Some(own) = dup_stdio(io::stdout().as_fd()) else {
        return false;
    };
    match (own.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Reads the job's pipe to its end, writing every chunk at once to ddsky's own output (the job's
/// output unchanged) and offering it to the copy. A failing own output does not stop the reading:
/// the job must never block on a pipe nobody reads.
fn pass_through(mut pipe: io::PipeReader, mut own: Option<File>, mut copy: LineCopy) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(out) = own.as_mut() {
            if out.write_all(&buf[..n]).is_err() {
                own = None;
            }
        }
        copy.feed(&buf[..n]);
    }
    copy.finish();
}

/// One line of the job's output on its way to the container log, with its number (from 1).
type CopiedLine = (Stream, u64, Vec<u8>);

/// Cuts the job's output into lines for the copy and queues them without ever waiting.
struct LineCopy {
    tx: SyncSender<CopiedLine>,
    stream: Stream,
    partial: Vec<u8>,
    state: Arc<CopyState>,
}

impl LineCopy {
    fn new(tx: SyncSender<CopiedLine>, stream: Stream, state: Arc<CopyState>) -> Self {
        LineCopy {
            tx,
            stream,
            partial: Vec::new(),
            state,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..=end]);
            self.send();
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= COPY_MAX_LINE {
            let rest = self.partial.split_off(COPY_MAX_LINE);
            self.partial.push(b'\n');
            self.send();
            self.partial = rest;
        }
    }

    /// The last line, even without its newline.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            self.send();
        }
    }

    fn send(&mut self) {
        let line = std::mem::take(&mut self.partial);
        let n = self.state.offered.fetch_add(1, Ordering::Relaxed) + 1;
        match self.tx.try_send((self.stream, n, line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                self.state.lost(n);
            }
            // The copier gave up; it counted why.
            Err(TrySendError::Disconnected(_)) => self.state.lost(n),
        }
    }
}

/// The copier: opens the targets (which may block, e.g. a FIFO with no reader: then the queue fills
/// and lines are dropped, the job unaffected) and writes each line to its stream's target.
fn write_copies(
    lines: Receiver<CopiedLine>,
    stdout: &PathBuf,
    stderr: &PathBuf,
    header: &str,
    state: &CopyState,
) {
    let fail = |why: String| {
        if let Ok(mut f) = state.failure.lock() {
            f.get_or_insert(why);
        }
    };
    let open = |path: &PathBuf| {
        OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))
    };
    let targets = open(stdout).and_then(|out| Ok((out, open(stderr)?)));
    let (mut out, mut err) = match targets {
        Ok(t) => t,
        Err(why) => {
            fail(why);
            // Keep taking lines so that the readers never find the queue full for this reason.
            lines.iter().for_each(|(_, n, _)| {
                state.dropped.fetch_add(1, Ordering::Relaxed);
                state.lost(n);
            });
            return;
        }
    };
    // The first write lands after whatever PID 1 printed last without a newline (an interactive
    // bash's prompt): a newline first ends that line, so the header is a message of its own in
    // Datadog (the empty line it makes when PID 1's output already ended a line is one the agent
    // drops), and the prompt's line takes no line of the job's.
    let _ = out.write_all(format!("\n{header}\n").as_bytes());
    let mut broken = false;
    for (stream, n, line) in lines {
        if broken {
            state.dropped.fetch_add(1, Ordering::Relaxed);
            state.lost(n);
            continue;
        }
        let target = if stream == Stream::Err {
            &mut err
        } else {
            &mut out
        };
        match target.write_all(&line) {
            Ok(()) => {
                state.copied.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                fail(format!("writing to the container log failed: {e}"));
                state.dropped.fetch_add(1, Ordering::Relaxed);
                state.lost(n);
                broken = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_with(capacity: usize) -> (LineCopy, Receiver<CopiedLine>, Arc<CopyState>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let state = Arc::new(CopyState::default());
        (LineCopy::new(tx, Stream::Out, state.clone()), rx, state)
    }

    fn lines(rx: &Receiver<CopiedLine>) -> Vec<String> {
        rx.try_iter()
            .map(|(_, _, l)| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn chunks_become_whole_lines_and_the_last_gets_its_newline() {
        let (mut copy, rx, _) = copy_with(16);
        copy.feed(b"ep");
        copy.feed(b"och 1\nepoch 2\nTrace");
        copy.feed(b"back (most recent call last):\n  Fi");
        copy.finish();
        assert_eq!(
            lines(&rx),
            [
                "epoch 1\n",
                "epoch 2\n",
                "Traceback (most recent call last):\n",
                "  Fi\n"
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_instead_of_waiting() {
        let (mut copy, rx, state) = copy_with(2);
        copy.feed(b"a\nb\nc\nd\n");
        assert_eq!(lines(&rx), ["a\n", "b\n"]);
        assert_eq!(state.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(
            state.first_lost.load(Ordering::Relaxed),
            3,
            "c was the first lost"
        );
    }

    #[test]
    fn a_failing_target_stops_the_copy_at_the_line_it_failed_on() {
        let (tx, rx) = mpsc::sync_channel(16);
        let state = CopyState::default();
        for n in 3..=5 {
            tx.send((Stream::Out, n, format!("line {n}\n").into_bytes()))
                .unwrap();
        }
        drop(tx);
        // Every write to /dev/full fails (ENOSPC), as one to a log whose reader went away does.
        let full = PathBuf::from("/dev/full");
        write_copies(rx, &full, &full, "header", &state);
        assert_eq!(state.first_lost.load(Ordering::Relaxed), 3);
        assert_eq!(state.copied.load(Ordering::Relaxed), 0);
        assert_eq!(state.dropped.load(Ordering::Relaxed), 3);
        let failure = state.failure.lock().unwrap().clone().unwrap();
        assert!(
            failure.starts_with("writing to the container log failed"),
            "{failure}"
        );
    }

    #[test]
    fn long_lines_are_copied_in_pieces() {
        let (mut copy, rx, _) = copy_with(16);
        copy.feed(&vec![b'x'; COPY_MAX_LINE * 2 + 10]);
        copy.finish();
        let got = lines(&rx);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|l| l.ends_with('\n')));
        assert_eq!(got[0].len(), COPY_MAX_LINE + 1);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn a_missing_program_is_127_and_not_runnable_126() {
        let job = |cmd: &str| Job {
            command: vec![cmd.into()],
            env: vec![],
        };
        let err = start(&job("/nonexistent/ddsky-test-prog"), &Copy::Nowhere)
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 127);
        assert_eq!(
            err.to_string(),
            "/nonexistent/ddsky-test-prog: command not found"
        );
        let err = start(&job("/dev/null"), &Copy::Nowhere).err().unwrap();
        assert_eq!(err.exit_code(), 126);
    }
}
