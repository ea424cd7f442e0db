//! The reader handshake: a `SOCK_SEQPACKET` Unix socket next to the ring
//! file (`<dir>/<stream>.sock`).
//!
//! A reader connects, sends a [`Hello`], and receives a [`Welcome`] with its
//! lease page (a sealed memfd) attached by `SCM_RIGHTS`. It then keeps the
//! connection open and silent: the producer treats EOF (a clean close or the
//! reader's death) as the release of everything the reader held. A reader
//! that comes back after a producer restart sends its old lease page with
//! the hello so the new producer honours the holds it still has.
//!
//! Every message is one 64-byte packet (inspection replies are longer) with a
//! magic and protocol version; anything else closes the connection. The
//! server (`Control`) runs on its own thread, bounds the number of
//! connections and the time a handshake may take, and hands registrations to
//! the publishing thread over a crossbeam channel, so the publish path never
//! touches a socket.

use crate::ring::layout::MAX_HOLDS;
use crate::ring::mem::{LeaseMap, RingMap};
use crate::ring::{mono_ns, protocol::LeaseWords};
use crate::sync::atomic::{AtomicBool, Ordering};
use crossbeam_channel::Sender;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect, getsockopt, listen, recv, sendmsg, socket, sockopt, AddressFamily, Backlog,
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Protocol version of the handshake.
pub const PROTO: u32 = 1;
/// Size of every handshake message.
pub const MSG_BYTES: usize = 64;
const HELLO_MAGIC: [u8; 8] = *b"CAMUXHI1";
const WELCOME_MAGIC: [u8; 8] = *b"CAMUXOK1";
const REJECT_MAGIC: [u8; 8] = *b"CAMUXNO1";
const INSPECT_MAGIC: [u8; 8] = *b"CAMUXIN1";
/// Bytes of a rejection's text (the end of the message, NUL-padded).
const REJECT_TEXT: usize = 48;
/// Size of one reader record in an inspection reply.
pub const RECORD_BYTES: usize = 160;

/// A malformed handshake message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The packet is not the expected size.
    #[error("message of {len} bytes, expected {expected}")]
    Size {
        /// Bytes received.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Not a camux handshake message.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// Another protocol version.
    #[error("handshake protocol {found}, expected {expected}")]
    Proto {
        /// Version received.
        found: u32,
        /// [`PROTO`].
        expected: u32,
    },
    /// A field with a value the protocol does not define.
    #[error("field `{field}` has undefined value {value}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// Value received.
        value: u64,
    },
}

/// What a client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloKind {
    /// Register as a reader and receive a lease page.
    Reader,
    /// Ask for the table of registered readers (`camux inspect`).
    Inspect,
}

/// The client's first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// What the client wants.
    pub kind: HelloKind,
    /// The client attached its existing lease page to keep its holds.
    pub adopt: bool,
    /// The client's PID (informational: PID namespaces differ).
    pub pid: u32,
    /// The ring file identity the client has mapped (0: none yet).
    pub ring_id: u64,
}

/// The producer's answer to a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The id the producer gave this reader.
    pub reader_id: u32,
    /// How many frames the reader may hold at once.
    pub hold_limit: u32,
    /// The ring file the producer publishes into.
    pub ring_id: u64,
    /// The producer's epoch.
    pub epoch: u32,
    /// The attached lease page is the one the reader sent.
    pub adopted: bool,
}

/// A refusal, with a reason for the reader's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// One of the `REJECT_*` codes.
    pub code: u32,
    /// Human-readable reason (at most 48 bytes).
    pub message: String,
}

/// The producer will not take this reader, and the client should not try
/// again: it has as many readers as it accepts, or the peer's credentials
/// are not on the stream's allow-lists ([`RingOptions::allow_uids`],
/// [`RingOptions::allow_gids`]). The message says which, e.g. `"uid 1000 is
/// not allowed to read stream cam0"`.
///
/// [`RingOptions::allow_uids`]: crate::ring::RingOptions::allow_uids
/// [`RingOptions::allow_gids`]: crate::ring::RingOptions::allow_gids
pub const REJECT_FULL: u32 = 1;
/// The hello was malformed or of another version.
pub const REJECT_PROTOCOL: u32 = 2;
/// The lease page sent for adoption was unusable.
pub const REJECT_LEASE: u32 = 3;
/// The producer could not create a lease page.
pub const REJECT_INTERNAL: u32 = 4;

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn header(b: &[u8], magic: [u8; 8]) -> Result<(), WireError> {
    if b.len() < MSG_BYTES {
        return Err(WireError::Size {
            len: b.len(),
            expected: MSG_BYTES,
        });
    }
    let m: [u8; 8] = b[0..8].try_into().expect("8 bytes");
    if m != magic {
        return Err(WireError::BadMagic(m));
    }
    let proto = get32(b, 8);
    if proto != PROTO {
        return Err(WireError::Proto {
            found: proto,
            expected: PROTO,
        });
    }
    Ok(())
}

impl Hello {
    /// Encodes the message.
    pub fn encode(&self) -> [u8; MSG_BYTES] {
        let mut b = [0u8; MSG_BYTES];
        b[0..8].copy_from_slice(&HELLO_MAGIC);
        put32(&mut b, 8, PROTO);
        put32(
            &mut b,
            12,
            match self.kind {
                HelloKind::Reader => 1,
                HelloKind::Inspect => 2,
            },
        );
        put32(&mut b, 16, u32::from(self.adopt));
        put32(&mut b, 20, self.pid);
        put64(&mut b, 24, self.ring_id);
        b
    }

    /// Decodes and validates a message (exactly [`MSG_BYTES`]; reserved bytes zero).
    ///
    /// ```
    /// use camux::ring::socket::{Hello, HelloKind};
    /// let h = Hello { kind: HelloKind::Reader, adopt: false, pid: 7, ring_id: 1 };
    /// assert_eq!(Hello::decode(&h.encode()), Ok(h));
    /// assert!(Hello::decode(b"GET / HTTP/1.1\r\n").is_err());
    /// ```
    pub fn decode(b: &[u8]) -> Result<Hello, WireError> {
        if b.len() != MSG_BYTES {
            return Err(WireError::Size {
                len: b.len(),
                expected: MSG_BYTES,
            });
        }
        header(b, HELLO_MAGIC)?;
        let kind = match get32(b, 12) {
            1 => HelloKind::Reader,
            2 => HelloKind::Inspect,
            v => {
                return Err(WireError::BadField {
                    field: "kind",
                    value: v.into(),
                })
            }
        };
        let adopt = match get32(b, 16) {
            0 => false,
            1 => true,
            v => {
                return Err(WireError::BadField {
                    field: "flags",
                    value: v.into(),
                })
            }
        };
        if let Some(i) = b[32..].iter().position(|&c| c != 0) {
            return Err(WireError::BadField {
                field: "reserved",
                value: (32 + i) as u64,
            });
        }
        Ok(Hello {
            kind,
            adopt,
            pid: get32(b, 20),
            ring_id: get64(b, 24),
        })
    }
}

/// A producer's reply to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Registered (a lease fd is attached).
    Welcome(Welcome),
    /// Refused.
    Reject(Reject),
}

impl Reply {
    /// Encodes the message.
    pub fn encode(&self) -> [u8; MSG_BYTES] {
        let mut b = [0u8; MSG_BYTES];
        put32(&mut b, 8, PROTO);
        match self {
            Reply::Welcome(w) => {
                b[0..8].copy_from_slice(&WELCOME_MAGIC);
                put32(&mut b, 12, w.reader_id);
                put32(&mut b, 16, w.hold_limit);
                put32(&mut b, 20, w.epoch);
                put64(&mut b, 24, w.ring_id);
                put32(&mut b, 32, u32::from(w.adopted));
            }
            Reply::Reject(r) => {
                b[0..8].copy_from_slice(&REJECT_MAGIC);
                put32(&mut b, 12, r.code);
                // Bytes 16..64, NUL-padded (there is no room for a length:
                // an earlier length word here was overwritten by the text).
                // Cut at a NUL or at 48 bytes, on a character boundary, so
                // the peer decodes a prefix of the message.
                let m = &r.message[..r.message.find('\0').unwrap_or(r.message.len())];
                let mut n = m.len().min(REJECT_TEXT);
                while !m.is_char_boundary(n) {
                    n -= 1;
                }
                b[MSG_BYTES - REJECT_TEXT..MSG_BYTES - REJECT_TEXT + n]
                    .copy_from_slice(&m.as_bytes()[..n]);
            }
        }
        b
    }

    /// Decodes and validates a reply.
    pub fn decode(b: &[u8]) -> Result<Reply, WireError> {
        if b.len() != MSG_BYTES {
            return Err(WireError::Size {
                len: b.len(),
                expected: MSG_BYTES,
            });
        }
        if b[0..8] == REJECT_MAGIC {
            header(b, REJECT_MAGIC)?;
            let text = &b[MSG_BYTES - REJECT_TEXT..];
            let msg = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
            // The longest valid UTF-8 prefix: never more than 48 bytes (a
            // lossy decode could triple them), and it encodes back unchanged.
            let msg = match std::str::from_utf8(msg) {
                Ok(m) => m,
                Err(e) => std::str::from_utf8(&msg[..e.valid_up_to()]).unwrap_or_default(),
            };
            return Ok(Reply::Reject(Reject {
                code: get32(b, 12),
                message: msg.to_owned(),
            }));
        }
        header(b, WELCOME_MAGIC)?;
        if let Some(i) = b[36..].iter().position(|&c| c != 0) {
            return Err(WireError::BadField {
                field: "reserved",
                value: (36 + i) as u64,
            });
        }
        let adopted = match get32(b, 32) {
            0 => false,
            1 => true,
            v => {
                return Err(WireError::BadField {
                    field: "adopted",
                    value: v.into(),
                })
            }
        };
        let hold_limit = get32(b, 16);
        if hold_limit == 0 || hold_limit > MAX_HOLDS {
            return Err(WireError::BadField {
                field: "hold_limit",
                value: hold_limit.into(),
            });
        }
        Ok(Reply::Welcome(Welcome {
            reader_id: get32(b, 12),
            hold_limit,
            epoch: get32(b, 20),
            ring_id: get64(b, 24),
            adopted,
        }))
    }
}

/// One registered reader, as `camux inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderRecord {
    /// Reader id.
    pub id: u32,
    /// PID as the producer sees it (0 if unknown).
    pub pid: u32,
    /// UID of the reader process.
    pub uid: u32,
    /// Frames it may hold.
    pub hold_limit: u32,
    /// Holds the producer revoked.
    pub revoked: u32,
    /// Whether it is asleep waiting for a frame.
    pub waiting: bool,
    /// Milliseconds since it registered.
    pub connected_ms: u64,
    /// Seqs held (0 = free entry), first `hold_limit` entries.
    pub holds: Vec<u64>,
}

impl ReaderRecord {
    fn encode(&self, b: &mut [u8]) {
        put32(b, 0, self.id);
        put32(b, 4, self.pid);
        put32(b, 8, self.uid);
        put32(b, 12, self.hold_limit);
        put32(b, 16, self.revoked);
        put32(b, 20, u32::from(self.waiting));
        put64(b, 24, self.connected_ms);
        for (i, h) in self.holds.iter().take(MAX_HOLDS as usize).enumerate() {
            put64(b, 32 + 8 * i, *h);
        }
    }
    fn decode(b: &[u8]) -> ReaderRecord {
        let hold_limit = get32(b, 12).min(MAX_HOLDS);
        ReaderRecord {
            id: get32(b, 0),
            pid: get32(b, 4),
            uid: get32(b, 8),
            hold_limit,
            revoked: get32(b, 16),
            waiting: get32(b, 20) != 0,
            connected_ms: get64(b, 24),
            holds: (0..hold_limit as usize)
                .map(|i| get64(b, 32 + 8 * i))
                .collect(),
        }
    }
}

/// Encodes an inspection reply.
pub fn encode_inspect(records: &[ReaderRecord]) -> Vec<u8> {
    let mut b = vec![0u8; MSG_BYTES + RECORD_BYTES * records.len()];
    b[0..8].copy_from_slice(&INSPECT_MAGIC);
    put32(&mut b, 8, PROTO);
    put32(&mut b, 12, records.len() as u32);
    for (i, r) in records.iter().enumerate() {
        r.encode(&mut b[MSG_BYTES + i * RECORD_BYTES..MSG_BYTES + (i + 1) * RECORD_BYTES]);
    }
    b
}

/// Decodes an inspection reply.
pub fn decode_inspect(b: &[u8]) -> Result<Vec<ReaderRecord>, WireError> {
    header(b, INSPECT_MAGIC)?;
    let n = get32(b, 12) as usize;
    let expected = n
        .checked_mul(RECORD_BYTES)
        .and_then(|x| x.checked_add(MSG_BYTES))
        .unwrap_or(usize::MAX);
    if b.len() != expected {
        return Err(WireError::Size {
            len: b.len(),
            expected,
        });
    }
    Ok((0..n)
        .map(|i| ReaderRecord::decode(&b[MSG_BYTES + i * RECORD_BYTES..]))
        .collect())
}

/// Why a client could not register.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Connecting to the socket failed (no producer listening, permissions).
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The producer did not answer in time.
    #[error("no handshake reply from {path} within {timeout:?}")]
    Timeout {
        /// The socket path.
        path: std::path::PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// The producer refused.
    #[error("producer refused: {message} (code {code})")]
    Rejected {
        /// One of the `REJECT_*` codes.
        code: u32,
        /// Its reason.
        message: String,
    },
    /// The reply was malformed or its lease page unusable.
    #[error("bad handshake reply: {0}")]
    Protocol(String),
    /// An I/O error mid-handshake.
    #[error("handshake I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// Connects to `path` as a reader. With `adopt`, sends that lease page so a
/// (new) producer keeps honouring its holds. Returns the connection (keep it
/// open: closing it releases the holds), the welcome, and the lease page.
pub(crate) fn connect_reader(
    path: &Path,
    adopt: Option<&LeaseMap>,
    ring_id: u64,
    timeout: Duration,
) -> Result<(OwnedFd, Welcome, Option<LeaseMap>), HandshakeError> {
    let hello = Hello {
        kind: HelloKind::Reader,
        adopt: adopt.is_some(),
        pid: std::process::id(),
        ring_id,
    };
    let (sock, reply, fd) = request(path, &hello, adopt.map(|l| l.fd()), timeout)?;
    match Reply::decode(&reply).map_err(|e| HandshakeError::Protocol(e.to_string()))? {
        Reply::Reject(r) => Err(HandshakeError::Rejected {
            code: r.code,
            message: r.message,
        }),
        Reply::Welcome(w) => {
            let fd =
                fd.ok_or_else(|| HandshakeError::Protocol("welcome without a lease fd".into()))?;
            let lease = if w.adopted && adopt.is_some() {
                None // our own page, still mapped by the caller
            } else {
                Some(LeaseMap::adopt(fd).map_err(|e| HandshakeError::Protocol(e.to_string()))?)
            };
            Ok((sock, w, lease))
        }
    }
}

/// Asks the producer at `path` for its reader table.
pub fn inspect_readers(
    path: &Path,
    timeout: Duration,
) -> Result<Vec<ReaderRecord>, HandshakeError> {
    let hello = Hello {
        kind: HelloKind::Inspect,
        adopt: false,
        pid: std::process::id(),
        ring_id: 0,
    };
    let (_sock, reply, _fd) = request(path, &hello, None, timeout)?;
    if let Ok(Reply::Reject(r)) = Reply::decode(&reply) {
        return Err(HandshakeError::Rejected {
            code: r.code,
            message: r.message,
        });
    }
    decode_inspect(&reply).map_err(|e| HandshakeError::Protocol(e.to_string()))
}

fn request(
    path: &Path,
    hello: &Hello,
    send_fd: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Result<(OwnedFd, Vec<u8>, Option<OwnedFd>), HandshakeError> {
    let connect_err = |source| HandshakeError::Connect {
        path: path.to_owned(),
        source,
    };
    // Non-blocking: a connect to a listener whose backlog is full fails at
    // once (EAGAIN) instead of hanging; the reader retries later.
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| connect_err(io(e)))?;
    let addr = UnixAddr::new(path).map_err(|e| connect_err(io(e)))?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| connect_err(io(e)))?;
    let msg = hello.encode();
    let fds: Vec<RawFd> = send_fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&msg)],
        if fds.is_empty() { &[] } else { &cmsg },
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io)?;
    // A signal (SIGCHLD, a Python handler's, a profiler's) interrupts the
    // wait with EINTR, never restarted for poll: wait again for what is left.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut pfd = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, ms) {
            Ok(0) => {
                return Err(HandshakeError::Timeout {
                    path: path.to_owned(),
                    timeout,
                })
            }
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io(e).into()),
        }
    }
    let mut buf = vec![0u8; MSG_BYTES + RECORD_BYTES * 1024];
    let (n, fds) = recv_with_fds(sock.as_fd(), &mut buf)?;
    if n == 0 {
        return Err(HandshakeError::Protocol(
            "producer closed the connection".into(),
        ));
    }
    buf.truncate(n);
    let mut fds = fds.into_iter();
    let fd = fds.next();
    if fds.next().is_some() {
        return Err(HandshakeError::Protocol(
            "reply carried more than one fd".into(),
        ));
    }
    Ok((sock, buf, fd))
}

/// One packet as `recvmsg` returned it, its descriptors already owned.
pub(crate) struct Packet {
    /// Bytes received.
    pub(crate) len: usize,
    /// `MSG_TRUNC` / `MSG_CTRUNC` as the kernel reported them.
    pub(crate) flags: MsgFlags,
    /// Every descriptor the kernel installed for us.
    pub(crate) fds: Vec<OwnedFd>,
}

/// Most descriptors one message can carry (the kernel's SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;

/// rustix's error as the nix error the rest of this module speaks.
fn nix_errno(e: rustix::io::Errno) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error())
}

/// Receives one packet without waiting (EAGAIN if none is queued); every fd
/// it carries becomes an `OwnedFd` at once, so none can leak, whatever the
/// caller decides about the packet.
///
/// Room is made for as many fds as one message can carry, not only the few
/// a caller accepts: with less, the kernel would install what fits and
/// flag MSG_CTRUNC. It also flags MSG_CTRUNC when it runs out of
/// descriptor slots (EMFILE) part-way through a message, after installing
/// some: those are listed in the control data all the same. nix's `cmsgs`
/// refuses to walk control data flagged MSG_CTRUNC; rustix's ancillary
/// buffer walks whatever the kernel wrote (clamping a truncated message to
/// whole descriptors) and hands each descriptor out as an `OwnedFd`, so
/// this owns every descriptor that is there, with no unsafe code of ours.
pub(crate) fn recv_packet(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<Packet> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space =
        vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )
    .map_err(nix_errno)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    Ok(Packet {
        len: got.bytes,
        flags: MsgFlags::from_bits_truncate(got.flags.bits() as i32),
        fds,
    })
}

/// Receives one handshake packet and at most 4 fds: more, or a truncated
/// packet, is an error (the fds received are closed).
fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let p = recv_packet(sock, buf).map_err(io)?;
    let truncated = p.flags.contains(MsgFlags::MSG_TRUNC)
        || p.flags.contains(MsgFlags::MSG_CTRUNC)
        || p.fds.len() > 4;
    if truncated {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "oversized packet or too many fds",
        ));
    }
    Ok((p.len, p.fds))
}

/// A peer's credentials as `SO_PEERCRED` reported them when it connected,
/// translated by the kernel into the producer's PID and user namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// 0 if the peer's process is not visible in our PID namespace.
    pub pid: u32,
    pub uid: u32,
    /// The primary (effective) gid; supplementary groups are not reported.
    pub gid: u32,
}

impl Peer {
    fn of(sock: &OwnedFd) -> Option<Peer> {
        getsockopt(sock, sockopt::PeerCredentials)
            .ok()
            .map(|c| Peer {
                pid: u32::try_from(c.pid()).unwrap_or(0),
                uid: c.uid(),
                gid: c.gid(),
            })
    }
}

/// A registration change for the publishing thread.
pub(crate) enum ReaderEvent {
    /// A reader registered (or re-registered with its old page).
    Added {
        id: u32,
        lease: Arc<LeaseMap>,
        hold_limit: u32,
        /// The reader brought back the page of a previous producer.
        adopted: bool,
        /// Who it is (`SO_PEERCRED` at accept).
        peer: Peer,
    },
    /// A reader's connection ended: stop honouring its holds.
    Removed { id: u32 },
}

/// Settings of the control thread.
pub(crate) struct ControlConfig {
    pub hold_limit: u32,
    pub max_readers: u32,
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
    /// Only these uids may register (`None`: any).
    pub allow_uids: Option<Vec<u32>>,
    /// Only these primary gids may register (`None`: any).
    pub allow_gids: Option<Vec<u32>>,
}

impl ControlConfig {
    /// Why `peer` may not register as a reader of `stream`, if it may not:
    /// it must pass every list given.
    fn refusal(&self, peer: &Peer, stream: &str) -> Option<String> {
        let denied =
            |list: &Option<Vec<u32>>, v: u32| list.as_ref().is_some_and(|l| !l.contains(&v));
        if denied(&self.allow_uids, peer.uid) {
            Some(format!(
                "uid {} is not allowed to read stream {stream}",
                peer.uid
            ))
        } else if denied(&self.allow_gids, peer.gid) {
            Some(format!(
                "gid {} is not allowed to read stream {stream}",
                peer.gid
            ))
        } else {
            None
        }
    }
}

struct Active {
    sock: OwnedFd,
    id: u32,
    peer: Peer,
    since_ns: u64,
    lease: Arc<LeaseMap>,
}

struct Pending {
    sock: OwnedFd,
    /// `SO_PEERCRED`, read at accept (`None`: the kernel would not say).
    peer: Option<Peer>,
    deadline_ns: u64,
}

/// The control thread's handle: stops and joins the thread on drop.
pub(crate) struct Control {
    stop: Arc<AtomicBool>,
    wake: Arc<nix::sys::eventfd::EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Control {
    /// Binds `path` (replacing a stale socket: the caller holds the stream
    /// lock, so no live producer owns it) and starts serving.
    pub(crate) fn start(
        path: &Path,
        mode: u32,
        ring: Arc<RingMap>,
        cfg: ControlConfig,
        events: Sender<ReaderEvent>,
    ) -> std::io::Result<Control> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let _ = std::fs::remove_file(path);
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(io)?;
        bind(listener.as_raw_fd(), &UnixAddr::new(path).map_err(io)?).map_err(io)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        listen(&listener, Backlog::new(128).map_err(io)?).map_err(io)?;
        let wake = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io)?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            listener,
            ring,
            cfg,
            events,
            pending: Vec::new(),
            active: Vec::new(),
            next_id: 1,
            stop: stop.clone(),
            wake: wake.clone(),
            accept_paused_until: 0,
        };
        let thread = std::thread::Builder::new()
            .name("camux-control".into())
            .spawn(move || server.run())?;
        Ok(Control {
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Server {
    listener: OwnedFd,
    ring: Arc<RingMap>,
    cfg: ControlConfig,
    events: Sender<ReaderEvent>,
    pending: Vec<Pending>,
    active: Vec<Active>,
    next_id: u32,
    stop: Arc<AtomicBool>,
    wake: Arc<nix::sys::eventfd::EventFd>,
    /// While the process is out of descriptors (accept failed with EMFILE
    /// or the like), the listener is left out of `poll` until then (mono
    /// ns): a queued connection would otherwise keep it readable and the
    /// loop spinning on a failing accept.
    accept_paused_until: u64,
}

/// Connections beyond `max_readers` that may sit in the handshake at once.
const EXTRA_PENDING: usize = 64;
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF_NS: u64 = 100_000_000;

impl Server {
    fn run(mut self) {
        let tick_ns = (self.cfg.heartbeat.as_nanos() as u64 / 2).max(1_000_000);
        let mut next_beat = 0u64;
        while !self.stop.load(Ordering::Acquire) {
            let now = mono_ns();
            if now >= next_beat {
                // Heartbeat, every half interval: readers call the producer
                // stale after 1.5 intervals without one. Relaxed: a lone
                // timestamp, read as a hint.
                self.ring.live().heartbeat_ns.store(now, Ordering::Relaxed);
                next_beat = now + tick_ns;
            }
            self.expire_pending(now);
            let until = self
                .pending
                .iter()
                .map(|p| p.deadline_ns)
                .chain([next_beat])
                .chain((self.accept_paused_until > now).then_some(self.accept_paused_until))
                .min()
                .unwrap_or(next_beat);
            let timeout_ms = (until.saturating_sub(now) / 1_000_000).clamp(1, 1000) as i32;
            let (np, na) = (self.pending.len(), self.active.len());
            let mut fds = Vec::with_capacity(2 + np + na);
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            let accepting = now >= self.accept_paused_until;
            fds.push(PollFd::new(
                self.listener.as_fd(),
                if accepting {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
            ));
            for p in &self.pending {
                fds.push(PollFd::new(p.sock.as_fd(), PollFlags::POLLIN));
            }
            for a in &self.active {
                fds.push(PollFd::new(a.sock.as_fd(), PollFlags::POLLIN));
            }
            match poll(
                &mut fds,
                PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                let _ = self.wake.read();
            }
            // Active first (indices shift as we remove), then pending, then accept.
            for i in (0..na).rev() {
                if ready[2 + np + i] {
                    self.service_active(i);
                }
            }
            for i in (0..np).rev() {
                if ready[2 + i] {
                    let p = self.pending.swap_remove(i);
                    self.handshake(p);
                }
            }
            if ready[1] && accepting {
                self.accept_all();
            }
        }
        // Shutting down: every reader's registration ends with us.
        for a in self.active.drain(..) {
            let _ = self.events.send(ReaderEvent::Removed { id: a.id });
        }
    }

    /// The header's reader count (informational, and what a successor
    /// waits for after a restart).
    fn publish_reader_count(&self) {
        self.ring
            .live()
            .readers
            .store(self.active.len() as u32, Ordering::Relaxed);
    }

    fn expire_pending(&mut self, now: u64) {
        self.pending.retain(|p| p.deadline_ns > now);
    }

    fn accept_all(&mut self) {
        loop {
            match rustix::net::accept_with(
                &self.listener,
                rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
            )
            .map_err(nix_errno)
            {
                Ok(sock) => {
                    if self.pending.len() >= self.cfg.max_readers as usize + EXTRA_PENDING {
                        continue; // dropped: too many half-open handshakes
                    }
                    // The credentials the peer had when it connected: read
                    // now, before it can say anything.
                    let peer = Peer::of(&sock);
                    self.pending.push(Pending {
                        sock,
                        peer,
                        deadline_ns: mono_ns() + self.cfg.handshake_timeout.as_nanos() as u64,
                    });
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(
                    nix::errno::Errno::EMFILE
                    | nix::errno::Errno::ENFILE
                    | nix::errno::Errno::ENOBUFS
                    | nix::errno::Errno::ENOMEM,
                ) => {
                    // Out of descriptors or memory: the connection stays
                    // queued; try again after a pause instead of at once.
                    self.accept_paused_until = mono_ns() + ACCEPT_BACKOFF_NS;
                    return;
                }
                Err(_) => return, // EAGAIN, or a transient error: poll again
            }
        }
    }

    fn service_active(&mut self, i: usize) {
        let mut buf = [0u8; MSG_BYTES];
        // Readers never send after the handshake: any readable event is EOF,
        // an error, or a protocol violation. All end the registration.
        match recv(
            self.active[i].sock.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            _ => {
                let a = self.active.swap_remove(i);
                let _ = self.events.send(ReaderEvent::Removed { id: a.id });
                self.publish_reader_count();
            }
        }
    }

    fn reply(sock: &OwnedFd, reply: &[u8], fd: Option<BorrowedFd<'_>>) {
        let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let _ = sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(reply)],
            if fds.is_empty() { &[] } else { &cmsg },
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        );
    }

    fn reject(sock: &OwnedFd, code: u32, message: &str) {
        let r = Reply::Reject(Reject {
            code,
            message: message.into(),
        });
        Self::reply(sock, &r.encode(), None);
    }

    fn handshake(&mut self, p: Pending) {
        let mut buf = [0u8; MSG_BYTES + 1];
        let (n, mut fds) = match recv_with_fds(p.sock.as_fd(), &mut buf) {
            Ok((0, _)) => return, // closed before saying anything
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.pending.push(p);
                return;
            }
            Err(_) => return,
        };
        let hello = match Hello::decode(&buf[..n]) {
            Ok(h) => h,
            Err(e) => return Self::reject(&p.sock, REJECT_PROTOCOL, &e.to_string()),
        };
        let expected_fds = usize::from(hello.adopt && hello.kind == HelloKind::Reader);
        if fds.len() != expected_fds {
            return Self::reject(&p.sock, REJECT_PROTOCOL, "unexpected file descriptors");
        }
        if hello.kind == HelloKind::Inspect {
            let now = mono_ns();
            let records: Vec<ReaderRecord> = self
                .active
                .iter()
                .map(|a| ReaderRecord {
                    id: a.id,
                    pid: a.peer.pid,
                    uid: a.peer.uid,
                    hold_limit: self.cfg.hold_limit,
                    revoked: a.lease.revoked().load(Ordering::Relaxed),
                    waiting: a.lease.waiting().load(Ordering::Relaxed) != 0,
                    connected_ms: now.saturating_sub(a.since_ns) / 1_000_000,
                    holds: a.lease.holds_snapshot()[..self.cfg.hold_limit as usize].to_vec(),
                })
                .collect();
            Self::reply(&p.sock, &encode_inspect(&records), None);
            return;
        }
        let Some(peer) = p.peer else {
            return Self::reject(&p.sock, REJECT_INTERNAL, "cannot read peer credentials");
        };
        // Before the capacity check: a refused peer learns nothing more.
        // FULL is the code a client takes as final (it would retry any
        // other on every receive); the text tells the two apart.
        if let Some(why) = self.cfg.refusal(&peer, &self.ring.header.name) {
            return Self::reject(&p.sock, REJECT_FULL, &why);
        }
        if self.active.len() >= self.cfg.max_readers as usize {
            return Self::reject(&p.sock, REJECT_FULL, "too many readers");
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let (lease, adopted) = match fds.pop() {
            Some(fd) => match LeaseMap::adopt(fd) {
                Ok(l) => {
                    l.set_reader_id(id, self.cfg.hold_limit);
                    (l, true)
                }
                Err(e) => return Self::reject(&p.sock, REJECT_LEASE, &e.to_string()),
            },
            None => match LeaseMap::create(id, self.cfg.hold_limit) {
                Ok(l) => (l, false),
                Err(_) => {
                    return Self::reject(&p.sock, REJECT_INTERNAL, "cannot create lease page")
                }
            },
        };
        // (No read-back of the page's reader id here: the reader may
        // rewrite its page at any moment, so nothing the producer decides
        // rests on a page word it wrote, FORMAT.md 8.3; an assertion on it
        // let a hostile reader panic this thread in debug builds.)
        let welcome = Reply::Welcome(Welcome {
            reader_id: id,
            hold_limit: self.cfg.hold_limit,
            ring_id: self.ring.header.ring_id,
            epoch: self.ring.live().epoch.load(Ordering::Relaxed),
            adopted,
        });
        // The reader may hold frames only once the publishing thread has
        // taken this page into its scans and said so in the page (a hold
        // placed earlier could race with a claim that does not scan it). An
        // adopted page may still carry the old producer's mark: clear it.
        lease.clear_registered();
        let lease = Arc::new(lease);
        let _ = self.events.send(ReaderEvent::Added {
            id,
            lease: lease.clone(),
            hold_limit: self.cfg.hold_limit,
            adopted,
            peer,
        });
        Self::reply(&p.sock, &welcome.encode(), Some(lease.fd()));
        self.active.push(Active {
            sock: p.sock,
            id,
            peer,
            since_ns: mono_ns(),
            lease,
        });
        self.publish_reader_count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    extern "C" fn ignore(_: libc::c_int) {}

    /// The syscall thread `tid` of this process is blocked in, from
    /// `/proc/self/task/<tid>/syscall` (`None` while it runs).
    fn blocked_in(tid: libc::pid_t) -> Option<i64> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Whether thread `tid` sleeps in poll (7) or ppoll (271).
    fn in_poll(tid: libc::pid_t) -> bool {
        matches!(blocked_in(tid), Some(7 | 271))
    }

    /// How many times thread `tid` has gone to sleep.
    fn sleeps(tid: libc::pid_t) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// A signal that lands while a reader waits for the producer's reply
    /// does not fail the handshake: the wait goes on for what is left.
    #[test]
    fn a_signal_during_the_handshake_wait_is_not_an_error() {
        // SIGUSR1 runs a no-op handler (no SA_RESTART: poll would not be
        // restarted anyway); it is sent to the client thread only.
        let handler = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGUSR1, &handler) }.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&listener, Backlog::new(4).unwrap()).unwrap();

        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            tid_tx
                .send((
                    rustix::thread::gettid().as_raw_nonzero().get(),
                    nix::sys::pthread::pthread_self(),
                ))
                .unwrap();
            inspect_readers(&client_path, Duration::from_secs(20))
        });
        let (tid, pthread) = tid_rx.recv().unwrap();
        let conn = rustix::net::accept(&listener).unwrap();
        let mut hello = [0u8; MSG_BYTES];
        assert!(
            nix::sys::socket::recv(conn.as_raw_fd(), &mut hello, MsgFlags::empty()).unwrap() > 0
        );
        // Wait until the client sleeps in poll, then interrupt it there.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let waiting = |what| {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        };
        while !in_poll(tid) {
            waiting("the client never waited in poll");
        }
        let before = sleeps(tid).expect("the client's context switches");
        // `pthread` is the client thread, alive until joined below.
        nix::sys::pthread::pthread_kill(pthread, Signal::SIGUSR1).unwrap();
        // A reply sent now could be seen before the signal: wait until the
        // interrupted client sleeps in poll again, or has given up.
        while !(client.is_finished() || in_poll(tid) && sleeps(tid).is_some_and(|n| n > before)) {
            waiting("the client did not wait again");
        }
        // Then a reply that is not an inspection: the client must get that
        // far, not stop at the interrupted wait.
        nix::sys::socket::send(conn.as_raw_fd(), b"not a reply", MsgFlags::empty()).unwrap();
        match client.join().unwrap() {
            Err(HandshakeError::Protocol(_)) => {}
            other => panic!("the handshake ended with {other:?}, not at the reply"),
        }
    }
}
