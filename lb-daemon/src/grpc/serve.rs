//! Putting the service on a socket: a Unix socket (mode 0600) by default, TCP
//! only with TLS (optionally requiring client certificates), always with
//! grpc.health.v1 and server reflection so grpcurl works.

use std::{future::Future, net::SocketAddr, os::unix::fs::PermissionsExt as _, path::PathBuf};

use lb_proto::v1::{announcer_server::AnnouncerServer, load_balancer_server::LoadBalancerServer};
use thiserror::Error;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::{AnnounceService, LbService};
use crate::{dataplane::Dataplane, metrics::ApiCallsLayer};

/// Where to listen.
#[derive(Clone, Debug)]
pub enum Listener {
    /// A Unix socket path (created 0600; a stale socket file is replaced).
    Unix(PathBuf),
    /// TCP with TLS.
    Tls {
        /// Address to bind.
        addr: SocketAddr,
        /// Server certificate chain (PEM).
        cert: PathBuf,
        /// Server key (PEM).
        key: PathBuf,
        /// CA that client certificates must chain to; `Some` = mutual TLS.
        client_ca: Option<PathBuf>,
    },
}

/// Failures to start or run the API server.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Socket setup failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Serves `svc` on `listener` until `shutdown` resolves.
pub async fn serve<D: Dataplane + 'static>(
    svc: LbService<D>,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_counted(
        svc,
        listener,
        None,
        ApiCallsLayer::default(),
        shutdown,
        || {},
    )
    .await
}

/// [`serve`], counting every call by method and status code with
/// `api_calls` (the metrics' `lb_grpc_server_handled_total`).
///
/// With `health_probe`, grpc.health.v1 is also served there alone, without
/// TLS: what kubelet's `grpc` probe and other health checkers speak. That
/// listener carries no API call and no reflection, so plaintext exposes only
/// SERVING or not; it shares the API's reporter and stops with the API.
pub async fn serve_counted<D: Dataplane + 'static>(
    svc: LbService<D>,
    listener: Listener,
    health_probe: Option<tokio::net::TcpListener>,
    api_calls: ApiCallsLayer,
    shutdown: impl Future<Output = ()> + Send,
    on_listening: impl FnOnce() + Send,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<LoadBalancerServer<LbService<D>>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Older grpcurl releases only speak v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let probe = health_probe.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "health probe listening (grpc.health.v1 only, plaintext)");
        }
        let health = health.clone();
        tokio::spawn(async move {
            let served = Server::builder()
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "health probe listener failed");
            }
        })
    });
    let served = async move {
        match listener {
            Listener::Unix(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                if path.exists() {
                    std::fs::remove_file(&path)
                        .map_err(io(format!("removing stale socket {}", path.display())))?;
                }
                let uds = tokio::net::UnixListener::bind(&path)
                    .map_err(io(format!("binding {}", path.display())))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io(format!("chmod 0600 {}", path.display())))?;
                tracing::info!(socket = %path.display(), "API listening (unix, 0600)");
                // Bound: a client connecting from now on is queued and answered.
                on_listening();
                Server::builder()
                    .layer(api_calls)
                    .add_service(health)
                    .add_service(reflection_v1)
                    .add_service(reflection_v1alpha)
                    .add_service(AnnouncerServer::new(AnnounceService(svc.clone())))
                    .add_service(LoadBalancerServer::new(svc))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(uds),
                        shutdown,
                    )
                    .await?;
                let _ = std::fs::remove_file(&path);
            }
            Listener::Tls {
                addr,
                cert,
                key,
                client_ca,
            } => {
                let cert_pem =
                    std::fs::read(&cert).map_err(io(format!("reading {}", cert.display())))?;
                let key_pem =
                    std::fs::read(&key).map_err(io(format!("reading {}", key.display())))?;
                let mut tls =
                    ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
                let mtls = client_ca.is_some();
                if let Some(ca) = &client_ca {
                    let ca_pem =
                        std::fs::read(ca).map_err(io(format!("reading {}", ca.display())))?;
                    tls = tls.client_ca_root(Certificate::from_pem(ca_pem));
                }
                // Bound here, not inside tonic, so readiness can be told once
                // the port accepts.
                let tcp = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("binding {addr}")))?;
                tracing::info!(%addr, mtls, "API listening (tcp, TLS)");
                on_listening();
                Server::builder()
                    .tls_config(tls)?
                    .layer(api_calls)
                    .add_service(health)
                    .add_service(reflection_v1)
                    .add_service(reflection_v1alpha)
                    .add_service(AnnouncerServer::new(AnnounceService(svc.clone())))
                    .add_service(LoadBalancerServer::new(svc))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(tcp),
                        shutdown,
                    )
                    .await?;
            }
        }
        Ok::<(), ServeError>(())
    }
    .await;
    if let Some(p) = probe {
        p.abort();
    }
    served
}
