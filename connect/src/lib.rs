//! Runnel's Kafka Connect runtime. A worker ([`worker::Herder`] over the `Worker` actor)
//! runs each connector and each task in its own supervised actor on our Kafka client; a
//! failing task becomes FAILED with its trace and can be restarted, and never takes the
//! worker down. [`rest::handle`] is Kafka's REST API over a herder; [`http`] serves it.
//!
//! Start from [`worker::WorkerConfig`] (Kafka's worker settings) and [`worker::Herder::start`];
//! write connectors with the traits in [`api`] (see [`file`] for Kafka's file connectors);
//! [`converter`] has Kafka's String, Json and ByteArray converters, [`transforms`] its
//! single message transforms and predicates.

pub mod api;
pub mod config;
pub mod converter;
pub mod data;
pub mod distributed;
pub mod entities;
pub mod error;
pub mod file;
pub mod http;
pub mod offsets;
pub mod rest;
mod settings;
mod task;
pub mod transforms;
pub mod validate;
pub mod worker;

pub use error::ConnectError;

/// The version the REST API and the plugins report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
