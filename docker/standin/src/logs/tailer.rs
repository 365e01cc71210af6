//! A file tailer as pkg/logs/tailers/file does it: 4 KiB reads back to back while data comes,
//! 1 s of sleep at end of file (hard-coded), and after the stop signal at most ONE more read:
//! it never reads to the end of the file on its way out.

use super::decoder::Decoder;
use super::sender::Message;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

pub const READ_CHUNK: usize = 4096;
pub const END_OF_FILE_SLEEP: Duration = Duration::from_secs(1);

/// Tails a container's json log `file` from `start` into `tx` until `stop` (one more read, then
/// out) or `removed` (out at once). `bytes_read` counts what was read.
pub async fn tail(
    file: tokio::fs::File,
    start: u64,
    tx: mpsc::Sender<Message>,
    stop: watch::Receiver<bool>,
    removed: Arc<AtomicBool>,
    bytes_read: Arc<AtomicU64>,
) {
    let progress = Progress {
        bytes_read,
        read_offset: Arc::default(),
    };
    tail_with(
        file,
        start,
        Decoder::new(start),
        tx,
        stop,
        removed,
        progress,
    )
    .await
}

/// What a tailer has read: all tailers' bytes (`Bytes Read`) and this one's offset in its file
/// (the scan compares it with the file's size to see a truncation).
#[derive(Clone, Default)]
pub struct Progress {
    pub bytes_read: Arc<AtomicU64>,
    pub read_offset: Arc<AtomicU64>,
}

/// Tails `file` from `start` through `decoder` into `tx` until `stop` (one more read, then out)
/// or `removed` (out at once).
pub async fn tail_with(
    mut file: tokio::fs::File,
    start: u64,
    mut decoder: Decoder,
    tx: mpsc::Sender<Message>,
    mut stop: watch::Receiver<bool>,
    removed: Arc<AtomicBool>,
    progress: Progress,
) {
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return;
    }
    progress.read_offset.store(start, Ordering::Relaxed);
    let mut buf = vec![0u8; READ_CHUNK];
    // A stop signal whose sender is gone is a stop (and must not wake the loop forever).
    let mut owner_gone = false;
    loop {
        if removed.load(Ordering::Relaxed) {
            return;
        }
        let stopping = *stop.borrow() || owner_gone;
        let n = file.read(&mut buf).await.unwrap_or_default();
        if n > 0 {
            progress.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            progress.read_offset.fetch_add(n as u64, Ordering::Relaxed);
            let now_ns = (crate::timefmt::now() * 1e9) as i64;
            for d in decoder.feed(&buf[..n]) {
                let m = Message {
                    content: d.content,
                    status: d.status,
                    offset: d.offset,
                    ingested_ns: now_ns,
                };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        }
        if stopping {
            return;
        }
        if n == 0 {
            tokio::select! {
                _ = tokio::time::sleep(END_OF_FILE_SLEEP) => {}
                changed = stop.changed() => owner_gone = changed.is_err(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn after_the_stop_only_one_more_chunk_is_read() {
        let dir = std::env::temp_dir().join(format!("standin-tailer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x-json.log");
        let line = |i: usize| {
            format!(
                "{}\n",
                serde_json::json!({"log": format!("line {i:05} {}\n", "p".repeat(80)), "stream": "stdout"})
            )
        };
        let mut f = std::fs::File::create(&path).unwrap();
        let mut total = 0;
        for i in 0..500 {
            let l = line(i);
            total += l.len();
            f.write_all(l.as_bytes()).unwrap();
        }
        drop(f);
        let (stop_tx, stop_rx) = watch::channel(true);
        let (tx, mut rx) = mpsc::channel(10_000);
        let read = Arc::new(AtomicU64::new(0));
        let file = tokio::fs::File::open(&path).await.unwrap();
        tail(
            file,
            0,
            tx,
            stop_rx,
            Arc::new(AtomicBool::new(false)),
            read.clone(),
        )
        .await;
        drop(stop_tx);
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await {
            got.push(m);
        }
        assert_eq!(read.load(Ordering::Relaxed), READ_CHUNK as u64);
        assert!(total > READ_CHUNK);
        assert!(!got.is_empty() && got.len() < 500);
        assert!(got.last().unwrap().offset <= READ_CHUNK as u64);
        assert!(got[0].content.starts_with("line 00000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
