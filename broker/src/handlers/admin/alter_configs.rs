//! AlterConfigs (the legacy, replace-everything form): a topic's overrides become exactly
//! the configs given. Broker settings are static: they come from server.properties.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::describe_configs::RESOURCE_TOPIC;
use crate::{ApiError, Broker};

pub async fn handle(
    broker: &Broker,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let result = if resource.resource_type == RESOURCE_TOPIC {
            let mut configs = BTreeMap::new();
            for c in &resource.configs {
                if let Some(value) = &c.value {
                    configs.insert(c.name.to_string(), value.to_string());
                }
            }
            broker
                .alter_topic_configs(
                    &resource.resource_name,
                    request.validate_only,
                    move |current| {
                        *current = configs.clone();
                        Ok(())
                    },
                )
                .await
        } else {
            Err(static_broker_configs())
        };
        let mut response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        if let Err(e) = result {
            response = response
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message)));
        }
        responses.push(response);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub fn static_broker_configs() -> ApiError {
    ApiError::new(
        ResponseError::InvalidRequest,
        "broker settings are static in Runnel: change them in server.properties and restart the broker",
    )
}
