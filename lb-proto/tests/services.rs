//! The generated client and server, grpc.health.v1 and server reflection,
//! served together over an in-memory duplex pipe (no sockets): the set of
//! crates and versions the daemon uses works together end to end.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use lb_proto::v1::load_balancer_client::LoadBalancerClient;
use lb_proto::v1::load_balancer_server::{LoadBalancer, LoadBalancerServer};
use lb_proto::v1::*;
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// Answers GetGateway and WatchStats; everything else is UNIMPLEMENTED.
struct Stub;

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> Reply<T> {
    Err(Status::unimplemented("stub"))
}

#[tonic::async_trait]
impl LoadBalancer for Stub {
    async fn set_health_check(
        &self,
        _: Request<lb_proto::v1::SetHealthCheckRequest>,
    ) -> Reply<lb_proto::v1::SetHealthCheckResponse> {
        unimplemented()
    }
    async fn get_health(
        &self,
        _: Request<lb_proto::v1::GetHealthRequest>,
    ) -> Reply<lb_proto::v1::GetHealthResponse> {
        unimplemented()
    }
    async fn create_vip(&self, _: Request<CreateVipRequest>) -> Reply<CreateVipResponse> {
        unimplemented()
    }
    async fn delete_vip(&self, _: Request<DeleteVipRequest>) -> Reply<DeleteVipResponse> {
        unimplemented()
    }
    async fn get_vip(&self, req: Request<GetVipRequest>) -> Reply<GetVipResponse> {
        let vip = req.into_inner().vip;
        Err(Status::not_found(format!("no VIP {vip:?}")))
    }
    async fn list_vips(&self, _: Request<ListVipsRequest>) -> Reply<ListVipsResponse> {
        unimplemented()
    }
    async fn add_backend(&self, _: Request<AddBackendRequest>) -> Reply<AddBackendResponse> {
        unimplemented()
    }
    async fn remove_backend(
        &self,
        _: Request<RemoveBackendRequest>,
    ) -> Reply<RemoveBackendResponse> {
        unimplemented()
    }
    async fn set_backend_weight(
        &self,
        _: Request<SetBackendWeightRequest>,
    ) -> Reply<SetBackendWeightResponse> {
        unimplemented()
    }
    async fn replace_backends(
        &self,
        _: Request<ReplaceBackendsRequest>,
    ) -> Reply<ReplaceBackendsResponse> {
        unimplemented()
    }
    async fn list_backends(&self, _: Request<ListBackendsRequest>) -> Reply<ListBackendsResponse> {
        unimplemented()
    }
    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Reply<GetStatsResponse> {
        unimplemented()
    }

    type CaptureStream =
        Pin<Box<dyn Stream<Item = Result<CaptureResponse, Status>> + Send + 'static>>;

    async fn capture(&self, _: Request<CaptureRequest>) -> Reply<Self::CaptureStream> {
        unimplemented()
    }

    type WatchStatsStream =
        Pin<Box<dyn Stream<Item = Result<WatchStatsResponse, Status>> + Send + 'static>>;

    async fn watch_stats(&self, req: Request<WatchStatsRequest>) -> Reply<Self::WatchStatsStream> {
        let interval = req.into_inner().interval_seconds.max(1);
        let msgs = (1..=3u64).map(move |i| {
            Ok(WatchStatsResponse {
                stats: Some(StatsSnapshot {
                    unix_time_ms: i * 1000 * u64::from(interval),
                    interval_seconds: f64::from(interval),
                    ..Default::default()
                }),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    async fn get_gateway(&self, _: Request<GetGatewayRequest>) -> Reply<GetGatewayResponse> {
        Ok(Response::new(GetGatewayResponse {
            mac: "02:00:00:00:00:01".into(),
        }))
    }
    async fn set_gateway(&self, _: Request<SetGatewayRequest>) -> Reply<SetGatewayResponse> {
        unimplemented()
    }
    async fn get_status(&self, _: Request<GetStatusRequest>) -> Reply<GetStatusResponse> {
        unimplemented()
    }
    async fn route(&self, _: Request<RouteRequest>) -> Reply<RouteResponse> {
        unimplemented()
    }
}

/// Serves the stub, health and both reflection versions on one end of a
/// duplex pipe and returns a channel connected to the other end.
async fn serve_in_memory() -> Channel {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LoadBalancerServer<Stub>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();

    tokio::spawn(async move {
        Server::builder()
            .add_service(LoadBalancerServer::new(Stub))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io)))
            .await
            .unwrap();
    });

    let client_io = Arc::new(Mutex::new(Some(client_io)));
    Endpoint::from_static("http://in-memory")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let io = client_io.lock().unwrap().take();
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the pipe is already connected"))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test]
async fn client_server_health_and_reflection_work_together() {
    let channel = serve_in_memory().await;

    // The generated client and server.
    let mut lb = LoadBalancerClient::new(channel.clone());
    let gw = lb.get_gateway(GetGatewayRequest {}).await.unwrap();
    assert_eq!(gw.into_inner().mac, "02:00:00:00:00:01");

    let err = lb
        .get_vip(GetVipRequest {
            vip: Some(Vip {
                address: "198.18.0.10".into(),
                port: 80,
                protocol: Protocol::Tcp.into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = lb.list_vips(ListVipsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    let mut stream = lb
        .watch_stats(WatchStatsRequest {
            interval_seconds: 2,
            vip: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(msg) = stream.next().await {
        seen.push(msg.unwrap().stats.unwrap().unix_time_ms);
    }
    assert_eq!(seen, [2000, 4000, 6000]);

    // grpc.health.v1: overall and per service.
    let mut health = HealthClient::new(channel.clone());
    for service in ["", lb_proto::SERVICE_NAME] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "{service:?}");
    }

    // Server reflection, as grpcurl uses it.
    let mut reflection = ServerReflectionClient::new(channel);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("lb.v1.LoadBalancer".into()),
    ]
    .map(|r| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    });
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    match replies.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&lb_proto::SERVICE_NAME), "{names:?}");
            assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
        }
        other => panic!("unexpected reply {other:?}"),
    }
    match replies.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            assert!(!files.file_descriptor_proto.is_empty());
        }
        other => panic!("unexpected reply {other:?}"),
    }
}
