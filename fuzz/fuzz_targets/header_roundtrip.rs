//! Parse a ring header, write it back, parse again: the two must agree, and
//! the parser must accept only the one encoding `Header::encode` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| camux::ring::fuzzing::header_roundtrip(data));
