//! The ring end to end inside one process: a publisher thread and
//! subscribers on other threads, over the real mapping, socket and futex.

use camux::ring::{RingOptions, StreamFormat};
use camux::source::stamp;
use camux::{FrameInfo, Mode, Publisher, RecvError, Subscriber, SubscriberOptions};
use std::time::Duration;

fn opts(dir: &std::path::Path, slots: u32) -> RingOptions {
    let mut o = RingOptions::new(dir, "t", StreamFormat::opaque(4096), 4096);
    o.slots = slots;
    o
}

fn frame(seq: u64) -> Vec<u8> {
    let mut v = vec![(seq % 251) as u8; 1024 + (seq % 7) as usize * 100];
    stamp::write(seq, &mut v);
    v
}

#[test]
fn every_frame_reader_gets_all_frames_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Publisher::create(&opts(dir.path(), 64)).unwrap();
    let mut sub = Subscriber::open(dir.path(), "t").unwrap();
    let n = 500u64;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut lagged = 0;
        while (got.len() as u64) + lagged < n {
            match sub.recv_timeout(Duration::from_secs(10)) {
                Ok(f) => {
                    let v = stamp::verify(f.payload()).expect("verified");
                    assert_eq!(v.seq, f.seq());
                    assert!(f.is_intact());
                    got.push(f.seq());
                }
                Err(RecvError::Lagged(k)) => lagged += k,
                Err(e) => panic!("{e}"),
            }
        }
        (got, lagged)
    });
    // Wait until the reader is registered so it sees frame 1 on.
    assert_eq!(p.wait_readers(1, Duration::from_secs(10)), 1);
    for seq in 1..=n {
        assert_eq!(
            p.publish(&FrameInfo::default(), &frame(seq)).unwrap(),
            camux::Published::Seq(seq)
        );
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (got, lagged) = reader.join().unwrap();
    assert_eq!(got.len() as u64 + lagged, n);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn held_frames_are_never_overwritten_and_limit_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), 4);
    o.hold_limit = 2;
    let mut p = Publisher::create(&o).unwrap();
    let mut sub = Subscriber::with_options(
        SubscriberOptions::new("t")
            .dir(dir.path())
            .mode(Mode::LatestOnly),
    )
    .unwrap();
    p.publish(&FrameInfo::default(), &frame(1)).unwrap();
    let a = loop {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Ok(f) => break f,
            Err(RecvError::Stale { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    p.publish(&FrameInfo::default(), &frame(2)).unwrap();
    let b = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    p.publish(&FrameInfo::default(), &frame(3)).unwrap();
    assert!(matches!(
        sub.recv_timeout(Duration::from_secs(5)),
        Err(RecvError::HoldLimit { limit: 2 })
    ));
    for seq in 4..100 {
        p.publish(&FrameInfo::default(), &frame(seq)).unwrap();
    }
    assert_eq!(stamp::verify(a.payload()).unwrap().seq, a.seq());
    assert_eq!(stamp::verify(b.payload()).unwrap().seq, b.seq());
    assert!(a.is_intact() && b.is_intact());
    assert_eq!(p.stats().dropped, 0);
    drop(a);
    let c = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(c.seq(), 99);
}

#[test]
fn every_metadata_field_travels_with_the_frame() {
    use camux::format::FourCc;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Publisher::create(&opts(dir.path(), 8)).unwrap();
    let mut sub = Subscriber::open(dir.path(), "t").unwrap();
    assert_eq!(p.wait_readers(1, Duration::from_secs(10)), 1);
    let format = StreamFormat {
        fourcc: FourCc::NV12,
        width: 64,
        height: 16,
        num_planes: 2,
        strides: [64, 64, 0, 0],
        plane_offsets: [0, 1024, 0, 0],
        fps_num: 0,
        fps_den: 0,
    };
    let info = FrameInfo {
        capture_mono_ns: 11,
        capture_real_ns: 22,
        driver_seq: 33,
        flags: camux::ring::FLAG_KEYFRAME,
        field: 1,
        format: Some(format),
        user: b"imu:42",
    };
    let before = camux::ring::mono_ns();
    p.publish(&info, &frame(1)).unwrap();
    let f = sub.recv_timeout(Duration::from_secs(10)).unwrap();
    let m = f.meta();
    assert_eq!(
        (m.seq, m.capture_mono_ns, m.capture_real_ns, m.driver_seq),
        (1, 11, 22, 33)
    );
    assert_eq!(
        (m.flags, m.field, m.epoch),
        (camux::ring::FLAG_KEYFRAME, 1, 1)
    );
    assert_eq!(
        m.format,
        StreamFormat {
            fps_num: 0,
            fps_den: 0,
            ..format
        }
    );
    assert_eq!(m.len, frame(1).len());
    assert_eq!(m.user(), b"imu:42");
    assert!(m.publish_mono_ns >= before && m.publish_real_ns > 0);
    assert_eq!(f.payload(), &frame(1)[..]);
}

#[test]
fn holds_survive_a_clean_handover_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), 4);
    o.hold_limit = 2;
    let mut p = Publisher::create(&o).unwrap();
    let mut sub = Subscriber::open(dir.path(), "t").unwrap();
    assert_eq!(p.wait_readers(1, Duration::from_secs(10)), 1);
    p.publish(&FrameInfo::default(), &frame(1)).unwrap();
    let held = sub.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(held.seq(), 1);
    // Rolling update: the old producer stops cleanly, a successor resumes.
    drop(p);
    let mut p = Publisher::create(&o).unwrap();
    assert_eq!(p.origin(), &camux::ring::Origin::Resumed { head: 1 });
    // The successor does not know the reader's page yet: it must leave the
    // held slot alone while it fills the other three, many times over.
    for seq in 2..40 {
        p.publish(&FrameInfo::default(), &frame(seq)).unwrap();
    }
    assert!(
        held.is_intact(),
        "held frame overwritten across the handover"
    );
    assert_eq!(stamp::verify(held.payload()).unwrap().seq, 1);
    // The reader re-registers on its own (the successor takes the
    // registration in while it publishes) and carries on, told of the gap.
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        let mut gaps = 0;
        while seqs.last().copied().unwrap_or(0) < 79 {
            match sub.recv_timeout(Duration::from_secs(10)) {
                Ok(f) => {
                    assert_eq!(stamp::verify(f.payload()).unwrap().seq, f.seq());
                    gaps += usize::from(f.gap().is_some());
                    seqs.push(f.seq());
                }
                Err(RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        (seqs, gaps)
    });
    assert_eq!(p.wait_readers(1, Duration::from_secs(10)), 1);
    // Back with its page: the quarantine is lifted, all slots are in use.
    for seq in 40..80 {
        p.publish(&FrameInfo::default(), &frame(seq)).unwrap();
        if seq == 60 {
            assert!(
                held.is_intact(),
                "held frame overwritten after re-registration"
            );
        }
    }
    let (seqs, gaps) = reader.join().unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > 1);
    assert_eq!(
        gaps, 1,
        "the first frame of the new producer reports the gap"
    );
    assert_eq!(p.stats().epoch, 2);
    drop(held);
}

#[cfg(feature = "async")]
#[test]
fn async_subscriber_receives_without_blocking_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    // More slots than frames: the reader cannot lag, so it must get all.
    let mut p = Publisher::create(&opts(dir.path(), 32)).unwrap();
    let sub = Subscriber::open(dir.path(), "t").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        rt.block_on(async move {
            let mut sub = camux::AsyncSubscriber::new(sub);
            let mut got = Vec::new();
            // A second task on the same single-threaded runtime keeps
            // running while the subscriber waits: nothing blocks the thread.
            let ticker = tokio::spawn(async {
                let mut ticks = 0u32;
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks += 1;
                    if ticks == 5 {
                        return ticks;
                    }
                }
            });
            tx.send(()).unwrap();
            while got.len() < 20 {
                match sub.recv_timeout(Duration::from_secs(10)).await {
                    Ok(f) => got.push(f.seq()),
                    Err(RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (got, ticker.await.unwrap())
        })
    });
    rx.recv().unwrap();
    assert_eq!(p.wait_readers(1, Duration::from_secs(10)), 1);
    for seq in 1..=20 {
        p.publish(&FrameInfo::default(), &frame(seq)).unwrap();
    }
    let (got, ticks) = reader.join().unwrap();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    assert_eq!(ticks, 5);
}

/// The seqs of the frames in the ring's slots, from `camux inspect`'s view.
fn frames_in_ring(dir: &std::path::Path) -> Vec<u64> {
    let snap = camux::ring::inspect::snapshot(&dir.join("t.ring")).unwrap();
    snap.slots
        .iter()
        .filter(|s| s.stamp != 0 && s.stamp & 1 == 0)
        .map(|s| s.stamp >> 1)
        .collect()
}

/// Warm slot reuse (`SlotReuse::Warm`) takes out of age order only frames
/// every registered reader has consumed: a reader that stopped after frame
/// 3 while another read on sees exactly the lag and frames it would see
/// with oldest-first reuse. And while both keep up, the producer cycles
/// through a few slots instead of all eight.
#[test]
fn warm_reuse_takes_only_consumed_frames_out_of_order() {
    use camux::ring::SlotReuse;
    for reuse in [SlotReuse::Oldest, SlotReuse::Warm] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), 8);
        o.slot_reuse = reuse;
        let mut p = Publisher::create(&o).unwrap();
        let mut fast = Subscriber::open(dir.path(), "t").unwrap();
        let mut slow = Subscriber::open(dir.path(), "t").unwrap();
        let publish = |p: &mut Publisher, seq: u64| {
            assert_eq!(
                p.publish(&FrameInfo::default(), &frame(seq)).unwrap(),
                camux::Published::Seq(seq)
            );
        };
        let t = Duration::from_secs(10);
        for seq in 1..=3 {
            publish(&mut p, seq);
            if seq == 1 {
                // Registration completes in the publisher's claim; from
                // here on both readers are in its scans.
                assert_eq!(p.wait_readers(2, t), 2);
            }
            assert_eq!(fast.recv_timeout(t).unwrap().seq(), seq);
            assert_eq!(slow.recv_timeout(t).unwrap().seq(), seq);
        }
        for seq in 4..=20 {
            publish(&mut p, seq);
            assert_eq!(fast.recv_timeout(t).unwrap().seq(), seq, "{reuse:?}");
        }
        // The slow reader wanted 4 on: 4..=12 were overwritten, oldest
        // first, whichever the policy; 13..=20 are there.
        let mut ring = frames_in_ring(dir.path());
        ring.sort_unstable();
        assert_eq!(ring, (13..=20).collect::<Vec<_>>(), "{reuse:?}");
        match slow.recv_timeout(t) {
            Err(RecvError::Lagged(9)) => {}
            other => panic!("{reuse:?}: {other:?}"),
        }
        for seq in 13..=20 {
            assert_eq!(slow.recv_timeout(t).unwrap().seq(), seq, "{reuse:?}");
        }
        // Both keep up now: warm reuse writes into two or three slots.
        for seq in 21..=100 {
            publish(&mut p, seq);
            assert_eq!(fast.recv_timeout(t).unwrap().seq(), seq);
            assert_eq!(slow.recv_timeout(t).unwrap().seq(), seq);
        }
        let recent = frames_in_ring(dir.path())
            .into_iter()
            .filter(|&s| s > 90)
            .count();
        match reuse {
            SlotReuse::Warm => assert!(recent <= 3, "{recent} slots written lately"),
            _ => assert_eq!(recent, 8),
        }
    }
}
