//! Hostile and broken ring files (design property 9).
//!
//! Every test takes a real ring made by [`Publisher`], breaks it with plain
//! file writes (`pwrite`, `ftruncate`: what a buggy or hostile writer with
//! access to the file could do), and checks that a reader gets a typed error
//! naming what is wrong, or an in-bounds frame, and never a panic. The last
//! tests check that a full tmpfs is a clear error when the ring is created,
//! not a SIGBUS later.
//!
//! Byte offsets below are the file format's (`src/ring/layout.rs`, module
//! `off`); if they move, the format version must change too.

use camux::ring::inspect::{self, InspectError};
use camux::ring::layout::{
    Geometry, Header, Layout, LayoutError, DESC_OFFSET, FIXED_BYTES, HEADER_BYTES, MAGIC,
    USER_META_BYTES, VERSION,
};
use camux::ring::{CreateError, RingOptions, StreamFormat};
use camux::SubscriberOptions;
use camux::{FrameInfo, Mode, OpenError, Published, Publisher, RecvError, Subscriber};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

// Fixed header fields.
const OFF_VERSION: u64 = 8;
const OFF_FILE_BYTES: u64 = 16;
const OFF_PAGE_SIZE: u64 = 24;
const OFF_SLOT_COUNT: u64 = 28;
const OFF_INDEX_LEN: u64 = 32;
const OFF_INDEX_OFFSET: u64 = 48;
const OFF_DATA_OFFSET: u64 = 56;
const OFF_SLOT_STRIDE: u64 = 64;
const OFF_MAX_FRAME_BYTES: u64 = 72;
const OFF_HOLD_LIMIT: u64 = 104;
const OFF_NUM_PLANES: u64 = 124;
const OFF_NAME: u64 = 168;
const OFF_CONTENT_TYPE: u64 = 232;
// Live words (after LIVE_OFFSET = 512).
const OFF_HEAD: u64 = 512 + 16;
const OFF_PUBLISHED: u64 = 512 + 48;
const OFF_BYTES_COPIED: u64 = 512 + 80;
/// Bytes of live words (512..600).
const LIVE_BYTES: usize = 88;
// Inside a slot descriptor: the stamp, then the metadata.
const DESC_BYTES: u64 = 256;
const META_SEQ: u64 = 8;
const META_PAYLOAD_LEN: u64 = 8 + 40;
const META_NUM_PLANES: u64 = 8 + 76;
const META_USER_LEN: u64 = 8 + 84;

const STREAM: &str = "t";
const MAX_FRAME: u64 = 4096;
const SLOTS: u32 = 4;
const WAIT: Duration = Duration::from_secs(10);

fn opts(dir: &Path) -> RingOptions {
    let mut o = RingOptions::new(dir, STREAM, StreamFormat::opaque(64), MAX_FRAME);
    o.slots = SLOTS;
    o
}

fn payload(seq: u64) -> Vec<u8> {
    vec![seq as u8; 100 + seq as usize]
}

/// A valid ring left by a producer that published three frames and stopped.
fn stopped_ring() -> (tempfile::TempDir, PathBuf, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Publisher::create(&opts(dir.path())).unwrap();
    for seq in 1..=3 {
        assert_eq!(
            p.publish(&FrameInfo::default(), &payload(seq)).unwrap(),
            Published::Seq(seq)
        );
    }
    let path = p.ring_path().to_owned();
    let layout = p.header().layout;
    drop(p);
    (dir, path, layout)
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn put32(f: &File, at: u64, v: u32) {
    f.write_all_at(&v.to_le_bytes(), at).unwrap();
}

fn put64(f: &File, at: u64, v: u64) {
    f.write_all_at(&v.to_le_bytes(), at).unwrap();
}

fn get64(f: &File, at: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, at).unwrap();
    u64::from_le_bytes(b)
}

fn get32(f: &File, at: u64) -> u32 {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, at).unwrap();
    u32::from_le_bytes(b)
}

/// Opens the ring in `dir` both ways a reader does (subscriber and
/// inspection), requires both to fail on its format with the same error,
/// and returns that error.
fn format_error(dir: &Path) -> LayoutError {
    let sub = match Subscriber::open(dir, STREAM) {
        Err(OpenError::Format { source, .. }) => source,
        Err(e) => panic!("subscriber: expected a format error, got {e:?}"),
        Ok(_) => panic!("subscriber opened a broken ring"),
    };
    let (ring, _, _) = camux::ring::paths(dir, STREAM);
    let insp = match inspect::snapshot(&ring) {
        Err(InspectError::Format { source, .. }) => source,
        Err(e) => panic!("inspect: expected a format error, got {e:?}"),
        Ok(_) => panic!("inspect accepted a broken ring"),
    };
    assert_eq!(sub, insp, "subscriber and inspect disagree");
    // The message names the problem (what `camux` prints).
    assert!(!sub.to_string().is_empty());
    sub
}

fn bad_field(e: LayoutError) -> &'static str {
    match e {
        LayoutError::BadField { field, .. } => field,
        e => panic!("expected BadField, got {e:?}"),
    }
}

#[test]
fn intact_ring_opens() {
    // The control for every test below: unmodified, the file is fine.
    let (dir, path, layout) = stopped_ring();
    let snap = inspect::snapshot(&path).unwrap();
    assert_eq!((snap.head, snap.slots.len() as u32), (3, SLOTS));
    assert_eq!(snap.header.layout, layout);
    let sub = Subscriber::open(dir.path(), STREAM).unwrap();
    assert_eq!(sub.header().layout, layout);
    // No content type was asked for: the bytes are zero and read as none.
    assert_eq!((sub.content_type(), snap.header.content_type), (None, None));
    assert_eq!(
        (snap.published, snap.bytes_copied),
        (3, 3 * 100 + 1 + 2 + 3)
    );
}

#[test]
fn content_type_reaches_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.content_type = Some("application/x-imu+csv".into());
    let p = Publisher::create(&o).unwrap();
    let sub = Subscriber::open(dir.path(), STREAM).unwrap();
    assert_eq!(sub.content_type(), Some("application/x-imu+csv"));
    assert_eq!(sub.header().content_type, p.header().content_type);
    let snap = inspect::snapshot(p.ring_path()).unwrap();
    assert_eq!(
        snap.header.content_type.as_deref(),
        Some("application/x-imu+csv")
    );
}

#[test]
fn content_type_with_bad_bytes_is_refused() {
    let (dir, path, _) = stopped_ring();
    let f = rw(&path);
    let types: &[&[u8]] = &[
        b"text/csv; charset=utf-8\0", // a space
        b"caf\xc3\xa9\0",             // not ASCII
        b"a\nb\0",                    // a control character
        b"\x7f\0",                    // DEL
        b"abc\0def",                  // bytes after the terminating NUL
        b"\0\0\0\0\0\0\0\0\xff",      // garbage after an empty one
        &[b'x'; 64],                  // 64 bytes, no terminating NUL
        &[0xff; 64],                  // all ones
    ];
    for ct in types {
        f.write_all_at(&[0u8; 64], OFF_CONTENT_TYPE).unwrap();
        f.write_all_at(ct, OFF_CONTENT_TYPE).unwrap();
        let e = format_error(dir.path());
        assert!(e.to_string().contains("content_type"), "{e}");
        assert_eq!(
            bad_field(e),
            "content_type",
            "{:?}",
            String::from_utf8_lossy(ct)
        );
    }
    // A producer that finds such a file replaces it (it cannot resume what
    // it cannot read) instead of failing.
    let p = Publisher::create(&opts(dir.path())).unwrap();
    match p.origin() {
        camux::ring::Origin::Replaced { reason } => {
            assert!(reason.contains("content_type"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(inspect::snapshot(&path).is_ok());
    // A valid one written by someone who knows the format is read.
    drop(p);
    let f = rw(&path); // the replacement file
    f.write_all_at(b"application/x-gps+nmea", OFF_CONTENT_TYPE)
        .unwrap();
    let sub = Subscriber::open(dir.path(), STREAM).unwrap();
    assert_eq!(sub.content_type(), Some("application/x-gps+nmea"));
}

#[test]
fn wrong_magic_is_bad_magic() {
    let (dir, path, _) = stopped_ring();
    rw(&path).write_all_at(b"NOTCAMUX", 0).unwrap();
    assert_eq!(
        format_error(dir.path()),
        LayoutError::BadMagic {
            found: *b"NOTCAMUX",
            expected: MAGIC
        }
    );
}

#[test]
fn other_version_carries_both_versions() {
    let (dir, path, _) = stopped_ring();
    let f = rw(&path);
    put32(&f, OFF_VERSION, VERSION + 1);
    let e = format_error(dir.path());
    assert_eq!(
        e,
        LayoutError::VersionMismatch {
            found: VERSION + 1,
            expected: VERSION
        }
    );
    let msg = e.to_string();
    assert!(msg.contains(&(VERSION + 1).to_string()) && msg.contains(&VERSION.to_string()));
    // Version 0: a file whose creator has not finished initialising it.
    put32(&f, OFF_VERSION, 0);
    let e = format_error(dir.path());
    assert_eq!(
        e,
        LayoutError::VersionMismatch {
            found: 0,
            expected: VERSION
        }
    );
    assert!(e.to_string().contains("not yet initialised"), "{e}");
}

#[test]
fn file_shorter_than_header_is_truncated() {
    let (dir, path, _) = stopped_ring();
    for len in [HEADER_BYTES - 1, 100, 0] {
        rw(&path).set_len(len).unwrap();
        assert_eq!(
            format_error(dir.path()),
            LayoutError::Truncated {
                need: HEADER_BYTES,
                have: len
            },
            "file of {len} bytes"
        );
    }
}

#[test]
fn file_shorter_than_layout_is_truncated() {
    let (dir, path, layout) = stopped_ring();
    let f = rw(&path);
    for len in [
        layout.file_bytes - 1,
        layout.data_offset,
        HEADER_BYTES + 1,
        HEADER_BYTES,
    ] {
        f.set_len(len).unwrap();
        assert_eq!(
            format_error(dir.path()),
            LayoutError::Truncated {
                need: layout.file_bytes,
                have: len
            },
            "file of {len} bytes"
        );
    }
    // Longer than the layout is refused too: the size must match exactly.
    f.set_len(layout.file_bytes + 4096).unwrap();
    assert_eq!(bad_field(format_error(dir.path())), "file size");
}

/// Rewrites the header with `f` applied to its parsed copy, keeping it
/// self-consistent: what a hostile writer who knows the format would do.
fn rewrite_header(path: &Path, f: impl FnOnce(&mut Header)) {
    let file = rw(path);
    let mut b = vec![0u8; FIXED_BYTES];
    file.read_exact_at(&mut b, 0).unwrap();
    let mut h = Header::parse(&b, file.metadata().unwrap().len()).unwrap();
    f(&mut h);
    file.write_all_at(&h.encode(), 0).unwrap();
}

#[test]
fn consistent_geometry_beyond_the_file_is_truncated() {
    let (dir, path, layout) = stopped_ring();
    let have = layout.file_bytes;
    // More slots, then larger slots, with every derived offset rewritten to
    // match: the layout then ends past the end of the file.
    for g in [
        Geometry {
            slot_count: 64,
            ..layout.geometry
        },
        Geometry {
            max_frame_bytes: 1 << 20,
            ..layout.geometry
        },
        Geometry {
            slot_count: 4096,
            max_frame_bytes: 1 << 20,
            ..layout.geometry
        },
    ] {
        let bigger = g.layout().unwrap();
        rewrite_header(&path, |h| h.layout = bigger);
        assert_eq!(
            format_error(dir.path()),
            LayoutError::Truncated {
                need: bigger.file_bytes,
                have
            },
            "{g:?}"
        );
        rewrite_header_raw(&path, &layout);
    }
    // Fewer slots: the file is longer than the layout, also refused.
    let smaller = Geometry {
        slot_count: 1,
        ..layout.geometry
    }
    .layout()
    .unwrap();
    rewrite_header(&path, |h| h.layout = smaller);
    assert_eq!(bad_field(format_error(dir.path())), "file size");
}

/// Puts the original geometry back (the header is otherwise unchanged).
fn rewrite_header_raw(path: &Path, layout: &Layout) {
    let f = rw(path);
    put32(&f, OFF_SLOT_COUNT, layout.geometry.slot_count);
    put64(&f, OFF_MAX_FRAME_BYTES, layout.geometry.max_frame_bytes);
    put32(&f, OFF_INDEX_LEN, layout.index_len);
    put64(&f, OFF_INDEX_OFFSET, layout.index_offset);
    put64(&f, OFF_DATA_OFFSET, layout.data_offset);
    put64(&f, OFF_SLOT_STRIDE, layout.slot_stride);
    put64(&f, OFF_FILE_BYTES, layout.file_bytes);
    assert!(inspect::snapshot(path).is_ok(), "restored");
}

#[test]
fn geometry_fields_that_disagree_are_named() {
    let (dir, path, layout) = stopped_ring();
    let f = rw(&path);
    // (what to write, the field the error must name). Each breaks one field
    // so that the derived offsets would point elsewhere, possibly outside the
    // file; the reader recomputes them and refuses.
    type Edit = (u64, u64, bool, &'static str);
    let edits: &[Edit] = &[
        // offset, value, 64-bit?, field named
        (OFF_SLOT_COUNT, u64::from(SLOTS) * 2, false, "index_len"),
        (OFF_SLOT_COUNT, u64::from(SLOTS) - 1, false, "index_offset"),
        (OFF_MAX_FRAME_BYTES, MAX_FRAME * 3, true, "slot_stride"),
        (OFF_INDEX_LEN, 1 << 20, false, "index_len"),
        (OFF_INDEX_OFFSET, layout.file_bytes, true, "index_offset"),
        (OFF_DATA_OFFSET, layout.file_bytes, true, "data_offset"),
        (OFF_DATA_OFFSET, u64::MAX, true, "data_offset"),
        (OFF_SLOT_STRIDE, layout.slot_stride * 2, true, "slot_stride"),
        (OFF_FILE_BYTES, layout.file_bytes * 2, true, "file_bytes"),
        (OFF_FILE_BYTES, u64::MAX, true, "file_bytes"),
        (OFF_HOLD_LIMIT, 0, false, "hold_limit"),
        (OFF_HOLD_LIMIT, 17, false, "hold_limit"),
        (OFF_NUM_PLANES, 5, false, "num_planes"),
        (OFF_NUM_PLANES, u64::from(u32::MAX), false, "num_planes"),
    ];
    for &(at, value, wide, field) in edits {
        let mut orig = [0u8; 8];
        let n = if wide { 8 } else { 4 };
        f.read_exact_at(&mut orig[..n], at).unwrap();
        if wide {
            put64(&f, at, value);
        } else {
            put32(&f, at, value as u32);
        }
        assert_eq!(
            bad_field(format_error(dir.path())),
            field,
            "writing {value} at {at}"
        );
        f.write_all_at(&orig[..n], at).unwrap();
    }
    // Values no geometry allows at all.
    for (at, value) in [
        (OFF_SLOT_COUNT, 0u32),
        (OFF_SLOT_COUNT, u32::MAX),
        (OFF_PAGE_SIZE, 4095),
        (OFF_PAGE_SIZE, 0),
        (OFF_PAGE_SIZE, 1 << 31),
    ] {
        let orig = get32(&f, at);
        put32(&f, at, value);
        assert!(
            matches!(format_error(dir.path()), LayoutError::Geometry(_)),
            "writing {value} at {at}"
        );
        put32(&f, at, orig);
    }
    for value in [0, u64::MAX, (1 << 30) + 1] {
        put64(&f, OFF_MAX_FRAME_BYTES, value);
        assert!(
            matches!(format_error(dir.path()), LayoutError::Geometry(_)),
            "max_frame_bytes {value}"
        );
    }
}

#[test]
fn name_with_bad_bytes_is_refused() {
    let (dir, path, _) = stopped_ring();
    let f = rw(&path);
    let names: &[&[u8]] = &[
        b"a/b\0",
        b"..\0",
        b".hidden\0",
        b"\xff\xfe\0",
        b"caf\xc3\xa9\0", // valid UTF-8, but not a file name we allow
        b"sp ace\0",
        b"\0",       // empty
        &[b'x'; 64], // 64 bytes, no terminating NUL
    ];
    for name in names {
        f.write_all_at(&[0u8; 64], OFF_NAME).unwrap();
        f.write_all_at(name, OFF_NAME).unwrap();
        assert_eq!(
            bad_field(format_error(dir.path())),
            "name",
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn huge_head_in_a_stopped_ring_is_no_panic() {
    let (dir, path, _) = stopped_ring();
    put64(&rw(&path), OFF_HEAD, u64::MAX);
    assert_eq!(inspect::snapshot(&path).unwrap().head, u64::MAX);
    for mode in [Mode::EveryFrame, Mode::LatestOnly] {
        let mut sub =
            Subscriber::with_options(SubscriberOptions::new(STREAM).dir(dir.path()).mode(mode))
                .unwrap();
        // No producer: nothing to receive, and no panic on the way.
        match sub.recv_timeout(Duration::from_millis(20)) {
            Err(RecvError::Timeout | RecvError::Stale { .. }) => {}
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

/// A live producer with one registered every-frame (or latest-only) reader,
/// and the ring file open for corrupting.
struct Live {
    p: Publisher,
    sub: Subscriber,
    file: File,
    layout: Layout,
    _dir: tempfile::TempDir,
}

impl Live {
    fn new(mode: Mode) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::create(&opts(dir.path())).unwrap();
        let sub =
            Subscriber::with_options(SubscriberOptions::new(STREAM).dir(dir.path()).mode(mode))
                .unwrap();
        // The reader must be in the producer's scans before it holds frames.
        assert_eq!(p.wait_readers(1, WAIT), 1, "reader registered");
        let file = rw(p.ring_path());
        let layout = p.header().layout;
        Live {
            p,
            sub,
            file,
            layout,
            _dir: dir,
        }
    }

    /// Publishes a frame; returns its seq and the slot it went to.
    fn publish(&mut self) -> (u64, u32) {
        let seq = self.p.next_seq();
        assert_eq!(
            self.p
                .publish(&FrameInfo::default(), &payload(seq))
                .unwrap(),
            Published::Seq(seq)
        );
        let slot = get32(&self.file, self.index_entry(seq));
        assert!(slot < SLOTS);
        (seq, slot)
    }

    fn index_entry(&self, seq: u64) -> u64 {
        self.layout.index_offset + (seq % u64::from(self.layout.index_len)) * 4
    }

    fn desc(&self, slot: u32) -> u64 {
        DESC_OFFSET + u64::from(slot) * DESC_BYTES
    }

    /// Receives, and checks that a frame, if one comes, lies inside its slot.
    fn recv(&mut self) -> Result<(u64, usize), RecvError> {
        let f = self.sub.recv_timeout(WAIT)?;
        let p = f.payload();
        assert!(p.len() as u64 <= self.layout.geometry.max_frame_bytes);
        assert!(p.len() as u64 <= self.layout.slot_stride);
        // Touch every byte: in bounds of the mapping, so no fault.
        std::hint::black_box(p.iter().fold(0u8, |a, b| a ^ b));
        assert!(f.meta().user().len() <= USER_META_BYTES);
        Ok((f.seq(), p.len()))
    }
}

fn corrupt_field(e: RecvError) -> &'static str {
    match e {
        RecvError::Corrupt(LayoutError::BadField { field, .. }) => field,
        e => panic!("expected RecvError::Corrupt(BadField), got {e:?}"),
    }
}

#[test]
fn live_ring_intact_frames_arrive() {
    // The control for the live tests.
    let mut l = Live::new(Mode::EveryFrame);
    let (seq, _) = l.publish();
    assert_eq!(l.recv().unwrap(), (seq, payload(seq).len()));
}

#[test]
fn metadata_seq_that_disagrees_with_the_stamp_is_corrupt() {
    let mut l = Live::new(Mode::EveryFrame);
    let (seq, slot) = l.publish();
    put64(&l.file, l.desc(slot) + META_SEQ, seq + 1000);
    match l.recv() {
        Err(RecvError::Corrupt(LayoutError::BadField {
            field: "frame seq",
            found,
            expected,
        })) => {
            assert_eq!(found, seq + 1000);
            assert_eq!(expected, seq.to_string());
        }
        other => panic!("{other:?}"),
    }
    // The hold was released: the next frame is read normally.
    let (next, _) = l.publish();
    assert_eq!(l.recv().unwrap(), (next, payload(next).len()));
}

#[test]
fn stamp_that_names_another_frame_is_corrupt() {
    let mut l = Live::new(Mode::EveryFrame);
    let (s1, a) = l.publish();
    let (s2, _b) = l.publish();
    // Slot `a` (frame s1) now claims to hold s2, and the index agrees: the
    // stamp lies about the metadata beside it.
    put64(&l.file, l.desc(a), s2 << 1);
    put32(&l.file, l.index_entry(s2), a);
    // Frame s1 is gone from its stamp: reported as exactly one frame missed.
    match l.recv() {
        Err(RecvError::Lagged(1)) => {}
        other => panic!("frame {s1}: {other:?}"),
    }
    assert_eq!(corrupt_field(l.recv().unwrap_err()), "frame seq");
}

#[test]
fn payload_len_beyond_the_slot_is_corrupt() {
    let mut l = Live::new(Mode::EveryFrame);
    for bad in [MAX_FRAME + 1, l.layout.slot_stride + 1, u64::MAX, 1 << 63] {
        let (_, slot) = l.publish();
        put64(&l.file, l.desc(slot) + META_PAYLOAD_LEN, bad);
        assert_eq!(
            corrupt_field(l.recv().unwrap_err()),
            "frame payload_len",
            "{bad}"
        );
    }
    // The largest length the slot allows is a frame, in bounds.
    let (seq, slot) = l.publish();
    put64(&l.file, l.desc(slot) + META_PAYLOAD_LEN, MAX_FRAME);
    assert_eq!(l.recv().unwrap(), (seq, MAX_FRAME as usize));
}

#[test]
fn user_len_and_plane_count_out_of_range_are_corrupt() {
    let mut l = Live::new(Mode::EveryFrame);
    for bad in [USER_META_BYTES as u32 + 1, u32::MAX] {
        let (_, slot) = l.publish();
        put32(&l.file, l.desc(slot) + META_USER_LEN, bad);
        assert_eq!(corrupt_field(l.recv().unwrap_err()), "frame user_len");
    }
    let (_, slot) = l.publish();
    put32(&l.file, l.desc(slot) + META_NUM_PLANES, 5);
    assert_eq!(corrupt_field(l.recv().unwrap_err()), "frame num_planes");
}

#[test]
fn index_entry_outside_the_ring_is_corrupt() {
    for mode in [Mode::EveryFrame, Mode::LatestOnly] {
        let mut l = Live::new(mode);
        for bad in [SLOTS, SLOTS + 1, u32::MAX] {
            let (seq, _) = l.publish();
            put32(&l.file, l.index_entry(seq), bad);
            match l.recv() {
                Err(RecvError::Corrupt(LayoutError::BadField {
                    field: "index entry",
                    found,
                    ..
                })) => assert_eq!(found, u64::from(bad)),
                other => panic!("{mode:?}, slot {bad}: {other:?}"),
            }
        }
        // Intact frames after it still arrive.
        let (seq, _) = l.publish();
        assert_eq!(l.recv().unwrap(), (seq, payload(seq).len()), "{mode:?}");
    }
}

#[test]
fn latest_only_reader_sees_corrupt_metadata_too() {
    let mut l = Live::new(Mode::LatestOnly);
    let (_, slot) = l.publish();
    put64(&l.file, l.desc(slot) + META_PAYLOAD_LEN, u64::MAX);
    assert_eq!(corrupt_field(l.recv().unwrap_err()), "frame payload_len");
}

#[test]
fn garbage_stamps_are_never_read_as_frames() {
    let mut l = Live::new(Mode::EveryFrame);
    // Odd (not the producer's WRITING value), and the top bit set.
    for bad in [3u64, 5, u64::MAX, u64::MAX - 1, 1 << 63] {
        let (seq, slot) = l.publish();
        put64(&l.file, l.desc(slot), bad);
        match l.recv() {
            // The frame's stamp no longer names it: it is gone, and counted.
            Err(RecvError::Lagged(n)) => assert!(n >= 1, "{bad}"),
            Err(RecvError::Corrupt(_)) => {}
            other => panic!("stamp {bad:#x} on frame {seq}: {other:?}"),
        }
        // Publishing goes on (the producer reclaims the slot) and the
        // reader continues at a frame it can read.
        let (next, _) = l.publish();
        assert_eq!(l.recv().unwrap(), (next, payload(next).len()));
    }
}

#[test]
fn huge_head_while_live_is_no_panic() {
    for mode in [Mode::EveryFrame, Mode::LatestOnly] {
        let mut l = Live::new(mode);
        let (seq, _) = l.publish();
        assert_eq!(l.recv().unwrap().0, seq);
        put64(&l.file, OFF_HEAD, u64::MAX);
        // The reader looks for frames up to that head: none is there. Any
        // typed answer will do; no overflow, no out-of-bounds slot.
        match l.sub.recv_timeout(Duration::from_millis(50)) {
            Ok(f) => assert!(f.payload().len() as u64 <= MAX_FRAME),
            Err(e) => assert!(
                matches!(
                    e,
                    RecvError::Lagged(_)
                        | RecvError::Timeout
                        | RecvError::Corrupt(_)
                        | RecvError::Stale { .. }
                ),
                "{mode:?}: {e:?}"
            ),
        }
    }
}

#[test]
fn garbage_live_words_are_no_panic() {
    let mut l = Live::new(Mode::EveryFrame);
    let (seq, _) = l.publish();
    assert_eq!(l.recv().unwrap().0, seq);
    // Every live word (state, epoch, head, heartbeat, counters, futex) set to ones.
    l.file.write_all_at(&[0xff; LIVE_BYTES], 512).unwrap();
    for _ in 0..3 {
        match l.sub.recv_timeout(Duration::from_millis(20)) {
            Ok(f) => assert!(f.payload().len() as u64 <= MAX_FRAME),
            Err(e) => assert!(!matches!(e, RecvError::Refused(_)), "{e:?}"),
        }
    }
    let snap = inspect::snapshot(l.p.ring_path()).unwrap();
    assert_eq!(snap.state_name(), "invalid");
    assert_eq!((snap.published, snap.bytes_copied), (u64::MAX, u64::MAX));
    assert_eq!(snap.copied_per_frame(), 1.0);
    // The producer's counters wrap instead of overflowing.
    let (_seq, _) = l.publish();
    let (published, copied) = (
        get64(&l.file, OFF_PUBLISHED),
        get64(&l.file, OFF_BYTES_COPIED),
    );
    assert_eq!((published, copied), (0, payload(2).len() as u64 - 1));
}

// ---------------------------------------------------------------------------
// A full tmpfs at creation.

/// Unmounts a tmpfs mounted by the test, whatever happens in it.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(dir).unwrap();
    s.blocks_available() as u64 * s.fragment_size() as u64
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Checks what a failed creation must look like: `NoSpace` with the size
/// needed, a message saying what to do, and nothing half-written left.
fn assert_no_space(dir: &Path, o: &RingOptions, r: Result<Publisher, CreateError>) {
    let need = Geometry {
        slot_count: o.slots,
        max_frame_bytes: o.max_frame_bytes,
        page_size: Geometry::host_page_size(),
    }
    .layout()
    .unwrap()
    .file_bytes;
    let e = match r {
        Err(e) => e,
        Ok(_) => panic!("a {need}-byte ring was created where it cannot fit"),
    };
    match &e {
        CreateError::NoSpace { need: n, path } => {
            assert_eq!(*n, need);
            assert_eq!(path, &camux::ring::paths(dir, STREAM).0);
        }
        other => panic!("expected CreateError::NoSpace, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&need.to_string()), "{msg}");
    assert!(
        msg.contains("enlarge the tmpfs") && msg.contains("fewer/smaller slots"),
        "the message must say what to do: {msg}"
    );
    // Only the lock file: no ring, no temporary file.
    assert_eq!(entries(dir), vec![format!("{STREAM}.lock")]);
}

#[test]
fn full_tmpfs_is_a_clear_error_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    let skip = if !nix::unistd::Uid::effective().is_root() {
        Some("not root, cannot mount a tmpfs".to_owned())
    } else {
        match std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "none"])
            .arg(&mnt)
            .output()
        {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run mount: {e}")),
        }
    };
    if let Some(reason) = skip {
        eprintln!("skipped: {reason}; checking the file-size-limit path instead");
        return efbig_in_child();
    }
    let _unmount = Unmount(mnt.clone());
    let before = free_bytes(&mnt);
    assert!(before <= 1 << 20, "the 1 MiB tmpfs is mounted");

    // 8 slots of 1 MiB cannot fit in 1 MiB.
    let mut o = opts(&mnt);
    o.slots = 8;
    o.max_frame_bytes = 1 << 20;
    assert_no_space(&mnt, &o, Publisher::create(&o));
    // The pages fallocate reserved before failing are given back.
    assert_eq!(free_bytes(&mnt), before, "reserved pages released");

    // Just over the size: fails the same way.
    o.slots = 1;
    o.max_frame_bytes = before;
    assert_no_space(&mnt, &o, Publisher::create(&o));

    // A ring that fits is created, and readable.
    let small = opts(&mnt);
    let mut p = Publisher::create(&small).unwrap();
    p.publish(&FrameInfo::default(), b"fits").unwrap();
    assert_eq!(inspect::snapshot(p.ring_path()).unwrap().head, 1);
    drop(p);
}

const CHILD_ENV: &str = "CAMUX_HOSTILE_FSIZE_CHILD";
const FSIZE_LIMIT: u64 = 64 << 10;

/// Runs `ring_beyond_file_size_limit_is_no_space` in a child process of
/// this test binary (the limit applies to the whole process, and other tests
/// run in this one).
fn efbig_in_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ring_beyond_file_size_limit_is_no_space",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("1 passed"), "child ran no test: {text}");
}

#[test]
fn ring_beyond_file_size_limit_is_no_space() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return efbig_in_child();
    };
    let dir = PathBuf::from(dir);
    let lim = libc::rlimit {
        rlim_cur: FSIZE_LIMIT,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscalls with valid arguments. Ignoring SIGXFSZ makes
    // the kernel fail the over-limit fallocate with EFBIG instead of killing
    // the process; this process runs only this test.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let mut o = opts(&dir);
    o.slots = 8;
    o.max_frame_bytes = FSIZE_LIMIT;
    assert_no_space(&dir, &o, Publisher::create(&o));
    // A ring under the limit is fine.
    let small = opts(&dir);
    assert!(
        Geometry {
            slot_count: small.slots,
            max_frame_bytes: small.max_frame_bytes,
            page_size: Geometry::host_page_size()
        }
        .layout()
        .unwrap()
        .file_bytes
            <= FSIZE_LIMIT
    );
    let p = Publisher::create(&small).unwrap();
    assert!(inspect::snapshot(p.ring_path()).is_ok());
}
