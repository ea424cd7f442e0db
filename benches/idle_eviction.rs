//! How long this machine keeps a thread's lines in its core's caches while
//! the thread only spins: the host-side effect behind `read/frame_size`'s
//! 8 MiB / 64 B ratio (docs/BENCHMARKS.md, "Why the receive ratio is the
//! host's").
//!
//! A working set of `ws` bytes, one pointer-chase step per 64-byte line in
//! a random cycle (every load depends on the previous one, so no prefetcher
//! hides a miss), is walked once, then the thread spins on the clock for
//! `idle` microseconds touching nothing else, then the walk is timed. On a
//! dedicated core the lines stay where they were however long the spin.
//! Where the guest shares its core's caches with others (the host, another
//! tenant on the sibling hyperthread, cache flushes on VM exits), the walk
//! after a long spin costs what a walk from L3 or DRAM does.
//!
//! Run `cargo bench --bench idle_eviction` (about 2 s). It prints a table
//! and exits; nothing is judged.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

/// A random cyclic permutation of `lines` cache lines: `next[i * 8]` is the
/// index of the next line's first word (8 u64 words per 64-byte line).
fn chain(lines: usize) -> Vec<u64> {
    let mut order: Vec<usize> = (0..lines).collect();
    // xorshift: deterministic, no dependency.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0u64; lines * 8];
    for w in 0..lines {
        next[order[w] * 8] = (order[(w + 1) % lines] * 8) as u64;
    }
    next
}

/// One walk of the whole cycle; returns where it ended (to keep it live).
fn walk(next: &[u64], steps: usize) -> u64 {
    let mut i = 0u64;
    for _ in 0..steps {
        i = next[i as usize];
    }
    i
}

/// (steal, total) ticks of all CPUs: time the hypervisor ran something
/// else on our vCPUs, out of all time.
fn steal() -> Option<(u64, u64)> {
    let v = common::cpu_ticks()?;
    Some((*v.get(7)?, v.iter().take(8).sum()))
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches`
    }
    let cpu = common::cpu_id();
    println!("idle eviction on {cpu}");
    let before = steal();
    println!("| working set | idle spin | ns per line | vs no idle |");
    println!("| ---: | ---: | ---: | ---: |");
    for ws in [16 << 10, 256 << 10] {
        let lines = ws / 64;
        let next = chain(lines);
        let mut base = None;
        for idle_us in [0u64, 10, 100, 1_000, 10_000] {
            let rounds = if idle_us >= 1_000 { 40 } else { 200 };
            let mut timed = Duration::ZERO;
            black_box(walk(&next, lines)); // warm
            for _ in 0..rounds {
                spin(Duration::from_micros(idle_us));
                let t = Instant::now();
                black_box(walk(&next, lines));
                timed += t.elapsed();
            }
            let ns = timed.as_nanos() as f64 / (rounds * lines) as f64;
            let b = *base.get_or_insert(ns);
            println!(
                "| {} KiB | {} µs | {ns:.1} | {:.1}x |",
                ws >> 10,
                idle_us,
                ns / b
            );
        }
    }
    if let (Some((s0, t0)), Some((s1, t1))) = (before, steal()) {
        println!(
            "steal time while it ran: {} of {} CPU ticks ({:.1} %)",
            s1 - s0,
            t1 - t0,
            100.0 * (s1 - s0) as f64 / (t1 - t0).max(1) as f64
        );
    }
}
