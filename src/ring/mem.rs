//! The shared mappings: the ring file and the per-reader lease pages, and
//! the futex calls on them. Almost all of the crate's `unsafe` is here.
//!
//! The ring file is mapped with memmap2's [`MmapRaw`]: other processes write
//! it, so it hands out raw pointers, never `&[u8]`. The words the protocol
//! synchronises on are accessed as `&AtomicU32`/`&AtomicU64` (same size and
//! alignment as the integers; atomic loads are allowed on read-only memory),
//! fixed bytes are copied out with volatile reads and validated before use.

use crate::ring::layout::{
    Header, Layout, LayoutError, RawMeta, DESC_BYTES, FIXED_BYTES, HEADER_BYTES, LIVE_OFFSET,
    MAX_HOLDS, META_BYTES, META_OFFSET, VERSION_OFFSET,
};
use crate::ring::protocol::{Claim, Held, LeaseWords, RingWords};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// The live part of the header: the words the producer updates while
/// running. `#[repr(C)]` and pinned by the offset asserts below.
#[repr(C)]
pub(crate) struct Live {
    /// [`STATE_INIT`], [`STATE_LIVE`], [`STATE_STOPPED`] or [`STATE_SUPERSEDED`].
    pub state: AtomicU32,
    /// Producer generation: bumped by every producer that opens the ring.
    pub epoch: AtomicU32,
    /// PID of the producer (in its own PID namespace; informational).
    pub producer_pid: AtomicU32,
    /// Readers currently registered.
    pub readers: AtomicU32,
    /// Latest published seq (0: none).
    pub head: AtomicU64,
    /// CLOCK_MONOTONIC ns of the producer's last sign of life.
    pub heartbeat_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns when the current epoch started.
    pub epoch_started_ns: AtomicU64,
    /// The previous epoch's last heartbeat (for the downtime readers report).
    pub prev_heartbeat_ns: AtomicU64,
    /// Frames published (all epochs).
    pub published: AtomicU64,
    /// Frames dropped because every slot was held.
    pub dropped: AtomicU64,
    /// Futex word: bumped after each publish and on every state change.
    pub notify: AtomicU32,
    /// Slot + 1 the producer is deciding whether to claim (0: none).
    pub claiming: AtomicU32,
    /// Holds revoked after the hold timeout.
    pub revoked: AtomicU64,
    /// Payload bytes the producer copied into slots (all epochs): a frame
    /// published by copy counts its length, a committed loan 0. Written by
    /// the publishing thread only, with a plain load and store. Reserved
    /// (zero) in files written before it existed.
    pub bytes_copied: AtomicU64,
}

/// The ring is being initialised or resumed; no producer publishes yet.
pub const STATE_INIT: u32 = 0;
/// A producer is publishing.
pub const STATE_LIVE: u32 = 1;
/// The producer stopped cleanly (a successor may resume the ring).
pub const STATE_STOPPED: u32 = 2;
/// A new file (other geometry) replaced this one at the same path.
pub const STATE_SUPERSEDED: u32 = 3;

/// Offset of the handover bitmap: bit `s` set means a reader held slot `s`
/// when the previous producer stopped (valid while the state is STOPPED).
pub(crate) const HANDOVER_OFFSET: u64 = 1024;
/// Words in the handover bitmap (one bit per slot, up to `MAX_SLOTS`).
const HANDOVER_WORDS: u64 = crate::ring::layout::MAX_SLOTS as u64 / 64;

const _: () = {
    assert!(HANDOVER_OFFSET >= LIVE_OFFSET + std::mem::size_of::<Live>() as u64);
    assert!(HANDOVER_OFFSET + HANDOVER_WORDS * 8 <= HEADER_BYTES);
    assert!(std::mem::offset_of!(Live, head) == 16);
    assert!(std::mem::offset_of!(Live, heartbeat_ns) == 24);
    assert!(std::mem::offset_of!(Live, dropped) == 56);
    assert!(std::mem::offset_of!(Live, notify) == 64);
    assert!(std::mem::offset_of!(Live, revoked) == 72);
    assert!(std::mem::offset_of!(Live, bytes_copied) == 80);
    assert!(std::mem::size_of::<Live>() == 88);
    // The live part ends before the handover bitmap, which ends inside the
    // header page.
    assert!(LIVE_OFFSET + std::mem::size_of::<Live>() as u64 == 600);
    assert!(LIVE_OFFSET as usize + std::mem::size_of::<Live>() <= HEADER_BYTES as usize);
};

/// A mapped, validated ring file.
pub(crate) struct RingMap {
    map: MmapRaw,
    pub(crate) header: Header,
    writable: bool,
}

// SAFETY: the mapping is shared memory accessed only through atomics, volatile
// copies, and payload pointers whose use the protocol serialises; MmapRaw
// itself is Send + Sync.
unsafe impl Send for RingMap {}
// SAFETY: as above; no method hands out `&mut` to shared bytes.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// Maps `file` (read-only unless `writable`) and validates its header.
    pub(crate) fn open(file: &File, writable: bool) -> Result<RingMap, MapError> {
        let len = file.metadata().map_err(MapError::Io)?.len();
        if len < HEADER_BYTES {
            return Err(MapError::Layout(LayoutError::Truncated {
                need: HEADER_BYTES,
                have: len,
            }));
        }
        let len_usize = usize::try_from(len)
            .map_err(|_| MapError::Layout(LayoutError::Geometry(format!("file of {len} bytes"))))?;
        let opts = {
            let mut o = MmapOptions::new();
            o.len(len_usize);
            o
        };
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        }
        .map_err(MapError::Io)?;
        // SAFETY: the mapping is at least HEADER_BYTES long (checked above) and
        // page aligned, so the version word at offset 8 is in bounds and aligned.
        let version = unsafe { &*(map.as_ptr().add(VERSION_OFFSET as usize) as *const AtomicU32) };
        // SYNC: Acquire pairs with the creator's Release store of the version,
        // which it makes after writing every other fixed field: once we see
        // it, the copy below sees them too.
        let found = version.load(Ordering::Acquire);
        if found != crate::ring::layout::VERSION {
            return Err(MapError::Layout(LayoutError::VersionMismatch {
                found,
                expected: crate::ring::layout::VERSION,
            }));
        }
        let mut fixed = [0u8; FIXED_BYTES];
        // SAFETY: FIXED_BYTES <= HEADER_BYTES <= the mapping's length.
        unsafe { volatile_copy(map.as_ptr(), &mut fixed) };
        let header = Header::parse(&fixed, len).map_err(MapError::Layout)?;
        Ok(RingMap {
            map,
            header,
            writable,
        })
    }

    /// Maps a freshly created, zero-filled file of `header.layout.file_bytes`
    /// bytes and writes the header, publishing the version last.
    pub(crate) fn init(file: &File, header: Header) -> Result<RingMap, MapError> {
        let len = header.layout.file_bytes;
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw(file)
            .map_err(MapError::Io)?;
        let mut fixed = header.encode();
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
        fixed[8..12].fill(0);
        // SAFETY: the mapping is file_bytes >= HEADER_BYTES long and nobody else
        // maps this file yet (it has a temporary name).
        unsafe {
            std::ptr::copy_nonoverlapping(fixed.as_ptr(), map.as_mut_ptr(), FIXED_BYTES);
        }
        let ring = RingMap {
            map,
            header,
            writable: true,
        };
        // SYNC: Release pairs with the Acquire load in `open`: every fixed
        // field written above is visible to a reader that sees the version.
        ring.word32(VERSION_OFFSET)
            .store(version, Ordering::Release);
        Ok(ring)
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.header.layout
    }

    fn word32(&self, offset: u64) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len() as u64);
        // SAFETY: callers pass offsets inside the validated layout, 4-aligned;
        // the mapping is page aligned and lives as long as `self`.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const AtomicU32) }
    }

    fn word64(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= self.map.len() as u64);
        // SAFETY: as in `word32`, with 8-byte alignment.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const AtomicU64) }
    }

    /// The live header words.
    pub(crate) fn live(&self) -> &Live {
        // SAFETY: LIVE_OFFSET + size_of::<Live>() <= HEADER_BYTES <= len
        // (asserted at compile time and checked at open); 8-aligned; `Live` is
        // all atomics, so concurrent writes by the producer are fine.
        unsafe { &*(self.map.as_ptr().add(LIVE_OFFSET as usize) as *const Live) }
    }

    /// Copies slot `slot`'s metadata out of the mapping (not yet validated).
    pub(crate) fn read_meta(&self, slot: u32) -> RawMeta {
        let mut b = [0u8; META_BYTES];
        let off = self.layout().desc_offset(slot) + META_OFFSET;
        debug_assert!(off + META_BYTES as u64 <= self.layout().desc_offset(slot) + DESC_BYTES);
        // SAFETY: slot < slot_count (callers check), so the descriptor lies in
        // the validated descriptor table inside the mapping.
        unsafe { volatile_copy(self.map.as_ptr().add(off as usize), &mut b) };
        RawMeta::decode(&b)
    }

    /// Writes the claimed slot's metadata.
    pub(crate) fn write_meta(&self, claim: &mut Claim, meta: &RawMeta) {
        let slot = claim.slot();
        assert!(self.writable && slot < self.layout().geometry.slot_count);
        let b = meta.encode();
        let off = self.layout().desc_offset(slot) + META_OFFSET;
        // SAFETY: in bounds (asserted) as in `read_meta`; `claim` says the
        // stamp is WRITING, so no reader treats these bytes as a frame until
        // commit, and `&mut` that no other writer in this process has them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                b.as_ptr(),
                self.map.as_mut_ptr().add(off as usize),
                META_BYTES,
            )
        };
    }

    /// Copies `bytes` into the claimed slot's payload (no reader holds it and
    /// seqlock readers see WRITING). With `streaming`, the copy uses
    /// non-temporal stores where the CPU has them (x86_64) and ends with a
    /// store fence, so every payload byte is globally visible before the
    /// commit's Release store of the stamp.
    pub(crate) fn write_payload(&self, claim: &mut Claim, bytes: &[u8], streaming: bool) {
        assert!(self.writable && bytes.len() as u64 <= self.layout().geometry.max_frame_bytes);
        let dst = self.payload_ptr(claim.slot());
        if streaming {
            // SAFETY: as below; `dst` is page aligned (payload_offset is a
            // multiple of the page size and the mapping starts on a page).
            unsafe { copy_streaming(dst, bytes) };
            return;
        }
        // SAFETY: the destination is inside the slot (checked length <=
        // max_frame_bytes <= slot_stride) and cannot overlap `bytes`: no
        // slice of a claimed slot exists but `claimed_payload`'s, which
        // borrows the `claim` we hold `&mut`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
    }

    /// The claimed slot's whole payload area (max_frame_bytes), to fill in
    /// place (a loan).
    pub(crate) fn claimed_payload<'a>(&'a self, claim: &'a mut Claim) -> &'a mut [u8] {
        assert!(self.writable);
        let len = self.layout().geometry.max_frame_bytes as usize;
        let ptr = self.payload_ptr(claim.slot());
        // SAFETY: `ptr..ptr+len` lies inside the slot (max_frame_bytes <=
        // slot_stride, the layout validated at open) and the mapping, which
        // lives as long as `self`. The claim makes the bytes exclusively
        // ours: its stamp is WRITING, so no reader holds or reads the slot
        // (bar one whose hold was revoked after the hold timeout, which
        // reads through volatile copies or a `Frame` that documents it), and
        // the `&mut Claim` borrow excludes every other writer here.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Pointer to slot `slot`'s payload (`slot_stride` bytes, page aligned).
    pub(crate) fn payload_ptr(&self, slot: u32) -> *mut u8 {
        assert!(slot < self.layout().geometry.slot_count);
        let off = self.layout().payload_offset(slot);
        // SAFETY: payload_offset(slot) + slot_stride <= file_bytes == len, by
        // the layout validated at open.
        unsafe { self.map.as_mut_ptr().add(off as usize) }
    }

    /// The first `len` bytes of a held frame's payload (`len` at most the
    /// slot's capacity, max_frame_bytes).
    pub(crate) fn held_payload<'a>(&'a self, held: &'a Held, len: usize) -> &'a [u8] {
        assert!(len as u64 <= self.layout().geometry.max_frame_bytes);
        // SAFETY: in bounds: `payload_ptr` checks the slot, and `len` <=
        // max_frame_bytes <= slot_stride (asserted; the layout validated at
        // open). Not written while the slice lives: it borrows `held`, and a
        // `Held` exists only while its hold entry names the frame, so the
        // producer does not claim the slot (bar revocation after the hold
        // timeout, which the frame guard documents).
        unsafe { std::slice::from_raw_parts(self.payload_ptr(held.slot()), len) }
    }

    /// Records which slots readers held at a handover (producer only).
    pub(crate) fn write_handover(&self, held: &[u32]) {
        let mut words = [0u64; HANDOVER_WORDS as usize];
        for &s in held {
            words[(s / 64) as usize] |= 1 << (s % 64);
        }
        for (i, w) in words.iter().enumerate() {
            // Relaxed: published by the Release store of STATE_STOPPED after.
            self.word64(HANDOVER_OFFSET + 8 * i as u64)
                .store(*w, Ordering::Relaxed);
        }
    }

    /// Whether slot `s` was held at the last handover.
    pub(crate) fn held_at_handover(&self, s: u32) -> bool {
        let w = self
            .word64(HANDOVER_OFFSET + 8 * u64::from(s / 64))
            .load(Ordering::Relaxed);
        w & (1 << (s % 64)) != 0
    }

    /// Wakes every reader sleeping on the futex word.
    pub(crate) fn wake_all(&self) {
        futex_wake_all(&self.live().notify);
    }

    /// Sleeps while the futex word equals `seen`, at most `timeout`.
    pub(crate) fn wait(&self, seen: u32, timeout: Duration) {
        futex_wait(&self.live().notify, seen, timeout);
    }
}

impl RingWords for RingMap {
    fn slot_count(&self) -> u32 {
        self.header.layout.geometry.slot_count
    }
    fn stamp(&self, slot: u32) -> &AtomicU64 {
        assert!(slot < self.slot_count());
        self.word64(self.header.layout.desc_offset(slot))
    }
    fn index_len(&self) -> u32 {
        self.header.layout.index_len
    }
    fn index(&self, i: u32) -> &AtomicU32 {
        assert!(i < self.index_len());
        self.word32(self.header.layout.index_offset + u64::from(i) * 4)
    }
    fn head(&self) -> &AtomicU64 {
        &self.live().head
    }
    fn notify(&self) -> &AtomicU32 {
        &self.live().notify
    }
    fn claiming(&self) -> &AtomicU32 {
        &self.live().claiming
    }
}

/// Copies `src` to `dst` with non-temporal (streaming) stores, then fences.
///
/// A frame this large does not stay in the producer's caches anyway; writing
/// it around them keeps the lines readers use (the ring's control words,
/// descriptors and their own lease words) cached, and saves the read for
/// ownership a cached store of a cold line costs. Readers that touch the
/// payload fetch it from memory rather than from the last-level cache. The
/// trailing `sfence` orders the weakly-ordered streaming stores before every
/// later store, in particular the commit's Release store of the slot stamp
/// (docs/FORMAT.md section 5.1). On other architectures: a plain copy.
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes, 16-byte aligned, and does
/// not overlap `src`.
unsafe fn copy_streaming(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        debug_assert!((dst as usize).is_multiple_of(16));
        let s = src.as_ptr();
        let whole = src.len() / 64 * 64;
        let mut o = 0;
        while o < whole {
            // SAFETY: o + 64 <= src.len(), so the four 16-byte loads are
            // inside `src` (loadu: any alignment) and the four stores inside
            // `dst`, 16-byte aligned because `dst` is and `o` is a multiple
            // of 64. SSE2 is part of x86_64.
            unsafe {
                let a = _mm_loadu_si128(s.add(o) as *const __m128i);
                let b = _mm_loadu_si128(s.add(o + 16) as *const __m128i);
                let c = _mm_loadu_si128(s.add(o + 32) as *const __m128i);
                let d = _mm_loadu_si128(s.add(o + 48) as *const __m128i);
                _mm_stream_si128(dst.add(o) as *mut __m128i, a);
                _mm_stream_si128(dst.add(o + 16) as *mut __m128i, b);
                _mm_stream_si128(dst.add(o + 32) as *mut __m128i, c);
                _mm_stream_si128(dst.add(o + 48) as *mut __m128i, d);
            }
            o += 64;
        }
        // SAFETY: the tail [whole, len) lies inside both buffers, which do
        // not overlap (the caller's contract); sfence has no precondition.
        unsafe {
            std::ptr::copy_nonoverlapping(s.add(whole), dst.add(whole), src.len() - whole);
            _mm_sfence();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller's contract (valid, non-overlapping).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len())
    };
}

/// Copies `dst.len()` bytes from shared memory with volatile reads, so the
/// compiler assumes nothing about bytes another process may change.
///
/// # Safety
/// `src..src + dst.len()` must be readable for the call's duration.
unsafe fn volatile_copy(src: *const u8, dst: &mut [u8]) {
    // Word by word where aligned (descriptors and the header are): a
    // 248-byte descriptor is 31 loads instead of 248.
    let words = if (src as usize).is_multiple_of(8) {
        dst.len() / 8
    } else {
        0
    };
    for i in 0..words {
        // SAFETY: `src` is 8-aligned and `src + 8 * (i + 1) <= src + dst.len()`,
        // inside the readable range of the precondition.
        let w = unsafe { std::ptr::read_volatile((src as *const u64).add(i)) };
        dst[8 * i..8 * i + 8].copy_from_slice(&w.to_ne_bytes());
    }
    for (i, d) in dst.iter_mut().enumerate().skip(words * 8) {
        // SAFETY: in bounds by the function's precondition.
        *d = unsafe { std::ptr::read_volatile(src.add(i)) };
    }
}

/// Why a mapping could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapError {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("{0}")]
    Layout(#[source] LayoutError),
}

/// The fixed head of one reader's lease page, at offset 0 of its memfd.
/// The words the producer loads on every frame live in a [`LeaseWordsBlock`]
/// at `words_offset`, which differs from reader to reader (see there).
#[repr(C)]
pub(crate) struct LeasePage {
    magic: AtomicU64,
    version: AtomicU32,
    reader_id: AtomicU32,
    hold_limit: AtomicU32,
    /// The reader id, written by the publishing thread once it scans this
    /// page's holds; the reader places no hold before it sees its own id here.
    registered: AtomicU32,
    /// Byte offset of the page's [`LeaseWordsBlock`]: producer-written at
    /// creation, never changed; checked by [`LeaseMap::adopt`].
    words_offset: AtomicU32,
}

/// The words of a lease page that the producer reads on every frame, and
/// the reader writes. Each page places its block at its own cache-line
/// offset ([`words_offset_for`]): every page is page aligned, so blocks at
/// one fixed offset would all fall into the same set of a virtually indexed
/// L1 cache (64 sets on current x86 cores) and a scan of more readers than
/// the set has ways would miss on every line, every frame.
#[repr(C)]
pub(crate) struct LeaseWordsBlock {
    waiting: AtomicU32,
    revoked: AtomicU32,
    /// The reader's position: it will never ask for a frame with a seq at
    /// or below this again (0: not said). Reader-written, untrusted; the
    /// producer only uses it to choose which unheld slot to reuse.
    consumed: AtomicU64,
    /// Right after `consumed`: the producer's per-frame loads of a reader
    /// (its waiting flag, its position and its first six hold entries) share
    /// one cache line.
    holds: [AtomicU64; MAX_HOLDS as usize],
}

/// Size of the memfd behind a lease page.
pub(crate) const LEASE_BYTES: u64 = 4096;
const LEASE_MAGIC: u64 = u64::from_le_bytes(*b"CAMUXLSE");
pub(crate) const LEASE_VERSION: u32 = 2;
/// Where the words blocks may start: every cache line from the second one
/// on that leaves room for a whole block.
const WORDS_LINES: u32 = (LEASE_BYTES as u32 - WORDS_BYTES) / 64;
const WORDS_BYTES: u32 = std::mem::size_of::<LeaseWordsBlock>() as u32;

/// The offset of reader `reader_id`'s words block: consecutive ids get
/// consecutive cache lines (in 1..=WORDS_LINES), so up to `WORDS_LINES`
/// readers' per-frame lines fall into different L1 sets.
pub(crate) fn words_offset_for(reader_id: u32) -> u32 {
    64 * (1 + reader_id % WORDS_LINES)
}

/// Whether `off` is a words offset the page can hold: cache-line aligned,
/// past the head, the whole block inside the page.
fn words_offset_ok(off: u32) -> bool {
    off.is_multiple_of(64) && (64..=LEASE_BYTES as u32 - WORDS_BYTES).contains(&off)
}

const _: () = {
    assert!(std::mem::size_of::<LeasePage>() <= 64);
    assert!(std::mem::offset_of!(LeasePage, words_offset) == 24);
    assert!(std::mem::offset_of!(LeaseWordsBlock, consumed) == 8);
    assert!(std::mem::offset_of!(LeaseWordsBlock, holds) == 16);
    assert!(WORDS_BYTES == 144);
    assert!(WORDS_LINES == 61);
};

/// A mapped lease page (memfd, shared read-write between one reader and the producer).
pub(crate) struct LeaseMap {
    map: MmapRaw,
    fd: OwnedFd,
    /// The page's `words_offset`, checked when the page was mapped; later
    /// changes to the word in the page are never read back.
    words_offset: u32,
}

// SAFETY: all access goes through the atomics of `LeasePage`.
unsafe impl Send for LeaseMap {}
// SAFETY: as above.
unsafe impl Sync for LeaseMap {}

impl LeaseMap {
    /// Creates a sealed memfd-backed lease page for a new reader.
    pub(crate) fn create(reader_id: u32, hold_limit: u32) -> std::io::Result<LeaseMap> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let fd = memfd_create(
            c"camux-lease",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, LEASE_BYTES as i64)?;
        // Sealed so the reader can neither shrink it (a SIGBUS in the
        // producer) nor grow it.
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let words_offset = words_offset_for(reader_id);
        let lease = Self::map(fd, words_offset)?;
        let p = lease.page();
        p.words_offset.store(words_offset, Ordering::Relaxed);
        p.magic.store(LEASE_MAGIC, Ordering::Relaxed);
        p.version.store(LEASE_VERSION, Ordering::Relaxed);
        p.reader_id.store(reader_id, Ordering::Relaxed);
        p.hold_limit.store(hold_limit, Ordering::Relaxed);
        Ok(lease)
    }

    /// Adopts a lease page someone sent: checks it is a sealed memfd of the
    /// right size before mapping, so it cannot shrink under us.
    pub(crate) fn adopt(fd: OwnedFd) -> std::io::Result<LeaseMap> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let seals = SealFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW) {
            return Err(bad(
                "lease fd is not a memfd sealed against shrink and grow",
            ));
        }
        let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
        if st.st_size as u64 != LEASE_BYTES {
            return Err(bad("lease fd has the wrong size"));
        }
        // Mapped with the first possible offset only to read the head; the
        // words block is reached only through the checked offset below.
        let mut lease = Self::map(fd, 64)?;
        if lease.page().magic.load(Ordering::Relaxed) != LEASE_MAGIC {
            return Err(bad("lease page has no camux magic"));
        }
        let version = lease.page().version.load(Ordering::Relaxed);
        if version != LEASE_VERSION {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("lease page of version {version}, this build speaks {LEASE_VERSION}: run the same camux version on both sides"),
            ));
        }
        let off = lease.page().words_offset.load(Ordering::Relaxed);
        if !words_offset_ok(off) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "lease page's words_offset {off} is not a cache line in 64..={}",
                    LEASE_BYTES as u32 - WORDS_BYTES
                ),
            ));
        }
        lease.words_offset = off;
        Ok(lease)
    }

    fn map(fd: OwnedFd, words_offset: u32) -> std::io::Result<LeaseMap> {
        let map = MmapOptions::new()
            .len(LEASE_BYTES as usize)
            .map_raw(fd.as_raw_fd())?;
        Ok(LeaseMap {
            map,
            fd,
            words_offset,
        })
    }

    fn page(&self) -> &LeasePage {
        // SAFETY: the mapping is LEASE_BYTES >= size_of::<LeasePage>() long,
        // page aligned, and only accessed through atomics.
        unsafe { &*(self.map.as_ptr() as *const LeasePage) }
    }

    fn words(&self) -> &LeaseWordsBlock {
        debug_assert!(words_offset_ok(self.words_offset));
        // SAFETY: `words_offset` passed `words_offset_ok` (set by `create`
        // from `words_offset_for`, or checked by `adopt`): it is 64-byte
        // aligned and the whole block lies inside the LEASE_BYTES mapping,
        // which is only accessed through atomics.
        unsafe { &*(self.map.as_ptr().add(self.words_offset as usize) as *const LeaseWordsBlock) }
    }

    /// The memfd (to send to the reader, or back to a new producer).
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Overwrites the reader id (a new producer adopting the page).
    pub(crate) fn set_reader_id(&self, id: u32, hold_limit: u32) {
        self.page().reader_id.store(id, Ordering::Relaxed);
        self.page().hold_limit.store(hold_limit, Ordering::Relaxed);
    }

    /// Clears the registration mark (control thread, before registering).
    pub(crate) fn clear_registered(&self) {
        self.page().registered.store(0, Ordering::Relaxed);
    }

    /// Marks the page as scanned by the publisher (publishing thread, after
    /// adding it to its reader table).
    pub(crate) fn mark_registered(&self, id: u32) {
        // SYNC: Release pairs with the reader's Acquire in `is_registered`:
        // every claim the publisher starts after this store scans the page.
        self.page().registered.store(id, Ordering::Release);
    }

    /// Whether the publisher scans this page's holds for reader `id`.
    pub(crate) fn is_registered(&self, id: u32) -> bool {
        self.page().registered.load(Ordering::Acquire) == id
    }

    /// The hold entries currently set (for inspection).
    pub(crate) fn holds_snapshot(&self) -> [u64; MAX_HOLDS as usize] {
        std::array::from_fn(|i| self.words().holds[i].load(Ordering::Relaxed))
    }
}

impl LeaseMap {
    /// The reader's side: says that the next frame it will ask for is
    /// `next`, so the producer may reuse the slots of older frames first
    /// (FORMAT.md 8.3, 5.1).
    pub(crate) fn say_consumed(&self, next: u64) {
        // Relaxed: the producer reads it only to choose among unheld slots;
        // holds, not this word, keep a frame from being overwritten.
        self.words()
            .consumed
            .store(next.saturating_sub(1), Ordering::Relaxed);
    }
}

/// Whatever leads to a lease page's words block gets the protocol's view of it.
trait WordsRef {
    fn lease_words(&self) -> &LeaseWordsBlock;
}

impl<P: WordsRef> LeaseWords for P {
    fn holds(&self) -> &[AtomicU64] {
        &self.lease_words().holds
    }
    fn waiting(&self) -> &AtomicU32 {
        &self.lease_words().waiting
    }
    fn revoked(&self) -> &AtomicU32 {
        &self.lease_words().revoked
    }
    fn consumed(&self) -> &AtomicU64 {
        &self.lease_words().consumed
    }
    fn may_hold<'a>(pages: impl Iterator<Item = (&'a Self, usize)>, seq: u64) -> bool
    where
        Self: 'a,
    {
        holds_may_name(pages.map(|(p, n)| (p.lease_words(), n)), seq)
    }
}

/// Whether any of the first `limit` hold entries of any block may be `seq`
/// (`false`: none is). With AVX2, one compare per four entries, OR-ed over
/// every block and tested once. The first four entries of a block are
/// always compared, and those past its limit up to the next multiple of
/// four too, so `true` can be a false alarm (the exact scan sorts it out).
/// Without AVX2 (or under loom), always `true`.
fn holds_may_name<'a>(
    blocks: impl Iterator<Item = (&'a LeaseWordsBlock, usize)>,
    seq: u64,
) -> bool {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::holds_may_name(blocks, seq) };
    }
    let _ = (blocks, seq);
    true
}

#[cfg(all(target_arch = "x86_64", not(loom)))]
mod avx2 {
    use super::LeaseWordsBlock;
    use crate::ring::layout::MAX_HOLDS;
    use crate::sync::atomic::AtomicU64;
    use std::arch::asm;
    use std::arch::x86_64::{
        __m256i, _mm256_or_si256, _mm256_set1_epi64x, _mm256_setzero_si256, _mm256_testz_si256,
    };

    /// [`super::holds_may_name`] with 256-bit compares.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn holds_may_name<'a>(
        blocks: impl Iterator<Item = (&'a LeaseWordsBlock, usize)>,
        seq: u64,
    ) -> bool {
        let want = _mm256_set1_epi64x(seq as i64);
        let mut hits = _mm256_setzero_si256();
        for (block, limit) in blocks {
            // The first quad always (a limit of 0 is never registered, and
            // would only raise a false alarm); the rest only for limits
            // over 4, so the common limit of 4 costs one compare, no loop.
            let (first, rest) = block.holds.split_at(4);
            hits = _mm256_or_si256(hits, eq_quad(first, want));
            if limit > 4 {
                let more = (limit.min(MAX_HOLDS as usize) - 1) / 4;
                for quad in rest.chunks_exact(4).take(more) {
                    hits = _mm256_or_si256(hits, eq_quad(quad, want));
                }
            }
        }
        _mm256_testz_si256(hits, hits) == 0
    }

    /// Lane-wise `quad[i] == want` (all ones where equal), from one
    /// 256-bit load of the four entries.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn eq_quad(quad: &[AtomicU64], want: __m256i) -> __m256i {
        assert!(quad.len() >= 4);
        let eq: __m256i;
        // SAFETY: `quad` is at least four `AtomicU64`s of a live
        // `LeaseWordsBlock` (32 readable bytes, checked above). The compare
        // reads them with one 256-bit load; every lane is an aligned
        // quadword (`AtomicU64` is 8-byte aligned; in a lease page the
        // block is 64-byte aligned and the holds start 16 bytes in, so the
        // first quad shares the waiting flag's line), and x86 reads an
        // aligned quadword atomically (Intel SDM
        // vol. 3A 9.1.1, AMD APM vol. 2 7.3.2), a larger vector access being
        // made of such accesses. So this is four Relaxed loads, which is
        // what the exact scan does and what another process may race with.
        // The asm block is not `pure`: it stays after the caller's fence.
        // It writes no memory, pushes nothing and leaves the flags alone.
        unsafe {
            asm!(
                "vpcmpeqq {eq}, {want}, ymmword ptr [{p}]",
                eq = lateout(ymm_reg) eq,
                want = in(ymm_reg) want,
                p = in(reg) quad.as_ptr(),
                options(readonly, nostack, preserves_flags),
            );
        }
        eq
    }
}

impl WordsRef for LeaseMap {
    fn lease_words(&self) -> &LeaseWordsBlock {
        self.words()
    }
}

/// The publishing thread's handle on a reader's lease page: the address of
/// its words block stored inline next to the `Arc` that keeps the mapping
/// alive, so the per-frame scan reaches the hold entries with one load
/// instead of a chase through the `Arc`, the `LeaseMap` and the mapping.
pub(crate) struct LeaseHandle {
    words: std::ptr::NonNull<LeaseWordsBlock>,
    _map: std::sync::Arc<LeaseMap>,
}

// SAFETY: `words` points into the mapping that `_map` keeps alive for as
// long as the handle exists, and `LeaseWordsBlock` is all atomics, so
// sharing or sending the handle is as safe as sharing the `LeaseMap`.
unsafe impl Send for LeaseHandle {}
// SAFETY: as above.
unsafe impl Sync for LeaseHandle {}

impl LeaseHandle {
    /// A handle on `map`'s page.
    pub(crate) fn new(map: std::sync::Arc<LeaseMap>) -> LeaseHandle {
        let words = std::ptr::NonNull::from(map.words());
        LeaseHandle { words, _map: map }
    }
}

impl WordsRef for LeaseHandle {
    fn lease_words(&self) -> &LeaseWordsBlock {
        // SAFETY: `words` came from a live `&LeaseWordsBlock` into the
        // mapping that `_map` (an Arc we own) keeps mapped; only atomics are
        // reached.
        unsafe { self.words.as_ref() }
    }
}

/// FUTEX_WAIT on a word of a shared mapping (not FUTEX_PRIVATE: the waker
/// is another process). Returns on wake, timeout, signal or value change.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 in a mapping that outlives the
    // call; FUTEX_WAIT only reads it (it works on read-only shared mappings);
    // `ts` lives across the call. Errors (EAGAIN, EINTR, ETIMEDOUT) all mean
    // "re-check", which every caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// FUTEX_WAKE every waiter on `word`.
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 in a live mapping; FUTEX_WAKE
    // does not access user memory beyond resolving the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::FileExt;

    fn block(holds: &[u64]) -> LeaseWordsBlock {
        LeaseWordsBlock {
            waiting: AtomicU32::new(0),
            revoked: AtomicU32::new(0),
            consumed: AtomicU64::new(0),
            holds: std::array::from_fn(|i| AtomicU64::new(holds[i])),
        }
    }

    fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    }

    proptest! {
        /// The pre-check never misses an honoured entry that names the
        /// frame, and (where the vector path runs) only raises a false
        /// alarm for an entry past the limit in the limit's last quad (or in
        /// the first quad, which is always compared).
        #[test]
        fn hold_precheck_never_misses_an_honoured_entry(
            pages in proptest::collection::vec(
                (proptest::collection::vec(0u64..6, MAX_HOLDS as usize), 0usize..=MAX_HOLDS as usize),
                0..20,
            ),
            seq in 1u64..6,
        ) {
            let blocks: Vec<_> = pages.iter().map(|(h, n)| (block(h), *n)).collect();
            let got = holds_may_name(blocks.iter().map(|(b, n)| (b, *n)), seq);
            let honoured = pages.iter().any(|(h, n)| h[..*n].contains(&seq));
            let in_quads = pages
                .iter()
                .any(|(h, n)| h[..n.div_ceil(4).max(1) * 4].contains(&seq));
            prop_assert!(got || !honoured, "missed a hold of {}", seq);
            if avx2() {
                prop_assert_eq!(got, in_quads);
            } else {
                prop_assert!(got);
            }
        }
    }

    #[test]
    fn hold_precheck_reads_the_real_pages_each_entry_and_each_reader() {
        let pages: Vec<_> = (0..16)
            .map(|id| LeaseMap::create(id, 16).unwrap())
            .collect();
        let may = |seq, limit| LeaseMap::may_hold(pages.iter().map(|p| (p, limit)), seq);
        let avx2 = avx2();
        assert_eq!(may(9, 16), !avx2, "no entry is set");
        for (r, page) in pages.iter().enumerate() {
            for i in 0..MAX_HOLDS as usize {
                page.holds()[i].store(9, Ordering::Relaxed);
                assert!(may(9, 16), "reader {r} entry {i}");
                assert!(may(9, i + 1), "reader {r} entry {i}, limit {}", i + 1);
                if i >= 4 {
                    assert_eq!(may(9, 4), !avx2, "reader {r} entry {i} is past the limit");
                }
                assert_eq!(may(10, 16), !avx2, "reader {r} entry {i} names 9");
                page.holds()[i].store(0, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn consecutive_readers_put_their_words_on_different_cache_lines() {
        let offs: Vec<u32> = (0..WORDS_LINES).map(words_offset_for).collect();
        let mut seen = std::collections::BTreeSet::new();
        for &o in &offs {
            assert!(words_offset_ok(o), "offset {o}");
            // The L1 set of a line is its page offset / 64 on a 64-set cache.
            assert!(
                seen.insert(o / 64),
                "two of the first readers share a line: {o}"
            );
        }
        assert_eq!(words_offset_for(WORDS_LINES), words_offset_for(0));
        assert!(!words_offset_ok(0) && !words_offset_ok(65) && !words_offset_ok(3968));
        assert!(words_offset_ok(3904));
    }

    #[test]
    fn an_adopted_page_keeps_its_words_and_a_bad_offset_is_refused() {
        let page = LeaseMap::create(7, 4).unwrap();
        page.holds()[3].store(42, Ordering::Relaxed);
        page.say_consumed(40);
        let dup = page.fd().try_clone_to_owned().unwrap();
        let again = LeaseMap::adopt(dup).unwrap();
        assert_eq!(again.words_offset, words_offset_for(7));
        assert_eq!(again.holds()[3].load(Ordering::Relaxed), 42);
        assert_eq!(again.consumed().load(Ordering::Relaxed), 39);
        // The head of the page says where the words are; a hostile value
        // outside the page, unaligned, or over the head is refused.
        for bad in [0u32, 8, 100, 3968, 4096, u32::MAX] {
            page.page().words_offset.store(bad, Ordering::Relaxed);
            let dup = page.fd().try_clone_to_owned().unwrap();
            let err = LeaseMap::adopt(dup).err().expect("refused");
            assert!(err.to_string().contains("words_offset"), "{bad}: {err}");
        }
        // Another version names both versions.
        page.page().words_offset.store(64, Ordering::Relaxed);
        let f = std::fs::File::from(page.fd().try_clone_to_owned().unwrap());
        f.write_all_at(&1u32.to_le_bytes(), 8).unwrap();
        let err = LeaseMap::adopt(OwnedFd::from(f)).err().expect("refused");
        assert!(err.to_string().contains("version 1"), "{err}");
    }
}
