//! Kafka's transforms and predicates.

use crate::config::Config;
use crate::error::ConnectError;

use super::{Predicate, Transformation};

/// The transform a class name names.
pub fn transform_for(class: &str, _settings: &Config) -> Result<Box<dyn Transformation>, ConnectError> {
    Err(ConnectError::Config(format!("unknown transform {class}")))
}

/// The predicate a class name names.
pub fn predicate_for(class: &str, _settings: &Config) -> Result<Box<dyn Predicate>, ConnectError> {
    Err(ConnectError::Config(format!("unknown predicate {class}")))
}

/// Every transform's class name, as `GET /connector-plugins?connectorsOnly=false` lists them.
pub const TRANSFORMS: &[&str] = &[];
/// Every predicate's class name.
pub const PREDICATES: &[&str] = &[];
