//! Arbitrary bytes as a node frame body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| runnel_storage::fuzzing::check_node_frame(data));
