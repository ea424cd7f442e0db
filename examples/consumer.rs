//! The smallest useful consumer: print the metadata of every frame.
//!
//! ```text
//! cargo run --release -- publish --dir /tmp/camux --stream cam0 &
//! cargo run --release --example consumer -- /tmp/camux cam0 100
//! ```
use camux::{RecvError, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/run/camux".into());
    let stream = args.next().unwrap_or_else(|| "cam0".into());
    let count: u64 = args
        .next()
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(u64::MAX);

    let mut sub = Subscriber::open(&dir, &stream)?;
    let mut seen = 0;
    while seen < count {
        match sub.recv() {
            Ok(frame) => {
                let m = frame.meta();
                let f = &m.format;
                println!(
                    "#{} {} {}x{} {} bytes, {} us after publish",
                    m.seq,
                    f.fourcc,
                    f.width,
                    f.height,
                    frame.payload().len(),
                    frame.age_ns() / 1000
                );
                seen += 1;
            }
            Err(RecvError::Lagged(n)) => eprintln!("fell behind: {n} frames missed"),
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => eprintln!("{e}"),
        }
    }
    Ok(())
}
