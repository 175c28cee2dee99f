//! Single message transforms and predicates, configured with Kafka's keys:
//! `transforms=a,b`, `transforms.a.type=...`, `transforms.a.predicate=p`,
//! `transforms.a.negate=true`, `predicates=p`, `predicates.p.type=...`.
//!
//! Each transform is Kafka's, by its class name (`org.apache.kafka.connect.transforms.
//! InsertField$Value`) or simple name (`InsertField$Value`); see [`smt`] for what each
//! does. A transform returns `None` to drop the record.

mod chain;
pub mod smt;

pub use chain::TransformChain;

use crate::data::ConnectRecord;
use crate::error::ConnectError;

/// One transform (Kafka's `Transformation`).
pub trait Transformation: Send + Sync {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError>;
}

/// One predicate (Kafka's `Predicate`).
pub trait Predicate: Send + Sync {
    fn test(&self, record: &ConnectRecord) -> bool;
}
