//! Runnel's wire formats.
//!
//! Today this crate holds the internal node-to-node envelope ([`node::Frame`]) that the
//! node transport in `runnel-actors` carries over TCP. The Kafka frame codec and the
//! record-batch view join it with the broker.

pub mod batch;
pub mod kafka;
pub mod node;
pub mod records;
