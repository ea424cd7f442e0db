//! The handshake messages: Hello, Reply (welcome / reject) and the
//! inspection reply decode only what they encode, and round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    camux::ring::fuzzing::hello_decode(data);
    camux::ring::fuzzing::reply_decode(data);
});
