//! `runnel connect`: a Kafka Connect worker (`standalone`, as Kafka's
//! `connect-standalone.sh`, or `distributed`, as its `connect-distributed.sh`) and, for
//! people, commands over any worker's REST API (`list`, `status`, `create`, `pause`,
//! `resume`, `restart`, `delete`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use runnel_actors::{Node, ShutdownReason};
use runnel_broker::config::parse_properties;
use runnel_connect::api::Plugins;
use runnel_connect::distributed::config::DistributedConfig;
use runnel_connect::entities::{ConnectorInfo, ConnectorStateInfo, ErrorMessage};
use runnel_connect::http::{self, percent_encode, url_authority, HttpRequest};
use runnel_connect::worker::{Herder, WorkerConfig};
use runnel_storage::disk::RealDisk;
use serde_json::Value as Json;

use crate::server::StopSignals;

/// Run a Kafka Connect worker, or manage connectors over a worker's REST API.
#[derive(clap::Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    command: ConnectCommand,
}

#[derive(clap::Subcommand)]
enum ConnectCommand {
    /// Run a standalone worker, as Kafka's connect-standalone.sh: a worker.properties
    /// (bootstrap.servers, key.converter, value.converter, offset.storage.file.filename,
    /// offset.flush.interval.ms, listeners) and one .properties file per connector.
    Standalone {
        #[arg(value_name = "WORKER.PROPERTIES")]
        worker: PathBuf,
        #[arg(value_name = "CONNECTOR.PROPERTIES")]
        connectors: Vec<PathBuf>,
    },
    /// Run a distributed worker, as Kafka's connect-distributed.sh: workers sharing a
    /// group.id share the connectors and tasks; configs, offsets and statuses live in
    /// config.storage.topic, offset.storage.topic and status.storage.topic.
    Distributed {
        #[arg(value_name = "WORKER.PROPERTIES")]
        worker: PathBuf,
    },
    /// List the connectors with their state.
    List(RestArgs),
    /// Show a connector's state and its tasks' (with the trace of a failed one).
    Status {
        name: String,
        #[command(flatten)]
        rest: RestArgs,
    },
    /// Create a connector from a .properties file (its `name` names it) or a JSON file
    /// in the REST API's form ({"name": ..., "config": {...}}).
    Create {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        rest: RestArgs,
    },
    /// Pause a connector and its tasks.
    Pause {
        name: String,
        #[command(flatten)]
        rest: RestArgs,
    },
    /// Resume a paused or stopped connector.
    Resume {
        name: String,
        #[command(flatten)]
        rest: RestArgs,
    },
    /// Restart a connector (with --include-tasks its tasks too), or one task (--task).
    Restart {
        name: String,
        /// Restart the connector's tasks too.
        #[arg(long)]
        include_tasks: bool,
        /// Restart only what has FAILED.
        #[arg(long)]
        only_failed: bool,
        /// Restart only this task.
        #[arg(long, value_name = "ID", conflicts_with_all = ["include_tasks", "only_failed"])]
        task: Option<u32>,
        #[command(flatten)]
        rest: RestArgs,
    },
    /// Delete a connector (its offsets stay).
    Delete {
        name: String,
        #[command(flatten)]
        rest: RestArgs,
    },
}

#[derive(clap::Args, Clone, Debug)]
struct RestArgs {
    /// The worker's REST API.
    #[arg(long, value_name = "URL", default_value = "http://localhost:8083")]
    url: String,
    /// How long to wait for the worker's answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 90_000)]
    request_timeout_ms: u64,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    match args.command {
        ConnectCommand::Standalone { worker, connectors } => standalone(&worker, &connectors).await,
        ConnectCommand::Distributed { worker } => distributed(&worker).await,
        ConnectCommand::List(rest) => list(&rest).await,
        ConnectCommand::Status { name, rest } => status(&rest, &name).await,
        ConnectCommand::Create { file, rest } => create(&rest, &file).await,
        ConnectCommand::Pause { name, rest } => {
            call(
                &rest,
                "PUT",
                &format!("/connectors/{}/pause", percent_encode(&name)),
                None,
            )
            .await?;
            println!("Paused connector {name}");
            Ok(())
        }
        ConnectCommand::Resume { name, rest } => {
            call(
                &rest,
                "PUT",
                &format!("/connectors/{}/resume", percent_encode(&name)),
                None,
            )
            .await?;
            println!("Resumed connector {name}");
            Ok(())
        }
        ConnectCommand::Restart {
            name,
            include_tasks,
            only_failed,
            task,
            rest,
        } => {
            let encoded = percent_encode(&name);
            match task {
                Some(t) => {
                    call(
                        &rest,
                        "POST",
                        &format!("/connectors/{encoded}/tasks/{t}/restart"),
                        None,
                    )
                    .await?;
                    println!("Restarted task {t} of connector {name}");
                }
                None => {
                    let target = format!("/connectors/{encoded}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}");
                    call(&rest, "POST", &target, None).await?;
                    println!(
                        "Restarting connector {name}{}",
                        if include_tasks { " and its tasks" } else { "" }
                    );
                }
            }
            Ok(())
        }
        ConnectCommand::Delete { name, rest } => {
            call(
                &rest,
                "DELETE",
                &format!("/connectors/{}", percent_encode(&name)),
                None,
            )
            .await?;
            println!("Deleted connector {name}");
            Ok(())
        }
    }
}

fn read_properties(path: &Path) -> anyhow::Result<runnel_connect::config::Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_properties(&text).with_context(|| format!("{} is not a properties file", path.display()))
}

/// Kafka's `listeners` (`http://HOST:PORT`, an empty host meaning every interface) as an
/// address to bind.
fn listen_address(listeners: &str) -> anyhow::Result<String> {
    let mut all = listeners
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let first = all.next().context("listeners is empty; use http://:8083")?;
    if all.next().is_some() {
        eprintln!("runnel connect: serving only the first of listeners ({first})");
    }
    let rest = first
        .strip_prefix("http://")
        .with_context(|| format!("listeners {first}: Runnel's worker serves http:// only"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .with_context(|| format!("listeners {first}: no port"))?;
    let host = if host.is_empty() {
        "0.0.0.0"
    } else {
        host.trim_matches(['[', ']'])
    };
    Ok(format!("{host}:{port}"))
}

async fn standalone(worker: &Path, connectors: &[PathBuf]) -> anyhow::Result<()> {
    let (config, warnings) = WorkerConfig::from_properties(read_properties(worker)?)?;
    for w in warnings {
        eprintln!("runnel connect: warning: {w}");
    }
    let connector_configs = connectors
        .iter()
        .map(|path| {
            let props = read_properties(path)?;
            let name = props.get("name").cloned().with_context(|| {
                format!(
                    "{}: no name= line; every connector needs a name",
                    path.display()
                )
            })?;
            Ok((name, props))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bind = listen_address(&config.listeners)?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (listeners)"))?;
    let local = listener.local_addr()?;
    let node = Node::new("connect");
    let herder = Herder::start(
        &node,
        config,
        Plugins::builtin(),
        Arc::new(RealDisk::new()),
        local.to_string(),
    )
    .await?;
    serve_rest(&node, &herder, listener, local);
    for (name, props) in connector_configs {
        match herder.put_connector_config(&name, props, false, None).await {
            Ok(_) => eprintln!("runnel connect: created connector {name}"),
            Err(e) => {
                herder.stop().await;
                node.shutdown(ShutdownReason::Requested);
                node.stopped().await;
                bail!("cannot create connector {name}: {e}");
            }
        }
    }
    run_until_stopped(node, herder).await
}

fn serve_rest(
    node: &Node,
    herder: &Herder,
    listener: tokio::net::TcpListener,
    local: std::net::SocketAddr,
) {
    let for_http = herder.clone();
    http::serve(
        node,
        listener,
        Arc::new(move |req: HttpRequest| {
            let herder = for_http.clone();
            Box::pin(async move { runnel_connect::rest::handle(&herder, req).await })
        }),
    );
    eprintln!("runnel connect: REST API listening on http://{local}");
}

/// Kafka's connect-distributed.sh: joins the group and serves the REST API until a
/// signal, then stops its tasks (committing their offsets) and leaves the group.
async fn distributed(worker: &Path) -> anyhow::Result<()> {
    let (config, warnings) = DistributedConfig::from_properties(read_properties(worker)?)?;
    for w in warnings {
        eprintln!("runnel connect: warning: {w}");
    }
    let bind = listen_address(&config.worker.listeners)?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (listeners)"))?;
    let local = listener.local_addr()?;
    // Kafka names a worker by its advertised host and port.
    let worker_id = url_authority(&config.advertised_url)?;
    let node = Node::new("connect");
    let herder = Herder::start_distributed(
        &node,
        config,
        Plugins::builtin(),
        Arc::new(RealDisk::new()),
        worker_id,
    )
    .await?;
    serve_rest(&node, &herder, listener, local);
    run_until_stopped(node, herder).await
}

async fn run_until_stopped(node: Node, herder: Herder) -> anyhow::Result<()> {
    let mut stop = StopSignals::register()?;
    let mut node_down = node.shutdown_signal();
    let failed = tokio::select! {
        biased;
        signal = stop.next() => {
            eprintln!("runnel connect: {signal}: stopping the tasks (committing their offsets)");
            None
        }
        reason = node_down.wait_for(Option::is_some) => reason.ok().and_then(|r| r.clone()),
    };
    herder.stop().await;
    node.shutdown(ShutdownReason::Requested);
    node.stopped().await;
    match failed {
        None | Some(ShutdownReason::Requested) => {
            eprintln!("runnel connect: stopped cleanly");
            Ok(())
        }
        Some(reason) => bail!("the worker stopped: {reason}"),
    }
}

/// One REST call; a non-2xx answer becomes an error with the worker's message.
async fn call(
    rest: &RestArgs,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Vec<u8>> {
    let authority = url_authority(&rest.url)?;
    let (status, body) = http::request(&authority, method, target, body, rest.request_timeout_ms)
        .await
        .with_context(|| format!("cannot reach the Connect worker at {}", rest.url))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    match serde_json::from_slice::<ErrorMessage>(&body) {
        Ok(e) => bail!("{} (HTTP {status})", e.message),
        Err(_) => bail!(
            "the worker answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

async fn list(rest: &RestArgs) -> anyhow::Result<()> {
    let body = call(rest, "GET", "/connectors?expand=status", None).await?;
    let all: std::collections::BTreeMap<String, Json> =
        serde_json::from_slice(&body).context("the worker's answer is not a connector map")?;
    if all.is_empty() {
        println!("No connectors.");
        return Ok(());
    }
    println!("{:<32} {:<7} {:<12} TASKS", "NAME", "TYPE", "STATE");
    for (name, expanded) in all {
        let status: Option<ConnectorStateInfo> =
            serde_json::from_value(expanded["status"].clone()).ok();
        match status {
            Some(s) => {
                let tasks: Vec<String> = s
                    .tasks
                    .iter()
                    .map(|t| format!("{}:{}", t.id, t.state))
                    .collect();
                println!(
                    "{:<32} {:<7} {:<12} {}",
                    name,
                    s.connector_type,
                    s.connector.state,
                    tasks.join(" ")
                );
            }
            None => println!("{name:<32} (no status)"),
        }
    }
    Ok(())
}

async fn status(rest: &RestArgs, name: &str) -> anyhow::Result<()> {
    let body = call(
        rest,
        "GET",
        &format!("/connectors/{}/status", percent_encode(name)),
        None,
    )
    .await?;
    let s: ConnectorStateInfo =
        serde_json::from_slice(&body).context("the worker's answer is not a connector status")?;
    println!(
        "Connector {} ({}): {} on {}",
        s.name, s.connector_type, s.connector.state, s.connector.worker_id
    );
    if let Some(trace) = &s.connector.trace {
        println!("  {}", trace.replace('\n', "\n  "));
    }
    for t in &s.tasks {
        println!("Task {}: {} on {}", t.id, t.state, t.worker_id);
        if let Some(trace) = &t.trace {
            println!("  {}", trace.replace('\n', "\n  "));
        }
    }
    Ok(())
}

async fn create(rest: &RestArgs, file: &Path) -> anyhow::Result<()> {
    let is_json = file.extension().is_some_and(|e| e == "json");
    let body = if is_json {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    } else {
        let props = read_properties(file)?;
        let name = props.get("name").cloned().with_context(|| {
            format!(
                "{}: no name= line; every connector needs a name",
                file.display()
            )
        })?;
        serde_json::to_vec(&serde_json::json!({"name": name, "config": props}))?
    };
    let answer = call(rest, "POST", "/connectors", Some(&body)).await?;
    let info: ConnectorInfo =
        serde_json::from_slice(&answer).context("the worker's answer is not a connector")?;
    println!(
        "Created {} connector {} with {} task(s)",
        info.connector_type,
        info.name,
        info.tasks.len()
    );
    Ok(())
}
