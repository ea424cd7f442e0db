//! `camux publish`: a standalone producer of the synthetic test pattern.

use super::common::{parse_duration, SourceArgs, DEFAULT_DIR};
use super::{json, signal, Status};
use anyhow::Context;
use camux::ring::{Origin, PublishError, RingOptions, StreamFormat};
use camux::source::{Pacer, Synthetic};
use camux::{FrameInfo, Publisher};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The long `--help` text: what the subcommand does, with examples.
pub const LONG_ABOUT: &str = "\
Publish a synthetic test pattern into a ring, as the daemon publishes a camera.

Creates <DIR>/<STREAM>.ring (or resumes it if a previous producer left one
of the same geometry: sequence numbers continue), serves readers on
<DIR>/<STREAM>.sock, and publishes frames of a moving test pattern. Every
frame is stamped with its sequence number and a checksum, so `camux tail
--verify` can check it arrived whole. Frames are rendered straight into
the ring slot (zero copy); when every slot is held by readers the frame is
dropped and counted, never waited for.

Prints one JSON line to stdout once readers can connect:
  {\"event\":\"ready\",\"ring\":\"<path>\",\"origin\":\"created\"|\"resumed\"|\"replaced\",\"epoch\":N,\"next_seq\":N}
and one when it stops (after --frames or --seconds, or on SIGTERM/SIGINT):
  {\"event\":\"stopped\",\"published\":N,\"dropped\":N,\"revoked\":N}
The ring is then marked stopped; readers wait for a successor.

Exit status: 0 when stopped, 1 on an error (another producer holds the
stream, no space for the ring, bad geometry).

Examples:
  camux publish --dir /tmp/camux --stream cam0 &
  camux publish --dir /tmp/camux --stream imu --format RAW --width 48 --height 1 --fps 200
  camux publish --dir /tmp/camux --stream cam0 --frames 300 --flat
  camux publish --dir /tmp/camux --stream cam0 --wait-lock   # standby for a rolling update";

/// Publish a synthetic test pattern into a ring, as the daemon publishes a camera.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct PublishArgs {
    /// Directory of the stream's ring, socket and lock files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Stream name: the files are <DIR>/<NAME>.ring, .sock and .lock.
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// What to render.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Frame slots in the ring (readers × holds + 2 never drop).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub slots: u32,
    /// Frames one reader may hold at once (1..=16).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub hold_limit: u32,
    /// A hold that blocks the producer for longer than this is revoked.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub hold_timeout_ms: u64,
    /// Stop after publishing N frames (dropped frames do not count).
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m).
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Publish flat out, unpaced (--fps is then only recorded in the header).
    #[arg(long)]
    pub flat: bool,
    /// If another producer publishes the stream, wait for it to stop
    /// (standby during a rolling update) instead of failing.
    #[arg(long)]
    pub wait_lock: bool,
}

#[derive(Serialize)]
struct Ready<'a> {
    event: &'static str,
    ring: &'a str,
    origin: &'static str,
    epoch: u32,
    next_seq: u64,
}

#[derive(Serialize)]
struct Stopped {
    event: &'static str,
    published: u64,
    dropped: u64,
    revoked: u64,
}

/// The `origin` word of the ready line.
pub fn origin_name(origin: &Origin) -> &'static str {
    match origin {
        Origin::Created => "created",
        Origin::Resumed { .. } => "resumed",
        Origin::Replaced { .. } => "replaced",
    }
}

/// The ring options for publishing `source` as `stream` in `dir`.
pub fn ring_options(source: &Synthetic, dir: &std::path::Path, stream: &str) -> RingOptions {
    let format = StreamFormat::from_layout(source.layout(), source.config().fps);
    RingOptions::new(dir, stream, format, source.frame_bytes() as u64)
}

/// Loans a slot, renders frame `publisher.next_seq()` into it and commits
/// it (no copy). `Ok(None)` when every slot was held: the frame is dropped,
/// and the publisher has counted it.
pub fn publish_one(
    publisher: &mut Publisher,
    source: &Synthetic,
    info: &FrameInfo<'_>,
) -> anyhow::Result<Option<u64>> {
    let mut loan = match publisher.loan() {
        Ok(loan) => loan,
        Err(PublishError::NoFreeSlot) => return Ok(None),
        Err(e) => return Err(e).context("cannot loan a slot"),
    };
    // The stamp must carry the seq the ring gives the frame: after a restart
    // the ring resumes numbering, and readers check the two agree.
    let seq = publisher.next_seq();
    let len = match source.render(seq, loan.as_mut_slice()) {
        Ok(len) => len,
        Err(e) => {
            publisher.abandon(loan);
            return Err(e).context("cannot render into the slot");
        }
    };
    let got = publisher
        .commit(loan, len, info)
        .context("cannot commit the frame")?;
    debug_assert_eq!(got, seq);
    Ok(Some(got))
}

/// Runs `camux publish`.
pub fn run(args: PublishArgs) -> anyhow::Result<Status> {
    let source = args.source.synthetic()?;
    let mut opts = ring_options(&source, &args.dir, &args.stream);
    opts.slots = args.slots;
    opts.hold_limit = args.hold_limit;
    opts.hold_timeout = Duration::from_millis(args.hold_timeout_ms);
    opts.wait_for_lock = args.wait_lock;
    signal::install()?;
    let mut out = std::io::stdout().lock();
    let stopped = |published, dropped, revoked| Stopped {
        event: "stopped",
        published,
        dropped,
        revoked,
    };

    let mut publisher = match Publisher::create(&opts) {
        Ok(p) => p,
        // SIGTERM while in standby (--wait-lock): the flock was interrupted.
        Err(_) if signal::stop_requested() => {
            json::emit(&mut out, &stopped(0, 0, 0))?;
            return Ok(Status::Success);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot publish stream {:?} in {}",
                    args.stream,
                    args.dir.display()
                )
            })
        }
    };
    if let Origin::Replaced { reason } = publisher.origin() {
        if !reason.is_empty() {
            eprintln!("camux publish: replaced the existing ring: {reason}");
        }
    }
    let ring = publisher.ring_path().display().to_string();
    json::emit(
        &mut out,
        &Ready {
            event: "ready",
            ring: &ring,
            origin: origin_name(publisher.origin()),
            epoch: publisher.stats().epoch,
            next_seq: publisher.next_seq(),
        },
    )?;

    let mut pacer = if args.flat {
        Pacer::unpaced()
    } else {
        source.pacer()
    };
    let deadline = args.seconds.map(|s| Instant::now() + s);
    let mut published = 0u64;
    let mut captured = 0u64;
    loop {
        let done = args.frames.is_some_and(|n| published >= n)
            || deadline.is_some_and(|d| Instant::now() >= d);
        if done || signal::stop_requested() {
            break;
        }
        pacer.wait();
        // Checked again after the sleep, which may have passed the deadline.
        if signal::stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        captured += 1;
        let info = super::common::captured_now(captured);
        if publish_one(&mut publisher, &source, &info)?.is_some() {
            published += 1;
        }
    }
    let stats = publisher.stats();
    // Dropping marks the ring STOPPED and releases the lock, before we say so.
    drop(publisher);
    json::emit(
        &mut out,
        &stopped(stats.published, stats.dropped, stats.revoked),
    )?;
    Ok(Status::Success)
}
