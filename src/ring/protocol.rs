//! The ring's synchronisation protocol, independent of where the memory lives.
//!
//! Production runs it on the shared mapping (`ring::mem`); the loom models in
//! `ring::loom_tests` run the very same functions on heap memory with loom's
//! atomics. Nothing here touches payload bytes: callers write or read those
//! between the calls, and the protocol says when that is allowed.
//!
//! # The algorithm
//!
//! Each slot has a 64-bit *stamp*: `0` empty, `seq << 1` published frame
//! `seq` (seq >= 1), and [`STAMP_WRITING`] (odd) while the producer owns it.
//! It is a seqlock (Lamport; the fence discipline of crossbeam-utils'
//! `SeqLock`) combined with hazard pointers (Michael 2004) for holds:
//!
//! * A reader that wants frame `seq` in slot `s` publishes `seq` in one of
//!   its hold entries (its own lease page), issues a SeqCst fence, and
//!   checks that the producer is not claiming `s` and that the stamp still
//!   says `seq`. Then the frame is held.
//! * The producer that wants slot `s` announces it in the header's
//!   `claiming` word, issues a SeqCst fence, and loads every reader's hold
//!   entries. If one names the frame in `s`, it withdraws the announcement
//!   (stamp and payload untouched) and tries the next-oldest slot; if every
//!   slot is held it drops the frame. Otherwise it stamps the slot
//!   [`STAMP_WRITING`], withdraws the announcement, and writes.
//!
//! The two fences make this Dekker's pattern: at least one side sees the
//! other's store, so a frame is never both held and overwritten; and since
//! a held frame's stamp is only ever changed by an overwrite, a holder's
//! seqlock check ([`still_intact`]) never reports a false alarm. The
//! producer's work per frame is one pass over the hold entries (a few loads
//! per reader), never a wait.

use crate::ring::layout::MAX_HOLDS;
use crate::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::collections::VecDeque;

/// Stamp of a slot the producer owns (claimed, being written, or loaned).
pub(crate) const STAMP_WRITING: u64 = 1;

/// `claiming` value of a producer handing over: no new holds until its
/// successor runs (it records the holds it saw for the successor).
pub(crate) const CLAIM_ALL: u32 = u32::MAX;

/// The stamp of a published frame `seq`.
#[inline]
pub(crate) const fn stamp_published(seq: u64) -> u64 {
    seq << 1
}

/// The frame a stamp says is published, if any.
#[inline]
pub(crate) const fn published_seq(stamp: u64) -> Option<u64> {
    if stamp != 0 && stamp & 1 == 0 {
        Some(stamp >> 1)
    } else {
        None
    }
}

/// The shared words of a ring, wherever they live.
pub(crate) trait RingWords {
    /// Number of slots (validated, >= 1).
    fn slot_count(&self) -> u32;
    /// The stamp of `slot` (< `slot_count`).
    fn stamp(&self, slot: u32) -> &AtomicU64;
    /// Number of index entries (a power of two).
    fn index_len(&self) -> u32;
    /// Index entry `i` (< `index_len`): the slot that holds seq `s` where `s % index_len == i`.
    fn index(&self, i: u32) -> &AtomicU32;
    /// The latest published seq (0: none yet).
    fn head(&self) -> &AtomicU64;
    /// The futex word readers sleep on; bumped after every publish.
    fn notify(&self) -> &AtomicU32;
    /// The slot the producer is deciding whether to claim, plus one (0: none).
    fn claiming(&self) -> &AtomicU32;
}

/// One reader's lease words, as the producer sees them.
pub(crate) trait LeaseWords {
    /// The hold entries (at least `MAX_HOLDS`); 0 means free, otherwise the seq held.
    fn holds(&self) -> &[AtomicU64];
    /// Hold entry `i` (< `MAX_HOLDS`).
    fn hold(&self, i: usize) -> &AtomicU64 {
        &self.holds()[i]
    }
    /// Non-zero while the reader is (about to be) asleep on the futex.
    fn waiting(&self) -> &AtomicU32;
    /// Holds the producer revoked after the hold timeout (counter, producer-written).
    fn revoked(&self) -> &AtomicU32;
    /// The reader's position: it will not ask again for any seq at or below
    /// this (0: not said). Only steers which unheld slot a claim reuses.
    fn consumed(&self) -> &AtomicU64;
    /// A pre-check for the claim's hold scan: `false` only if none of the
    /// first `hold_limit` entries of any of `pages` is `seq`; `true` when
    /// one may be (the exact scan then decides). The loads are Relaxed,
    /// ordered like the scan's by the fence before it. The default always
    /// says "may be"; the lease pages of a real ring answer with one vector
    /// compare per four entries where the CPU has one (`mem.rs`).
    fn may_hold<'a>(pages: impl Iterator<Item = (&'a Self, usize)>, seq: u64) -> bool
    where
        Self: 'a,
    {
        let _ = (pages, seq);
        true
    }
}

/// A registered reader, from the producer's side: its lease words plus what
/// the producer remembers about them. The lease words are written by an
/// untrusted process: they are only ever compared against sequence numbers.
pub(crate) struct ReaderSlot<L> {
    pub(crate) id: u32,
    pub(crate) lease: L,
    /// Entries the producer honours (the reader's hold limit).
    pub(crate) hold_limit: usize,
    /// Per entry: the value last seen blocking a claim and when (ns). Cold
    /// (only touched when a hold blocks a claim), so out of line: the scan
    /// walks a compact table.
    blocked_since: Box<[(u64, u64); MAX_HOLDS as usize]>,
}

impl<L: LeaseWords> ReaderSlot<L> {
    pub(crate) fn new(id: u32, lease: L, hold_limit: u32) -> Self {
        ReaderSlot {
            id,
            lease,
            hold_limit: hold_limit.min(MAX_HOLDS) as usize,
            blocked_since: Box::new([(0, 0); MAX_HOLDS as usize]),
        }
    }
}

/// A slot the producer owns until it commits or abandons it: the right to
/// write its bytes. Made only by [`ProducerCore::claim`], after the slot's
/// stamp went WRITING with no reader holding it, and consumed by
/// [`ProducerCore::commit`] or [`ProducerCore::abandon`]. Not `Clone`: the
/// mapping's writers (`RingMap::write_payload`, `RingMap::claimed_payload`)
/// take `&mut Claim`, so while one exists no one else writes the slot.
#[derive(Debug)]
pub(crate) struct Claim {
    slot: u32,
}

impl Claim {
    /// The claimed slot.
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }
}

/// A reader's hold on the frame in a slot: made only by [`try_hold`] once
/// its hold entry names the frame and the stamp still matches, so the
/// producer does not claim the slot (bar revocation after the hold
/// timeout). The holder keeps it while it reads the payload and drops it
/// when it clears the entry with [`release`]. Not `Clone`: the payload
/// slice `RingMap::held_payload` gives borrows it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Held {
    slot: u32,
}

impl Held {
    /// The held slot.
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }
}

/// What [`ProducerCore::claim`] observed besides the slot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimReport {
    /// Candidate slots skipped because a reader held them.
    pub(crate) skipped_held: u32,
    /// Holds overridden because they outlived the hold timeout.
    pub(crate) revoked: u32,
    /// The seq of the frame the claimed slot held before (0: it was empty).
    pub(crate) reused_seq: u64,
}

/// The producer's private state: which frame each slot holds and their age order.
pub(crate) struct ProducerCore {
    /// The seq each slot currently holds (0: empty or owned by a claim).
    slot_seq: Vec<u64>,
    /// Unclaimed slots, oldest content first (empty slots count as oldest).
    order: VecDeque<u32>,
    /// The seq the next commit publishes.
    next_seq: u64,
    /// Slots not to reuse until `quarantine_until_ns`: after a restart,
    /// readers of the previous producer may hold their frames while the new
    /// one does not scan their lease pages yet (they come back as the
    /// readers reconnect).
    quarantined: Vec<bool>,
    quarantine_until_ns: u64,
    /// Prefer reusing recently consumed slots ([`claim`](Self::claim)).
    warm: bool,
}

impl ProducerCore {
    /// A producer for a ring whose words are in `ring`'s current state: a
    /// fresh ring (all zero) or one left by an earlier producer, which it
    /// resumes: published frames stay readable and sequence numbers continue;
    /// slots caught mid-write are emptied.
    pub(crate) fn resume<R: RingWords>(ring: &R) -> Self {
        let n = ring.slot_count();
        let mut slots: Vec<(u64, u32)> = Vec::with_capacity(n as usize);
        let mut max_seq = ring.head().load(Ordering::Acquire);
        let mut slot_seq = vec![0; n as usize];
        for s in 0..n {
            let st = ring.stamp(s).load(Ordering::Acquire);
            match published_seq(st) {
                Some(seq) => {
                    slot_seq[s as usize] = seq;
                    max_seq = max_seq.max(seq);
                    slots.push((seq, s));
                }
                None => {
                    if st != 0 {
                        // Caught mid-write (or loaned) by a crash: its bytes are
                        // not a frame. No reader can hold it (holds need a
                        // published stamp), so it is safe to reset.
                        ring.stamp(s).store(0, Ordering::Release);
                    }
                    slots.push((0, s));
                }
            }
        }
        slots.sort_unstable();
        // A producer that died mid-claim may have left its announcement.
        ring.claiming().store(0, Ordering::Release);
        ProducerCore {
            slot_seq,
            order: slots.into_iter().map(|(_, s)| s).collect(),
            // Saturating: a planted head of u64::MAX must not overflow.
            next_seq: max_seq.saturating_add(1),
            quarantined: vec![false; n as usize],
            quarantine_until_ns: 0,
            warm: false,
        }
    }

    /// Keeps the slots `held(slot)` names untouched until `until_ns` (or
    /// [`lift_quarantine`](Self::lift_quarantine)), if they hold a frame.
    pub(crate) fn quarantine(&mut self, until_ns: u64, held: impl Fn(u32) -> bool) {
        for (s, q) in self.quarantined.iter_mut().enumerate() {
            *q = self.slot_seq[s] != 0 && held(s as u32);
        }
        self.quarantine_until_ns = until_ns;
    }

    /// Turns warm reuse on or off (see [`claim`](Self::claim)).
    pub(crate) fn set_warm_reuse(&mut self, on: bool) {
        self.warm = on;
    }

    /// Ends the quarantine: every reader of the previous producer is back.
    pub(crate) fn lift_quarantine(&mut self) {
        self.quarantine_until_ns = 0;
    }

    /// The seq each slot holds (0: empty or claimed).
    pub(crate) fn slot_seqs(&self) -> &[u64] {
        &self.slot_seq
    }

    /// The seq the next [`commit`](Self::commit) will publish.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Claims a slot no reader holds, or `None` if every unclaimed slot is
    /// held (the caller drops the frame). Never waits.
    ///
    /// Which slot: by default the oldest. With warm reuse
    /// ([`set_warm_reuse`](Self::set_warm_reuse)) it first tries, newest
    /// first, the slots whose frame every registered reader has consumed
    /// (its seq is at or below the least `consumed` word of their lease
    /// pages), never the newest frame; only then the oldest first as
    /// usual. When readers keep up this reuses the slot written one or two
    /// frames ago, whose lines are still in the caches, instead of cycling
    /// the whole ring through them. A frame some reader has not consumed is
    /// still only ever overwritten oldest first, so each reader's lag count
    /// is what it would be without it. Off while a quarantine runs (the
    /// previous producer's readers are not registered yet) and with no
    /// reader registered.
    ///
    /// `now_ns` and `hold_timeout_ns` implement revocation: a hold that has
    /// blocked claims for longer than the timeout is overridden (and counted
    /// in the reader's lease page so it can tell).
    pub(crate) fn claim<R: RingWords, L: LeaseWords>(
        &mut self,
        ring: &R,
        readers: &mut [ReaderSlot<L>],
        now_ns: u64,
        hold_timeout_ns: u64,
    ) -> (Option<Claim>, ClaimReport) {
        let mut report = ClaimReport::default();
        let quarantine = now_ns < self.quarantine_until_ns;
        // `order` is empty slots first, then frames by ascending seq; the
        // last entry is the newest frame. Positions tried by the warm pass
        // (a contiguous range, tried downwards) are skipped below.
        let mut tried = 0..0;
        if self.warm && !quarantine && !readers.is_empty() && self.order.len() >= 2 {
            // Relaxed: the value only steers the choice; the hold scan below
            // decides safety. A hostile reader's huge value cannot lower the
            // minimum, and a small one only turns the preference off.
            let consumed = readers
                .iter()
                .map(|r| r.lease.consumed().load(Ordering::Relaxed))
                .min()
                .unwrap_or(0);
            let newest = self.order.len() - 1;
            let mut hi = newest;
            while hi > 0 && self.slot_seq[self.order[hi - 1] as usize] > consumed {
                hi -= 1;
            }
            let mut pos = hi;
            while pos > 0 && self.slot_seq[self.order[pos - 1] as usize] != 0 {
                pos -= 1;
                if let Some(claim) =
                    self.try_claim(ring, readers, pos, now_ns, hold_timeout_ns, &mut report)
                {
                    return (Some(claim), report);
                }
            }
            tried = pos..hi;
        }
        for pos in (0..self.order.len()).filter(|p| !tried.contains(p)) {
            let slot = self.order[pos];
            if self.slot_seq[slot as usize] != 0 && self.quarantined[slot as usize] && quarantine {
                report.skipped_held += 1;
                continue;
            }
            if let Some(claim) =
                self.try_claim(ring, readers, pos, now_ns, hold_timeout_ns, &mut report)
            {
                return (Some(claim), report);
            }
        }
        (None, report)
    }

    /// Claims the slot at `order[pos]` unless a reader holds its frame.
    fn try_claim<R: RingWords, L: LeaseWords>(
        &mut self,
        ring: &R,
        readers: &mut [ReaderSlot<L>],
        pos: usize,
        now_ns: u64,
        hold_timeout_ns: u64,
        report: &mut ClaimReport,
    ) -> Option<Claim> {
        let slot = self.order[pos];
        let prev = self.slot_seq[slot as usize];
        if prev != 0 {
            // SYNC: Dekker with `try_hold`. Announce the claim, then the
            // SeqCst fence orders it before our hold loads: a reader either
            // sees the announcement (or the WRITING stamp that follows it)
            // and backs off, or its hold store is visible to `is_held`.
            // Release (on every store to `claiming`): a reader that
            // Acquires any later value also sees our earlier stamp stores.
            ring.claiming().store(slot + 1, Ordering::Release);
            fence(Ordering::SeqCst);
            if is_held(readers, prev, now_ns, hold_timeout_ns, report) {
                // Withdraw. The stamp was never touched, so a holder's
                // `still_intact` never sees a false WRITING.
                ring.claiming().store(0, Ordering::Release);
                report.skipped_held += 1;
                return None;
            }
        }
        ring.stamp(slot).store(STAMP_WRITING, Ordering::Relaxed);
        // SYNC: Release orders the WRITING stamp before the withdrawal of
        // the announcement, for readers that Acquire `claiming` == 0.
        ring.claiming().store(0, Ordering::Release);
        // SYNC: Acquire half pairs with the Release stores of 0 that
        // readers make when they drop a hold: their payload reads happen
        // before our writes. Release half orders the WRITING stamp before
        // the payload writes for seqlock-validating readers.
        fence(Ordering::AcqRel);
        self.order.remove(pos);
        self.slot_seq[slot as usize] = 0;
        report.reused_seq = prev;
        Some(Claim { slot })
    }

    /// Publishes the frame written into `claim`'s slot (payload and metadata
    /// with seq [`next_seq`](Self::next_seq) already in place). Returns the
    /// seq and whether a reader is asleep (the caller then wakes the futex).
    pub(crate) fn commit<R: RingWords, L: LeaseWords>(
        &mut self,
        ring: &R,
        readers: &[ReaderSlot<L>],
        claim: Claim,
    ) -> (u64, bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = claim.slot;
        // SYNC: Release pairs with the reader's Acquire stamp load: payload and
        // metadata written before are visible to a reader that sees `seq`.
        ring.stamp(slot)
            .store(stamp_published(seq), Ordering::Release);
        let ix = (seq % u64::from(ring.index_len())) as u32;
        // SYNC: Release, then `head` Release: a reader that Acquires a head >=
        // seq sees this index entry (or a later one, which its stamp check
        // then rejects).
        ring.index(ix).store(slot, Ordering::Release);
        ring.head().store(seq, Ordering::Release);
        self.slot_seq[slot as usize] = seq;
        self.order.push_back(slot);
        let wake = self.bump_notify(ring, readers);
        (seq, wake)
    }

    /// Gives a claimed slot back unpublished (a loan the caller gave up).
    pub(crate) fn abandon<R: RingWords>(&mut self, ring: &R, claim: Claim) {
        // No reader can hold an empty slot; put it first in line for reuse.
        ring.stamp(claim.slot).store(0, Ordering::Release);
        self.order.push_front(claim.slot);
    }

    /// Bumps the futex word and reports whether any reader sleeps on it.
    pub(crate) fn bump_notify<R: RingWords, L: LeaseWords>(
        &self,
        ring: &R,
        readers: &[ReaderSlot<L>],
    ) -> bool {
        // SYNC: Dekker with the reader's `waiting` store in `prepare_wait`:
        // our notify bump is ordered before our loads of `waiting`, theirs
        // the other way round, so a reader either sees the new notify value
        // (and does not sleep) or we see its waiting flag (and wake it).
        // The producer is the only writer (every other bump is also made
        // through `&mut Publisher`): a load and a store, not a locked RMW.
        let n = ring.notify().load(Ordering::Relaxed);
        ring.notify().store(n.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        // One OR per reader and no branch: almost always every flag is 0,
        // and an early exit would only add a compare and a jump per reader.
        readers
            .iter()
            .fold(0, |any, r| any | r.lease.waiting().load(Ordering::Relaxed))
            != 0
    }
}

/// Marks a hold entry whose value the producer no longer honours.
const REVOKED: u64 = u64::MAX;

/// Whether any reader's honoured hold entries name `seq`, overriding holds
/// older than the timeout.
///
/// This runs once per claim over every reader, so its per-reader cost is
/// what `publish` pays per registered reader. Readers of one ring almost
/// always share one hold limit: the scan is chosen once per claim from the
/// first reader's limit, and readers with that limit get a fixed-length,
/// unrolled run of loads and compares (no bounds check, no remainder loop,
/// no dispatch per reader); any other limit takes the general loop.
fn is_held<L: LeaseWords>(
    readers: &mut [ReaderSlot<L>],
    seq: u64,
    now_ns: u64,
    hold_timeout_ns: u64,
    report: &mut ClaimReport,
) -> bool {
    // The usual answer is "no": the slot claimed is the oldest, which every
    // reader has let go. Where the pages can say so in a few vector
    // compares, that is all a claim pays per reader.
    if !L::may_hold(readers.iter().map(|r| (&r.lease, r.hold_limit)), seq) {
        return false;
    }
    let args = (seq, now_ns, hold_timeout_ns);
    match readers.first().map(|r| r.hold_limit) {
        Some(1) => scan::<L, 1>(readers, args, report),
        Some(2) => scan::<L, 2>(readers, args, report),
        Some(4) => scan::<L, 4>(readers, args, report),
        Some(8) => scan::<L, 8>(readers, args, report),
        Some(16) => scan::<L, 16>(readers, args, report),
        _ => scan::<L, 0>(readers, args, report),
    }
}

/// [`is_held`] for readers whose hold limit is mostly `N` (0: no fixed
/// length).
#[inline(always)]
fn scan<L: LeaseWords, const N: usize>(
    readers: &mut [ReaderSlot<L>],
    (seq, now_ns, hold_timeout_ns): (u64, u64, u64),
    report: &mut ClaimReport,
) -> bool {
    let mut held = false;
    for r in readers.iter_mut() {
        // Fast path: one pass of loads and compares, no branch per entry.
        // Relaxed: ordered by the SeqCst fence in `claim` (and the AcqRel
        // fence after it when we go on to write). A hold stored after these
        // loads is one whose reader sees our announcement (Dekker).
        let all = r.lease.holds();
        let hit = match all.first_chunk::<N>() {
            Some(fixed) if N != 0 && r.hold_limit == N => names(fixed, seq),
            _ => names(&all[..r.hold_limit], seq),
        };
        if !hit {
            continue;
        }
        let holds = &all[..r.hold_limit];
        for (i, h) in holds.iter().enumerate() {
            if h.load(Ordering::Relaxed) != seq {
                continue;
            }
            let since = &mut r.blocked_since[i];
            if since.0 != seq {
                *since = (seq, now_ns);
            }
            if since.1 == REVOKED {
                continue; // revoked earlier: no longer honoured
            }
            if now_ns.saturating_sub(since.1) >= hold_timeout_ns {
                // Revoked: the reader learns it from its frame's stamp check and
                // from this counter; we stop honouring this value.
                r.lease.revoked().fetch_add(1, Ordering::Relaxed);
                report.revoked += 1;
                since.1 = REVOKED;
                continue;
            }
            held = true;
        }
    }
    held
}

/// Whether any of `holds` is `seq` (Relaxed loads; see [`is_held`]).
#[inline(always)]
fn names(holds: &[AtomicU64], seq: u64) -> bool {
    holds
        .iter()
        .fold(false, |hit, h| hit | (h.load(Ordering::Relaxed) == seq))
}

/// Outcome of one attempt to hold a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The frame is held in this slot until the hold entry is cleared.
    Held(Held),
    /// The frame was overwritten (or is being): it is gone.
    Gone,
    /// The frame has not been published yet.
    NotYet,
    /// The producer is deciding about this frame's slot right now, or is
    /// handing over to a successor: try again after the next notification.
    /// (Not `Gone`: the frame may well stay, and calling it lost would
    /// count a lag that did not happen.)
    Busy,
}

/// Tries to hold frame `seq` using hold entry `entry` (which must be 0).
/// On anything but [`Hold::Held`] the entry is left at 0.
pub(crate) fn try_hold<R: RingWords>(ring: &R, entry: &AtomicU64, seq: u64) -> Hold {
    // SYNC: Acquire pairs with the producer's Release store of head in commit.
    let head = ring.head().load(Ordering::Acquire);
    if seq == 0 || seq > head {
        return Hold::NotYet;
    }
    let slot = ring
        .index((seq % u64::from(ring.index_len())) as u32)
        .load(Ordering::Acquire);
    if slot >= ring.slot_count() {
        // Untrusted memory: an index entry outside the ring means no frame
        // (callers tell corruption from lag with `bad_index`).
        return Hold::Gone;
    }
    let want = stamp_published(seq);
    let stamp = ring.stamp(slot);
    if stamp.load(Ordering::Acquire) != want {
        return Hold::Gone;
    }
    // SYNC: Dekker with the producer's claim announcement in `claim`: our
    // hold store is ordered before the loads below by the SeqCst fence.
    // Release, not Relaxed: this entry may have just held the previous frame,
    // and a producer that loads this value (not the 0 `release` stored) must
    // still see that frame's payload reads done before it overwrites the slot
    // (its Acquire fence after the hold loads syncs with this store; a
    // Relaxed store would not continue `release`'s Release).
    entry.store(seq, Ordering::Release);
    fence(Ordering::SeqCst);
    // SYNC: Acquire pairs with the producer's Release stores of `claiming`;
    // reading any value from one makes its earlier WRITING stamps visible.
    let claiming = ring.claiming().load(Ordering::Acquire);
    if claiming == slot + 1 || claiming == CLAIM_ALL {
        entry.store(0, Ordering::Relaxed);
        return Hold::Busy;
    }
    // SYNC: Acquire pairs with the producer's Release publish of `seq`.
    if stamp.load(Ordering::Acquire) == want {
        Hold::Held(Held { slot })
    } else {
        entry.store(0, Ordering::Relaxed);
        Hold::Gone
    }
}

/// Freezes the ring for a handover and returns the slots readers hold: no
/// new hold succeeds after this (readers see [`Hold::Busy`]), and every hold
/// that did succeed is in the result, by the same Dekker argument as
/// [`ProducerCore::claim`]. The successor keeps those slots untouched until
/// the readers are back with it.
pub(crate) fn freeze_for_handover<R: RingWords, L: LeaseWords>(
    ring: &R,
    core: &ProducerCore,
    readers: &[ReaderSlot<L>],
) -> Vec<u32> {
    ring.claiming().store(CLAIM_ALL, Ordering::Release);
    fence(Ordering::SeqCst);
    let seqs = core.slot_seqs();
    let mut held = Vec::new();
    for r in readers {
        for i in 0..r.hold_limit {
            let v = r.lease.hold(i).load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            if let Some(slot) = seqs.iter().position(|&q| q == v) {
                held.push(slot as u32);
            }
        }
    }
    held.sort_unstable();
    held.dedup();
    held
}

/// The index entry for `seq` if it names a slot the ring does not have.
///
/// No producer writes such an entry, so seeing one is proof of a corrupt
/// ring; a reader checks this when [`try_hold`] says [`Hold::Gone`], to
/// report corruption instead of a lag that did not happen.
pub(crate) fn bad_index<R: RingWords>(ring: &R, seq: u64) -> Option<u32> {
    let slot = ring
        .index((seq % u64::from(ring.index_len())) as u32)
        .load(Ordering::Relaxed);
    (slot >= ring.slot_count()).then_some(slot)
}

/// Releases a hold taken by [`try_hold`]. The caller gives its [`Held`] up
/// with it: drops it now, or is itself being dropped (a frame guard).
pub(crate) fn release(entry: &AtomicU64) {
    // SYNC: Release pairs with the producer's AcqRel fence in `claim`: our
    // payload reads happen before it overwrites the slot.
    entry.store(0, Ordering::Release);
}

/// Whether frame `seq` is still in `slot` unmodified (a seqlock validation:
/// the Acquire fence orders the caller's earlier payload reads before the
/// re-load, as in crossbeam-utils' `SeqLock::validate_read`).
pub(crate) fn still_intact<R: RingWords>(ring: &R, slot: u32, seq: u64) -> bool {
    fence(Ordering::Acquire);
    ring.stamp(slot).load(Ordering::Relaxed) == stamp_published(seq)
}

/// Where a reader that fell behind resumes: the oldest seq >= `from` that
/// may still be in the ring (slow path: a scan of every stamp). `None` only
/// if `from` is past the head and no stamp names a frame >= `from`.
///
/// Every frame in `from..result` was overwritten, so a caller that counts
/// them as lagged counts exactly: the head is loaded before the scan, so
/// each frame up to it that is still in its slot shows its stamp to the scan
/// (a slot's stamp only moves on when the slot really is overwritten). A
/// frame past that head may be published during the scan in a slot the
/// scan has already passed, so the result is never beyond `head + 1`; that
/// frame's own [`try_hold`] tells. The same bound keeps an untrusted stamp
/// naming a frame far past the head from sending the reader to a seq that
/// never comes.
pub(crate) fn oldest_from<R: RingWords>(ring: &R, from: u64) -> Option<u64> {
    // SYNC: Acquire pairs with the Release store of head in `commit`: the
    // stamps of every frame up to `head` are visible to the scan below.
    let head = ring.head().load(Ordering::Acquire);
    let oldest = (0..ring.slot_count())
        .filter_map(|s| published_seq(ring.stamp(s).load(Ordering::Acquire)))
        .filter(|&seq| seq >= from)
        .min();
    let bound = head.saturating_add(1);
    match oldest {
        Some(seq) => Some(seq.min(bound.max(from))),
        None if from <= bound => Some(bound),
        None => None,
    }
}

/// Announces that the reader is about to sleep; returns false if a new
/// frame arrived meanwhile (`notify` moved past `seen`), in which case it
/// must not sleep. The caller clears `waiting` after waking.
pub(crate) fn prepare_wait<R: RingWords>(ring: &R, waiting: &AtomicU32, seen: u32) -> bool {
    waiting.store(1, Ordering::Relaxed);
    // SYNC: Dekker with `bump_notify`; see there.
    fence(Ordering::SeqCst);
    ring.notify().load(Ordering::Relaxed) == seen
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Lease words in ordinary memory.
    #[derive(Default)]
    struct Words {
        holds: [AtomicU64; MAX_HOLDS as usize],
        waiting: AtomicU32,
        revoked: AtomicU32,
        consumed: AtomicU64,
    }

    impl LeaseWords for Words {
        fn holds(&self) -> &[AtomicU64] {
            &self.holds
        }
        fn waiting(&self) -> &AtomicU32 {
            &self.waiting
        }
        fn revoked(&self) -> &AtomicU32 {
            &self.revoked
        }
        fn consumed(&self) -> &AtomicU64 {
            &self.consumed
        }
    }

    fn held(readers: &mut [ReaderSlot<Words>], seq: u64) -> bool {
        is_held(readers, seq, 0, u64::MAX, &mut ClaimReport::default())
    }

    /// The scan is chosen from the first reader's limit: every mix of
    /// limits must still honour exactly each reader's first `hold_limit`
    /// entries, whichever path (fixed-length or general) a reader takes.
    #[test]
    fn every_mix_of_hold_limits_honours_exactly_each_readers_entries() {
        let limits = [1u32, 2, 3, 4, 5, 8, 15, 16];
        for &first in &limits {
            let mut readers: Vec<ReaderSlot<Words>> = std::iter::once(first)
                .chain(limits.iter().copied())
                .enumerate()
                .map(|(id, l)| ReaderSlot::new(id as u32, Words::default(), l))
                .collect();
            let seq = 77;
            assert!(!held(&mut readers, seq), "first {first}: nothing held");
            for r in 0..readers.len() {
                let limit = readers[r].hold_limit;
                for i in 0..MAX_HOLDS as usize {
                    readers[r].lease.holds[i].store(seq, Ordering::Relaxed);
                    assert_eq!(
                        held(&mut readers, seq),
                        i < limit,
                        "first reader's limit {first}, reader {r} (limit {limit}), entry {i}"
                    );
                    // Another seq in the same entry is never a match.
                    assert!(!held(&mut readers, seq + 1));
                    readers[r].lease.holds[i].store(0, Ordering::Relaxed);
                }
            }
        }
    }
}
