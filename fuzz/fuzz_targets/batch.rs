//! Arbitrary bytes through the record batch validator, and, with the CRC fixed up,
//! through record decoding and decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    runnel_storage::fuzzing::check_batch_parsing(data);
    runnel_storage::fuzzing::check_record_decoding(data);
});
