//! camux itself: the library's `Publisher` (copy-in publish, as a
//! producer that gets frames in a buffer of its own does) and `Subscriber`
//! readers, each in its own process, exactly as a user runs them.
//!
//! The publish stamp is the frame's `publish_mono_ns`, which the publisher
//! takes after the payload is in the slot, just before the commit and the
//! futex wake. The wake-up time is taken when `recv` (or `try_recv`)
//! returns the frame.
//!
//! The same reader reads the `camux-daemon` system's ring
//! ([`super::daemon_sys`]): there the daemon's frames carry no index or end
//! marker of the harness's, so the reader counts the window by ring seq.

use super::role::{self, Frame, Recorder, Spinner, STALL};
use super::spec::{Line, Spec, System, Wait};
use anyhow::{bail, Context};
use camux::format::{FourCc, FrameLayout};
use camux::ring::{RingOptions, StreamFormat};
use camux::{FrameInfo, Published, Publisher, RecvError, Subscriber, SubscriberOptions};
use std::time::Duration;

/// How long the producer waits for its readers to register.
const REGISTER: Duration = Duration::from_secs(10);

fn format(spec: &Spec) -> anyhow::Result<StreamFormat> {
    let s = spec.scenario.shape;
    let fourcc = match s.fourcc {
        super::spec::Pixels::Raw => return Ok(StreamFormat::opaque(s.bytes() as u32)),
        super::spec::Pixels::Yuyv => FourCc::YUYV,
        super::spec::Pixels::Nv12 => FourCc::NV12,
    };
    let layout = FrameLayout::packed(fourcc, s.width, s.height)?;
    Ok(StreamFormat::from_layout(&layout, spec.scenario.fps))
}

/// The ring a scenario uses: the frame size, and slots enough that readers
/// holding one frame each never make the producer drop (the default hold
/// limit and timeout, as `camux demo` sizes it).
pub fn ring_options(spec: &Spec) -> anyhow::Result<RingOptions> {
    let bytes = spec.scenario.shape.bytes();
    let mut opts = RingOptions::new(&spec.dir, &spec.tag, format(spec)?, bytes as u64);
    opts.slots = slots(spec.scenario.readers);
    Ok(opts)
}

/// Ring slots for `readers` readers: 2N+4, at least 8.
pub fn slots(readers: u32) -> u32 {
    (2 * readers + 4).max(8)
}

/// The producer process.
pub fn producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let mut publisher =
        Publisher::create(&ring_options(spec)?).context("cannot create the ring")?;
    let src = role::pattern(sc.shape.bytes());
    role::say(&Line::Ready)?;
    role::wait_go();
    let got = publisher.wait_readers(sc.readers, REGISTER);
    if got < sc.readers {
        bail!("only {got} of {} readers registered", sc.readers);
    }
    let end = [1u8];
    let report = role::produce(sc, |f: Frame| {
        let info = FrameInfo {
            driver_seq: f.index,
            user: if f.end { &end } else { &[] },
            ..FrameInfo::default()
        };
        Ok(matches!(publisher.publish(&info, &src)?, Published::Seq(_)))
    })?;
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    Ok(())
}

/// A reader process.
pub fn reader(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let daemon = sc.system == System::CamuxDaemon;
    let opts = if daemon {
        SubscriberOptions::new(super::daemon_sys::STREAM).dir(super::daemon_sys::ring_dir(spec))
    } else {
        SubscriberOptions::new(&spec.tag).dir(&spec.dir)
    };
    let mut sub = Subscriber::with_options(opts).context("cannot open the stream")?;
    // The daemon's measured window (first, last ring seq), once fixed.
    let mut window: Option<(u64, u64)> = None;
    let warmup = sc.warmup();
    let mut rec = Recorder::new(sc);
    let mut spinner = Spinner::default();
    role::say(&Line::Ready)?;
    loop {
        let got = match sc.wait {
            Wait::Block => sub.recv_timeout(STALL),
            Wait::Spin => loop {
                match sub.try_recv() {
                    Err(RecvError::Empty) => spinner.spin()?,
                    other => break other,
                }
            },
        };
        spinner.got();
        let frame = match got {
            Ok(f) => f,
            // Counted as lost from the indices (every frame carries its own).
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Timeout) => bail!("no frame for {STALL:?}"),
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(_) => continue,
        };
        let wake = role::now_ns();
        let m = frame.meta();
        let (index, end) = if daemon {
            if window.is_none() {
                window = super::daemon_sys::read_window(spec);
            }
            match window {
                Some((first, _)) if m.seq < first => continue,
                Some((_, last)) if m.seq > last => (0, true),
                Some((first, _)) => (warmup + 1 + (m.seq - first), false),
                None => continue,
            }
        } else {
            (m.driver_seq, m.user() == [1])
        };
        rec.frame(index, m.publish_mono_ns, wake, end);
        rec.touch(frame.payload());
        if end {
            break;
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
