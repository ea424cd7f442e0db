//! `camux inspect`: what a ring file and its producer say about themselves.

use super::json::{self, FormatJson};
use super::Status;
use anyhow::Context;
use camux::ring::inspect::{self as ring_inspect, RingSnapshot, SlotState};
use camux::ring::socket::{inspect_readers, ReaderRecord};
use camux::ring::{mono_ns, real_ns};
use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Show what a ring file and its producer say about themselves.

Maps RINGFILE read-only (it never writes to it) and prints its header: the
stream name and identity, geometry (slots, slot size, file size), format
and content type (sensor streams), producer state, epoch, PID and heartbeat
age, the counters (published, dropped, revoked, and the payload bytes the
producer copied into the ring: in total and per frame, 0 for a zero-copy
producer) and every slot (its stamp decoded: empty, being written,
or the seq it holds, with length and age). It then asks the producer, over
the socket beside the file (RINGFILE with .ring replaced by .sock), for its
readers: PID, UID, how long connected, whether asleep, and the seqs each
one holds. If no producer answers, it says so and still shows the file.

--json prints all of it as one JSON object instead.

Exit status: 0 ok, 1 if the file cannot be read or is not a valid ring.

Examples:
  camux inspect /run/camux/cam0.ring
  camux inspect /tmp/camux/cam0.ring --json | jq '.readers'";

/// Show what a ring file and its producer say about themselves.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct InspectArgs {
    /// The ring file, e.g. /run/camux/cam0.ring.
    #[arg(value_name = "RINGFILE")]
    pub ring: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How long the producer may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The socket that serves the ring at `ring`: `.ring` replaced by `.sock`
/// (`.sock` appended if the name does not end in `.ring`).
pub fn socket_path(ring: &Path) -> PathBuf {
    match ring.extension() {
        Some(ext) if ext == "ring" => ring.with_extension("sock"),
        _ => {
            let mut s = ring.as_os_str().to_owned();
            s.push(".sock");
            PathBuf::from(s)
        }
    }
}

#[derive(Serialize)]
struct Report {
    path: String,
    name: String,
    ring_id: String,
    created_real_ns: u64,
    age_s: f64,
    geometry: GeometryJson,
    format: FormatJson,
    /// The header's content type; `null` when the stream has none.
    content_type: Option<String>,
    state: &'static str,
    epoch: u32,
    producer_pid: u32,
    heartbeat_age_ms: f64,
    heartbeat_interval_ms: f64,
    hold_limit: u32,
    max_readers: u32,
    readers_registered: u32,
    head: u64,
    counters: Counters,
    slots: Vec<SlotJson>,
    socket: String,
    readers: Option<Vec<ReaderJson>>,
    readers_error: Option<String>,
}

#[derive(Serialize)]
struct GeometryJson {
    slots: u32,
    slot_size: u64,
    slot_stride: u64,
    page_size: u32,
    file_size: u64,
    data_offset: u64,
    index_len: u32,
}

#[derive(Serialize)]
struct Counters {
    published: u64,
    dropped: u64,
    revoked: u64,
    /// Payload bytes copied into the ring, all epochs.
    bytes_copied: u64,
    /// `bytes_copied / published` (0 when nothing was published).
    bytes_copied_per_frame: f64,
}

#[derive(Serialize)]
struct SlotJson {
    slot: u32,
    stamp: u64,
    state: &'static str,
    seq: Option<u64>,
    len: u64,
    age_ms: Option<f64>,
}

#[derive(Serialize)]
struct ReaderJson {
    id: u32,
    pid: u32,
    uid: u32,
    hold_limit: u32,
    revoked: u32,
    waiting: bool,
    connected_ms: u64,
    holds: Vec<u64>,
}

fn slot_json(s: &ring_inspect::SlotSnapshot, now: u64) -> SlotJson {
    let (state, seq) = match s.state {
        SlotState::Empty => ("empty", None),
        SlotState::Writing => ("writing", None),
        SlotState::Published(seq) => ("published", Some(seq)),
        SlotState::Invalid(_) => ("invalid", None),
    };
    let age_ms = (seq.is_some() && s.publish_mono_ns > 0 && s.publish_mono_ns <= now)
        .then(|| json::ms(now - s.publish_mono_ns));
    SlotJson {
        slot: s.slot,
        stamp: s.stamp,
        state,
        seq,
        len: s.len,
        age_ms,
    }
}

fn reader_json(r: &ReaderRecord) -> ReaderJson {
    ReaderJson {
        id: r.id,
        pid: r.pid,
        uid: r.uid,
        hold_limit: r.hold_limit,
        revoked: r.revoked,
        waiting: r.waiting,
        connected_ms: r.connected_ms,
        // 0 marks a free entry.
        holds: r.holds.iter().copied().filter(|&h| h != 0).collect(),
    }
}

fn report(snap: &RingSnapshot, sock: &Path, readers: Result<Vec<ReaderRecord>, String>) -> Report {
    let h = &snap.header;
    let g = &h.layout;
    let now = mono_ns();
    let (readers, readers_error) = match readers {
        Ok(r) => (Some(r.iter().map(reader_json).collect()), None),
        Err(e) => (None, Some(e)),
    };
    Report {
        path: snap.path.display().to_string(),
        name: h.name.clone(),
        ring_id: format!("{:016x}", h.ring_id),
        created_real_ns: h.created_real_ns,
        age_s: real_ns().saturating_sub(h.created_real_ns) as f64 / 1e9,
        geometry: GeometryJson {
            slots: g.geometry.slot_count,
            slot_size: g.geometry.max_frame_bytes,
            slot_stride: g.slot_stride,
            page_size: g.geometry.page_size,
            file_size: g.file_bytes,
            data_offset: g.data_offset,
            index_len: g.index_len,
        },
        format: FormatJson::from(&h.format),
        content_type: h.content_type.clone(),
        state: snap.state_name(),
        epoch: snap.epoch,
        producer_pid: snap.producer_pid,
        heartbeat_age_ms: snap.heartbeat_age.as_secs_f64() * 1e3,
        heartbeat_interval_ms: h.heartbeat_interval().as_secs_f64() * 1e3,
        hold_limit: h.hold_limit,
        max_readers: h.max_readers,
        readers_registered: snap.readers,
        head: snap.head,
        counters: Counters {
            published: snap.published,
            dropped: snap.dropped,
            revoked: snap.revoked,
            bytes_copied: snap.bytes_copied,
            bytes_copied_per_frame: snap.copied_per_frame(),
        },
        slots: snap.slots.iter().map(|s| slot_json(s, now)).collect(),
        socket: sock.display().to_string(),
        readers,
        readers_error,
    }
}

/// Bytes as `1.8 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn text(r: &Report) -> String {
    let mut s = String::new();
    let g = &r.geometry;
    let f = &r.format;
    let fps = f
        .fps
        .map_or("fps unknown".into(), |v| format!("{v:.3} fps"));
    let _ = writeln!(s, "ring      {}", r.path);
    let _ = writeln!(
        s,
        "stream    {}  (id {}, created {:.1} s ago)",
        r.name, r.ring_id, r.age_s
    );
    let _ = writeln!(
        s,
        "state     {}  epoch {}  producer pid {}  heartbeat {:.0} ms ago (every {:.0} ms)",
        r.state, r.epoch, r.producer_pid, r.heartbeat_age_ms, r.heartbeat_interval_ms
    );
    let _ = writeln!(
        s,
        "format    {} {}x{}  {} plane(s), strides {:?}  {fps}",
        f.fourcc, f.width, f.height, f.num_planes, f.strides
    );
    if let Some(ct) = &r.content_type {
        let _ = writeln!(s, "content   {ct}");
    }
    let _ = writeln!(
        s,
        "geometry  {} slots x {} bytes (stride {}), file {} ({}), page {}",
        g.slots,
        g.slot_size,
        g.slot_stride,
        g.file_size,
        human_bytes(g.file_size),
        g.page_size
    );
    let _ = writeln!(
        s,
        "readers   {} registered (max {}), hold limit {} frames each",
        r.readers_registered, r.max_readers, r.hold_limit
    );
    let _ = writeln!(
        s,
        "counters  head {}  published {}  dropped {}  revoked {}",
        r.head, r.counters.published, r.counters.dropped, r.counters.revoked
    );
    let _ = writeln!(
        s,
        "copied    {} bytes ({}), {:.1} bytes per frame",
        r.counters.bytes_copied,
        human_bytes(r.counters.bytes_copied),
        r.counters.bytes_copied_per_frame
    );
    let _ = writeln!(s, "slots");
    let _ = writeln!(
        s,
        "  {:>5}  {:<10} {:>12} {:>12} {:>10}",
        "slot", "state", "seq", "len", "age"
    );
    for slot in &r.slots {
        let seq = slot.seq.map_or("-".into(), |v| v.to_string());
        let age = slot.age_ms.map_or("-".into(), |v| format!("{v:.1} ms"));
        let _ = writeln!(
            s,
            "  {:>5}  {:<10} {:>12} {:>12} {:>10}",
            slot.slot, slot.state, seq, slot.len, age
        );
    }
    match (&r.readers, &r.readers_error) {
        (Some(readers), _) => {
            let _ = writeln!(s, "readers (asked {})", r.socket);
            if readers.is_empty() {
                let _ = writeln!(s, "  none");
            } else {
                let _ = writeln!(
                    s,
                    "  {:>4} {:>8} {:>6} {:>12} {:>8} {:>8}  holds",
                    "id", "pid", "uid", "connected", "asleep", "revoked"
                );
            }
            for rd in readers {
                let holds = if rd.holds.is_empty() {
                    "-".to_string()
                } else {
                    let v: Vec<String> = rd.holds.iter().map(u64::to_string).collect();
                    format!("{} of {}: {}", rd.holds.len(), rd.hold_limit, v.join(" "))
                };
                let _ = writeln!(
                    s,
                    "  {:>4} {:>8} {:>6} {:>10.1} s {:>8} {:>8}  {holds}",
                    rd.id,
                    rd.pid,
                    rd.uid,
                    rd.connected_ms as f64 / 1e3,
                    if rd.waiting { "yes" } else { "no" },
                    rd.revoked
                );
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "readers   {e}");
        }
        (None, None) => {}
    }
    s
}

/// Runs `camux inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<Status> {
    let snap = ring_inspect::snapshot(&args.ring)
        .with_context(|| format!("cannot inspect {}", args.ring.display()))?;
    let sock = socket_path(&args.ring);
    let readers = inspect_readers(&sock, ASK_TIMEOUT)
        .map_err(|e| format!("no producer answering on {}: {e}", sock.display()));
    let r = report(&snap, &sock, readers);
    let mut out = std::io::stdout().lock();
    if args.json {
        json::emit(&mut out, &r)?;
    } else {
        use std::io::Write;
        out.write_all(text(&r).as_bytes())?;
        out.flush()?;
    }
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_beside_the_ring() {
        assert_eq!(
            socket_path(Path::new("/run/camux/cam0.ring")),
            Path::new("/run/camux/cam0.sock")
        );
        assert_eq!(
            socket_path(Path::new("/tmp/odd")),
            Path::new("/tmp/odd.sock")
        );
    }

    /// A ring with a content type, two frames published by copy (100 and
    /// 50 bytes) and one loan committed in place, and its report.
    fn sensor_report() -> (tempfile::TempDir, Report) {
        use camux::ring::{RingOptions, StreamFormat};
        use camux::{FrameInfo, Publisher};
        let dir = tempfile::tempdir().unwrap();
        let mut o = RingOptions::new(dir.path(), "imu", StreamFormat::opaque(64), 4096);
        o.content_type = Some("application/x-imu+csv".into());
        let mut p = Publisher::create(&o).unwrap();
        p.publish(&FrameInfo::default(), &[1; 100]).unwrap();
        p.publish(&FrameInfo::default(), &[2; 50]).unwrap();
        let loan = p.loan().unwrap();
        p.commit(loan, 64, &FrameInfo::default()).unwrap();
        let snap = ring_inspect::snapshot(p.ring_path()).unwrap();
        let r = report(
            &snap,
            Path::new("/nonexistent.sock"),
            Err("no producer".into()),
        );
        (dir, r)
    }

    #[test]
    fn json_has_content_type_and_bytes_copied() {
        let (_dir, r) = sensor_report();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["content_type"], "application/x-imu+csv");
        let c = &v["counters"];
        assert_eq!(c["published"], 3);
        assert_eq!(c["bytes_copied"], 150);
        assert_eq!(c["bytes_copied_per_frame"], 50.0);
    }

    #[test]
    fn text_has_content_type_and_bytes_copied() {
        let (_dir, r) = sensor_report();
        let t = text(&r);
        assert!(t.contains("\ncontent   application/x-imu+csv\n"), "{t}");
        assert!(
            t.contains("\ncopied    150 bytes (150 B), 50.0 bytes per frame\n"),
            "{t}"
        );
    }

    #[test]
    fn nothing_published_is_zero_per_frame_and_no_content_type() {
        use camux::ring::{RingOptions, StreamFormat};
        let dir = tempfile::tempdir().unwrap();
        let p = camux::Publisher::create(&RingOptions::new(
            dir.path(),
            "cam",
            StreamFormat::opaque(64),
            4096,
        ))
        .unwrap();
        let snap = ring_inspect::snapshot(p.ring_path()).unwrap();
        let r = report(&snap, Path::new("/nonexistent.sock"), Ok(Vec::new()));
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["content_type"].is_null());
        assert_eq!(v["counters"]["bytes_copied"], 0);
        assert_eq!(v["counters"]["bytes_copied_per_frame"], 0.0);
        let t = text(&r);
        assert!(!t.contains("content "), "{t}");
        assert!(
            t.contains("copied    0 bytes (0 B), 0.0 bytes per frame"),
            "{t}"
        );
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(15 << 20), "15.0 MiB");
    }
}
