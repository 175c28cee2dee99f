//! The first workload, which proved the simulator before the broker existed: a durable
//! counter service on the node transport ([`service`]) and its client ([`client`]),
//! which classifies every outcome as a checker needs it.

pub mod client;
pub mod service;

pub use client::{CounterClient, Outcome};
