//! DescribeCluster: the cluster id, the controller and the brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorized_operations;
use crate::Broker;

/// DescribeCluster v1's endpoint types: brokers, or KRaft controllers.
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_BROKERS {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::MismatchedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "this is a broker endpoint; ask it for brokers (endpoint type 1)",
            )))
            .with_controller_id(BrokerId(-1))
            .with_endpoint_type(ENDPOINT_BROKERS);
    }
    let operations = if request.include_cluster_authorized_operations {
        authorized_operations::CLUSTER
    } else {
        i32::MIN
    };
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.image().cluster_id.clone()))
        .with_controller_id(super::metadata::controller_id(broker))
        .with_cluster_authorized_operations(operations)
        .with_brokers(
            super::metadata::cluster_brokers(broker)
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id)
                        .with_host(b.host)
                        .with_port(b.port)
                        .with_rack(b.rack)
                })
                .collect(),
        )
}
