//! What every participant process shares: the lines it prints, the wait
//! for the harness's "go", the producer's frame clock and measured window,
//! and the reader's recorder.

use super::hist::LatHist;
use super::measure::{private_kib, Cpu};
use super::spec::{Line, Mode, ProducerReport, ReaderReport, Scenario, Touch};
use camux::ring::mono_ns;
use camux::source::Pacer;
use std::io::{BufRead, Write};
use std::time::Instant;

/// Prints one line for the harness and flushes it.
pub fn say(line: &Line) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Blocks until the harness writes a line on stdin (or closes it).
pub fn wait_go() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// Blocks until the harness closes stdin: the producer's resources (ring,
/// sockets) must outlive the readers' last frame.
pub fn wait_eof() {
    let mut sink = String::new();
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    while lock.read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
}

/// A frame's position in the run: 1..=warmup are warm-up, then the
/// measured frames, then one end marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// 1-based index.
    pub index: u64,
    /// The end marker: no frame follows.
    pub end: bool,
}

/// Runs a producer's frames: warm-up, the measured window, the end marker.
/// `publish` publishes one frame and returns whether it was delivered
/// (`false`: dropped by the system). Returns the window's figures.
pub fn produce(
    sc: &Scenario,
    mut publish: impl FnMut(Frame) -> anyhow::Result<bool>,
) -> anyhow::Result<ProducerReport> {
    let mut pacer = match sc.mode {
        Mode::Paced => Some(Pacer::new(sc.fps)?),
        Mode::Flat => None,
    };
    let mut tick = || {
        if let Some(p) = pacer.as_mut() {
            p.wait();
        }
    };
    let warmup = sc.warmup();
    for index in 1..=warmup {
        tick();
        publish(Frame { index, end: false })?;
    }
    let paced_frames = (sc.fps * sc.seconds).round().max(1.0) as u64;
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let mut index = warmup;
    let mut dropped = 0;
    loop {
        match sc.mode {
            Mode::Paced if index - warmup >= paced_frames => break,
            Mode::Flat if t0.elapsed().as_secs_f64() >= sc.seconds => break,
            _ => {}
        }
        tick();
        index += 1;
        if !publish(Frame { index, end: false })? {
            dropped += 1;
        }
    }
    let window_ns = t0.elapsed().as_nanos() as u64;
    let cpu = cpu0.until(Cpu::now());
    tick();
    publish(Frame {
        index: index + 1,
        end: true,
    })?;
    Ok(ProducerReport {
        frames: index - warmup,
        dropped,
        window_ns,
        cpu_ns: cpu.rusage_ns,
        cpu_clock_ns: cpu.clock_ns,
        private_kib: private_kib("self"),
        source_cpu_ns: None,
        note: None,
    })
}

/// A reader's figures as frames come in.
pub struct Recorder {
    warmup: u64,
    touch: Touch,
    hist: LatHist,
    frames: u64,
    cpu0: Option<Cpu>,
    checksum: u64,
}

impl Recorder {
    /// A recorder for `sc`'s readers.
    pub fn new(sc: &Scenario) -> Recorder {
        Recorder {
            warmup: sc.warmup(),
            touch: sc.touch,
            hist: LatHist::new(),
            frames: 0,
            cpu0: None,
            checksum: 0,
        }
    }

    /// Whether readers of this scenario read every cache line.
    pub fn touches(&self) -> bool {
        self.touch == Touch::All
    }

    /// Frame `index`, stamped `stamp_ns` at publish, arrived at `wake_ns`
    /// (CLOCK_MONOTONIC, taken as the receive call returned). Warm-up frames
    /// and the end marker are not counted; the first measured frame starts
    /// the CPU window.
    pub fn frame(&mut self, index: u64, stamp_ns: u64, wake_ns: u64, end: bool) {
        if index <= self.warmup || end {
            return;
        }
        if self.cpu0.is_none() {
            self.cpu0 = Some(Cpu::now());
        }
        self.frames += 1;
        self.hist.record(wake_ns.saturating_sub(stamp_ns));
    }

    /// Reads one byte of every cache line of `payload` (with `Touch::All`).
    pub fn touch(&mut self, payload: &[u8]) {
        if self.touch == Touch::All {
            self.checksum = self.checksum.wrapping_add(touch_lines(payload));
        }
    }

    /// The report, at the end marker.
    pub fn finish(mut self) -> ReaderReport {
        let cpu = self.cpu0.map(|c| c.until(Cpu::now())).unwrap_or_default();
        self.hist.seal();
        ReaderReport {
            frames: self.frames,
            latency: self.hist,
            cpu_ns: cpu.rusage_ns,
            cpu_clock_ns: cpu.clock_ns,
            private_kib: private_kib("self"),
            checksum: self.checksum,
        }
    }
}

/// The sum of one byte of every 64-byte line of `payload` (and its last
/// byte): every cache line is read.
pub fn touch_lines(payload: &[u8]) -> u64 {
    let mut sum = 0u64;
    for line in payload.chunks(64) {
        sum = sum.wrapping_add(u64::from(std::hint::black_box(line[0])));
    }
    if let Some(&last) = payload.last() {
        sum = sum.wrapping_add(u64::from(last));
    }
    sum
}

/// How long a reader waits for a frame before it gives up (the producer
/// died, or the system lost the end marker).
pub const STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// A spinning reader's watchdog: call [`Spinner::spin`] on every empty
/// poll; it fails once no frame came for [`STALL`].
pub struct Spinner {
    polls: u32,
    since: Instant,
}

impl Default for Spinner {
    fn default() -> Self {
        Spinner {
            polls: 0,
            since: Instant::now(),
        }
    }
}

impl Spinner {
    /// One empty poll.
    pub fn spin(&mut self) -> anyhow::Result<()> {
        std::hint::spin_loop();
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(65_536) && self.since.elapsed() > STALL {
            anyhow::bail!("no frame for {STALL:?}");
        }
        Ok(())
    }

    /// A frame came.
    pub fn got(&mut self) {
        if self.polls != 0 {
            self.polls = 0;
            self.since = Instant::now();
        }
    }
}

/// CLOCK_MONOTONIC now (ns), the clock of every stamp.
pub fn now_ns() -> u64 {
    mono_ns()
}

/// The 24-byte header the harness's own framings carry (socket broker,
/// GStreamer feeder, iceoryx2 payload): index, publish stamp, end flag.
pub const HEADER: usize = 24;

/// Writes the header into the first [`HEADER`] bytes of `buf`.
pub fn put_header(buf: &mut [u8], frame: Frame, stamp_ns: u64) {
    buf[0..8].copy_from_slice(&frame.index.to_le_bytes());
    buf[8..16].copy_from_slice(&stamp_ns.to_le_bytes());
    buf[16..24].copy_from_slice(&u64::from(frame.end).to_le_bytes());
}

/// Reads a header: (index, stamp, end).
pub fn get_header(buf: &[u8]) -> (u64, u64, bool) {
    let word = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
    (word(0), word(8), word(16) != 0)
}

/// A frame's bytes: a fixed pattern the producer copies from.
pub fn pattern(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i * 31 % 251) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_lines_are_touched() {
        let mut b = vec![0u8; 64];
        put_header(
            &mut b,
            Frame {
                index: 7,
                end: true,
            },
            123,
        );
        assert_eq!(get_header(&b), (7, 123, true));
        let p = vec![1u8; 640];
        assert_eq!(touch_lines(&p), 11);
        assert_eq!(touch_lines(&[]), 0);
    }
}
