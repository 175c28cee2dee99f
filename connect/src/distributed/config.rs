//! A distributed worker's settings, by Kafka's names (`DistributedConfig`).

use std::path::PathBuf;

use crate::config::{get_int, Config};
use crate::error::ConnectError;
use crate::settings::WorkerConfig;

use super::log::TopicSpec;
use super::protocol::{COMPATIBLE, SESSIONED};

/// Kafka's default `scheduled.rebalance.max.delay.ms`: five minutes.
pub const DEFAULT_SCHEDULED_REBALANCE_MAX_DELAY_MS: i64 = 300_000;
/// Kafka's default `session.timeout.ms` for workers.
pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 10_000;
/// Kafka's default `heartbeat.interval.ms` for workers.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: i64 = 3_000;
/// Kafka's default `rebalance.timeout.ms` for workers.
pub const DEFAULT_REBALANCE_TIMEOUT_MS: i64 = 60_000;

/// The settings of `runnel connect distributed`.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    pub worker: WorkerConfig,
    /// `group.id`
    pub group_id: String,
    /// `config.storage.topic` (one partition, as Kafka requires)
    pub config_topic: TopicSpec,
    /// `offset.storage.topic`
    pub offset_topic: TopicSpec,
    /// `status.storage.topic`
    pub status_topic: TopicSpec,
    /// `session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `heartbeat.interval.ms`
    pub heartbeat_interval_ms: u64,
    /// `rebalance.timeout.ms`
    pub rebalance_timeout_ms: i32,
    /// `scheduled.rebalance.max.delay.ms`
    pub scheduled_rebalance_max_delay_ms: i32,
    /// `connect.protocol`: the protocols offered, in preference order.
    pub protocols: Vec<&'static str>,
    /// The URL other workers forward requests to (`rest.advertised.*`, else `listeners`).
    pub advertised_url: String,
}

fn required(p: &Config, key: &str) -> Result<String, ConnectError> {
    p.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ConnectError::Config(format!(
                "Missing required configuration \"{key}\" which has no default value."
            ))
        })
}

fn int_in(p: &Config, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ConnectError> {
    let v = get_int(p, key, default)?;
    if v < min || v > max {
        return Err(ConnectError::Config(format!(
            "Invalid value {v} for configuration {key}: must be between {min} and {max}"
        )));
    }
    Ok(v)
}

fn topic(p: &Config, prefix: &str, default_partitions: i64) -> Result<TopicSpec, ConnectError> {
    let name = required(p, &format!("{prefix}.storage.topic"))?;
    let partitions = if prefix == "config" {
        1
    } else {
        int_in(
            p,
            &format!("{prefix}.storage.partitions"),
            default_partitions,
            -1,
            100_000,
        )?
    };
    let replication_factor = int_in(
        p,
        &format!("{prefix}.storage.replication.factor"),
        3,
        -1,
        32_767,
    )?;
    if partitions == 0 || replication_factor == 0 {
        return Err(ConnectError::Config(format!(
            "{prefix}.storage.partitions and {prefix}.storage.replication.factor must be positive or -1 (the broker's default)"
        )));
    }
    Ok(TopicSpec {
        name,
        partitions: partitions as i32,
        replication_factor: replication_factor as i16,
    })
}

/// The URL this worker is reached at, from `rest.advertised.*` or the first listener.
fn advertised_url(p: &Config, listeners: &str) -> String {
    let listener = listeners.split(',').next().unwrap_or_default().trim();
    let rest = listener.strip_prefix("http://").unwrap_or(listener);
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "8083"));
    let host = p
        .get("rest.advertised.host.name")
        .map(String::as_str)
        .unwrap_or(if host.is_empty() || host == "0.0.0.0" {
            "localhost"
        } else {
            host
        });
    let port = p
        .get("rest.advertised.port")
        .map(String::as_str)
        .unwrap_or(port.trim_end_matches('/'));
    format!("http://{host}:{port}/")
}

impl DistributedConfig {
    /// Reads a distributed worker's properties; also returns warnings for people.
    pub fn from_properties(p: Config) -> Result<(DistributedConfig, Vec<String>), ConnectError> {
        let group_id = required(&p, "group.id")?;
        let config_topic = topic(&p, "config", 1)?;
        let offset_topic = topic(&p, "offset", 25)?;
        let status_topic = topic(&p, "status", 5)?;
        let names = [&config_topic.name, &offset_topic.name, &status_topic.name];
        if names[0] == names[1] || names[0] == names[2] || names[1] == names[2] {
            return Err(ConnectError::Config(
                "config.storage.topic, offset.storage.topic and status.storage.topic must be three different topics".into(),
            ));
        }
        let session = int_in(
            &p,
            "session.timeout.ms",
            DEFAULT_SESSION_TIMEOUT_MS,
            1,
            i32::MAX.into(),
        )?;
        let heartbeat = int_in(
            &p,
            "heartbeat.interval.ms",
            DEFAULT_HEARTBEAT_INTERVAL_MS,
            1,
            session,
        )?;
        let rebalance = int_in(
            &p,
            "rebalance.timeout.ms",
            DEFAULT_REBALANCE_TIMEOUT_MS,
            1,
            i32::MAX.into(),
        )?;
        let delay = int_in(
            &p,
            "scheduled.rebalance.max.delay.ms",
            DEFAULT_SCHEDULED_REBALANCE_MAX_DELAY_MS,
            0,
            i32::MAX.into(),
        )?;
        let protocols = match p.get("connect.protocol").map(|s| s.trim().to_ascii_lowercase()) {
            None => vec![SESSIONED, COMPATIBLE],
            Some(s) if s == SESSIONED => vec![SESSIONED, COMPATIBLE],
            Some(s) if s == COMPATIBLE => vec![COMPATIBLE],
            Some(other) => {
                return Err(ConnectError::Config(format!(
                    "connect.protocol={other} is not supported: Runnel's workers speak the incremental cooperative protocols, sessioned (the default) and compatible; Kafka's eager protocol (default) is not offered"
                )))
            }
        };
        let (worker, mut warnings) = WorkerConfig::common(p.clone(), PathBuf::new())?;
        if p.contains_key("offset.storage.file.filename") {
            warnings.push("offset.storage.file.filename is ignored in distributed mode: offsets live in offset.storage.topic".into());
        }
        let advertised_url = advertised_url(&p, &worker.listeners);
        Ok((
            DistributedConfig {
                worker,
                group_id,
                config_topic,
                offset_topic,
                status_topic,
                session_timeout_ms: session as i32,
                heartbeat_interval_ms: heartbeat as u64,
                rebalance_timeout_ms: rebalance as i32,
                scheduled_rebalance_max_delay_ms: delay as i32,
                protocols,
                advertised_url,
            },
            warnings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafkas_settings_with_kafkas_defaults_and_refusals() {
        let base = [
            ("bootstrap.servers", "localhost:9092"),
            ("group.id", "connect-cluster"),
            ("config.storage.topic", "connect-configs"),
            ("offset.storage.topic", "connect-offsets"),
            ("status.storage.topic", "connect-status"),
            ("listeners", "http://0.0.0.0:8084"),
        ];
        let (c, _) = DistributedConfig::from_properties(props(&base)).expect("valid");
        assert_eq!(c.offset_topic.partitions, 25);
        assert_eq!(c.status_topic.partitions, 5);
        assert_eq!(c.config_topic.partitions, 1);
        assert_eq!(c.offset_topic.replication_factor, 3);
        assert_eq!(c.scheduled_rebalance_max_delay_ms, 300_000);
        assert_eq!(c.protocols, vec![SESSIONED, COMPATIBLE]);
        assert_eq!(c.advertised_url, "http://localhost:8084/");
        let mut eager = props(&base);
        eager.insert("connect.protocol".into(), "eager".into());
        assert!(DistributedConfig::from_properties(eager).is_err());
        let mut missing = props(&base);
        missing.remove("group.id");
        let e = DistributedConfig::from_properties(missing).expect_err("group.id is required");
        assert!(e.to_string().contains("group.id"));
        let mut same = props(&base);
        same.insert("status.storage.topic".into(), "connect-offsets".into());
        assert!(DistributedConfig::from_properties(same).is_err());
    }
}
