//! The bare shared page of the futex wake-up floor (`limit-futex`): a few
//! atomic words in one tmpfs page that a producer and its readers, in
//! separate processes, map and use with FUTEX_WAKE / FUTEX_WAIT and nothing
//! else. No ring protocol, no metadata: what is left is what any
//! cross-process wake-up costs.
//!
//! This file is the bench's one exception to two project rules, because
//! the floor cannot be measured without both: it names `std::sync::atomic`
//! (the words live in a mapping shared with other processes; the library's
//! loom switch in `src/sync.rs` is crate-private) and it holds the bench's
//! one `unsafe` block (turning the mapping's address into `&AtomicU32` /
//! `&AtomicU64`; memmap2's [`MmapRaw`] is safe to create because it hands
//! out only raw pointers). The futex calls themselves are rustix's safe
//! wrappers.

use anyhow::Context;
use memmap2::MmapRaw;
use rustix::thread::futex;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Bytes of the page (one page on every Linux this runs on).
const PAGE: u64 = 4096;
/// Stamp slots: a reader looks a frame's stamp up by `index % STAMPS`, so
/// it reads the right one unless the producer gets that many frames ahead.
const STAMPS: u64 = 64;
/// Offset of the futex word (u32), the latest index (u64), the end flag
/// (u64) and the stamp array (u64 each).
const OFF_FUTEX: u64 = 0;
const OFF_INDEX: u64 = 8;
const OFF_END: u64 = 16;
const OFF_STAMPS: u64 = 64;

/// One shared page, mapped by the producer (creates it) or a reader.
pub struct SharedPage {
    map: MmapRaw,
    _file: File,
}

impl SharedPage {
    /// Creates the page file at `path` (on tmpfs) and maps it.
    pub fn create(path: &Path) -> anyhow::Result<SharedPage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.set_len(PAGE)
            .with_context(|| format!("cannot size {}", path.display()))?;
        Self::map(file, path)
    }

    /// Maps the page file a producer created at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SharedPage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Self::map(file, path)
    }

    fn map(file: File, path: &Path) -> anyhow::Result<SharedPage> {
        let len = file.metadata()?.len();
        anyhow::ensure!(len == PAGE, "{}: {len} bytes, not {PAGE}", path.display());
        let map =
            MmapRaw::map_raw(&file).with_context(|| format!("cannot map {}", path.display()))?;
        Ok(SharedPage { map, _file: file })
    }

    /// The 8-byte-aligned word at `offset`, as an atomic of type `T`.
    fn word<T>(&self, offset: u64) -> &T {
        assert!(offset.is_multiple_of(8) && offset + 8 <= PAGE);
        // SAFETY: the mapping is PAGE bytes long (checked in `map`), MAP_SHARED
        // and readable and writable, page aligned, and lives as long as
        // `self`; `offset` is 8-aligned and the word ends inside it (asserted).
        // T is AtomicU32 or AtomicU64 (the only callers), which may alias
        // memory that other processes change, as long as every access is
        // atomic: nothing here makes a non-atomic reference to the page.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const T) }
    }

    fn futex_word(&self) -> &AtomicU32 {
        self.word(OFF_FUTEX)
    }

    fn index(&self) -> &AtomicU64 {
        self.word(OFF_INDEX)
    }

    fn end_flag(&self) -> &AtomicU64 {
        self.word(OFF_END)
    }

    fn stamp(&self, index: u64) -> &AtomicU64 {
        self.word(OFF_STAMPS + 8 * (index % STAMPS))
    }

    /// Producer: frame `index` was "published" at `stamp_ns`; wakes every
    /// waiter (one FUTEX_WAKE per frame, whether or not anyone sleeps).
    pub fn publish(&self, index: u64, stamp_ns: u64, end: bool) {
        // Relaxed: published by the Release store of `index` below.
        self.stamp(index).store(stamp_ns, Ordering::Relaxed);
        if end {
            // Relaxed: published by the Release store of `index` below.
            self.end_flag().store(index, Ordering::Relaxed);
        }
        // SYNC: Release pairs with the reader's Acquire load of `index` in
        // `latest`: the stamp (and end flag) stored above are visible then.
        self.index().store(index, Ordering::Release);
        // SYNC: Release pairs with the reader's Acquire load of the futex
        // word in `changed`; the kernel orders the value check of
        // FUTEX_WAIT against this store and the FUTEX_WAKE after it, so a
        // reader about to sleep on the old value cannot miss the wake.
        self.futex_word().store(index as u32, Ordering::Release);
        // i32::MAX: the kernel reads the count as an int (u32::MAX would be -1: one waiter).
        let _ = futex::wake(self.futex_word(), futex::Flags::empty(), i32::MAX as u32);
    }

    /// Reader: the futex word, to compare with the last one seen.
    pub fn word_now(&self) -> u32 {
        // SYNC: Acquire pairs with the producer's Release store in `publish`.
        self.futex_word().load(Ordering::Acquire)
    }

    /// Reader: sleeps while the futex word is `seen`, at most `timeout`.
    pub fn wait(&self, seen: u32, timeout: Duration) {
        let ts = futex::Timespec::try_from(timeout).unwrap_or(futex::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        // EAGAIN (the word moved on) and ETIMEDOUT are both "look again".
        let _ = futex::wait(self.futex_word(), futex::Flags::empty(), seen, Some(&ts));
    }

    /// Reader: the latest index, its stamp, and whether it is the end.
    pub fn latest(&self) -> (u64, u64, bool) {
        // SYNC: Acquire pairs with the producer's Release store of `index`.
        let index = self.index().load(Ordering::Acquire);
        // Relaxed: ordered after the Acquire load above.
        let stamp = self.stamp(index).load(Ordering::Relaxed);
        // Relaxed: ordered after the Acquire load above.
        let end = self.end_flag().load(Ordering::Relaxed);
        (index, stamp, end != 0 && end == index)
    }
}
