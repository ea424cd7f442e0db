//! The Unix-socket fan-out broker: what a socket or gRPC broker (Akri's
//! video broker, say) does. The producer accepts one stream connection per
//! reader and writes every frame (a 24-byte header, then the payload) to
//! every reader in turn with blocking writes, so a slow reader slows
//! everyone (no drops). Readers read the header and the payload into a
//! buffer of their own. Default socket buffer sizes.
//!
//! The publish stamp is taken before the frame's first write; the wake-up
//! time when the reader has the whole frame (it cannot use it before).

use super::role::{self, Frame, Recorder, Spinner, STALL};
use super::spec::{Line, Spec, Wait};
use anyhow::{bail, Context};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

fn sock_path(spec: &Spec) -> PathBuf {
    spec.dir.join(format!("{}.broker", spec.tag))
}

/// Writes `header` then `payload` to `s`, all of it (vectored, so one
/// system call when the socket has room).
fn send(s: &mut UnixStream, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
    let total = header.len() + payload.len();
    let mut done = 0;
    while done < total {
        let n = if done < header.len() {
            s.write_vectored(&[IoSlice::new(&header[done..]), IoSlice::new(payload)])?
        } else {
            s.write(&payload[done - header.len()..])?
        };
        if n == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// The broker (producer) process.
pub fn producer(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let path = sock_path(spec);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    let src = role::pattern(sc.shape.bytes());
    role::say(&Line::Ready)?;
    role::wait_go();
    // The readers connected before "go": their connections wait in the backlog.
    let mut readers = (0..sc.readers)
        .map(|_| listener.accept().map(|(s, _)| s))
        .collect::<Result<Vec<_>, _>>()
        .context("accept")?;
    let mut header = [0u8; role::HEADER];
    let report = role::produce(sc, |f: Frame| {
        role::put_header(&mut header, f, role::now_ns());
        for r in &mut readers {
            send(r, &header, &src).context("write to a reader")?;
        }
        Ok(true)
    })?;
    role::say(&Line::Producer(report))?;
    role::wait_eof();
    Ok(())
}

/// Fills `buf` from `s`; spinning readers poll a non-blocking socket.
fn fill(s: &mut UnixStream, buf: &mut [u8], spinner: Option<&mut Spinner>) -> anyhow::Result<()> {
    match spinner {
        None => s.read_exact(buf).context("read from the broker"),
        Some(spinner) => {
            let mut done = 0;
            while done < buf.len() {
                match s.read(&mut buf[done..]) {
                    Ok(0) => bail!("the broker closed the connection"),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => spinner.spin()?,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
    }
}

/// A reader process.
pub fn reader(spec: &Spec) -> anyhow::Result<()> {
    let sc = &spec.scenario;
    let path = sock_path(spec);
    let mut s = UnixStream::connect(&path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let spin = sc.wait == Wait::Spin;
    if spin {
        s.set_nonblocking(true)?;
    } else {
        s.set_read_timeout(Some(STALL.max(Duration::from_secs(1))))?;
    }
    let mut rec = Recorder::new(sc);
    let mut spinner = Spinner::default();
    let mut header = [0u8; role::HEADER];
    let mut payload = vec![0u8; sc.shape.bytes()];
    role::say(&Line::Ready)?;
    loop {
        fill(&mut s, &mut header, spin.then_some(&mut spinner))?;
        fill(&mut s, &mut payload, spin.then_some(&mut spinner))?;
        let wake = role::now_ns();
        spinner.got();
        let (index, stamp, end) = role::get_header(&header);
        rec.frame(index, stamp, wake, end);
        rec.touch(&payload);
        if end {
            break;
        }
    }
    role::say(&Line::Reader(rec.finish()))?;
    Ok(())
}
