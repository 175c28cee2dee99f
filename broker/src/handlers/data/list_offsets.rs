//! ListOffsets: earliest, latest, max timestamp, or the first offset at a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::partition::Partition;
use crate::{ApiError, Broker};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let result = match broker.serving(&topic.name.0, p.partition_index) {
                Err(e) => Err(e),
                Ok(_) if p.current_leader_epoch > 0 => Err(ApiError::new(
                    ResponseError::UnknownLeaderEpoch,
                    "epoch from the future",
                )),
                Ok(partition) => lookup(&partition, p.timestamp).await,
            };
            partitions.push(match result {
                Ok((offset, timestamp)) => response
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // Leader epochs are in the response from v4.
                    .with_leader_epoch(if offset >= 0 && version >= 4 { 0 } else { -1 }),
                Err(e) => response
                    .with_error_code(e.code.code())
                    .with_offset(-1)
                    .with_timestamp(-1)
                    .with_leader_epoch(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp) answering `timestamp`; (-1, -1) when no record matches.
async fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), ApiError> {
    match timestamp {
        LATEST => Ok((partition.high_watermark(), -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((partition.log_start_offset(), -1)),
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let state = partition.view().await;
            let Some((max, base_offset)) = state.max_timestamp else {
                return Ok((-1, -1));
            };
            if base_offset < state.log.log_start_offset() {
                return Ok((-1, -1));
            }
            let bytes = state.log.read(base_offset, 1).await?;
            let (batch, _) = runnel_protocol::batch::RecordBatch::parse(bytes)
                .map_err(|e| ApiError::new(ResponseError::CorruptMessage, e.to_string()))?;
            if batch.is_log_append_time() {
                return Ok((batch.base_offset(), max));
            }
            let records = batch
                .records()
                .map_err(|e| ApiError::new(ResponseError::CorruptMessage, e.to_string()))?;
            let found = records
                .iter()
                .find(|r| batch.base_timestamp() + r.timestamp_delta == max)
                .map_or(batch.last_offset(), |r| {
                    batch.base_offset() + i64::from(r.offset_delta)
                });
            Ok((found, max))
        }
        t if t < 0 => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("unknown special timestamp {t}"),
        )),
        t => {
            let state = partition.view().await;
            Ok(state.log.offset_for_timestamp(t).await?.unwrap_or((-1, -1)))
        }
    }
}
