//! Arbitrary bytes as a node frame body: decoding may fail, never panic, and whatever
//! decodes must re-encode within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_protocol::node;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = node::decode_frame_body(bytes::Bytes::copy_from_slice(data)) {
        let wire = node::encode_frame(&frame).expect("a decoded frame re-encodes");
        let again = node::decode_frame_body(wire.slice(node::FRAME_PREFIX_BYTES..)).expect("round trip");
        assert_eq!(again, frame);
    }
});
