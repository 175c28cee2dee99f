//! What every Kafka client command shares: where the brokers are, and errors as sentences.

use runnel_client::kafka::ClientConfig;

/// The default Kafka address, where `runnel server` listens unless told otherwise.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(clap::Args, Clone, Debug)]
pub struct BootstrapArgs {
    /// Broker(s) to connect to, HOST:PORT, comma-separated.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP, global = true)]
    pub bootstrap_server: String,
    /// How long to wait for each broker answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    pub request_timeout_ms: u64,
}

impl BootstrapArgs {
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        ClientConfig::new(&self.bootstrap_server)
            .with_client_id(client_id)
            .with_request_timeout_ms(self.request_timeout_ms)
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}
