//! The physical limits, measured in the same run as the systems:
//!
//! - `limit-memcpy`: one thread copying the frame (`copy_from_slice`) into
//!   tmpfs-backed `MAP_SHARED` memory, rotating over 8 slots, back to back.
//!   The memory is the slots of a camux ring file, loaned all at once and
//!   never committed (the ring's protocol does not run; only the copy is
//!   timed). No readers.
//! - `limit-futex`: the producer stamps CLOCK_MONOTONIC into a shared page,
//!   stores the frame index, bumps a futex word and calls FUTEX_WAKE;
//!   readers sleep in FUTEX_WAIT on the word (or spin on it) and take the
//!   time when they see the new index. No payload, no protocol: the
//!   wake-up latency floor at the scenario's frame interval.

use super::camux_sys;
use super::role::{self, Frame, Recorder, Spinner, STALL};
use super::shm::SharedPage;
use super::spec::{Line, Spec, Wait};
use anyhow::{bail, Context};
use camux::Publisher;
use std::time::{Duration, Instant};

/// How many slots the memcpy limit rotates over (the camux default).
const SLOTS: u32 = 8;

/// The memcpy limit's producer (it has no readers).
pub fn memcpy_producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let bytes = sc.shape.bytes();
    let mut opts = camux_sys::ring_options(spec)?;
    opts.slots = SLOTS;
    let mut publisher = Publisher::create(&opts).context("cannot create the shared memory")?;
    let mut slots = (0..SLOTS)
        .map(|_| publisher.loan())
        .collect::<Result<Vec<_>, _>>()
        .context("cannot loan the slots")?;
    let src = role::pattern(bytes);
    // Fault every page in first, as a running producer has.
    for s in &mut slots {
        s.as_mut_slice()[..bytes].copy_from_slice(&src);
    }
    role::say(&Line::Ready)?;
    role::wait_go();
    let mut report = role::produce(sc, |f: Frame| {
        let slot = &mut slots[(f.index % u64::from(SLOTS)) as usize];
        slot.as_mut_slice()[..bytes].copy_from_slice(&src);
        std::hint::black_box(slot.as_mut_slice().as_ptr());
        Ok(true)
    })?;
    report.note = Some(format!(
        "copy_from_slice into {SLOTS} MAP_SHARED tmpfs slots, back to back"
    ));
    for s in slots {
        publisher.abandon(s);
    }
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    Ok(())
}

fn page_path(spec: &Spec) -> std::path::PathBuf {
    spec.dir.join(format!("{}.futex", spec.tag))
}

/// The futex floor's producer.
pub fn futex_producer(spec: &Spec) -> anyhow::Result<()> {
    let page = SharedPage::create(&page_path(spec))?;
    role::say(&Line::Ready)?;
    role::wait_go();
    let mut report = role::produce(&spec.scenario, |f: Frame| {
        page.publish(f.index, role::now_ns(), f.end);
        Ok(true)
    })?;
    report.note = Some("store + FUTEX_WAKE per frame, nothing else".into());
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    Ok(())
}

/// A futex floor reader.
pub fn futex_reader(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let page = SharedPage::open(&page_path(spec))?;
    let mut rec = Recorder::new(sc);
    let mut spinner = Spinner::default();
    let (mut last, _, _) = page.latest();
    let mut since = Instant::now();
    role::say(&Line::Ready)?;
    loop {
        // Read the word before the index: a publish after this load changes
        // it, and the wait below returns at once.
        let seen = page.word_now();
        let (index, stamp, end) = page.latest();
        if index != last {
            let wake = role::now_ns();
            spinner.got();
            since = Instant::now();
            last = index;
            rec.frame(index, stamp, wake, end);
            if end {
                break;
            }
            continue;
        }
        match sc.wait {
            Wait::Block => {
                if since.elapsed() > STALL {
                    bail!("no frame for {STALL:?}");
                }
                page.wait(seen, Duration::from_secs(1));
            }
            Wait::Spin => spinner.spin()?,
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
