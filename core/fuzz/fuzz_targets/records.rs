//! Ring-buffer batches into the decoder: no panic (a caught one counts too), bounded memory.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use nodetap_core::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::records(data);
});
