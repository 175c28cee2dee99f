//! Arbitrary bytes as a Kafka request frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| runnel_storage::fuzzing::check_kafka_request(data));
