//! The Rust reference reader for `python/bench_reader.py`: receives COUNT
//! frames, reads only their metadata, and prints one JSON line with the
//! CPU time it spent from just after the first frame to just after the
//! last (getrusage), so process start-up is not counted.
//!
//! `cargo run --release --example rust_reader -- DIR STREAM COUNT`
mod cpu_time;
use camux_core::{RecvError, Subscriber};
use cpu_time::cpu_ns;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, stream) = (&args[0], &args[1]);
    let count: u64 = args[2].parse()?;
    let mut sub = Subscriber::open(dir, stream)?;
    println!("registered");
    let (mut frames, mut lagged, mut start, mut sum) = (0u64, 0u64, 0u64, 0u64);
    // Frames missed count towards COUNT: the publisher sends only COUNT.
    while frames + lagged < count {
        match sub.recv() {
            Ok(f) => {
                // Metadata only, as the Python reader does: seq and length.
                sum = sum.wrapping_add(f.meta().seq ^ f.meta().len as u64);
                drop(f);
                frames += 1;
                if frames == 1 {
                    start = cpu_ns();
                }
            }
            Err(RecvError::Lagged(n)) => lagged += n,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => eprintln!("{e}"),
        }
    }
    let cpu = cpu_ns() - start;
    println!(
        "{{\"frames\":{},\"cpu_ns\":{cpu},\"lagged\":{lagged},\"check\":{sum}}}",
        frames - 1
    );
    Ok(())
}
