//! DescribeCluster: the cluster id, the controller and the brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized_operations;
use crate::Broker;

pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.image().cluster_id.clone()))
        .with_controller_id(node)
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            request.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(i32::from(port))])
}
