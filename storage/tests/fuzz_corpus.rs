//! Replays the saved fuzz corpora of `fuzz/` on stable Rust.

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the corpus is committed")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(inputs.len() >= 3, "the {target} corpus went missing");
    inputs
}

#[test]
fn node_frame_corpus() {
    for input in corpus("node_frame") {
        runnel_storage::fuzzing::check_node_frame(&input);
    }
}

#[test]
fn kafka_request_corpus() {
    for input in corpus("kafka_request") {
        runnel_storage::fuzzing::check_kafka_request(&input);
    }
}

#[test]
fn batch_corpus() {
    for input in corpus("batch") {
        runnel_storage::fuzzing::check_batch_parsing(&input);
        runnel_storage::fuzzing::check_record_decoding(&input);
    }
}

#[tokio::test]
async fn log_recovery_corpus() {
    for input in corpus("log_recovery") {
        runnel_storage::fuzzing::check_recovery(&input).await;
    }
}
