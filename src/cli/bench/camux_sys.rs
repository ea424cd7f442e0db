//! camux itself: the library's `Publisher` (copy-in publish, as a
//! producer that gets frames in a buffer of its own does) and `Subscriber`
//! readers, each in its own process, exactly as a user runs them.
//!
//! The publish stamp is the frame's `publish_mono_ns`, which the publisher
//! takes after the payload is in the slot, just before the commit and the
//! futex wake. The wake-up time is taken when `recv` (or `try_recv`)
//! returns the frame.

use super::role::{self, Frame, Recorder, Spinner, STALL};
use super::spec::{Line, Spec, Wait};
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
    opts.slots = (2 * spec.scenario.readers + 4).max(8);
    Ok(opts)
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
    let mut sub = Subscriber::with_options(SubscriberOptions::new(&spec.tag).dir(&spec.dir))
        .context("cannot open the stream")?;
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
        let end = m.user() == [1];
        rec.frame(m.driver_seq, m.publish_mono_ns, wake, end);
        rec.touch(frame.payload());
        if end {
            break;
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
