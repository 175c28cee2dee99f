//! DescribeClientQuotas: the filter is checked as Kafka checks it, and the answer is the
//! empty set, since Runnel has no client quotas yet (so none are ever enforced).

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::ApiError;

const ENTITY_TYPES: &[&str] = &["user", "client-id", "ip"];
/// Kafka's match types: exact name, the default entity, any entity.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn handle(request: DescribeClientQuotasRequest, _version: i16) -> DescribeClientQuotasResponse {
    match check(&request) {
        Ok(()) => DescribeClientQuotasResponse::default().with_entries(Some(Vec::new())),
        Err(e) => DescribeClientQuotasResponse::default()
            .with_entries(None)
            .with_error_code(e.code.code())
            .with_error_message(Some(StrBytes::from_string(e.message))),
    }
}

fn check(request: &DescribeClientQuotasRequest) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::new(ResponseError::InvalidRequest, message);
    let mut seen = Vec::new();
    for component in &request.components {
        let entity = component.entity_type.as_str();
        if !ENTITY_TYPES.contains(&entity) {
            // Kafka's code for an entity type it does not know.
            return Err(ApiError::new(
                ResponseError::UnsupportedVersion,
                format!("unknown quota entity type '{entity}': expected user, client-id or ip"),
            ));
        }
        if seen.contains(&entity) {
            return Err(invalid(format!(
                "duplicate filter for entity type '{entity}'"
            )));
        }
        seen.push(entity);
        match (component.match_type, &component._match) {
            (MATCH_EXACT, Some(_)) | (MATCH_DEFAULT | MATCH_SPECIFIED, None) => {}
            (MATCH_EXACT, None) => {
                return Err(invalid(format!(
                    "an exact match on '{entity}' needs the name to match"
                )))
            }
            (MATCH_DEFAULT | MATCH_SPECIFIED, Some(_)) => {
                return Err(invalid(format!(
                    "a default or any-entity match on '{entity}' takes no name"
                )))
            }
            (other, _) => return Err(invalid(format!("unknown match type {other}"))),
        }
    }
    if seen.contains(&"ip") && seen.len() > 1 {
        return Err(invalid(
            "ip quotas cannot be filtered together with user or client-id".into(),
        ));
    }
    Ok(())
}
