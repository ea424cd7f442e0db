//! Writes the seed corpora in `fuzz/seeds/<target>/` from real rings.
//!
//! ```text
//! cd fuzz && cargo run --example gen_seeds
//! ```
//!
//! Ring seeds use 2 slots of 4096 bytes, so each file is 16 KiB. Ring ids
//! and timestamps are random, so the bytes differ on every run; commit new
//! seeds only when the format changes.

use camux::ring::socket::{encode_inspect, Hello, HelloKind, ReaderRecord, Reject, Reply, Welcome};
use camux::ring::{RingOptions, StreamFormat};
use camux::{FrameInfo, Publisher};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let work = std::env::temp_dir().join(format!("camux-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let r = generate(&out, &work);
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn opts(dir: &Path, name: &str, slots: u32, max: u64) -> RingOptions {
    let mut o = RingOptions::new(dir, name, StreamFormat::opaque(64), max);
    o.slots = slots;
    o
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)?;
    println!("{target}/{name}: {} bytes", bytes.len());
    Ok(())
}

fn generate(out: &Path, work: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // read_image: a fresh ring, a wrapped one with user metadata and a
    // full-size frame, and one copied while its producer is live.
    let ring = |name: &str| -> PathBuf { camux::ring::paths(work, name).0 };
    drop(Publisher::create(&opts(work, "empty", 2, 4096))?);
    write(
        out,
        "read_image",
        "empty.ring",
        &std::fs::read(ring("empty"))?,
    )?;

    {
        let mut p = Publisher::create(&opts(work, "wrapped", 2, 4096))?;
        for (i, len) in [10usize, 4096, 0, 777, 1].into_iter().enumerate() {
            let user = [i as u8; 16];
            let info = FrameInfo {
                driver_seq: i as u64,
                flags: camux::ring::FLAG_KEYFRAME,
                user: &user[..i * 3],
                ..FrameInfo::default()
            };
            p.publish(&info, &vec![0xa0 + i as u8; len])?;
        }
    }
    write(
        out,
        "read_image",
        "wrapped.ring",
        &std::fs::read(ring("wrapped"))?,
    )?;

    {
        let mut p = Publisher::create(&opts(work, "live", 2, 4096))?;
        p.publish(&FrameInfo::default(), b"live frame")?;
        write(
            out,
            "read_image",
            "live.ring",
            &std::fs::read(ring("live"))?,
        )?;
    }

    // header_roundtrip: the fixed header of rings of a few geometries.
    for (name, slots, max) in [
        ("small", 2, 4096),
        ("hd", 8, 1280 * 720 * 2),
        ("many", 4096, 1),
    ] {
        drop(Publisher::create(&opts(work, name, slots, max))?);
        let b = std::fs::read(ring(name))?;
        write(out, "header_roundtrip", &format!("{name}.hdr"), &b[..512])?;
        std::fs::remove_file(ring(name))?;
    }

    // wire: every message kind.
    for (name, h) in [
        (
            "hello-reader",
            Hello {
                kind: HelloKind::Reader,
                adopt: false,
                pid: 7,
                ring_id: 42,
            },
        ),
        (
            "hello-adopt",
            Hello {
                kind: HelloKind::Reader,
                adopt: true,
                pid: 7,
                ring_id: 42,
            },
        ),
        (
            "hello-inspect",
            Hello {
                kind: HelloKind::Inspect,
                adopt: false,
                pid: 1,
                ring_id: 0,
            },
        ),
    ] {
        write(out, "wire", name, &h.encode())?;
    }
    let welcome = Reply::Welcome(Welcome {
        reader_id: 3,
        hold_limit: 4,
        ring_id: 42,
        epoch: 2,
        adopted: true,
    });
    write(out, "wire", "welcome", &welcome.encode())?;
    let reject = Reply::Reject(Reject {
        code: camux::ring::socket::REJECT_FULL,
        message: "too many readers".into(),
    });
    write(out, "wire", "reject", &reject.encode())?;
    let rec = |id| ReaderRecord {
        id,
        pid: 100 + id,
        uid: 1000,
        hold_limit: 4,
        revoked: 0,
        waiting: id == 2,
        connected_ms: 1234,
        holds: vec![5, 0, 6, 0],
    };
    write(out, "wire", "inspect", &encode_inspect(&[rec(1), rec(2)]))?;
    Ok(())
}
