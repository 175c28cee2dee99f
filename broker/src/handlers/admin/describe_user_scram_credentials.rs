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
    let results = request
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|user| {
            let message = format!("user '{}' has no SCRAM credential", user.name);
            DescribeUserScramCredentialsResult::default()
                .with_user(user.name)
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
