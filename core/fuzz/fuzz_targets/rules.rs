//! RRPairs built from the bytes (URL, header values, JSON and other bodies) through edge rules
//! that use every feature (nodetap_core::rules::fuzz): no panic, every length kept.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use nodetap_core::rules::fuzz;

fuzz_target!(|data: &[u8]| {
    fuzz::rules_target(data);
});
