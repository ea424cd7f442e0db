//! The floor of a blocking native reader for `python/bench_reader.py`:
//! reads COUNT one-byte ticks from the pipe FD (a blocking `read`, a sleep
//! and a wake-up per tick, no camux at all) and prints one JSON line with
//! the CPU time from just after the first tick to just after the last
//! (getrusage), like `rust_reader`. Set beside the same loop in Python
//! (`os.read`), it shows what a cold wake-up costs each language before
//! any camux code runs.
//!
//! `cargo run --release --example pipe_reader -- FD COUNT`
use std::io::Read;
use std::os::fd::FromRawFd;

/// CPU time (user + system) of this process so far, in ns.
fn cpu_ns() -> u64 {
    // SAFETY: all-zero bytes are a valid `rusage` (integers only).
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fd: i32 = args[0].parse()?;
    let count: u64 = args[1].parse()?;
    // SAFETY: the harness passes the read end of a pipe it made for this
    // process as FD (pass_fds), which nothing else here owns or closes.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
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
