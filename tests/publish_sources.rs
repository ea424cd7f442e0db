//! `camux publish --file` and `--sensor` across real processes: recordings
//! and sensor records published by the real executable and read back by
//! `camux tail`, byte for byte.
//!
//! Every test runs the real `camux` (`CARGO_BIN_EXE_camux`) in a fresh
//! temporary directory and is bounded by a watchdog, not by a timeout of
//! its own; nothing sleeps. A reader gets every frame because the producer
//! holds its first frame back until the reader is registered
//! (`--wait-readers 1`) and keeps the ring live at the end until the reader
//! has left (`--linger`), and because a replay never has more frames than
//! the ring has slots, so a `--flat` producer cannot lap the reader.

mod util;

use camux::format::FourCc;
use camux::source::y4m::{Ratio, Y4mHeader, Y4mWriter};
use camux::source::{Synthetic, SyntheticConfig};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{inspect, poll_until, serial, Dir, Proc, Reader, Watchdog};

const STREAM: &str = "src";
/// What lets one reader get every frame: more slots than any test
/// publishes (a `--flat` producer never laps the reader), the first frame
/// held back until the reader is registered, and the ring kept live at
/// the end until it has left (bounded, as the whole test, by the watchdog).
const EVERY_FRAME: &str = "--slots 16 --wait-readers 1 --linger 60s";

/// The hash `camux tail --hash` prints: 64-bit FNV-1a over the payload's
/// little-endian 8-byte words (the tail zero-padded), then the length.
fn payload_hash(payload: &[u8]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(PRIME);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(PRIME);
    }
    format!("{:016x}", (h ^ payload.len() as u64).wrapping_mul(PRIME))
}

/// Frames 1..=n of a test pattern, each stamped with its own number: the
/// seq a fresh ring gives the k-th frame published, which is what `tail
/// --verify` checks the stamp against.
fn frames(fourcc: FourCc, width: u32, height: u32, n: u64) -> Vec<Vec<u8>> {
    let source = Synthetic::new(SyntheticConfig {
        width,
        height,
        fourcc,
        fps: 30.0,
    })
    .unwrap();
    (1..=n)
        .map(|seq| {
            let mut frame = vec![0; source.frame_bytes()];
            source.render(seq, &mut frame).unwrap();
            frame
        })
        .collect()
}

/// The command `camux publish --dir <d> --stream STREAM <args>`.
fn publish_cmd(d: &Dir, args: &[&str]) -> Command {
    let mut cmd = d.camux(["publish".as_ref(), "--dir".as_ref(), d.path().as_os_str()]);
    cmd.args(["--stream", STREAM]).args(args);
    cmd
}

/// `camux publish ... <args>` (split at spaces: temporary paths have
/// none), spawned and not waited for.
fn spawn_publish(name: &str, d: &Dir, args: &str) -> Proc {
    let words = util::words(args);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Proc::spawn(name, publish_cmd(d, &words))
}

/// Waits for the producer to exit by itself; asserts status 0 and returns
/// its stopped line.
fn stopped_cleanly(p: &mut Proc) -> Value {
    let stopped = p.wait_event("stopped");
    let status = p.wait();
    assert!(
        status.success(),
        "{} exited with {status}\nstderr:\n{}",
        p.name,
        p.stderr_text()
    );
    stopped
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}

/// Reads `expected.len()` frames with `tail --verify --hash` (`verify`
/// only if the payloads are stamped), checks each is the expected payload
/// with seq 1, 2, ..., and returns the tail's summary.
fn read_all(d: &Dir, wd: &Watchdog, expected: &[Vec<u8>], verify: bool) -> Value {
    let n = expected.len();
    let extra = format!(
        "--count {n} --hash{}",
        if verify { " --verify" } else { "" }
    );
    wd.phase(format!("the reader receives {n} frames"));
    let mut reader = Reader::start("tail", d, d.path(), STREAM, &extra);
    reader.pump_frames(n);
    let summary = reader.stop();
    if verify {
        reader.assert_all_verified();
    }
    let got: Vec<_> = reader.log.frames().cloned().collect();
    assert_eq!(got.len(), n, "frames: {got:#?}");
    for (i, (f, want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(f.seq, i as u64 + 1, "frame {i}: {}", f.raw);
        assert_eq!(f.len, want.len() as u64, "frame {i} length: {}", f.raw);
        assert_eq!(
            f.raw["hash"].as_str(),
            Some(payload_hash(want).as_str()),
            "frame {i} bytes: {}",
            f.raw
        );
    }
    assert_eq!(u64_of(&summary, "frames"), n as u64, "{summary}");
    assert_eq!(u64_of(&summary, "torn"), 0, "{summary}");
    assert_eq!(u64_of(&summary, "lagged"), 0, "{summary}");
    if verify {
        assert_eq!(u64_of(&summary, "verified"), n as u64, "{summary}");
    }
    summary
}

fn write_raw(path: &Path, frames: &[Vec<u8>], tail: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    for frame in frames {
        f.write_all(frame).unwrap();
    }
    f.write_all(tail).unwrap();
}

/// A raw recording (frames back to back) replayed flat out: every frame
/// reaches a reader whole, in order, with its own stamp, and the stopped
/// line accounts for every byte read from the file.
#[test]
fn raw_file_replay_reaches_a_reader_whole() {
    let _serial = serial();
    let wd = Watchdog::new(
        "raw_file_replay_reaches_a_reader_whole",
        Duration::from_secs(60),
    );
    let d = Dir::new("file-raw");
    const N: u64 = 10;
    let originals = frames(FourCc::YUYV, 64, 48, N);
    let path = d.path().join("clip.yuyv");
    write_raw(&path, &originals, &[]);

    wd.phase("producer ready");
    let mut p = spawn_publish(
        "publish-file",
        &d,
        &format!(
            "--file {} --format YUYV --width 64 --height 48 --flat {EVERY_FRAME}",
            path.display()
        ),
    );
    let ready = p.wait_event("ready");
    assert_eq!(ready["source"], "file", "{ready}");
    assert_eq!(ready["kind"], "raw", "{ready}");
    assert_eq!(ready["path"], path.display().to_string(), "{ready}");
    assert_eq!(ready["format"]["fourcc"], "YUYV", "{ready}");
    assert_eq!(
        (
            u64_of(&ready["format"], "width"),
            u64_of(&ready["format"], "height"),
            u64_of(&ready["format"], "frame_bytes")
        ),
        (64, 48, 64 * 48 * 2),
        "{ready}"
    );
    assert_eq!(ready["fps"], 30.0, "{ready}");
    assert_eq!(
        (ready["origin"].as_str(), u64_of(&ready, "next_seq")),
        (Some("created"), 1)
    );

    read_all(&d, &wd, &originals, true);

    wd.phase("producer stops at the end of the file");
    let stopped = stopped_cleanly(&mut p);
    let bytes = N * 64 * 48 * 2;
    for (key, want) in [
        ("published", N),
        ("dropped", 0),
        ("frames", N),
        ("loops", 0),
        ("partial_frames", 0),
        ("bytes_copied", bytes),
    ] {
        assert_eq!(u64_of(&stopped, key), want, "{key}: {stopped}");
    }
    assert_eq!(stopped["end_of_file"], true, "{stopped}");
    assert!(stopped["error"].is_null(), "{stopped}");
}

/// A Y4M recording needs no format arguments: its header gives the format,
/// the size and the rate, which the ring records.
#[test]
fn y4m_file_replay_reaches_a_reader_whole() {
    let _serial = serial();
    let wd = Watchdog::new(
        "y4m_file_replay_reaches_a_reader_whole",
        Duration::from_secs(60),
    );
    let d = Dir::new("file-y4m");
    const N: u64 = 8;
    let originals = frames(FourCc::YU12, 64, 48, N);
    let path = d.path().join("clip.y4m");
    let header = Y4mHeader::for_fourcc(FourCc::YU12, 64, 48, Ratio::new(25, 1)).unwrap();
    let mut writer = Y4mWriter::new(std::fs::File::create(&path).unwrap(), header).unwrap();
    for frame in &originals {
        writer.write_frame(frame).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);

    wd.phase("producer ready");
    let mut p = spawn_publish(
        "publish-y4m",
        &d,
        &format!("--file {} --flat {EVERY_FRAME}", path.display()),
    );
    let ready = p.wait_event("ready");
    assert_eq!(ready["kind"], "y4m", "{ready}");
    assert_eq!(ready["format"]["fourcc"], "YU12", "{ready}");
    assert_eq!(u64_of(&ready["format"], "frame_bytes"), 64 * 48 * 3 / 2);
    assert_eq!(ready["fps"], 25.0, "{ready}");

    read_all(&d, &wd, &originals, true);

    wd.phase("producer stops at the end of the file");
    let stopped = stopped_cleanly(&mut p);
    assert_eq!(u64_of(&stopped, "published"), N, "{stopped}");
    assert_eq!(u64_of(&stopped, "bytes_copied"), N * 64 * 48 * 3 / 2);
    let snap = inspect(&d, &Dir::ring(d.path(), STREAM));
    assert_eq!(snap["format"]["fourcc"], "YU12", "{snap}");
    assert_eq!(snap["format"]["fps"], 25.0, "{snap}");
    assert!(snap["content_type"].is_null(), "{snap}");
}

/// A recording cut short part way into its last frame: the whole frames
/// are published and verified, the partial one never, and stderr says
/// where the file ends and how much of a frame is missing.
#[test]
fn partial_last_frame_is_reported_not_published() {
    let _serial = serial();
    let wd = Watchdog::new(
        "partial_last_frame_is_reported_not_published",
        Duration::from_secs(60),
    );
    let d = Dir::new("file-partial");
    const N: u64 = 5;
    const FRAME: u64 = 64 * 48;
    let all = frames(FourCc::GREY, 64, 48, N + 1);
    let path = d.path().join("cut.grey");
    write_raw(&path, &all[..N as usize], &all[N as usize][..1000]);

    wd.phase("producer ready");
    let mut p = spawn_publish(
        "publish-partial",
        &d,
        &format!(
            "--file {} --format GREY --width 64 --height 48 --flat {EVERY_FRAME}",
            path.display()
        ),
    );
    p.wait_event("ready");
    read_all(&d, &wd, &all[..N as usize], true);

    wd.phase("producer stops at the partial frame");
    let stopped = stopped_cleanly(&mut p);
    assert_eq!(u64_of(&stopped, "published"), N, "{stopped}");
    assert_eq!(u64_of(&stopped, "frames"), N, "{stopped}");
    assert_eq!(u64_of(&stopped, "partial_frames"), 1, "{stopped}");
    // The ring never saw a sixth frame.
    let snap = inspect(&d, &Dir::ring(d.path(), STREAM));
    assert_eq!(u64_of(&snap, "head"), N, "{snap}");
    assert_eq!(u64_of(&snap["counters"], "published"), N, "{snap}");
    // The stderr reader thread may still be taking in the last lines.
    wd.phase("the partial frame is reported on stderr");
    let want = format!(
        "partial frame at byte {}: the file ends 1000 bytes into it, but a frame is {FRAME} bytes",
        N * FRAME
    );
    let text = poll_until(|| {
        let text = p.stderr_text();
        text.contains(&want).then_some(text)
    });
    assert!(text.contains("not published"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

/// `--loop` starts over at the end of the file, so `--frames` ends the run.
#[test]
fn looping_replay_counts_its_passes() {
    let _serial = serial();
    let _wd = Watchdog::new("looping_replay_counts_its_passes", Duration::from_secs(60));
    let d = Dir::new("file-loop");
    let path = d.path().join("three.grey");
    write_raw(&path, &frames(FourCc::GREY, 64, 48, 3), &[]);
    let mut p = spawn_publish(
        "publish-loop",
        &d,
        &format!(
            "--file {} --format GREY --width 64 --height 48 --flat --loop --frames 10",
            path.display()
        ),
    );
    assert_eq!(p.wait_event("ready")["loop"], true);
    let stopped = stopped_cleanly(&mut p);
    for (key, want) in [("published", 10), ("frames", 10), ("loops", 3)] {
        assert_eq!(u64_of(&stopped, key), want, "{key}: {stopped}");
    }
    assert_eq!(stopped["end_of_file"], false, "{stopped}");
}

/// `--wait-readers` and `--linger` serve the test pattern too: a reader
/// registered before the first frame gets all of a flat-out `--frames` run,
/// byte for byte what the test pattern renders for each seq.
#[test]
fn test_pattern_waits_for_its_reader() {
    six_pattern_frames_reach_a_reader("test_pattern_waits_for_its_reader", FourCc::GREY, "");
}

/// `--copy` renders into a private buffer and publishes by copy: readers
/// get the same bytes as from the loan path, stamps verified.
#[test]
fn copy_mode_publishes_the_same_frames() {
    six_pattern_frames_reach_a_reader(
        "copy_mode_publishes_the_same_frames",
        FourCc::YUYV,
        "--copy",
    );
}

/// `--copy-stores` and `--slot-reuse` reach the ring: forced streaming
/// stores (on frames far smaller than `auto` would stream, so the copy's
/// unaligned head and tail are exercised) with warm reuse, and forced
/// cached stores with oldest-first reuse, both deliver the same bytes.
#[test]
fn copy_stores_and_slot_reuse_options_publish_the_same_frames() {
    six_pattern_frames_reach_a_reader(
        "copy_stores_streaming_warm",
        FourCc::YUYV,
        "--copy --copy-stores streaming --slot-reuse warm",
    );
    six_pattern_frames_reach_a_reader(
        "copy_stores_cached_oldest",
        FourCc::RGB3,
        "--copy --copy-stores cached --slot-reuse oldest",
    );
}

/// `camux publish` of 6 test-pattern frames of 64x48 `fourcc` (plus
/// `extra` arguments): a reader gets them byte for byte, stamps verified,
/// and the producer stops by itself having published 6.
fn six_pattern_frames_reach_a_reader(test: &str, fourcc: FourCc, extra: &str) {
    let _serial = serial();
    let wd = Watchdog::new(test, Duration::from_secs(60));
    let d = Dir::new(test);
    let mut p = spawn_publish(
        test,
        &d,
        &format!(
            "--format {fourcc} --width 64 --height 48 --frames 6 --flat {extra} {EVERY_FRAME}"
        ),
    );
    assert_eq!(p.wait_event("ready")["source"], "synthetic");
    read_all(&d, &wd, &frames(fourcc, 64, 48, 6), true);
    wd.phase("producer stops after --frames");
    let stopped = stopped_cleanly(&mut p);
    assert_eq!(u64_of(&stopped, "published"), 6, "{stopped}");
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU)
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Writes `input` into the FIFO from a thread (opening it blocks until the
/// producer opens the other end) and closes it: the end of the stream.
fn feed(fifo: PathBuf, input: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap_or_else(|e| panic!("open {} for writing: {e}", fifo.display()));
        w.write_all(&input).unwrap();
    })
}

/// What one sensor run should show.
struct SensorCase {
    name: &'static str,
    /// Framing (and content type) arguments.
    args: &'static str,
    /// The bytes the sensor writes.
    input: Vec<u8>,
    /// The records it holds.
    records: Vec<Vec<u8>>,
    /// The ready line's framing.
    framing: &'static str,
    content_type: &'static str,
    /// Slot size: the largest record.
    max: u64,
    /// Stopped-line counters: oversized, empty, truncated.
    skipped: (u64, u64, u64),
}

fn sensor_through_fifo(case: SensorCase) {
    let _serial = serial();
    let wd = Watchdog::new(case.name, Duration::from_secs(60));
    let d = Dir::new(case.name);
    let fifo = d.path().join("sensor.fifo");
    mkfifo(&fifo);

    wd.phase("producer opens the FIFO and is ready");
    let args = format!("--sensor {} {} {EVERY_FRAME}", fifo.display(), case.args);
    let mut p = spawn_publish("publish-sensor", &d, &args);
    let writer = feed(fifo.clone(), case.input.clone());
    let ready = p.wait_event("ready");
    assert_eq!(ready["source"], "sensor", "{ready}");
    assert_eq!(ready["path"], fifo.display().to_string(), "{ready}");
    assert_eq!(ready["framing"], case.framing, "{ready}");
    assert_eq!(ready["content_type"], case.content_type, "{ready}");

    read_all(&d, &wd, &case.records, false);
    writer.join().unwrap();

    wd.phase("producer stops at the end of the stream");
    let stopped = stopped_cleanly(&mut p);
    let n = case.records.len() as u64;
    let bytes: u64 = case.records.iter().map(|r| r.len() as u64).sum();
    let (oversized, empty, truncated) = case.skipped;
    for (key, want) in [
        ("published", n),
        ("records", n),
        ("oversized", oversized),
        ("empty", empty),
        ("truncated", truncated),
        ("bytes_read", case.input.len() as u64),
        ("bytes_copied", bytes),
    ] {
        assert_eq!(u64_of(&stopped, key), want, "{key}: {stopped}");
    }
    assert_eq!(stopped["end_of_stream"], true, "{stopped}");

    let snap = inspect(&d, &Dir::ring(d.path(), STREAM));
    assert_eq!(snap["content_type"], case.content_type, "{snap}");
    assert_eq!(snap["format"]["fourcc"], "RAW ", "{snap}");
    assert_eq!(u64_of(&snap["format"], "width"), case.max, "{snap}");
    assert_eq!(u64_of(&snap["format"], "height"), 1, "{snap}");
    assert_eq!(u64_of(&snap["geometry"], "slot_size"), case.max, "{snap}");
}

/// Newline-delimited records: the newline (and a \r before it) is not
/// part of a record; an empty line, a line too long and a last line with
/// no newline are skipped and counted, never published.
#[test]
fn sensor_lines_through_a_fifo() {
    let mut input = b"alpha,1\nb,2,3\r\n\n".to_vec();
    input.extend([b'x'; 100]);
    input.extend(b"\nlast line\ntrunc");
    sensor_through_fifo(SensorCase {
        name: "sensor-lines",
        args: "--lines --max-record-bytes 64 --content-type text/csv",
        input,
        records: vec![
            b"alpha,1".to_vec(),
            b"b,2,3".to_vec(),
            b"last line".to_vec(),
        ],
        framing: "lines:64",
        content_type: "text/csv",
        max: 64,
        skipped: (1, 1, 1),
    });
}

/// Fixed-size binary records (any bytes, newlines included), with the
/// default content type; a record cut short at the end is dropped.
#[test]
fn sensor_fixed_records_through_a_fifo() {
    let records: Vec<Vec<u8>> = (0..5u8)
        .map(|r| (0..24u8).map(|i| r.wrapping_mul(37) ^ i ^ b'\n').collect())
        .collect();
    let mut input = records.concat();
    input.extend([0xff; 10]);
    sensor_through_fifo(SensorCase {
        name: "sensor-fixed",
        args: "--record-size 24",
        input,
        records,
        framing: "fixed:24",
        content_type: "application/octet-stream",
        max: 24,
        skipped: (0, 0, 1),
    });
}

/// A sensor that is open but says nothing still stops on SIGTERM (its read
/// blocks, and would be retried, on a thread of its own).
#[test]
fn quiet_sensor_stops_on_sigterm() {
    let _serial = serial();
    let wd = Watchdog::new("quiet_sensor_stops_on_sigterm", Duration::from_secs(60));
    let d = Dir::new("sensor-quiet");
    let fifo = d.path().join("quiet.fifo");
    mkfifo(&fifo);
    wd.phase("producer opens the FIFO and is ready");
    let mut p = spawn_publish(
        "publish-quiet",
        &d,
        &format!("--sensor {} --lines", fifo.display()),
    );
    // Open for writing and keep it open, writing nothing.
    let opener = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(&fifo).unwrap())
    };
    p.wait_event("ready");
    let writer = opener.join().unwrap();
    wd.phase("SIGTERM stops the producer blocked in a read");
    p.signal(Signal::SIGTERM);
    let stopped = stopped_cleanly(&mut p);
    assert_eq!(u64_of(&stopped, "published"), 0, "{stopped}");
    assert_eq!(stopped["end_of_stream"], false, "{stopped}");
    drop(writer);
}

/// Runs `camux publish --dir <d> --stream STREAM <args>` to completion;
/// its exit code and stderr.
fn run_publish(d: &Dir, args: &[&str]) -> (Option<i32>, String) {
    let out = publish_cmd(d, args)
        .stdin(Stdio::null())
        .output()
        .expect("run camux publish");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Arguments that do not go together are usage errors (exit 2) that say
/// what is wrong, before any ring is made; a raw file without its format
/// is an error (exit 1) that says what to give.
#[test]
fn source_usage_errors() {
    let _wd = Watchdog::new("source_usage_errors", Duration::from_secs(60));
    let d = Dir::new("source-usage");
    let raw = d.path().join("frames.raw");
    std::fs::write(&raw, [0u8; 6144]).unwrap();
    let raw = raw.to_str().unwrap();
    for (args, says) in [
        (&["--record-size", "8"][..], "--sensor"),
        (&["--lines"][..], "--sensor"),
        (&["--content-type", "text/csv"][..], "--sensor"),
        (
            &["--file", raw, "--v4l2", "/dev/video0"][..],
            "cannot be used with",
        ),
        (
            &["--file", raw, "--sensor", raw, "--lines"][..],
            "cannot be used with",
        ),
        (&["--sensor", raw][..], "--record-size"),
        (
            &["--sensor", raw, "--lines", "--record-size", "8"][..],
            "cannot be used with",
        ),
        (
            &["--sensor", raw, "--lines", "--fps", "5"][..],
            "cannot be used with",
        ),
        (
            &["--sensor", raw, "--lines", "--content-type", "a b"][..],
            "a space",
        ),
        (
            &["--sensor", raw, "--record-size", "0"][..],
            "not a record size",
        ),
        (&["--loop"][..], "--file"),
        (&["--file-kind", "raw"][..], "--file"),
    ] {
        let (code, stderr) = run_publish(&d, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (code, stderr) = run_publish(&d, &["--file", raw]);
    assert_eq!(code, Some(1), "{stderr}");
    for part in [raw, "raw frames", "--format, --width and --height"] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    let (code, stderr) = run_publish(&d, &["--file", raw, "--format", "YUYV", "--width", "64"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("give --height too"), "{stderr}");
    assert!(
        !Dir::ring(d.path(), STREAM).exists(),
        "a refused command made a ring"
    );
}
