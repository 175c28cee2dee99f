//! ApiVersions: which versions of which APIs this broker serves.

use crate::versions::supported_versions;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

pub fn handle(request: ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    // v3+ names the client's software; Kafka refuses names that are not plain words.
    if version >= 3
        && !(valid_software_part(&request.client_software_name)
            && valid_software_part(&request.client_software_version))
    {
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let api_keys = ApiKey::iter()
        .filter_map(|key| {
            supported_versions(key).map(|range| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// KIP-511: a client asked with a newer ApiVersions than ours. Answer UNSUPPORTED_VERSION
/// in v0, listing ApiVersions' own range so the client can retry with one we know.
pub fn unsupported_version() -> ApiVersionsResponse {
    let range = supported_versions(ApiKey::ApiVersions).expect("ApiVersions is served");
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max)])
}

/// Kafka's rule for ApiVersions' client software name and version (KIP-511): letters,
/// digits, '-' and '.', starting and ending with a letter or digit.
fn valid_software_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            edge(first)
                && edge(last)
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_software_names_follow_kafkas_rule() {
        for ok in ["librdkafka", "apache-kafka-java", "4.1.1", "a"] {
            assert!(valid_software_part(ok), "{ok}");
        }
        for bad in ["", "bad name!", "-x", "x.", "ü"] {
            assert!(!valid_software_part(bad), "{bad}");
        }
        let request = ApiVersionsRequest::default()
            .with_client_software_name("bad name!".into())
            .with_client_software_version("1.0".into());
        let response = handle(request, 3);
        assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
        assert!(response.api_keys.is_empty());
    }
}
