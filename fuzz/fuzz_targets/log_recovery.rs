//! Arbitrary bytes as a segment file, recovered as after a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(runnel_storage::fuzzing::check_recovery(data));
});
