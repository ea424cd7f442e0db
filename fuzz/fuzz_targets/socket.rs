//! The reader/daemon socket protocol: a script of client operations
//! (connect, arbitrary packets, hellos with any descriptors attached,
//! hostile lease pages and hold entries, half-closes, publishes) against a
//! real publisher and its control thread never crashes the server, never
//! leaks a descriptor, and never grants more holds than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    camux::ring::fuzzing::socket_script(data);
});
