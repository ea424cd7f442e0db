//! Attach a reader to an arbitrary ring file image and read every frame it
//! offers: each outcome must be a typed error or a payload inside its slot.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| camux::ring::fuzzing::read_image(data));
