//! DescribeUserScramCredentials: Runnel has no SASL yet, so no user has a SCRAM
//! credential. All users: the empty list; named users: RESOURCE_NOT_FOUND each, as Kafka
//! answers for a user without credentials. `kafka-configs --describe --entity-type users`
//! asks this beside DescribeClientQuotas.

use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub fn handle(
    request: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let users = request.users.unwrap_or_default();
    let mut answered = std::collections::HashSet::new();
    let results = users
        .iter()
        // As in Kafka, a user named twice is answered once, with DUPLICATE_RESOURCE.
        .filter(|user| answered.insert(user.name.as_str()))
        .map(|user| {
            let named = users.iter().filter(|u| u.name == user.name).count();
            let (code, message) = if named > 1 {
                (
                    ResponseError::DuplicateResource,
                    format!(
                        "user '{}' is named more than once; name each user once",
                        user.name
                    ),
                )
            } else {
                (
                    ResponseError::ResourceNotFound,
                    format!("user '{}' has no SCRAM credential", user.name),
                )
            };
            DescribeUserScramCredentialsResult::default()
                .with_user(user.name.clone())
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
