//! Criterion benches of the ring's hot paths, each next to its physical limit
//! in the same run, with a ratio summary at the end.
//!
//! | bench | what is timed | compared with |
//! | --- | --- | --- |
//! | `publish/copy/<size>` | `Publisher::publish` (copy-in, default `CopyStores::Auto`: streaming stores from 1 MiB), 1 registered idle reader | `memcpy/tmpfs/<size>` |
//! | `publish/copy_cached/<size>` | the same with `CopyStores::Cached`, sizes from 1 MiB (diagnostic) | `memcpy/tmpfs/<size>` |
//! | `memcpy/tmpfs/<size>` | `copy_from_slice` of the same source into a pre-faulted `MAP_SHARED` tmpfs mapping, rotating over as many slots as the ring has | (the limit) |
//! | `publish/readers_<size>/<n>` | `publish` with 1, 4, 16 registered idle readers | 1 reader |
//! | `limit/lease_scan_one_page/<n>` | the same with all `n` readers' words on one page (diagnostic: per page or per reader?) | `limit/lease_scan/<n>` |
//! | `limit/lease_scan/<n>` | the producer's per-frame fences and scans (claim announcement, `n` readers' 4 hold entries, notify bump, `n` waiting flags) over `n` memfd pages, nothing else | the slope of `publish/readers_64B/<n>` |
//! | `publish/readers_<size>_interleaved/16` | `publish` with 16 idle readers, alternating in 0.5 ms chunks with a 1-reader ring timed over the same window | the 1-reader chunks |
//! | `read/frame_size/<size>` | `try_recv` + `meta()` + drop, producer on another thread (pinned to another CPU) | 64 B |
//! | `read/frame_size_cached/8MiB` | the same, producer with `CopyStores::Cached` (diagnostic) | `read/frame_size/64B` |
//! | `read/frame_size_fresh/<size>`, `read/frame_size_cached_fresh/8MiB` | the same, one frame per batch: each receive right after its frame's commit, as by a reader that keeps up (diagnostic; each sample holds the timer's own cost, `limit/timer`, taken off before the ratio) | `read/frame_size_fresh/64B` |
//! | `limit/timer` | an `Instant::now()` and its `elapsed()` with nothing between: what timing one receive adds to it | |
//! | `read/ring_only/8MiB` | the same, 64 B frames in the ring of 8 MiB slots (diagnostic: the reader's path without the producer's copy traffic) | `read/frame_size/64B` |
//! | `read/frame_size_same_thread/<size>` | the same, producer on the reader's own thread (diagnostic: includes the producer's cache pollution) | 64 B |
//! | `read/frame_size_polluted/64B` | 64 B frames, producer also writes 8 MiB of unrelated memory per frame with cached stores (diagnostic) | `read/frame_size_cached/8MiB` |
//!
//! Rings live in a fresh temporary directory under `/dev/shm` (tmpfs, like
//! the `/run/camux` hostPath), or under `std::env::temp_dir()` when there is
//! no `/dev/shm`; the run prints which, with the file system type.
//!
//! Run `cargo bench --bench ring`; filter with a regex on the id, e.g.
//! `cargo bench --bench ring -- publish/readers`. After the groups, `main`
//! reads every `new/estimates.json` under criterion's output directory and
//! prints the figures and the ratios against their targets (figures not
//! refreshed by this run are marked), and writes the same text to
//! `<criterion dir>/camux-ring-summary.md`.
//!
//! The machine may be shared: the CPU time other processes (and the
//! hypervisor) used while each benchmark ran is measured from `/proc/stat`
//! and shown next to its figure when it is at least a quarter of a CPU.
//! `CAMUX_BENCH_QUIET=<seconds>` makes each benchmark first wait, up to that
//! long, for the machine to be quiet. See `docs/BENCHMARKS.md`.

mod common;

use camux::ring::{CopyStores, RingOptions, SlotReuse, StreamFormat, STREAMING_MIN_BYTES};
use camux::{FrameInfo, Published, Publisher, Subscriber};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use memmap2::{MmapMut, MmapOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Frame sizes of `publish/copy` and `memcpy/tmpfs`.
const COPY_SIZES: [usize; 6] = [64, 4 * KIB, 64 * KIB, MIB, 4 * MIB, 8 * MIB];
/// Frame sizes and reader counts of `publish/readers_*`.
const READER_SIZES: [usize; 2] = [64, MIB];
const READER_COUNTS: [u32; 3] = [1, 4, 16];
/// Frame sizes of `read/*`.
const READ_SIZES: [usize; 2] = [64, 8 * MIB];
/// The ring's slot count: `RingOptions`' default, asserted at setup.
const SLOTS: u32 = 8;
const STREAM: &str = "bench";

fn label(bytes: usize) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{}MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{}KiB", b / KIB),
        b => format!("{b}B"),
    }
}

// ---------------------------------------------------------------- setup

/// Where the rings and the baseline mapping live.
struct Root {
    path: PathBuf,
    what: String,
}

fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs that
    // outlive the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as i64 {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        t => format!("fs magic {t:#x}"),
    }
}

fn root() -> Root {
    let shm = Path::new("/dev/shm");
    let (path, why) = if shm.is_dir() {
        (shm.to_path_buf(), "/dev/shm")
    } else {
        (
            std::env::temp_dir(),
            "std::env::temp_dir() (no /dev/shm: figures are not tmpfs figures)",
        )
    };
    let what = format!("{} [{}]", why, fs_type(&path));
    Root { path, what }
}

/// A ring with `readers` registered subscribers that hold nothing and never
/// wait. Fields drop in order: readers, then the publisher, then the directory.
struct Ring {
    subs: Vec<Subscriber>,
    publisher: Publisher,
    _dir: tempfile::TempDir,
}

fn ring(root: &Root, frame: usize, readers: u32, src: &[u8]) -> Ring {
    ring_with(root, frame, readers, src, CopyStores::Auto)
}

fn ring_with(root: &Root, frame: usize, readers: u32, src: &[u8], stores: CopyStores) -> Ring {
    ring_reusing(root, frame, readers, src, stores, SlotReuse::Auto)
}

fn ring_reusing(
    root: &Root,
    frame: usize,
    readers: u32,
    src: &[u8],
    stores: CopyStores,
    reuse: SlotReuse,
) -> Ring {
    let dir = tempfile::Builder::new()
        .prefix("camux-bench-")
        .tempdir_in(&root.path)
        .expect("temporary ring directory");
    let mut opts = RingOptions::new(
        dir.path(),
        STREAM,
        StreamFormat::opaque(frame as u32),
        frame as u64,
    );
    opts.copy_stores = stores;
    opts.slot_reuse = reuse;
    assert_eq!(
        opts.slots, SLOTS,
        "the baseline assumes the default slot count"
    );
    let mut publisher = Publisher::create(&opts).expect("create ring");
    // Write every slot once, as a running daemon has: the producer's mapping
    // is faulted in (the memcpy baseline is pre-faulted the same way).
    for _ in 0..SLOTS {
        publisher
            .publish(&FrameInfo::default(), &src[..frame])
            .expect("warm-up publish");
    }
    let subs: Vec<Subscriber> = (0..readers)
        .map(|_| Subscriber::open(dir.path(), STREAM).expect("open subscriber"))
        .collect();
    assert_eq!(
        publisher.wait_readers(readers, Duration::from_secs(10)),
        readers,
        "readers did not register"
    );
    Ring {
        subs,
        publisher,
        _dir: dir,
    }
}

impl Ring {
    /// Panics if any frame was dropped (a dropped frame is not copied, so the
    /// figure would be too good).
    fn assert_no_drops(&self, id: &str) {
        let s = self.publisher.stats();
        assert_eq!(s.dropped, 0, "{id}: {} frames dropped", s.dropped);
        assert_eq!(s.revoked, 0, "{id}: {} holds revoked", s.revoked);
    }
}

/// `slots` page-aligned destinations of `stride` bytes in a `MAP_SHARED`
/// mapping of a file on the rings' file system, every page faulted in.
struct ShmSlots {
    map: MmapMut,
    stride: usize,
    slots: usize,
    next: usize,
    _file: std::fs::File,
}

impl ShmSlots {
    fn new(root: &Root, stride: u64, slots: u32) -> ShmSlots {
        let file = tempfile::tempfile_in(&root.path).expect("baseline file");
        // Reserved the way the ring reserves its file (posix_fallocate), so
        // both get their pages from the same kind of allocation.
        let len = stride * u64::from(slots);
        nix::fcntl::posix_fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
            len as libc::off_t,
        )
        .expect("reserve baseline file");
        // SAFETY: the file is private to this process (unlinked, never shared),
        // so nothing else changes it under the mapping or truncates it.
        let mut map = unsafe { MmapOptions::new().populate().map_mut(&file) }.expect("map");
        map.fill(0xA5); // allocate and write-fault every page
        ShmSlots {
            map,
            stride: stride as usize,
            slots: slots as usize,
            next: 0,
            _file: file,
        }
    }

    fn copy(&mut self, src: &[u8]) {
        let off = self.next * self.stride;
        self.map[off..off + src.len()].copy_from_slice(src);
        self.next = (self.next + 1) % self.slots;
    }
}

fn source(len: usize) -> Vec<u8> {
    // Non-zero and not constant: no zero-page or memset shortcuts on the read side.
    (0..len)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8 | 1)
        .collect()
}

// ---------------------------------------------------------------- background load

/// CPU time counters of the whole machine and of this process.
#[derive(Clone, Copy)]
struct CpuSnap {
    /// Busy ticks of every CPU (user, nice, system, irq, softirq).
    busy: u64,
    /// Ticks the hypervisor ran something else on our virtual CPUs.
    steal: u64,
    /// Ticks of this process (every thread).
    own: u64,
    at: Instant,
}

fn cpu_snap() -> Option<CpuSnap> {
    let cpu = common::cpu_ticks()?;
    let busy = cpu.first()? + cpu.get(1)? + cpu.get(2)? + cpu.get(5)? + cpu.get(6)?;
    let steal = *cpu.get(7)?;
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
    let own = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(CpuSnap {
        busy,
        steal,
        own,
        at: Instant::now(),
    })
}

/// CPUs' worth of work other processes (and the hypervisor) did between two snapshots.
fn background_cores(a: &CpuSnap, b: &CpuSnap) -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs = (b.at - a.at).as_secs_f64().max(1e-3);
    let others = b
        .busy
        .saturating_sub(a.busy)
        .saturating_sub(b.own.saturating_sub(a.own))
        + b.steal.saturating_sub(a.steal);
    others as f64 / hz / secs
}

/// Background CPU load above this (in CPUs) marks a figure as noisy.
const NOISY_CORES: f64 = 0.25;

/// Measures the background load during each benchmark that actually runs,
/// and optionally waits for a quiet machine before it starts
/// (`CAMUX_BENCH_QUIET=<max seconds>`).
struct Background {
    quiet_for: Duration,
    started: Option<CpuSnap>,
    seen: std::collections::BTreeMap<String, f64>,
}

impl Background {
    fn new() -> Background {
        let quiet_for = std::env::var("CAMUX_BENCH_QUIET")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::ZERO);
        Background {
            quiet_for,
            started: None,
            seen: Default::default(),
        }
    }

    /// Called from inside a bench closure (so only for benchmarks that run).
    fn begin(&mut self) {
        if self.started.is_some() {
            return;
        }
        if !self.quiet_for.is_zero() {
            let give_up = Instant::now() + self.quiet_for;
            loop {
                let a = cpu_snap();
                std::thread::sleep(Duration::from_millis(500));
                let load = match (a, cpu_snap()) {
                    (Some(a), Some(b)) => background_cores(&a, &b),
                    _ => 0.0,
                };
                if load < NOISY_CORES {
                    break;
                }
                if Instant::now() >= give_up {
                    eprintln!(
                        "note: machine still busy ({load:.2} CPUs of other work); measuring anyway"
                    );
                    break;
                }
            }
        }
        self.started = cpu_snap();
    }

    /// After `bench_function` returns: keeps the figure only if criterion
    /// wrote fresh estimates for `id` (not in `--test` or `--profile-time`).
    fn end(&mut self, id: &str) {
        let Some(a) = self.started.take() else {
            return;
        };
        let since = SystemTime::now() - a.at.elapsed();
        let fresh = std::fs::metadata(estimates_path(&criterion_dir(), id))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if let (true, Some(b)) = (fresh, cpu_snap()) {
            self.seen.insert(id.to_owned(), background_cores(&a, &b));
        }
    }

    /// Merges this run's figures into `<criterion dir>/camux-background.json`
    /// and returns the merged map (so a filtered rerun keeps the others').
    fn persist(&self) -> std::collections::BTreeMap<String, f64> {
        let path = criterion_dir().join("camux-background.json");
        let mut all: std::collections::BTreeMap<String, f64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.extend(self.seen.iter().map(|(k, v)| (k.clone(), *v)));
        if !self.seen.is_empty() {
            if let Ok(t) = serde_json::to_string_pretty(&all) {
                let _ = std::fs::write(&path, t);
            }
        }
        all
    }
}

// ---------------------------------------------------------------- groups

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .nresamples(20_000)
        .configure_from_args()
}

/// `publish/copy/<size>` and `memcpy/tmpfs/<size>`, interleaved per size so
/// that a burst of background load hits both sides of a ratio alike.
fn copy_vs_memcpy(c: &mut Criterion, bg: &mut Background, root: &Root, src: &[u8]) {
    let info = FrameInfo::default();
    for &size in &COPY_SIZES {
        let l = label(size);
        let data = &src[..size];
        let mut r = ring(root, size, 1, src);
        let stride = r.publisher.header().layout.slot_stride;

        let mut g = c.benchmark_group("publish");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("copy", &l), |b| {
            bg.begin();
            b.iter(|| black_box(r.publisher.publish(&info, black_box(data)).unwrap()))
        });
        bg.end(&format!("publish/copy/{l}"));
        r.assert_no_drops(&format!("publish/copy/{l}"));
        drop(r);
        if size >= STREAMING_MIN_BYTES {
            // The default streams frames this large; the cached path beside it.
            let mut r = ring_with(root, size, 1, src, CopyStores::Cached);
            g.bench_function(BenchmarkId::new("copy_cached", &l), |b| {
                bg.begin();
                b.iter(|| black_box(r.publisher.publish(&info, black_box(data)).unwrap()))
            });
            bg.end(&format!("publish/copy_cached/{l}"));
            r.assert_no_drops(&format!("publish/copy_cached/{l}"));
        }
        g.finish();

        let mut shm = ShmSlots::new(root, stride, SLOTS);
        let mut g = c.benchmark_group("memcpy");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("tmpfs", &l), |b| {
            bg.begin();
            b.iter(|| shm.copy(black_box(data)))
        });
        bg.end(&format!("memcpy/tmpfs/{l}"));
        g.finish();
        black_box(&shm.map[..]);
    }
}

/// `publish/readers_<size>/<n>`: publish cost against registered readers.
fn publish_readers(c: &mut Criterion, bg: &mut Background, root: &Root, src: &[u8]) {
    let info = FrameInfo::default();
    for &size in &READER_SIZES {
        let l = label(size);
        let data = &src[..size];
        let mut g = c.benchmark_group("publish");
        g.throughput(Throughput::Bytes(size as u64));
        for &n in &READER_COUNTS {
            let mut r = ring(root, size, n, src);
            assert_eq!(r.subs.len() as u32, n);
            g.bench_function(BenchmarkId::new(format!("readers_{l}"), n), |b| {
                bg.begin();
                b.iter(|| black_box(r.publisher.publish(&info, black_box(data)).unwrap()))
            });
            bg.end(&format!("publish/readers_{l}/{n}"));
            assert_eq!(r.publisher.stats().readers, n, "a reader went away");
            r.assert_no_drops(&format!("publish/readers_{l}/{n}"));
        }
        g.finish();
    }
}

/// Per-frame time a chunk of the interleaved measurement aims at in all:
/// long enough that the lines the other ring evicted are a rounding error,
/// short enough that a burst of load on a shared host falls on both rings.
const INTERLEAVE_CHUNK: Duration = Duration::from_micros(500);

/// One interleaved sample: both rings' time over the same window.
#[derive(Clone, Copy)]
struct PairSample {
    frames: u64,
    one_ns: f64,
    many_ns: f64,
}

/// `publish/readers_<size>_interleaved/16`: the 16-reader ring timed by
/// criterion, and in the same call, chunk by chunk in alternating order, the
/// 1-reader ring as well, so that the ratio of the two comes from one time
/// window. On a shared host the plain `readers_<size>/<n>` figures are
/// seconds apart and load bursts swing them by tens of percent; this ratio
/// is what the summary checks against the target. Samples go to
/// `<criterion dir>/camux-interleaved/<id>.json`.
fn publish_readers_interleaved(c: &mut Criterion, bg: &mut Background, root: &Root, src: &[u8]) {
    let info = FrameInfo::default();
    let many = *READER_COUNTS.last().expect("reader counts");
    for &size in &READER_SIZES {
        let l = label(size);
        let data = &src[..size];
        let mut one = ring(root, size, 1, src);
        let mut lots = ring(root, size, many, src);
        // Chunk length from a quick probe of the 1-reader ring.
        let t = Instant::now();
        for _ in 0..64 {
            black_box(one.publisher.publish(&info, data).unwrap());
        }
        let per = t.elapsed().as_nanos().max(1) as u64 / 64;
        let chunk = (INTERLEAVE_CHUNK.as_nanos() as u64 / per.max(1)).clamp(1, 4096);
        let id = format!("publish/readers_{l}_interleaved/{many}");
        let mut samples: Vec<PairSample> = Vec::new();
        let mut g = c.benchmark_group("publish");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(
            BenchmarkId::new(format!("readers_{l}_interleaved"), many),
            |b| {
                bg.begin();
                b.iter_custom(|iters| {
                    let (mut t1, mut tn) = (Duration::ZERO, Duration::ZERO);
                    let mut left = iters;
                    let mut flip = false;
                    while left > 0 {
                        let k = left.min(chunk);
                        left -= k;
                        let run = |r: &mut Ring| {
                            let t = Instant::now();
                            for _ in 0..k {
                                black_box(r.publisher.publish(&info, black_box(data)).unwrap());
                            }
                            t.elapsed()
                        };
                        if flip {
                            t1 += run(&mut one);
                            tn += run(&mut lots);
                        } else {
                            tn += run(&mut lots);
                            t1 += run(&mut one);
                        }
                        flip = !flip;
                    }
                    // Criterion's warm-up calls are short; keep the real samples.
                    if tn >= Duration::from_millis(1) {
                        samples.push(PairSample {
                            frames: iters,
                            one_ns: t1.as_nanos() as f64,
                            many_ns: tn.as_nanos() as f64,
                        });
                    }
                    tn
                })
            },
        );
        bg.end(&id);
        g.finish();
        one.assert_no_drops(&id);
        lots.assert_no_drops(&id);
        assert_eq!(lots.publisher.stats().readers, many, "a reader went away");
        if !samples.is_empty() {
            write_interleaved(&id, &samples);
        }
    }
}

/// Where an interleaved run keeps its samples: one file per id, so a
/// filtered rerun refreshes only its own (and the summary can tell which
/// figures are from this run by the file's time).
fn interleaved_path(id: &str) -> PathBuf {
    criterion_dir()
        .join("camux-interleaved")
        .join(format!("{}.json", id.replace('/', "_")))
}

fn write_interleaved(id: &str, samples: &[PairSample]) {
    let rows: Vec<(u64, f64, f64)> = samples
        .iter()
        .map(|p| (p.frames, p.one_ns, p.many_ns))
        .collect();
    let path = interleaved_path(id);
    if let (Some(dir), Ok(t)) = (path.parent(), serde_json::to_string(&rows)) {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&path, t);
    }
}

/// The samples of `id` and whether they were written since `since`.
fn read_interleaved(id: &str, since: SystemTime) -> Option<(Vec<PairSample>, bool)> {
    let path = interleaved_path(id);
    let rows: Vec<(u64, f64, f64)> =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    let v = rows
        .into_iter()
        .map(|(frames, one_ns, many_ns)| PairSample {
            frames,
            one_ns,
            many_ns,
        })
        .collect();
    Some((v, fresh))
}

/// The many/one ratio of an interleaved run: of the summed times, and the
/// median and range of the per-sample ratios.
fn interleaved_ratio(s: &[PairSample]) -> Option<(f64, f64, f64, f64)> {
    let one: f64 = s.iter().map(|p| p.one_ns).sum();
    let many: f64 = s.iter().map(|p| p.many_ns).sum();
    if s.is_empty() || one <= 0.0 {
        return None;
    }
    let mut r: Vec<f64> = s.iter().map(|p| p.many_ns / p.one_ns.max(1.0)).collect();
    r.sort_by(f64::total_cmp);
    Some((many / one, r[r.len() / 2], r[0], r[r.len() - 1]))
}

/// Hold entries the bare scan reads per reader: the default hold limit.
const SCAN_HOLDS: usize = 4;

/// `n` pages laid out like lease pages: each its own memfd, mapped shared
/// on its own, the reader's words at the cache line its id gets.
/// Whether this CPU has AVX2 (the library's hold pre-check uses it).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

struct ScanPages {
    maps: Vec<memmap2::MmapRaw>,
    /// Per page: the words block (waiting u32 at 0, holds from 16).
    words: Vec<*const u8>,
    /// Whether the hold scan uses AVX2 compares (as the library does).
    avx2: bool,
}

impl ScanPages {
    /// `n` readers' words; each on its own page (as lease pages are), or
    /// all on the lines of one page (`shared`: the same loads without one
    /// page, and one TLB entry, per reader).
    fn new(n: usize, shared: bool) -> ScanPages {
        let mut maps: Vec<memmap2::MmapRaw> = Vec::new();
        let mut words: Vec<*const u8> = Vec::new();
        for i in 0..n {
            if shared && i > 0 {
                let off = 64 * (1 + (i + 1) % 61);
                // SAFETY: as below, inside the first page's mapping.
                words.push(unsafe { maps[0].as_ptr().add(off) });
                continue;
            }
            let fd = nix::sys::memfd::memfd_create(
                c"camux-bench-lease",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .expect("memfd");
            nix::unistd::ftruncate(&fd, 4096).expect("ftruncate");
            let map = MmapOptions::new()
                .len(4096)
                .map_raw(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .expect("map lease-like page");
            // The block at 64 * (1 + id): ids from 1, like registrations.
            let off = 64 * (1 + (i + 1) % 61);
            // SAFETY: `off` + 144 <= 4096: inside the mapping, which `maps`
            // keeps alive as long as the pointer.
            words.push(unsafe { map.as_ptr().add(off) });
            maps.push(map);
        }
        ScanPages {
            maps,
            words,
            avx2: avx2(),
        }
    }

    /// The producer's per-frame skeleton of synchronisation and scans,
    /// without payload, metadata or clocks: announce a claim, SeqCst fence,
    /// scan every reader's first `SCAN_HOLDS` hold entries for `seq` (one
    /// 256-bit compare per reader where the CPU has AVX2, as the library's
    /// pre-check does; scalar loads otherwise), withdraw, AcqRel fence; bump
    /// the notify word, SeqCst fence, OR every reader's waiting flag. What
    /// the per-reader cost of `publish` compares with.
    fn frame(&self, word: &std::sync::atomic::AtomicU64, seq: u64) -> bool {
        use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
        word.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        #[cfg(target_arch = "x86_64")]
        let vector = self.avx2.then(|| {
            // SAFETY: the CPU has AVX2 (checked in `new`).
            unsafe { self.holds_avx2(seq) }
        });
        #[cfg(not(target_arch = "x86_64"))]
        let vector = None;
        let held = vector.unwrap_or_else(|| {
            self.words.iter().fold(false, |held, &w| {
                // SAFETY: `w` is 64-byte aligned inside a live shared mapping
                // (see `new`), accessed only through atomics; entries 16.. are u64.
                let holds = unsafe { &*(w.add(16) as *const [AtomicU64; SCAN_HOLDS]) };
                held | holds
                    .iter()
                    .fold(false, |hit, h| hit | (h.load(Ordering::Relaxed) == seq))
            })
        });
        word.store(0, Ordering::Release);
        fence(Ordering::AcqRel);
        word.store(seq, Ordering::Release);
        fence(Ordering::SeqCst);
        let waiting = self.words.iter().fold(0, |any, &w| {
            // SAFETY: as above; the waiting flag is the block's first u32.
            let flag = unsafe { &*(w as *const AtomicU32) };
            any | flag.load(Ordering::Relaxed)
        });
        held | (waiting != 0)
    }

    /// The hold scan with one 256-bit compare of four entries per reader.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn holds_avx2(&self, seq: u64) -> bool {
        use std::arch::x86_64::*;
        const _: () = assert!(SCAN_HOLDS == 4);
        let want = _mm256_set1_epi64x(seq as i64);
        let mut hits = _mm256_setzero_si256();
        for &w in &self.words {
            // SAFETY: 32 bytes at `w + 16` lie inside a live mapping (see
            // `new`). Nothing writes these pages while the bench runs (no
            // reader is attached), so a plain vector load races with nothing.
            let quad = unsafe { _mm256_loadu_si256(w.add(16) as *const __m256i) };
            hits = _mm256_or_si256(hits, _mm256_cmpeq_epi64(quad, want));
        }
        _mm256_testz_si256(hits, hits) == 0
    }
}

/// `limit/lease_scan/<n>`: [`ScanPages::frame`] over `n` lease-like pages:
/// the least the producer's per-frame, per-reader work can cost with one
/// page per reader, for the slope of `publish/readers_64B/<n>` to be read
/// against.
///
/// `limit/lease_scan_one_page/<n>`: the same with all `n` readers' words on
/// one page, to tell a per-page cost (TLB) from a per-reader one.
fn lease_scan_limit(c: &mut Criterion, bg: &mut Background) {
    let word = std::sync::atomic::AtomicU64::new(0);
    let mut g = c.benchmark_group("limit");
    for (name, shared) in [("lease_scan", false), ("lease_scan_one_page", true)] {
        for &n in &READER_COUNTS {
            let pages = ScanPages::new(n as usize, shared);
            assert_eq!(pages.maps.len(), if shared { 1 } else { n as usize });
            assert_eq!(pages.words.len(), n as usize);
            let mut seq = 1u64;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                bg.begin();
                b.iter(|| {
                    seq += 1;
                    black_box(pages.frame(&word, black_box(seq)))
                })
            });
            bg.end(&format!("limit/{name}/{n}"));
        }
    }
    // What `timed_reads` adds to each batch it times: the span from inside
    // one clock read to inside the next, with nothing between. For
    // `read/frame_size_fresh` (batches of one) it is part of every figure
    // and is taken off before the ratio.
    g.bench_function("timer", |b| {
        bg.begin();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                total += black_box(t).elapsed();
            }
            total
        })
    });
    bg.end("limit/timer");
    g.finish();
}

/// Sizes of `read_along/*`: where slot reuse decides whether the copy hits
/// the caches.
const ALONG_SIZES: [usize; 2] = [MIB, 4 * MIB];

/// `read_along/{oldest,warm}/<size>`: a publish and one reader's receive of
/// it (metadata only), frame after frame, so the reader always keeps up:
/// what `SlotReuse::Warm` is for. Oldest-first cycles all 8 slots through
/// the copy; warm reuse writes into the two or three slots the reader has
/// just released.
fn read_along(c: &mut Criterion, bg: &mut Background, root: &Root, src: &[u8]) {
    let info = FrameInfo::default();
    let mut g = c.benchmark_group("read_along");
    for &size in &ALONG_SIZES {
        let l = label(size);
        let data = &src[..size];
        g.throughput(Throughput::Bytes(size as u64));
        for reuse in [SlotReuse::Oldest, SlotReuse::Warm] {
            let mut r = ring_reusing(root, size, 1, src, CopyStores::Auto, reuse);
            let id = format!("read_along/{}/{l}", reuse.name());
            g.bench_function(BenchmarkId::new(reuse.name(), &l), |b| {
                bg.begin();
                b.iter(|| {
                    black_box(r.publisher.publish(&info, black_box(data)).unwrap());
                    let f = r.subs[0].try_recv().expect("the frame just published");
                    black_box(f.seq())
                })
            });
            bg.end(&id);
            r.assert_no_drops(&id);
        }
    }
    g.finish();
}

/// Frames published per timed batch in `read/*`: every slot, so the whole
/// batch is in the ring when the reader starts (no lag), and the timer's own
/// cost is spread over `SLOTS` frames.
const READ_BATCH: u64 = SLOTS as u64;

/// Times `k` receives of already-published frames: `try_recv`, a look at
/// the metadata (not the payload), drop of the guard.
fn timed_reads(sub: &mut Subscriber, k: u64, expect_len: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..k {
        let f = sub.try_recv().expect("a published frame");
        let m = black_box(f.meta());
        debug_assert_eq!(m.len, expect_len);
        drop(f);
    }
    t.elapsed()
}

/// Pins the calling thread to `cpu`; returns the mask to restore, or `None`
/// if pinning is not possible (fewer than two CPUs, or refused).
fn pin(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is the empty set; the libc calls get a
    // valid pointer and the exact size of the set, for the calling thread (0).
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0
            || libc::CPU_COUNT(&old) < 2
            || !libc::CPU_ISSET(cpu, &old)
        {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return None;
        }
        Some(old)
    }
}

fn unpin(old: Option<libc::cpu_set_t>) {
    if let Some(old) = old {
        // SAFETY: `old` is a mask sched_getaffinity filled in; size is exact.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old) };
    }
}

/// Bytes of unrelated memory traffic per frame in `read/frame_size_polluted`.
const POLLUTE_BYTES: usize = 8 * MIB;

/// A producer on its own thread (pinned to CPU 1 when the reader is pinned
/// to CPU 0) that publishes `k` frames when asked and acknowledges. With
/// `pollute`, it also copies `POLLUTE_BYTES` into a scratch tmpfs mapping
/// after every frame: the memory traffic of an 8 MiB frame without the frame.
struct RemoteProducer {
    req: mpsc::Sender<u64>,
    ack: mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<Publisher>,
}

impl RemoteProducer {
    fn start(
        publisher: Publisher,
        frame: Vec<u8>,
        pollute: Option<ShmSlots>,
        pinned: bool,
    ) -> RemoteProducer {
        let (req, req_rx) = mpsc::channel::<u64>();
        let (ack_tx, ack) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut p = publisher;
            let mut pollute = pollute.map(|s| (s, source(POLLUTE_BYTES)));
            let own_pin = if pinned { pin(1) } else { None };
            let info = FrameInfo::default();
            while let Ok(k) = req_rx.recv() {
                for _ in 0..k {
                    let r = p.publish(&info, &frame).expect("publish");
                    assert!(matches!(r, Published::Seq(_)), "frame dropped");
                    if let Some((shm, junk)) = &mut pollute {
                        shm.copy(junk);
                    }
                }
                ack_tx.send(()).expect("reader alive");
            }
            unpin(own_pin);
            p
        });
        RemoteProducer { req, ack, thread }
    }

    /// Asks for `k` frames and spins until they are published: a blocking
    /// wait would let the reader's CPU go idle for as long as the batch
    /// takes (about 2 ms of 8 MiB frames, 1 µs of 64 B ones), and the
    /// receives timed after it would then pay for waking the core (on a VM,
    /// for the vCPU being rescheduled), a cost that grows with frame size
    /// without being the reader's work.
    fn publish(&self, k: u64) {
        self.req.send(k).expect("producer alive");
        loop {
            match self.ack.try_recv() {
                Ok(()) => return,
                Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(mpsc::TryRecvError::Disconnected) => panic!("producer gone"),
            }
        }
    }

    fn stop(self) -> Publisher {
        drop(self.req);
        self.thread.join().expect("producer thread")
    }
}

/// Reader cost per frame: publish a batch untimed, time its receives.
fn bench_reads(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bg: &mut Background,
    name: (&str, &str),
    sub: &mut Subscriber,
    len: usize,
    publish: impl FnMut(u64),
) {
    bench_reads_in(g, bg, name, sub, len, READ_BATCH, publish)
}

/// [`bench_reads`] with batches of `batch` frames (1: every frame is
/// received right after its publish, as by a reader that keeps up).
fn bench_reads_in(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bg: &mut Background,
    (function, size): (&str, &str),
    sub: &mut Subscriber,
    len: usize,
    batch: u64,
    mut publish: impl FnMut(u64),
) {
    g.bench_function(BenchmarkId::new(function, size), |b| {
        bg.begin();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(batch);
                publish(k);
                total += timed_reads(sub, k, len);
                left -= k;
            }
            total
        })
    });
    bg.end(&format!("read/{function}/{size}"));
}

/// `read/frame_size/<size>`: the producer runs on its own thread, pinned to
/// CPU 1 with the reader on CPU 0 (as a daemon and an inference pod on
/// different cores); only the reader's receives are timed.
/// `read/frame_size_same_thread/<size>`: the producer publishes on the
/// reader's thread, so its payload writes also go through the reader's
/// private caches (diagnostic).
/// `read/frame_size_polluted/64B`: 64 B frames, but the producer also
/// writes 8 MiB of unrelated memory per frame (diagnostic): if it costs what
/// `read/frame_size/8MiB` costs, the reader pays for cache state, not for
/// the frame's size.
/// `read/ring_only/8MiB`: the 8 MiB ring, but 64 B frames (diagnostic): if
/// it costs what `read/frame_size/64B` costs, nothing on the reader's path
/// depends on the ring's geometry.
fn read_frame_size(c: &mut Criterion, bg: &mut Background, root: &Root, src: &[u8]) {
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(1));
    let reader_pin = pin(0);
    let pinned = reader_pin.is_some();
    for &size in &READ_SIZES {
        let l = label(size);
        let Ring {
            mut subs,
            publisher,
            _dir,
        } = ring(root, size, 1, src);
        let mut sub = subs.pop().expect("one reader");

        let remote = RemoteProducer::start(publisher, src[..size].to_vec(), None, pinned);
        bench_reads(&mut g, bg, ("frame_size", &l), &mut sub, size, |k| {
            remote.publish(k)
        });
        // The same, one frame at a time: each receive comes right after its
        // frame's commit, with no later frame's copy in between.
        bench_reads_in(
            &mut g,
            bg,
            ("frame_size_fresh", &l),
            &mut sub,
            size,
            1,
            |k| remote.publish(k),
        );
        let mut publisher = remote.stop();

        if size >= STREAMING_MIN_BYTES {
            // The same ring, but 64 B frames: the reader's path at this
            // geometry without the producer's copy traffic (diagnostic).
            let remote = RemoteProducer::start(publisher, src[..64].to_vec(), None, pinned);
            bench_reads(&mut g, bg, ("ring_only", &l), &mut sub, 64, |k| {
                remote.publish(k)
            });
            publisher = remote.stop();
        }

        let info = FrameInfo::default();
        let data = &src[..size];
        bench_reads(
            &mut g,
            bg,
            ("frame_size_same_thread", &l),
            &mut sub,
            size,
            |k| {
                for _ in 0..k {
                    let r = publisher.publish(&info, data).expect("publish");
                    assert!(matches!(r, Published::Seq(_)), "frame dropped");
                }
            },
        );

        if size < POLLUTE_BYTES {
            let scratch = ShmSlots::new(root, POLLUTE_BYTES as u64, SLOTS);
            let remote =
                RemoteProducer::start(publisher, src[..size].to_vec(), Some(scratch), pinned);
            bench_reads(
                &mut g,
                bg,
                ("frame_size_polluted", &l),
                &mut sub,
                size,
                |k| remote.publish(k),
            );
            publisher = remote.stop();
        }
        drop(sub);
        drop(publisher);

        if size >= STREAMING_MIN_BYTES {
            // The default streams frames this large: the same with the
            // producer's cached stores (diagnostic).
            let Ring {
                mut subs,
                publisher,
                _dir,
            } = ring_with(root, size, 1, src, CopyStores::Cached);
            let mut sub = subs.pop().expect("one reader");
            let remote = RemoteProducer::start(publisher, src[..size].to_vec(), None, pinned);
            bench_reads(&mut g, bg, ("frame_size_cached", &l), &mut sub, size, |k| {
                remote.publish(k)
            });
            bench_reads_in(
                &mut g,
                bg,
                ("frame_size_cached_fresh", &l),
                &mut sub,
                size,
                1,
                |k| remote.publish(k),
            );
            drop(sub);
            drop(remote.stop());
        }
    }
    unpin(reader_pin);
    g.finish();
    if !pinned {
        eprintln!(
            "note: read/*: could not pin threads (fewer than 2 CPUs?): producer and reader float"
        );
    }
}

// ---------------------------------------------------------------- summary

/// Criterion's output directory, found the way criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    // The bench binary is <target>/release/deps/ring-<hash> (or
    // <target>/<triple>/release/deps/...): the first ancestor with a
    // criterion/ directory is the target directory.
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors().skip(1) {
            if a.join("criterion").is_dir() {
                return a.join("criterion");
            }
        }
    }
    PathBuf::from("target/criterion")
}

/// A benchmark's estimates (ns per iteration): the mean with its 95 %
/// interval (what the ratios use), the median as a robustness check, and the
/// background load measured while it ran.
#[derive(Clone, Copy)]
struct Est {
    mean: f64,
    lo: f64,
    hi: f64,
    median: f64,
    fresh: bool,
    background: Option<f64>,
}

type Loads = std::collections::BTreeMap<String, f64>;

/// Where criterion keeps the latest estimates of benchmark `id`.
fn estimates_path(dir: &Path, id: &str) -> PathBuf {
    id.split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part))
        .join("new/estimates.json")
}

fn estimate(dir: &Path, id: &str, since: SystemTime, loads: &Loads) -> Option<Est> {
    let path = estimates_path(dir, id);
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let m = &v["mean"];
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(|t| t >= since)
        .unwrap_or(false);
    Some(Est {
        mean: m["point_estimate"].as_f64()?,
        lo: m["confidence_interval"]["lower_bound"].as_f64()?,
        hi: m["confidence_interval"]["upper_bound"].as_f64()?,
        median: v["median"]["point_estimate"].as_f64()?,
        fresh,
        background: loads.get(id).copied(),
    })
}

fn time(ns: f64) -> String {
    match ns {
        t if t >= 1e6 => format!("{:.3} ms", t / 1e6),
        t if t >= 1e3 => format!("{:.3} µs", t / 1e3),
        t => format!("{t:.1} ns"),
    }
}

fn gib_s(bytes: usize, ns: f64) -> String {
    format!("{:.2} GiB/s", bytes as f64 / ns * 1e9 / (1u64 << 30) as f64)
}

/// Marks after a figure: from an earlier run, measured on a busy machine.
fn marks(e: &Est) -> String {
    let mut m = String::new();
    if !e.fresh {
        m.push_str(" (earlier run)");
    }
    if let Some(b) = e.background.filter(|&b| b >= NOISY_CORES) {
        m.push_str(&format!(" [busy: {b:.1} CPUs]"));
    }
    m
}

fn cell(e: &Option<Est>, bytes: Option<usize>) -> String {
    match (e, bytes) {
        (Some(e), Some(n)) => format!("{} ({}){}", time(e.mean), gib_s(n, e.mean), marks(e)),
        (Some(e), None) => format!("{}{}", time(e.mean), marks(e)),
        (None, _) => "-".into(),
    }
}

/// `a / b` of the means, with the range the two 95 % intervals allow and the
/// ratio of the medians.
fn ratio(a: &Est, b: &Est) -> String {
    format!(
        "{:.2} ({:.2}..{:.2}; medians {:.2})",
        a.mean / b.mean,
        a.lo / b.hi,
        a.hi / b.lo,
        a.median / b.median
    )
}

fn ratio_cell(a: &Option<Est>, b: &Option<Est>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "-".into(),
    }
}

fn summary(root: &Root, since: SystemTime, loads: &Loads) -> String {
    use std::fmt::Write;
    let dir = criterion_dir();
    let get = |id: &str| estimate(&dir, id, since, loads);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "\n## camux ring benches: summary\n");
    let _ = writeln!(w, "machine: {}", common::cpu_id());
    let _ = writeln!(w, "ring directory: {}", root.what);
    let _ = writeln!(
        w,
        "estimates: {}/**/new/estimates.json (mean; ratio ranges from the 95 % intervals)",
        dir.display()
    );
    let _ = writeln!(
        w,
        "[busy: x CPUs] = other processes and the hypervisor used x CPUs while it ran: rerun it\n"
    );

    let _ = writeln!(
        w,
        "| size | publish/copy | memcpy/tmpfs | publish / memcpy | publish/copy_cached | cached / memcpy |"
    );
    let _ = writeln!(w, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &size in &COPY_SIZES {
        let l = label(size);
        let (p, m, c) = (
            get(&format!("publish/copy/{l}")),
            get(&format!("memcpy/tmpfs/{l}")),
            get(&format!("publish/copy_cached/{l}")),
        );
        let _ = writeln!(
            w,
            "| {l} | {} | {} | {} | {} | {} |",
            cell(&p, Some(size)),
            cell(&m, Some(size)),
            ratio_cell(&p, &m),
            if c.is_some() {
                cell(&c, Some(size))
            } else {
                "(= copy)".into()
            },
            if c.is_some() {
                ratio_cell(&c, &m)
            } else {
                "".into()
            },
        );
    }

    let _ = writeln!(
        w,
        "\n| publish + receive, reader keeping up | oldest first | warm reuse | warm / oldest |"
    );
    let _ = writeln!(w, "| ---: | ---: | ---: | ---: |");
    for &size in &ALONG_SIZES {
        let l = label(size);
        let (o, wm) = (
            get(&format!("read_along/oldest/{l}")),
            get(&format!("read_along/warm/{l}")),
        );
        let _ = writeln!(
            w,
            "| {l} | {} | {} | {} |",
            cell(&o, Some(size)),
            cell(&wm, Some(size)),
            ratio_cell(&wm, &o),
        );
    }

    let _ = writeln!(
        w,
        "\n| publish | 1 reader | 4 readers | 16 readers | 4 / 1 | 16 / 1 |"
    );
    let _ = writeln!(w, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &size in &READER_SIZES {
        let l = label(size);
        let e: Vec<Option<Est>> = READER_COUNTS
            .iter()
            .map(|n| get(&format!("publish/readers_{l}/{n}")))
            .collect();
        let _ = writeln!(
            w,
            "| {l} | {} | {} | {} | {} | {} |",
            cell(&e[0], None),
            cell(&e[1], None),
            cell(&e[2], None),
            ratio_cell(&e[1], &e[0]),
            ratio_cell(&e[2], &e[0])
        );
    }

    let _ = writeln!(w, "\n| read, per frame | 64B | 8MiB | 8MiB / 64B |");
    let _ = writeln!(w, "| --- | ---: | ---: | ---: |");
    for f in [
        "frame_size",
        "frame_size_cached",
        "frame_size_fresh",
        "frame_size_cached_fresh",
        "frame_size_same_thread",
        "frame_size_polluted",
    ] {
        // 64 B frames are copied with cached stores in every mode.
        let small = match f {
            "frame_size_cached" => "frame_size",
            "frame_size_cached_fresh" => "frame_size_fresh",
            f => f,
        };
        let (a, b) = (
            get(&format!("read/{small}/64B")),
            get(&format!("read/{f}/8MiB")),
        );
        let _ = writeln!(
            w,
            "| {f} | {} | {} | {} |",
            cell(&a, None),
            cell(&b, None),
            ratio_cell(&b, &a)
        );
    }

    let _ = writeln!(w, "\nratios against targets (means):");
    let targets: [(&str, &str, &str, f64); 4] = [
        (
            "publish(4MiB)/memcpy(4MiB)",
            "publish/copy/4MiB",
            "memcpy/tmpfs/4MiB",
            1.15,
        ),
        (
            "publish(64B, 16 readers)/publish(64B, 1 reader)",
            "publish/readers_64B/16",
            "publish/readers_64B/1",
            1.10,
        ),
        (
            "publish(1MiB, 16 readers)/publish(1MiB, 1 reader)",
            "publish/readers_1MiB/16",
            "publish/readers_1MiB/1",
            1.10,
        ),
        (
            "read(8MiB)/read(64B)",
            "read/frame_size/8MiB",
            "read/frame_size/64B",
            1.20,
        ),
    ];
    for (name, a, b, target) in targets {
        match (get(a), get(b)) {
            (Some(x), Some(y)) => {
                let r = x.mean / y.mean;
                let verdict = if r <= target { "met" } else { "MISSED" };
                let mut note = String::new();
                if !(x.fresh && y.fresh) {
                    note.push_str("  [includes figures from an earlier run]");
                }
                if [x, y]
                    .iter()
                    .any(|e| e.background.is_some_and(|b| b >= NOISY_CORES))
                {
                    note.push_str("  [measured on a busy machine: rerun]");
                }
                let _ = writeln!(
                    w,
                    "ratio: {name} = {} (target <= {target:.2}): {verdict}{note}",
                    ratio(&x, &y)
                );
            }
            _ => {
                let _ = writeln!(w, "ratio: {name}: not measured");
            }
        }
    }
    // The same two publish ratios, measured interleaved in one window.
    for &size in &READER_SIZES {
        let l = label(size);
        let many = *READER_COUNTS.last().expect("reader counts");
        let id = format!("publish/readers_{l}_interleaved/{many}");
        let name = format!("publish({l}, {many} readers)/publish({l}, 1 reader), interleaved");
        let Some((samples, fresh)) = read_interleaved(&id, since) else {
            let _ = writeln!(w, "ratio: {name}: not measured");
            continue;
        };
        let Some((r, med, lo, hi)) = interleaved_ratio(&samples) else {
            continue;
        };
        let frames: u64 = samples.iter().map(|p| p.frames).sum::<u64>().max(1);
        let per = |ns: f64| time(ns / frames as f64);
        let verdict = if r <= 1.10 { "met" } else { "MISSED" };
        let _ = writeln!(
            w,
            "ratio: {name} = {r:.2} (per-sample median {med:.2}, {lo:.2}..{hi:.2} over {} samples; {} vs {} per frame) (target <= 1.10): {verdict}{}",
            samples.len(),
            per(samples.iter().map(|p| p.many_ns).sum()),
            per(samples.iter().map(|p| p.one_ns).sum()),
            if fresh { "" } else { "  [includes figures from an earlier run]" }
        );
    }
    // The per-reader slope of publishing against the bare scan's.
    if let (Some(p1), Some(pn), Some(l1), Some(ln)) = (
        get("publish/readers_64B/1"),
        get("publish/readers_64B/16"),
        get("limit/lease_scan/1"),
        get("limit/lease_scan/16"),
    ) {
        let (ps, ls) = ((pn.mean - p1.mean) / 15.0, (ln.mean - l1.mean) / 15.0);
        if let (Some(o1), Some(on)) = (
            get("limit/lease_scan_one_page/1"),
            get("limit/lease_scan_one_page/16"),
        ) {
            let _ = writeln!(
                w,
                "bare lease scan per extra reader: {} with a page per reader, {} with all readers on one page",
                time(ls),
                time((on.mean - o1.mean) / 15.0)
            );
        }
        let _ = writeln!(
            w,
            "per extra reader (64B): publish {} vs the bare lease scan {} (limit/lease_scan, {} to {}): {:.2}x the limit; with only the scan's slope, 16 readers / 1 would be {:.2}",
            time(ps),
            time(ls),
            time(l1.mean),
            time(ln.mean),
            ps / ls.max(0.01),
            (p1.mean + ln.mean - l1.mean) / p1.mean
        );
        if ![p1, pn, l1, ln].iter().all(|e| e.fresh) {
            let _ = writeln!(w, "  [the line above includes figures from an earlier run]");
        }
    }
    let infos = [
        (
            "read_cached(8MiB)/read(64B)",
            "read/frame_size_cached/8MiB",
            "read/frame_size/64B",
            "the producer's 8 MiB copies with cached stores",
        ),
        (
            "publish_cached(4MiB)/memcpy(4MiB)",
            "publish/copy_cached/4MiB",
            "memcpy/tmpfs/4MiB",
            "the copy-in path with cached stores",
        ),
        (
            "read_polluted(64B)/read(64B)",
            "read/frame_size_polluted/64B",
            "read/frame_size/64B",
            "64 B frames plus 8 MiB of unrelated writes per frame",
        ),
        (
            "read_cached(8MiB)/read_polluted(64B)",
            "read/frame_size_cached/8MiB",
            "read/frame_size_polluted/64B",
            "about 1: with cached stores the reader pays for cache state, not frame size",
        ),
        (
            "read_ring_only(8MiB)/read(64B)",
            "read/ring_only/8MiB",
            "read/frame_size/64B",
            "64 B frames in the 8 MiB ring: about 1 means the reader's path does not \
             depend on the ring's geometry, and the rest of read(8MiB) is the producer's copy traffic",
        ),
        (
            "read_same_thread(8MiB)/read_same_thread(64B)",
            "read/frame_size_same_thread/8MiB",
            "read/frame_size_same_thread/64B",
            "producer on the reader's thread",
        ),
    ];
    for (name, a, b, what) in infos {
        if let (Some(x), Some(y)) = (get(a), get(b)) {
            let _ = writeln!(w, "info:  {name} = {} (diagnostic: {what})", ratio(&x, &y));
        }
    }
    // Batches of one are timed one receive at a time, so each figure holds
    // the timer's own cost: take `limit/timer` off both before dividing.
    if let (Some(x), Some(y), Some(t)) = (
        get("read/frame_size_fresh/8MiB"),
        get("read/frame_size_fresh/64B"),
        get("limit/timer"),
    ) {
        let _ = writeln!(
            w,
            "info:  read_fresh(8MiB)/read_fresh(64B), less the timer's {:.1} ns = {} \
             (diagnostic: each frame received right after its commit, as by a reader that keeps up)",
            t.mean,
            ratio(&less(x, t.mean), &less(y, t.mean))
        );
    }
    s
}

/// `e` with `ns` taken off every figure (a fixed cost inside each sample).
fn less(e: Est, ns: f64) -> Est {
    Est {
        mean: e.mean - ns,
        lo: e.lo - ns,
        hi: e.hi - ns,
        median: e.median - ns,
        ..e
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Modes that write no estimates: no summary, no background figures.
    let no_report = args.iter().any(|a| {
        matches!(
            a.as_str(),
            "--list" | "--test" | "--help" | "-h" | "--profile-time"
        )
    });
    let root = root();
    if !no_report {
        eprintln!("camux ring benches: rings in {}", root.what);
    }
    // A second's slack: a file criterion writes in this run is never older.
    let since = SystemTime::now() - Duration::from_secs(1);
    let src = source(*COPY_SIZES.iter().chain(&READ_SIZES).max().expect("sizes"));

    let mut c = config();
    let mut bg = Background::new();
    copy_vs_memcpy(&mut c, &mut bg, &root, &src);
    publish_readers(&mut c, &mut bg, &root, &src);
    publish_readers_interleaved(&mut c, &mut bg, &root, &src);
    lease_scan_limit(&mut c, &mut bg);
    read_along(&mut c, &mut bg, &root, &src);
    read_frame_size(&mut c, &mut bg, &root, &src);
    c.final_summary();

    if !no_report {
        let load = bg.persist();
        let s = summary(&root, since, &load);
        println!("{s}");
        let out = criterion_dir().join("camux-ring-summary.md");
        if std::fs::write(&out, &s).is_ok() {
            println!("(summary written to {})", out.display());
        }
    }
}
