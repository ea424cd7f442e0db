//! GStreamer shared memory: a real `gst-launch-1.0` pipeline
//! `fdsrc ! rawvideoparse ! shmsink` produces, and readers speak the
//! shmsrc side of the shm protocol (`gst-plugins-bad/sys/shm/shmpipe.c`)
//! themselves, so that they can take the time when a buffer arrives.
//!
//! How the latency is measured, and what it includes:
//! - the harness's feeder process (the "camera") writes each frame, with
//!   its index and a CLOCK_MONOTONIC stamp in the first 24 bytes, into the
//!   pipeline's stdin (a pipe enlarged to 1 MiB where the kernel allows);
//!   the stamp is taken just before that write. GStreamer has no
//!   timestamps that cross shmsink (`shmsrc` makes new ones), so the stamp
//!   has to travel in the payload, and so it has to enter before fdsrc;
//! - `fdsrc` reads the pipe, `rawvideoparse` cuts frames of the format's
//!   size, `shmsink` copies each into its shm area and sends every
//!   connected client a 24-byte "new buffer" message on its socket;
//! - a reader takes the wake-up time when that message's read returns,
//!   then reads the stamp from the shm area (`pread` of the `/dev/shm`
//!   file: the readers are safe Rust and do not map it), and acknowledges
//!   the buffer as shmsrc does when it is done with it. A touching reader
//!   reads the whole buffer with `pread` (a copy; shmsrc's users read the
//!   mapping in place, so this overstates GStreamer's reader CPU a little).
//!
//! So GStreamer's latency includes one pipe hop and fdsrc's read that a
//! GStreamer-native source (v4l2src) would not have; its producer CPU is
//! the whole `gst-launch-1.0` process (fdsrc's read from the pipe,
//! rawvideoparse, shmsink's copy and its socket messages), from the
//! scheduler's counters of its threads. The feeder's own writes are the
//! source's cost and are not counted, as camux's producer gets its frames
//! from a buffer too. Configuration, as shmsink's documentation shows it:
//! `socket-path`, `shm-size` (the 64 MiB default, or 16 frames if that is
//! more), `wait-for-connection=true` (the default), and `sync=false`: the
//! frames come already paced by the source, and buffers from a non-live
//! source synced to the clock would be held back, not delivered sooner.

use super::role::{self, Frame, Recorder, Spinner};
use super::spec::{Line, Mode, Spec, Wait};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The program the producer runs.
pub const GST_LAUNCH: &str = "gst-launch-1.0";
/// shmpipe.c's message types.
const NEW_SHM_AREA: u32 = 1;
const CLOSE_SHM_AREA: u32 = 2;
const NEW_BUFFER: u32 = 3;
const ACK_BUFFER: u32 = 4;
/// `struct CommandBuffer` on a 64-bit Linux: u32 type, i32 area id, a
/// 16-byte union.
const CMD: usize = 24;

fn sock_path(spec: &Spec) -> PathBuf {
    spec.dir.join(format!("{}.gst", spec.tag))
}

/// The pipeline description.
pub fn pipeline(spec: &Spec) -> Vec<String> {
    let sc = &spec.scenario;
    let s = sc.shape;
    let bytes = s.bytes();
    let fps = match sc.mode {
        Mode::Paced => sc.fps.round().max(1.0) as u64,
        Mode::Flat => 60,
    };
    let shm_size = (64usize << 20).max(16 * bytes);
    [
        "fdsrc".to_string(),
        "fd=0".into(),
        format!("blocksize={bytes}"),
        "!".into(),
        "rawvideoparse".into(),
        format!("width={}", s.width),
        format!("height={}", s.height),
        format!("format={}", s.gst_format()),
        format!("framerate={fps}/1"),
        "!".into(),
        "shmsink".into(),
        format!("socket-path={}", sock_path(spec).display()),
        format!("shm-size={shm_size}"),
        "wait-for-connection=true".into(),
        "sync=false".into(),
    ]
    .into()
}

/// The producer: the feeder, and the pipeline it feeds.
pub fn producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let log = spec.dir.join(format!("{}.gst-launch.stderr", spec.tag));
    let mut child = Command::new(GST_LAUNCH)
        .args(pipeline(spec))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot run {GST_LAUNCH}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    // A bigger pipe lets fdsrc read a frame in fewer calls (1 MiB is the
    // unprivileged maximum by default; a refusal changes nothing).
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&stdin),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    // The socket exists once the pipeline prerolls: gst-launch says so.
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{GST_LAUNCH} ended before prerolling: {}", err.trim());
        }
        if line.contains("PREROLL") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let mut frame = role::pattern(sc.shape.bytes());
    role::say(&Line::Ready)?;
    role::wait_go();
    let warmup = sc.warmup();
    let mut gst_cpu = (0u64, 0u64);
    let mut report = role::produce(sc, |f: Frame| {
        if f.index == warmup + 1 {
            gst_cpu.0 = super::measure::schedstat_ns(pid);
        }
        if f.end {
            gst_cpu.1 = super::measure::schedstat_ns(pid);
        }
        role::put_header(&mut frame, f, role::now_ns());
        stdin.write_all(&frame).context("write to gst-launch")?;
        Ok(true)
    })?;
    let gst = super::hist::cpu_between(gst_cpu.0, gst_cpu.1);
    report.cpu_ns = gst;
    report.cpu_clock_ns = gst;
    report.private_kib = super::measure::private_kib(&pid.to_string());
    report.note = Some("producer CPU: gst-launch-1.0's threads (schedstat)".into());
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    drop(stdin); // EOS
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Reads exactly `buf.len()` bytes; a spinning reader polls.
fn fill(s: &mut UnixStream, buf: &mut [u8], spinner: Option<&mut Spinner>) -> anyhow::Result<()> {
    let mut spinner = spinner;
    let mut done = 0;
    while done < buf.len() {
        match s.read(&mut buf[done..]) {
            Ok(0) => bail!("shmsink closed the connection"),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => match spinner.as_deref_mut() {
                Some(sp) => sp.spin()?,
                None => bail!("no message for {:?}", role::STALL),
            },
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A reader speaking the shmsrc side of the protocol.
pub fn reader(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let path = sock_path(spec);
    let mut s = UnixStream::connect(&path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let spin = sc.wait == Wait::Spin;
    if spin {
        s.set_nonblocking(true)?;
    } else {
        s.set_read_timeout(Some(role::STALL))?;
    }
    let mut rec = Recorder::new(sc);
    let mut spinner = Spinner::default();
    let mut areas: HashMap<i32, File> = HashMap::new();
    let mut cmd = [0u8; CMD];
    let mut header = [0u8; role::HEADER];
    let mut payload = vec![0u8; if rec.touches() { sc.shape.bytes() } else { 0 }];
    let mut ready = false;
    loop {
        fill(&mut s, &mut cmd, spin.then_some(&mut spinner))?;
        let wake = role::now_ns();
        let (kind, area) = (u32_at(&cmd, 0), u32_at(&cmd, 4) as i32);
        match kind {
            NEW_SHM_AREA => {
                let len = u32_at(&cmd, 16) as usize;
                anyhow::ensure!((1..=4096).contains(&len), "shm area name of {len} bytes");
                let mut name = vec![0u8; len];
                // The name follows at once; read it blocking.
                s.set_nonblocking(false)?;
                s.read_exact(&mut name)?;
                s.set_nonblocking(spin)?;
                let name = String::from_utf8_lossy(&name)
                    .trim_end_matches('\0')
                    .to_string();
                let file_path = PathBuf::from("/dev/shm").join(name.trim_start_matches('/'));
                let f = File::open(&file_path)
                    .with_context(|| format!("cannot open {}", file_path.display()))?;
                areas.insert(area, f);
                if !ready {
                    ready = true;
                    role::say(&Line::Ready)?;
                }
            }
            CLOSE_SHM_AREA => {
                areas.remove(&area);
            }
            NEW_BUFFER => {
                spinner.got();
                let (offset, size) = (u64_at(&cmd, 8), u64_at(&cmd, 16) as usize);
                let f = areas
                    .get(&area)
                    .context("a buffer in an unknown shm area")?;
                f.read_exact_at(&mut header, offset)?;
                let (index, stamp, end) = role::get_header(&header);
                rec.frame(index, stamp, wake, end);
                if rec.touches() {
                    let n = size.min(payload.len());
                    f.read_exact_at(&mut payload[..n], offset)?;
                    rec.touch(&payload[..n]);
                }
                let mut ack = [0u8; CMD];
                ack[0..4].copy_from_slice(&ACK_BUFFER.to_ne_bytes());
                ack[4..8].copy_from_slice(&area.to_ne_bytes());
                ack[8..16].copy_from_slice(&offset.to_ne_bytes());
                s.write_all(&ack)?;
                if end {
                    break;
                }
            }
            other => bail!("unknown shm message type {other}"),
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
