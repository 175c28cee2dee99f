//! The metadata publisher: after every entry this node applies, it brings the partitions
//! here to what the image places here (Kafka's `BrokerMetadataPublisher`), and says how
//! far it got, so a change's proposer can answer once its partitions are open.

use std::sync::{Arc, Weak};
use std::time::Duration;

use runnel_actors::{Node, RestartPolicy};

use crate::{Broker, Reconciled};

/// After a failed pass (a disk error opening a partition), the next is tried this soon
/// even without a new entry.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(crate) fn start(node: &Node, broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    node.spawn_supervised("metadata-publisher", RestartPolicy::default(), move || {
        publish(weak.clone())
    });
}

async fn publish(weak: Weak<Broker>) {
    let Some(mut applied) = weak.upgrade().map(|b| b.metadata.subscribe()) else {
        return;
    };
    loop {
        let Some(broker) = weak.upgrade() else {
            return;
        };
        let offset = broker.image().offset;
        let result = broker.reconcile().await;
        let failed = result.is_err();
        if let Err(e) = &result {
            tracing::warn!(offset, error = %e.message, "partitions not brought to the metadata image; retrying");
        }
        broker.reconciled.send_replace(Reconciled {
            offset,
            error: result.err(),
        });
        drop(broker);
        let changed = if failed {
            tokio::time::timeout(RETRY_AFTER_FAILURE, applied.changed())
                .await
                .unwrap_or(Ok(()))
        } else {
            applied.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}
