//! The standard gRPC conventions every gavel port serves beside its own
//! API: `grpc.health.v1` (only a leader reports `gavel.v1.Auction` as
//! SERVING) and server reflection, v1 and v1alpha, from the descriptors the
//! build compiled.

use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};

use super::pb;

/// The encoded descriptors of gavel's protobuf files, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gavel_descriptor.bin"));

/// The client API's fully qualified service name, as health checks name it.
pub const AUCTION_SERVICE: &str = "gavel.v1.Auction";

/// A node's health as its ports report it: one handle, shared by the
/// node's own port and, while it leads, the client port.
#[derive(Clone, Debug, Default)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Reports `gavel.v1.Auction` SERVING while this node leads, NOT_SERVING
    /// otherwise (a backup answers the client API only to redirect).
    pub async fn set_leading(&self, leading: bool) {
        let status = if leading { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status(AUCTION_SERVICE, status).await;
    }

    pub(super) fn service(&self) -> tonic_health::pb::health_server::HealthServer<HealthService> {
        tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }
}

/// The reflection services (v1 and v1alpha) advertising `services`: what
/// `grpcurl` and similar tools list and describe on a port.
pub(super) fn reflection(
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        services.iter().fold(builder, |builder, service| builder.with_service_name(*service))
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The service names a port advertises through reflection.
pub(super) fn advertised(peer_api: bool) -> Vec<&'static str> {
    let mut services = vec![
        AUCTION_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    if peer_api {
        services.push(pb::replication::replication_server::SERVICE_NAME);
    }
    services
}
