//! CSV files (any bytes, any delimiter, quote and encoding) through the `type: csv`
//! connector's reader and its write-back (`revsync_csv::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = revsync_csv::fuzzing::parse_and_write(data);
});
