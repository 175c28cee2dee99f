//! The one table of what this broker serves: for each API, the versions it decodes and
//! answers. ApiVersions reports it, and the connection refuses anything outside it.

use runnel_protocol::kafka::{ApiKey, VersionRange};

/// The versions of each API the broker serves, or `None` for an API it does not serve.
///
/// The low ends are the crate's (Kafka 4's, which dropped the oldest versions, KIP-896);
/// the high ends stop where a version needs something we do not implement yet, such as
/// topic ids in Produce v13.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    let ours = match api_key {
        ApiKey::Produce => (0, 12),
        ApiKey::Fetch => (0, 16),
        ApiKey::ListOffsets => (0, 9),
        ApiKey::Metadata => (0, 12),
        ApiKey::OffsetForLeaderEpoch => (0, 4),
        ApiKey::ApiVersions => (0, 4),
        ApiKey::CreateTopics => (0, 7),
        ApiKey::DeleteTopics => (0, 6),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::DeleteRecords => (0, 2),
        ApiKey::InitProducerId => (0, 5),
        ApiKey::DescribeConfigs => (0, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DescribeCluster => (0, 2),
        ApiKey::DescribeQuorum => (0, 2),
        ApiKey::DescribeTopicPartitions => (0, 0),
        ApiKey::DescribeLogDirs => (0, 4),
        ApiKey::DescribeClientQuotas => (0, 1),
        ApiKey::DescribeProducers => (0, 0),
        ApiKey::DescribeUserScramCredentials => (0, 0),
        ApiKey::FindCoordinator => (0, 6),
        ApiKey::JoinGroup => (0, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 5),
        // v10 names topics by id.
        ApiKey::OffsetCommit => (0, 9),
        ApiKey::OffsetFetch => (0, 9),
        ApiKey::OffsetDelete => (0, 0),
        ApiKey::DescribeGroups => (0, 6),
        ApiKey::ListGroups => (0, 5),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::ConsumerGroupHeartbeat => (0, 1),
        ApiKey::ConsumerGroupDescribe => (0, 1),
        _ => return None,
    };
    let range = api_key.valid_versions().intersect(&VersionRange {
        min: ours.0,
        max: ours.1,
    });
    (!range.is_empty()).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_is_within_what_the_codec_knows() {
        for key in ApiKey::iter() {
            if let Some(range) = supported_versions(key) {
                let known = key.valid_versions();
                assert!(range.min >= known.min && range.max <= known.max, "{key:?}");
            }
        }
        assert!(
            supported_versions(ApiKey::EndTxn).is_none(),
            "transactions come later"
        );
    }
}
