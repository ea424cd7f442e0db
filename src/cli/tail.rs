//! `camux tail`: read a stream and print one line per frame.

use super::common::DEFAULT_DIR;
use super::json::{self, FormatJson, Percentiles};
use super::stats::Histogram;
use super::{signal, Status};
use anyhow::Context;
use camux::ring::mono_ns;
use camux::source::stamp;
use camux::{Frame, Mode, RecvError, Subscriber, SubscriberOptions};
use clap::Args;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Read a stream and print one line per frame, as an inference pod would read it.

Maps <DIR>/<STREAM>.ring read-only, registers with the producer over
<DIR>/<STREAM>.sock and receives every frame in order (or only the newest
with --latest). For each frame it prints its sequence number, format, length
and latency (publish to receive, CLOCK_MONOTONIC), and notes what the stream
reported: frames missed by a slow reader (lagged), a silent producer (stale),
a producer restart (gap), a new format.

With --verify every frame's stamp is checked (the synthetic source stamps
each frame with its sequence number and a checksum): the payload must match
its checksum, the stamped seq must equal the ring's seq, and the frame must
still be intact after it was read. The first failure prints a \"torn\" event
and the summary and exits with status 3. A frame the producer revoked while
it was being read (its hold timed out: a reader stopped for that long) is
not judged: its line says \"verified\":null and a \"revoked\" event follows.

--json prints JSON lines instead:
  {\"seq\":N,\"epoch\":N,\"driver_seq\":N,\"capture_mono_ns\":N,\"capture_real_ns\":N,
   \"publish_mono_ns\":N,\"publish_real_ns\":N,\"fourcc\":\"YUYV\",\"width\":N,\"height\":N,
   \"len\":N,\"latency_us\":F,\"skipped\":N,\"verified\":true|false|null,\"gap_ms\":F|null,
   \"stride\":N,\"flags\":N,\"field\":N}
(with --hash also \"hash\":\"<16 hex digits>\"|null; flags: 1 keyframe, 2 driver error)
and events {\"event\":\"lagged\",\"missed\":N}, {\"event\":\"stale\",\"since_ms\":F},
{\"event\":\"format_changed\",\"old\":{..},\"new\":{..}}, {\"event\":\"torn\",..},
{\"event\":\"revoked\",\"seq\":N}, {\"event\":\"timeout\",\"idle_ms\":F}, and last
{\"event\":\"summary\",\"frames\":N,\"verified\":N,\"torn\":N,\"lagged\":N,
 \"latency_us\":{\"p50\":F,\"p99\":F},\"gaps\":N,...} (p50/p99 are null with no frames).

It stops after --count frames, on SIGTERM/SIGINT, or after --timeout-ms
without a frame. Exit status: 0 ok, 1 error or timeout, 3 verification failed.

Examples:
  camux tail --dir /tmp/camux cam0 --count 10 --verify
  camux tail --dir /tmp/camux cam0 --json --verify --timeout-ms 5000
  camux tail --dir /tmp/camux cam0 --latest --hold-ms 200   # a slow model
  camux tail --dir /tmp/camux cam0 --keep 4 --hold-ms 50    # hold up to 4 frames at once";

/// Read a stream and print one line per frame, as an inference pod would read it.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct TailArgs {
    /// Directory of the stream's files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Stream name (reads <DIR>/<STREAM>.ring).
    pub stream: String,
    /// Stop after N frames.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Receive only the newest frame each time (skipping older ones on
    /// purpose) instead of every frame in order.
    #[arg(long)]
    pub latest: bool,
    /// Check every frame's stamp and integrity; exit 3 at the first failure.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when no frame arrives for MS milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Hold each frame MS milliseconds before releasing it (simulates a slow
    /// consumer).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
    /// Hold up to N frames at once: each frame is received while the N-1
    /// before it are still held (released oldest first).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep: usize,
    /// Add a hash of each payload to the JSON lines (64-bit FNV-1a over
    /// little-endian 8-byte words, hex), to compare what two readers got;
    /// null if the frame was overwritten while being hashed.
    #[arg(long)]
    pub hash: bool,
}

/// How long one wait for a frame may last before the stop flag is checked.
/// A frame wakes the wait at once; this only bounds the reaction to SIGTERM.
const POLL: Duration = Duration::from_millis(50);

#[derive(Serialize)]
struct FrameLine {
    seq: u64,
    epoch: u32,
    driver_seq: u64,
    capture_mono_ns: u64,
    capture_real_ns: u64,
    publish_mono_ns: u64,
    publish_real_ns: u64,
    fourcc: String,
    width: u32,
    height: u32,
    len: usize,
    latency_us: f64,
    skipped: u64,
    verified: Option<bool>,
    gap_ms: Option<f64>,
    stride: u32,
    flags: u32,
    field: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<Option<String>>,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    Lagged {
        missed: u64,
    },
    Stale {
        since_ms: f64,
    },
    FormatChanged {
        old: FormatJson,
        new: FormatJson,
    },
    Torn {
        seq: u64,
        stamped_seq: Option<u64>,
        len: usize,
        error: &'a str,
    },
    Revoked {
        seq: u64,
    },
    Timeout {
        idle_ms: f64,
    },
    Error {
        error: String,
    },
    Summary(&'a Summary),
}

/// 64-bit FNV-1a over the payload's little-endian 8-byte words (the tail
/// zero-padded): cheap enough per frame, and equal payloads hash equal.
pub fn payload_hash(payload: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(PRIME);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(PRIME);
    }
    (h ^ payload.len() as u64).wrapping_mul(PRIME)
}

/// What `tail` counted, printed last.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Frames received.
    pub frames: u64,
    /// Frames that passed `--verify`.
    pub verified: u64,
    /// Frames that failed it (at most 1: tail stops at the first).
    pub torn: u64,
    /// Frames missed because this reader fell behind (sum of lagged events).
    pub lagged: u64,
    /// Publish-to-receive latency.
    pub latency_us: Percentiles,
    /// Producer restarts seen (frames with a gap).
    pub gaps: u64,
    /// Lagged events.
    pub lag_events: u64,
    /// Frames skipped on purpose in --latest mode.
    pub skipped: u64,
    /// Held frames the producer revoked (seen when released).
    pub revoked: u64,
    /// Stale-producer events.
    pub stale: u64,
    /// Format changes.
    pub format_changes: u64,
    /// Largest latency.
    pub latency_max_us: Option<f64>,
    /// Mean latency.
    pub latency_mean_us: Option<f64>,
}

/// The outcome of checking one frame with `--verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The seq the stamp carries, if it could be read.
    pub stamped_seq: Option<u64>,
    /// What failed.
    pub error: String,
}

/// Checks that `payload`, received as frame `seq`, carries a valid stamp
/// for that very seq.
pub fn check_stamp(seq: u64, payload: &[u8]) -> Result<(), Torn> {
    match stamp::verify(payload) {
        Ok(v) if v.seq == seq => Ok(()),
        Ok(v) => Err(Torn {
            stamped_seq: Some(v.seq),
            error: format!("the stamp says seq {} but the ring says {seq}", v.seq),
        }),
        Err(e) => Err(Torn {
            stamped_seq: match e {
                stamp::VerifyError::Checksum { seq, .. } => Some(seq),
                _ => None,
            },
            error: e.to_string(),
        }),
    }
}

/// The verdict on one frame's bytes.
enum Verdict {
    /// Stamp and checksum match, and the frame was intact after the read.
    Verified,
    /// The producer revoked the frame (its hold timed out) while it was
    /// being read: the bytes mean nothing, and the reader was told, as
    /// property 3 promises. Not a torn frame.
    Revoked,
    /// The bytes do not match although the frame was intact: a torn frame.
    Torn(Torn),
}

fn check(frame: &Frame) -> Verdict {
    let stamp = check_stamp(frame.seq(), frame.payload());
    // Asked after the read, before the stamp is judged: a frame revoked
    // mid-read (a reader stopped for longer than the hold timeout) fails its
    // checksum, and that is the revocation, not a tear.
    if !frame.is_intact() {
        return Verdict::Revoked;
    }
    match stamp {
        Ok(()) => Verdict::Verified,
        Err(torn) => Verdict::Torn(torn),
    }
}

struct Printer<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> Printer<W> {
    fn event(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        if self.json {
            return json::emit(&mut self.out, event);
        }
        let text = match event {
            Event::Lagged { missed } => format!("lagged: {missed} frames missed"),
            Event::Stale { since_ms } => {
                format!("stale: no heartbeat from the producer for {since_ms:.0} ms")
            }
            Event::FormatChanged { old, new } => format!(
                "format changed: {} {}x{} -> {} {}x{}",
                old.fourcc, old.width, old.height, new.fourcc, new.width, new.height
            ),
            Event::Torn {
                seq,
                stamped_seq,
                len,
                error,
            } => match stamped_seq {
                Some(s) => format!("TORN: seq={seq} len={len} stamped_seq={s}: {error}"),
                None => format!("TORN: seq={seq} len={len}: {error}"),
            },
            Event::Revoked { seq } => format!("revoked: frame {seq} was taken back while held"),
            Event::Timeout { idle_ms } => format!("timeout: no frame for {idle_ms:.0} ms"),
            Event::Error { error } => format!("error: {error}"),
            Event::Summary(s) => {
                let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}us"));
                format!(
                    "summary: frames={} verified={} torn={} lagged={} p50={} p99={} gaps={}",
                    s.frames,
                    s.verified,
                    s.torn,
                    s.lagged,
                    opt(s.latency_us.p50),
                    opt(s.latency_us.p99),
                    s.gaps
                )
            }
        };
        json::line(&mut self.out, &text)
    }

    fn frame(&mut self, f: &FrameLine, lagged: u64) -> std::io::Result<()> {
        if self.json {
            return json::emit(&mut self.out, f);
        }
        let mut text = format!(
            "seq={} {} {}x{} len={} latency={:.1}us",
            f.seq, f.fourcc, f.width, f.height, f.len, f.latency_us
        );
        if lagged > 0 {
            text += &format!(" lagged={lagged}");
        }
        if f.skipped > 0 {
            text += &format!(" skipped={}", f.skipped);
        }
        if let Some(gap) = f.gap_ms {
            text += &format!(" gap epoch={} downtime={gap:.1}ms", f.epoch);
        }
        match f.verified {
            Some(true) => text += " verified",
            Some(false) => text += " NOT-VERIFIED",
            None => {}
        }
        json::line(&mut self.out, &text)
    }
}

/// Releases a held frame, reporting it if the producer revoked it meanwhile.
fn release<W: Write>(
    frame: Frame,
    printer: &mut Printer<W>,
    summary: &mut Summary,
) -> std::io::Result<()> {
    if !frame.is_intact() {
        summary.revoked += 1;
        printer.event(&Event::Revoked { seq: frame.seq() })?;
    }
    Ok(())
}

/// Runs `camux tail`.
pub fn run(args: TailArgs) -> anyhow::Result<Status> {
    signal::install()?;
    let mode = if args.latest {
        Mode::LatestOnly
    } else {
        Mode::EveryFrame
    };
    let mut sub = Subscriber::with_options(
        SubscriberOptions::new(args.stream.as_str())
            .dir(&args.dir)
            .mode(mode),
    )
    .with_context(|| {
        format!(
            "cannot open stream {:?} in {}",
            args.stream,
            args.dir.display()
        )
    })?;
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        json: args.json,
    };
    let mut summary = Summary::default();
    let mut latency = Histogram::new();
    let mut kept: VecDeque<Frame> = VecDeque::new();
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let hold = Duration::from_millis(args.hold_ms);
    let mut last_frame = Instant::now();
    let mut pending_lag = 0u64;

    let outcome: anyhow::Result<Status> = loop {
        if signal::stop_requested() || args.count.is_some_and(|n| summary.frames >= n) {
            break Ok(Status::Success);
        }
        let mut wait = POLL;
        if let Some(limit) = idle_limit {
            let left = limit.saturating_sub(last_frame.elapsed());
            if left.is_zero() {
                let idle_ms = last_frame.elapsed().as_secs_f64() * 1e3;
                printer.event(&Event::Timeout { idle_ms })?;
                break Ok(Status::Failed);
            }
            wait = wait.min(left);
        }
        let frame = match sub.recv_timeout(wait) {
            Ok(frame) => frame,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Lagged(missed)) => {
                summary.lagged += missed;
                summary.lag_events += 1;
                pending_lag += missed;
                if args.json {
                    printer.event(&Event::Lagged { missed })?;
                }
                continue;
            }
            Err(RecvError::Stale { since }) => {
                summary.stale += 1;
                printer.event(&Event::Stale {
                    since_ms: since.as_secs_f64() * 1e3,
                })?;
                continue;
            }
            Err(RecvError::FormatChanged { old, new }) => {
                summary.format_changes += 1;
                printer.event(&Event::FormatChanged {
                    old: FormatJson::from(&old),
                    new: FormatJson::from(&new),
                })?;
                continue;
            }
            Err(RecvError::HoldLimit { limit }) => match kept.pop_front() {
                // --keep asked for more than the producer allows: keep fewer.
                Some(oldest) => {
                    release(oldest, &mut printer, &mut summary)?;
                    continue;
                }
                None => {
                    break Err(anyhow::anyhow!(
                        "hold limit {limit} reached holding nothing"
                    ))
                }
            },
            Err(e) if e.is_fatal() => break Err(e).context("the stream failed"),
            Err(e) => {
                printer.event(&Event::Error {
                    error: e.to_string(),
                })?;
                continue;
            }
        };
        let now = mono_ns();
        last_frame = Instant::now();
        let meta = *frame.meta();
        let latency_ns = now.saturating_sub(meta.publish_mono_ns);
        latency.record(latency_ns);
        summary.frames += 1;
        summary.skipped += frame.skipped();
        let gap = frame.gap();
        if gap.is_some() {
            summary.gaps += 1;
        }
        let verdict = args.verify.then(|| check(&frame));
        let line = FrameLine {
            seq: meta.seq,
            epoch: meta.epoch,
            driver_seq: meta.driver_seq,
            capture_mono_ns: meta.capture_mono_ns,
            capture_real_ns: meta.capture_real_ns,
            publish_mono_ns: meta.publish_mono_ns,
            publish_real_ns: meta.publish_real_ns,
            fourcc: meta.format.fourcc.to_string(),
            width: meta.format.width,
            height: meta.format.height,
            len: meta.len,
            latency_us: json::us(latency_ns),
            skipped: frame.skipped(),
            verified: match &verdict {
                Some(Verdict::Verified) => Some(true),
                Some(Verdict::Torn(_)) => Some(false),
                Some(Verdict::Revoked) | None => None,
            },
            gap_ms: gap.map(|g| g.downtime.as_secs_f64() * 1e3),
            stride: meta.format.strides[0],
            flags: meta.flags,
            field: meta.field,
            hash: args.hash.then(|| {
                let h = payload_hash(frame.payload());
                // A hash of bytes that changed underneath is no hash.
                frame.is_intact().then(|| format!("{h:016x}"))
            }),
        };
        printer.frame(&line, pending_lag)?;
        pending_lag = 0;
        match verdict {
            Some(Verdict::Verified) => summary.verified += 1,
            Some(Verdict::Revoked) => {
                summary.revoked += 1;
                printer.event(&Event::Revoked { seq: meta.seq })?;
            }
            Some(Verdict::Torn(torn)) => {
                summary.torn += 1;
                printer.event(&Event::Torn {
                    seq: meta.seq,
                    stamped_seq: torn.stamped_seq,
                    len: meta.len,
                    error: &torn.error,
                })?;
                break Ok(Status::VerifyFailed);
            }
            None => {}
        }
        if !hold.is_zero() {
            // Work simulation: the frame stays held meanwhile.
            std::thread::sleep(hold);
        }
        // At most `keep` held at once, counting the next one to be received.
        kept.push_back(frame);
        while kept.len() > args.keep.saturating_sub(1) {
            let oldest = kept.pop_front().expect("not empty");
            release(oldest, &mut printer, &mut summary)?;
        }
    };
    while let Some(frame) = kept.pop_front() {
        release(frame, &mut printer, &mut summary)?;
    }
    summary.latency_us = Percentiles {
        p50: latency.quantile(0.50).map(json::us),
        p99: latency.quantile(0.99).map(json::us),
    };
    summary.latency_max_us = latency.max().map(json::us);
    summary.latency_mean_us = latency.mean().map(|ns| ns / 1e3);
    printer.event(&Event::Summary(&summary))?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_checked_against_the_ring_seq() {
        let mut payload = vec![0u8; 256];
        stamp::write(7, &mut payload);
        assert_eq!(check_stamp(7, &payload), Ok(()));
        let e = check_stamp(8, &payload).unwrap_err();
        assert_eq!(e.stamped_seq, Some(7));
        assert!(
            e.error.contains("seq 7") && e.error.contains("says 8"),
            "{}",
            e.error
        );
        payload[100] ^= 1;
        let e = check_stamp(7, &payload).unwrap_err();
        assert_eq!(e.stamped_seq, Some(7));
        assert!(e.error.contains("checksum"), "{}", e.error);
        let e = check_stamp(7, &[0; 64]).unwrap_err();
        assert_eq!(e.stamped_seq, None);
    }

    #[test]
    fn payload_hashes_tell_payloads_apart() {
        assert_eq!(payload_hash(b"camux"), payload_hash(b"camux"));
        assert_ne!(payload_hash(b"camux"), payload_hash(b"camuy"));
        // Zero padding of the tail does not make lengths collide.
        assert_ne!(payload_hash(b"abc"), payload_hash(b"abc\0"));
        assert_ne!(payload_hash(&[0; 8]), payload_hash(&[0; 16]));
        assert_ne!(payload_hash(&[]), payload_hash(&[0]));
    }

    #[test]
    fn events_serialize_with_their_tag() {
        let v = serde_json::to_value(Event::Lagged { missed: 3 }).unwrap();
        assert_eq!(v, serde_json::json!({"event": "lagged", "missed": 3}));
        let s = Summary::default();
        let v = serde_json::to_value(Event::Summary(&s)).unwrap();
        assert_eq!(v["event"], "summary");
        assert_eq!(v["frames"], 0);
        assert!(v["latency_us"]["p50"].is_null());
        let text = serde_json::to_string(&Event::Summary(&s)).unwrap();
        assert!(text.starts_with("{\"event\":\"summary\",\"frames\":0,\"verified\":0,\"torn\":0,\"lagged\":0,\"latency_us\":"), "{text}");
    }

    #[test]
    fn human_lines() {
        let mut p = Printer {
            out: Vec::new(),
            json: false,
        };
        let f = FrameLine {
            seq: 5,
            epoch: 2,
            capture_mono_ns: 0,
            publish_mono_ns: 0,
            publish_real_ns: 0,
            fourcc: "YUYV".into(),
            width: 64,
            height: 48,
            len: 6144,
            latency_us: 12.345,
            skipped: 0,
            verified: Some(true),
            gap_ms: Some(250.0),
            driver_seq: 0,
            capture_real_ns: 0,
            stride: 128,
            flags: 0,
            field: 0,
            hash: None,
        };
        p.frame(&f, 3).unwrap();
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "seq=5 YUYV 64x48 len=6144 latency=12.3us lagged=3 gap epoch=2 downtime=250.0ms verified\n"
        );
    }
}
