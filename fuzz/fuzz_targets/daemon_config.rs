//! The daemon config parser: never panics; every refusal is located
//! (line and column inside the text); an accepted config round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    camux::fuzzing::daemon_config(data);
});
