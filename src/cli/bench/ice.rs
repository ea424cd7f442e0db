//! iceoryx2 (feature `bench-iceoryx2`): publish/subscribe of `[u8]`
//! samples through the loan API, plus an Event service whose notifier the
//! producer signals after every send and on whose listener blocking readers
//! wait, as iceoryx2's `event_based_communication` example does.
//!
//! Configuration: iceoryx2's defaults (subscriber buffer 2, no history,
//! safe overflow: a subscriber that falls behind loses its oldest samples;
//! 8 subscribers at most), `initial_max_slice_len` = the frame size. The
//! producer loans a sample, copies the frame into it (the copy-in path,
//! as camux's `publish`), writes the index and the publish stamp into the
//! payload's first 24 bytes, sends and notifies; a reader takes the
//! wake-up time when `receive` returns the sample.

use super::role::{self, Frame, Recorder, Spinner, STALL};
use super::spec::{Line, Spec, Wait};
use anyhow::{anyhow, bail};
use iceoryx2::prelude::*;
use std::time::{Duration, Instant};

/// The crate version built in.
pub const VERSION: &str = "0.10";

fn names(spec: &Spec) -> anyhow::Result<(ServiceName, ServiceName)> {
    let data = format!("camux-bench/{}/frames", spec.tag);
    let event = format!("camux-bench/{}/ready", spec.tag);
    Ok((
        data.as_str().try_into().map_err(|e| anyhow!("{e:?}"))?,
        event.as_str().try_into().map_err(|e| anyhow!("{e:?}"))?,
    ))
}

fn node() -> anyhow::Result<Node<ipc::Service>> {
    NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| anyhow!("iceoryx2 node: {e:?}"))
}

/// The producer process.
pub fn producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let bytes = sc.shape.bytes();
    let node = node()?;
    let (data, event) = names(spec)?;
    let service = node
        .service_builder(&data)
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .map_err(|e| anyhow!("iceoryx2 service: {e:?}"))?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(bytes)
        .create()
        .map_err(|e| anyhow!("iceoryx2 publisher: {e:?}"))?;
    let events = node
        .service_builder(&event)
        .event()
        .open_or_create()
        .map_err(|e| anyhow!("iceoryx2 event service: {e:?}"))?;
    let notifier = events
        .notifier_builder()
        .create()
        .map_err(|e| anyhow!("iceoryx2 notifier: {e:?}"))?;
    let src = role::pattern(bytes);
    role::say(&Line::Ready)?;
    role::wait_go();
    let report = role::produce(sc, |f: Frame| {
        let sample = publisher
            .loan_slice_uninit(bytes)
            .map_err(|e| anyhow!("loan: {e:?}"))?;
        let mut sample = sample.write_from_slice(&src);
        role::put_header(sample.payload_mut(), f, role::now_ns());
        let delivered = sample.send().map_err(|e| anyhow!("send: {e:?}"))?;
        notifier.notify().map_err(|e| anyhow!("notify: {e:?}"))?;
        Ok(delivered > 0)
    })?;
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    Ok(())
}

/// A reader process.
pub fn reader(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let node = node()?;
    let (data, event) = names(spec)?;
    let service = node
        .service_builder(&data)
        .publish_subscribe::<[u8]>()
        .open_or_create()
        .map_err(|e| anyhow!("iceoryx2 service: {e:?}"))?;
    let subscriber = service
        .subscriber_builder()
        .create()
        .map_err(|e| anyhow!("iceoryx2 subscriber: {e:?}"))?;
    let events = node
        .service_builder(&event)
        .event()
        .open_or_create()
        .map_err(|e| anyhow!("iceoryx2 event service: {e:?}"))?;
    let listener = events
        .listener_builder()
        .create()
        .map_err(|e| anyhow!("iceoryx2 listener: {e:?}"))?;
    let mut rec = Recorder::new(sc);
    let mut spinner = Spinner::default();
    let mut since = Instant::now();
    role::say(&Line::Ready)?;
    'outer: loop {
        while let Some(sample) = subscriber
            .receive()
            .map_err(|e| anyhow!("receive: {e:?}"))?
        {
            let wake = role::now_ns();
            spinner.got();
            since = Instant::now();
            let payload = sample.payload();
            let (index, stamp, end) = role::get_header(payload);
            rec.frame(index, stamp, wake, end);
            rec.touch(payload);
            if end {
                break 'outer;
            }
        }
        match sc.wait {
            Wait::Block => {
                if since.elapsed() > STALL {
                    bail!("no sample for {STALL:?}");
                }
                listener
                    .timed_wait(|_| {}, Duration::from_secs(1))
                    .map_err(|e| anyhow!("wait: {e:?}"))?;
            }
            Wait::Spin => spinner.spin()?,
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
