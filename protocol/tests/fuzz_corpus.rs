//! Replays the saved fuzz corpus on stable Rust, so an input that once broke decoding
//! stays fixed.

use std::path::Path;

use runnel_protocol::node;

#[test]
fn node_frame_corpus_decodes_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/node_frame");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        if let Ok(frame) = node::decode_frame_body(bytes::Bytes::from(data)) {
            let wire = node::encode_frame(&frame).expect("re-encodes");
            let again = node::decode_frame_body(wire.slice(node::FRAME_PREFIX_BYTES..))
                .expect("round trip");
            assert_eq!(again, frame);
        }
        replayed += 1;
    }
    assert!(replayed >= 3, "the corpus went missing: {replayed} inputs");
}
