//! `runnel server`: one node with everything it serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use runnel_actors::counter::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, RestartPolicy, ShutdownReason};
use runnel_storage::disk::RealDisk;

use crate::{DEFAULT_NODE_LISTEN, SERVER_NODE_ID};

/// Start a Runnel server and run it until Ctrl-C.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the node keeps its data.
    #[arg(long, default_value = "./runnel-data")]
    data_dir: PathBuf,
    /// Address for node-to-node traffic (and for `runnel counter`).
    #[arg(long, default_value = DEFAULT_NODE_LISTEN)]
    node_listen: SocketAddr,
    /// Acknowledge counter increments before they are fsynced (can lose them in a crash).
    #[arg(long)]
    ack_before_fsync: bool,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let ServerArgs {
        data_dir,
        node_listen,
        ack_before_fsync,
    } = args;
    let node = Node::new("runnel");
    let transport = Transport::start(&node, TransportConfig::new(SERVER_NODE_ID, node_listen))
        .await
        .with_context(|| {
            format!("cannot listen on {node_listen}; is another runnel server running there? Choose another address with --node-listen")
        })?;
    let policy = if ack_before_fsync {
        SyncPolicy::AckBeforeFsync {
            flush_interval: Duration::from_secs(1),
        }
    } else {
        SyncPolicy::FsyncBeforeAck
    };
    let counter_dir = data_dir.join("counter");
    let counter = node.spawn("counter", 1024, RestartPolicy::default(), move || {
        CounterService::new(Arc::new(RealDisk::new()), counter_dir.clone(), policy)
    });
    transport.serve::<_, IncrementRequest>(counter.clone(), Duration::from_secs(5));
    transport.serve::<_, ReadRequest>(counter, Duration::from_secs(5));
    // The counter recovers its log in `started`; a read proves the node is ready to serve.
    transport
        .ask(SERVER_NODE_ID, &ReadRequest {}, Duration::from_secs(60))
        .await
        .context("the counter service did not start")?;
    eprintln!(
        "runnel: node {SERVER_NODE_ID} listening on {} with data in {}; Ctrl-C stops it",
        transport.local_addr(),
        data_dir.display()
    );

    let stopper = node.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.shutdown(ShutdownReason::Requested);
        }
    });
    match node.stopped().await {
        ShutdownReason::Requested => {
            eprintln!("runnel: stopped cleanly");
            Ok(())
        }
        reason => bail!("stopped: {reason}"),
    }
}
