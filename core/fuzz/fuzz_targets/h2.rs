//! HTTP/2 frames and HPACK blocks, split between the two directions (with gaps), into one
//! connection's decoder and a lone HPACK decoder.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use nodetap_core::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::h2(data);
});
