//! QR code recognition on a camera stream, with the `rqrr` crate: a real
//! recognition task an inference pod could start from.
//!
//! Each frame's luma plane is read in place from the ring (no copy of the
//! frame) into rqrr's detector; every code found is decoded and its text
//! printed when it changes. A summary line ends the run (`summary: {json}`:
//! frames seen, first and last seq, frames missed, frames with a code
//! decoded, the distinct texts in order, frames whose stamp failed with
//! `--verify`).
//!
//! The synthetic source draws a QR code when asked, so this runs anywhere:
//!
//! ```text
//! cargo run --release -- publish --dir /tmp/camux --stream cam0 --width 640 --height 480 --qr "hello from camux" &
//! cargo run --release --example qr -- --dir /tmp/camux --stream cam0 --frames 100
//! ```
//!
//! Options: `--dir D` (default /run/camux), `--stream S` (default cam0),
//! `--frames N` (stop after N frames; default: run until killed),
//! `--every N` (look for codes in every Nth frame only, default 1),
//! `--verify` (check the synthetic source's stamp on every frame).
//!
//! Luma is read from YUYV, UYVY, NV12, NV21, YU12, 422P, 444P, GREY, RGB3
//! and BGR3 frames.
use camux::format::FourCc;
use camux::ring::StreamFormat;
use camux::source::stamp;
use camux::{RecvError, Subscriber, SubscriberOptions};

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

    /// The luma at (x, y); 0 past the payload (a short frame decodes as dark).
    fn at(&self, x: usize, y: usize) -> u8 {
        let f = &self.format;
        let row = f.plane_offsets[0] as usize + y * f.strides[0] as usize;
        let p = self.payload;
        let byte = |i: usize| p.get(i).copied().unwrap_or(0);
        match f.fourcc {
            FourCc::YUYV => byte(row + 2 * x),
            FourCc::UYVY => byte(row + 2 * x + 1),
            FourCc::RGB3 | FourCc::BGR3 => {
                let (r, g, b) = (
                    byte(row + 3 * x),
                    byte(row + 3 * x + 1),
                    byte(row + 3 * x + 2),
                );
                let (r, b) = if f.fourcc == FourCc::RGB3 {
                    (r, b)
                } else {
                    (b, r)
                };
                let y = (66 * u32::from(r) + 129 * u32::from(g) + 25 * u32::from(b) + 128) >> 8;
                (y + 16) as u8
            }
            _ => byte(row + x),
        }
    }
}

struct Options {
    dir: String,
    stream: String,
    frames: Option<u64>,
    every: u64,
    verify: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        dir: "/run/camux".into(),
        stream: "cam0".into(),
        frames: None,
        every: 1,
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
            "--every" => {
                o.every = value("--every")?
                    .parse::<u64>()
                    .map_err(|e| format!("--every: {e}"))?
                    .max(1)
            }
            "--verify" => o.verify = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the doc comment of examples/qr.rs)"
                ))
            }
        }
    }
    Ok(o)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let mut sub = Subscriber::with_options(SubscriberOptions::new(o.stream.as_str()).dir(&o.dir))?;
    let (mut frames, mut lagged, mut torn, mut decoded) = (0u64, 0u64, 0u64, 0u64);
    let (mut first_seq, mut last_seq) = (None, 0u64);
    let mut texts: Vec<String> = Vec::new();
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
        if meta.seq % o.every != 0 {
            continue;
        }
        if !Luma::supported(meta.format.fourcc) {
            return Err(format!(
                "qr reads luma from raw YUV, grey or RGB frames, not {}",
                meta.format.fourcc
            )
            .into());
        }
        let luma = Luma {
            payload: frame.payload(),
            format: meta.format,
        };
        let (w, h) = (meta.format.width as usize, meta.format.height as usize);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| luma.at(x, y));
        // The frame is released as soon as its pixels are in the detector.
        let intact = frame.is_intact();
        drop(frame);
        if !intact {
            torn += 1;
            continue;
        }
        let mut found = false;
        for grid in image.detect_grids() {
            match grid.decode() {
                Ok((_, text)) => {
                    found = true;
                    if texts.last() != Some(&text) {
                        println!("qr: seq={} text={text:?}", meta.seq);
                        texts.push(text);
                    }
                }
                Err(e) => eprintln!("seq {}: a QR code was found but not decoded: {e}", meta.seq),
            }
        }
        if found {
            decoded += 1;
        }
    }
    println!(
        "summary: {}",
        serde_json::json!({
            "frames": frames,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "lagged": lagged,
            "torn": torn,
            "decoded": decoded,
            "texts": texts,
        })
    );
    Ok(())
}
