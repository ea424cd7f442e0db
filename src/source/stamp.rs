//! The integrity stamp at the start of every synthetic payload.
//!
//! The first [`STAMP_BYTES`] bytes of a stamped payload are, all integers
//! little-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | [`MAGIC`], `b"CAMUXSYN"` |
//! | 8..16 | sequence number, `u64` |
//! | 16..24 | payload length in bytes, stamp included, `u64` |
//! | 24..32 | [`checksum`] of `payload[32..length]`, seeded with the sequence, `u64` |
//!
//! A reader in any process verifies a frame from these bytes alone, with no
//! knowledge of the format or of the pattern that filled it.
//!
//! ```
//! use camux::source::stamp::{self, VerifyError, Verified};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut payload = vec![7u8; 4096];
//! stamp::write(42, &mut payload);
//! assert_eq!(stamp::verify(&payload)?, Verified { seq: 42, len: 4096 });
//!
//! payload[1000] ^= 1;
//! assert!(matches!(stamp::verify(&payload), Err(VerifyError::Checksum { seq: 42, .. })));
//! # Ok(())
//! # }
//! ```

/// Size of the stamp at the start of a payload.
pub const STAMP_BYTES: usize = 32;

/// The first eight bytes of a stamped payload.
pub const MAGIC: [u8; 8] = *b"CAMUXSYN";

// Odd 64-bit constants with well-mixed bits (the primes of xxHash64).
const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// A fast, non-cryptographic 64-bit checksum of `data`, seeded with `seed`.
///
/// It reads 32 bytes per step into four independent lanes (so the CPU runs
/// four multiply chains at once), each lane taking an xxHash64-style round:
/// `lane = rotl(lane + word × P2, 31) × P1`. The lanes are folded, the tail
/// of fewer than 32 bytes mixed in, and the result avalanched.
///
/// Every step is a bijection of the byte that changed, with everything else
/// fixed, so changing any single byte of `data` always changes the result
/// (not just with high probability). Lanes and rounds do not commute, so
/// swapping two different 8-byte words changes it too, except by a 2⁻⁶⁴
/// coincidence. It is no defence against a forger, only against accidents.
///
/// ```
/// use camux::source::stamp::checksum;
/// let data = [1u8; 100];
/// assert_eq!(checksum(5, &data), checksum(5, &data));
/// assert_ne!(checksum(5, &data), checksum(6, &data));
/// ```
#[must_use]
pub fn checksum(seed: u64, data: &[u8]) -> u64 {
    let mut lanes = [
        seed.wrapping_add(P1).wrapping_add(P2),
        seed.wrapping_add(P2),
        seed,
        seed.wrapping_sub(P1),
    ];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = round(*lane, read_le(word));
        }
    }
    // The length goes in first, so a short tail padded with zeros cannot
    // collide with the same bytes followed by real zeros.
    let mut hash = seed.wrapping_add(P5) ^ (data.len() as u64).wrapping_mul(P3);
    for lane in lanes {
        hash = merge(hash, lane);
    }
    let mut tail = blocks.remainder().chunks(8);
    for word in &mut tail {
        hash = merge(hash, read_le(word));
    }
    avalanche(hash)
}

/// One lane step: a bijection of `word` for a fixed `acc`, and of `acc` for
/// a fixed `word`.
#[inline]
fn round(acc: u64, word: u64) -> u64 {
    acc.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

/// Folds `value` into `hash`; a bijection of each for the other fixed.
#[inline]
fn merge(hash: u64, value: u64) -> u64 {
    (hash ^ round(0, value))
        .rotate_left(27)
        .wrapping_mul(P1)
        .wrapping_add(P4)
}

/// Spreads every input bit over the output (a bijection).
fn avalanche(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

/// Up to eight bytes as a little-endian `u64`, zero-padded.
#[inline]
fn read_le(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Stamps `payload` as frame `seq`: writes the magic, `seq`, the length of
/// `payload` and the checksum of everything after the stamp into its first
/// [`STAMP_BYTES`] bytes.
///
/// The checksum is seeded with `seq`, so it binds the sequence to the
/// pixels: two frames with the same pixels (a still scene, a pattern that
/// has come full circle) still carry different checksums, and a stamp
/// whose sequence field was torn from another frame fails.
///
/// # Panics
/// If `payload` is shorter than [`STAMP_BYTES`].
///
/// ```
/// use camux::source::stamp;
/// let mut payload = [0u8; 64];
/// stamp::write(3, &mut payload);
/// assert_eq!(&payload[..8], b"CAMUXSYN");
/// assert_eq!(payload[8], 3);
/// ```
pub fn write(seq: u64, payload: &mut [u8]) {
    assert!(
        payload.len() >= STAMP_BYTES,
        "a stamped payload needs at least {STAMP_BYTES} bytes, got {}",
        payload.len()
    );
    let (stamp, body) = payload.split_at_mut(STAMP_BYTES);
    let len = (STAMP_BYTES + body.len()) as u64;
    stamp[..8].copy_from_slice(&MAGIC);
    stamp[8..16].copy_from_slice(&seq.to_le_bytes());
    stamp[16..24].copy_from_slice(&len.to_le_bytes());
    stamp[24..32].copy_from_slice(&checksum(seq, body).to_le_bytes());
}

/// What a valid stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verified {
    /// The frame's sequence number.
    pub seq: u64,
    /// The payload length, stamp included.
    pub len: u64,
}

/// Checks the stamp of `payload`, which must be the whole payload (its
/// length is checked against the stamped one).
///
/// # Errors
/// [`VerifyError`] says which check failed. Never panics, whatever the bytes.
///
/// ```
/// use camux::source::stamp::{self, VerifyError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut payload = vec![0u8; 100];
/// stamp::write(9, &mut payload);
/// assert_eq!(stamp::verify(&payload)?.seq, 9);
/// assert_eq!(
///     stamp::verify(&payload[..99]),
///     Err(VerifyError::LengthMismatch { stamped: 100, actual: 99 })
/// );
/// assert_eq!(stamp::verify(&[0u8; 100]), Err(VerifyError::NoStamp));
/// # Ok(())
/// # }
/// ```
pub fn verify(payload: &[u8]) -> Result<Verified, VerifyError> {
    let have = payload.len();
    if payload[..have.min(MAGIC.len())] != MAGIC[..have.min(MAGIC.len())] {
        return Err(VerifyError::NoStamp);
    }
    if have < STAMP_BYTES {
        return Err(VerifyError::Truncated {
            need: STAMP_BYTES as u64,
            have: have as u64,
        });
    }
    let (stamp, body) = payload.split_at(STAMP_BYTES);
    let field = |i: usize| read_le(&stamp[i * 8..(i + 1) * 8]);
    let (seq, stamped_len, expected) = (field(1), field(2), field(3));
    let actual = have as u64;
    if stamped_len != actual {
        return Err(VerifyError::LengthMismatch {
            stamped: stamped_len,
            actual,
        });
    }
    let found = checksum(seq, body);
    if found != expected {
        return Err(VerifyError::Checksum {
            seq,
            expected,
            found,
        });
    }
    Ok(Verified { seq, len: actual })
}

/// Why a payload's stamp does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The payload does not start with [`MAGIC`]: it was never stamped, or
    /// its first bytes were overwritten.
    #[error("no stamp: the payload does not start with \"CAMUXSYN\"")]
    NoStamp,
    /// The payload starts like a stamp but is shorter than one.
    #[error("truncated stamp: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes a stamp needs ([`STAMP_BYTES`]).
        need: u64,
        /// Bytes the payload has.
        have: u64,
    },
    /// The payload is not as long as its stamp says.
    #[error("length mismatch: stamped {stamped} bytes, payload has {actual}")]
    LengthMismatch {
        /// The length in the stamp.
        stamped: u64,
        /// The length of the payload given.
        actual: u64,
    },
    /// The bytes after the stamp are not the ones that were stamped: a torn
    /// or corrupted frame (or a corrupted stamp).
    #[error("checksum mismatch in frame {seq}: stamped {expected:#018x}, computed {found:#018x}")]
    Checksum {
        /// The sequence number in the stamp.
        seq: u64,
        /// The checksum in the stamp.
        expected: u64,
        /// The checksum of the payload as it is.
        found: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random_bytes(len: usize) -> Vec<u8> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        // All lengths around the block and word boundaries.
        for len in 0..=100 {
            let data = pseudo_random_bytes(len);
            let reference = checksum(1, &data);
            for i in 0..len {
                for flip in [0x01, 0x80, 0xFF] {
                    let mut changed = data.clone();
                    changed[i] ^= flip;
                    assert_ne!(checksum(1, &changed), reference, "len {len}, byte {i}");
                }
            }
        }
    }

    #[test]
    fn swapping_two_words_is_detected() {
        let data = pseudo_random_bytes(8 * 40 + 5);
        let reference = checksum(0, &data);
        let words = data.len() / 8;
        for a in 0..words {
            for b in a + 1..words {
                let mut swapped = data.clone();
                let (left, right) = swapped.split_at_mut(b * 8);
                left[a * 8..a * 8 + 8].swap_with_slice(&mut right[..8]);
                assert_ne!(checksum(0, &swapped), reference, "words {a} and {b}");
            }
        }
    }

    #[test]
    fn seed_and_length_matter() {
        let data = [0u8; 64];
        assert_ne!(checksum(0, &data), checksum(1, &data));
        let lengths: std::collections::HashSet<u64> =
            (0..=64).map(|len| checksum(0, &data[..len])).collect();
        assert_eq!(lengths.len(), 65, "zero-filled data of each length differs");
    }

    #[test]
    fn write_then_verify() {
        for len in [STAMP_BYTES, STAMP_BYTES + 1, 4096] {
            let mut payload = pseudo_random_bytes(len);
            write(u64::MAX - 1, &mut payload);
            assert_eq!(
                verify(&payload),
                Ok(Verified {
                    seq: u64::MAX - 1,
                    len: len as u64
                })
            );
        }
    }

    #[test]
    #[should_panic(expected = "at least 32 bytes")]
    fn write_needs_room() {
        write(0, &mut [0; STAMP_BYTES - 1]);
    }

    #[test]
    fn verify_errors() {
        let mut payload = vec![0u8; 256];
        write(5, &mut payload);
        assert_eq!(
            verify(&[]),
            Err(VerifyError::Truncated { need: 32, have: 0 })
        );
        assert_eq!(
            verify(&payload[..20]),
            Err(VerifyError::Truncated { need: 32, have: 20 })
        );
        assert_eq!(verify(b"CAMUXSYM"), Err(VerifyError::NoStamp));
        let mut longer = payload.clone();
        longer.push(0);
        assert_eq!(
            verify(&longer),
            Err(VerifyError::LengthMismatch {
                stamped: 256,
                actual: 257
            })
        );
        let mut torn_seq = payload.clone();
        torn_seq[8] = 6;
        assert!(matches!(
            verify(&torn_seq),
            Err(VerifyError::Checksum { seq: 6, .. })
        ));
    }

    proptest! {
        #[test]
        fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100), magic in any::<bool>()) {
            let mut bytes = bytes;
            if magic && bytes.len() >= 8 {
                bytes[..8].copy_from_slice(&MAGIC);
            }
            let _ = verify(&bytes);
        }

        #[test]
        fn any_corruption_is_detected(
            len in STAMP_BYTES..2000,
            seq in any::<u64>(),
            position in any::<proptest::sample::Index>(),
            flip in 1u8..,
        ) {
            let mut payload = pseudo_random_bytes(len);
            write(seq, &mut payload);
            payload[position.index(len)] ^= flip;
            prop_assert!(verify(&payload).is_err());
        }
    }
}
