//! Producer ids; the transaction coordinator's APIs join them here.

pub mod describe_producers;
pub mod init_producer_id;
