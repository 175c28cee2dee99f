//! Runnel's wire formats: what the broker, the client and the simulator share.
//!
//! - [`kafka`]: Kafka's request and response codec (over the `kafka-protocol` crate) and
//!   [`kafka::read_frame`], the one async frame reader.
//! - [`batch`]: record batches v2: a zero-copy view that validates header and CRC-32C,
//!   the header's byte offsets, and the builder.
//! - [`records`]: the records inside a batch, with every compression codec.
//! - [`node`]: the envelope of node-to-node messages carried by the node transport.

pub mod batch;
pub mod kafka;
pub mod node;
pub mod records;
