//! The ring file's byte layout: a versioned file format.
//!
//! Everything here is plain, safe arithmetic over byte arrays: the header is
//! decoded from a copy of its bytes (never by casting a pointer to shared
//! memory into a reference to a struct whose fields someone else may write),
//! and every field is validated before anything uses it. `docs/FORMAT.md` is
//! the prose version of this file; keep the two in step.
//!
//! ```text
//! offset 0            header page (HEADER_BYTES = 4096)
//!   0..512              fixed part: written once before `version` is published
//!   512..1024           live part: atomics the producer updates
//! DESC_OFFSET         slot descriptors, DESC_BYTES (256) each: stamp + frame metadata
//! index_offset        seq -> slot index, index_len u32 entries
//! data_offset         slot payloads, slot_stride bytes each, page aligned
//! file_bytes          end of file
//! ```
//!
//! All integers are little-endian (camux runs on x86_64 and aarch64, both
//! little-endian; the atomics in the file are native-endian).

use crate::format::FourCc;

// The atomics in the file are native-endian and the rest is little-endian:
// one byte order for both.
#[cfg(not(target_endian = "little"))]
compile_error!("camux's ring format is little-endian; this target is not");

/// The first eight bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"CAMUXRNG";
/// The format version this build writes and accepts.
pub const VERSION: u32 = 1;
/// Size of the header page.
pub const HEADER_BYTES: u64 = 4096;
/// Offset of the live (atomic) part of the header.
pub const LIVE_OFFSET: u64 = 512;
/// Size of the fixed part of the header that [`Header::encode`] produces.
pub const FIXED_BYTES: usize = 512;
/// Offset of the first slot descriptor.
pub const DESC_OFFSET: u64 = HEADER_BYTES;
/// Size of one slot descriptor (stamp + metadata + user metadata).
pub const DESC_BYTES: u64 = 256;
/// Offset of the frame metadata inside a slot descriptor (after the stamp).
pub const META_OFFSET: u64 = 8;
/// Bytes of free-form user metadata (sensor records, model hints) per frame.
pub const USER_META_BYTES: usize = 128;
/// Most slots a ring may have.
pub const MAX_SLOTS: u32 = 4096;
/// Largest frame a slot may hold (1 GiB).
pub const MAX_FRAME_BYTES: u64 = 1 << 30;
/// Largest ring file (64 GiB): bounds every offset computation.
pub const MAX_FILE_BYTES: u64 = 64 << 30;
/// Most planes a frame describes.
pub const MAX_PLANES: usize = 4;
/// Longest stream name, in bytes.
pub const MAX_NAME_BYTES: usize = 63;
/// Longest content type ([`Header::content_type`]), in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 63;

/// Why a ring file (or a header image) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The file is shorter than the structure that must be there.
    #[error("ring file truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes required.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Not a camux ring file.
    #[error("not a camux ring file (magic {found:02x?}, expected {expected:02x?})")]
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
        /// [`MAGIC`].
        expected: [u8; 8],
    },
    /// Written by another format version (or still being initialised: 0).
    #[error("ring format version {found}, this build reads version {expected}{}", if *found == 0 { " (file not yet initialised)" } else { "" })]
    VersionMismatch {
        /// Version in the file.
        found: u32,
        /// [`VERSION`].
        expected: u32,
    },
    /// A field holds a value outside what the format allows, or disagrees with
    /// the geometry the other fields imply.
    #[error("ring header field `{field}` is {found}, expected {expected}")]
    BadField {
        /// The field's name as in `docs/FORMAT.md`.
        field: &'static str,
        /// What the file holds.
        found: u64,
        /// What is allowed.
        expected: String,
    },
    /// Geometry that cannot be laid out (too many slots, too large).
    #[error("invalid ring geometry: {0}")]
    Geometry(String),
}

/// The sizes a ring is created with; everything else in the layout follows
/// from these three numbers by [`Geometry::layout`].
///
/// ```
/// use camux::ring::Geometry;
/// let g = Geometry { slot_count: 8, max_frame_bytes: 1280 * 720 * 2, page_size: 4096 };
/// let l = g.layout()?;
/// assert_eq!(l.data_offset % 4096, 0);
/// assert!(l.slot_stride >= 1280 * 720 * 2);
/// # Ok::<(), camux::ring::LayoutError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Number of frame slots.
    pub slot_count: u32,
    /// Capacity of one slot's payload.
    pub max_frame_bytes: u64,
    /// Page size the payloads are aligned to (the producer's page size).
    pub page_size: u32,
}

/// Byte offsets derived from a [`Geometry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// The geometry this layout was derived from.
    pub geometry: Geometry,
    /// Entries in the seq -> slot index (a power of two, at least twice the slot count).
    pub index_len: u32,
    /// Offset of the seq -> slot index.
    pub index_offset: u64,
    /// Offset of slot 0's payload (page aligned).
    pub data_offset: u64,
    /// Distance between two slots' payloads (page aligned).
    pub slot_stride: u64,
    /// Total file size.
    pub file_bytes: u64,
}

fn round_up(v: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(v.checked_add(align - 1)? & !(align - 1))
}

impl Geometry {
    /// The default page size of this machine.
    pub fn host_page_size() -> u32 {
        // sysconf cannot fail for _SC_PAGESIZE on Linux; 4096 is the fallback.
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(4096)
    }

    /// Lays the ring out, or says which limit the geometry breaks.
    pub fn layout(&self) -> Result<Layout, LayoutError> {
        let g = *self;
        if g.slot_count == 0 || g.slot_count > MAX_SLOTS {
            return Err(LayoutError::Geometry(format!(
                "slot count {} outside 1..={MAX_SLOTS}",
                g.slot_count
            )));
        }
        if g.max_frame_bytes == 0 || g.max_frame_bytes > MAX_FRAME_BYTES {
            return Err(LayoutError::Geometry(format!(
                "max frame bytes {} outside 1..={MAX_FRAME_BYTES}",
                g.max_frame_bytes
            )));
        }
        if !g.page_size.is_power_of_two() || !(4096..=65536).contains(&g.page_size) {
            return Err(LayoutError::Geometry(format!(
                "page size {} is not a power of two in 4096..=65536",
                g.page_size
            )));
        }
        let page = u64::from(g.page_size);
        let slots = u64::from(g.slot_count);
        let index_len = (g.slot_count * 2).next_power_of_two();
        let index_offset = DESC_OFFSET + slots * DESC_BYTES;
        let index_end = index_offset + u64::from(index_len) * 4;
        let data_offset = round_up(index_end, page).expect("bounded by MAX_SLOTS");
        let slot_stride = round_up(g.max_frame_bytes, page).expect("bounded by MAX_FRAME_BYTES");
        let file_bytes = slot_stride
            .checked_mul(slots)
            .and_then(|d| d.checked_add(data_offset))
            .filter(|&f| f <= MAX_FILE_BYTES)
            .ok_or_else(|| {
                LayoutError::Geometry(format!(
                    "{} slots of {} bytes exceed the {MAX_FILE_BYTES}-byte file limit",
                    g.slot_count, slot_stride
                ))
            })?;
        Ok(Layout {
            geometry: g,
            index_len,
            index_offset,
            data_offset,
            slot_stride,
            file_bytes,
        })
    }
}

impl Layout {
    /// Offset of slot `slot`'s descriptor. `slot` must be below the slot count.
    pub fn desc_offset(&self, slot: u32) -> u64 {
        debug_assert!(slot < self.geometry.slot_count);
        DESC_OFFSET + u64::from(slot) * DESC_BYTES
    }

    /// Offset of slot `slot`'s payload. `slot` must be below the slot count.
    pub fn payload_offset(&self, slot: u32) -> u64 {
        debug_assert!(slot < self.geometry.slot_count);
        self.data_offset + u64::from(slot) * self.slot_stride
    }
}

/// How the frames of a stream are laid out, as the header records it.
///
/// Each frame carries its own copy in its metadata, so a producer may publish
/// frames whose length differs (compressed formats); the header's copy is what
/// the stream was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamFormat {
    /// Pixel format.
    pub fourcc: FourCc,
    /// Width in pixels (for sensor records: bytes per record).
    pub width: u32,
    /// Height in pixels (for sensor records: 1).
    pub height: u32,
    /// Planes in use (0..=4).
    pub num_planes: u32,
    /// Bytes per line of each plane.
    pub strides: [u32; MAX_PLANES],
    /// Offset of each plane from the start of the payload.
    pub plane_offsets: [u32; MAX_PLANES],
    /// Nominal frame rate numerator (0 when unknown).
    pub fps_num: u32,
    /// Nominal frame rate denominator (0 when unknown).
    pub fps_den: u32,
}

impl StreamFormat {
    /// An opaque byte stream of at most `width` bytes per frame (sensor records).
    pub fn opaque(width: u32) -> Self {
        StreamFormat {
            fourcc: FourCc::RAW,
            width,
            height: 1,
            num_planes: 1,
            strides: [width, 0, 0, 0],
            plane_offsets: [0; MAX_PLANES],
            fps_num: 0,
            fps_den: 0,
        }
    }

    /// The format of frames laid out as `layout` describes, at `fps` (0 = unknown).
    pub fn from_layout(layout: &crate::format::FrameLayout, fps: f64) -> Self {
        let mut strides = [0; MAX_PLANES];
        let mut offsets = [0; MAX_PLANES];
        let n = (layout.num_planes as usize)
            .min(layout.planes.len())
            .min(MAX_PLANES);
        for (i, p) in layout.planes.iter().take(n).enumerate() {
            strides[i] = p.stride;
            offsets[i] = p.offset;
        }
        let (fps_num, fps_den) = if fps.is_finite() && fps > 0.0 {
            ((fps * 1000.0).round() as u32, 1000)
        } else {
            (0, 0)
        };
        StreamFormat {
            fourcc: layout.fourcc,
            width: layout.width,
            height: layout.height,
            num_planes: n as u32,
            strides,
            plane_offsets: offsets,
            fps_num,
            fps_den,
        }
    }
}

/// The fixed part of the ring header: everything a reader needs to map and
/// validate the ring. Decoded with [`Header::parse`], written with
/// [`Header::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Derived layout (validated against the stored offsets on parse).
    pub layout: Layout,
    /// Random identity of this file; a new file (geometry change) has a new one.
    pub ring_id: u64,
    /// CLOCK_REALTIME nanoseconds when the file was created.
    pub created_real_ns: u64,
    /// How often the producer refreshes its heartbeat.
    pub heartbeat_interval_ns: u64,
    /// How many frames one reader may hold at once.
    pub hold_limit: u32,
    /// How many readers the producer registers at once.
    pub max_readers: u32,
    /// The stream's format.
    pub format: StreamFormat,
    /// The stream's name.
    pub name: String,
    /// A MIME-like content type for non-image streams (sensor records with
    /// [`FourCc::RAW`], e.g. `"application/x-imu+csv"`); `None` when the
    /// stream has none. At most [`MAX_CONTENT_TYPE_BYTES`] of printable
    /// ASCII without spaces (see [`validate_content_type`]): [`Header::parse`]
    /// never returns anything else, and [`Header::encode`] writes
    /// `Some("")` as `None`. Files written before this field existed hold
    /// zero bytes there, which parse as `None`.
    pub content_type: Option<String>,
}

/// Most frames one reader may hold at once (the lease page has this many entries).
pub const MAX_HOLDS: u32 = 16;
/// Most readers a producer registers at once.
pub const MAX_READERS: u32 = 1024;
/// Shortest heartbeat interval (1 ms).
pub const MIN_HEARTBEAT_NS: u64 = 1_000_000;
/// Longest heartbeat interval (60 s).
pub const MAX_HEARTBEAT_NS: u64 = 60_000_000_000;

// Byte offsets inside the fixed part (see docs/FORMAT.md).
mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_BYTES: usize = 12;
    pub const FILE_BYTES: usize = 16;
    pub const PAGE_SIZE: usize = 24;
    pub const SLOT_COUNT: usize = 28;
    pub const INDEX_LEN: usize = 32;
    pub const DESC_BYTES: usize = 36;
    pub const DESC_OFFSET: usize = 40;
    pub const INDEX_OFFSET: usize = 48;
    pub const DATA_OFFSET: usize = 56;
    pub const SLOT_STRIDE: usize = 64;
    pub const MAX_FRAME_BYTES: usize = 72;
    pub const RING_ID: usize = 80;
    pub const CREATED_REAL_NS: usize = 88;
    pub const HEARTBEAT_NS: usize = 96;
    pub const HOLD_LIMIT: usize = 104;
    pub const MAX_READERS: usize = 108;
    pub const FOURCC: usize = 112;
    pub const WIDTH: usize = 116;
    pub const HEIGHT: usize = 120;
    pub const NUM_PLANES: usize = 124;
    pub const STRIDES: usize = 128;
    pub const PLANE_OFFSETS: usize = 144;
    pub const FPS_NUM: usize = 160;
    pub const FPS_DEN: usize = 164;
    pub const NAME: usize = 168;
    pub const NAME_END: usize = 232;
    pub const CONTENT_TYPE: usize = 232;
    pub const CONTENT_TYPE_END: usize = 296;
}

/// Offset of the `version` word, which is published last with Release.
pub const VERSION_OFFSET: u64 = off::VERSION as u64;

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn check(field: &'static str, found: u64, expected: u64) -> Result<(), LayoutError> {
    if found == expected {
        Ok(())
    } else {
        Err(LayoutError::BadField {
            field,
            found,
            expected: expected.to_string(),
        })
    }
}

/// Checks a stream name: 1..=63 bytes of `[A-Za-z0-9._-]`, not starting with
/// a dot (it becomes a file name in the ring directory).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "stream name {name:?} must be 1..={MAX_NAME_BYTES} characters of A-Z a-z 0-9 . _ - and not start with '.'"
        ))
    }
}

/// Checks a content type: 1..=63 bytes of printable ASCII without spaces
/// (`0x21..=0x7e`), e.g. `"application/x-imu+csv"`. The error says which
/// byte is wrong and what is allowed.
///
/// ```
/// use camux::ring::layout::validate_content_type;
/// assert!(validate_content_type("application/x-imu+csv").is_ok());
/// assert!(validate_content_type("text/csv; charset=utf-8").is_err()); // a space
/// assert!(validate_content_type("").is_err());
/// ```
pub fn validate_content_type(content_type: &str) -> Result<(), String> {
    let allowed = format!(
        "1..={MAX_CONTENT_TYPE_BYTES} bytes of printable ASCII without spaces (0x21..=0x7e)"
    );
    if content_type.is_empty() || content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return Err(format!(
            "content type {content_type:?} is {} bytes; it must be {allowed}",
            content_type.len()
        ));
    }
    match content_type.bytes().position(|c| !is_content_type_byte(c)) {
        None => Ok(()),
        Some(at) => Err(format!(
            "content type {content_type:?} has byte 0x{:02x} at offset {at}; it must be {allowed}",
            content_type.as_bytes()[at]
        )),
    }
}

fn is_content_type_byte(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

/// Decodes the content type field: printable bytes up to the first NUL,
/// then only NULs. All 64 bytes zero (every file written before the field
/// existed) is `None`.
fn parse_content_type(raw: &[u8]) -> Result<Option<String>, LayoutError> {
    let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    if let Some(at) = raw[..len].iter().position(|&c| !is_content_type_byte(c)) {
        return Err(LayoutError::BadField {
            field: "content_type",
            found: raw[at].into(),
            expected: format!(
                "printable ASCII 0x21..=0x7e at byte {at} (the first NUL ends the content type)"
            ),
        });
    }
    if len == raw.len() {
        return Err(LayoutError::BadField {
            field: "content_type",
            found: len as u64,
            expected: format!("at most {MAX_CONTENT_TYPE_BYTES} bytes and a NUL"),
        });
    }
    if let Some(at) = raw[len..].iter().position(|&c| c != 0) {
        return Err(LayoutError::BadField {
            field: "content_type",
            found: raw[len + at].into(),
            expected: format!("0 (NUL padding) at byte {}", len + at),
        });
    }
    Ok((len > 0).then(|| String::from_utf8_lossy(&raw[..len]).into_owned()))
}

impl Header {
    /// Encodes the fixed part (with `version` set to [`VERSION`]).
    pub fn encode(&self) -> [u8; FIXED_BYTES] {
        let mut b = [0u8; FIXED_BYTES];
        let l = &self.layout;
        let g = &l.geometry;
        b[off::MAGIC..off::MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, off::VERSION, VERSION);
        put_u32(&mut b, off::HEADER_BYTES, HEADER_BYTES as u32);
        put_u64(&mut b, off::FILE_BYTES, l.file_bytes);
        put_u32(&mut b, off::PAGE_SIZE, g.page_size);
        put_u32(&mut b, off::SLOT_COUNT, g.slot_count);
        put_u32(&mut b, off::INDEX_LEN, l.index_len);
        put_u32(&mut b, off::DESC_BYTES, DESC_BYTES as u32);
        put_u64(&mut b, off::DESC_OFFSET, DESC_OFFSET);
        put_u64(&mut b, off::INDEX_OFFSET, l.index_offset);
        put_u64(&mut b, off::DATA_OFFSET, l.data_offset);
        put_u64(&mut b, off::SLOT_STRIDE, l.slot_stride);
        put_u64(&mut b, off::MAX_FRAME_BYTES, g.max_frame_bytes);
        put_u64(&mut b, off::RING_ID, self.ring_id);
        put_u64(&mut b, off::CREATED_REAL_NS, self.created_real_ns);
        put_u64(&mut b, off::HEARTBEAT_NS, self.heartbeat_interval_ns);
        put_u32(&mut b, off::HOLD_LIMIT, self.hold_limit);
        put_u32(&mut b, off::MAX_READERS, self.max_readers);
        let f = &self.format;
        put_u32(&mut b, off::FOURCC, f.fourcc.0);
        put_u32(&mut b, off::WIDTH, f.width);
        put_u32(&mut b, off::HEIGHT, f.height);
        put_u32(&mut b, off::NUM_PLANES, f.num_planes);
        for i in 0..MAX_PLANES {
            put_u32(&mut b, off::STRIDES + 4 * i, f.strides[i]);
            put_u32(&mut b, off::PLANE_OFFSETS + 4 * i, f.plane_offsets[i]);
        }
        put_u32(&mut b, off::FPS_NUM, f.fps_num);
        put_u32(&mut b, off::FPS_DEN, f.fps_den);
        let name = self.name.as_bytes();
        let n = name.len().min(MAX_NAME_BYTES);
        b[off::NAME..off::NAME + n].copy_from_slice(&name[..n]);
        if let Some(ct) = &self.content_type {
            let ct = ct.as_bytes();
            let n = ct.len().min(MAX_CONTENT_TYPE_BYTES);
            b[off::CONTENT_TYPE..off::CONTENT_TYPE + n].copy_from_slice(&ct[..n]);
        }
        b
    }

    /// Decodes and validates the fixed part of a header.
    ///
    /// `bytes` is a copy of the file's first bytes (at least [`FIXED_BYTES`]);
    /// `file_len` is the file's real size. Every offset is recomputed from the
    /// geometry and must match what the file says, and the file must be exactly
    /// as large as the layout, so nothing derived from a parsed header can point
    /// outside the mapping.
    ///
    /// ```
    /// use camux::ring::{Header, LayoutError};
    /// let err = Header::parse(&[0u8; 512], 4096).unwrap_err();
    /// assert!(matches!(err, LayoutError::BadMagic { .. }));
    /// ```
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Header, LayoutError> {
        if bytes.len() < FIXED_BYTES || file_len < HEADER_BYTES {
            return Err(LayoutError::Truncated {
                need: HEADER_BYTES,
                have: file_len.min(bytes.len() as u64),
            });
        }
        let magic: [u8; 8] = bytes[0..8].try_into().expect("8 bytes");
        if magic != MAGIC {
            return Err(LayoutError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let version = get_u32(bytes, off::VERSION);
        if version != VERSION {
            return Err(LayoutError::VersionMismatch {
                found: version,
                expected: VERSION,
            });
        }
        check(
            "header_bytes",
            get_u32(bytes, off::HEADER_BYTES).into(),
            HEADER_BYTES,
        )?;
        check(
            "desc_bytes",
            get_u32(bytes, off::DESC_BYTES).into(),
            DESC_BYTES,
        )?;
        check("desc_offset", get_u64(bytes, off::DESC_OFFSET), DESC_OFFSET)?;
        let geometry = Geometry {
            slot_count: get_u32(bytes, off::SLOT_COUNT),
            max_frame_bytes: get_u64(bytes, off::MAX_FRAME_BYTES),
            page_size: get_u32(bytes, off::PAGE_SIZE),
        };
        let layout = geometry.layout()?;
        check(
            "index_len",
            get_u32(bytes, off::INDEX_LEN).into(),
            layout.index_len.into(),
        )?;
        check(
            "index_offset",
            get_u64(bytes, off::INDEX_OFFSET),
            layout.index_offset,
        )?;
        check(
            "data_offset",
            get_u64(bytes, off::DATA_OFFSET),
            layout.data_offset,
        )?;
        check(
            "slot_stride",
            get_u64(bytes, off::SLOT_STRIDE),
            layout.slot_stride,
        )?;
        check(
            "file_bytes",
            get_u64(bytes, off::FILE_BYTES),
            layout.file_bytes,
        )?;
        if file_len < layout.file_bytes {
            return Err(LayoutError::Truncated {
                need: layout.file_bytes,
                have: file_len,
            });
        }
        check("file size", file_len, layout.file_bytes)?;
        let hold_limit = get_u32(bytes, off::HOLD_LIMIT);
        if hold_limit == 0 || hold_limit > MAX_HOLDS {
            return Err(LayoutError::BadField {
                field: "hold_limit",
                found: hold_limit.into(),
                expected: format!("1..={MAX_HOLDS}"),
            });
        }
        let max_readers = get_u32(bytes, off::MAX_READERS);
        if max_readers == 0 || max_readers > MAX_READERS {
            return Err(LayoutError::BadField {
                field: "max_readers",
                found: max_readers.into(),
                expected: format!("1..={MAX_READERS}"),
            });
        }
        let heartbeat_interval_ns = get_u64(bytes, off::HEARTBEAT_NS);
        if !(MIN_HEARTBEAT_NS..=MAX_HEARTBEAT_NS).contains(&heartbeat_interval_ns) {
            return Err(LayoutError::BadField {
                field: "heartbeat_interval_ns",
                found: heartbeat_interval_ns,
                expected: format!("{MIN_HEARTBEAT_NS}..={MAX_HEARTBEAT_NS}"),
            });
        }
        let num_planes = get_u32(bytes, off::NUM_PLANES);
        if num_planes as usize > MAX_PLANES {
            return Err(LayoutError::BadField {
                field: "num_planes",
                found: num_planes.into(),
                expected: format!("0..={MAX_PLANES}"),
            });
        }
        let mut strides = [0; MAX_PLANES];
        let mut plane_offsets = [0; MAX_PLANES];
        for i in 0..MAX_PLANES {
            strides[i] = get_u32(bytes, off::STRIDES + 4 * i);
            plane_offsets[i] = get_u32(bytes, off::PLANE_OFFSETS + 4 * i);
        }
        let raw_name = &bytes[off::NAME..off::NAME_END];
        let name_len = raw_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(raw_name.len());
        let name = std::str::from_utf8(&raw_name[..name_len])
            .ok()
            .filter(|n| validate_name(n).is_ok())
            .ok_or_else(|| LayoutError::BadField {
                field: "name",
                found: name_len as u64,
                expected: "a stream name of [A-Za-z0-9._-]".into(),
            })?
            .to_owned();
        let content_type = parse_content_type(&bytes[off::CONTENT_TYPE..off::CONTENT_TYPE_END])?;
        Ok(Header {
            layout,
            ring_id: get_u64(bytes, off::RING_ID),
            created_real_ns: get_u64(bytes, off::CREATED_REAL_NS),
            heartbeat_interval_ns,
            hold_limit,
            max_readers,
            format: StreamFormat {
                fourcc: FourCc(get_u32(bytes, off::FOURCC)),
                width: get_u32(bytes, off::WIDTH),
                height: get_u32(bytes, off::HEIGHT),
                num_planes,
                strides,
                plane_offsets,
                fps_num: get_u32(bytes, off::FPS_NUM),
                fps_den: get_u32(bytes, off::FPS_DEN),
            },
            name,
            content_type,
        })
    }

    /// The heartbeat interval, never below one millisecond (a hostile header
    /// could say zero).
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.heartbeat_interval_ns
                .clamp(MIN_HEARTBEAT_NS, MAX_HEARTBEAT_NS),
        )
    }
}

/// Frame metadata as stored in a slot descriptor (bytes 8..256).
///
/// Decoded from a copy of the descriptor's bytes; [`RawMeta::validate`]
/// checks it against the ring before anything trusts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMeta {
    pub seq: u64,
    pub capture_mono_ns: u64,
    pub capture_real_ns: u64,
    pub publish_mono_ns: u64,
    pub publish_real_ns: u64,
    pub payload_len: u64,
    pub driver_seq: u64,
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    pub flags: u32,
    pub field: u32,
    pub num_planes: u32,
    pub epoch: u32,
    pub user_len: u32,
    pub strides: [u32; MAX_PLANES],
    pub plane_offsets: [u32; MAX_PLANES],
    pub user: [u8; USER_META_BYTES],
}

/// Size of the encoded [`RawMeta`].
pub(crate) const META_BYTES: usize = (DESC_BYTES - META_OFFSET) as usize;

impl RawMeta {
    pub(crate) const ZERO: RawMeta = RawMeta {
        seq: 0,
        capture_mono_ns: 0,
        capture_real_ns: 0,
        publish_mono_ns: 0,
        publish_real_ns: 0,
        payload_len: 0,
        driver_seq: 0,
        fourcc: 0,
        width: 0,
        height: 0,
        flags: 0,
        field: 0,
        num_planes: 0,
        epoch: 0,
        user_len: 0,
        strides: [0; MAX_PLANES],
        plane_offsets: [0; MAX_PLANES],
        user: [0; USER_META_BYTES],
    };

    pub(crate) fn encode(&self) -> [u8; META_BYTES] {
        let mut b = [0u8; META_BYTES];
        for (i, v) in [
            self.seq,
            self.capture_mono_ns,
            self.capture_real_ns,
            self.publish_mono_ns,
            self.publish_real_ns,
            self.payload_len,
            self.driver_seq,
        ]
        .into_iter()
        .enumerate()
        {
            put_u64(&mut b, 8 * i, v);
        }
        for (i, v) in [
            self.fourcc,
            self.width,
            self.height,
            self.flags,
            self.field,
            self.num_planes,
            self.epoch,
            self.user_len,
        ]
        .into_iter()
        .enumerate()
        {
            put_u32(&mut b, 56 + 4 * i, v);
        }
        for i in 0..MAX_PLANES {
            put_u32(&mut b, 88 + 4 * i, self.strides[i]);
            put_u32(&mut b, 104 + 4 * i, self.plane_offsets[i]);
        }
        b[120..120 + USER_META_BYTES].copy_from_slice(&self.user);
        b
    }

    pub(crate) fn decode(b: &[u8; META_BYTES]) -> RawMeta {
        let mut m = RawMeta::ZERO;
        let u64s: [&mut u64; 7] = [
            &mut m.seq,
            &mut m.capture_mono_ns,
            &mut m.capture_real_ns,
            &mut m.publish_mono_ns,
            &mut m.publish_real_ns,
            &mut m.payload_len,
            &mut m.driver_seq,
        ];
        for (i, v) in u64s.into_iter().enumerate() {
            *v = get_u64(b, 8 * i);
        }
        let u32s: [&mut u32; 8] = [
            &mut m.fourcc,
            &mut m.width,
            &mut m.height,
            &mut m.flags,
            &mut m.field,
            &mut m.num_planes,
            &mut m.epoch,
            &mut m.user_len,
        ];
        for (i, v) in u32s.into_iter().enumerate() {
            *v = get_u32(b, 56 + 4 * i);
        }
        for i in 0..MAX_PLANES {
            m.strides[i] = get_u32(b, 88 + 4 * i);
            m.plane_offsets[i] = get_u32(b, 104 + 4 * i);
        }
        m.user.copy_from_slice(&b[120..120 + USER_META_BYTES]);
        m
    }

    /// Checks what a reader will act on: the sequence the stamp promised, a
    /// payload that fits the slot, and in-range counts.
    pub(crate) fn validate(&self, expected_seq: u64, layout: &Layout) -> Result<(), LayoutError> {
        check("frame seq", self.seq, expected_seq)?;
        let bad = |field, found: u64, expected: String| {
            Err(LayoutError::BadField {
                field,
                found,
                expected,
            })
        };
        if self.payload_len > layout.geometry.max_frame_bytes {
            return bad(
                "frame payload_len",
                self.payload_len,
                format!("at most {}", layout.geometry.max_frame_bytes),
            );
        }
        if self.user_len as usize > USER_META_BYTES {
            return bad(
                "frame user_len",
                self.user_len.into(),
                format!("at most {USER_META_BYTES}"),
            );
        }
        if self.num_planes as usize > MAX_PLANES {
            return bad(
                "frame num_planes",
                self.num_planes.into(),
                format!("at most {MAX_PLANES}"),
            );
        }
        Ok(())
    }
}

// The encoded sizes are part of the file format: fail the build if they move.
const _: () = assert!(META_OFFSET as usize + META_BYTES == DESC_BYTES as usize);
const _: () = assert!(120 + USER_META_BYTES == META_BYTES);
const _: () = assert!(off::NAME_END - off::NAME == MAX_NAME_BYTES + 1);
const _: () = assert!(off::NAME_END <= FIXED_BYTES);
const _: () = assert!(off::CONTENT_TYPE == off::NAME_END);
const _: () = assert!(off::CONTENT_TYPE_END - off::CONTENT_TYPE == MAX_CONTENT_TYPE_BYTES + 1);
const _: () = assert!(off::CONTENT_TYPE_END <= FIXED_BYTES);
const _: () = assert!(FIXED_BYTES as u64 == LIVE_OFFSET);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(slots: u32, max: u64) -> Header {
        Header {
            layout: Geometry {
                slot_count: slots,
                max_frame_bytes: max,
                page_size: 4096,
            }
            .layout()
            .unwrap(),
            ring_id: 42,
            created_real_ns: 7,
            heartbeat_interval_ns: 200_000_000,
            hold_limit: 4,
            max_readers: 64,
            format: StreamFormat::opaque(64),
            name: "cam0".into(),
            content_type: None,
        }
    }

    #[test]
    fn roundtrip() {
        let h = header(8, 1 << 20);
        let b = h.encode();
        assert_eq!(Header::parse(&b, h.layout.file_bytes).unwrap(), h);
    }

    #[test]
    fn content_type_roundtrip() {
        let mut h = header(8, 1 << 20);
        h.content_type = Some("application/x-imu+csv".into());
        let b = h.encode();
        assert_eq!(&b[232..232 + 21], b"application/x-imu+csv");
        assert!(b[232 + 21..296].iter().all(|&c| c == 0));
        assert_eq!(Header::parse(&b, h.layout.file_bytes).unwrap(), h);
        // The longest one leaves exactly one NUL.
        h.content_type = Some("x".repeat(MAX_CONTENT_TYPE_BYTES));
        let b = h.encode();
        assert_eq!(b[295], 0);
        assert_eq!(Header::parse(&b, h.layout.file_bytes).unwrap(), h);
        // Empty is none, both ways.
        h.content_type = Some(String::new());
        let b = h.encode();
        assert_eq!(
            Header::parse(&b, h.layout.file_bytes).unwrap().content_type,
            None
        );
    }

    #[test]
    fn files_without_content_type_parse_as_none() {
        // The bytes were reserved and zero before the field existed.
        let h = header(8, 1 << 20);
        let b = h.encode();
        assert!(b[232..296].iter().all(|&c| c == 0));
        assert_eq!(
            Header::parse(&b, h.layout.file_bytes).unwrap().content_type,
            None
        );
    }

    #[test]
    fn rejects_bad_content_type() {
        let h = header(8, 1 << 20);
        let good = h.encode();
        let cases: &[(&[u8], u64)] = &[
            (b"text/csv; x=1", u64::from(b' ')), // a space
            (b"caf\xc3\xa9", 0xc3),              // not ASCII
            (b"a\tb", u64::from(b'\t')),         // a control character
            (b"\x7f", 0x7f),                     // DEL
            (b"abc\0d", u64::from(b'd')),        // a byte after the NUL
            (b"\0\0\0\x01", 1),                  // garbage after an empty one
            (&[b'x'; 64], 64),                   // no NUL at all
        ];
        for &(raw, found) in cases {
            let mut b = good;
            b[232..296].fill(0);
            b[232..232 + raw.len()].copy_from_slice(raw);
            match Header::parse(&b, h.layout.file_bytes) {
                Err(LayoutError::BadField {
                    field: "content_type",
                    found: f,
                    ..
                }) => assert_eq!(f, found, "{raw:?}"),
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn validates_content_types() {
        for ok in [
            "application/x-imu+csv",
            "a",
            "application/vnd.velodyne.vlp16",
        ] {
            assert_eq!(validate_content_type(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(MAX_CONTENT_TYPE_BYTES + 1);
        for bad in [
            "",
            "text/csv; charset=utf-8",
            "caf\u{e9}",
            "a\0b",
            long.as_str(),
        ] {
            let e = validate_content_type(bad).unwrap_err();
            assert!(e.contains("printable ASCII"), "{e}");
        }
    }

    #[test]
    fn rejects_wrong_size_file() {
        let h = header(8, 1 << 20);
        let b = h.encode();
        assert!(matches!(
            Header::parse(&b, h.layout.file_bytes - 1),
            Err(LayoutError::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&b, h.layout.file_bytes + 4096),
            Err(LayoutError::BadField {
                field: "file size",
                ..
            })
        ));
    }

    #[test]
    fn rejects_other_version() {
        let mut b = header(8, 4096).encode();
        b[8] = 2;
        assert_eq!(
            Header::parse(&b, 1 << 30),
            Err(LayoutError::VersionMismatch {
                found: 2,
                expected: VERSION
            })
        );
    }

    #[test]
    fn meta_roundtrip() {
        let mut m = RawMeta::ZERO;
        m.seq = 9;
        m.payload_len = 100;
        m.user[3] = 7;
        m.strides[2] = 11;
        m.user_len = 4;
        assert_eq!(RawMeta::decode(&m.encode()), m);
    }

    proptest! {
        #[test]
        fn layout_is_consistent(slots in 1u32..=MAX_SLOTS, max in 1u64..=(64 << 20), page_shift in 12u32..=16) {
            let g = Geometry { slot_count: slots, max_frame_bytes: max, page_size: 1 << page_shift };
            match g.layout() {
                Ok(l) => {
                    let page = u64::from(g.page_size);
                    prop_assert_eq!(l.data_offset % page, 0);
                    prop_assert_eq!(l.slot_stride % page, 0);
                    prop_assert!(l.slot_stride >= max && l.slot_stride - max < page);
                    prop_assert!(l.index_len >= 2 * slots && l.index_len.is_power_of_two());
                    prop_assert!(l.index_offset >= DESC_OFFSET + u64::from(slots) * DESC_BYTES);
                    prop_assert!(l.data_offset >= l.index_offset + u64::from(l.index_len) * 4);
                    prop_assert!(l.data_offset - (l.index_offset + u64::from(l.index_len) * 4) < page);
                    // The last slot ends exactly at the end of the file.
                    prop_assert_eq!(l.payload_offset(slots - 1) + l.slot_stride, l.file_bytes);
                    prop_assert!(l.file_bytes <= MAX_FILE_BYTES);
                }
                Err(LayoutError::Geometry(_)) => {
                    // Only the file-size limit can refuse geometry in this range.
                    prop_assert!(u64::from(slots) * max > MAX_FILE_BYTES / 2);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn content_type_field_parses_only_what_encode_writes(raw in proptest::collection::vec(any::<u8>(), 64)) {
            let h = header(8, 4096);
            let mut b = h.encode();
            b[232..296].copy_from_slice(&raw);
            match Header::parse(&b, h.layout.file_bytes) {
                Ok(p) => {
                    if let Some(ct) = &p.content_type {
                        prop_assert!(validate_content_type(ct).is_ok());
                    }
                    prop_assert_eq!(&p.encode()[..], &b[..]);
                }
                Err(LayoutError::BadField { field, .. }) => prop_assert_eq!(field, "content_type"),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), len in any::<u64>()) {
            let _ = Header::parse(&bytes, len);
        }

        #[test]
        fn parse_encode_parse(
            slots in 1u32..64,
            max in 1u64..(1 << 24),
            hold in 1u32..=MAX_HOLDS,
            id in any::<u64>(),
            content_type in proptest::option::of("[!-~]{1,63}"),
        ) {
            let mut h = header(slots, max);
            h.hold_limit = hold;
            h.ring_id = id;
            h.content_type = content_type;
            let b = h.encode();
            let p = Header::parse(&b, h.layout.file_bytes).unwrap();
            prop_assert_eq!(&p.encode()[..], &b[..]);
            prop_assert_eq!(p, h);
        }
    }
}
