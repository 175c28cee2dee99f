//! The broker's life with the controller (Kafka's `BrokerLifecycleManager`): register
//! with an incarnation id and get a broker epoch, heartbeat every
//! `broker.heartbeat.interval.ms` with how far the metadata log is applied (the controller
//! unfences a broker that has caught up), and register again if the controller no longer
//! knows this epoch. On the active controller, each round also fences the brokers whose
//! session expired.

use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use runnel_actors::{Node, RestartPolicy};

use crate::controller::{ControllerAnswer, ControllerCommand};
use crate::{meta_properties, ApiError, Broker, Registration};

/// Between failed registrations (no controller yet, say).
const REGISTER_BACKOFF: Duration = Duration::from_millis(200);
/// How long a controlled shutdown waits for the controller to fence this broker.
pub const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

pub(crate) fn start(node: &Node, broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    node.spawn_supervised("broker-lifecycle", RestartPolicy::default(), move || {
        live(weak.clone())
    });
}

async fn live(weak: Weak<Broker>) {
    loop {
        let Some(broker) = weak.upgrade() else {
            return;
        };
        let epoch = match broker.register().await {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::debug!(error = %e.message, "registration with the controller failed; retrying");
                drop(broker);
                tokio::time::sleep(REGISTER_BACKOFF).await;
                continue;
            }
        };
        let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms);
        drop(broker);
        loop {
            let Some(broker) = weak.upgrade() else {
                return;
            };
            match broker.heartbeat(epoch, false).await {
                Err(e) if e.code == ResponseError::StaleBrokerEpoch => {
                    tracing::warn!(
                        epoch,
                        "the controller no longer knows this broker's epoch; registering again"
                    );
                    break;
                }
                Err(e) => tracing::debug!(error = %e.message, "heartbeat failed"),
                Ok(()) => {}
            }
            broker.expire_sessions().await;
            drop(broker);
            tokio::time::sleep(interval).await;
        }
    }
}

impl Broker {
    async fn register(&self) -> Result<i64, ApiError> {
        let (host, port) = self.advertised.clone();
        let command = ControllerCommand::RegisterBroker {
            broker_id: self.config.node_id,
            incarnation_id: self.incarnation_id,
            host,
            port,
            rack: self.config.broker_rack.clone(),
        };
        let ControllerAnswer::Registered { epoch } = self.controller_call(command).await? else {
            return Err(ApiError::new(
                ResponseError::UnknownServerError,
                "the controller answered a registration with something else",
            ));
        };
        self.check_cluster_id().await?;
        self.registration.send_replace(Some(Registration {
            epoch,
            fenced: true,
        }));
        tracing::info!(epoch, "registered with the controller");
        Ok(epoch)
    }

    /// The log now names the cluster: a directory of another one is refused, and
    /// directories not yet formatted get its id.
    async fn check_cluster_id(&self) -> Result<(), ApiError> {
        let cluster_id = self.image().cluster_id.clone();
        let storage = |e: meta_properties::MetaPropertiesError| {
            ApiError::new(ResponseError::KafkaStorageError, e.to_string())
        };
        let dirs = &self.config.log_dirs;
        let formatted = meta_properties::check(self.disk.as_ref(), dirs, self.config.node_id)
            .await
            .map_err(storage)?;
        if let Some(found) = formatted.filter(|found| *found != cluster_id) {
            let error = meta_properties::MetaPropertiesError::OtherCluster {
                dir: dirs[0].clone(),
                found,
                expected: cluster_id,
            };
            tracing::error!(%error, "stopping: this node's data belongs to another cluster");
            self.node
                .shutdown(runnel_actors::ShutdownReason::ActorFailed {
                    actor: "broker-lifecycle".into(),
                    failures: 1,
                    error: error.to_string(),
                });
            return Err(storage(error));
        }
        meta_properties::format_missing(self.disk.as_ref(), dirs, self.config.node_id, &cluster_id)
            .await
            .map_err(storage)
    }

    /// One heartbeat; `shutting_down` asks to be fenced (a controlled shutdown).
    pub(crate) async fn heartbeat(&self, epoch: i64, shutting_down: bool) -> Result<(), ApiError> {
        let command = ControllerCommand::BrokerHeartbeat {
            broker_id: self.config.node_id,
            epoch,
            metadata_offset: self.image().offset,
            shutting_down,
        };
        if let ControllerAnswer::Heartbeat { fenced } = self.controller_call(command).await? {
            let now = Some(Registration { epoch, fenced });
            self.registration.send_if_modified(|r| {
                let changed = *r != now;
                *r = now;
                changed
            });
        }
        Ok(())
    }

    /// On the active controller: fence the brokers whose session expired.
    async fn expire_sessions(&self) {
        if self.quorum.known_leader() != Some(self.transport.node_id()) {
            return;
        }
        let controller = self
            .controller
            .get()
            .expect("the controller starts with the broker");
        let expired = controller
            .run(0, |broker, controller| {
                Box::pin(async move { controller.expire_sessions(broker).await })
            })
            .await;
        if let Ok(Err(e)) = expired {
            tracing::debug!(error = %e.message, "session expiry skipped");
        }
    }

    /// Asks the controller to fence this broker before it stops, so clients move to the
    /// other brokers first (Kafka's controlled shutdown).
    pub async fn controlled_shutdown(&self) {
        let Some(registration) = self.registration() else {
            return;
        };
        let asked = tokio::time::timeout(
            CONTROLLED_SHUTDOWN_WAIT,
            self.heartbeat(registration.epoch, true),
        )
        .await;
        match asked {
            Ok(Ok(())) => tracing::info!("fenced by the controller for a controlled shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e.message, "controlled shutdown not acknowledged")
            }
            Err(_) => tracing::warn!("controlled shutdown not acknowledged in time"),
        }
    }
}
