//! Loom models of the ring protocol ([`super::protocol`]).
//!
//! The protocol functions are generic over where the ring's words live
//! ([`RingWords`], [`LeaseWords`]). Production runs them on the shared
//! mapping; these models run the very same functions on heap memory whose
//! atomics are loom's (`crate::sync::atomic` switches under `--cfg loom`), so
//! loom explores every interleaving and every value the C11 memory model
//! lets a load return, up to the preemption bound.
//!
//! # Running
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --release --lib --no-default-features loom
//! ```
//!
//! (`.ci/run` does exactly this.) Without `LOOM_MAX_PREEMPTIONS` the models
//! use a preemption bound of 2 themselves; a larger bound is a much longer
//! run. Add `-- --nocapture` to see, per model, how often each interesting
//! outcome was reached. To replay a failure: `LOOM_CHECKPOINT_FILE=f.json`
//! and `LOOM_LOCATION=1` (see loom's docs).
//!
//! # Payload, two ways
//!
//! * For the hold protocol the payload of a slot is a
//!   `loom::cell::UnsafeCell<[u64; 2]>`: the producer writes it with
//!   `with_mut`, readers read it with `with`. Loom's race detector fails the
//!   model if any write is not ordered (happens-before) against a read, so
//!   "a held slot is never written" is checked by loom itself, not by us,
//!   and this is exactly the guarantee that makes production's `&[u8]` into
//!   the mapping sound.
//! * For seqlock validation ([`still_intact`]) and revocation, where a
//!   reader may legitimately read bytes the producer is overwriting, the
//!   payload is two `AtomicU64` words accessed `Relaxed` (the model's stand-in
//!   for plain byte copies). Both words carry the frame's seq; a reader that
//!   sees two different values has a torn frame and must never accept it.
//!
//! # The models and what each proves
//!
//! | model | threads | proves |
//! | --- | --- | --- |
//! | [`loom_every_frame_wrap`] | producer, 2 every-frame readers; 2 slots, 3 frames | no torn frame is accepted; a held slot is never written (race detector), also when a reader reuses its hold entry for the next frame; the lag count is exact: received + Σ Lagged(n) = last − first position, seqs strictly increase, each reader ends at head + 1, and no frame counted as lagged is still in the ring |
//! | [`loom_warm_reuse_loses_no_frame`] | producer with warm reuse, 2 every-frame readers saying how far they got; 3 slots, 3 + 3 frames | with slots reused out of age order: no torn frame, no held slot written, and no reader loses a frame while a consumed unheld slot exists (a claim taking an unconsumed frame shows as a lag); a claim did reuse a slot newer than the oldest |
//! | [`loom_hold_across_wraps`] | producer, a reader holding frame 1 across wraps, an every-frame reader; 2 slots, 1 + 3 frames | the held frame stays intact and validates; the producer never waits and never claims the held slot; with every slot held it drops (counted, no seq used up); the every-frame reader's lag is exact as above |
//! | [`loom_seqlock_unheld_read`] | producer (no readers registered), an optimistic reader; 2 slots, 3 frames | a reader that reads without a hold and validates with [`still_intact`] never accepts mixed words |
//! | [`loom_futex_no_lost_wakeup`] | producer, a blocking reader; 2 slots, 2 frames | [`prepare_wait`] / `bump_notify`: a reader never sleeps on a futex value no wake follows (no lost wake-up) |
//! | [`loom_revocation_is_never_silent`] | producer with hold timeout 0, a holding reader; 1 slot | an overridden hold is learned: [`still_intact`] is false once the slot changed, never true with changed data, and the lease's revoked counter counts it |
//! | [`loom_handover_freeze_sees_every_hold`] | a producer freezing for handover, a reader taking two holds; 2 slots | every hold that succeeds is in the set [`freeze_for_handover`] gives the successor; later holds see `Busy` |
//!
//! The every-frame reader is `Subscriber::step_every` re-typed over the heap
//! ring (`try_hold(next)`: `Held` read + release, `NotYet`/`Busy` look again,
//! `Gone` resume at `oldest_from(next + 1)` or `head + 1`); keep the two in
//! step.
//!
//! Every model also counts (across all executions) how often its interesting
//! outcomes happened, and fails if one never did: a model whose drop, revoke,
//! sleep or torn-read path is unreachable would prove nothing about it.
//!
//! Spin-waiting: loom explores every schedule, including ones where two
//! threads that wait by yielding take turns forever while the thread they
//! wait for never runs (it reports "exceeded maximum number of branches").
//! So at most one thread per model waits without bound; reader threads give
//! up after [`PATIENCE`] empty looks, and the model's main thread finishes
//! them once the producer is done.
//!
//! Each model was checked against deliberate breaks of `protocol.rs` (a
//! fence dropped, an ordering weakened, a store removed or moved): every
//! break fails at least one model. The one exception is commit's stamp
//! store weakened to Relaxed, which no reader path can tell: each reaches a
//! stamp through an Acquire load of `head`, stored after it.
//!
//! # The orderings under test
//!
//! Holds are hazard pointers (Michael 2004) made safe by Dekker's pattern:
//! the reader stores its hold entry, issues a SeqCst fence, then loads the
//! producer's claim announcement (`claiming`) and re-loads the stamp; the
//! producer announces the slot it considers, issues a SeqCst fence and loads
//! the hold entries. At least one of them sees the other's store: the reader
//! backs off (`Busy`, or `Gone` once the slot is stamped WRITING) or the
//! producer skips the slot. Readers' payload reads are ordered before the
//! producer's next write of the slot by the Release stores of the hold entry
//! (`release`'s 0, and the next seq `try_hold` stores in the same entry)
//! paired with the Acquire half of the producer's fence after its hold
//! loads. Seqlock validation is Lamport's, with crossbeam-utils'
//! `SeqLock::validate_read` fences. The futex sleep is Dekker's pattern
//! again, between the reader's `waiting` flag and the producer's bump of
//! `notify`.
//!
//! Loom follows the C++20 model closely, including release sequences (a
//! Relaxed store does not continue an earlier Release store's sequence, which
//! is what catches a next-frame hold stored Relaxed in the entry that
//! `release` just cleared), but it makes SeqCst fences
//! synchronise with each other in the order they run, which C++ does not: a
//! bug that needs exactly that difference would slip through. The SYNC
//! comments in `protocol.rs` argue from the C++ rules.

use crate::ring::layout::Geometry;
use crate::ring::protocol::{
    bad_index, freeze_for_handover, oldest_from, prepare_wait, release, stamp_published,
    still_intact, try_hold, Hold, LeaseWords, ProducerCore, ReaderSlot, RingWords,
};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::collections::BTreeMap;

/// Payload words per slot (both carry the frame's seq).
const WORDS: usize = 2;
/// Hold entries per lease page in the models (production has `MAX_HOLDS`;
/// the producer only ever looks at the first `hold_limit`).
const HOLDS: usize = 2;
/// A hold timeout that never expires.
const NO_TIMEOUT: u64 = u64::MAX;

/// Runs `f` under loom with the CI's preemption bound unless the
/// environment (`LOOM_MAX_PREEMPTIONS`) asks for another.
fn check<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// Counts, across all executions of one model, how often each interesting
/// outcome happened (plain `std` state: loom runs a model's threads on one OS
/// thread, and these counters are no part of the model).
#[derive(Clone, Default)]
struct Reached(std::sync::Arc<std::sync::Mutex<BTreeMap<&'static str, u64>>>);

impl Reached {
    fn hit(&self, what: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    /// Prints the counts and fails if one of `required` never happened.
    fn require(&self, model: &str, required: &[&'static str]) {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!("{model}: {counts:?}");
        for what in required {
            assert!(
                counts.get(what).copied().unwrap_or(0) > 0,
                "{model}: no execution reached `{what}`, so the model proves nothing about it"
            );
        }
    }
}

// ===== heap-backed ring and lease words =====

/// A ring on the heap: the protocol words plus both payload models.
struct HeapRing {
    stamps: Vec<AtomicU64>,
    index: Vec<AtomicU32>,
    head: AtomicU64,
    notify: AtomicU32,
    claiming: AtomicU32,
    /// Payload for the hold protocol: loom checks every access for races.
    cells: Vec<UnsafeCell<[u64; WORDS]>>,
    /// Payload for seqlock validation: may be read while being written.
    words: Vec<[AtomicU64; WORDS]>,
}

impl HeapRing {
    fn new(slots: u32) -> Arc<HeapRing> {
        // The index length production uses for this slot count.
        let index_len = Geometry {
            slot_count: slots,
            max_frame_bytes: 4096,
            page_size: 4096,
        }
        .layout()
        .expect("model geometry is valid")
        .index_len;
        Arc::new(HeapRing {
            stamps: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            index: (0..index_len).map(|_| AtomicU32::new(0)).collect(),
            head: AtomicU64::new(0),
            notify: AtomicU32::new(0),
            claiming: AtomicU32::new(0),
            cells: (0..slots).map(|_| UnsafeCell::new([0; WORDS])).collect(),
            words: (0..slots)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        })
    }

    /// Producer: writes frame `seq` into the claimed `slot`'s cell.
    fn write_cell(&self, slot: u32, seq: u64) {
        self.cells[slot as usize].with_mut(|p| {
            // SAFETY: `slot` is claimed by the caller (stamp WRITING, no hold
            // honoured); that no reader reads it concurrently is the very
            // property loom checks on this access.
            unsafe { *p = [seq; WORDS] }
        });
    }

    /// Reader: reads the cell of a slot it holds.
    fn read_cell(&self, slot: u32) -> [u64; WORDS] {
        self.cells[slot as usize].with(|p| {
            // SAFETY: the caller holds the frame in `slot` (`Hold::Held`), so
            // the producer does not write it; loom checks that too.
            unsafe { *p }
        })
    }

    /// Producer: writes frame `seq` into `slot`'s words, one at a time (a
    /// reader may see a mix). Relaxed like production's plain byte copies:
    /// `claim`'s fences order them after the WRITING stamp, `commit`'s
    /// Release store before the new stamp.
    fn write_words(&self, slot: u32, seq: u64) {
        for w in &self.words[slot as usize] {
            w.store(seq, Ordering::Relaxed);
        }
    }

    /// Reader: reads `slot`'s words without any guarantee (validate after).
    fn read_words(&self, slot: u32) -> [u64; WORDS] {
        let w = &self.words[slot as usize];
        [w[0].load(Ordering::Relaxed), w[1].load(Ordering::Relaxed)]
    }
}

impl RingWords for HeapRing {
    fn slot_count(&self) -> u32 {
        self.stamps.len() as u32
    }
    fn stamp(&self, slot: u32) -> &AtomicU64 {
        &self.stamps[slot as usize]
    }
    fn index_len(&self) -> u32 {
        self.index.len() as u32
    }
    fn index(&self, i: u32) -> &AtomicU32 {
        &self.index[i as usize]
    }
    fn head(&self) -> &AtomicU64 {
        &self.head
    }
    fn notify(&self) -> &AtomicU32 {
        &self.notify
    }
    fn claiming(&self) -> &AtomicU32 {
        &self.claiming
    }
}

/// One reader's lease page on the heap.
struct HeapLease {
    holds: [AtomicU64; HOLDS],
    waiting: AtomicU32,
    revoked: AtomicU32,
    consumed: AtomicU64,
}

/// A lease page shared by its reader and the producer.
#[derive(Clone)]
struct Lease(Arc<HeapLease>);

impl Lease {
    fn new() -> Lease {
        Lease(Arc::new(HeapLease {
            holds: [AtomicU64::new(0), AtomicU64::new(0)],
            waiting: AtomicU32::new(0),
            revoked: AtomicU32::new(0),
            consumed: AtomicU64::new(0),
        }))
    }
}

impl LeaseWords for Lease {
    fn holds(&self) -> &[AtomicU64] {
        &self.0.holds
    }
    fn waiting(&self) -> &AtomicU32 {
        &self.0.waiting
    }
    fn revoked(&self) -> &AtomicU32 {
        &self.0.revoked
    }
    fn consumed(&self) -> &AtomicU64 {
        &self.0.consumed
    }
}

// ===== the producer, as `Publisher::publish` drives the protocol =====

/// Which payload model the producer writes.
#[derive(Clone, Copy)]
enum Payload {
    Cell,
    Words,
}

/// A published frame.
struct Sent {
    slot: u32,
    seq: u64,
    wake: bool,
}

/// The producer side: `ProducerCore` plus the registered readers, driven like
/// `Publisher::publish` (claim, write payload + meta, commit).
struct Producer {
    core: ProducerCore,
    ring: Arc<HeapRing>,
    readers: Vec<ReaderSlot<Lease>>,
    payload: Payload,
    hold_timeout: u64,
    /// The model's clock: one tick per publish attempt.
    now: u64,
    published: u64,
    dropped: u64,
    revoked: u32,
    /// Claims that reused a slot whose frame was not the oldest in the ring.
    reused_newer: u32,
}

impl Producer {
    /// Turns on warm reuse (`ProducerCore::set_warm_reuse`).
    fn warm(mut self) -> Producer {
        self.core.set_warm_reuse(true);
        self
    }

    fn new(
        ring: &Arc<HeapRing>,
        leases: &[Lease],
        hold_limit: u32,
        payload: Payload,
        hold_timeout: u64,
    ) -> Producer {
        Producer {
            core: ProducerCore::resume(&**ring),
            ring: ring.clone(),
            readers: leases
                .iter()
                .enumerate()
                .map(|(i, l)| ReaderSlot::new(i as u32 + 1, l.clone(), hold_limit))
                .collect(),
            payload,
            hold_timeout,
            now: 0,
            published: 0,
            dropped: 0,
            revoked: 0,
            reused_newer: 0,
        }
    }

    /// One publish attempt: `None` if every slot was held and the frame was
    /// dropped (claim returned without waiting).
    fn publish(&mut self) -> Option<Sent> {
        self.now += 1;
        let seq = self.core.next_seq();
        let oldest = self
            .core
            .slot_seqs()
            .iter()
            .copied()
            .filter(|&q| q != 0)
            .min();
        let (claim, report) =
            self.core
                .claim(&*self.ring, &mut self.readers, self.now, self.hold_timeout);
        self.revoked += report.revoked;
        if oldest.is_some_and(|o| report.reused_seq > o) {
            self.reused_newer += 1;
        }
        let Some(claim) = claim else {
            self.dropped += 1;
            // A dropped frame does not use up a seq number.
            assert_eq!(self.core.next_seq(), seq);
            return None;
        };
        let slot = claim.slot();
        assert!(slot < self.ring.slot_count());
        match self.payload {
            Payload::Cell => self.ring.write_cell(slot, seq),
            Payload::Words => self.ring.write_words(slot, seq),
        }
        let (committed, wake) = self.core.commit(&*self.ring, &self.readers, claim);
        assert_eq!(committed, seq);
        self.published += 1;
        Some(Sent { slot, seq, wake })
    }
}

// ===== an every-frame reader, as `Subscriber::step_every` =====

/// What one step of an every-frame reader gave.
enum Step {
    Frame,
    Lagged,
    Empty,
}

/// An every-frame reader: `Subscriber::try_frame` + `step_every`, with the
/// hold entry `ReaderLease::take` would pick (the lowest free one: entry 0,
/// reused for every frame, as in production).
struct EveryFrame {
    ring: Arc<HeapRing>,
    lease: Lease,
    /// Position at open (`head + 1`, as `Subscriber::with_options`).
    first: u64,
    /// The next seq wanted.
    next: u64,
    received: Vec<u64>,
    lagged: u64,
    /// The frames counted in `Lagged(n)`s.
    lagged_seqs: Vec<u64>,
}

impl EveryFrame {
    fn open(ring: &Arc<HeapRing>, lease: Lease) -> EveryFrame {
        let next = ring.head().load(Ordering::Acquire) + 1;
        // As `Subscriber::register` (`LeaseMap::say_consumed`).
        lease.consumed().store(next - 1, Ordering::Relaxed);
        EveryFrame {
            ring: ring.clone(),
            lease,
            first: next,
            next,
            received: Vec::new(),
            lagged: 0,
            lagged_seqs: Vec::new(),
        }
    }

    fn step(&mut self) -> Step {
        let step = self.step_once();
        // As `Subscriber::try_frame`: say how far it got once it moved on.
        self.lease
            .consumed()
            .store(self.next - 1, Ordering::Relaxed);
        step
    }

    fn step_once(&mut self) -> Step {
        let hold = self.lease.hold(0);
        let seq = self.next;
        match try_hold(&*self.ring, hold, seq) {
            Hold::Held(held) => {
                let slot = held.slot();
                self.next = seq + 1;
                // The frame guard's life: read while held, then drop.
                let got = self.ring.read_cell(slot);
                assert_eq!(got, [seq; WORDS], "accepted a torn or wrong frame");
                if let Some(&last) = self.received.last() {
                    assert!(seq > last, "received {seq} after {last}");
                }
                self.received.push(seq);
                release(hold);
                Step::Frame
            }
            // Busy: the producer is deciding about this slot; look again.
            Hold::NotYet | Hold::Busy => Step::Empty,
            Hold::Gone => {
                // Exactly `Subscriber::step_every` (which reports a corrupt
                // index instead of a lag: never on a producer's ring).
                assert_eq!(bad_index(&*self.ring, seq), None, "false corruption");
                let resume = oldest_from(&*self.ring, seq.saturating_add(1)).unwrap_or_else(|| {
                    let head = self.ring.head().load(Ordering::Acquire);
                    head.max(seq).saturating_add(1)
                });
                self.next = resume;
                let n = resume.saturating_sub(seq);
                assert!(n >= 1, "Lagged(0)");
                self.lagged += n;
                self.lagged_seqs.extend(seq..resume);
                Step::Lagged
            }
        }
    }

    /// The lag count is exact: every position between open and now was
    /// either received or counted in a `Lagged(n)`.
    fn check_accounting(&self) {
        assert_eq!(
            self.received.len() as u64 + self.lagged,
            self.next - self.first,
            "received {:?} + lagged {} != positions {}..{}",
            self.received,
            self.lagged,
            self.first,
            self.next
        );
    }

    /// No `Lagged(n)` counted a frame that was not overwritten: at the end
    /// of the model (no producer running), none of them is in the ring. (A
    /// frame once overwritten never comes back, so this can only catch a
    /// lag that did not happen.)
    fn check_lags_were_real(&self) {
        for &g in &self.lagged_seqs {
            for (s, st) in self.ring.stamps.iter().enumerate() {
                assert_ne!(
                    st.load(Ordering::Relaxed),
                    stamp_published(g),
                    "counted frame {g} as lagged, but it is still in slot {s}"
                );
            }
        }
    }
}

// ===== the models =====

/// How many empty looks (`Hold::NotYet` or `Hold::Busy`) a reader thread makes before it
/// stops and leaves the rest to the model's main thread, which finishes it
/// once the producer is done. Loom explores every schedule, including ones
/// where two spin-waiting threads take turns forever while the thread they
/// wait for never runs, so at most one thread per model waits without bound.
const PATIENCE: u32 = 1;

impl EveryFrame {
    /// Steps until it has passed frame `last`, or found nothing new
    /// `patience` times.
    fn run(&mut self, last: u64, mut patience: u32, reached: &Reached) {
        while self.next <= last {
            match self.step() {
                Step::Frame => {}
                Step::Lagged => reached.hit("lagged"),
                Step::Empty if patience == 0 => return,
                Step::Empty => {
                    patience -= 1;
                    thread::yield_now();
                }
            }
        }
    }
}

/// One producer publishes 3 frames into 2 slots (it wraps) while two
/// every-frame readers hold, read and release each frame.
///
/// Proves: no torn frame is accepted (payload == seq); a held slot is never
/// written (loom's race detector on the cells, including the case where a
/// reader reuses its hold entry for the next frame); the lag count is exact
/// (received + Σ Lagged(n) == last − first position, received seqs strictly
/// increase, and every reader ends exactly at head + 1).
#[test]
fn loom_every_frame_wrap() {
    const SLOTS: u32 = 2;
    const FRAMES: u64 = 3;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let leases = [Lease::new(), Lease::new()];
        let mut producer = Producer::new(&ring, &leases, 1, Payload::Cell, NO_TIMEOUT);
        r.hit("execution");
        let readers: Vec<_> = leases
            .iter()
            .map(|lease| {
                // Opened (subscribed) before the first frame: first position 1.
                let mut rd = EveryFrame::open(&ring, lease.clone());
                let r = r.clone();
                thread::spawn(move || {
                    rd.run(FRAMES, PATIENCE, &r);
                    rd
                })
            })
            .collect();
        // FRAMES captures; one is dropped if both slots are held.
        for _ in 0..FRAMES {
            producer.publish();
        }
        assert_eq!(producer.published + producer.dropped, FRAMES);
        if producer.dropped > 0 {
            r.hit("dropped (both slots held)");
        }
        assert_eq!(producer.revoked, 0);
        let head = ring.head().load(Ordering::Acquire);
        assert_eq!(head, producer.published);
        for h in readers {
            let mut rd = h.join().expect("reader");
            // The rest of the stream, now without a concurrent producer.
            rd.run(head, 0, &r);
            rd.check_accounting();
            rd.check_lags_were_real();
            assert_eq!(rd.next, head + 1, "reader did not end at head + 1");
            if rd.received.len() as u64 == FRAMES {
                r.hit("reader got every frame");
            }
        }
    });
    reached.require(
        "loom_every_frame_wrap",
        &[
            "lagged",
            "reader got every frame",
            "dropped (both slots held)",
        ],
    );
}

/// Warm reuse: 3 slots hold frames 1-3, which two every-frame readers have
/// read and said so in their lease pages; then the producer, preferring the
/// slots of frames both have consumed (newest first, never the newest
/// frame), publishes 3 more while the readers hold, read, release and say
/// how far they got.
///
/// Proves: with slots reused out of age order, no torn frame is accepted and
/// no held slot written (race detector); no reader loses a frame: with
/// frame 1 consumed by both and never the newest, there is always a
/// consumed unheld slot, so a claim that took a frame some reader had not
/// consumed (stale or misread position, a wrong bound) shows as a lag; and
/// the preference is really exercised (a claim reused a slot newer than
/// the oldest frame). Lag counting with out-of-order holes is the same code
/// as in `loom_every_frame_wrap`; that only consumed frames are taken out
/// of age order when one reader lags is `tests/in_process.rs`
/// `warm_reuse_takes_only_consumed_frames_out_of_order`.
#[test]
fn loom_warm_reuse_loses_no_frame() {
    const SLOTS: u32 = 3;
    const FRAMES: u64 = 6;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let leases = [Lease::new(), Lease::new()];
        let mut producer = Producer::new(&ring, &leases, 1, Payload::Cell, NO_TIMEOUT).warm();
        r.hit("execution");
        let mut readers: Vec<_> = leases
            .iter()
            .map(|lease| EveryFrame::open(&ring, lease.clone()))
            .collect();
        // Frames 1-3, read by both before anything runs concurrently.
        for _ in 0..SLOTS {
            producer.publish().expect("a free slot");
        }
        for rd in &mut readers {
            rd.run(u64::from(SLOTS), 0, &r);
            assert_eq!(rd.received.len() as u64, u64::from(SLOTS));
        }
        let threads: Vec<_> = readers
            .into_iter()
            .map(|mut rd| {
                let r = r.clone();
                thread::spawn(move || {
                    rd.run(FRAMES, PATIENCE, &r);
                    rd
                })
            })
            .collect();
        for _ in u64::from(SLOTS)..FRAMES {
            producer
                .publish()
                .expect("a consumed unheld slot is always there");
        }
        if producer.reused_newer > 0 {
            r.hit("reused a slot newer than the oldest frame");
        }
        let head = ring.head().load(Ordering::Acquire);
        assert_eq!(head, FRAMES);
        for h in threads {
            let mut rd = h.join().expect("reader");
            rd.run(head, 0, &r);
            rd.check_accounting();
            assert_eq!(rd.lagged, 0, "lost frames {:?}", rd.lagged_seqs);
            assert_eq!(rd.received, (1..=FRAMES).collect::<Vec<_>>());
        }
    });
    reached.require(
        "loom_warm_reuse_loses_no_frame",
        &["reused a slot newer than the oldest frame"],
    );
}

/// A reader holds frame 1 while the producer publishes three more into two
/// slots (so it wraps over the other slot repeatedly), and a second
/// every-frame reader reads along.
///
/// Proves: the held frame stays intact (its cell is read while the producer
/// runs and again after it is done: a write would be a race loom reports, or
/// a wrong value) and still validates; the producer never claims the held
/// slot and never waits: each `claim` returns another slot or `None` at once
/// (every slot held), which is counted as a drop and does not use up a seq.
#[test]
fn loom_hold_across_wraps() {
    const SLOTS: u32 = 2;
    const MORE: u64 = 3;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let holder = Lease::new();
        let every = Lease::new();
        let mut producer = Producer::new(
            &ring,
            &[holder.clone(), every.clone()],
            1,
            Payload::Cell,
            NO_TIMEOUT,
        );
        r.hit("execution");
        // Frame 1, held before the producer goes on (the racing first hold
        // is `loom_every_frame_wrap`'s business).
        let first = producer.publish().expect("an empty ring has a free slot");
        let entry = holder.hold(0);
        let Hold::Held(held) = try_hold(&*ring, entry, 1) else {
            panic!("frame 1 not holdable on a quiet ring");
        };
        let held_slot = held.slot();
        assert_eq!((first.seq, held_slot), (1, first.slot));

        // Subscribed after frame 1: first position 2.
        let mut rd = EveryFrame::open(&ring, every);
        let every_thread = {
            let r = r.clone();
            thread::spawn(move || {
                rd.run(1 + MORE, PATIENCE, &r);
                rd
            })
        };
        let producer_thread = thread::spawn(move || {
            // Never a retry, a yield or a wait: each attempt returns at once,
            // with a slot other than the held one, or a drop.
            for _ in 0..MORE {
                if let Some(sent) = producer.publish() {
                    assert_ne!(sent.slot, held_slot, "claimed a held slot");
                }
            }
            producer
        });

        // The guard's life: read while the producer wraps around us...
        assert_eq!(
            ring.read_cell(held_slot),
            [1; WORDS],
            "held frame overwritten"
        );
        let producer = producer_thread.join().expect("producer");
        // ...and after it is done.
        assert_eq!(
            ring.read_cell(held_slot),
            [1; WORDS],
            "held frame overwritten"
        );
        assert!(still_intact(&*ring, held_slot, 1), "held frame not intact");
        release(entry);

        assert_eq!(producer.published + producer.dropped, 1 + MORE);
        assert_eq!(producer.core.next_seq(), producer.published + 1);
        if producer.dropped > 0 {
            r.hit("dropped (every slot held)");
        }
        if producer.published == 1 + MORE {
            r.hit("published all around the held slot");
        }

        let mut rd = every_thread.join().expect("every-frame reader");
        let head = ring.head().load(Ordering::Acquire);
        assert_eq!(head, producer.published);
        rd.run(head, 0, &r);
        rd.check_accounting();
        rd.check_lags_were_real();
        assert_eq!(rd.next, head + 1, "reader did not end at head + 1");
    });
    reached.require(
        "loom_hold_across_wraps",
        &[
            "dropped (every slot held)",
            "published all around the held slot",
        ],
    );
}

/// A reader that reads a frame's words without holding it and validates
/// them with [`still_intact`] (an optimistic seqlock read, as in
/// crossbeam-utils' `SeqLock::optimistic_read` + `validate_read`), while the
/// producer overwrites that slot (3 frames, 2 slots, no readers registered,
/// so nothing stops it).
///
/// Proves: a validated read is never torn (both words == seq).
#[test]
fn loom_seqlock_unheld_read() {
    const SLOTS: u32 = 2;
    const FRAMES: u64 = 3;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let mut producer = Producer::new(&ring, &[], 1, Payload::Words, NO_TIMEOUT);
        let reader = {
            let (ring, r) = (ring.clone(), r.clone());
            thread::spawn(move || {
                // Frame 1: its slot is the one frame 3 overwrites.
                let seq = 1;
                // SYNC: Acquire loads as in `try_hold`: a head >= seq shows
                // the index entry; a stamp == seq shows the payload.
                while ring.head().load(Ordering::Acquire) < seq {
                    thread::yield_now();
                }
                let ix = (seq % u64::from(ring.index_len())) as u32;
                let slot = ring.index(ix).load(Ordering::Acquire);
                if ring.stamp(slot).load(Ordering::Acquire) != stamp_published(seq) {
                    r.hit("gone before the read");
                    return;
                }
                let words = ring.read_words(slot);
                if still_intact(&*ring, slot, seq) {
                    assert_eq!(words, [seq; WORDS], "accepted a torn frame");
                    r.hit("accepted intact");
                } else if words != [seq; WORDS] {
                    r.hit("rejected torn");
                } else {
                    r.hit("rejected (overwrite began after the read)");
                }
            })
        };
        for _ in 0..FRAMES {
            producer.publish().expect("no reader holds anything");
        }
        reader.join().expect("reader");
    });
    reached.require(
        "loom_seqlock_unheld_read",
        &["accepted intact", "rejected torn"],
    );
}

/// The futex of the ring, as the kernel implements `FUTEX_WAIT`/`FUTEX_WAKE`
/// on `notify`: the wait compares the word under the futex lock and sleeps
/// only if it still equals `seen`; a wake wakes everyone asleep. Beyond the
/// kernel, it knows when the producer has finished, so a reader left asleep
/// with no wake coming fails the model with a clear message (instead of a
/// loom deadlock report).
struct Futex {
    state: Mutex<FutexState>,
    cv: Condvar,
}

struct FutexState {
    wakes: u64,
    producer_done: bool,
}

impl Futex {
    fn new() -> Arc<Futex> {
        Arc::new(Futex {
            state: Mutex::new(FutexState {
                wakes: 0,
                producer_done: false,
            }),
            cv: Condvar::new(),
        })
    }

    /// `FUTEX_WAIT(notify, seen)`: returns false at once if the word moved,
    /// otherwise sleeps until a wake and returns true.
    fn wait(&self, notify: &AtomicU32, seen: u32) -> bool {
        let mut st = self.state.lock().expect("futex lock");
        // The kernel's check: atomic with respect to `wake` (the lock).
        if notify.load(Ordering::Relaxed) != seen {
            return false;
        }
        let wakes = st.wakes;
        while st.wakes == wakes {
            assert!(
                !st.producer_done,
                "lost wake-up: the reader sleeps on notify == {seen}, and the producer \
                 finished without waking it (bump_notify saw waiting == 0)"
            );
            st = self.cv.wait(st).expect("futex lock");
        }
        true
    }

    /// `FUTEX_WAKE(notify, all)`.
    fn wake(&self) {
        self.state.lock().expect("futex lock").wakes += 1;
        self.cv.notify_all();
    }

    /// Model bookkeeping: the producer will publish (and wake) no more.
    fn producer_done(&self) {
        self.state.lock().expect("futex lock").producer_done = true;
        self.cv.notify_all();
    }
}

/// A blocking every-frame reader (`Subscriber::recv_until`: load `seen`,
/// look for a frame, `prepare_wait`, futex wait, clear `waiting`) against a
/// producer that publishes 2 frames and wakes the futex only when `commit`
/// (`bump_notify`) reports a waiting reader.
///
/// Proves: no lost wake-up. Whenever the reader goes to sleep (prepare_wait
/// said yes and the futex word still equalled `seen`), the producer's
/// `bump_notify` for a later frame saw `waiting != 0` and woke it.
#[test]
fn loom_futex_no_lost_wakeup() {
    const SLOTS: u32 = 2;
    const FRAMES: u64 = 2;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let lease = Lease::new();
        let futex = Futex::new();
        let mut producer = Producer::new(
            &ring,
            std::slice::from_ref(&lease),
            1,
            Payload::Cell,
            NO_TIMEOUT,
        );
        let reader = {
            let (ring, futex, r) = (ring.clone(), futex.clone(), r.clone());
            thread::spawn(move || {
                let mut rd = EveryFrame::open(&ring, lease.clone());
                while rd.next <= FRAMES {
                    // Read the futex word before looking for frames.
                    let seen = ring.notify().load(Ordering::Acquire);
                    match rd.step() {
                        Step::Frame | Step::Lagged => continue,
                        Step::Empty => {}
                    }
                    let waiting = lease.waiting();
                    if prepare_wait(&*ring, waiting, seen) {
                        if futex.wait(ring.notify(), seen) {
                            r.hit("slept and was woken");
                        } else {
                            r.hit("futex word moved before the sleep");
                        }
                    } else {
                        r.hit("prepare_wait saw a new frame");
                    }
                    waiting.store(0, Ordering::Relaxed);
                }
                rd.check_accounting();
                assert_eq!(rd.received.len() as u64 + rd.lagged, FRAMES + 1 - rd.first);
            })
        };
        for _ in 0..FRAMES {
            let sent = producer.publish().expect("2 slots, 1 hold");
            if sent.wake {
                futex.wake();
            }
        }
        futex.producer_done();
        reader.join().expect("reader");
    });
    reached.require(
        "loom_futex_no_lost_wakeup",
        &["slept and was woken", "prepare_wait saw a new frame"],
    );
}

/// With a hold timeout of 0 the producer overrides a hold at once: one
/// slot, the reader holds frame 1, the producer publishes frame 2 over it.
///
/// Proves: revocation is never silent. While the overwrite may be under way,
/// [`still_intact`] true implies the words read are frame 1's; once the
/// producer is done, [`still_intact`] is false and the lease's revoked
/// counter (and the producer's report) count the override. A reader that
/// got `Held` was always seen by the producer (Dekker), so the counter
/// never misses a revoked hold.
#[test]
fn loom_revocation_is_never_silent() {
    const SLOTS: u32 = 1;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let lease = Lease::new();
        let mut producer = Producer::new(&ring, std::slice::from_ref(&lease), 1, Payload::Words, 0);
        let done = Arc::new(AtomicU32::new(0));
        let reader = {
            let (ring, done, r) = (ring.clone(), done.clone(), r.clone());
            thread::spawn(move || {
                let entry = lease.hold(0);
                let slot = loop {
                    match try_hold(&*ring, entry, 1) {
                        Hold::Held(held) => break held.slot(),
                        Hold::Gone => {
                            r.hit("frame 1 gone before the hold");
                            return;
                        }
                        Hold::NotYet | Hold::Busy => thread::yield_now(),
                    }
                };
                // A check while the producer may be overwriting the frame.
                let words = ring.read_words(slot);
                if still_intact(&*ring, slot, 1) {
                    assert_eq!(words, [1; WORDS], "still_intact true with changed data");
                } else {
                    r.hit("learned of the revocation mid-read");
                }
                // A check after the producer is done: the slot now holds frame 2.
                // SYNC: Acquire pairs with the producer's Release of `done`.
                while done.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
                assert!(
                    !still_intact(&*ring, slot, 1),
                    "revoked frame still reported intact"
                );
                assert_eq!(
                    lease.revoked().load(Ordering::Relaxed),
                    1,
                    "a held frame was overwritten without counting a revocation"
                );
                release(entry);
                r.hit("held, then revoked");
            })
        };
        producer.publish().expect("empty ring");
        // Timeout 0: the hold, if seen, is overridden; never a drop.
        producer.publish().expect("hold timeout 0 never drops");
        assert!(producer.revoked <= 1);
        done.store(1, Ordering::Release);
        reader.join().expect("reader");
    });
    reached.require(
        "loom_revocation_is_never_silent",
        &["held, then revoked", "learned of the revocation mid-read"],
    );
}

/// A producer handing over to a successor freezes the ring
/// ([`freeze_for_handover`]) while a reader takes holds on the two frames
/// in it.
///
/// Proves: every hold that succeeds is in the frozen set the successor is
/// given (so it leaves that slot alone); a hold attempted after the freeze
/// is seen as `Busy`. The same Dekker pairing as a claim, with `CLAIM_ALL`
/// as the announcement.
#[test]
fn loom_handover_freeze_sees_every_hold() {
    const SLOTS: u32 = 2;
    let reached = Reached::default();
    let r = reached.clone();
    check(move || {
        let ring = HeapRing::new(SLOTS);
        let lease = Lease::new();
        let mut producer = Producer::new(
            &ring,
            std::slice::from_ref(&lease),
            2,
            Payload::Cell,
            NO_TIMEOUT,
        );
        for _ in 0..SLOTS {
            producer.publish().expect("free slots");
        }
        let reader = {
            let (ring, r) = (ring.clone(), r.clone());
            thread::spawn(move || {
                // Frame 1 in entry 0, frame 2 in entry 1; both kept.
                let mut held = Vec::new();
                for seq in 1..=u64::from(SLOTS) {
                    match try_hold(&*ring, lease.hold(seq as usize - 1), seq) {
                        Hold::Held(h) => held.push(h.slot()),
                        Hold::Busy => r.hit("busy (frozen)"),
                        other => panic!("frame {seq}: {other:?} on a quiet ring"),
                    }
                }
                held
            })
        };
        let frozen = freeze_for_handover(&*ring, &producer.core, &producer.readers);
        let held = reader.join().expect("reader");
        for slot in &held {
            assert!(
                frozen.contains(slot),
                "slot {slot} is held but not in the handover set {frozen:?}"
            );
            r.hit("held and handed over");
        }
    });
    reached.require(
        "loom_handover_freeze_sees_every_hold",
        &["held and handed over", "busy (frozen)"],
    );
}
