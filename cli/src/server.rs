//! `runnel server`: one node, broker and controller in one process (Kafka's combined
//! mode): alone by default, or one voter of the quorum `controller.quorum.voters` names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use runnel_actors::{Node, ShutdownReason};
use runnel_broker::config::{parse_properties, BrokerConfig};
use runnel_broker::server::DEFAULT_SHUTDOWN_GRACE_MS;
use runnel_broker::MAX_CONNECTIONS;
use runnel_broker::{Broker, BrokerServer};
use runnel_storage::disk::{HandleCache, RealDisk};

/// Start a Runnel broker and run it until Ctrl-C.
///
/// With no options it serves the Kafka protocol on 127.0.0.1:9092 and keeps its data in
/// ./runnel-data. Settings use Kafka's `server.properties` names.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// A server.properties file (listeners, log.dirs, num.partitions, log.retention.hours, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the broker keeps its data; overrides log.dirs [default: ./runnel-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address for Kafka clients; overrides listeners [default: 127.0.0.1:9092]. Port 0
    /// picks a free port, printed at start.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
}

/// The broker's settings: the file's, then the command line's overrides.
pub fn load_config(
    file: Option<&Path>,
    data_dir: Option<&Path>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<BrokerConfig> {
    let mut properties = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            parse_properties(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => BTreeMap::new(),
    };
    if let Some(dir) = data_dir {
        properties.insert("log.dirs".into(), dir.display().to_string());
    }
    let mut config = BrokerConfig::from_properties(properties)
        .context("the broker configuration is invalid; fix the setting named above")?;
    // Only the client listener: a CONTROLLER listener in the file stays as it is.
    if let Some(listen) = listen {
        config.listen = listen;
    }
    Ok(config)
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = load_config(
        args.config.as_deref(),
        args.data_dir.as_deref(),
        args.listen,
    )?;
    let (listener, bound) = Broker::bind(&config).await?;
    let advertised = config.advertised_host_port(bound);
    let data = config
        .log_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let node_id = config.node_id;
    let disk = Arc::new(HandleCache::new(RealDisk::new(), descriptor_budget()));
    let node = Node::new("runnel");
    let broker = Broker::open(&node, config, disk, advertised).await?;
    let server = BrokerServer::start(&node, broker.clone(), listener);
    let mut stop = StopSignals::register()?;
    eprintln!(
        "runnel: broker {node_id} listening on {bound} (cluster {}, controller quorum on {}), data in {data}; Ctrl-C stops it",
        broker.image().cluster_id,
        broker.controller_addr(),
    );

    let mut node_down = node.shutdown_signal();
    let failed = tokio::select! {
        biased;
        signal = stop.next() => {
            eprintln!("runnel: {signal}: stopping (no new connections; requests in flight finish, then the logs are flushed)");
            None
        }
        reason = node_down.wait_for(Option::is_some) => reason.ok().and_then(|r| r.clone()),
    };
    let grace = Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS);
    let stopped = server.shutdown(grace).await;
    let reason = node.stopped().await;
    let stopped = stopped.context(
        "could not flush the logs on the way out; recovery at the next start checks them",
    )?;
    match failed.unwrap_or(reason) {
        ShutdownReason::Requested => {
            let cut = match stopped.connections_cut {
                0 => String::new(),
                n => format!(", {n} busy connections cut after {} ms", grace.as_millis()),
            };
            eprintln!(
                "runnel: stopped cleanly in {} ms ({} partitions flushed{cut})",
                stopped.elapsed_ms, stopped.partitions_flushed
            );
            Ok(())
        }
        reason => bail!("stopped: {reason}; the logs were flushed, so restarting is safe"),
    }
}

/// Descriptors kept for connections and everything that is not a log file.
const RESERVED_DESCRIPTORS: u64 = MAX_CONNECTIONS as u64 + 256;
/// Fewer log files open than this and the cache reopens files on almost every read.
const MIN_OPEN_LOG_FILES: u64 = 64;

/// How many log files may be open at once: the process's descriptor limit (raised to its
/// hard limit first, as Kafka's docs ask operators to) less what connections need. Past
/// it the handle cache closes the least recently used files and reopens them on demand,
/// so any number of partitions fits.
fn descriptor_budget() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current >= maximum {
            return budget_under(current);
        }
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    // None means unlimited; a million files is more than any broker here opens.
    budget_under(limit.current.unwrap_or(1 << 20))
}

fn budget_under(soft: u64) -> usize {
    let reserved = RESERVED_DESCRIPTORS.min(soft / 2);
    let files = soft.saturating_sub(reserved).max(MIN_OPEN_LOG_FILES);
    tracing::info!(
        descriptor_limit = soft,
        open_log_files = files,
        "descriptor budget"
    );
    usize::try_from(files).unwrap_or(usize::MAX)
}

/// Ctrl-C and SIGTERM, the two ways people and service managers ask a server to stop.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn register() -> anyhow::Result<Self> {
        Ok(StopSignals {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?,
        })
    }

    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
