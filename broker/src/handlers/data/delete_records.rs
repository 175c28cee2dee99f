//! DeleteRecords: move a partition's log start offset forward (offset -1: the high
//! watermark). Durable when answered.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::{ApiError, Broker};

pub async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = delete(broker, &topic.name.0, p.partition_index, p.offset).await;
            let response =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(low_watermark) => response.with_low_watermark(low_watermark),
                Err(e) => response
                    .with_error_code(e.code.code())
                    .with_low_watermark(-1),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete(broker: &Broker, topic: &str, index: i32, offset: i64) -> Result<i64, ApiError> {
    let partition = broker.serving(topic, index)?;
    Ok(partition.delete_records(offset).await?)
}
