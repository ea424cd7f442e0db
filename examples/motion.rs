//! Motion detection by frame differencing on the luma plane: a real
//! consumer an inference pod could start from.
//!
//! Every frame is compared with the previous one on a coarse grid of luma
//! samples (every 4th pixel of every 4th row); a frame whose share of
//! changed samples passes `--min-area` is a motion frame. Motion starting
//! and stopping are printed as events with the frame's capture time
//! (CLOCK_REALTIME) and sequence number; a summary line ends the run
//! (`summary: {json}`: frames seen, first and last seq, frames missed,
//! motion frames, events, frames whose stamp failed with `--verify`).
//!
//! ```text
//! cargo run --release -- publish --dir /tmp/camux --stream cam0 --width 640 --height 480 &
//! cargo run --release --example motion -- --dir /tmp/camux --stream cam0 --frames 300
//! ```
//!
//! Options: `--dir D` (default /run/camux), `--stream S` (default cam0),
//! `--frames N` (stop after N frames; default: run until killed),
//! `--threshold T` (a luma change counted, 0..255, default 16),
//! `--min-area F` (share of changed samples that makes motion, default 0.01),
//! `--verify` (check the synthetic source's stamp on every frame).
//!
//! Luma is read in place from the ring for YUYV, UYVY, NV12, NV21, YU12,
//! 422P, 444P, GREY, RGB3 and BGR3 (no copy of the frame).
use camux::format::FourCc;
use camux::ring::StreamFormat;
use camux::source::stamp;
use camux::{RecvError, Subscriber, SubscriberOptions};
use std::time::{Duration, UNIX_EPOCH};

/// Grid step, in pixels, of the luma samples compared.
const STEP: usize = 4;

/// Reads the luma of pixel (x, y) of a frame in place.
struct Luma<'a> {
    payload: &'a [u8],
    format: StreamFormat,
}

impl Luma<'_> {
    fn supported(fourcc: FourCc) -> bool {
        [
            FourCc::YUYV,
            FourCc::UYVY,
            FourCc::NV12,
            FourCc::NV21,
            FourCc::YU12,
            FourCc::YU16,
            FourCc::YU24,
            FourCc::GREY,
            FourCc::RGB3,
            FourCc::BGR3,
        ]
        .contains(&fourcc)
    }

    /// The luma at (x, y), or `None` past the payload.
    fn at(&self, x: usize, y: usize) -> Option<u8> {
        let f = &self.format;
        let row = f.plane_offsets[0] as usize + y * f.strides[0] as usize;
        let p = self.payload;
        match f.fourcc {
            FourCc::YUYV => p.get(row + 2 * x).copied(),
            FourCc::UYVY => p.get(row + 2 * x + 1).copied(),
            FourCc::RGB3 | FourCc::BGR3 => {
                let px = p.get(row + 3 * x..row + 3 * x + 3)?;
                let (r, g, b) = if f.fourcc == FourCc::RGB3 {
                    (px[0], px[1], px[2])
                } else {
                    (px[2], px[1], px[0])
                };
                let y = (66 * u32::from(r) + 129 * u32::from(g) + 25 * u32::from(b) + 128) >> 8;
                Some((y + 16) as u8)
            }
            _ => p.get(row + x).copied(),
        }
    }
}

struct Options {
    dir: String,
    stream: String,
    frames: Option<u64>,
    threshold: u8,
    min_area: f64,
    verify: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        dir: "/run/camux".into(),
        stream: "cam0".into(),
        frames: None,
        threshold: 16,
        min_area: 0.01,
        verify: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--dir" => o.dir = value("--dir")?,
            "--stream" => o.stream = value("--stream")?,
            "--frames" => {
                o.frames = Some(
                    value("--frames")?
                        .parse()
                        .map_err(|e| format!("--frames: {e}"))?,
                )
            }
            "--threshold" => {
                o.threshold = value("--threshold")?
                    .parse()
                    .map_err(|e| format!("--threshold: {e}"))?
            }
            "--min-area" => {
                o.min_area = value("--min-area")?
                    .parse()
                    .map_err(|e| format!("--min-area: {e}"))?
            }
            "--verify" => o.verify = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the doc comment of examples/motion.rs)"
                ))
            }
        }
    }
    Ok(o)
}

/// `seconds.millis` since the Unix epoch, from a CLOCK_REALTIME stamp.
fn wall(ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(ns);
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let mut sub = Subscriber::with_options(SubscriberOptions::new(o.stream.as_str()).dir(&o.dir))?;
    let mut previous: Vec<u8> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let (mut frames, mut lagged, mut torn, mut motion_frames, mut events) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first_seq, mut last_seq) = (None, 0u64);
    let mut moving_since: Option<(u64, u64)> = None;
    while o.frames.is_none_or(|n| frames < n) {
        let frame = match sub.recv() {
            Ok(frame) => frame,
            Err(RecvError::Lagged(n)) => {
                lagged += n;
                eprintln!("fell behind: {n} frames missed");
                continue;
            }
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let meta = *frame.meta();
        frames += 1;
        first_seq.get_or_insert(meta.seq);
        last_seq = meta.seq;
        if o.verify && !stamp::verify(frame.payload()).is_ok_and(|v| v.seq == meta.seq) {
            torn += 1;
            eprintln!("frame {} failed its stamp check", meta.seq);
        }
        if !Luma::supported(meta.format.fourcc) {
            return Err(format!(
                "motion reads luma from raw YUV, grey or RGB frames, not {}",
                meta.format.fourcc
            )
            .into());
        }
        let luma = Luma {
            payload: frame.payload(),
            format: meta.format,
        };
        let (w, h) = (meta.format.width as usize, meta.format.height as usize);
        current.clear();
        for y in (0..h).step_by(STEP) {
            for x in (0..w).step_by(STEP) {
                current.push(
                    luma.at(x, y)
                        .ok_or("the frame is shorter than its format")?,
                );
            }
        }
        // The bytes were read while the frame was held: if the producer
        // revoked it meanwhile, they may be of another frame.
        if !frame.is_intact() {
            torn += 1;
        }
        drop(frame);
        if previous.len() == current.len() {
            let changed = previous
                .iter()
                .zip(&current)
                .filter(|(a, b)| a.abs_diff(**b) > o.threshold)
                .count();
            let area = changed as f64 / current.len() as f64;
            let moving = area >= o.min_area;
            if moving {
                motion_frames += 1;
            }
            match (moving, moving_since) {
                (true, None) => {
                    events += 1;
                    moving_since = Some((meta.seq, meta.capture_mono_ns));
                    println!(
                        "motion started: seq={} t={} area={:.1}%",
                        meta.seq,
                        wall(meta.capture_real_ns),
                        area * 100.0
                    );
                }
                (false, Some((seq, t0))) => {
                    moving_since = None;
                    println!(
                        "motion stopped: seq={} t={} after {} frames, {:.2} s",
                        meta.seq,
                        wall(meta.capture_real_ns),
                        meta.seq - seq,
                        meta.capture_mono_ns.saturating_sub(t0) as f64 / 1e9
                    );
                }
                _ => {}
            }
        }
        std::mem::swap(&mut previous, &mut current);
    }
    println!(
        "summary: {}",
        serde_json::json!({
            "frames": frames,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "lagged": lagged,
            "torn": torn,
            "motion_frames": motion_frames,
            "events": events,
        })
    );
    Ok(())
}
