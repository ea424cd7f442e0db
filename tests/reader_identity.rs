//! Readers are identified by `SO_PEERCRED` (pid, uid, gid), and a stream may
//! admit only some uids and gids (`RingOptions::allow_uids` / `allow_gids`):
//! in-process subscribers, the real `camux tail`, and (as root, with
//! `setpriv`) a `camux tail` running as another user.

mod util;

use camux::client::{OpenError, RecvError};
use camux::ring::socket::{inspect_readers, HandshakeError, REJECT_FULL};
use camux::ring::{ReaderInfo, RingOptions, StreamFormat};
use camux::{FrameInfo, Publisher, Subscriber};
use nix::unistd::{getegid, geteuid};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use util::{is_root, note, serial, which, Dir, Reader, Watchdog};

const STREAM: &str = "cam0";

fn opts(dir: &Path, uids: Option<Vec<u32>>, gids: Option<Vec<u32>>) -> RingOptions {
    let mut o = RingOptions::new(dir, STREAM, StreamFormat::opaque(256), 256);
    o.allow_uids = uids;
    o.allow_gids = gids;
    o
}

fn me() -> (u32, u32) {
    (geteuid().as_raw(), getegid().as_raw())
}

/// Takes registrations in until `done` holds for the reader table (at most 10 s).
fn wait_info(
    p: &mut Publisher,
    what: &str,
    done: impl Fn(&[ReaderInfo]) -> bool,
) -> Vec<ReaderInfo> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.poll_readers();
        let info = p.readers_info();
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{what}: readers {info:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The refusal inside an `OpenError`, or a panic saying what came instead.
fn refusal(r: Result<Subscriber, OpenError>) -> (u32, String, String) {
    match r {
        Err(e @ OpenError::Handshake(HandshakeError::Rejected { .. })) => {
            let shown = e.to_string();
            let OpenError::Handshake(HandshakeError::Rejected { code, message }) = e else {
                unreachable!()
            };
            (code, message, shown)
        }
        Err(e) => panic!("refused with the wrong error: {e:?}"),
        Ok(_) => panic!("a reader the allow-lists exclude was registered"),
    }
}

/// The producer still serves after a refusal: it answers an inspection.
fn still_serves(dir: &Path) {
    let sock = camux::ring::paths(dir, STREAM).1;
    inspect_readers(&sock, Duration::from_secs(5)).expect("producer still answers");
}

#[test]
fn allowed_uid_registers_and_is_identified() {
    let dir = tempfile::tempdir().unwrap();
    let (uid, gid) = me();
    let mut p = Publisher::create(&opts(dir.path(), Some(vec![uid]), None)).unwrap();
    assert!(p.readers_info().is_empty());
    let mut sub = Subscriber::open(dir.path(), STREAM).unwrap();
    let info = wait_info(&mut p, "registration", |i| i.len() == 1);
    let r = info[0];
    assert_ne!(r.id, 0);
    assert_eq!(
        (r.pid, r.uid, r.gid),
        (std::process::id(), uid, gid),
        "{r:?}"
    );
    assert_eq!((r.holds, r.hold_limit), (0, 4), "{r:?}");

    // Holds are counted as the reader takes and drops frames.
    for i in 0..3u8 {
        p.publish(&FrameInfo::default(), &[i; 16]).unwrap();
    }
    let a = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    let b = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((a.seq(), b.seq()), (1, 2));
    assert_eq!(p.readers_info()[0].holds, 2);
    assert_eq!(p.holds().0, 2);
    drop(a);
    assert_eq!(p.readers_info()[0].holds, 1);
    drop(b);
    assert_eq!(p.readers_info()[0].holds, 0);

    // A closed connection takes the reader out of the table.
    drop(sub);
    wait_info(&mut p, "removal", |i| i.is_empty());
}

#[test]
fn uid_not_allowed_is_refused_naming_uid_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (uid, _) = me();
    let other = uid.wrapping_add(1);
    let mut p = Publisher::create(&opts(dir.path(), Some(vec![other]), None)).unwrap();
    let (code, message, shown) = refusal(Subscriber::open(dir.path(), STREAM));
    assert_eq!(code, REJECT_FULL, "final for the client");
    assert_eq!(
        message,
        format!("uid {uid} is not allowed to read stream {STREAM}")
    );
    assert!(shown.contains(&message), "{shown}");
    assert_eq!(p.poll_readers(), 0);
    assert!(p.readers_info().is_empty());
    still_serves(dir.path());
    // Refused again, every time (nothing cached, nothing stuck).
    let (_, again, _) = refusal(Subscriber::open(dir.path(), STREAM));
    assert_eq!(again, message);
}

#[test]
fn gid_allow_list_admits_and_refuses() {
    let (_, gid) = me();
    let dir = tempfile::tempdir().unwrap();
    let mut p = Publisher::create(&opts(dir.path(), None, Some(vec![gid]))).unwrap();
    let _sub = Subscriber::open(dir.path(), STREAM).unwrap();
    let info = wait_info(&mut p, "registration", |i| i.len() == 1);
    assert_eq!(info[0].gid, gid);
    drop(p);

    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::create(&opts(dir.path(), None, Some(vec![gid.wrapping_add(1)]))).unwrap();
    let (code, message, _) = refusal(Subscriber::open(dir.path(), STREAM));
    assert_eq!(code, REJECT_FULL);
    assert_eq!(
        message,
        format!("gid {gid} is not allowed to read stream {STREAM}")
    );
    still_serves(dir.path());
    drop(p);
}

#[test]
fn a_reader_must_pass_every_list_given() {
    let (uid, gid) = me();
    for (uids, gids, want) in [
        (
            Some(vec![uid]),
            Some(vec![gid.wrapping_add(1)]),
            Some(format!("gid {gid} is not allowed")),
        ),
        (
            Some(vec![uid.wrapping_add(1)]),
            Some(vec![gid]),
            Some(format!("uid {uid} is not allowed")),
        ),
        // An empty list admits no one.
        (
            Some(vec![]),
            None,
            Some(format!("uid {uid} is not allowed")),
        ),
        (
            None,
            Some(vec![]),
            Some(format!("gid {gid} is not allowed")),
        ),
        // Among others, and both lists passed.
        (Some(vec![7, uid, 9]), Some(vec![gid, 5]), None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Publisher::create(&opts(dir.path(), uids.clone(), gids.clone())).unwrap();
        let r = Subscriber::open(dir.path(), STREAM);
        match want {
            Some(want) => {
                let (_, message, _) = refusal(r);
                assert!(message.starts_with(&want), "{uids:?} {gids:?}: {message}");
                assert!(message.ends_with(STREAM), "{message}");
                assert_eq!(p.poll_readers(), 0);
            }
            None => {
                let _sub = r.unwrap();
                let info = wait_info(&mut p, "registration", |i| i.len() == 1);
                assert_eq!((info[0].uid, info[0].gid), (uid, gid));
            }
        }
    }
}

#[test]
fn a_restarted_producer_applies_its_lists_to_returning_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (uid, _) = me();
    let mut p = Publisher::create(&opts(dir.path(), None, None)).unwrap();
    let mut sub = Subscriber::open(dir.path(), STREAM).unwrap();
    p.wait_readers(1, Duration::from_secs(10));
    p.publish(&FrameInfo::default(), b"x").unwrap();
    sub.recv_timeout(Duration::from_secs(5)).unwrap();
    drop(p);
    let mut p =
        Publisher::create(&opts(dir.path(), Some(vec![uid.wrapping_add(1)]), None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let e = loop {
        assert!(
            Instant::now() < deadline,
            "the returning reader was not refused"
        );
        match sub.recv_timeout(Duration::from_millis(50)) {
            Err(RecvError::Refused(e)) => break e,
            Err(RecvError::Timeout | RecvError::Stale { .. }) => {}
            other => panic!("{:?}", other.map(|f| f.seq())),
        }
    };
    assert!(
        e.to_string()
            .contains(&format!("uid {uid} is not allowed to read stream {STREAM}")),
        "{e}"
    );
    assert!(RecvError::Refused(e).is_fatal());
    assert_eq!(p.poll_readers(), 0);
}

/// A ring directory another uid can reach (tempdirs are 0700).
fn open_dir(d: &Dir) -> std::path::PathBuf {
    let dir = d.path().join("ring");
    std::fs::create_dir(&dir).unwrap();
    for p in [d.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn tail_args(dir: &Path) -> Vec<String> {
    ["tail", "--dir", dir.to_str().unwrap(), STREAM, "--json"]
        .map(str::to_owned)
        .to_vec()
}

/// Runs a tail that must be refused: it exits with a failure at once and
/// says why.
fn assert_tail_refused(mut cmd: Command, want: &str) {
    let out = cmd.output().expect("run camux tail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused tail succeeded: {stderr}");
    assert!(stderr.contains(want), "stderr lacks {want:?}: {stderr}");
}

/// A registered tail: readers_info names its process, and frames reach it.
fn assert_tail_accepted(p: &mut Publisher, r: &mut Reader, uid: u32, gid: u32) {
    let pid = r.proc.pid();
    let info = wait_info(p, "tail registration", |i| i.iter().any(|r| r.pid == pid));
    let me = info.iter().find(|r| r.pid == pid).unwrap();
    assert_eq!((me.uid, me.gid), (uid, gid), "{me:?}");
    for i in 0..5u8 {
        p.publish(&FrameInfo::default(), &[i; 32]).unwrap();
    }
    r.pump_frames(3);
}

#[test]
fn camux_tail_is_identified_and_refused() {
    let _serial = serial();
    let wd = Watchdog::new(
        "camux_tail_is_identified_and_refused",
        Duration::from_secs(60),
    );
    let (uid, gid) = me();
    let d = Dir::new("identity");
    let dir = open_dir(&d);

    wd.phase("allowed tail");
    let mut p = Publisher::create(&opts(&dir, Some(vec![uid]), Some(vec![gid]))).unwrap();
    let mut r = Reader::from_command("tail-allowed", &d, d.camux(tail_args(&dir)));
    assert_tail_accepted(&mut p, &mut r, uid, gid);
    r.stop();
    drop(p);

    wd.phase("refused tail");
    let p = Publisher::create(&opts(&dir, Some(vec![uid.wrapping_add(1)]), None)).unwrap();
    assert_tail_refused(
        d.camux(tail_args(&dir)),
        &format!("uid {uid} is not allowed to read stream {STREAM}"),
    );
    still_serves(&dir);
    drop(p);
}

#[test]
fn camux_tail_as_another_uid() {
    let _serial = serial();
    let setpriv = match (is_root(), which("setpriv")) {
        (false, _) => return note("skipped: camux_tail_as_another_uid: not root"),
        (true, None) => return note("skipped: camux_tail_as_another_uid: no setpriv on PATH"),
        (true, Some(s)) => s,
    };
    let wd = Watchdog::new("camux_tail_as_another_uid", Duration::from_secs(60));
    let d = Dir::new("identity-nobody");
    let dir = open_dir(&d);
    let (uid, gid) = me();
    let nobody = |d: &Dir| {
        let mut c = Command::new(&setpriv);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(util::camux_exe())
            .args(tail_args(&dir))
            .current_dir(d.path());
        c
    };

    wd.phase("uid 65534 not allowed");
    let p = Publisher::create(&opts(&dir, Some(vec![uid]), None)).unwrap();
    assert_tail_refused(
        nobody(&d),
        &format!("uid 65534 is not allowed to read stream {STREAM}"),
    );
    still_serves(&dir);
    drop(p);

    wd.phase("gid 65534 not allowed");
    let p = Publisher::create(&opts(&dir, Some(vec![uid, 65534]), Some(vec![gid]))).unwrap();
    assert_tail_refused(
        nobody(&d),
        &format!("gid 65534 is not allowed to read stream {STREAM}"),
    );
    drop(p);

    wd.phase("uid 65534 allowed");
    let mut p = Publisher::create(&opts(&dir, Some(vec![uid, 65534]), Some(vec![65534]))).unwrap();
    let mut r = Reader::from_command("tail-nobody", &d, nobody(&d));
    assert_tail_accepted(&mut p, &mut r, 65534, 65534);
    r.stop();
    note(format!(
        "camux_tail_as_another_uid: uid 65534 refused, then registered: {:?}",
        p.readers_info()
    ));
}
