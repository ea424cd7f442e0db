//! `camux record` across real processes: a producer (`camux publish`, or a
//! publisher in this process for MJPEG), the real recorder, and the files
//! it leaves, read back byte for byte and by `ffprobe` when it is
//! installed (Debian's ffmpeg package; `CAMUX_REQUIRE_FFMPEG=1` makes its
//! absence a failure, as `.ci/record-check` sets it).
//!
//! Every wait is on a condition (a JSON line, a file appearing, a process
//! exiting), bounded by a watchdog; nothing asserts timing. A recorder gets
//! every frame from seq 1 on because the producer holds its first frame
//! back until the recorder is registered (`--wait-readers 1`); frames it
//! still misses by falling behind must show in its sidecar as lagged gaps,
//! which the checks account for exactly.

mod util;

use camux::format::{FourCc, FrameLayout};
use camux::ring::{RingOptions, StreamFormat};
use camux::source::{stamp, Synthetic, SyntheticConfig};
use camux::{FrameInfo, Published, Publisher};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{note, poll_until, serial, which, Dir, Proc, Producer, Watchdog};

const STREAM: &str = "cam";

/// Whether ffmpeg's tools are here; `None` (and a `skipped:` note) if not,
/// a panic if `CAMUX_REQUIRE_FFMPEG=1`.
fn ffmpeg_tool(tool: &str, what: &str) -> Option<PathBuf> {
    match which(tool) {
        Some(p) => Some(p),
        None if std::env::var("CAMUX_REQUIRE_FFMPEG").as_deref() == Ok("1") => panic!(
            "{tool} is not installed and CAMUX_REQUIRE_FFMPEG=1: install Debian's ffmpeg \
             package (apt-get install ffmpeg; .ci/record-check does)"
        ),
        None => {
            note(format!(
                "skipped: {what}: {tool} is not installed (apt-get install ffmpeg)"
            ));
            None
        }
    }
}

/// `ffprobe` on `path` (with `-f FORMAT` if given): the first video
/// stream's fields, frames counted by decoding.
fn ffprobe(ffprobe: &Path, path: &Path, format: Option<&str>) -> Value {
    let mut cmd = Command::new(ffprobe);
    cmd.args([
        "-v",
        "error",
        "-of",
        "json",
        "-count_frames",
        "-select_streams",
        "v:0",
    ])
    .args([
        "-show_entries",
        "stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames",
    ]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    cmd.arg(path);
    let out = util::run_ok(cmd);
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ffprobe output {out:?}: {e}"));
    v["streams"][0].clone()
}

/// A Y4M file, parsed here independently of camux's reader.
struct Y4m {
    width: usize,
    height: usize,
    rate: String,
    colourspace: String,
    frames: Vec<Vec<u8>>,
    /// Offset of each frame's data.
    offsets: Vec<u64>,
}

fn parse_y4m(path: &Path) -> Y4m {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let nl = bytes.iter().position(|&b| b == b'\n').expect("header line");
    let header = std::str::from_utf8(&bytes[..nl]).expect("utf-8 header");
    let mut fields = header.split(' ');
    assert_eq!(fields.next(), Some("YUV4MPEG2"), "{header}");
    let (mut width, mut height, mut rate, mut colourspace) =
        (0, 0, String::new(), "420jpeg".to_owned());
    for f in fields {
        match f.split_at(1) {
            ("W", v) => width = v.parse().unwrap(),
            ("H", v) => height = v.parse().unwrap(),
            ("F", v) => rate = v.to_owned(),
            ("C", v) => colourspace = v.to_owned(),
            _ => {}
        }
    }
    let frame_bytes = match colourspace.as_str() {
        "mono" => width * height,
        "422" => width * height * 2,
        "444" => width * height * 3,
        _ => width * height * 3 / 2,
    };
    let (mut frames, mut offsets) = (Vec::new(), Vec::new());
    let mut at = nl + 1;
    while at < bytes.len() {
        assert_eq!(
            &bytes[at..at + 6],
            b"FRAME\n",
            "frame {} at {at}",
            frames.len()
        );
        at += 6;
        offsets.push(at as u64);
        frames.push(bytes[at..at + frame_bytes].to_vec());
        at += frame_bytes;
    }
    assert_eq!(at, bytes.len(), "trailing bytes");
    Y4m {
        width,
        height,
        rate,
        colourspace,
        frames,
        offsets,
    }
}

/// The frame the synthetic source renders as `seq`.
fn rendered(config: SyntheticConfig, seq: u64) -> Vec<u8> {
    let source = Synthetic::new(config).unwrap();
    let mut frame = vec![0; source.frame_bytes()];
    source.render(seq, &mut frame).unwrap();
    frame
}

/// The planar form the recording must hold of a synthetic frame, and the
/// frame packed back from the planar form (to verify its stamp).
fn planar(fourcc: FourCc, w: usize, h: usize, frame: &[u8]) -> Vec<u8> {
    match fourcc {
        FourCc::YUYV | FourCc::UYVY => {
            let (yi, ui, y2, vi) = if fourcc == FourCc::YUYV {
                (0, 1, 2, 3)
            } else {
                (1, 0, 3, 2)
            };
            let mut y = Vec::new();
            let (mut u, mut v) = (Vec::new(), Vec::new());
            for px in frame.chunks_exact(4) {
                y.extend([px[yi], px[y2]]);
                u.push(px[ui]);
                v.push(px[vi]);
            }
            [y, u, v].concat()
        }
        FourCc::NV12 => {
            let (y, uv) = frame.split_at(w * h);
            let u: Vec<u8> = uv.iter().step_by(2).copied().collect();
            let v: Vec<u8> = uv.iter().skip(1).step_by(2).copied().collect();
            [y.to_vec(), u, v].concat()
        }
        _ => frame.to_vec(),
    }
}

fn unplanar(fourcc: FourCc, w: usize, h: usize, planes: &[u8]) -> Vec<u8> {
    match fourcc {
        FourCc::YUYV | FourCc::UYVY => {
            let (y, c) = planes.split_at(w * h);
            let (u, v) = c.split_at(w * h / 2);
            (0..w * h / 2)
                .flat_map(|i| {
                    let (y0, y1) = (y[2 * i], y[2 * i + 1]);
                    if fourcc == FourCc::YUYV {
                        [y0, u[i], y1, v[i]]
                    } else {
                        [u[i], y0, v[i], y1]
                    }
                })
                .collect()
        }
        FourCc::NV12 => {
            let (y, c) = planes.split_at(w * h);
            let (u, v) = c.split_at(w * h / 4);
            let uv: Vec<u8> = u.iter().zip(v).flat_map(|(a, b)| [*a, *b]).collect();
            [y.to_vec(), uv].concat()
        }
        _ => planes.to_vec(),
    }
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()))
}

/// The sidecar's frames: seqs in order, consecutive except where a lagged
/// gap says exactly how many were missed. Returns the seqs.
fn check_sidecar(sidecar: &Value, file: &str) -> Vec<u64> {
    let frames = sidecar["frames"].as_array().expect("frames");
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    let missed: u64 = sidecar["gaps"]
        .as_array()
        .expect("gaps")
        .iter()
        .filter(|g| g["kind"] == "lagged")
        .map(|g| g["missed"].as_u64().unwrap())
        .sum();
    let jumps: u64 = seqs.windows(2).map(|w| w[1] - w[0] - 1).sum();
    assert_eq!(
        jumps, missed,
        "{file}: seqs {seqs:?} vs gaps {}",
        sidecar["gaps"]
    );
    for f in frames {
        for key in [
            "capture_mono_ns",
            "capture_real_ns",
            "publish_mono_ns",
            "publish_real_ns",
            "len",
        ] {
            assert!(
                f[key].as_u64().is_some_and(|v| v > 0),
                "{file}: {key} in {f}"
            );
        }
        assert!(f["offset"].as_u64().is_some(), "{file}: offset in {f}");
        assert!(
            f["publish_mono_ns"].as_u64() >= f["capture_mono_ns"].as_u64(),
            "{f}"
        );
    }
    assert_eq!(
        sidecar["summary"]["frames"].as_u64(),
        Some(seqs.len() as u64),
        "{file}"
    );
    assert!(
        sidecar["file"].as_str().is_some_and(|f| file.ends_with(f)),
        "{file}: {}",
        sidecar["file"]
    );
    seqs
}

/// Spawns `camux record --dir <dir> STREAM <args>`.
fn record(d: &Dir, args: &str) -> Proc {
    let mut cmd = d.camux(["record", "--dir"]);
    cmd.arg(d.path()).arg(STREAM).args(util::words(args));
    Proc::spawn("record", cmd)
}

/// Waits for `p` to exit; returns its status code and every JSON line.
fn finish(p: &mut Proc) -> (Option<i32>, Vec<Value>) {
    let mut lines = Vec::new();
    while let Some(l) = p.next_line() {
        if let util::Line::Json(v) = l {
            lines.push(v);
        }
    }
    (p.wait().code(), lines)
}

fn no_partials(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn y4m_clips_from_the_synthetic_source_read_back_as_the_pattern() {
    let _s = serial();
    let wd = Watchdog::new("y4m_clips", Duration::from_secs(120));
    let probe = ffmpeg_tool("ffprobe", "the ffprobe check of the Y4M clips");
    let (w, h, n) = (96usize, 64usize, 12u64);
    for (fourcc, pix_fmt, colourspace) in [
        (FourCc::YUYV, "yuv422p", "422"),
        (FourCc::UYVY, "yuv422p", "422"),
        (FourCc::NV12, "yuv420p", "420mpeg2"),
        (FourCc::YU12, "yuv420p", "420mpeg2"),
        (FourCc::GREY, "gray", "mono"),
    ] {
        wd.phase(format!("recording {fourcc}"));
        let d = Dir::new("record-y4m");
        let producer = Producer::start(
            "producer",
            &d,
            d.path(),
            STREAM,
            &format!(
                "--format {fourcc} --width {w} --height {h} --fps 50 --slots 16 --wait-readers 1"
            ),
        );
        let out = d.path().join("clip.y4m");
        let mut rec = record(&d, &format!("--frames {n} --out {} --json", out.display()));
        let (code, lines) = finish(&mut rec);
        assert_eq!(
            code,
            Some(0),
            "record {fourcc}: {lines:?}\n{}",
            rec.stderr_text()
        );
        producer.stop();
        let summary = lines
            .iter()
            .find(|l| l["event"] == "summary")
            .expect("summary");
        assert_eq!(summary["frames"], n, "{summary}");
        assert_eq!(summary["container"], "y4m", "{summary}");
        assert_eq!(
            summary["files"][0].as_str(),
            Some(out.to_str().unwrap()),
            "{summary}"
        );
        no_partials(d.path());

        let y4m = parse_y4m(&out);
        assert_eq!((y4m.width, y4m.height), (w, h));
        assert_eq!(y4m.colourspace, colourspace);
        assert_eq!(y4m.rate, "50:1");
        assert_eq!(y4m.frames.len() as u64, n);
        let sidecar = read_json(&PathBuf::from(format!("{}.json", out.display())));
        let seqs = check_sidecar(&sidecar, out.to_str().unwrap());
        assert_eq!(sidecar["format"]["fourcc"], fourcc.to_string());
        assert_eq!(sidecar["stream"], STREAM);
        let config = SyntheticConfig {
            width: w as u32,
            height: h as u32,
            fourcc,
            fps: 50.0,
        };
        for (i, (frame, seq)) in y4m.frames.iter().zip(&seqs).enumerate() {
            assert_eq!(
                sidecar["frames"][i]["offset"].as_u64(),
                Some(y4m.offsets[i]),
                "{fourcc} frame {i}"
            );
            let expected = rendered(config, *seq);
            assert!(
                *frame == planar(fourcc, w, h, &expected),
                "{fourcc}: frame {i} (seq {seq}) is not the pattern's frame {seq}"
            );
            // And independently of the renderer: the stamp of the frame
            // packed back from the planes verifies, for its own seq.
            let packed = unplanar(fourcc, w, h, frame);
            assert_eq!(
                stamp::verify(&packed).map(|v| v.seq),
                Ok(*seq),
                "{fourcc} frame {i}"
            );
        }
        if let Some(probe) = &probe {
            let s = ffprobe(probe, &out, None);
            assert_eq!(s["width"], w, "{s}");
            assert_eq!(s["height"], h, "{s}");
            assert_eq!(s["pix_fmt"], pix_fmt, "{fourcc}: {s}");
            assert_eq!(s["r_frame_rate"], "50/1", "{s}");
            assert_eq!(s["nb_read_frames"], n.to_string(), "{s}");
        }
    }
}

/// The JPEG images of an MJPEG stream (concatenated JPEGs), split by their
/// markers: SOI, segments with lengths up to SOS, entropy-coded data (where
/// FF is followed by 00 or a restart marker) up to EOI.
fn split_jpegs(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        assert_eq!(&bytes[at..at + 2], [0xFF, 0xD8], "SOI at {at}");
        at += 2;
        loop {
            assert_eq!(bytes[at], 0xFF, "marker at {at}");
            let marker = bytes[at + 1];
            let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            at += 2 + len;
            if marker == 0xDA {
                break;
            }
        }
        loop {
            if bytes[at] == 0xFF && bytes[at + 1] != 0 && !(0xD0..=0xD7).contains(&bytes[at + 1]) {
                assert_eq!(bytes[at + 1], 0xD9, "EOI at {at}");
                at += 2;
                break;
            }
            at += 1;
        }
        out.push(bytes[start..at].to_vec());
    }
    out
}

#[test]
fn mjpeg_recordings_are_the_jpeg_frames_byte_for_byte() {
    let _s = serial();
    let wd = Watchdog::new("mjpeg", Duration::from_secs(120));
    let (Some(ffmpeg), Some(probe)) = (
        ffmpeg_tool(
            "ffmpeg",
            "the MJPEG recording (needs a real MJPEG file from ffmpeg)",
        ),
        ffmpeg_tool("ffprobe", "the MJPEG recording"),
    ) else {
        return;
    };
    let d = Dir::new("record-mjpeg");
    let src = d.path().join("src.mjpeg");
    wd.phase("ffmpeg makes an MJPEG file");
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10",
        "-frames:v",
        "10",
    ])
    .args(["-c:v", "mjpeg", "-f", "mjpeg"])
    .arg(&src);
    util::run_ok(cmd);
    let jpegs = split_jpegs(&std::fs::read(&src).unwrap());
    assert_eq!(jpegs.len(), 10);

    // `camux publish --file` replays Y4M and fixed-size raw frames only (a
    // raw file cannot tell variable-size JPEGs apart), so the MJPEG file is
    // replayed by a publisher in this process, through the library's API,
    // as a camera's driver would publish it.
    let max = jpegs.iter().map(Vec::len).max().unwrap() as u64;
    let layout = FrameLayout::opaque(FourCc::MJPG, 160, 120, max).unwrap();
    let mut opts = RingOptions::new(
        d.path(),
        STREAM,
        StreamFormat::from_layout(&layout, 10.0),
        max,
    );
    opts.slots = 16;
    let mut publisher = Publisher::create(&opts).unwrap();
    let out = d.path().join("rec");
    let mut rec = record(&d, &format!("--frames 10 --out {} --json", out.display()));
    wd.phase("the recorder registers");
    poll_until(|| (publisher.poll_readers() >= 1).then_some(()));
    for (i, jpeg) in jpegs.iter().enumerate() {
        let info = FrameInfo {
            driver_seq: i as u64,
            ..Default::default()
        };
        assert!(matches!(
            publisher.publish(&info, jpeg).unwrap(),
            Published::Seq(_)
        ));
    }
    wd.phase("the recorder finishes");
    let (code, lines) = finish(&mut rec);
    drop(publisher);
    assert_eq!(code, Some(0), "{lines:?}\n{}", rec.stderr_text());
    let recorded = d.path().join("rec.mjpeg");
    assert_eq!(
        std::fs::read(&recorded).unwrap(),
        jpegs.concat(),
        "the recording is not the JPEGs"
    );
    let sidecar = read_json(&d.path().join("rec.mjpeg.json"));
    let seqs = check_sidecar(&sidecar, recorded.to_str().unwrap());
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    let mut offset = 0;
    for (f, jpeg) in sidecar["frames"].as_array().unwrap().iter().zip(&jpegs) {
        assert_eq!(f["len"].as_u64(), Some(jpeg.len() as u64));
        assert_eq!(f["offset"].as_u64(), Some(offset));
        offset += jpeg.len() as u64;
    }
    assert_eq!(sidecar["recorded_as"]["container"], "mjpeg");
    let s = ffprobe(&probe, &recorded, Some("mjpeg"));
    assert_eq!(s["codec_name"], "mjpeg", "{s}");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(160), Some(120)),
        "{s}"
    );
    assert_eq!(s["nb_read_frames"], "10", "{s}");
}

#[test]
fn segments_are_each_complete_with_their_own_sidecar() {
    let _s = serial();
    let _wd = Watchdog::new("segments", Duration::from_secs(120));
    let d = Dir::new("record-segments");
    let producer = Producer::start(
        "producer",
        &d,
        d.path(),
        STREAM,
        "--format GREY --width 64 --height 48 --fps 20 --slots 16 --wait-readers 1",
    );
    let out = d.path().join("seg.y4m");
    // 30 frames at 20 fps span at least 1.45 s of capture time: three
    // windows of 500 ms at least.
    let mut rec = record(
        &d,
        &format!("--frames 30 --segment 500ms --out {} --json", out.display()),
    );
    let (code, lines) = finish(&mut rec);
    producer.stop();
    assert_eq!(code, Some(0), "{lines:?}\n{}", rec.stderr_text());
    let segments: Vec<&Value> = lines.iter().filter(|l| l["event"] == "segment").collect();
    assert!(segments.len() >= 3, "{segments:?}");
    let mut all = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let path = d.path().join(format!("seg-{i:04}.y4m"));
        assert_eq!(seg["path"].as_str(), Some(path.to_str().unwrap()), "{seg}");
        let sidecar_path = format!("{}.json", path.display());
        assert_eq!(seg["sidecar"].as_str(), Some(sidecar_path.as_str()));
        let y4m = parse_y4m(&path);
        let sidecar = read_json(Path::new(&sidecar_path));
        let seqs = check_sidecar(&sidecar, path.to_str().unwrap());
        assert_eq!(y4m.frames.len(), seqs.len(), "{}", path.display());
        assert_eq!(seg["frames"].as_u64(), Some(seqs.len() as u64));
        for (frame, seq) in y4m.frames.iter().zip(&seqs) {
            assert_eq!(
                stamp::verify(frame).map(|v| v.seq),
                Ok(*seq),
                "{}",
                path.display()
            );
        }
        // Each file covers one 500 ms window of capture time.
        let t: Vec<u64> = sidecar["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["capture_mono_ns"].as_u64().unwrap())
            .collect();
        assert!(
            t.last().unwrap() - t[0] < 500_000_000,
            "{}: {t:?}",
            path.display()
        );
        all.extend(seqs);
    }
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(!d.path().join("seg.y4m").exists());
    no_partials(d.path());
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["segments"].as_u64(), Some(segments.len() as u64));
}

#[test]
fn a_recording_lives_under_a_temporary_name_until_it_is_complete() {
    let _s = serial();
    let wd = Watchdog::new("temp_name", Duration::from_secs(120));
    let d = Dir::new("record-rename");
    let producer = Producer::start(
        "producer",
        &d,
        d.path(),
        STREAM,
        "--format GREY --width 64 --height 48 --fps 20 --wait-readers 1",
    );
    let out = d.path().join("long.y4m");
    let mut rec = record(&d, &format!("--seconds 1h --out {} --json", out.display()));
    wd.phase("the recorder writes its temporary files");
    let partial = d.path().join(format!(".long.y4m.{}.partial", rec.pid()));
    let sidecar_partial = d
        .path()
        .join(format!(".long.y4m.json.{}.partial", rec.pid()));
    // Made when the first frame arrives, just before it is written: the
    // recording first, the sidecar a moment after it.
    poll_until(|| (partial.exists() && sidecar_partial.exists()).then_some(()));
    assert!(
        !out.exists(),
        "the final name exists before the recording is complete"
    );
    rec.signal(Signal::SIGTERM);
    let (code, lines) = finish(&mut rec);
    producer.stop();
    assert_eq!(code, Some(0), "{lines:?}\n{}", rec.stderr_text());
    assert!(!partial.exists() && !sidecar_partial.exists());
    let y4m = parse_y4m(&out);
    let sidecar = read_json(&d.path().join("long.y4m.json"));
    let seqs = check_sidecar(&sidecar, out.to_str().unwrap());
    assert_eq!(y4m.frames.len(), seqs.len());
    let summary = lines.last().unwrap();
    assert_eq!(summary["ended"], "signal", "{summary}");
    assert_eq!(summary["frames"].as_u64(), Some(seqs.len() as u64));
}

/// Runs `camux record` to completion; returns its status and stderr.
fn run_record(d: &Dir, args: &str) -> (Option<i32>, String) {
    let mut cmd = d.camux(["record", "--dir"]);
    cmd.arg(d.path()).arg(STREAM).args(util::words(args));
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unwritable_places_and_wrong_extensions_are_clear_errors() {
    let _s = serial();
    let _wd = Watchdog::new("errors", Duration::from_secs(120));
    let d = Dir::new("record-errors");
    let producer = Producer::start(
        "producer",
        &d,
        d.path(),
        STREAM,
        "--format GREY --width 64 --height 48 --fps 20",
    );

    let (code, err) = run_record(
        &d,
        &format!("--frames 1 --out {}/missing/clip.y4m", d.path().display()),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );

    let (code, err) = run_record(
        &d,
        &format!("--frames 1 --out {}/clip.mjpeg", d.path().display()),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("recorded as y4m") && err.contains(".mjpeg"),
        "{err}"
    );

    // A directory this process cannot write: read-only for root (a
    // read-only bind mount), mode 0555 for anyone else.
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let _guard = if util::is_root() {
        let src = d.path().join("ro-src");
        std::fs::create_dir(&src).unwrap();
        match util::MountGuard::bind_ro(&src, &ro) {
            Ok(g) => Some(g),
            Err(e) => {
                note(format!(
                    "skipped: the unwritable-directory case: cannot bind-mount read-only: {e}"
                ));
                None
            }
        }
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        None
    };
    if _guard.is_some() || !util::is_root() {
        let (code, err) = run_record(&d, &format!("--frames 1 --out {}/clip.y4m", ro.display()));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("cannot create the recording's temporary file")
                && err.contains(ro.to_str().unwrap())
                && err.contains("directory this user can write"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }

    // An existing recording is never replaced.
    let existing = d.path().join("old.y4m");
    std::fs::write(&existing, b"keep me").unwrap();
    let (code, err) = run_record(&d, &format!("--frames 1 --out {}", existing.display()));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    no_partials(d.path());
    producer.stop();

    // Usage errors: no length, no --out.
    for bad in ["--out x.y4m", "--frames 3"] {
        let (code, err) = run_record(&d, bad);
        assert_eq!(code, Some(2), "{bad}: {err}");
    }
}

/// A small tmpfs mounted for one test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_half_written() {
    let _s = serial();
    let _wd = Watchdog::new("full_disk", Duration::from_secs(120));
    if !util::is_root() {
        note("skipped: the full-disk case: mounting a small tmpfs needs root");
        return;
    }
    let d = Dir::new("record-full");
    let small = d.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let _fs = match Tmpfs::mount(&small, "2m") {
        Ok(fs) => fs,
        Err(e) => {
            note(format!(
                "skipped: the full-disk case: cannot mount a tmpfs: {e}"
            ));
            return;
        }
    };
    // 300 KiB frames: the 2 MiB fill within a few frames.
    let producer = Producer::start(
        "producer",
        &d,
        d.path(),
        STREAM,
        "--format GREY --width 640 --height 480 --fps 50 --slots 16",
    );
    let (code, err) = run_record(
        &d,
        &format!("--frames 1000 --out {}/clip.y4m", small.display()),
    );
    producer.stop();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the disk is full")
            && err.contains("was removed, not left half-written")
            && err.contains("no complete file was kept")
            && err.contains(small.to_str().unwrap()),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}
