//! The job under ddsky, in the spirit of tini and `op run --`: spawned with its environment, its
//! output passed through unchanged and unbuffered (and copied into the container's log when asked),
//! SIGINT/SIGTERM/SIGHUP forwarded once, and its exit status returned as a shell would (a signal
//! death as 128+n, 127 when the command is not found).
//!
//! The copy: the readers pass each chunk of the job's output on at once, then append its whole
//! lines to a buffer bounded by bytes ([`CopyBuffer`]); one writer thread takes everything buffered
//! and writes it to the log in large writes. A burst the log cannot take as fast as the job prints
//! it waits there (64 MiB by default holds hundreds of thousands of lines); only when the bound is
//! full are lines dropped, and counted.
//!
//! Nothing here may harm the job: the copy never blocks the job's output (the readers only ever
//! wait for the buffer's lock, held for a copy of bytes), and every failure of ddsky's own is a
//! report, never an error of the job's.

use crate::joblog;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// A line longer than this is copied in pieces (Docker splits its json log at 16 KiB anyway).
const COPY_MAX_LINE: usize = 16 * 1024;
/// A segment's memory, allocated whole and never grown: a run of lines starts in a small block and
/// goes on in large ones, each one write to the log. Fixed sizes, never reallocated, because a
/// buffer grown by doubling and freed by another thread fragments the allocator's heap: measured
/// (bench.sh 9b, 100 MB through a pty), 1 MiB segments grown from 4 KiB left ddsky at 325 MB of
/// RSS for a 64 MiB bound.
const SEGMENT_SMALL: usize = 4 * 1024;
const SEGMENT_MAX: usize = 64 * 1024;

/// What to run: the program and its arguments, and its whole environment.
pub struct Job {
    pub command: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// Where the job's output also goes.
#[derive(Debug, Clone)]
pub enum Copy {
    Nowhere,
    To(CopyTo),
}

/// Holds the writer before it creates its targets, until opened: a VM-mode file must appear after
/// the agent's file sources were added, or the agent starts it at its end. The job's lines wait in
/// the buffer meanwhile (the job is never held).
#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The copy's targets and rules.
#[derive(Debug, Clone)]
pub struct CopyTo {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// What the targets are, in words, for the report ("the container log").
    pub what: String,
    /// Runtime mode: PID 1's stdout and stderr (`/proc/1/fd/1`, `/proc/1/fd/2`), opened for writing,
    /// the header first. VM mode: new files, created (never an existing one), no header.
    pub create: bool,
    /// A first line saying what follows.
    pub header: Option<String>,
    /// The job's two streams on two pipes even when ddsky's own stdout and stderr are one file, so
    /// the copy can tell them apart (VM mode: stderr has a file of its own).
    pub split_streams: bool,
    /// The most bytes written to each target; what comes after is not copied (counted).
    pub cap: Option<u64>,
    /// The most bytes the copy holds that the log has not taken yet.
    pub bound: usize,
    /// Opened when the targets may be created (none: at once).
    pub gate: Option<Arc<Gate>>,
    /// VM mode: `stdout` and `stderr` are replaced, when the gate opens, by this directory's
    /// `<UTC now>-<pid>.stdout.log` and `.stderr.log` (`joblog`): named by when they were created,
    /// which is what the drain compares with the agent's start.
    pub name_when_created: Option<PathBuf>,
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

/// What the copy did, for the closing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Lines of the job's output (both streams together) offered to the copy.
    pub offered: u64,
    pub copied: u64,
    /// Dropped because the buffer's bound was full.
    pub dropped: u64,
    pub failure: Option<String>,
    /// Lines still buffered when ddsky stopped waiting (a log that takes too little, or blocks).
    pub stuck: bool,
    /// The first line of the job's output (counted from 1, both streams together) that the log
    /// did not get: where the copy stopped.
    pub first_lost_line: Option<u64>,
}

impl CopyReport {
    /// Lines the log did not get, for whatever reason.
    pub fn not_copied(&self) -> u64 {
        self.offered.saturating_sub(self.copied)
    }
}

/// A running job.
pub struct Started {
    child: Child,
    /// Signalled by each output reader at its end of file.
    readers_done: Receiver<()>,
    readers: usize,
    copy: Option<(Arc<CopyBuffer>, Receiver<()>)>,
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

    let Copy::To(target) = copy else {
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
    let merged = !target.split_streams
        && match (&own_out, &own_err) {
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

    let buffer = Arc::new(CopyBuffer::new(target.bound));
    let (copier_done_tx, copier_done) = mpsc::channel();
    {
        let buffer = buffer.clone();
        let target = target.clone();
        thread::spawn(move || {
            write_copies(&buffer, &target);
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
        let copy = LineCopy::new(buffer.clone(), stream);
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
        copy: Some((buffer, copier_done)),
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

    /// After the job ended: waits up to `output` for its last output to be passed on (a grandchild
    /// that keeps the pipe open is not waited for longer), then up to `copy` more for the buffer
    /// to reach the log, and says how the copy went (`None` when nothing was copied).
    pub fn finish(self, output: Duration, copy: Duration) -> Option<CopyReport> {
        let deadline = Instant::now() + output;
        for _ in 0..self.readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.readers_done.recv_timeout(left).is_err() {
                break;
            }
        }
        let (buffer, copier_done) = self.copy?;
        buffer.close();
        let stuck = copier_done.recv_timeout(copy).is_err();
        if stuck {
            // The writer stops after the write it is in; what is left is reported, not copied.
            buffer.abandon();
        }
        Some(buffer.report(stuck))
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

/// A run of consecutive lines of one stream, numbered from `first`: one write to the log.
#[derive(Debug)]
struct Segment {
    stream: Stream,
    first: u64,
    lines: u64,
    bytes: BytesMut,
}

/// What the log has not taken yet, and the counts for the report.
#[derive(Debug, Default)]
struct Pending {
    segments: VecDeque<Segment>,
    /// Memory held, in bytes: the capacity of the segments queued and of those being written (a
    /// segment's buffer grows by doubling, so its length alone would undercount it).
    held: usize,
    /// Lines offered so far, both streams: the next one's number, less one.
    offered: u64,
    copied: u64,
    dropped: u64,
    /// The number (from 1) of the first line the log did not get; 0 while none was lost.
    first_lost: u64,
    /// The first reason the copy stopped (cannot open, write failed), said once. Once set, lines
    /// are counted as lost instead of buffered.
    failure: Option<String>,
    /// Every reader is done: the writer ends once the buffer is empty.
    closed: bool,
    /// ddsky stopped waiting: the writer ends after its current write.
    abandoned: bool,
    /// A drop happened since the last line buffered: the next line starts a segment of its own,
    /// so that a segment's lines stay consecutive.
    gap: bool,
}

impl Pending {
    fn lost(&mut self, n: u64) {
        if self.first_lost == 0 || n < self.first_lost {
            self.first_lost = n;
        }
    }

    /// Buffers one line (with its newline), or counts it dropped when the bound is full.
    fn push(&mut self, stream: Stream, line: &[u8], bound: usize) {
        self.offered += 1;
        let n = self.offered;
        if self.failure.is_some() {
            self.lost(n);
            return;
        }
        if self.held + line.len() > bound {
            self.dropped += 1;
            self.lost(n);
            self.gap = true;
            return;
        }
        let continues = |s: &Segment| !self.gap && s.stream == stream && s.first + s.lines == n;
        match self.segments.back_mut() {
            Some(last)
                if continues(last) && last.bytes.len() + line.len() <= last.bytes.capacity() =>
            {
                last.bytes.extend_from_slice(line);
                last.lines += 1;
            }
            back => {
                // A run of lines that filled its block goes on in a large one; a new run (or a
                // line longer than the small block) starts small.
                let size = if back.is_some_and(|s| continues(s)) || line.len() > SEGMENT_SMALL {
                    SEGMENT_MAX.max(line.len())
                } else {
                    SEGMENT_SMALL
                };
                let mut bytes = BytesMut::with_capacity(size);
                bytes.extend_from_slice(line);
                self.held += bytes.capacity();
                self.segments.push_back(Segment {
                    stream,
                    first: n,
                    lines: 1,
                    bytes,
                });
            }
        }
        self.gap = false;
    }
}

/// The copy's buffer, bounded by bytes, shared by the readers (who append) and the writer (who
/// takes everything at once).
#[derive(Debug)]
struct CopyBuffer {
    bound: usize,
    pending: Mutex<Pending>,
    /// Signalled when lines arrive, when the readers are done, or when ddsky stops waiting.
    changed: Condvar,
}

impl CopyBuffer {
    fn new(bound: usize) -> Self {
        CopyBuffer {
            bound,
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }
    }

    /// A poisoned lock (a panic in another copy thread) still holds counts worth reporting.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn abandon(&self) {
        self.lock().abandoned = true;
        self.changed.notify_all();
    }

    /// Stops the copy for `why`: what is buffered and what comes later is lost.
    fn fail(&self, why: String) {
        let mut p = self.lock();
        p.failure.get_or_insert(why);
        let segments = std::mem::take(&mut p.segments);
        for s in segments {
            p.held -= s.bytes.capacity();
            p.lost(s.first);
        }
    }

    /// The writer's wait: everything buffered, or `None` when there is nothing more to write.
    fn take(&self) -> Option<VecDeque<Segment>> {
        let mut p = self.lock();
        loop {
            if p.abandoned || p.failure.is_some() {
                return None;
            }
            if !p.segments.is_empty() {
                return Some(std::mem::take(&mut p.segments));
            }
            if p.closed {
                return None;
            }
            p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn report(&self, stuck: bool) -> CopyReport {
        let p = self.lock();
        let stuck = stuck && p.offered > p.copied + p.dropped;
        let mut first_lost = p.first_lost;
        if stuck {
            // The lines still buffered were not copied: the earliest of them may come first.
            if let Some(first) = p.segments.front().map(|s| s.first) {
                if first_lost == 0 || first < first_lost {
                    first_lost = first;
                }
            } else if first_lost == 0 {
                first_lost = p.copied + p.dropped + 1;
            }
        }
        CopyReport {
            offered: p.offered,
            copied: p.copied,
            dropped: p.dropped,
            failure: p.failure.clone(),
            stuck,
            first_lost_line: (first_lost > 0).then_some(first_lost),
        }
    }
}

/// Cuts the job's output into lines for the copy and buffers them without ever waiting for the
/// log: one lock per chunk read.
struct LineCopy {
    buffer: Arc<CopyBuffer>,
    stream: Stream,
    partial: Vec<u8>,
}

impl LineCopy {
    fn new(buffer: Arc<CopyBuffer>, stream: Stream) -> Self {
        LineCopy {
            buffer,
            stream,
            partial: Vec::new(),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        let mut p = self.buffer.lock();
        let bound = self.buffer.bound;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(end) => {
                    self.partial.extend_from_slice(&bytes[..=end]);
                    bytes = &bytes[end + 1..];
                    push_pieces(&mut p, self.stream, &self.partial, bound);
                    self.partial.clear();
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
        let whole = memchr::memrchr(b'\n', bytes).map_or(0, |end| end + 1);
        let mut from = 0;
        for end in memchr::memchr_iter(b'\n', &bytes[..whole]) {
            push_pieces(&mut p, self.stream, &bytes[from..=end], bound);
            from = end + 1;
        }
        self.partial.extend_from_slice(&bytes[whole..]);
        // A line that never ends is copied in pieces as it grows.
        while self.partial.len() >= COPY_MAX_LINE {
            let mut piece = self.partial[..COPY_MAX_LINE].to_vec();
            piece.push(b'\n');
            p.push(self.stream, &piece, bound);
            self.partial.drain(..COPY_MAX_LINE);
        }
        drop(p);
        self.buffer.changed.notify_all();
    }

    /// The last line, even without its newline.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            let mut p = self.buffer.lock();
            push_pieces(&mut p, self.stream, &self.partial, self.buffer.bound);
            drop(p);
            self.partial.clear();
            self.buffer.changed.notify_all();
        }
    }
}

/// A whole line (ending in `\n`) as pieces of at most [`COPY_MAX_LINE`] bytes, each a line.
fn push_pieces(p: &mut Pending, stream: Stream, line: &[u8], bound: usize) {
    if line.len() <= COPY_MAX_LINE + 1 {
        p.push(stream, line, bound);
        return;
    }
    let body = &line[..line.len() - 1];
    for chunk in body.chunks(COPY_MAX_LINE) {
        let mut piece = Vec::with_capacity(chunk.len() + 1);
        piece.extend_from_slice(chunk);
        piece.push(b'\n');
        p.push(stream, &piece, bound);
    }
}

/// Writes all of `bytes`, returning how many were written before an error.
fn write_counted(target: &mut File, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < bytes.len() {
        match target.write(&bytes[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// The writer: opens the targets (which may block, e.g. a FIFO with no reader: then the buffer
/// fills and lines are dropped, the job unaffected) and writes everything buffered, one write per
/// segment, until the readers are done and the buffer is empty.
fn write_copies(buffer: &CopyBuffer, to: &CopyTo) {
    if let Some(gate) = &to.gate {
        gate.wait();
    }
    let (stdout, stderr) = match &to.name_when_created {
        Some(dir) => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let stem = joblog::run_stem(&now, std::process::id());
            (
                dir.join(joblog::file_name(&stem, joblog::Stream::Stdout)),
                dir.join(joblog::file_name(&stem, joblog::Stream::Stderr)),
            )
        }
        None => (to.stdout.clone(), to.stderr.clone()),
    };
    let open = |path: &PathBuf| {
        let mut options = OpenOptions::new();
        if to.create {
            // A new file for this run only: the agent reads a file that appears whole.
            options.append(true).create_new(true);
        } else {
            options.write(true);
        }
        options
            .open(path)
            .map_err(|e| format!("cannot open {} for writing: {e}", path.display()))
    };
    let targets = open(&stdout).and_then(|out| Ok((out, open(&stderr)?)));
    let (mut out, mut err) = match targets {
        Ok(t) => t,
        Err(why) => return buffer.fail(why),
    };
    // The first write lands after whatever PID 1 printed last without a newline (an interactive
    // bash's prompt): a newline first ends that line, so the header is a message of its own in
    // Datadog (the empty line it makes when PID 1's output already ended a line is one the agent
    // drops), and the prompt's line takes no line of the job's.
    if let Some(header) = &to.header {
        let _ = out.write_all(format!("\n{header}\n").as_bytes());
    }
    let mut written = [0u64; 2];
    while let Some(segments) = buffer.take() {
        for segment in segments {
            let (target, written) = if segment.stream == Stream::Err {
                (&mut err, &mut written[1])
            } else {
                (&mut out, &mut written[0])
            };
            let capped = to
                .cap
                .is_some_and(|cap| *written + segment.bytes.len() as u64 > cap);
            let result = if capped {
                Err((
                    0,
                    io::Error::other("it reached ddsky's cap for one run's file"),
                ))
            } else {
                *written += segment.bytes.len() as u64;
                write_counted(target, &segment.bytes)
            };
            let mut p = buffer.lock();
            p.held -= segment.bytes.capacity();
            match result {
                Ok(()) => p.copied += segment.lines,
                Err((written, e)) => {
                    let whole =
                        memchr::memchr_iter(b'\n', &segment.bytes[..written]).count() as u64;
                    p.copied += whole;
                    p.lost(segment.first + whole);
                    drop(p);
                    buffer.fail(format!("writing to {} failed: {e}", to.what));
                    return;
                }
            }
            if p.abandoned {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `--copy-buffer`'s default: a burst of a million 60-byte lines fits.
    const DEFAULT_COPY_BUFFER: usize = 64 * 1024 * 1024;

    fn to(out: &std::path::Path, err: &std::path::Path) -> CopyTo {
        CopyTo {
            stdout: out.into(),
            stderr: err.into(),
            what: "the container log".into(),
            create: false,
            header: Some("header".into()),
            split_streams: false,
            cap: None,
            bound: 1 << 20,
            gate: None,
            name_when_created: None,
        }
    }

    #[test]
    fn vm_files_are_named_when_created() {
        let dir = tempfile::tempdir().unwrap();
        let files = CopyTo {
            create: true,
            header: None,
            name_when_created: Some(dir.path().to_path_buf()),
            ..to(Path::new("/nonexistent/a"), Path::new("/nonexistent/b"))
        };
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"x\n");
        buffer.close();
        write_copies(&buffer, &files);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let pid = std::process::id();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].ends_with(&format!("-{pid}.stderr.log")),
            "{names:?}"
        );
        assert!(
            names[1].ends_with(&format!("-{pid}.stdout.log")),
            "{names:?}"
        );
    }

    #[test]
    fn a_closed_gate_holds_the_files_back_and_the_lines_wait_in_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (
            dir.path().join("g.stdout.log"),
            dir.path().join("g.stderr.log"),
        );
        let gate = Arc::new(Gate::default());
        let files = CopyTo {
            create: true,
            header: None,
            gate: Some(gate.clone()),
            ..to(&out, &err)
        };
        let (mut copy, buffer) = copy_with(1 << 20);
        let writer = {
            let buffer = buffer.clone();
            std::thread::spawn(move || write_copies(&buffer, &files))
        };
        copy.feed(b"before the agent was ready\n");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!out.exists(), "no file before the gate opens");
        assert_eq!(buffer.lock().offered, 1);
        gate.open();
        copy.finish();
        buffer.close();
        writer.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "before the agent was ready\n"
        );
    }

    #[test]
    fn vm_mode_creates_new_files_without_a_header_and_never_reuses_one() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (
            dir.path().join("r.stdout.log"),
            dir.path().join("r.stderr.log"),
        );
        let files = CopyTo {
            create: true,
            header: None,
            what: "the job log file".into(),
            ..to(&out, &err)
        };
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"one\n");
        copy.finish();
        buffer.close();
        write_copies(&buffer, &files);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
        // A second run at the same names (never: the names carry the pid) would not write there.
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"two\n");
        buffer.close();
        write_copies(&buffer, &files);
        let report = buffer.report(false);
        assert!(report.failure.unwrap().starts_with("cannot open"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\n");
    }

    #[test]
    fn a_file_stops_at_its_cap_and_the_rest_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (
            dir.path().join("c.stdout.log"),
            dir.path().join("c.stderr.log"),
        );
        let files = CopyTo {
            create: true,
            header: None,
            cap: Some(8),
            ..to(&out, &err)
        };
        let (mut copy, buffer) = copy_with(1 << 20);
        let mut errs = LineCopy::new(buffer.clone(), Stream::Err);
        errs.feed(b"err\n");
        copy.feed(b"0123456789\n");
        buffer.close();
        write_copies(&buffer, &files);
        assert_eq!(
            std::fs::read_to_string(&err).unwrap(),
            "err\n",
            "under its cap"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "", "past its cap");
        let report = buffer.report(false);
        assert!(
            report.failure.as_deref().unwrap().contains("cap"),
            "the cap is said"
        );
        assert_eq!((report.copied, report.not_copied()), (1, 1));
    }

    fn copy_with(bound: usize) -> (LineCopy, Arc<CopyBuffer>) {
        let buffer = Arc::new(CopyBuffer::new(bound));
        (LineCopy::new(buffer.clone(), Stream::Out), buffer)
    }

    /// Every buffered line, in order.
    fn lines(buffer: &CopyBuffer) -> Vec<String> {
        let p = buffer.lock();
        p.segments
            .iter()
            .flat_map(|s| {
                String::from_utf8(s.bytes.to_vec())
                    .unwrap()
                    .split_inclusive('\n')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn chunks_become_whole_lines_and_the_last_gets_its_newline() {
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"ep");
        copy.feed(b"och 1\nepoch 2\nTrace");
        copy.feed(b"back (most recent call last):\n  Fi");
        copy.finish();
        assert_eq!(
            lines(&buffer),
            [
                "epoch 1\n",
                "epoch 2\n",
                "Traceback (most recent call last):\n",
                "  Fi\n"
            ]
        );
        let p = buffer.lock();
        assert_eq!(p.offered, 4);
        assert_eq!(p.segments.len(), 1, "consecutive lines are one write");
    }

    #[test]
    fn a_burst_far_beyond_four_thousand_lines_is_held_whole_within_the_bound() {
        let (mut copy, buffer) = copy_with(DEFAULT_COPY_BUFFER);
        let burst: String = (1..=100_000).map(|i| format!("x {i}\n")).collect();
        for chunk in burst.as_bytes().chunks(65536) {
            copy.feed(chunk);
        }
        let p = buffer.lock();
        assert_eq!((p.offered, p.dropped), (100_000, 0));
        // What is held is the segments' memory: fixed blocks, nearly full.
        let capacity: usize = p.segments.iter().map(|s| s.bytes.capacity()).sum();
        assert_eq!(p.held, capacity);
        assert!(
            capacity >= burst.len() && capacity <= burst.len() + burst.len() / 100 + SEGMENT_MAX,
            "{capacity}"
        );
        // Large writes: a handful of segments, not one per line.
        assert!(
            p.segments.len() <= burst.len() / (SEGMENT_MAX - 64) + 2,
            "{}",
            p.segments.len()
        );
        drop(p);
        assert_eq!(lines(&buffer).concat(), burst);
    }

    #[test]
    fn a_full_bound_drops_and_counts_lines_instead_of_waiting() {
        // The first line's segment takes 4 KiB of memory: the bound is then full.
        let (mut copy, buffer) = copy_with(4097);
        copy.feed(b"a\nb\nc\nd\n");
        assert_eq!(lines(&buffer), ["a\n"]);
        let p = buffer.lock();
        assert_eq!(p.held, 4096);
        assert_eq!(p.dropped, 3);
        assert_eq!(p.first_lost, 2, "b was the first lost");
    }

    #[test]
    fn a_segment_holds_consecutive_lines_of_one_stream_only() {
        let bound = 1 << 20;
        let buffer = CopyBuffer::new(bound);
        let mut p = buffer.lock();
        p.push(Stream::Out, b"a\n", bound);
        p.push(Stream::Err, b"b\n", bound);
        p.push(Stream::Err, b"c\n", bound);
        let held = p.held;
        p.held = bound; // full for line 4
        p.push(Stream::Err, b"d\n", bound);
        p.held = held; // the writer made room
        p.push(Stream::Err, b"e\n", bound);
        let shape: Vec<_> = p
            .segments
            .iter()
            .map(|s| (s.stream, s.first, s.lines))
            .collect();
        assert_eq!(
            shape,
            [
                (Stream::Out, 1, 1),
                (Stream::Err, 2, 2),
                (Stream::Err, 5, 1)
            ],
            "line 4 was dropped: 5 starts a segment of its own"
        );
    }

    #[test]
    fn the_writer_copies_everything_in_order_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        std::fs::write(&out, "").unwrap();
        std::fs::write(&err, "").unwrap();
        let (mut copy, buffer) = copy_with(1 << 20);
        let mut errs = LineCopy::new(buffer.clone(), Stream::Err);
        copy.feed(b"one\ntwo\n");
        errs.feed(b"oops\n");
        copy.feed(b"three");
        copy.finish();
        buffer.close();
        write_copies(&buffer, &to(&out, &err));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "\nheader\none\ntwo\nthree\n"
        );
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "oops\n");
        let report = buffer.report(false);
        assert_eq!(
            (report.offered, report.copied, report.not_copied()),
            (4, 4, 0)
        );
        assert_eq!(buffer.lock().held, 0);
    }

    #[test]
    fn a_failing_target_stops_the_copy_at_the_line_it_failed_on() {
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"line 1\nline 2\nline 3\n");
        buffer.close();
        // Every write to /dev/full fails (ENOSPC), as one to a log whose reader went away does.
        let full = PathBuf::from("/dev/full");
        write_copies(&buffer, &to(&full, &full));
        let report = buffer.report(false);
        assert_eq!(report.first_lost_line, Some(1));
        assert_eq!((report.copied, report.not_copied()), (0, 3));
        let failure = report.failure.unwrap();
        assert!(
            failure.starts_with("writing to the container log failed"),
            "{failure}"
        );
        // Later lines are counted lost, not buffered.
        copy.feed(b"line 4\n");
        assert_eq!(buffer.lock().held, 0);
        assert_eq!(buffer.report(false).not_copied(), 4);
    }

    #[test]
    fn lines_still_buffered_when_ddsky_stops_waiting_are_reported_not_copied() {
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(b"a\nb\nc\n");
        let report = buffer.report(true);
        assert!(report.stuck);
        assert_eq!(report.not_copied(), 3);
        assert_eq!(report.first_lost_line, Some(1));
    }

    #[test]
    fn long_lines_are_copied_in_pieces() {
        let (mut copy, buffer) = copy_with(1 << 20);
        copy.feed(&vec![b'x'; COPY_MAX_LINE * 2 + 10]);
        copy.finish();
        let got = lines(&buffer);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|l| l.ends_with('\n')));
        assert_eq!(got[0].len(), COPY_MAX_LINE + 1);
        let (mut copy, buffer) = copy_with(1 << 20);
        let mut long = vec![b'y'; COPY_MAX_LINE + 5];
        long.push(b'\n');
        copy.feed(b"yy");
        copy.feed(&long);
        assert_eq!(lines(&buffer).len(), 2);
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
