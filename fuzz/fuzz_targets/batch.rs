//! Arbitrary bytes through the record batch validator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| runnel_storage::fuzzing::check_batch_parsing(data));
