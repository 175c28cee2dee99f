//! ApiVersions: which versions of which APIs this broker serves.

use crate::versions::supported_versions;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

pub fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
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
