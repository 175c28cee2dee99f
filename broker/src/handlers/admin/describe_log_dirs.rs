//! DescribeLogDirs: each of `log.dirs` with the partitions it holds and their sizes, as
//! `kafka-log-dirs --describe` shows them, and from v4 the disk's total and usable bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_protocol::kafka::topic_name;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let image = broker.image();
    // None asks for every partition; named partitions this broker lacks are left out, as Kafka does.
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let mut by_dir: BTreeMap<usize, BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        BTreeMap::new();
    for topic in image.topics.values() {
        for index in 0..topic.partitions {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.contains(&(topic.name.clone(), index)))
            {
                continue;
            }
            let Some(partition) = broker.partition(&topic.name, index) else {
                continue;
            };
            let Some(dir) = broker
                .config
                .log_dirs
                .iter()
                .position(|d| partition.dir().starts_with(d))
            else {
                continue;
            };
            let (size_bytes, lag) = {
                let view = partition.view().await;
                let end = view.log.log_end_offset();
                (
                    view.log.size_bytes(),
                    (end - partition.high_watermark()).max(0),
                )
            };
            by_dir
                .entry(dir)
                .or_default()
                .entry(topic.name.clone())
                .or_default()
                .push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(i64::try_from(size_bytes).unwrap_or(i64::MAX))
                        .with_offset_lag(lag),
                );
        }
    }
    let results = broker
        .config
        .log_dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let topics = by_dir
                .remove(&i)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect();
            let (total_bytes, usable_bytes) = disk_space(dir);
            let error = if total_bytes < 0 {
                ResponseError::KafkaStorageError.code()
            } else {
                0
            };
            DescribeLogDirsResult::default()
                .with_error_code(error)
                .with_log_dir(StrBytes::from_string(absolute(dir)))
                .with_topics(topics)
                .with_total_bytes(total_bytes)
                .with_usable_bytes(usable_bytes)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}

/// The file system's size and the bytes still free for the broker, -1 when unreadable.
fn disk_space(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let block = s.f_frsize.max(1);
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(block)).unwrap_or(i64::MAX);
            (bytes(s.f_blocks), bytes(s.f_bavail))
        }
        Err(_) => (-1, -1),
    }
}

fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}
