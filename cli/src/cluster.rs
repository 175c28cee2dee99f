//! `runnel cluster up|status|down`: a local cluster of nodes in one command. Each node is
//! a `runnel server` process (broker and controller, Kafka's combined mode) with its own
//! `server.properties` and data folder under one directory, so every node can also be
//! started by hand with `runnel server --config DIR/node-N/server.properties`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_broker::config::BrokerConfig;
use runnel_broker::meta_properties;
use runnel_client::kafka::conn::{Connection, ConnectionConfig};
use runnel_client::kafka::{ClientConfig, Cluster};
use runnel_storage::disk::RealDisk;
use rustix::process::{kill_process, test_kill_process, Pid, Signal};

/// Controller listeners sit this far above the client ports.
const CONTROLLER_PORT_OFFSET: u16 = 100;
const UP_WAIT: Duration = Duration::from_secs(60);
const DOWN_WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const PID_FILE: &str = "pid";
/// Each node's answer to `status` may take this long (a node may be stopping).
const STATUS_TIMEOUT_MS: u64 = 3_000;

/// A local cluster of Runnel nodes, each its own process.
#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Start (or restart) a local cluster and print its ports.
    Up {
        /// How many nodes (each broker and controller).
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Where the nodes' settings, data and logs live.
        #[arg(long, default_value = "runnel-cluster")]
        dir: PathBuf,
        /// Node N serves Kafka clients on BASE+N-1 and the quorum on BASE+100+N-1.
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
    },
    /// Each node's state, role in the quorum, epoch and lag.
    Status {
        #[arg(long, default_value = "runnel-cluster")]
        dir: PathBuf,
    },
    /// Stop every node (SIGTERM, then SIGKILL after 20 s).
    Down {
        #[arg(long, default_value = "runnel-cluster")]
        dir: PathBuf,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up {
            nodes,
            dir,
            base_port,
        } => up(nodes, &dir, base_port).await,
        ClusterCommand::Status { dir } => status(&dir).await,
        ClusterCommand::Down { dir } => down(&dir),
    }
}

/// A node of the cluster directory, as its settings say.
struct NodeDir {
    id: i32,
    dir: PathBuf,
    config: BrokerConfig,
}

impl NodeDir {
    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn kafka_addr(&self) -> String {
        self.config.listen.to_string()
    }

    fn controller_addr(&self) -> String {
        self.config
            .controller_listen
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    }

    /// The node's process id, if it is running.
    fn running_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.dir.join(PID_FILE)).ok()?;
        let pid = text.trim().parse::<i32>().ok()?;
        let alive = Pid::from_raw(pid).is_some_and(|p| test_kill_process(p).is_ok());
        // A zombie left by `up` still answers kill(0): check /proc where there is one.
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        });
        (alive && !zombie).then_some(pid)
    }
}

fn node_dirs(dir: &Path) -> anyhow::Result<Vec<NodeDir>> {
    let mut nodes = Vec::new();
    let entries = fs::read_dir(dir).with_context(|| {
        format!(
            "{} is not a cluster directory; start one with `runnel cluster up`",
            dir.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("node-"))
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let properties = path.join("server.properties");
        let config = crate::server::load_config(Some(&properties), None, None)?;
        nodes.push(NodeDir {
            id,
            dir: path,
            config,
        });
    }
    nodes.sort_by_key(|n| n.id);
    if nodes.is_empty() {
        bail!(
            "{} holds no node-N directories; start a cluster with `runnel cluster up`",
            dir.display()
        );
    }
    Ok(nodes)
}

fn node_properties(id: u16, nodes: u16, base_port: u16, data: &Path) -> anyhow::Result<String> {
    let port = |offset: u16| {
        base_port
            .checked_add(offset)
            .context("the ports run past 65535; choose a lower --base-port")
    };
    let mut voters = Vec::new();
    for n in 1..=nodes {
        voters.push(format!(
            "{n}@127.0.0.1:{}",
            port(CONTROLLER_PORT_OFFSET + n - 1)?
        ));
    }
    Ok(format!(
        "# Written by `runnel cluster up`; start this node alone with\n\
         # runnel server --config {data}/../server.properties\n\
         node.id={id}\n\
         process.roles=broker,controller\n\
         listeners=PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}\n\
         controller.listener.names=CONTROLLER\n\
         controller.quorum.voters={voters}\n\
         log.dirs={data}\n",
        data = data.display(),
        kafka = port(id - 1)?,
        controller = port(CONTROLLER_PORT_OFFSET + id - 1)?,
        voters = voters.join(","),
    ))
}

async fn up(nodes: u16, dir: &Path, base_port: u16) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let cluster_id = meta_properties::random_cluster_id();
    for id in 1..=nodes {
        let node_dir = dir.join(format!("node-{id}"));
        let properties = node_dir.join("server.properties");
        if !properties.exists() {
            fs::create_dir_all(&node_dir)?;
            let text = node_properties(id, nodes, base_port, &node_dir.join("data"))?;
            fs::write(&properties, text)?;
        }
    }
    let nodes = node_dirs(&dir)?;
    for node in &nodes {
        // A restart keeps each node's data and its cluster id.
        meta_properties::format(&RealDisk, &node.config.log_dirs, node.id, &cluster_id, true)
            .await
            .with_context(|| format!("formatting node {}", node.id))?;
        if let Some(pid) = node.running_pid() {
            println!("node {}: running already (pid {pid})", node.id);
            continue;
        }
        start_node(node)?;
    }
    wait_until_up(&nodes).await?;
    println!(
        "{:<5} {:<8} {:<22} {:<22} log",
        "node", "pid", "kafka", "controller"
    );
    for node in &nodes {
        println!(
            "{:<5} {:<8} {:<22} {:<22} {}",
            node.id,
            node.running_pid().map_or("-".into(), |p| p.to_string()),
            node.kafka_addr(),
            node.controller_addr(),
            node.dir.join("server.log").display()
        );
    }
    let bootstrap: Vec<String> = nodes.iter().map(NodeDir::kafka_addr).collect();
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!(
        "status: runnel cluster status --dir {0}; stop: runnel cluster down --dir {0}",
        dir.display()
    );
    Ok(())
}

fn start_node(node: &NodeDir) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("server.log"))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("server")
        .arg("--config")
        .arg(node.properties())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for this command leaves the nodes running.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start node {}", node.id))?;
    fs::write(node.dir.join(PID_FILE), child.id().to_string())?;
    Ok(())
}

/// Waits until every node answers and knows every other as a live broker.
async fn wait_until_up(nodes: &[NodeDir]) -> anyhow::Result<()> {
    let started = Instant::now();
    let bootstrap: Vec<String> = nodes.iter().map(NodeDir::kafka_addr).collect();
    loop {
        let mut live = 0;
        for node in nodes {
            let config = ClientConfig::new(&node.kafka_addr()).with_request_timeout_ms(2_000);
            if let Ok(cluster) = Cluster::connect(config).await {
                if let Ok(metadata) = cluster.metadata(Some(&[]), false).await {
                    if metadata.brokers.len() == nodes.len() {
                        live += 1;
                    }
                }
            }
        }
        if live == nodes.len() {
            return Ok(());
        }
        for node in nodes {
            if node.running_pid().is_none() {
                let log = node.dir.join("server.log");
                let text = fs::read_to_string(&log).unwrap_or_default();
                let last = exit_reason(&text);
                bail!(
                    "node {} exited: {last}\n(its whole log is {})",
                    node.id,
                    log.display()
                );
            }
        }
        if started.elapsed() > UP_WAIT {
            bail!(
                "the cluster at {} did not come up within {} s; see each node's server.log",
                bootstrap.join(","),
                UP_WAIT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What a node's log says about why it stopped: a panic and its message, else the last
/// error, else the last line (after a panic, the last line is the backtrace's footnote).
fn exit_reason(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        return lines[at..lines.len().min(at + 2)].join("\n");
    }
    lines
        .iter()
        .rev()
        .find(|l| l.contains("ERROR"))
        .or(lines.last())
        .map_or(String::new(), |l| l.to_string())
}

async fn describe_quorum(node: &NodeDir) -> anyhow::Result<DescribeQuorumResponse> {
    let config = ConnectionConfig {
        connect_timeout_ms: STATUS_TIMEOUT_MS,
        request_timeout_ms: STATUS_TIMEOUT_MS,
        ..ConnectionConfig::default()
    };
    let conn = Connection::connect(&node.kafka_addr(), config).await?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(StrBytes::from_static_str("__cluster_metadata").into())
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response: DescribeQuorumResponse = conn.call(|_| request).await?;
    if response.error_code != 0 {
        let message = response.error_message.as_ref().map_or("", |m| m.as_str());
        bail!("error {}: {message}", response.error_code);
    }
    Ok(response)
}

async fn status(dir: &Path) -> anyhow::Result<()> {
    let nodes = node_dirs(dir)?;
    // Every running node is asked; the answer of the latest epoch is the quorum's now.
    let mut quorum: Option<kafka_protocol::messages::describe_quorum_response::PartitionData> =
        None;
    for node in nodes.iter().filter(|n| n.running_pid().is_some()) {
        let Ok(response) = describe_quorum(node).await else {
            continue;
        };
        let answer = response
            .topics
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next());
        if let Some(answer) = answer {
            if quorum
                .as_ref()
                .is_none_or(|q| answer.leader_epoch > q.leader_epoch)
            {
                quorum = Some(answer);
            }
        }
    }
    match &quorum {
        Some(q) => println!(
            "quorum leader: node {}, epoch {}, high watermark {}",
            q.leader_id.0, q.leader_epoch, q.high_watermark
        ),
        None => {
            println!("quorum leader: none reachable (no node answers, or an election is under way)")
        }
    }
    println!(
        "{:<5} {:<8} {:<8} {:<22} {:<22} {:<9} lag",
        "node", "state", "pid", "kafka", "controller", "role"
    );
    for node in &nodes {
        let pid = node.running_pid();
        let voter = quorum
            .as_ref()
            .and_then(|q| q.current_voters.iter().find(|v| v.replica_id.0 == node.id));
        let role = match (&quorum, voter) {
            (Some(q), _) if q.leader_id.0 == node.id => "leader",
            (_, Some(_)) => "follower",
            _ => "-",
        };
        let lag = match (&quorum, voter) {
            (Some(q), Some(v)) => (q.high_watermark - v.log_end_offset).max(0).to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<5} {:<8} {:<8} {:<22} {:<22} {:<9} {lag}",
            node.id,
            if pid.is_some() { "running" } else { "stopped" },
            pid.map_or("-".into(), |p| p.to_string()),
            node.kafka_addr(),
            node.controller_addr(),
            role,
        );
    }
    Ok(())
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let nodes = node_dirs(dir)?;
    let mut stopping = Vec::new();
    for node in &nodes {
        match node.running_pid() {
            Some(pid) => {
                let target = Pid::from_raw(pid).expect("running pids are positive");
                kill_process(target, Signal::TERM).ok();
                stopping.push((node, pid));
            }
            None => println!("node {}: not running", node.id),
        }
    }
    let started = Instant::now();
    while stopping.iter().any(|(n, _)| n.running_pid().is_some()) && started.elapsed() < DOWN_WAIT {
        std::thread::sleep(POLL);
    }
    for (node, pid) in stopping {
        if node.running_pid().is_some() {
            let target = Pid::from_raw(pid).expect("running pids are positive");
            kill_process(target, Signal::KILL).ok();
            println!(
                "node {}: killed (pid {pid}) after {} s",
                node.id,
                DOWN_WAIT.as_secs()
            );
        } else {
            println!("node {}: stopped (pid {pid})", node.id);
        }
        fs::remove_file(node.dir.join(PID_FILE)).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::exit_reason;

    #[test]
    fn the_exit_reason_is_the_panic_not_the_backtrace_footnote() {
        let log = "INFO started\nthread 'main' panicked at a.rs:1:1:\nassertion failed: x\nstack backtrace:\nnote: Some details are omitted";
        assert_eq!(
            exit_reason(log),
            "thread 'main' panicked at a.rs:1:1:\nassertion failed: x"
        );
        assert_eq!(
            exit_reason("INFO a\nERROR disk full\nINFO b"),
            "ERROR disk full"
        );
        assert_eq!(exit_reason("INFO a\nINFO b"), "INFO b");
        assert_eq!(exit_reason(""), "");
    }
}
