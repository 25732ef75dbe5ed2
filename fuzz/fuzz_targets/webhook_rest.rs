//! Webhooks of a declared REST API through the declared signature check and event parser
//! (`revsync_rest::fuzzing::webhook`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = revsync_rest::fuzzing::webhook(data);
});
