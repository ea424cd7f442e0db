//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! **For fuzzing only.** Each function takes arbitrary bytes, runs the code a
//! reader (or the handshake) runs on them, and checks a property; it panics
//! when the property breaks, and that panic is the fuzzer's finding. Typed
//! errors are the expected outcome for most inputs and are not findings.
//! The functions are safe to call with any input: they are also used as
//! plain tests (see the bottom of this file and `tests/hostile.rs`).

use crate::ring::inspect;
use crate::ring::layout::{
    Header, LayoutError, RawMeta, FIXED_BYTES, HEADER_BYTES, LIVE_OFFSET, MAX_HOLDS,
};
use crate::ring::mem::{MapError, RingMap};
use crate::ring::protocol::{self, Hold, RingWords};
use crate::ring::socket::{
    decode_inspect, encode_inspect, Hello, HelloKind, Reject, Reply, Welcome, MSG_BYTES,
};
use crate::sync::atomic::{AtomicU64, Ordering};
use std::fs::File;
use std::os::fd::AsRawFd;

/// Largest file [`read_image`] zero-extends a short image to.
const MAX_EXTEND: u64 = 1 << 20;

/// Most seqs [`read_image`] tries at each end of the head's range.
const MAX_SEQS: u64 = 256;

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses `data` as a header image; if it is accepted, encodes the result
/// and parses that again.
///
/// Properties: an accepted header re-encodes to the same bytes in every
/// field the parser reads (the parser accepts exactly one encoding of each
/// header), the re-encoded header parses to an equal value, its layout is
/// the one its geometry derives and lies inside the file, and a
/// `Truncated` error says it needed more than it had.
///
/// The file length passed to the parser is tried as the length the header
/// itself claims (so the fuzzer reaches accepted headers), the input's own
/// length, and two extremes.
pub fn header_roundtrip(data: &[u8]) {
    let claimed = le64(data, 16).unwrap_or(0);
    for file_len in [claimed, data.len() as u64, HEADER_BYTES, u64::MAX] {
        match Header::parse(data, file_len) {
            Ok(h) => check_header(&h, data, file_len),
            Err(LayoutError::Truncated { need, have }) => {
                assert!(need > have, "Truncated {{ need: {need}, have: {have} }}")
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

fn check_header(h: &Header, data: &[u8], file_len: u64) {
    assert!(data.len() >= FIXED_BYTES, "accepted a short header image");
    let l = h.layout;
    assert_eq!(l.file_bytes, file_len, "accepted a file of the wrong size");
    assert_eq!(
        l.geometry.layout().as_ref(),
        Ok(&l),
        "layout not derived from its geometry"
    );
    // Everything the layout names lies inside the file, in order.
    let slots = u64::from(l.geometry.slot_count);
    assert!(slots >= 1 && h.hold_limit >= 1 && h.hold_limit <= MAX_HOLDS);
    assert!(l.index_offset >= HEADER_BYTES + slots * 256);
    assert!(l.index_offset + u64::from(l.index_len) * 4 <= l.data_offset);
    assert!(l.slot_stride >= l.geometry.max_frame_bytes);
    assert_eq!(l.data_offset + slots * l.slot_stride, l.file_bytes);
    let enc = h.encode();
    // Bytes 0..168 are the numeric fields, all of which the parser reads:
    // it accepted them only if they are exactly what `encode` writes.
    assert_eq!(&enc[..168], &data[..168], "non-canonical header accepted");
    let n = h.name.len();
    assert_eq!(&enc[168..168 + n], &data[168..168 + n]);
    assert!(n < 64 && enc[168 + n] == 0);
    let again = Header::parse(&enc, file_len).expect("an encoded header parses");
    assert_eq!(&again, h, "parse(encode(h)) != h");
    assert_eq!(again.encode(), enc, "encode is not stable");
}

/// Attaches a reader to `data` as a ring file image, as
/// [`Subscriber`](crate::Subscriber) and `camux inspect` would, and reads
/// every frame the image could offer.
///
/// The image is written to a memfd and mapped read-only with the reader's
/// own code (`RingMap::open`). If it is refused as truncated but names a
/// small geometry, it is tried again zero-extended to that size, so a short
/// input describes a whole ring. For each seq in `1..=head+1` (bounded to
/// the index window at both ends when the head is huge) it runs the
/// reader's steps: hold the frame with a heap hold entry, copy and validate
/// its metadata, and for a valid frame take the payload slice.
///
/// Properties: every outcome is a typed error or a frame whose payload lies
/// inside its own slot inside the mapping; a hold entry is set exactly when
/// the frame is held; metadata round-trips through its encoding; and
/// `inspect::snapshot` of the same file agrees with the reader's header.
pub fn read_image(data: &[u8]) {
    let Some(file) = memfd(data) else { return };
    if let Err(LayoutError::Truncated { need, have }) = attach(&file, data.len() as u64) {
        if need > have && need <= MAX_EXTEND && have >= HEADER_BYTES && file.set_len(need).is_ok() {
            let _ = attach(&file, need);
        }
    }
}

fn memfd(data: &[u8]) -> Option<File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    use std::io::Write;
    let fd = memfd_create(c"camux-fuzz", MemFdCreateFlag::MFD_CLOEXEC).ok()?;
    let mut f = File::from(fd);
    f.write_all(data).ok()?;
    Some(f)
}

fn attach(file: &File, len: u64) -> Result<(), LayoutError> {
    let ring = match RingMap::open(file, false) {
        Ok(r) => r,
        Err(MapError::Layout(e)) => {
            if let LayoutError::Truncated { need, have } = e {
                assert!(
                    need > have && have == len,
                    "Truncated {{ {need}, {have} }} for {len}"
                );
            }
            return Err(e);
        }
        Err(MapError::Io(_)) => return Ok(()),
    };
    let l = *ring.layout();
    assert_eq!(
        l.file_bytes, len,
        "mapped a ring whose layout is not the file"
    );
    // The mapping's start, found from the live words at their fixed offset
    // (not from anything the header says).
    let base = (ring.live() as *const _ as usize) - LIVE_OFFSET as usize;

    let head = ring.head().load(Ordering::Acquire);
    // Every index entry twice over, at the start and at the head.
    let window = (2 * u64::from(l.index_len) + 2).min(MAX_SEQS);
    let low = 1..=head.saturating_add(1).min(window);
    let high = head.saturating_sub(window).max(window + 1)..=head.saturating_add(1);
    for seq in low.chain(high).chain([0, u64::MAX]) {
        read_one(&ring, seq, base, len);
    }
    // The lagging reader's slow path (a scan of every stamp).
    for from in [0, 1, head, head.saturating_add(1), u64::MAX] {
        if let Some(s) = protocol::oldest_from(&ring, from) {
            assert!(s >= from, "oldest_from({from}) = {s}");
        }
    }

    // The inspection path, through the same file.
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match inspect::snapshot(path.as_ref()) {
        Ok(snap) => {
            assert_eq!(snap.header, ring.header, "inspect and reader disagree");
            assert_eq!(snap.slots.len(), l.geometry.slot_count as usize);
            let _ = snap.state_name();
        }
        Err(inspect::InspectError::Io { .. }) => {}
        Err(e) => panic!("the reader accepted the file, inspect did not: {e}"),
    }
    Ok(())
}

fn read_one(ring: &RingMap, seq: u64, base: usize, file_len: u64) {
    let l = *ring.layout();
    let entry = AtomicU64::new(0);
    match protocol::try_hold(ring, &entry, seq) {
        Hold::Held(slot) => {
            assert!(
                slot < l.geometry.slot_count,
                "held slot {slot} out of range"
            );
            assert_eq!(entry.load(Ordering::Relaxed), seq, "held without a hold");
            let raw = ring.read_meta(slot);
            assert_eq!(RawMeta::decode(&raw.encode()), raw);
            if raw.validate(seq, &l).is_ok() {
                let len = raw.payload_len as usize;
                assert!(raw.payload_len <= l.geometry.max_frame_bytes);
                // SAFETY: `slot` < slot count (asserted above) and `len` <=
                // max_frame_bytes (validated); the frame is held through
                // `entry`, and nothing else maps this memfd, so no one writes
                // the slot while the slice lives.
                let p = unsafe { ring.payload(slot, len) };
                let start = p.as_ptr() as usize - base;
                let start = start as u64;
                assert!(start >= l.data_offset, "payload before the data area");
                assert_eq!(
                    start,
                    l.data_offset + u64::from(slot) * l.slot_stride,
                    "payload not at its slot"
                );
                assert!(len as u64 <= l.slot_stride, "payload longer than its slot");
                assert!(start + len as u64 <= file_len, "payload past the mapping");
                // Touch every byte: a fault here is a finding too.
                std::hint::black_box(p.iter().fold(0u8, |a, b| a ^ b));
                assert!(protocol::still_intact(ring, slot, seq));
            }
            protocol::release(&entry);
            assert_eq!(entry.load(Ordering::Relaxed), 0);
        }
        Hold::Gone | Hold::NotYet | Hold::Busy => {
            assert_eq!(entry.load(Ordering::Relaxed), 0, "hold left set");
            if let Some(slot) = protocol::bad_index(ring, seq) {
                assert!(slot >= l.geometry.slot_count, "bad_index({seq}) = {slot}");
            }
        }
    }
}

/// Decodes `data` as a reader's [`Hello`].
///
/// Properties: an accepted hello is exactly the bytes its encoding gives
/// (one encoding per message), and decoding that gives it back. Separately,
/// a hello built from the input's bytes survives encode and decode.
pub fn hello_decode(data: &[u8]) {
    if let Ok(h) = Hello::decode(data) {
        let enc = h.encode();
        assert_eq!(&enc[..], data, "non-canonical hello accepted");
        assert_eq!(Hello::decode(&enc), Ok(h));
    }
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let h = Hello {
        kind: if b(0) & 1 == 0 {
            HelloKind::Reader
        } else {
            HelloKind::Inspect
        },
        adopt: b(0) & 2 != 0,
        pid: u32::from_le_bytes([b(1), b(2), b(3), b(4)]),
        ring_id: le64(data, 5).unwrap_or(0),
    };
    assert_eq!(Hello::decode(&h.encode()), Ok(h), "hello round trip");
}

/// Decodes `data` as a producer's [`Reply`], and as an inspection reply.
///
/// Properties: decode, encode, decode gives the first decoding back (for a
/// rejection: a message of at most 48 bytes); an inspection reply
/// round-trips the same way. Separately, a reply built from the input
/// survives encode and decode, a rejection's message coming back as a
/// prefix of the original cut at a character boundary.
pub fn reply_decode(data: &[u8]) {
    if let Ok(r) = Reply::decode(data) {
        if let Reply::Reject(j) = &r {
            assert!(
                j.message.len() <= 48,
                "reject message of {}",
                j.message.len()
            );
        }
        let enc = r.encode();
        assert_eq!(Reply::decode(&enc).as_ref(), Ok(&r), "reply round trip");
    }
    if let Ok(recs) = decode_inspect(data) {
        let enc = encode_inspect(&recs);
        assert_eq!(decode_inspect(&enc), Ok(recs), "inspect reply round trip");
    }
    // Built from the input.
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let w = Welcome {
        reader_id: u32::from_le_bytes([b(1), b(2), b(3), b(4)]),
        hold_limit: u32::from(b(5)) % MAX_HOLDS + 1,
        ring_id: le64(data, 6).unwrap_or(0),
        epoch: u32::from_le_bytes([b(14), b(15), b(16), b(17)]),
        adopted: b(0) & 2 != 0,
    };
    let r = Reply::Welcome(w);
    assert_eq!(Reply::decode(&r.encode()), Ok(r), "welcome round trip");
    let message = String::from_utf8_lossy(data.get(18..).unwrap_or_default()).into_owned();
    let r = Reply::Reject(Reject {
        code: u32::from(b(0)),
        message: message.clone(),
    });
    match Reply::decode(&r.encode()) {
        Ok(Reply::Reject(back)) => {
            assert_eq!(back.code, u32::from(b(0)));
            assert!(back.message.len() <= 48);
            assert!(
                message.starts_with(&back.message),
                "reject message {:?} came back as {:?}",
                message,
                back.message
            );
            // Nothing was cut that fitted (a NUL ends the text).
            let next = message[back.message.len()..].chars().next();
            assert!(
                match next {
                    None | Some('\0') => true,
                    Some(c) => back.message.len() + c.len_utf8() > 48,
                },
                "message cut short: {:?} of {:?}",
                back.message,
                message
            );
        }
        other => panic!("reject round trip: {other:?}"),
    }
    // A message of any size is exactly MSG_BYTES on the wire.
    assert_eq!(r.encode().len(), MSG_BYTES);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ring image, made by a publisher.
    fn image() -> Vec<u8> {
        use crate::ring::{FrameInfo, Publisher, RingOptions, StreamFormat};
        let dir = tempfile::tempdir().unwrap();
        let mut o = RingOptions::new(dir.path(), "f", StreamFormat::opaque(8), 4096);
        o.slots = 2;
        let mut p = Publisher::create(&o).unwrap();
        for i in 0..3u8 {
            p.publish(&FrameInfo::default(), &[i; 100]).unwrap();
        }
        std::fs::read(p.ring_path()).unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn entry_points_accept_real_and_broken_inputs() {
        let img = image();
        read_image(&img);
        header_roundtrip(&img[..FIXED_BYTES]);
        // Short, empty, only a header (zero-extended), garbage.
        for cut in [0, 1, 100, 4096, 5000, img.len() - 1] {
            read_image(&img[..cut]);
            header_roundtrip(&img[..cut.min(FIXED_BYTES)]);
        }
        let mut bad = img.clone();
        bad[512 + 16..512 + 24].fill(0xff); // head = u64::MAX
        read_image(&bad);
        for x in [0u8, 0xff, 0x41] {
            hello_decode(&[x; 64]);
            reply_decode(&[x; 64]);
        }
        let h = Hello {
            kind: HelloKind::Reader,
            adopt: true,
            pid: 1,
            ring_id: 2,
        };
        hello_decode(&h.encode());
    }

    #[test]
    fn reject_messages_are_cut_at_a_character_boundary() {
        // 47 ASCII bytes and a 2-byte character: 49 bytes, cut to 47.
        let mut data = vec![0u8; 18];
        data.extend([b'a'; 47]);
        data.extend("é".as_bytes());
        reply_decode(&data);
        // A reply whose message bytes are not UTF-8.
        let mut b = Reply::Reject(Reject {
            code: 1,
            message: String::new(),
        })
        .encode();
        b[MSG_BYTES - 48..].fill(0xff);
        reply_decode(&b);
        assert_eq!(
            Reply::decode(&b),
            Ok(Reply::Reject(Reject {
                code: 1,
                message: String::new()
            }))
        );
        // What the producer says when it is full comes back as it was said.
        let r = Reply::Reject(Reject {
            code: 1,
            message: "too many readers".into(),
        });
        assert_eq!(Reply::decode(&r.encode()), Ok(r));
    }
}
