//! The sensor record framer: the same events and counts however the
//! stream is cut into reads; records fit the framing; nothing is lost.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    camux::fuzzing::sensor_framer(data);
});
