//! A slow consumer that always takes the newest frame (`Mode::LatestOnly`),
//! as a model that needs 200 ms per frame on a 30 fps camera should: it
//! never falls behind and never processes a stale frame; the frames it
//! skips on purpose are counted, not reported as lag.
//!
//! ```text
//! cargo run --release -- publish --dir /tmp/camux --stream cam0 &
//! cargo run --release --example latest_only -- /tmp/camux cam0 20 200
//! ```
//!
//! Arguments: DIR (default /run/camux), STREAM (default cam0), the frames
//! to process (default 20) and the work per frame in ms (default 200).
use camux::{Mode, RecvError, Subscriber, SubscriberOptions};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/run/camux".into());
    let stream = args.next().unwrap_or_else(|| "cam0".into());
    let count: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(20);
    let work = Duration::from_millis(args.next().map(|c| c.parse()).transpose()?.unwrap_or(200));

    let opts = SubscriberOptions::new(stream)
        .dir(dir)
        .mode(Mode::LatestOnly);
    let mut sub = Subscriber::with_options(opts)?;
    let (mut processed, mut skipped) = (0u64, 0u64);
    while processed < count {
        let frame = match sub.recv() {
            Ok(frame) => frame,
            Err(e) if e.is_fatal() => return Err(e.into()),
            // Lagged cannot happen in latest-only mode; a restart or a
            // stale producer is worth a line.
            Err(RecvError::Lagged(n)) => unreachable!("latest-only mode lagged {n}"),
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        // How old the newest frame was when we got it: stays small however
        // slow the work, because we never queue.
        let age_us = frame.age_ns() / 1000;
        processed += 1;
        skipped += frame.skipped();
        println!(
            "seq={} skipped={} age={age_us}us (processing for {} ms)",
            frame.seq(),
            frame.skipped(),
            work.as_millis()
        );
        // The "model": the frame stays held, so the producer will not
        // overwrite it, while we work on it.
        std::thread::sleep(work);
        if !frame.is_intact() {
            eprintln!(
                "frame {} was revoked: the work outlived the hold timeout",
                frame.seq()
            );
        }
    }
    println!("summary: processed={processed} skipped={skipped}");
    Ok(())
}
