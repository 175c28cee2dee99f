//! One voter over a real transport on loopback: it elects itself, commits proposals in
//! order, refuses empty ones, and after a restart on the same directory applies the same
//! log again and keeps its term.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, ShutdownReason};
use runnel_quorum::{Committed, ProposeError, QuorumConfig, QuorumHandle};
use runnel_storage::disk::RealDisk;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path) -> (Node, QuorumHandle, Arc<Mutex<Vec<Committed>>>) {
    let node = Node::new("voter-1");
    let addr = "127.0.0.1:0".parse().expect("an address");
    let transport = Transport::start(&node, TransportConfig::new(1, addr))
        .await
        .expect("the transport starts");
    let applied = Arc::new(Mutex::new(Vec::new()));
    let sink = applied.clone();
    let mut config = QuorumConfig::new(1, vec![1], dir.to_path_buf());
    config.tick_ms = 10;
    let handle = QuorumHandle::spawn(
        &node,
        &transport,
        Arc::new(RealDisk),
        config,
        Arc::new(move |c| sink.lock().expect("lock").push(c)),
    );
    (node, handle, applied)
}

async fn leader_status(handle: &QuorumHandle) -> runnel_quorum::QuorumStatus {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(status) = handle.status(TIMEOUT).await {
            if status.is_leader {
                return status;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_in_order_and_recovers_its_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, handle, applied) = start(tmp.path()).await;
    let first = leader_status(&handle).await;
    assert_eq!(first.leader, Some(1));
    let mut indexes = Vec::new();
    for i in 0..20 {
        let index = handle
            .propose(Bytes::from(format!("record {i}")), TIMEOUT)
            .await
            .expect("committed");
        indexes.push(index);
    }
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "{indexes:?}");
    assert_eq!(
        handle.propose(Bytes::new(), TIMEOUT).await,
        Err(ProposeError::Empty)
    );
    let before: Vec<Committed> = applied.lock().expect("lock").clone();
    assert_eq!(before.len(), 20);
    assert_eq!(before[0].data, Bytes::from("record 0"));
    node.shutdown(ShutdownReason::Requested);
    node.stopped().await;

    let (node, handle, applied) = start(tmp.path()).await;
    let second = leader_status(&handle).await;
    assert!(second.term > first.term, "a new election in a later term");
    // The restarted voter commits its old entries again (a no-op of its new term) and
    // applies them in the same order.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while applied.lock().expect("lock").len() < before.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log was not applied again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*applied.lock().expect("lock"), before);
    let next = handle
        .propose(Bytes::from("after the restart"), TIMEOUT)
        .await
        .expect("committed");
    assert!(next > *indexes.last().expect("proposed"));
    node.shutdown(ShutdownReason::Requested);
}
