//! The ring across real processes: `camux publish` producers and `camux
//! tail` readers, killed, stopped, restarted and replaced under each other.
//!
//! Each test runs the real executable (`CARGO_BIN_EXE_camux`) in a fresh
//! temporary directory, reads the JSON lines the processes print, and
//! asserts on counts and states, never on timing: a watchdog bounds each
//! test instead (see `util::Watchdog`). Tests run one at a time
//! (`util::serial`): they share two cores with the producers they start.
//!
//! "Property N" refers to the numbered ring properties of the design brief
//! ("Ring: properties that must hold"). Measurements that are reported but
//! not asserted (release times, gaps, lag under load) are written straight
//! to stderr by `util::note`, so they show in a normal `cargo test` run.

mod util;

use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use util::{
    fd_count, inspect, is_root, maps_of, ms_since, note, poll_until, reader_with_pid,
    seqpacket_socket, serial, u64_at, which, Dir, MountGuard, Producer, Reader, Watchdog,
};

const STREAM: &str = "cam";
/// 19 200-byte frames: cheap to render and verify in a debug build.
const SMALL: &str = "--width 160 --height 120 --format GREY";

/// The `counters.dropped` of an inspect snapshot.
fn dropped(snap: &serde_json::Value) -> u64 {
    u64_at(&snap["counters"], "dropped")
}

/// Property 7 and 2: a producer SIGKILLed mid-stream and restarted, ten
/// times over, under two readers that are never restarted. Each restart
/// resumes the same file (origin "resumed", epoch up, sequence continuing);
/// the readers carry on in the same process, see each new epoch with a gap
/// on its first frame, receive every frame in order (or are told exactly
/// how many they missed), never a torn one, and verify every checksum.
/// Once, the stream stays dead until both readers report it stale; the gap
/// of the restart after that covers the silence they reported.
#[test]
fn producer_sigkill_and_restart_readers_carry_on() {
    let _serial = serial();
    let wd = Watchdog::new(
        "producer_sigkill_and_restart_readers_carry_on",
        Duration::from_secs(120),
    );
    let d = Dir::new("restart");
    let dir = d.path();
    let args = format!("{SMALL} --fps 300 --slots 16");
    const CYCLES: usize = 10;
    const PER_EPOCH: u64 = 20;
    const STALE_CYCLE: usize = 5;
    let mut stale_since = 0.0f64;

    wd.phase("first producer ready");
    let mut p = Producer::start("producer#0", &d, dir, STREAM, &args);
    assert_eq!(p.origin(), "created", "{}", p.ready);
    // epoch -> the seq the producer of that epoch started at.
    let mut starts = vec![(p.epoch(), p.next_seq())];

    wd.phase("readers receive their first frames");
    let mut rs = [
        Reader::start("reader-a", &d, dir, STREAM, "--verify"),
        Reader::start("reader-b", &d, dir, STREAM, "--verify"),
    ];
    let pids: Vec<u32> = rs.iter().map(|r| r.proc.pid()).collect();

    for cycle in 1..=CYCLES {
        let (epoch, start) = (p.epoch(), p.next_seq());
        wd.phase(format!(
            "cycle {cycle}: readers receive {PER_EPOCH} frames of epoch {epoch}"
        ));
        for r in &mut rs {
            r.pump_until("frames of the live epoch", |l| {
                l.last()
                    .is_some_and(|f| f.epoch == epoch && f.seq >= start + PER_EPOCH)
            });
        }

        wd.phase(format!("cycle {cycle}: SIGKILL producer (epoch {epoch})"));
        let killed_at = Instant::now();
        let status = p.proc.kill();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "producer exit: {status}"
        );
        let seen = rs.iter().map(|r| r.log.last().unwrap().seq).max().unwrap();
        if cycle == STALE_CYCLE {
            // Once, leave the stream dead until both readers report it stale
            // (property 7: within two heartbeats; the watchdog bounds it).
            wd.phase(format!(
                "cycle {cycle}: readers report the dead producer stale"
            ));
            for r in &mut rs {
                let before = r.log.events("stale").count();
                r.pump_until("a stale event", |l| l.events("stale").count() > before);
                let v = r.log.events("stale").last().unwrap();
                let since = v["since_ms"].as_f64().unwrap();
                // A live producer beats at least once per interval (200 ms):
                // less silence than that is no reason to call it stale.
                assert!(since > 200.0, "{}: stale too early: {v}", r.proc.name);
                stale_since = stale_since.max(since);
                note(format!(
                    "restart: {} reported stale {:.0} ms after the SIGKILL (since_ms {since:.0})",
                    r.proc.name,
                    ms_since(killed_at)
                ));
            }
        }

        wd.phase(format!("cycle {cycle}: restarted producer ready"));
        p = Producer::start(&format!("producer#{cycle}"), &d, dir, STREAM, &args);
        assert_eq!(p.origin(), "resumed", "cycle {cycle}: {}", p.ready);
        assert!(
            p.epoch() > epoch,
            "cycle {cycle}: epoch {} after {epoch}",
            p.epoch()
        );
        assert!(
            p.next_seq() > seen,
            "cycle {cycle}: next_seq {} but readers already saw {seen}",
            p.next_seq()
        );
        starts.push((p.epoch(), p.next_seq()));

        let e = p.epoch();
        wd.phase(format!(
            "cycle {cycle}: readers receive from epoch {e} (same processes)"
        ));
        for r in &mut rs {
            r.pump_until("a frame of the new epoch", |l| {
                l.last().is_some_and(|f| f.epoch == e)
            });
        }
    }

    wd.phase("final frames, then stop everything");
    let (e, s) = (p.epoch(), p.next_seq());
    for r in &mut rs {
        r.pump_until("frames of the last epoch", |l| {
            l.last()
                .is_some_and(|f| f.epoch == e && f.seq >= s + PER_EPOCH)
        });
    }
    let ring = p.ring();
    let counters = inspect(&d, &ring)["counters"].clone();
    let stopped = p.stop();
    for (r, pid) in rs.iter_mut().zip(&pids) {
        assert_eq!(
            r.proc.pid(),
            *pid,
            "readers are the processes started first"
        );
        let summary = r.stop();
        let who = r.proc.name.clone();
        r.assert_all_verified();
        let acc = r.log.check_every_frame(&who);
        // Every restart shows as exactly one epoch change, with its gap.
        assert_eq!(acc.epoch_changes, CYCLES as u64, "{who}: {acc:?}");
        // Each epoch's frames lie in the seq range its producer announced.
        for f in r.log.frames() {
            let i = starts
                .iter()
                .position(|(ep, _)| *ep == f.epoch)
                .unwrap_or_else(|| panic!("{who}: frame of unknown epoch {}", f.epoch));
            assert!(
                f.seq >= starts[i].1,
                "{who}: seq {} before its epoch's start",
                f.seq
            );
            if let Some(next) = starts.get(i + 1) {
                assert!(
                    f.seq < next.1,
                    "{who}: seq {} of epoch {} overlaps the next",
                    f.seq,
                    f.epoch
                );
            }
        }
        assert_eq!(summary["torn"], 0, "{who}: {summary}");
        assert_eq!(u64_at(&summary, "gaps"), CYCLES as u64, "{who}: {summary}");
        assert_eq!(u64_at(&summary, "frames"), acc.frames, "{who}: {summary}");
        assert_eq!(u64_at(&summary, "verified"), acc.frames, "{who}: {summary}");
        // The restart after the stale wait reports a downtime at least as
        // long as the silence the readers had seen (the new producer started
        // after they reported it).
        let slow = starts[STALE_CYCLE].0;
        let f = r.log.frames().find(|f| f.epoch == slow).unwrap();
        assert!(
            f.gap_ms.is_some_and(|g| g >= stale_since),
            "{who}: gap after the stale restart: {}",
            f.raw
        );
        note(format!(
            "restart: {who}: {} frames, {} missed, {} stale events, gaps (ms): {:?}",
            acc.frames,
            acc.missed,
            r.log.events("stale").count(),
            r.log
                .frames()
                .filter_map(|f| f.gap_ms)
                .map(|g| (g * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        ));
    }
    // Drops are allowed (a resumed producer leaves the slots the old
    // readers may hold alone until they re-register) and counted.
    note(format!(
        "restart: ring counters over all {} epochs: {counters}; last producer: {stopped}",
        CYCLES + 1
    ));
}

/// Property 2 under stress: a producer publishing flat out (so a SIGKILL
/// almost always lands mid-frame, with a slot stamped as being written)
/// killed and restarted over an 8-slot ring, under an every-frame reader
/// that cannot keep up (it lags, and is told exactly how much) and a
/// latest-only reader (it skips, and is told exactly how much). Neither
/// ever sees a torn or unverifiable frame.
#[test]
fn flat_out_producer_killed_mid_write() {
    let _serial = serial();
    let wd = Watchdog::new(
        "flat_out_producer_killed_mid_write",
        Duration::from_secs(120),
    );
    let d = Dir::new("flat");
    let dir = d.path();
    let args = format!("{SMALL} --flat --slots 8");
    const CYCLES: usize = 10;
    const PER_EPOCH: usize = 20;

    let mut p = Producer::start("producer#0", &d, dir, STREAM, &args);
    let mut every = Reader::start("every", &d, dir, STREAM, "--verify");
    let mut latest = Reader::start("latest", &d, dir, STREAM, "--verify --latest");
    let mut starts = vec![(p.epoch(), p.next_seq())];
    for cycle in 1..=CYCLES {
        let epoch = p.epoch();
        wd.phase(format!(
            "flat cycle {cycle}: readers receive frames of epoch {epoch}"
        ));
        for r in [&mut every, &mut latest] {
            let at = r.log.frames;
            r.pump_until("frames of the live epoch", |l| {
                l.frames >= at + PER_EPOCH && l.last().is_some_and(|f| f.epoch == epoch)
            });
        }
        wd.phase(format!("flat cycle {cycle}: SIGKILL and restart"));
        p.proc.kill();
        p = Producer::start(&format!("producer#{cycle}"), &d, dir, STREAM, &args);
        assert_eq!(p.origin(), "resumed", "{}", p.ready);
        assert!(p.epoch() > epoch);
        starts.push((p.epoch(), p.next_seq()));
    }
    let epoch = p.epoch();
    for r in [&mut every, &mut latest] {
        r.pump_until("frames of the last epoch", |l| {
            l.last().is_some_and(|f| f.epoch == epoch)
        });
    }
    let counters = inspect(&d, &p.ring())["counters"].clone();
    let se = every.stop();
    let sl = latest.stop();
    p.stop();

    every.assert_all_verified();
    latest.assert_all_verified();
    let acc = every.log.check_every_frame("every");
    assert_eq!(acc.epoch_changes, CYCLES as u64, "{acc:?}");
    assert_eq!(u64_at(&se, "frames"), acc.frames, "{se}");
    assert_eq!(
        u64_at(&se, "lagged"),
        acc.missed_before_first + acc.missed + acc.missed_after_last,
        "{se}"
    );
    // Latest-only: seqs strictly increase, and each frame's `skipped` is
    // exactly the seqs passed over since the frame before.
    let mut prev: Option<u64> = None;
    let mut skipped = 0;
    for f in latest.log.frames() {
        let k = f.raw["skipped"].as_u64().expect("skipped");
        if let Some(q) = prev {
            assert!(f.seq > q, "latest: seq {} after {q}", f.seq);
            assert_eq!(
                k,
                f.seq - q - 1,
                "latest: skipped of seq {} after {q}: {}",
                f.seq,
                f.raw
            );
            skipped += k;
        }
        prev = Some(f.seq);
    }
    let (first, last) = (
        latest.log.first().unwrap().seq,
        latest.log.last().unwrap().seq,
    );
    assert_eq!(latest.log.frames as u64 + skipped, last - first + 1);
    for (ep, start) in &starts {
        assert!(
            every.log.frames().any(|f| f.epoch == *ep)
                && latest.log.frames().any(|f| f.epoch == *ep),
            "epoch {ep} (from seq {start}) seen by both readers"
        );
    }
    note(format!(
        "flat: every-frame {acc:?}; latest: {} frames, {skipped} skipped; summaries {se} / {sl}; ring {counters}",
        latest.log.frames
    ));
}

/// Property 7 when a reader dies with the producer (a node-wide OOM kill,
/// a pod deleted during the restart): the restarted producer must not wait
/// for a reader that will never come back before it publishes again; the
/// surviving reader should see a gap of about the downtime.
///
/// After a crash the new producer keeps every published slot for the
/// previous producer's readers, but only for two heartbeat intervals (not
/// the hold timeout): a reader that died with it is not waited for.
#[test]
fn producer_restart_does_not_wait_for_a_dead_reader() {
    let _serial = serial();
    let wd = Watchdog::new(
        "producer_restart_does_not_wait_for_a_dead_reader",
        Duration::from_secs(60),
    );
    let d = Dir::new("dead-reader");
    let dir = d.path();
    // A long hold timeout: waiting for the dead reader would drop ~4000
    // frames, the two-heartbeat grace ~80. The bound below sits far from
    // both, so scheduling noise cannot decide the test.
    let args = format!("{SMALL} --fps 200 --slots 8 --hold-timeout-ms 20000");
    let mut p = Producer::start("producer#0", &d, dir, STREAM, &args);
    let mut survivor = Reader::start("survivor", &d, dir, STREAM, "--verify");
    let mut victim = Reader::start("victim", &d, dir, STREAM, "--verify");
    survivor.pump_frames(10);
    victim.pump_frames(10);

    wd.phase("SIGKILL producer and one reader; restart the producer");
    p.proc.kill();
    victim.proc.kill();
    let p = Producer::start("producer#1", &d, dir, STREAM, &args);
    let epoch = p.epoch();
    wd.phase("survivor receives from the restarted producer");
    survivor.pump_until("a frame of the new epoch", |l| {
        l.last().is_some_and(|f| f.epoch == epoch)
    });
    let stopped = p.stop();
    survivor.stop();
    survivor.assert_all_verified();
    survivor.log.check_every_frame("survivor");
    // Two heartbeats (400 ms) of captures at 200 fps would be 80 frames;
    // the hold timeout (20 s), 4000.
    assert!(
        u64_at(&stopped, "dropped") < 400,
        "restarted producer dropped {} frames waiting for a reader that died: {stopped}",
        u64_at(&stopped, "dropped")
    );
}

/// Property 6: a reader SIGKILLed while holding frames is released: the
/// producer's reader table (inspect) drops it, and the producer keeps
/// publishing to the other reader without dropping a frame.
#[test]
fn reader_killed_while_holding_frames_is_released() {
    let _serial = serial();
    let wd = Watchdog::new(
        "reader_killed_while_holding_frames_is_released",
        Duration::from_secs(60),
    );
    let d = Dir::new("holder");
    let dir = d.path();
    // 12 slots >= 2 readers x hold limit 4 + 2: no frame need ever drop.
    let p = Producer::start(
        "producer",
        &d,
        dir,
        STREAM,
        &format!("{SMALL} --fps 200 --slots 12"),
    );
    let ring = p.ring();

    wd.phase("holder and other reader receive");
    let mut holder = Reader::start(
        "holder",
        &d,
        dir,
        STREAM,
        "--verify --keep 3 --hold-ms 1000",
    );
    let mut other = Reader::start("other", &d, dir, STREAM, "--verify");
    other.pump_frames(10);
    // Two frames printed: it holds the second for --hold-ms with the first
    // still kept (--keep 3: up to three at once, counting the one in hand).
    holder.pump_frames(2);

    wd.phase("inspect shows the holder holding frames");
    let held = poll_until(|| {
        let snap = inspect(&d, &ring);
        reader_with_pid(&snap, holder.proc.pid())
            .filter(|r| r["holds"].as_array().is_some_and(|h| h.len() >= 2))
    });
    note(format!("holder: reader entry before the kill: {held}"));

    wd.phase("SIGKILL the holder; inspect until its entry is gone");
    let killed_at = Instant::now();
    holder.proc.kill();
    let snap = poll_until(|| {
        let snap = inspect(&d, &ring);
        reader_with_pid(&snap, holder.proc.pid())
            .is_none()
            .then_some(snap)
    });
    let released_ms = ms_since(killed_at);
    note(format!(
        "holder: released {released_ms:.1} ms after SIGKILL (property 6 bound: 1000 ms)"
    ));
    assert!(
        reader_with_pid(&snap, other.proc.pid()).is_some(),
        "the other reader is still registered: {snap}"
    );

    wd.phase("producer keeps publishing, the other reader keeps receiving");
    let head = u64_at(&snap, "head");
    other.pump_to_seq(head + 100);
    let after = inspect(&d, &ring);
    assert!(
        u64_at(&after, "head") >= head + 100,
        "head advanced: {after}"
    );
    assert_eq!(dropped(&after), 0, "{after}");
    // What the dead reader held was released, not merely forgotten: after
    // 100 more frames over 12 slots no slot still keeps a frame from before.
    let old: Vec<_> = after["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["seq"].as_u64().is_some_and(|q| q <= head))
        .collect();
    assert!(
        old.is_empty(),
        "slots still pinned after the holder died (held {}): {old:?}",
        held["holds"]
    );

    let summary = other.stop();
    other.assert_all_verified();
    let acc = other.log.check_every_frame("other");
    assert_eq!(u64_at(&summary, "frames"), acc.frames);
    let stopped = p.stop();
    assert_eq!(u64_at(&stopped, "dropped"), 0, "{stopped}");
    note(format!("holder: other reader {acc:?}; producer {stopped}"));
}

/// Properties 3, 4 and 10: a reader frozen with SIGSTOP while holding two
/// frames, as the producer runs fast over a small ring, neither stalls the
/// producer (nothing dropped) nor disturbs another reader, and its held
/// frames survive the ~150 wraps of the ring meanwhile (hold timeout not
/// reached: nothing revoked); once resumed it is told exactly how many
/// frames it missed: received + missed == last - first + 1.
#[test]
fn stopped_reader_lags_exactly_and_blocks_nobody() {
    let _serial = serial();
    let wd = Watchdog::new(
        "stopped_reader_lags_exactly_and_blocks_nobody",
        Duration::from_secs(60),
    );
    let d = Dir::new("sigstop");
    let dir = d.path();
    let p = Producer::start(
        "producer",
        &d,
        dir,
        STREAM,
        &format!("{SMALL} --fps 500 --slots 8"),
    );
    let ring = p.ring();

    wd.phase("both readers receive");
    // --keep 3 holds up to 3 frames, counting the one being received: once
    // it has received two, it holds at least two whenever it is stopped.
    let mut frozen = Reader::start("frozen", &d, dir, STREAM, "--verify --keep 3");
    let mut steady = Reader::start("steady", &d, dir, STREAM, "--verify");
    frozen.pump_frames(20);
    steady.pump_frames(20);

    frozen.proc.freeze();
    // Taken once the reader is stopped: it received nothing after this.
    let before = inspect(&d, &ring);
    let steady_missed_before = steady.log.missed;
    // The one sleep that is the point: the reader stays frozen for a while
    // (2.5 s, 1250 frames at 500 fps, over 150 ring wraps) while everyone
    // else runs. Nothing is being waited for.
    std::thread::sleep(Duration::from_millis(2500));
    let during = inspect(&d, &ring);
    let frozen_entry = reader_with_pid(&during, frozen.proc.pid());
    frozen.proc.signal(Signal::SIGCONT);

    let (h0, h1) = (u64_at(&before, "head"), u64_at(&during, "head"));
    note(format!(
        "sigstop: head {h0} -> {h1} while frozen; frozen reader's entry: {}",
        frozen_entry
            .as_ref()
            .map_or("none".into(), |e| e.to_string())
    ));
    // The frozen reader's holds are still there, untouched, after the
    // producer went round the ring many times.
    let holds: Vec<u64> = frozen_entry
        .as_ref()
        .and_then(|e| e["holds"].as_array())
        .map(|h| h.iter().map(|v| v.as_u64().unwrap()).collect())
        .unwrap_or_default();
    assert!(holds.len() >= 2, "frozen reader holds {holds:?}");
    // The newest frame it took before it stopped: it holds its last ones.
    let last_before = *holds.iter().max().unwrap();
    let in_slots: Vec<u64> = during["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["seq"].as_u64())
        .collect();
    for h in &holds {
        assert!(
            in_slots.contains(h),
            "held frame {h} was overwritten while held: slots {in_slots:?}"
        );
    }
    // The producer did not stall and dropped nothing: the frozen reader can
    // pin at most its hold limit of the 8 slots.
    assert!(
        h1 > h0 + 8 * 10,
        "producer kept publishing while a reader was frozen: {h0} -> {h1}"
    );
    assert_eq!(dropped(&during), 0, "{during}");

    wd.phase("steady reader received what was published meanwhile");
    steady.pump_to_seq(h1);
    // It kept receiving, promptly woken for each frame: a reader that only
    // polled (at the 200 ms heartbeat, say) would see 8 of every 100 frames.
    // Whatever it missed on its own (descheduled on a busy machine) it was
    // told of exactly (checked below); without other load that is nothing.
    let window: Vec<u64> = steady
        .log
        .frames()
        .map(|f| f.seq)
        .filter(|&q| q > h0 && q <= h1)
        .collect();
    let steady_missed = steady.log.missed - steady_missed_before;
    assert!(
        window.len() as u64 >= (h1 - h0) / 2,
        "steady reader got only {} of the {} frames published while the other was frozen \
         ({steady_missed} reported missed)",
        window.len(),
        h1 - h0
    );
    note(format!(
        "sigstop: steady reader during the freeze: {} of {} frames, {steady_missed} missed",
        window.len(),
        h1 - h0
    ));

    wd.phase("resumed reader catches up with lagged events");
    frozen.pump_to_seq(h1);
    let fs = frozen.stop();
    let ss = steady.stop();
    let stopped = p.stop();

    frozen.assert_all_verified();
    steady.assert_all_verified();
    let fa = frozen.log.check_every_frame("frozen");
    let sa = steady.log.check_every_frame("steady");
    // When it resumes, frames last_before+1 ..= h1-8 are gone from the
    // 8-slot ring (h1 was the head while it was still stopped), so it was
    // told of at least that many as missed.
    assert!(
        fa.missed >= h1 - last_before - 8,
        "frozen reader missed only {} frames, but it last took {last_before} \
         and the head was at {h1} while it was stopped",
        fa.missed,
    );
    assert!(frozen.log.events("lagged").count() >= 1);
    // Released after the freeze, still intact: never revoked.
    assert_eq!(frozen.log.events("revoked").count(), 0);
    assert_eq!(u64_at(&fs, "revoked"), 0, "{fs}");
    assert_eq!(u64_at(&stopped, "revoked"), 0, "{stopped}");
    assert_eq!(fa.frames + fa.missed, fa.last - fa.first + 1);
    assert_eq!(u64_at(&fs, "frames"), fa.frames, "{fs}");
    assert_eq!(u64_at(&ss, "frames"), sa.frames, "{ss}");
    assert_eq!(u64_at(&stopped, "dropped"), 0, "{stopped}");
    note(format!(
        "sigstop: frozen {fa:?} summary {fs}\nsigstop: steady {sa:?}\nsigstop: producer {stopped}"
    ));
}

/// Property 8: a producer restarted with another geometry replaces the file
/// (origin "replaced"); a running reader gets a format_changed event, then
/// verified frames of the new size, with the sequence continuing.
#[test]
fn geometry_change_replaces_the_ring_and_readers_follow() {
    let _serial = serial();
    let wd = Watchdog::new(
        "geometry_change_replaces_the_ring_and_readers_follow",
        Duration::from_secs(60),
    );
    let d = Dir::new("geometry");
    let dir = d.path();
    let small = "--width 320 --height 240 --format GREY --fps 200 --slots 8";
    let large = "--width 640 --height 480 --format GREY --fps 200 --slots 8";

    let p1 = Producer::start("producer-320", &d, dir, STREAM, small);
    assert_eq!(p1.origin(), "created");
    let mut r = Reader::start("reader", &d, dir, STREAM, "--verify");
    wd.phase("frames at 320x240");
    r.pump_frames(10);

    wd.phase("stop the 320x240 producer");
    let s1 = p1.stop();
    wd.phase("start the 640x480 producer");
    let p2 = Producer::start("producer-640", &d, dir, STREAM, large);
    assert_eq!(p2.origin(), "replaced", "{}", p2.ready);
    assert_eq!(
        p2.next_seq(),
        u64_at(&s1, "published") + 1,
        "sequence continues: {} after {s1}",
        p2.ready
    );

    wd.phase("reader reports format_changed, then 640x480 frames");
    r.pump_until("format_changed", |l| {
        l.events("format_changed").count() == 1
    });
    r.pump_frames(10);
    let summary = r.stop();
    let p2_start = p2.next_seq();
    p2.stop();

    r.assert_all_verified();
    let acc = r.log.check_every_frame("reader");
    assert_eq!(r.log.events("format_changed").count(), 1);
    let mut after_change = false;
    for item in &r.log.items {
        match item {
            util::Item::Event(n, _) if n == "format_changed" => after_change = true,
            util::Item::Frame(f) => {
                let (w, h) = if after_change { (640, 480) } else { (320, 240) };
                assert_eq!(
                    (f.len, &f.raw["width"], &f.raw["height"]),
                    (w * h, &w.into(), &h.into()),
                    "frame {} (after change: {after_change}): {}",
                    f.seq,
                    f.raw
                );
                if after_change {
                    assert!(
                        f.seq >= p2_start,
                        "old-file frame after the change: {}",
                        f.raw
                    );
                }
            }
            _ => {}
        }
    }
    assert_eq!(u64_at(&summary, "frames"), acc.frames);
    let fc = r.log.events("format_changed").next().unwrap();
    assert_eq!(
        (&fc["old"]["width"], &fc["new"]["width"]),
        (&320.into(), &640.into()),
        "{fc}"
    );
    note(format!(
        "geometry: {acc:?}; format_changed: {}",
        r.log.events("format_changed").next().unwrap()
    ));
}

/// Property 1: readers need read access only. (a) The ring is mapped
/// without write permission; (b) a reader running as an unprivileged user
/// that cannot open the ring for writing still receives verified frames;
/// (c) so does a reader of a read-only bind mount of the directory.
#[test]
fn readers_need_read_access_only() {
    let _serial = serial();
    let wd = Watchdog::new("readers_need_read_access_only", Duration::from_secs(60));
    let d = Dir::new("readonly");
    // The ring directory is a subdirectory so that (c) can mount it beside.
    let dir = d.path().join("rw");
    std::fs::create_dir(&dir).unwrap();
    for p in [d.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let p = Producer::start("producer", &d, &dir, STREAM, &format!("{SMALL} --fps 200"));
    let ring = std::fs::canonicalize(p.ring()).unwrap();
    let sock = dir.join(format!("{STREAM}.sock"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ring), 0o644, "ring mode");
    assert_eq!(mode(&sock), 0o666, "socket mode");

    // (a) The mapping of the ring file in a reader has no write permission.
    wd.phase("(a) reader maps the ring read-only");
    let mut r = Reader::start("reader-root", &d, &dir, STREAM, "--verify");
    r.pump_frames(5);
    let maps = maps_of(r.proc.pid(), &ring);
    assert!(!maps.is_empty(), "ring not mapped by the reader");
    for m in &maps {
        let perms = m.split_whitespace().nth(1).unwrap();
        assert_eq!(
            perms, "r--s",
            "ring mapping must be shared and read-only: {m}"
        );
    }
    r.stop();
    r.assert_all_verified();
    note(format!("readonly (a): {}", maps.join(" | ")));

    // (b) An unprivileged reader.
    wd.phase("(b) unprivileged reader");
    let setpriv = which("setpriv");
    match (is_root(), &setpriv) {
        (false, _) => {
            note("skipped: readonly (b): not root, cannot switch to an unprivileged user")
        }
        (true, None) => note("skipped: readonly (b): no setpriv on PATH"),
        (true, Some(setpriv)) => {
            let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
            // The same user cannot open the ring for writing...
            let st = std::process::Command::new(setpriv)
                .args(nobody)
                .args(["sh", "-c", "exec 3>>\"$0\"", ring.to_str().unwrap()])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!st.success(), "uid 65534 could open the ring for writing");
            // ...and still reads the stream.
            let mut cmd = std::process::Command::new(setpriv);
            cmd.args(nobody).arg(util::camux_exe()).args([
                "tail",
                "--dir",
                dir.to_str().unwrap(),
                STREAM,
                "--json",
                "--verify",
            ]);
            let mut r = Reader::from_command("reader-nobody", &d, cmd);
            r.pump_frames(10);
            let status = std::fs::read_to_string(format!("/proc/{}/status", r.proc.pid())).unwrap();
            let uid = status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .unwrap()
                .to_owned();
            assert!(
                uid.split_whitespace().skip(1).all(|u| u == "65534"),
                "{uid}"
            );
            for m in maps_of(r.proc.pid(), &ring) {
                assert_eq!(m.split_whitespace().nth(1), Some("r--s"), "{m}");
            }
            // The producer registered it as that user (SO_PEERCRED).
            let snap = inspect(&d, &ring);
            let entry = reader_with_pid(&snap, r.proc.pid())
                .unwrap_or_else(|| panic!("unprivileged reader not registered: {snap}"));
            assert_eq!(entry["uid"], 65534, "{entry}");
            let summary = r.stop();
            r.assert_all_verified();
            assert_eq!(
                u64_at(&summary, "verified"),
                r.log.frames as u64,
                "{summary}"
            );
            note(format!(
                "readonly (b): uid 65534 reader: {} verified frames ({uid})",
                r.log.frames
            ));
        }
    }

    // (c) A read-only bind mount of the directory.
    wd.phase("(c) reader of a read-only bind mount");
    if !is_root() {
        note("skipped: readonly (c): not root, cannot bind-mount");
    } else {
        let ro = d.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        match MountGuard::bind_ro(&dir, &ro) {
            Err(why) => note(format!("skipped: readonly (c): {why}")),
            Ok(_mount) => {
                let ro_ring = ro.join(format!("{STREAM}.ring"));
                let err = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&ro_ring)
                    .expect_err("root opened the ring for writing on a read-only mount");
                assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
                let mut r = Reader::start("reader-ro-mount", &d, &ro, STREAM, "--verify");
                r.pump_frames(10);
                let maps = maps_of(r.proc.pid(), &ro_ring);
                assert!(
                    !maps.is_empty(),
                    "ring not mapped through the read-only mount"
                );
                for m in &maps {
                    assert_eq!(m.split_whitespace().nth(1), Some("r--s"), "{m}");
                }
                let summary = r.stop();
                r.assert_all_verified();
                assert_eq!(
                    u64_at(&summary, "verified"),
                    r.log.frames as u64,
                    "{summary}"
                );
                note(format!(
                    "readonly (c): read-only mount reader: {} verified frames",
                    r.log.frames
                ));
            }
        }
    }
    let stopped = p.stop();
    assert_eq!(u64_at(&stopped, "dropped"), 0, "{stopped}");
}

/// Rolling update (property 7): producer B started with --wait-lock stands
/// by while A runs (no ready line); on SIGTERM to A it takes over the same
/// ring (origin "resumed", sequence continuing where A stopped), and a
/// reader started against A carries on with a gap only: no torn frame, no
/// stale event.
#[test]
fn rolling_update_hands_over_without_errors() {
    let _serial = serial();
    let wd = Watchdog::new(
        "rolling_update_hands_over_without_errors",
        Duration::from_secs(60),
    );
    let d = Dir::new("rolling");
    let dir = d.path();
    let args = format!("{SMALL} --fps 300 --slots 16");

    let a = Producer::start("producer-a", &d, dir, STREAM, &args);
    assert_eq!(a.origin(), "created");
    let ring = a.ring();
    let mut r = Reader::start("reader", &d, dir, STREAM, "--verify");
    wd.phase("reader receives from A");
    r.pump_frames(10);

    wd.phase("B blocks on the ring lock (/proc/locks)");
    let mut b = Producer::spawn(
        "producer-b",
        &d,
        dir,
        STREAM,
        &format!("{args} --wait-lock"),
    );
    let key = util::lock_key(&dir.join(format!("{STREAM}.lock")));
    poll_until(|| util::blocked_on_lock(b.pid(), &key).then_some(()));
    // A keeps publishing with B waiting; B says nothing of being ready.
    r.pump_frames(30);
    while let Some(l) = b.try_line() {
        if let util::Line::Json(v) = &l {
            assert_ne!(
                v["event"], "ready",
                "standby producer became ready while A runs: {v}"
            );
        }
    }
    assert!(
        b.is_running(),
        "standby producer exited: {}",
        b.stderr_text()
    );
    let snap = inspect(&d, &ring);
    assert_eq!(u64_at(&snap, "epoch"), a.epoch(), "{snap}");

    wd.phase("SIGTERM A; B becomes ready");
    let (a_epoch, a_pid) = (a.epoch(), a.proc.pid());
    let sa = a.stop();
    let ready = b.wait_event("ready");
    assert_eq!(ready["origin"], "resumed", "{ready}");
    let b_epoch = u64_at(&ready, "epoch");
    assert!(b_epoch > a_epoch, "{ready}");
    assert_eq!(
        u64_at(&ready, "next_seq"),
        u64_at(&sa, "published") + 1,
        "{ready} after {sa}"
    );
    let b_start = u64_at(&ready, "next_seq");

    wd.phase("reader receives from B");
    r.pump_until("frames from B", |l| {
        l.last()
            .is_some_and(|f| f.epoch == b_epoch && f.seq >= b_start + 30)
    });
    let snap = inspect(&d, &ring);
    assert_eq!(u64_at(&snap, "producer_pid"), u64::from(b.pid()), "{snap}");
    assert_ne!(u64::from(a_pid), u64::from(b.pid()));

    // An update rolled back: a standby deleted before it took over leaves
    // quietly (SIGTERM while waiting for the lock) and disturbs nothing.
    wd.phase("standby C is stopped while still waiting");
    let mut c = Producer::spawn(
        "producer-c",
        &d,
        dir,
        STREAM,
        &format!("{args} --wait-lock"),
    );
    poll_until(|| util::blocked_on_lock(c.pid(), &key).then_some(()));
    let (status, lines) = c.terminate();
    assert!(
        status.success(),
        "standby exit on SIGTERM: {status}\n{}",
        c.stderr_text()
    );
    assert!(
        lines.iter().all(|v| v["event"] != "ready"),
        "standby became ready: {lines:?}"
    );
    let cs = lines.iter().find(|v| v["event"] == "stopped");
    assert!(
        cs.is_some_and(|v| v["published"] == 0),
        "standby's stopped line: {lines:?}"
    );
    let seen = r.log.frames;
    r.pump_frames(20);
    assert!(r.log.frames().skip(seen).all(|f| f.epoch == b_epoch));
    let snap = inspect(&d, &ring);
    assert_eq!(u64_at(&snap, "epoch"), b_epoch, "{snap}");
    assert_eq!(snap["state"], "live", "{snap}");

    let summary = r.stop();
    let b = Producer { proc: b, ready };
    let sb = b.stop();

    r.assert_all_verified();
    let acc = r.log.check_every_frame("reader");
    assert_eq!(acc.epoch_changes, 1, "{acc:?}");
    let stale: Vec<_> = r.log.events("stale").collect();
    assert!(
        stale.is_empty(),
        "stale events during a rolling update: {stale:?}"
    );
    assert_eq!(u64_at(&summary, "frames"), acc.frames);
    let gap = r.log.frames().find_map(|f| f.gap_ms).unwrap();
    note(format!("rolling: gap {gap:.1} ms, {acc:?}; A {sa}; B {sb}"));
}

/// `voluntary_ctxt_switches` of `pid`'s thread named `comm`: how often it
/// blocked (a thread that spins on a ready descriptor never does).
fn voluntary_switches(pid: u32, comm: &str) -> u64 {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let p = t.path();
        if std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == comm) {
            let s = std::fs::read_to_string(p.join("status")).unwrap();
            return s
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("voluntary_ctxt_switches");
        }
    }
    panic!("no thread {comm:?} in process {pid}");
}

/// The soft RLIMIT_NOFILE that lets process `pid` open exactly `n` more
/// descriptors: the limit bounds descriptor *numbers*, and a new one takes
/// the lowest free number, so the limit is the `n + 1`-th free number.
fn nofile_allowing(pid: u32, n: usize) -> usize {
    let used: std::collections::BTreeSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|k| !used.contains(k)).nth(n).unwrap()
}

/// Sets the soft RLIMIT_NOFILE of `pid` (the `prlimit` tool, util-linux),
/// keeping the hard one.
fn set_nofile(pid: u32, soft: usize) {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A producer that runs out of file descriptors: a connection it cannot
/// accept (EMFILE) makes its control thread pause and poll again, not spin
/// on a listener that stays readable; and a client that sends more
/// descriptors than the producer has slots for (the kernel installs some,
/// then flags MSG_CTRUNC) leaves none of them behind once it is gone. Both
/// fail with the fix taken out: the control thread then never blocks, and
/// the installed descriptors stay open.
#[test]
fn a_producer_out_of_descriptors_neither_spins_nor_leaks_them() {
    use camux::ring::socket::{Hello, HelloKind};
    use nix::sys::socket::{connect, recv, send, sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use std::io::IoSlice;
    use std::os::fd::{AsRawFd, OwnedFd};
    let _serial = serial();
    let wd = Watchdog::new(
        "a_producer_out_of_descriptors_neither_spins_nor_leaks_them",
        Duration::from_secs(60),
    );
    let d = Dir::new("emfile");
    let p = Producer::start("producer", &d, d.path(), STREAM, SMALL);
    let pid = p.proc.pid();
    let fresh = fd_count(pid);
    let sock = UnixAddr::new(&d.path().join(format!("{STREAM}.sock"))).unwrap();
    let client = || -> OwnedFd {
        let fd = seqpacket_socket();
        connect(fd.as_raw_fd(), &sock).expect("connect (the backlog queues it)");
        fd
    };
    // A reader in and out first: once the producer has let go of it (its
    // connection and lease page), it is back to the descriptors it started
    // with, so nothing is opened lazily for readers.
    let mut r = Reader::start("reader", &d, d.path(), STREAM, "--verify");
    r.pump_frames(3);
    r.stop();
    let baseline = poll_until(|| (fd_count(pid) == fresh).then_some(fresh));

    wd.phase("EMFILE on accept: the control thread must block, not spin");
    let generous = 1024.max(baseline + 64);
    set_nofile(pid, nofile_allowing(pid, 0));
    let queued = client();
    let inspect = Hello {
        kind: HelloKind::Inspect,
        adopt: false,
        pid: std::process::id(),
        ring_id: 0,
    }
    .encode();
    send(queued.as_raw_fd(), &inspect, MsgFlags::MSG_NOSIGNAL).unwrap();
    let blocked_before = voluntary_switches(pid, "camux-control");
    // A spinning thread never blocks; a pausing one blocks at every pause
    // and heartbeat tick. Bounded by the watchdog.
    poll_until(|| (voluntary_switches(pid, "camux-control") >= blocked_before + 5).then_some(()));
    // With descriptors again, the queued client is accepted and answered.
    set_nofile(pid, generous);
    let mut buf = [0u8; 1 << 16];
    let n = recv(queued.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("inspect reply");
    assert!(n > 0, "the queued client was never answered");
    drop(queued);
    poll_until(|| (fd_count(pid) == baseline).then_some(()));

    wd.phase("MSG_CTRUNC: descriptors the kernel installed before EMFILE");
    // Room for the accepted socket and one received descriptor.
    set_nofile(pid, nofile_allowing(pid, 2));
    let c = client();
    let extra: Vec<OwnedFd> = (0..8)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect();
    let raw: Vec<i32> = extra.iter().map(|f| f.as_raw_fd()).collect();
    let hello = Hello {
        kind: HelloKind::Reader,
        adopt: true,
        pid: std::process::id(),
        ring_id: 0,
    }
    .encode();
    sendmsg::<()>(
        c.as_raw_fd(),
        &[IoSlice::new(&hello)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .expect("send a hello with 8 descriptors");
    // The producer refuses the packet and closes the connection: EOF (or
    // a reject, then EOF).
    while recv(c.as_raw_fd(), &mut buf, MsgFlags::empty()).is_ok_and(|n| n > 0) {}
    drop(c);
    set_nofile(pid, generous);
    let after = poll_until(|| {
        let n = fd_count(pid);
        (n == baseline).then_some(n)
    });
    note(format!(
        "emfile: producer descriptors {baseline} before, {after} after a client sent 8 with room for 1"
    ));

    wd.phase("still serving readers");
    let mut r = Reader::start("reader-after", &d, d.path(), STREAM, "--verify");
    r.pump_frames(3);
    r.stop();
    r.assert_all_verified();
    p.stop();
}
