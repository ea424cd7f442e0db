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
