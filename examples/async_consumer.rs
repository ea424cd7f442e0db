//! The tokio API: several streams read in one task set, each by an
//! `AsyncSubscriber` (a futex waiter thread per stream wakes its task; the
//! runtime's threads never block).
//!
//! ```text
//! cargo run --release -- publish --dir /tmp/camux --stream cam0 &
//! cargo run --release -- publish --dir /tmp/camux --stream cam1 --format NV12 --width 640 --height 480 &
//! cargo run --release --example async_consumer -- /tmp/camux 100 cam0 cam1
//! ```
//!
//! Arguments: DIR, the frames to read from each stream, then the streams.
//! Needs the `async` feature (on by default).
use camux::{AsyncSubscriber, RecvError, Subscriber};
use std::time::Duration;
use tokio::task::JoinSet;

/// Reads `count` frames of `stream`; returns (stream, frames, lagged, bytes).
async fn consume(
    dir: String,
    stream: String,
    count: u64,
) -> Result<(String, u64, u64, u64), String> {
    let sub = Subscriber::open(&dir, &stream).map_err(|e| format!("{stream}: {e}"))?;
    let mut sub = AsyncSubscriber::new(sub);
    let (mut frames, mut lagged, mut bytes) = (0u64, 0u64, 0u64);
    while frames < count {
        match sub.recv_timeout(Duration::from_secs(10)).await {
            Ok(frame) => {
                frames += 1;
                bytes += frame.payload().len() as u64;
                if frames % 30 == 1 {
                    let m = frame.meta();
                    println!(
                        "{stream}: seq={} {} {}x{}",
                        m.seq, m.format.fourcc, m.format.width, m.format.height
                    );
                }
                // The frame is released here, at the end of the arm; an
                // inference call would `.await` on it first.
            }
            Err(RecvError::Lagged(n)) => lagged += n,
            Err(RecvError::Timeout) => return Err(format!("{stream}: no frame for 10 s")),
            Err(e) if e.is_fatal() => return Err(format!("{stream}: {e}")),
            Err(e) => eprintln!("{stream}: {e}"),
        }
    }
    Ok((stream, frames, lagged, bytes))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/run/camux".into());
    let count: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(100);
    let mut streams: Vec<String> = args.collect();
    if streams.is_empty() {
        streams.push("cam0".into());
    }
    let mut set = JoinSet::new();
    for stream in streams {
        set.spawn(consume(dir.clone(), stream, count));
    }
    let mut failed = false;
    while let Some(done) = set.join_next().await {
        match done? {
            Ok((stream, frames, lagged, bytes)) => {
                println!("summary: stream={stream} frames={frames} lagged={lagged} bytes={bytes}")
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err("a stream failed".into());
    }
    Ok(())
}
