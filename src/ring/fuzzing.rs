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
use crate::ring::mem::{LeaseMap, MapError, RingMap, LEASE_BYTES, LEASE_VERSION};
use crate::ring::protocol::{self, Hold, LeaseWords, RingWords};
use crate::ring::socket::{
    connect_reader, decode_inspect, encode_inspect, inspect_readers, recv_packet, HandshakeError,
    Hello, HelloKind, Reject, Reply, Welcome, MSG_BYTES, RECORD_BYTES, REJECT_FULL,
    REJECT_INTERNAL,
};
use crate::ring::{FrameInfo, Published, Publisher, RingOptions, StreamFormat};
use crate::sync::atomic::{AtomicU64, Ordering};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, sendmsg, shutdown, socket, AddressFamily, ControlMessage, MsgFlags, Shutdown,
    SockFlag, SockType, UnixAddr,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
        Hold::Held(held) => {
            let slot = held.slot();
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
                let p = ring.held_payload(&held, len);
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

// ---------------------------------------------------------------------------
// The reader/daemon socket protocol, driven by a script of client operations.

/// Clients one input may have open at once (the server's `max_readers` is
/// smaller, so `FULL` is reachable).
const SCRIPT_MAX_OPEN: usize = 8;
/// Clients one input may connect in all.
const SCRIPT_MAX_CLIENTS: usize = 16;
/// Lease pages one input keeps mapped (received, or forged and sent).
const SCRIPT_MAX_PAGES: usize = 8;
/// Operations interpreted per input.
const SCRIPT_MAX_OPS: usize = 64;
/// Descriptors one packet may carry (more than the 4 the server accepts).
const SCRIPT_MAX_SEND_FDS: usize = 8;
/// The fuzzed producer: a ring this small lets a few hostile holds fill it.
const SCRIPT_SLOTS: u32 = 4;
const SCRIPT_HOLD_LIMIT: u32 = 2;
const SCRIPT_MAX_READERS: u32 = 3;
/// Longest the server may take to do something it must do (answer a
/// packet, see an EOF, release descriptors) before that is a finding.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(5);

/// Opcodes of a [`socket_script`] (the byte modulo [`OP_COUNT`]).
const OP_CONNECT: u8 = 0;
const OP_RAW: u8 = 1;
const OP_HELLO: u8 = 2;
const OP_RECV: u8 = 3;
const OP_CLOSE: u8 = 4;
const OP_SHUTDOWN: u8 = 5;
const OP_WRITE: u8 = 6;
const OP_PUBLISH: u8 = 7;
const OP_COUNT: u8 = 8;

/// Kinds of descriptor a packet can carry (the byte modulo [`FD_COUNT`]).
const FD_PIPE_READ: u8 = 0;
const FD_PIPE_WRITE: u8 = 1;
const FD_DEV_NULL: u8 = 2;
const FD_REGULAR: u8 = 3;
const FD_RING: u8 = 4;
const FD_DIR: u8 = 5;
const FD_MEMFD: u8 = 6;
const FD_LEASE_COPY: u8 = 7;
const FD_PAGE: u8 = 8;
const FD_SOCKET: u8 = 9;
const FD_COUNT: u8 = 10;

/// Hello flags of [`OP_HELLO`].
const HELLO_INSPECT: u8 = 1;
const HELLO_ADOPT: u8 = 2;
const HELLO_RING_ID: u8 = 4;

/// Fill modes of a hold-entry write.
const FILL_CLEAR: u8 = 0;
const FILL_RECENT: u8 = 1;
const FILL_FUTURE: u8 = 2;
const FILL_ANCIENT: u8 = 3;
const FILL_MAX: u8 = 4;
const FILL_RAW: u8 = 5;
const FILL_COUNT: u8 = 6;
/// Forgery bits of a fill.
const FORGE_ID: u8 = 1;
const FORGE_REGISTERED: u8 = 2;
const FORGE_WAITING: u8 = 4;
const FORGE_REVOKED: u8 = 8;

/// Sizes of a raw memfd sent as a lease page (index: byte modulo length).
const MEMFD_SIZES: [u64; 7] = [
    LEASE_BYTES,
    0,
    1,
    LEASE_BYTES - 1,
    LEASE_BYTES + 1,
    8192,
    65536,
];
/// Seal bits of a raw memfd.
const SEAL_SHRINK: u8 = 1;
const SEAL_GROW: u8 = 2;
const SEAL_WRITE: u8 = 4;
const SEAL_FUTURE_WRITE: u8 = 8;
const SEAL_SEAL: u8 = 16;
/// Created without `MFD_ALLOW_SEALING` (no seal can be added).
const SEAL_NOT_ALLOWED: u8 = 32;

/// Runs `data` as a script of client operations against a real
/// [`Publisher`] and its real control thread (one per process, in a
/// directory on `/dev/shm`, reused across inputs; 4 slots, hold limit 2,
/// at most 3 readers).
///
/// The script is a sequence of operations (at most 64), each an opcode
/// byte and its operands (missing bytes read as 0): connect a client (at
/// most 8 open, 16 in all); send it arbitrary bytes, or a valid hello
/// (reader or inspect, adopt or not), with up to 8 descriptors of any kind
/// attached (pipe ends, `/dev/null`, a regular file, the ring file, a
/// directory, memfds of any size and seals, forged lease pages with hostile
/// contents, the pages the server handed out, client sockets); receive the
/// reply (keeping a welcomed reader's page); close or half-close a client;
/// write hostile hold entries and forged words into a page; publish frames.
///
/// The encoding (`c`: a client, `p`: a page, each modulo how many there
/// are; integers little-endian):
///
/// ```text
/// op % 8: 0 connect | 1 raw c len:u8 bytes[len] FDS | 2 hello c flags pid:u32 FDS
///         3 recv c | 4 close c | 5 shutdown c how(%3: rd, wr, both)
///         6 write p FILL | 7 publish n(%4 + 1)
/// hello flags: 1 inspect, 2 adopt, 4 the real ring id
/// FDS:  count(%9) then per fd kind(%10): 0 pipe read end | 1 pipe write end
///       2 /dev/null | 3 regular file | 4 ring file | 5 directory
///       6 memfd size(index) seals(bits) content | 7 lease copy id:u32 limit:u32 FILL
///       8 page p | 9 socket of client c
/// FILL: mask:u16 (entries set) mode(%6: 0, head-v%16-i, head+1+v%16+i, 1+i,
///       MAX-i, v) v:u64 forge(bits: 1 id:u32 limit:u32, 2 registered:u32,
///       4 waiting, 8 revoked)
/// ```
///
/// Properties (a panic is a finding): every reply decodes, carries a
/// descriptor exactly when it is a welcome, and gives the producer's hold
/// limit and ring; a packet sent is answered or the connection closed
/// within 5 s; the producer never registers more than `max_readers`, never
/// counts more holds for a reader than the hold limit, keeps every reader
/// whose welcome arrived and who has not hung up, and never overwrites a
/// frame such a reader holds; a publish either succeeds or finds every slot
/// held; at the end the control thread welcomes a fresh reader and answers
/// an inspection, and once every client is closed the registrations go
/// back to none and the process's descriptor count back to what it was
/// before the input.
///
/// The descriptor check counts `/proc/self/fd`, so it needs a process in
/// which nothing else opens or closes files meanwhile (the fuzzer's; the
/// tests run it in a child process).
pub fn socket_script(data: &[u8]) {
    let harness = SCRIPT_HARNESS.get_or_init(|| Mutex::new(ScriptHarness::new()));
    // A panic in an earlier input (a test) leaves nothing inconsistent
    // behind the lock: each input's clients are its own.
    let mut h = harness.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = open_fds();
    let mut run = ScriptRun {
        h: &mut h,
        clients: Vec::new(),
        pages: Vec::new(),
    };
    run.check_registrations();
    let mut cur = Cursor { data, at: 0 };
    for _ in 0..SCRIPT_MAX_OPS {
        if cur.at >= data.len() {
            break;
        }
        run.step(&mut cur);
        run.check_registrations();
    }
    run.finish(&baseline);
}

static SCRIPT_HARNESS: OnceLock<Mutex<ScriptHarness>> = OnceLock::new();

/// The producer under test and what the scripts need of it.
struct ScriptHarness {
    publisher: Publisher,
    /// The ring mapped read-only, as a reader maps it (for the stamps).
    ring: RingMap,
    dir: PathBuf,
    sock: PathBuf,
    ring_path: PathBuf,
    /// A regular file to send as a lease page.
    regular: PathBuf,
}

impl ScriptHarness {
    fn new() -> ScriptHarness {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale_dirs(&base);
        let dir = base.join(format!("{SCRIPT_DIR_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the fuzz directory");
        let regular = dir.join("regular");
        std::fs::write(&regular, [0u8; LEASE_BYTES as usize]).expect("write a regular file");
        let mut o = RingOptions::new(&dir, "s", StreamFormat::opaque(64), 64);
        o.slots = SCRIPT_SLOTS;
        o.hold_limit = SCRIPT_HOLD_LIMIT;
        o.max_readers = SCRIPT_MAX_READERS;
        // Never revoked within an input: every hold blocks claims.
        o.hold_timeout = Duration::from_secs(3600);
        let publisher = Publisher::create(&o).expect("create the fuzzed publisher");
        let ring_path = publisher.ring_path().to_path_buf();
        let ring = RingMap::open(&File::open(&ring_path).expect("open the ring"), false)
            .expect("map the ring");
        let (_, sock, _) = crate::ring::paths(&dir, "s");
        ScriptHarness {
            publisher,
            ring,
            dir,
            sock,
            ring_path,
            regular,
        }
    }
}

/// Directories of the harness are `<base>/camux-fuzz-socket-<pid>`.
const SCRIPT_DIR_PREFIX: &str = "camux-fuzz-socket-";

/// Removes the directories earlier fuzzing processes left (a fuzzer exits
/// without running destructors): those whose process is gone.
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRIPT_DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The process's open descriptors and what they are.
fn open_fds() -> BTreeMap<i32, String> {
    let mut fds = BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .flatten()
    {
        if let Some(fd) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
            let what = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            fds.insert(fd, what);
        }
    }
    fds
}

/// The input, read front to back; past its end every byte is 0.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let start = self.at.min(self.data.len());
        let end = self.at.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        self.data[start..end].to_vec()
    }
}

/// One client connection of a script.
struct Client {
    /// `None` once the script closed it.
    sock: Option<OwnedFd>,
    /// Packets sent successfully.
    sent: u32,
    /// The script shut the connection down (either direction).
    shut: bool,
    /// ... its writing side (the server sees an EOF).
    shut_write: bool,
    /// The server owes this client a reply or an EOF (it sent a packet or
    /// shut its writing side down, and no EOF has arrived yet).
    owed: bool,
    /// An EOF (or a reset) arrived.
    eof: bool,
    /// Kind of the hello (the first packet), if it was one, and whether it
    /// announced adoption.
    hello: Option<(HelloKind, bool)>,
    /// A welcome arrived.
    welcomed: bool,
    /// The page the welcome carried, if it is kept mapped.
    page: Option<usize>,
}

impl Client {
    /// The server still has this reader registered, and must keep it: its
    /// welcome arrived (so the registration was handed to the publisher
    /// before), it sent nothing but its hello, and it has not hung up.
    fn registered(&self) -> bool {
        self.welcomed && self.sock.is_some() && self.sent == 1 && !self.shut
    }
}

struct ScriptRun<'a> {
    h: &'a mut ScriptHarness,
    clients: Vec<Client>,
    pages: Vec<LeaseMap>,
}

impl ScriptRun<'_> {
    fn step(&mut self, cur: &mut Cursor<'_>) {
        match cur.u8() % OP_COUNT {
            OP_CONNECT => self.connect(),
            OP_RAW => {
                let c = cur.u8();
                let len = usize::from(cur.u8());
                let bytes = cur.bytes(len);
                let fds = self.make_fds(cur);
                self.send(c, &bytes, fds);
            }
            OP_HELLO => {
                let c = cur.u8();
                let flags = cur.u8();
                let pid = cur.u32();
                let kind = if flags & HELLO_INSPECT != 0 {
                    HelloKind::Inspect
                } else {
                    HelloKind::Reader
                };
                let adopt = flags & HELLO_ADOPT != 0;
                let hello = Hello {
                    kind,
                    adopt,
                    pid,
                    ring_id: if flags & HELLO_RING_ID != 0 {
                        self.h.ring.header.ring_id
                    } else {
                        0
                    },
                };
                let fds = self.make_fds(cur);
                self.send(c, &hello.encode(), fds);
            }
            OP_RECV => {
                let c = cur.u8();
                self.recv(c);
            }
            OP_CLOSE => {
                if let Some(cl) = self.client(cur.u8()) {
                    cl.sock = None;
                }
            }
            OP_SHUTDOWN => {
                let (c, how) = (cur.u8(), cur.u8());
                if let Some(cl) = self.client(c) {
                    let Some(sock) = &cl.sock else { return };
                    let how = match how % 3 {
                        0 => Shutdown::Read,
                        1 => Shutdown::Write,
                        _ => Shutdown::Both,
                    };
                    if shutdown(sock.as_raw_fd(), how).is_ok() {
                        cl.shut = true;
                        if how != Shutdown::Read {
                            cl.shut_write = true;
                            cl.owed |= !cl.eof;
                        }
                    }
                }
            }
            OP_WRITE => {
                let p = usize::from(cur.u8());
                let fill = PageFill::read(cur);
                if !self.pages.is_empty() {
                    fill.apply(&self.pages[p % self.pages.len()], self.head());
                }
            }
            OP_PUBLISH => {
                let n = 1 + cur.u8() % 4;
                for _ in 0..n {
                    self.publish();
                }
            }
            _ => unreachable!("opcode modulo OP_COUNT"),
        }
    }

    /// The `c`th client (modulo their number), if any.
    fn client(&mut self, c: u8) -> Option<&mut Client> {
        let n = self.clients.len();
        (n > 0).then(|| &mut self.clients[usize::from(c) % n])
    }

    fn head(&self) -> u64 {
        self.h.publisher.next_seq().saturating_sub(1)
    }

    fn connect(&mut self) {
        let open = self.clients.iter().filter(|c| c.sock.is_some()).count();
        if open >= SCRIPT_MAX_OPEN || self.clients.len() >= SCRIPT_MAX_CLIENTS {
            return;
        }
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .expect("a client socket");
        let addr = UnixAddr::new(&self.h.sock).expect("socket address");
        // Non-blocking: a full backlog fails at once (EAGAIN) and the
        // client is not made.
        if connect(sock.as_raw_fd(), &addr).is_ok() {
            self.clients.push(Client {
                sock: Some(sock),
                sent: 0,
                shut: false,
                shut_write: false,
                owed: false,
                eof: false,
                hello: None,
                welcomed: false,
                page: None,
            });
        }
    }

    /// Makes the descriptors an operation attaches (operands: a count,
    /// then a kind and its operands per descriptor).
    fn make_fds(&mut self, cur: &mut Cursor<'_>) -> Vec<OwnedFd> {
        let n = usize::from(cur.u8()) % (SCRIPT_MAX_SEND_FDS + 1);
        (0..n).filter_map(|_| self.make_fd(cur)).collect()
    }

    fn make_fd(&mut self, cur: &mut Cursor<'_>) -> Option<OwnedFd> {
        match cur.u8() % FD_COUNT {
            FD_PIPE_READ => nix::unistd::pipe().ok().map(|(r, _w)| r),
            FD_PIPE_WRITE => nix::unistd::pipe().ok().map(|(_r, w)| w),
            FD_DEV_NULL => File::open("/dev/null").ok().map(OwnedFd::from),
            FD_REGULAR => File::open(&self.h.regular).ok().map(OwnedFd::from),
            FD_RING => File::open(&self.h.ring_path).ok().map(OwnedFd::from),
            FD_DIR => File::open(&self.h.dir).ok().map(OwnedFd::from),
            FD_MEMFD => {
                let (size, seals, content) = (cur.u8(), cur.u8(), cur.u8());
                raw_memfd(size, seals, content)
            }
            FD_LEASE_COPY => {
                // A real lease page (valid magic, sealed), with whatever a
                // hostile reader could put in it.
                let (id, limit) = (cur.u32(), cur.u32());
                let page = LeaseMap::create(id, limit).expect("create a lease page");
                PageFill::read(cur).apply(&page, self.head());
                let fd = page.fd().try_clone_to_owned().ok();
                if self.pages.len() < SCRIPT_MAX_PAGES {
                    self.pages.push(page);
                }
                fd
            }
            FD_PAGE => {
                let p = usize::from(cur.u8());
                let n = self.pages.len();
                (n > 0)
                    .then(|| self.pages[p % n].fd().try_clone_to_owned().ok())
                    .flatten()
            }
            FD_SOCKET => {
                let c = cur.u8();
                self.client(c)?.sock.as_ref()?.try_clone().ok()
            }
            _ => unreachable!("kind modulo FD_COUNT"),
        }
    }

    /// Sends one packet on client `c` (if it is open). The descriptors are
    /// closed on our side afterwards, sent or not.
    fn send(&mut self, c: u8, bytes: &[u8], fds: Vec<OwnedFd>) {
        let Some(cl) = self.client(c) else { return };
        let Some(sock) = &cl.sock else { return };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let sent = sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            if raw.is_empty() { &[] } else { &cmsg },
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        );
        if sent.is_ok() {
            // The server reads the first packet as the hello, whichever
            // operation made it.
            if cl.sent == 0 {
                cl.hello = Hello::decode(bytes).ok().map(|h| (h.kind, h.adopt));
            }
            cl.sent += 1;
            cl.owed |= !cl.eof;
        }
        drop(fds);
    }

    /// Receives what client `c` was sent: waits for it (up to the
    /// deadline) if the server owes the client something, else only looks.
    fn recv(&mut self, c: u8) {
        let ring_id = self.h.ring.header.ring_id;
        let n = self.clients.len();
        if n == 0 {
            return;
        }
        let ci = usize::from(c) % n;
        let cl = &mut self.clients[ci];
        let Some(sock) = &cl.sock else { return };
        if cl.eof {
            return;
        }
        let wait = if cl.owed {
            SCRIPT_DEADLINE
        } else {
            Duration::ZERO
        };
        let until = std::time::Instant::now() + wait;
        let ready = loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let mut pfd = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            match poll(
                &mut pfd,
                PollTimeout::try_from(left.as_millis() as i32).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) => break n > 0,
                // The fuzzer's timer signal (SIGALRM) interrupts waits.
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll: {e}"),
            }
        };
        if !ready {
            assert!(
                !cl.owed,
                "client {ci} sent {} packet(s) (shut down: {}) and got neither a reply \
                 nor an EOF within {SCRIPT_DEADLINE:?}",
                cl.sent, cl.shut
            );
            return;
        }
        let mut buf = vec![0u8; MSG_BYTES + RECORD_BYTES * 1024];
        let (len, flags, fds) = match recv_packet(sock.as_fd(), &mut buf) {
            Ok(p) => (p.len, p.flags, p.fds),
            Err(nix::errno::Errno::EAGAIN) => return,
            // `cmsgs` refuses truncated control data; room was made for
            // every descriptor one message can carry.
            Err(nix::errno::Errno::ENOBUFS) => panic!("client {ci}: control data truncated"),
            Err(_) => (0, MsgFlags::empty(), Vec::new()), // a reset: as an EOF
        };
        assert!(
            !flags.contains(MsgFlags::MSG_TRUNC),
            "client {ci}: a reply longer than any reply"
        );
        if len == 0 && fds.is_empty() {
            cl.eof = true;
            cl.owed = false;
            return;
        }
        let b = &buf[..len];
        match Reply::decode(b) {
            Ok(Reply::Welcome(w)) => {
                let Some((HelloKind::Reader, adopt)) = cl.hello else {
                    panic!("client {ci}: a welcome for {:?}", cl.hello)
                };
                assert_eq!(fds.len(), 1, "client {ci}: a welcome carries one page");
                assert!(w.reader_id != 0, "client {ci}: welcomed as reader 0");
                assert_eq!(w.hold_limit, SCRIPT_HOLD_LIMIT, "client {ci}: hold limit");
                assert_eq!(w.ring_id, ring_id, "client {ci}: ring id");
                assert!(
                    !w.adopted || adopt,
                    "client {ci}: adopted a page never sent"
                );
                assert!(!cl.welcomed, "client {ci}: welcomed twice");
                cl.welcomed = true;
                // The reader's own check of the page it was given.
                let fd = fds.into_iter().next().expect("one descriptor");
                let page = LeaseMap::adopt(fd)
                    .unwrap_or_else(|e| panic!("client {ci}: the welcome's page: {e}"));
                // The server closes the connection unless the hello was the
                // only packet (it then waits for the reader to hang up).
                cl.owed = cl.sent > 1 || cl.shut_write;
                if self.pages.len() < SCRIPT_MAX_PAGES {
                    self.pages.push(page);
                    cl.page = Some(self.pages.len() - 1);
                }
            }
            Ok(Reply::Reject(r)) => {
                assert!(fds.is_empty(), "client {ci}: a rejection with descriptors");
                assert!(
                    (REJECT_FULL..=REJECT_INTERNAL).contains(&r.code),
                    "client {ci}: rejection code {}",
                    r.code
                );
                // FULL only for a reader hello (inspection is never full).
                if r.code == REJECT_FULL {
                    assert!(
                        matches!(cl.hello, Some((HelloKind::Reader, _))),
                        "client {ci}: FULL for {:?}",
                        cl.hello
                    );
                }
            }
            Err(_) => {
                let records = decode_inspect(b).unwrap_or_else(|e| {
                    panic!("client {ci}: an undecodable reply ({e}): {b:02x?}")
                });
                assert!(
                    fds.is_empty(),
                    "client {ci}: an inspection with descriptors"
                );
                assert!(
                    matches!(cl.hello, Some((HelloKind::Inspect, _))),
                    "client {ci}: an inspection reply for {:?}",
                    cl.hello
                );
                check_records(&records);
            }
        }
    }

    /// Properties of the producer's registrations, at any time.
    fn check_registrations(&mut self) {
        let p = &mut self.h.publisher;
        let n = p.poll_readers();
        assert!(
            n <= SCRIPT_MAX_READERS,
            "{n} readers registered, max_readers is {SCRIPT_MAX_READERS}"
        );
        let info = p.readers_info();
        assert_eq!(info.len(), n as usize);
        let mut sum = 0;
        for r in &info {
            assert_eq!(r.hold_limit, SCRIPT_HOLD_LIMIT, "reader {}", r.id);
            assert!(
                r.holds <= r.hold_limit,
                "reader {} holds {} frames, its limit is {}",
                r.id,
                r.holds,
                r.hold_limit
            );
            sum += r.holds;
        }
        assert_eq!(p.holds().0, sum, "holds() disagrees with readers_info()");
        let mut ids: Vec<u32> = info.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), info.len(), "two registrations with one id");
        let kept = self.clients.iter().filter(|c| c.registered()).count();
        assert!(
            kept <= info.len(),
            "{kept} welcomed readers are still connected, {} registered",
            info.len()
        );
    }

    /// The frames registered readers hold, as (slot, seq): each hold entry
    /// the producer honours that names the frame in a slot.
    fn held_frames(&self) -> Vec<(u32, u64)> {
        let held: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.registered())
            .filter_map(|c| c.page)
            .flat_map(|p| {
                self.pages[p].holds()[..SCRIPT_HOLD_LIMIT as usize]
                    .iter()
                    .map(|h| h.load(Ordering::Relaxed))
            })
            .filter(|&v| v != 0)
            .collect();
        (0..SCRIPT_SLOTS)
            .filter_map(|s| {
                let seq = protocol::published_seq(self.h.ring.stamp(s).load(Ordering::Acquire))?;
                held.contains(&seq).then_some((s, seq))
            })
            .collect()
    }

    fn publish(&mut self) {
        let held = self.held_frames();
        let next = self.h.publisher.next_seq();
        let revoked = self.h.publisher.stats().revoked;
        match self
            .h
            .publisher
            .publish(&FrameInfo::default(), &next.to_le_bytes())
        {
            Ok(Published::Seq(s)) => assert_eq!(s, next, "published out of sequence"),
            Ok(Published::Dropped) => {
                // Every slot held: each by a distinct hold entry.
                let holds: u32 = self
                    .h
                    .publisher
                    .readers_info()
                    .iter()
                    .map(|r| r.holds)
                    .sum();
                assert!(
                    holds >= SCRIPT_SLOTS,
                    "frame dropped with {holds} holds on {SCRIPT_SLOTS} slots"
                );
            }
            Err(e) => panic!("publish failed: {e}"),
        }
        if self.h.publisher.stats().revoked == revoked {
            for (slot, seq) in held {
                let now = self.h.ring.stamp(slot).load(Ordering::Acquire);
                assert_eq!(
                    protocol::published_seq(now),
                    Some(seq),
                    "frame {seq} in slot {slot}, held by a registered reader, was overwritten"
                );
            }
        }
        self.check_registrations();
    }

    /// Closes every client and page of the input, checks the server still
    /// serves, and waits for it to let go of everything.
    fn finish(mut self, baseline: &BTreeMap<i32, String>) {
        self.clients.clear();
        self.pages.clear();
        let deadline = std::time::Instant::now() + SCRIPT_DEADLINE;
        // A fresh reader is welcomed (once the input's registrations, some
        // still in flight, are gone: FULL until then).
        let probe = loop {
            match connect_reader(&self.h.sock, None, 0, SCRIPT_DEADLINE) {
                Ok(x) => break x,
                Err(e) if interrupted(&e) && std::time::Instant::now() < deadline => {}
                Err(HandshakeError::Rejected { code, .. })
                    if code == REJECT_FULL && std::time::Instant::now() < deadline =>
                {
                    self.h.publisher.poll_readers();
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("the control thread does not welcome a fresh reader: {e}"),
            }
        };
        let (sock, welcome, lease) = probe;
        assert!(lease.is_some() && !welcome.adopted, "a fresh reader's page");
        let inspected = loop {
            match inspect_readers(&self.h.sock, SCRIPT_DEADLINE) {
                Err(e) if interrupted(&e) && std::time::Instant::now() < deadline => {}
                r => break r,
            }
        };
        match inspected {
            Ok(records) => {
                check_records(&records);
                assert!(
                    records.iter().any(|r| r.id == welcome.reader_id),
                    "the inspection does not list reader {}",
                    welcome.reader_id
                );
            }
            Err(e) => panic!("the control thread does not answer an inspection: {e}"),
        }
        drop((sock, lease));
        // Every connection of the input was accepted before the probe was
        // (accept is in order), and all are closed: the server sees their
        // EOFs, and must close what it holds.
        loop {
            let readers = self.h.publisher.poll_readers();
            let now = open_fds();
            if readers == 0 && now.len() == baseline.len() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let extra: Vec<_> = now
                    .iter()
                    .filter(|(fd, _)| !baseline.contains_key(fd))
                    .collect();
                panic!(
                    "{SCRIPT_DEADLINE:?} after every client closed: {readers} reader(s) still \
                     registered, {} descriptors open instead of {}; new ones: {extra:?}",
                    now.len(),
                    baseline.len()
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The client's wait for a reply was cut by a signal (the fuzzer's timer):
/// not the server's doing, so the client asks again.
fn interrupted(e: &HandshakeError) -> bool {
    matches!(e, HandshakeError::Io(e) if e.kind() == std::io::ErrorKind::Interrupted)
}

/// An inspection reply's records, checked against the producer's limits.
fn check_records(records: &[crate::ring::socket::ReaderRecord]) {
    assert!(
        records.len() <= SCRIPT_MAX_READERS as usize,
        "inspection lists {} readers",
        records.len()
    );
    for r in records {
        assert!(r.id != 0, "inspection lists reader 0");
        assert_eq!(r.hold_limit, SCRIPT_HOLD_LIMIT, "inspected hold limit");
        assert_eq!(r.holds.len(), SCRIPT_HOLD_LIMIT as usize, "inspected holds");
    }
}

/// Hold entries and forged words to write into a lease page (operands:
/// entry mask, fill mode, a value, forgery bits and their values).
struct PageFill {
    mask: u16,
    mode: u8,
    value: u64,
    forge: u8,
    id: u32,
    limit: u32,
    registered: u32,
}

impl PageFill {
    fn read(cur: &mut Cursor<'_>) -> PageFill {
        let (mask, mode, value, forge) = (cur.u16(), cur.u8() % FILL_COUNT, cur.u64(), cur.u8());
        let (id, limit) = if forge & FORGE_ID != 0 {
            (cur.u32(), cur.u32())
        } else {
            (0, 0)
        };
        let registered = if forge & FORGE_REGISTERED != 0 {
            cur.u32()
        } else {
            0
        };
        PageFill {
            mask,
            mode,
            value,
            forge,
            id,
            limit,
            registered,
        }
    }

    /// Writes into `page`, with seqs relative to the producer's `head`.
    fn apply(&self, page: &LeaseMap, head: u64) {
        let small = self.value % 16;
        for (i, h) in page.holds().iter().enumerate().take(MAX_HOLDS as usize) {
            if self.mask & (1 << i) == 0 {
                continue;
            }
            let i = i as u64;
            let v = match self.mode {
                FILL_CLEAR => 0,
                FILL_RECENT => head.saturating_sub(small + i),
                FILL_FUTURE => head.saturating_add(1 + small + i),
                FILL_ANCIENT => 1 + i,
                FILL_MAX => u64::MAX - i,
                FILL_RAW => self.value,
                _ => unreachable!("mode modulo FILL_COUNT"),
            };
            h.store(v, Ordering::Release);
        }
        if self.forge & FORGE_ID != 0 {
            page.set_reader_id(self.id, self.limit);
        }
        if self.forge & FORGE_REGISTERED != 0 {
            page.mark_registered(self.registered);
        }
        if self.forge & FORGE_WAITING != 0 {
            page.waiting().store(1, Ordering::Relaxed);
        }
        if self.forge & FORGE_REVOKED != 0 {
            page.revoked().store(u32::MAX, Ordering::Relaxed);
        }
    }
}

/// A memfd of one of [`MEMFD_SIZES`], with the seals `seals` asks for and
/// content `content` (0: zeros; 1: a lease page's magic, version and a good
/// words offset; 2: the magic and the older version 1; 3: the magic and
/// version with a words offset past the room for the block; else that byte
/// everywhere).
fn raw_memfd(size: u8, seals: u8, content: u8) -> Option<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    use std::os::unix::fs::FileExt;
    let mut flags = MemFdCreateFlag::MFD_CLOEXEC;
    if seals & SEAL_NOT_ALLOWED == 0 {
        flags |= MemFdCreateFlag::MFD_ALLOW_SEALING;
    }
    let file = File::from(memfd_create(c"camux-fuzz-lease", flags).ok()?);
    let size = MEMFD_SIZES[usize::from(size) % MEMFD_SIZES.len()];
    file.set_len(size).ok()?;
    let mut head = [0u8; 28];
    head[..8].copy_from_slice(b"CAMUXLSE");
    let (version, words_offset) = match content {
        1 => (LEASE_VERSION, 64),
        2 => (1, 64),
        _ => (LEASE_VERSION, 4000),
    };
    head[8..12].copy_from_slice(&version.to_le_bytes());
    head[24..28].copy_from_slice(&u32::to_le_bytes(words_offset));
    let bytes = match content {
        0 => Vec::new(),
        1..=3 => head.to_vec(),
        b => vec![b; 256],
    };
    if bytes.len() as u64 <= size {
        file.write_all_at(&bytes, 0).ok()?;
    }
    let mut add = SealFlag::empty();
    for (bit, seal) in [
        (SEAL_SHRINK, SealFlag::F_SEAL_SHRINK),
        (SEAL_GROW, SealFlag::F_SEAL_GROW),
        (SEAL_WRITE, SealFlag::F_SEAL_WRITE),
        (SEAL_FUTURE_WRITE, SealFlag::F_SEAL_FUTURE_WRITE),
        (SEAL_SEAL, SealFlag::F_SEAL_SEAL),
    ] {
        if seals & bit != 0 {
            add |= seal;
        }
    }
    // Refused seals (no MFD_ALLOW_SEALING, an old kernel) leave it unsealed.
    let _ = fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(add));
    Some(OwnedFd::from(file))
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
    /// A [`socket_script`] input, built operation by operation.
    #[derive(Default)]
    struct Script(Vec<u8>);

    /// A descriptor a script attaches to a packet.
    #[derive(Clone, Copy)]
    enum Fd {
        PipeRead,
        PipeWrite,
        DevNull,
        Regular,
        Ring,
        Dir,
        Memfd { size: u8, seals: u8, content: u8 },
        LeaseCopy { id: u32, limit: u32, fill: Fill },
        Page(u8),
        Socket(u8),
    }

    /// Hold entries and forged words written into a lease page.
    #[derive(Clone, Copy)]
    struct Fill {
        mask: u16,
        mode: u8,
        value: u64,
        /// Forged reader id and hold limit.
        id: Option<(u32, u32)>,
        /// Forged `registered` mark.
        registered: Option<u32>,
        waiting: bool,
        revoked: bool,
    }

    impl Fill {
        fn holds(mask: u16, mode: u8, value: u64) -> Fill {
            Fill {
                mask,
                mode,
                value,
                id: None,
                registered: None,
                waiting: false,
                revoked: false,
            }
        }
    }

    /// Every kind of descriptor a script can send.
    const EVERY_FD: [Fd; 10] = [
        Fd::PipeRead,
        Fd::PipeWrite,
        Fd::DevNull,
        Fd::Regular,
        Fd::Ring,
        Fd::Dir,
        Fd::Memfd {
            size: 0,
            seals: SEAL_SHRINK | SEAL_GROW,
            content: 1,
        },
        Fd::LeaseCopy {
            id: 7,
            limit: 16,
            fill: Fill {
                mask: u16::MAX,
                mode: FILL_RECENT,
                value: 0,
                id: Some((99, u32::MAX)),
                registered: Some(99),
                waiting: true,
                revoked: true,
            },
        },
        Fd::Page(0),
        Fd::Socket(0),
    ];

    impl Script {
        fn op(mut self, op: u8, operands: &[u8]) -> Script {
            self.0.push(op);
            self.0.extend_from_slice(operands);
            self
        }
        fn fds(mut self, fds: &[Fd]) -> Script {
            self.0.push(fds.len() as u8);
            for fd in fds {
                self = match *fd {
                    Fd::PipeRead => self.op(FD_PIPE_READ, &[]),
                    Fd::PipeWrite => self.op(FD_PIPE_WRITE, &[]),
                    Fd::DevNull => self.op(FD_DEV_NULL, &[]),
                    Fd::Regular => self.op(FD_REGULAR, &[]),
                    Fd::Ring => self.op(FD_RING, &[]),
                    Fd::Dir => self.op(FD_DIR, &[]),
                    Fd::Memfd {
                        size,
                        seals,
                        content,
                    } => self.op(FD_MEMFD, &[size, seals, content]),
                    Fd::LeaseCopy { id, limit, fill } => {
                        let mut b = id.to_le_bytes().to_vec();
                        b.extend(limit.to_le_bytes());
                        self.op(FD_LEASE_COPY, &b).fill(fill)
                    }
                    Fd::Page(p) => self.op(FD_PAGE, &[p]),
                    Fd::Socket(c) => self.op(FD_SOCKET, &[c]),
                };
            }
            self
        }
        fn fill(mut self, f: Fill) -> Script {
            self.0.extend(f.mask.to_le_bytes());
            self.0.push(f.mode);
            self.0.extend(f.value.to_le_bytes());
            let forge = if f.id.is_some() { FORGE_ID } else { 0 }
                | if f.registered.is_some() {
                    FORGE_REGISTERED
                } else {
                    0
                }
                | if f.waiting { FORGE_WAITING } else { 0 }
                | if f.revoked { FORGE_REVOKED } else { 0 };
            self.0.push(forge);
            if let Some((id, limit)) = f.id {
                self.0.extend(id.to_le_bytes());
                self.0.extend(limit.to_le_bytes());
            }
            if let Some(r) = f.registered {
                self.0.extend(r.to_le_bytes());
            }
            self
        }
        fn connect(self) -> Script {
            self.op(OP_CONNECT, &[])
        }
        fn raw(self, c: u8, bytes: &[u8], fds: &[Fd]) -> Script {
            let mut b = vec![c, bytes.len() as u8];
            b.extend_from_slice(bytes);
            self.op(OP_RAW, &b).fds(fds)
        }
        fn hello(self, c: u8, flags: u8, fds: &[Fd]) -> Script {
            let mut b = vec![c, flags];
            b.extend(4242u32.to_le_bytes());
            self.op(OP_HELLO, &b).fds(fds)
        }
        fn recv(self, c: u8) -> Script {
            self.op(OP_RECV, &[c])
        }
        fn close(self, c: u8) -> Script {
            self.op(OP_CLOSE, &[c])
        }
        fn shutdown(self, c: u8, how: u8) -> Script {
            self.op(OP_SHUTDOWN, &[c, how])
        }
        fn write(self, page: u8, fill: Fill) -> Script {
            self.op(OP_WRITE, &[page]).fill(fill)
        }
        fn publish(self, n: u8) -> Script {
            self.op(OP_PUBLISH, &[n - 1])
        }
    }

    /// The committed seeds of the `socket` fuzz target
    /// (`fuzz/seeds/socket/<name>`).
    fn socket_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let hello = Hello {
            kind: HelloKind::Reader,
            adopt: false,
            pid: 1,
            ring_id: 0,
        }
        .encode();
        let reader = Script::default()
            .connect()
            .hello(0, HELLO_RING_ID, &[])
            .recv(0)
            .publish(2)
            // Hold the two newest frames, then publish over them.
            .write(0, Fill::holds(0b11, FILL_RECENT, 0))
            .publish(4)
            .connect()
            .hello(1, HELLO_INSPECT, &[])
            .recv(1)
            .recv(1)
            .close(0)
            .publish(1);
        let inspect = Script::default()
            .connect()
            .hello(0, HELLO_INSPECT, &[])
            .recv(0)
            .recv(0)
            // Inspection with a descriptor: PROTOCOL.
            .connect()
            .hello(1, HELLO_INSPECT, &[Fd::DevNull])
            .recv(1);
        let adopt = Script::default()
            .connect()
            .hello(0, 0, &[])
            .recv(0)
            .publish(2)
            .write(0, Fill::holds(0b1, FILL_RECENT, 1))
            // A second reader brings the first one's page (page 0) back.
            .connect()
            .hello(1, HELLO_ADOPT, &[Fd::Page(0)])
            .recv(1)
            .publish(3)
            .close(0)
            .publish(3)
            // A reader returning with an old page full of holds.
            .connect()
            .hello(
                2,
                HELLO_ADOPT | HELLO_RING_ID,
                &[Fd::LeaseCopy {
                    id: 1,
                    limit: SCRIPT_HOLD_LIMIT,
                    fill: Fill::holds(0b11, FILL_RECENT, 2),
                }],
            )
            .recv(2)
            .publish(4);
        let garbage = Script::default()
            .connect()
            .raw(0, b"GET / HTTP/1.1\r\n\r\n", &[])
            .recv(0)
            .recv(0)
            .connect()
            .raw(1, &[0xa5; 200], &[Fd::PipeRead, Fd::PipeWrite])
            .recv(1)
            .connect()
            .raw(2, &[], &[Fd::Regular])
            .recv(2)
            .connect()
            .raw(3, &hello, &[Fd::Ring, Fd::Dir, Fd::Socket(3)])
            .recv(3)
            // A hello, then talk after the welcome; half-closes.
            .connect()
            .raw(4, &hello, &[])
            .raw(4, b"more", &[])
            .recv(4)
            .recv(4)
            .connect()
            .shutdown(5, 1)
            .recv(5)
            .connect()
            .hello(6, 0, &[])
            .shutdown(6, 0)
            .recv(6)
            .connect()
            .hello(7, 0, &[])
            .recv(7)
            .shutdown(7, 2)
            .publish(2);
        let mut hostile = Script::default()
            .connect()
            .hello(0, 0, &[])
            .recv(0)
            .connect()
            .hello(1, 0, &[])
            .recv(1)
            .publish(4)
            // Every entry set, and the words the producer must not trust.
            .write(
                0,
                Fill {
                    id: Some((0, 0)),
                    registered: Some(u32::MAX),
                    waiting: true,
                    revoked: true,
                    ..Fill::holds(u16::MAX, FILL_RECENT, 0)
                },
            )
            .write(1, Fill::holds(u16::MAX, FILL_RECENT, 2))
            // All four slots held: the next frames are dropped.
            .publish(3)
            .write(1, Fill::holds(u16::MAX, FILL_FUTURE, 0))
            .publish(2)
            .write(0, Fill::holds(u16::MAX, FILL_MAX, 0))
            .write(1, Fill::holds(u16::MAX, FILL_ANCIENT, 0))
            .publish(2);
        // Lease pages that are not: wrong sizes, missing seals, no magic.
        for (c, fd) in [
            Fd::Memfd {
                size: 0,
                seals: SEAL_SHRINK | SEAL_GROW | SEAL_SEAL,
                content: 1,
            },
            Fd::Memfd {
                size: 0,
                seals: SEAL_SHRINK,
                content: 1,
            },
            Fd::Memfd {
                size: 3,
                seals: SEAL_SHRINK | SEAL_GROW,
                content: 1,
            },
            Fd::Memfd {
                size: 0,
                seals: SEAL_SHRINK | SEAL_GROW | SEAL_WRITE,
                content: 1,
            },
            Fd::Memfd {
                size: 0,
                seals: SEAL_SHRINK | SEAL_GROW,
                content: 2,
            },
            Fd::Memfd {
                size: 0,
                seals: SEAL_NOT_ALLOWED,
                content: 1,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let c = c as u8 + 2;
            hostile = hostile
                .connect()
                .hello(c, HELLO_ADOPT, &[fd])
                .recv(c)
                .close(c);
        }
        // A third and a fourth reader: FULL for the fourth.
        hostile = hostile
            .connect()
            .hello(8, HELLO_ADOPT, &[EVERY_FD[7]])
            .recv(8)
            .connect()
            .hello(9, 0, &[])
            .recv(9)
            .publish(4);
        vec![
            ("reader", reader.0),
            ("inspect", inspect.0),
            ("adopt", adopt.0),
            ("garbage", garbage.0),
            ("hostile_page", hostile.0),
        ]
    }

    const SCRIPT_CHILD_ENV: &str = "CAMUX_SOCKET_SCRIPT_CHILD";

    /// Removes the harness's directory when the test in the child ends
    /// (the publisher lives until the process exits).
    struct RemoveHarnessDir;

    impl Drop for RemoveHarnessDir {
        fn drop(&mut self) {
            if let Some(h) = SCRIPT_HARNESS.get() {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                let _ = std::fs::remove_dir_all(&h.dir);
            }
        }
    }

    /// Runs test `name` of this module alone in a child process of this
    /// test binary (the descriptor check counts the whole process's
    /// descriptors, and other tests run in this one) and returns `None`; in
    /// that child, returns a guard that cleans up after the test's body.
    fn in_child(name: &str) -> Option<RemoveHarnessDir> {
        if std::env::var_os(SCRIPT_CHILD_ENV).is_some() {
            return Some(RemoveHarnessDir);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("ring::fuzzing::tests::{name}"),
                "--test-threads=1",
                "--nocapture",
            ])
            .env(SCRIPT_CHILD_ENV, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed: {text}");
        assert!(text.contains("1 passed"), "child ran no test: {text}");
        None
    }

    fn seed(name: &str) -> Vec<u8> {
        socket_seeds()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn socket_script_readers_inspection_and_garbage() {
        let Some(_cleanup) = in_child("socket_script_readers_inspection_and_garbage") else {
            return;
        };
        for name in ["reader", "inspect", "garbage"] {
            socket_script(&seed(name));
        }
        socket_script(&[]);
        // Every descriptor kind on a reader hello, an adopt and raw bytes.
        let every = Script::default()
            .connect()
            .hello(0, 0, &[])
            .recv(0)
            .connect()
            .hello(1, 0, &EVERY_FD[..8])
            .recv(1)
            .connect()
            .hello(2, HELLO_ADOPT, &EVERY_FD[8..])
            .recv(2)
            .connect()
            .raw(3, b"CAMUXHI1", &EVERY_FD[2..6])
            .recv(3);
        socket_script(&every.0);
        // Arbitrary bytes.
        let noise: Vec<u8> = (0..2048u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        socket_script(&noise);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn socket_script_adoption_and_hostile_pages() {
        let Some(_cleanup) = in_child("socket_script_adoption_and_hostile_pages") else {
            return;
        };
        for name in ["adopt", "hostile_page"] {
            socket_script(&seed(name));
        }
    }

    /// Found by the `socket` fuzz target (fuzz/regressions/socket/): a
    /// packet with more than 4 descriptors made the kernel install the 4
    /// that fitted the server's control buffer and flag the rest as cut
    /// (`MSG_CTRUNC`); nix then refused to list the 4, and they stayed open
    /// in the producer for good. Each such packet leaked 4 descriptors.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn socket_script_more_fds_than_accepted_leak_none() {
        let Some(_cleanup) = in_child("socket_script_more_fds_than_accepted_leak_none") else {
            return;
        };
        // The fuzzer's input, kept as found.
        socket_script(include_bytes!(
            "../../fuzz/regressions/socket/crash-78843f5010025adc415a506acdcd699a4b88e8d4"
        ));
        let pipes = [Fd::PipeRead; 8];
        let mut s = Script::default();
        for n in 5..=8u8 {
            let c = n - 5;
            s = s
                .connect()
                .hello(c, HELLO_ADOPT, &pipes[..usize::from(n)])
                .recv(c)
                .recv(c);
        }
        s = s
            .connect()
            .raw(4, &[1; 64], &EVERY_FD[..8])
            .recv(4)
            .connect()
            .hello(5, 0, &[]) // still serving
            .recv(5);
        socket_script(&s.0);
        // Such a packet closes the connection without a reply.
        let path = SCRIPT_HARNESS.get().unwrap().lock().unwrap().sock.clone();
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(sock.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        let hello = Hello {
            kind: HelloKind::Reader,
            adopt: true,
            pid: 1,
            ring_id: 0,
        }
        .encode();
        let fds: Vec<OwnedFd> = (0..5).map(|_| nix::unistd::pipe().unwrap().0).collect();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&hello)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut b = [0u8; MSG_BYTES];
        assert_eq!(
            nix::sys::socket::recv(sock.as_raw_fd(), &mut b, MsgFlags::empty()),
            Ok(0)
        );
    }

    /// The committed seeds are what [`socket_seeds`] builds (skipped where
    /// `fuzz/` is absent). `CAMUX_WRITE_SOCKET_SEEDS=1 cargo test
    /// socket_seeds` writes them instead.
    #[test]
    fn socket_seeds_are_the_committed_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/socket");
        let write = std::env::var_os("CAMUX_WRITE_SOCKET_SEEDS").is_some();
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        } else if !dir.is_dir() {
            return;
        }
        for (name, bytes) in socket_seeds() {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, &bytes).unwrap();
            } else {
                let committed = std::fs::read(&path).unwrap_or_default();
                assert!(
                    committed == bytes,
                    "{} differs from what socket_seeds() builds: \
                     CAMUX_WRITE_SOCKET_SEEDS=1 cargo test socket_seeds",
                    path.display()
                );
            }
        }
    }
}
