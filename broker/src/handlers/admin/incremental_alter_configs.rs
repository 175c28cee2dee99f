//! IncrementalAlterConfigs: set, delete, append to or subtract from single topic settings.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::alter_configs::static_broker_configs;
use super::describe_configs::RESOURCE_TOPIC;
use crate::config::TOPIC_CONFIGS;
use crate::{ApiError, Broker};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let result = if resource.resource_type == RESOURCE_TOPIC {
            let image = broker.image();
            let effective = image
                .topics
                .get(resource.resource_name.as_str())
                .map(|t| broker.topic_config(t));
            let ops = resource.configs.clone();
            broker
                .alter_topic_configs(
                    &resource.resource_name,
                    request.validate_only,
                    move |current| {
                        for op in ops.iter().cloned() {
                            let name = op.name.to_string();
                            let value = op.value.map(|v| v.to_string());
                            let list =
                            |current: &std::collections::BTreeMap<String, String>| -> Vec<String> {
                                let text = current.get(&name).cloned().or_else(|| {
                                    effective.as_ref().map(|e| e.get(&name).to_string())
                                });
                                text.map(|t| {
                                    t.split(',')
                                        .filter(|s| !s.is_empty())
                                        .map(str::to_string)
                                        .collect()
                                })
                                .unwrap_or_default()
                            };
                            let is_list = TOPIC_CONFIGS
                                .iter()
                                .any(|d| d.name == name && d.config_type == 7);
                            match (op.config_operation, value) {
                                (SET, Some(value)) => {
                                    current.insert(name, value);
                                }
                                (DELETE, _) => {
                                    current.remove(&name);
                                }
                                (APPEND, Some(value)) if is_list => {
                                    let mut items = list(current);
                                    for v in value.split(',') {
                                        if !items.iter().any(|i| i == v) {
                                            items.push(v.to_string());
                                        }
                                    }
                                    current.insert(name, items.join(","));
                                }
                                (SUBTRACT, Some(value)) if is_list => {
                                    let remove: Vec<&str> = value.split(',').collect();
                                    let items: Vec<String> = list(current)
                                        .into_iter()
                                        .filter(|i| !remove.contains(&i.as_str()))
                                        .collect();
                                    current.insert(name, items.join(","));
                                }
                                (APPEND | SUBTRACT, Some(_)) => {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidConfig,
                                        format!(
                                        "{name} is not a list; APPEND and SUBTRACT apply to lists"
                                    ),
                                    ))
                                }
                                (op, _) => {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidRequest,
                                        format!(
                                            "operation {op} on {name} needs a value, or is unknown"
                                        ),
                                    ))
                                }
                            }
                        }
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
