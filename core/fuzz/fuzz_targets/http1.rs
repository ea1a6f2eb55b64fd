//! HTTP/1.x bytes, split and interleaved between the two directions, into the stitcher.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use nodetap_core::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::http1(data);
});
