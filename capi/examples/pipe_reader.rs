//! The floor of a blocking native reader for `python/bench_reader.py`:
//! reads COUNT one-byte ticks from the pipe FD (a blocking `read`, a sleep
//! and a wake-up per tick, no camux at all) and prints one JSON line with
//! the CPU time from just after the first tick to just after the last
//! (getrusage), like `rust_reader`. Set beside the same loop in Python
//! (`os.read`), it shows what a cold wake-up costs each language before
//! any camux code runs.
//!
//! `cargo run --release --example pipe_reader -- FD COUNT`
mod cpu_time;
use cpu_time::cpu_ns;
use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fd: i32 = args[0].parse()?;
    let count: u64 = args[1].parse()?;
    // The read end of a pipe the harness made for this process (pass_fds),
    // opened again by its /proc path: no unsafe adoption of a raw fd.
    let mut pipe = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
    println!("registered");
    let (mut ticks, mut start, mut byte) = (0u64, 0u64, [0u8; 1]);
    while ticks < count {
        if pipe.read(&mut byte)? == 0 {
            return Err("the pipe closed early".into());
        }
        ticks += 1;
        if ticks == 1 {
            start = cpu_ns();
        }
    }
    let cpu = cpu_ns() - start;
    println!(
        "{{\"frames\":{},\"cpu_ns\":{cpu},\"lagged\":0,\"check\":{}}}",
        ticks - 1,
        byte[0]
    );
    Ok(())
}
