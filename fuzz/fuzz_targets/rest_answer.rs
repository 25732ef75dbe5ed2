//! Answers of a declared REST API (any body, every paging style) through the `type: rest`
//! connector's list decoder and next-request builder (`revsync_rest::fuzzing::answer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = revsync_rest::fuzzing::answer(data);
});
