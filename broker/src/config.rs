//! Broker and topic configuration with Kafka's names, defaults and precedence.
//!
//! A topic's effective value of a setting is its own override if it has one, else the
//! broker's setting of the matching `log.*` key from `server.properties`, else Kafka's
//! default. DescribeConfigs reports which of the three a value came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use runnel_protocol::batch::Compression;
use runnel_protocol::records::level;
use runnel_storage::log::{CleanupPolicy, LogConfig};

use super::group::membership::GroupConfig;

/// What a broker reads from `server.properties` and its flags.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// The address of the `listeners` entry to bind.
    pub listen: SocketAddr,
    /// `advertised.listeners`' host and port, when it differs from the bound address.
    pub advertised: Option<(String, u16)>,
    /// `log.dirs` (or `log.dir`).
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`: partitions of a topic created without a count.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: pause between compaction passes.
    pub log_cleaner_backoff_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, one group
    /// coordinator each.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`, in milliseconds: how long an empty group's committed
    /// offsets are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`, `group.max.size`,
    /// `group.initial.rebalance.delay.ms`: the classic protocol's settings.
    pub group: GroupConfig,
    /// `group.consumer.session.timeout.ms`: KIP-848 members that stop heartbeating expire.
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub group_consumer_max_size: usize,
    /// `runnel.fault.actor.crash.probability` (Runnel's own, for fault injection; 0 off):
    /// the chance that a partition actor panics in the middle of an append, to see that
    /// the supervisor's restart and recovery lose no acknowledged record.
    pub fault_actor_crash_probability: f64,
    /// The `listeners` entry named by `controller.listener.names` (default `CONTROLLER`):
    /// where the node transport (quorum and controller traffic) listens. A single node
    /// without one listens on an ephemeral port of the client listener's address.
    pub controller_listen: Option<SocketAddr>,
    /// `controller.quorum.voters` (`id@host:port,...`); empty means this node alone.
    pub controller_quorum_voters: BTreeMap<i32, (String, u16)>,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.rack`, for rack-aware placement.
    pub broker_rack: Option<String>,
    /// Every property as written, for DescribeConfigs and the topic defaults.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("{key}={value} is invalid: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses `server.properties` text in Java's properties format (`key=value`, `key: value`
/// and `key value`, `#` and `!` comments, `\` line continuations and escapes), read as
/// UTF-8. The last value of a repeated key wins, as in Java.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut properties = BTreeMap::new();
    java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8)
        .read_into(|key, value| {
            properties.insert(key, value);
        })
        .map_err(|e| ConfigError::Syntax {
            line: e.line_number().unwrap_or(0),
            reason: e.to_string(),
        })?;
    Ok(properties)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::from_properties(BTreeMap::new()).expect("the defaults are valid")
    }
}

impl BrokerConfig {
    /// Builds a configuration from properties; unknown keys are kept and ignored.
    pub fn from_properties(properties: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |key: &str| properties.get(key).map(String::as_str);
        let node_id = parse_num(get("node.id").unwrap_or("1"), "node.id")?;
        check_roles(get("process.roles").unwrap_or("broker,controller"))?;
        if let Some(servers) = get("controller.quorum.bootstrap.servers") {
            if get("controller.quorum.voters").is_none() {
                return Err(invalid(
                    "controller.quorum.bootstrap.servers",
                    servers,
                    "Runnel's quorum is static: list the voters with controller.quorum.voters=ID@HOST:PORT,... instead",
                ));
            }
        }
        let controller_names: Vec<&str> = get("controller.listener.names")
            .unwrap_or("CONTROLLER")
            .split(',')
            .map(str::trim)
            .collect();
        let (listen, controller_listen) = match get("listeners") {
            Some(listeners) => parse_listeners(listeners, &controller_names)?,
            None => (SocketAddr::from(([127, 0, 0, 1], 9092)), None),
        };
        let controller_quorum_voters = match get("controller.quorum.voters") {
            Some(text) => parse_voters(text)?,
            None => BTreeMap::new(),
        };
        if !controller_quorum_voters.is_empty() {
            if !controller_quorum_voters.contains_key(&node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    get("controller.quorum.voters").unwrap_or(""),
                    format!("node.id={node_id} is not among the voters; Runnel runs every node as broker and controller for now, so list it"),
                ));
            }
            if controller_listen.is_none() {
                return Err(invalid(
                    "listeners",
                    get("listeners").unwrap_or(""),
                    format!("a voter needs a {} listener: add {}://HOST:PORT, the address controller.quorum.voters gives node {node_id}", controller_names[0], controller_names[0]),
                ));
            }
        }
        let advertised = match get("advertised.listeners") {
            Some(text) => {
                let (host, port) = split_listener(text, "advertised.listeners")?;
                Some((host.to_string(), port))
            }
            None => None,
        };
        let log_dirs: Vec<PathBuf> = get("log.dirs")
            .or(get("log.dir"))
            .unwrap_or("./runnel-data")
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(invalid("log.dirs", "", "name at least one directory"));
        }
        let num_partitions: i32 =
            parse_num(get("num.partitions").unwrap_or("1"), "num.partitions")?;
        if num_partitions < 1 {
            return Err(invalid(
                "num.partitions",
                &num_partitions.to_string(),
                "must be at least 1",
            ));
        }
        let config = BrokerConfig {
            node_id,
            listen,
            controller_listen,
            controller_quorum_voters,
            broker_session_timeout_ms: parse_num(
                get("broker.session.timeout.ms").unwrap_or("9000"),
                "broker.session.timeout.ms",
            )?,
            broker_heartbeat_interval_ms: parse_num(
                get("broker.heartbeat.interval.ms").unwrap_or("2000"),
                "broker.heartbeat.interval.ms",
            )?,
            broker_rack: get("broker.rack").map(str::to_string),
            advertised,
            log_dirs,
            num_partitions,
            default_replication_factor: parse_num(
                get("default.replication.factor").unwrap_or("1"),
                "default.replication.factor",
            )?,
            auto_create_topics_enable: parse_bool(
                get("auto.create.topics.enable").unwrap_or("true"),
                "auto.create.topics.enable",
            )?,
            socket_request_max_bytes: parse_num(
                get("socket.request.max.bytes").unwrap_or("104857600"),
                "socket.request.max.bytes",
            )?,
            connections_max_idle_ms: parse_num(
                get("connections.max.idle.ms").unwrap_or("600000"),
                "connections.max.idle.ms",
            )?,
            log_retention_check_interval_ms: parse_num(
                get("log.retention.check.interval.ms").unwrap_or("300000"),
                "log.retention.check.interval.ms",
            )?,
            fault_actor_crash_probability: parse_probability(
                get(FAULT_ACTOR_CRASH_PROBABILITY).unwrap_or("0"),
                FAULT_ACTOR_CRASH_PROBABILITY,
            )?,
            log_cleaner_backoff_ms: parse_num(
                get("log.cleaner.backoff.ms").unwrap_or("15000"),
                "log.cleaner.backoff.ms",
            )?,
            offsets_topic_num_partitions: parse_num(
                get("offsets.topic.num.partitions").unwrap_or("50"),
                "offsets.topic.num.partitions",
            )?,
            offsets_retention_ms: parse_num::<i64>(
                get("offsets.retention.minutes").unwrap_or("10080"),
                "offsets.retention.minutes",
            )?
            .saturating_mul(60_000),
            offsets_retention_check_interval_ms: parse_num(
                get("offsets.retention.check.interval.ms").unwrap_or("600000"),
                "offsets.retention.check.interval.ms",
            )?,
            group: GroupConfig {
                min_session_timeout_ms: parse_num(
                    get("group.min.session.timeout.ms").unwrap_or("6000"),
                    "group.min.session.timeout.ms",
                )?,
                max_session_timeout_ms: parse_num(
                    get("group.max.session.timeout.ms").unwrap_or("1800000"),
                    "group.max.session.timeout.ms",
                )?,
                max_size: parse_num(
                    get("group.max.size").unwrap_or("2147483647"),
                    "group.max.size",
                )?,
                initial_rebalance_delay_ms: parse_num(
                    get("group.initial.rebalance.delay.ms").unwrap_or("3000"),
                    "group.initial.rebalance.delay.ms",
                )?,
                ..GroupConfig::default()
            },
            group_consumer_session_timeout_ms: parse_num(
                get("group.consumer.session.timeout.ms").unwrap_or("45000"),
                "group.consumer.session.timeout.ms",
            )?,
            group_consumer_heartbeat_interval_ms: parse_num(
                get("group.consumer.heartbeat.interval.ms").unwrap_or("5000"),
                "group.consumer.heartbeat.interval.ms",
            )?,
            group_consumer_max_size: parse_num(
                get("group.consumer.max.size").unwrap_or("2147483647"),
                "group.consumer.max.size",
            )?,
            properties,
        };
        if !(1..=10_000).contains(&config.offsets_topic_num_partitions) {
            return Err(invalid(
                "offsets.topic.num.partitions",
                &config.offsets_topic_num_partitions.to_string(),
                "must be from 1 to 10000",
            ));
        }
        if config.group.min_session_timeout_ms > config.group.max_session_timeout_ms
            || config.group.initial_rebalance_delay_ms < 0
        {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &config.group.min_session_timeout_ms.to_string(),
                "must be at most group.max.session.timeout.ms, with a non-negative group.initial.rebalance.delay.ms",
            ));
        }
        if config.offsets_retention_ms <= 0
            || config.offsets_retention_check_interval_ms <= 0
            || config.group_consumer_session_timeout_ms <= 0
            || config.group_consumer_heartbeat_interval_ms <= 0
            || config.group_consumer_heartbeat_interval_ms
                >= config.group_consumer_session_timeout_ms
        {
            return Err(invalid(
                "offsets.retention.minutes",
                &(config.offsets_retention_ms / 60_000).to_string(),
                "offsets and group timeouts must be positive, and group.consumer.heartbeat.interval.ms below group.consumer.session.timeout.ms",
            ));
        }
        if config.broker_heartbeat_interval_ms == 0
            || config.broker_heartbeat_interval_ms >= config.broker_session_timeout_ms
        {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                &config.broker_heartbeat_interval_ms.to_string(),
                "must be positive and below broker.session.timeout.ms",
            ));
        }
        // Every topic default must itself be valid, or no topic could be created.
        config.topic_config(&BTreeMap::new())?;
        Ok(config)
    }

    /// True when this node is the quorum's only voter (the one-command default).
    pub fn single_voter(&self) -> bool {
        self.controller_quorum_voters.len() <= 1
    }

    /// The voters by node id with their controller addresses; a single node's own address
    /// is its controller listener's.
    pub fn quorum_voters(&self) -> BTreeMap<i32, (String, u16)> {
        let mut voters = self.controller_quorum_voters.clone();
        if voters.is_empty() {
            let own = self
                .controller_listen
                .unwrap_or(SocketAddr::new(self.listen.ip(), 0));
            voters.insert(self.node_id, (own.ip().to_string(), own.port()));
        }
        voters
    }

    /// The address clients are told to connect to.
    pub fn advertised_host_port(&self, bound: SocketAddr) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()))
    }

    /// The broker-level value of a topic setting and where it came from.
    pub fn topic_default(&self, def: &TopicConfigDef) -> (String, ConfigSource) {
        for key in def.broker_keys {
            if let Some(value) = self.properties.get(*key) {
                // log.retention.hours and friends scale to the topic setting's milliseconds.
                let scale = if key.ends_with(".hours") {
                    3_600_000
                } else if key.ends_with(".minutes") {
                    60_000
                } else {
                    1
                };
                let value = match value.parse::<i64>() {
                    Ok(v) if scale > 1 && v >= 0 => v.saturating_mul(scale).to_string(),
                    _ => value.clone(),
                };
                return (value, ConfigSource::StaticBroker);
            }
        }
        (def.default.to_string(), ConfigSource::Default)
    }

    /// A topic's effective settings given its overrides, validated.
    pub fn topic_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        let mut values = BTreeMap::new();
        for def in TOPIC_CONFIGS {
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                None => self.topic_default(def),
            };
            (def.validate)(&value).map_err(|reason| invalid(def.name, &value, reason))?;
            values.insert(def.name, (value, source));
        }
        for key in overrides.keys() {
            if !TOPIC_CONFIGS.iter().any(|d| d.name == key) {
                return Err(invalid(key, &overrides[key], "unknown topic config"));
            }
        }
        Ok(TopicConfig { values })
    }
}

fn split_listener<'a>(text: &'a str, key: &str) -> Result<(&'a str, u16), ConfigError> {
    // "PLAINTEXT://host:port" or "host:port"; the first listener is the one we serve.
    let first = text.split(',').next().unwrap_or("").trim();
    let address = first.split_once("://").map_or(first, |(_, rest)| rest);
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, text, "expected PLAINTEXT://HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| invalid(key, text, "the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((if host.is_empty() { "0.0.0.0" } else { host }, port))
}

/// `process.roles`: Runnel's nodes are broker and controller at once (KRaft's combined
/// mode); the separate roles are not built yet, and saying so beats misbehaving.
fn check_roles(text: &str) -> Result<(), ConfigError> {
    let mut roles: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.iter().any(|r| *r != "broker" && *r != "controller") {
        return Err(invalid(
            "process.roles",
            text,
            "the roles are broker and controller",
        ));
    }
    if roles != ["broker", "controller"] {
        return Err(invalid(
            "process.roles",
            text,
            "Runnel runs every node as broker and controller for now (Kafka's combined mode): set process.roles=broker,controller",
        ));
    }
    Ok(())
}

/// `listeners`: the client listener (the first not named a controller listener) and the
/// controller listener, if there is one.
fn parse_listeners(
    text: &str,
    controller_names: &[&str],
) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let mut client = None;
    let mut controller = None;
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let name = entry
            .split_once("://")
            .map_or("PLAINTEXT", |(name, _)| name);
        let addr = parse_listener(entry, "listeners")?;
        if controller_names.contains(&name) {
            controller.get_or_insert(addr);
        } else {
            client.get_or_insert(addr);
        }
    }
    let client = client.ok_or_else(|| {
        invalid(
            "listeners",
            text,
            "name a listener for clients, such as PLAINTEXT://:9092",
        )
    })?;
    Ok((client, controller))
}

/// `controller.quorum.voters`: `1@host:9093,2@host:9094,...`.
fn parse_voters(text: &str) -> Result<BTreeMap<i32, (String, u16)>, ConfigError> {
    let key = "controller.quorum.voters";
    let mut voters = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| invalid(key, text, "expected ID@HOST:PORT,..."))?;
        let id: i32 = parse_num(id, key)?;
        let (host, port) = split_listener(address, key)?;
        if port == 0 || voters.insert(id, (host.to_string(), port)).is_some() {
            return Err(invalid(key, text, "each voter once, each with a port"));
        }
    }
    Ok(voters)
}

fn parse_listener(text: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_listener(text, key)?;
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let ip = host
        .parse()
        .map_err(|_| invalid(key, text, "the host must be an IP address or localhost"))?;
    Ok(SocketAddr::new(ip, port))
}

fn parse_num<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not a number in range"))
}

/// Runnel's fault-injection knob (see [`BrokerConfig::fault_actor_crash_probability`]).
pub const FAULT_ACTOR_CRASH_PROBABILITY: &str = "runnel.fault.actor.crash.probability";

fn parse_probability(value: &str, key: &str) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(invalid(key, value, "expected a probability from 0 to 1")),
    }
}

fn parse_bool(value: &str, key: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// Where a config value came from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// One topic setting: its name, the broker keys that set its default (first wins), and
/// its checks.
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_keys: &'static [&'static str],
    pub default: &'static str,
    pub(crate) validate: fn(&str) -> Result<(), String>,
    /// Kafka's ConfigType code for DescribeConfigs v3+.
    pub config_type: i8,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("expected a whole number of at least {min}")),
    }
}

/// `compression.type`: `None` for `producer` (batches kept as sent), else the codec the
/// broker stores batches in.
fn parse_compression_type(value: &str) -> Option<Option<Compression>> {
    Some(Some(match value {
        "producer" => return Some(None),
        "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    }))
}

fn level_check(codec: Compression, value: &str) -> Result<(), String> {
    match value.parse::<i32>() {
        Ok(n) if level::is_valid(codec, n) => Ok(()),
        _ => Err(match codec {
            Compression::Gzip => format!(
                "expected -1 (zlib's default) or a level from {} to {}",
                level::GZIP.start(),
                level::GZIP.end()
            ),
            Compression::Lz4 => {
                format!(
                    "expected a level from {} to {}",
                    level::LZ4.start(),
                    level::LZ4.end()
                )
            }
            _ => format!(
                "expected a level from {} to {}",
                level::ZSTD.start(),
                level::ZSTD.end()
            ),
        }),
    }
}

const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// The topic settings Runnel understands, alphabetical as Kafka lists them.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_keys: &["log.cleanup.policy"],
        default: "delete",
        validate: |v| {
            CleanupPolicy::parse(v)
                .map(|_| ())
                .ok_or_else(|| "expected delete, compact or compact,delete".into())
        },
        config_type: TYPE_LIST,
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        broker_keys: &["compression.gzip.level"],
        default: "-1",
        validate: |v| level_check(Compression::Gzip, v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        broker_keys: &["compression.lz4.level"],
        default: "9",
        validate: |v| level_check(Compression::Lz4, v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "compression.type",
        broker_keys: &["compression.type"],
        default: "producer",
        validate: |v| {
            parse_compression_type(v)
                .map(|_| ())
                .ok_or_else(|| "expected uncompressed, zstd, lz4, snappy, gzip or producer".into())
        },
        config_type: TYPE_STRING,
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        broker_keys: &["compression.zstd.level"],
        default: "3",
        validate: |v| level_check(Compression::Zstd, v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_keys: &["log.cleaner.delete.retention.ms"],
        default: "86400000",
        validate: |v| long_at_least(0)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_keys: &["log.flush.interval.messages"],
        default: "9223372036854775807",
        validate: |v| long_at_least(1)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_keys: &["log.flush.interval.ms"],
        default: "9223372036854775807",
        validate: |v| long_at_least(0)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_keys: &["log.index.interval.bytes"],
        default: "4096",
        validate: |v| long_at_least(1)(v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_keys: &["message.max.bytes"],
        default: "1048588",
        validate: |v| long_at_least(0)(v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_keys: &["log.message.timestamp.type"],
        default: "CreateTime",
        validate: |v| match v {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err("expected CreateTime or LogAppendTime".into()),
        },
        config_type: TYPE_STRING,
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_keys: &["min.insync.replicas"],
        default: "1",
        validate: |v| long_at_least(1)(v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_keys: &["log.retention.bytes"],
        default: "-1",
        validate: |v| long_at_least(-1)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_keys: &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        default: "604800000",
        validate: |v| long_at_least(-1)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_keys: &["log.segment.bytes"],
        default: "1073741824",
        validate: |v| long_at_least(14)(v),
        config_type: TYPE_INT,
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_keys: &["log.roll.ms", "log.roll.hours"],
        default: "604800000",
        validate: |v| long_at_least(1)(v),
        config_type: TYPE_LONG,
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_keys: &["unclean.leader.election.enable"],
        default: "false",
        validate: |v| match v {
            "true" | "false" => Ok(()),
            _ => Err("expected true or false".into()),
        },
        config_type: TYPE_BOOLEAN,
    },
];

/// A topic's effective settings, each with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    values: BTreeMap<&'static str, (String, ConfigSource)>,
}

impl TopicConfig {
    pub fn get(&self, name: &str) -> &str {
        &self
            .values
            .get(name)
            .expect("every topic config has a value")
            .0
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str, ConfigSource)> {
        self.values.iter().map(|(k, (v, s))| (*k, v.as_str(), *s))
    }

    fn long(&self, name: &str) -> i64 {
        self.get(name).parse().expect("validated as a number")
    }

    pub fn log_append_time(&self) -> bool {
        self.get("message.timestamp.type") == "LogAppendTime"
    }

    /// The codec and level the broker stores this topic's batches in, or `None` when
    /// `compression.type=producer` keeps them as sent.
    pub fn compression(&self) -> Option<(Compression, i32)> {
        let codec = parse_compression_type(self.get("compression.type"))
            .expect("validated compression.type")?;
        let level = match codec {
            Compression::Gzip => self.long("compression.gzip.level"),
            Compression::Lz4 => self.long("compression.lz4.level"),
            Compression::Zstd => self.long("compression.zstd.level"),
            Compression::None | Compression::Snappy => 0,
        };
        Some((codec, level as i32))
    }

    pub fn min_insync_replicas(&self) -> i64 {
        self.long("min.insync.replicas")
    }

    /// The storage layer's view of these settings.
    pub fn log_config(&self) -> LogConfig {
        let optional = |v: i64| (v >= 0).then_some(v);
        let never = |v: i64| (v != i64::MAX).then_some(v);
        LogConfig {
            segment_bytes: self.long("segment.bytes") as u64,
            segment_ms: self.long("segment.ms"),
            index_interval_bytes: self.long("index.interval.bytes") as u64,
            retention_ms: optional(self.long("retention.ms")),
            retention_bytes: optional(self.long("retention.bytes")).map(|v| v as u64),
            flush_messages: never(self.long("flush.messages")).map(|v| v as u64),
            flush_ms: never(self.long("flush.ms")),
            max_message_bytes: self.long("max.message.bytes") as usize,
            cleanup_policy: CleanupPolicy::parse(self.get("cleanup.policy"))
                .expect("validated cleanup.policy"),
            delete_retention_ms: self.long("delete.retention.ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_precedence() {
        let props = parse_properties(
            "# comment\nlisteners=PLAINTEXT://127.0.0.1:19092\nlog.dirs = /a,/b\nlog.retention.hours: 2\nnum.partitions=3\n",
        )
        .expect("parses");
        let config = BrokerConfig::from_properties(props).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:19092".parse().expect("addr"));
        assert_eq!(
            config.log_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(config.num_partitions, 3);
        let topic = config.topic_config(&BTreeMap::new()).expect("valid");
        assert_eq!(topic.get("retention.ms"), "7200000");
        assert_eq!(topic.log_config().retention_ms, Some(7_200_000));
        assert_eq!(topic.log_config().flush_messages, None);
        let overrides = BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]);
        let topic = config.topic_config(&overrides).expect("valid");
        assert_eq!(topic.log_config().retention_ms, None);
        assert!(topic
            .entries()
            .any(|(k, _, s)| k == "retention.ms" && s == ConfigSource::DynamicTopic));
        assert!(topic
            .entries()
            .any(|(k, _, s)| k == "segment.bytes" && s == ConfigSource::Default));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = BTreeMap::from([("segment.bytes".to_string(), "ten".to_string())]);
        let err = BrokerConfig::default()
            .topic_config(&bad)
            .expect_err("invalid");
        assert!(err.to_string().contains("segment.bytes=ten"), "{err}");
        let unknown = BTreeMap::from([("no.such".to_string(), "1".to_string())]);
        assert!(BrokerConfig::default().topic_config(&unknown).is_err());
        let props = BTreeMap::from([("listeners".to_string(), "PLAINTEXT://x:y".to_string())]);
        assert!(BrokerConfig::from_properties(props).is_err());
    }

    #[test]
    fn properties_follow_javas_format() {
        let props = parse_properties(
            "just words\nlog.dirs = /a,\\\n    /b\nkey\\ with\\ spaces:tab\\tvalue\nnum.partitions=3\nnum.partitions=4\n",
        )
        .expect("parses");
        assert_eq!(props["just"], "words", "a space separates too");
        assert_eq!(
            props["log.dirs"], "/a,/b",
            "continued lines join without their indent"
        );
        assert_eq!(props["key with spaces"], "tab\tvalue");
        assert_eq!(props["num.partitions"], "4", "the last value wins");
        let err = parse_properties("ok=1\nbad=\\uZZZZ\n").expect_err("a bad escape");
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    }
}
