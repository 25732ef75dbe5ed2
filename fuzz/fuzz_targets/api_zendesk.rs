//! Zendesk API answers (status, headers, body) through the client's classification and the
//! connector's decoders; the first byte picks the decoder (`revsync_zendesk::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(a) = revsync_fuzz::answer(data) {
        let _ = revsync_zendesk::fuzzing::decode_answer(a.decoder, a.response);
    }
});
