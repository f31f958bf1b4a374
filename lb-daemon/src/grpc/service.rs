//! The `lb.v1.LoadBalancer` implementation over [`LbState`]. Every call takes
//! the one state lock: mutations are validated and applied whole, one at a
//! time, which is what makes "a rejected call changes nothing" hold.

use std::{pin::Pin, sync::Arc, time::Instant};

use lb_api::convert;
use lb_proto::v1::{self as pb, load_balancer_server::LoadBalancer};
use tokio::sync::Mutex;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{
    stats,
    status::{invalid, to_status},
};
use crate::{
    announce::Announcer,
    dataplane::{Attached, Dataplane},
    health::ProbeStats,
    state::LbState,
    vip::VipSpec,
};

type Reply<T> = Result<Response<T>, Status>;

/// Facts about the running data plane that the state does not hold.
#[derive(Clone, Debug, Default)]
pub struct StatusInfo {
    /// Interface the program is attached to.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// How it is attached (`None`: not attached, e.g. a test).
    pub attached: Option<Attached>,
    /// Kernel program id.
    pub program_id: u32,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
    /// Whether the program and maps were adopted from pins at start.
    pub adopted: bool,
    /// bpffs directory of the pins.
    pub pin_path: String,
    /// Connection-table capacity.
    pub conn_table_capacity: u64,
    /// Tag of the program this binary carries.
    pub embedded_tag: u64,
    /// Tag of the program attached at start (when the live read below is
    /// not possible).
    pub program_tag: u64,
    /// The program this daemon replaced at start, if it upgraded one.
    pub upgraded_from: Option<crate::dataplane::ProgId>,
    /// Where to read the running program from the kernel at each status
    /// call (the pin directory); `None` (tests over a fake): the values
    /// above.
    pub live_pin_dir: Option<std::path::PathBuf>,
}

/// The service. Cheap to clone (shared state).
pub struct LbService<D: Dataplane + 'static> {
    state: Arc<Mutex<LbState<D>>>,
    info: Arc<StatusInfo>,
    started: Instant,
    announcer: Option<Arc<Announcer>>,
    probes: ProbeStats,
}

impl<D: Dataplane + 'static> LbService<D> {
    /// Serves `state`.
    pub fn new(state: LbState<D>, info: StatusInfo) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            info: Arc::new(info),
            started: Instant::now(),
            announcer: None,
            probes: ProbeStats::default(),
        }
    }

    /// Serves `lb.v1.Announcer` with `announcer` (without one, its calls
    /// answer FAILED_PRECONDITION: no `[bgp]`).
    pub fn with_announcer(mut self, announcer: Arc<Announcer>) -> Self {
        self.announcer = Some(announcer);
        self
    }

    /// The announcer, if the daemon has `[bgp]`.
    pub fn announcer(&self) -> Option<Arc<Announcer>> {
        self.announcer.clone()
    }

    /// The probe counters this service reports (the monitor counts into
    /// them).
    pub fn probe_stats(&self) -> ProbeStats {
        self.probes.clone()
    }

    /// Reports the probe counters of `probes` (the health monitor's) in
    /// GetHealth.
    pub fn with_probe_stats(mut self, probes: ProbeStats) -> Self {
        self.probes = probes;
        self
    }

    /// The shared state (for the daemon's shutdown path and tests).
    pub fn state(&self) -> Arc<Mutex<LbState<D>>> {
        self.state.clone()
    }
}

// By hand: a derive would ask `D: Clone`, and only the Arcs are cloned.
impl<D: Dataplane + 'static> Clone for LbService<D> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            info: self.info.clone(),
            started: self.started,
            announcer: self.announcer.clone(),
            probes: self.probes.clone(),
        }
    }
}

fn dp_err(e: crate::dataplane::DataplaneError) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl<D: Dataplane + 'static> LoadBalancer for LbService<D> {
    async fn create_vip(&self, req: Request<pb::CreateVipRequest>) -> Reply<pb::CreateVipResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let flags = convert::flags(&r.flags)?;
        let backends = r
            .backends
            .iter()
            .map(convert::backend)
            .collect::<Result<Vec<_>, _>>()?;
        let check = match &r.health_check {
            Some(c) => convert::health_check(c, &spec)?,
            None => None,
        };
        let checked = check.is_some();
        let mut st = self.state.lock().await;
        let info = st
            .create_vip_checked(spec, flags, &backends, check)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, backends = backends.len(), health_check = checked, "vip created");
        Ok(Response::new(pb::CreateVipResponse {
            vip: Some(convert::vip_info_out(&info)),
        }))
    }

    async fn delete_vip(&self, req: Request<pb::DeleteVipRequest>) -> Reply<pb::DeleteVipResponse> {
        let spec = convert::vip(req.get_ref().vip.as_ref())?;
        self.state
            .lock()
            .await
            .delete_vip(&spec)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, "vip deleted");
        Ok(Response::new(pb::DeleteVipResponse {}))
    }

    async fn get_vip(&self, req: Request<pb::GetVipRequest>) -> Reply<pb::GetVipResponse> {
        let spec = convert::vip(req.get_ref().vip.as_ref())?;
        let info = self.state.lock().await.get_vip(&spec).map_err(to_status)?;
        Ok(Response::new(pb::GetVipResponse {
            vip: Some(convert::vip_info_out(&info)),
        }))
    }

    async fn list_vips(&self, _: Request<pb::ListVipsRequest>) -> Reply<pb::ListVipsResponse> {
        let st = self.state.lock().await;
        let mut vips = st.list_vips();
        vips.sort_by_key(|v| v.spec);
        let mut out = Vec::with_capacity(vips.len());
        for v in &vips {
            let mut info = convert::vip_info_out(v);
            info.ring_fingerprint = st.ring_fingerprint(&v.spec).map_err(to_status)?;
            out.push(info);
        }
        Ok(Response::new(pb::ListVipsResponse { vips: out }))
    }

    async fn add_backend(
        &self,
        req: Request<pb::AddBackendRequest>,
    ) -> Reply<pb::AddBackendResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let b = convert::backend(
            r.backend
                .as_ref()
                .ok_or_else(|| invalid("backend: required"))?,
        )?;
        let info = self
            .state
            .lock()
            .await
            .add_backend(&spec, b)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, backend = %b.address, weight = b.weight, slot = info.slot, "backend added");
        Ok(Response::new(pb::AddBackendResponse {
            backend: Some(convert::backend_out(&info)),
        }))
    }

    async fn remove_backend(
        &self,
        req: Request<pb::RemoveBackendRequest>,
    ) -> Reply<pb::RemoveBackendResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let addr = convert::ip("address", &r.address)?;
        self.state
            .lock()
            .await
            .remove_backend(&spec, addr)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, backend = %addr, "backend removed");
        Ok(Response::new(pb::RemoveBackendResponse {}))
    }

    async fn set_backend_weight(
        &self,
        req: Request<pb::SetBackendWeightRequest>,
    ) -> Reply<pb::SetBackendWeightResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let addr = convert::ip("address", &r.address)?;
        let info = self
            .state
            .lock()
            .await
            .set_weight(&spec, addr, r.weight)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, backend = %addr, weight = r.weight, "backend weight set");
        Ok(Response::new(pb::SetBackendWeightResponse {
            backend: Some(convert::backend_out(&info)),
        }))
    }

    async fn replace_backends(
        &self,
        req: Request<pb::ReplaceBackendsRequest>,
    ) -> Reply<pb::ReplaceBackendsResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let backends = r
            .backends
            .iter()
            .map(convert::backend)
            .collect::<Result<Vec<_>, _>>()?;
        let flags = match &r.flags {
            Some(set) => Some(convert::flags(&set.flags)?),
            None => None,
        };
        let info = self
            .state
            .lock()
            .await
            .replace_vip(&spec, flags, &backends)
            .map_err(to_status)?;
        tracing::info!(vip = %spec, backends = backends.len(), flags = ?flags.map(|f| f.to_string()), "backends replaced");
        Ok(Response::new(pb::ReplaceBackendsResponse {
            backends: convert::vip_info_out(&info).backends,
        }))
    }

    async fn list_backends(
        &self,
        req: Request<pb::ListBackendsRequest>,
    ) -> Reply<pb::ListBackendsResponse> {
        let spec = convert::vip(req.get_ref().vip.as_ref())?;
        let info = self.state.lock().await.get_vip(&spec).map_err(to_status)?;
        Ok(Response::new(pb::ListBackendsResponse {
            backends: convert::vip_info_out(&info).backends,
        }))
    }

    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Reply<pb::GetStatsResponse> {
        let only = match req.get_ref().vip.as_ref() {
            Some(v) => Some(convert::vip(Some(v))?),
            None => None,
        };
        let snap = stats::snapshot(&*self.state.lock().await, only.as_ref()).map_err(to_status)?;
        Ok(Response::new(pb::GetStatsResponse { stats: Some(snap) }))
    }

    type CaptureStream =
        Pin<Box<dyn Stream<Item = Result<pb::CaptureResponse, Status>> + Send + 'static>>;

    async fn capture(&self, req: Request<pb::CaptureRequest>) -> Reply<Self::CaptureStream> {
        let r = req.into_inner();
        let (ring, checked) = {
            let mut st = self.state.lock().await;
            let checked = super::capture::check(&r, &st)?;
            (super::capture::start(&mut st, &checked)?, checked)
        };
        tracing::info!(vip = ?r.vip, backend = %r.backend, count = r.count, "capture started");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(super::capture::run(self.state.clone(), ring, checked, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type WatchStatsStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchStatsResponse, Status>> + Send + 'static>>;

    async fn watch_stats(
        &self,
        req: Request<pb::WatchStatsRequest>,
    ) -> Reply<Self::WatchStatsStream> {
        let r = req.into_inner();
        if r.interval_seconds > 3600 {
            return Err(invalid(format!(
                "interval_seconds: {} out of range 0..=3600",
                r.interval_seconds
            )));
        }
        let interval = std::time::Duration::from_secs(r.interval_seconds.max(1) as u64);
        let only: Option<VipSpec> = match r.vip.as_ref() {
            Some(v) => Some(convert::vip(Some(v))?),
            None => None,
        };
        let state = self.state.clone();
        // Fail fast on an unknown VIP, before the stream starts.
        let mut prev = stats::snapshot(&*state.lock().await, only.as_ref()).map_err(to_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let snap = stats::snapshot(&*state.lock().await, only.as_ref());
                let msg = match snap {
                    Ok(now) => {
                        let out = stats::with_rates(now.clone(), &prev);
                        prev = now;
                        Ok(pb::WatchStatsResponse { stats: Some(out) })
                    }
                    Err(e) => Err(to_status(e)),
                };
                let stop = msg.is_err();
                if tx.send(msg).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_gateway(
        &self,
        _: Request<pb::GetGatewayRequest>,
    ) -> Reply<pb::GetGatewayResponse> {
        let mac = self.state.lock().await.gateway().map_err(to_status)?;
        Ok(Response::new(pb::GetGatewayResponse {
            mac: mac.to_string(),
        }))
    }

    async fn set_gateway(
        &self,
        req: Request<pb::SetGatewayRequest>,
    ) -> Reply<pb::SetGatewayResponse> {
        let mac = convert::mac(&req.get_ref().mac)?;
        self.state
            .lock()
            .await
            .set_gateway(mac)
            .map_err(to_status)?;
        tracing::info!(gateway = %mac, "gateway set");
        Ok(Response::new(pb::SetGatewayResponse {
            mac: mac.to_string(),
        }))
    }

    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Reply<pb::GetStatusResponse> {
        let st = self.state.lock().await;
        let sizes = st.dataplane().sizes();
        let mut vips = st.list_vips();
        vips.sort_by_key(|v| v.spec);
        let slots: usize = vips.iter().map(|v| v.backends.len()).sum();
        let mut rings = Vec::with_capacity(vips.len());
        for v in &vips {
            rings.push(pb::VipRing {
                vip: Some(convert::vip_out(&v.spec)),
                fingerprint: st.ring_fingerprint(&v.spec).map_err(to_status)?,
            });
        }
        let cfg = st.dataplane().config().map_err(dp_err)?;
        let i = &self.info;
        // The kernel's word, not what we attached at start: someone may have
        // replaced the program since.
        let running = i
            .live_pin_dir
            .as_deref()
            .and_then(crate::dataplane::running_program)
            .unwrap_or(crate::dataplane::ProgId {
                id: i.program_id,
                tag: i.program_tag,
            });
        let hex = |t: u64| {
            if t == 0 {
                String::new()
            } else {
                format!("{t:016x}")
            }
        };
        Ok(Response::new(pb::GetStatusResponse {
            interface: i.interface.clone(),
            ifindex: i.ifindex,
            attach_mode: match i.attached {
                Some(Attached::Native) => pb::AttachMode::Native,
                Some(Attached::Generic) => pb::AttachMode::Generic,
                None => pb::AttachMode::Unspecified,
            } as i32,
            program_id: running.id,
            verified_insns: i.verified_insns,
            vips: Some(pb::MapUsage {
                used: vips.len() as u64,
                capacity: sizes.max_vips as u64,
            }),
            backend_slots: Some(pb::MapUsage {
                used: slots as u64,
                // Slot 0 is reserved as "no backend".
                capacity: sizes.max_backends.saturating_sub(1) as u64,
            }),
            conn_table_capacity: sizes.conn_table as u64,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            hash_seed: cfg.hash_seed,
            ring_size: sizes.ring_size,
            adopted: i.adopted,
            pin_path: i.pin_path.clone(),
            encapsulation: crate::dataplane::Encapsulation::from_map(cfg.gue_port).to_string(),
            rings,
            program_tag: hex(running.tag),
            embedded_program_tag: hex(i.embedded_tag),
            program_current: running.tag != 0 && running.tag == i.embedded_tag,
            upgraded_from_tag: i.upgraded_from.map(|p| hex(p.tag)).unwrap_or_default(),
            backends_down: vips
                .iter()
                .flat_map(|v| &v.backends)
                .filter(|b| b.health.is_down())
                .count() as u32,
            vips_failing_open: vips
                .iter()
                .filter(|v| v.fail_open)
                .map(|v| convert::vip_out(&v.spec))
                .collect(),
        }))
    }

    async fn route(&self, req: Request<pb::RouteRequest>) -> Reply<pb::RouteResponse> {
        let r = req.into_inner();
        let vip = convert::vip(r.vip.as_ref())?;
        let client = convert::ip("client_address", &r.client_address)?;
        let cport = convert::port("client_port", r.client_port)?;
        let dport = convert::port("destination_port", r.destination_port)?;
        let dst_port = if vip.port == 0 {
            if dport == 0 {
                return Err(invalid(
                    "destination_port: required for an all-ports VIP (it is part of the hash)",
                ));
            }
            dport
        } else {
            if dport != 0 && dport != vip.port {
                return Err(invalid(format!(
                    "destination_port: {dport} differs from the VIP's port {}",
                    vip.port
                )));
            }
            vip.port
        };
        if client.is_ipv4() != vip.address.is_ipv4() {
            return Err(invalid(
                "client_address: must be of the VIP's address family",
            ));
        }
        let dst = VipSpec::new(vip.address, dst_port, vip.proto);
        let st = self.state.lock().await;
        // The VIP asked about must exist (not just some VIP on the address).
        let info = st.get_vip(&vip).map_err(to_status)?;
        if r.explain {
            let e = st
                .explain_route(&crate::state::FlowPacket {
                    dst,
                    client: std::net::SocketAddr::new(client, cport),
                    syn: r.syn,
                })
                .map_err(to_status)?;
            let backend = match e.verdict {
                crate::state::Verdict::Forward { backend, slot } => Some(
                    info.backends
                        .iter()
                        .find(|b| b.address == backend && b.slot == slot)
                        .copied()
                        // Pinned to a slot of another VIP's backend list is
                        // impossible (slots are per VIP); a weight of 0 says
                        // "not in this VIP's list" should it ever happen.
                        .unwrap_or(crate::state::BackendInfo {
                            address: backend,
                            weight: 0,
                            slot,
                            health: Default::default(),
                        }),
                ),
                crate::state::Verdict::DropNoBackend => None,
            };
            let (position, hash) = e.ring.map_or((0, 0), |r| (r.position, r.hash));
            return Ok(Response::new(pb::RouteResponse {
                backend: backend.as_ref().map(convert::backend_out),
                ring_position: position,
                flow_hash: hash,
                explanation: Some(super::explain::explanation_out(&e)),
            }));
        }
        let route = st
            .route(&dst, std::net::SocketAddr::new(client, cport))
            .map_err(to_status)?;
        let Some(addr) = route.backend else {
            return Err(Status::failed_precondition(format!(
                "vip {vip} has no backend in its ring (empty or all drained)"
            )));
        };
        let b = info
            .backends
            .iter()
            .find(|b| b.address == addr)
            .copied()
            .unwrap_or(crate::state::BackendInfo {
                address: addr,
                weight: 0,
                slot: route.slot,
                health: Default::default(),
            });
        Ok(Response::new(pb::RouteResponse {
            backend: Some(convert::backend_out(&b)),
            ring_position: route.position,
            flow_hash: route.hash,
            explanation: None,
        }))
    }

    async fn set_health_check(
        &self,
        req: Request<pb::SetHealthCheckRequest>,
    ) -> Reply<pb::SetHealthCheckResponse> {
        let r = req.into_inner();
        let spec = convert::vip(r.vip.as_ref())?;
        let check = match &r.check {
            Some(c) => convert::health_check(c, &spec)?,
            None => None,
        };
        let info = self
            .state
            .lock()
            .await
            .set_health_check(&spec, check.clone(), crate::health::unix_ms())
            .map_err(to_status)?;
        tracing::info!(
            vip = %spec,
            check = check.as_ref().map_or("none", |c| c.kind.name()),
            "health check set"
        );
        Ok(Response::new(pb::SetHealthCheckResponse {
            vip: Some(convert::vip_info_out(&info)),
        }))
    }

    async fn get_health(&self, req: Request<pb::GetHealthRequest>) -> Reply<pb::GetHealthResponse> {
        let spec = convert::vip(req.get_ref().vip.as_ref())?;
        let (info, serving) = {
            let st = self.state.lock().await;
            (
                st.get_vip(&spec).map_err(to_status)?,
                st.serving(&spec).map_err(to_status)?,
            )
        };
        let backends = info
            .backends
            .iter()
            .map(|b| {
                let c = self.probes.get(&spec, b.address);
                pb::BackendHealth {
                    address: b.address.to_string(),
                    state: convert::health_state_out(b.health.state).into(),
                    reason: b.health.reason.to_string(),
                    since_unix_ms: b.health.since_unix_ms,
                    last_result: c.last.map(|r| r.to_string()).unwrap_or_default(),
                    probes_sent: c.sent,
                    probes_failed: c.failed,
                    transitions: c.transitions,
                    serving: serving.backends.contains(&b.address),
                    weight: b.weight,
                }
            })
            .collect();
        Ok(Response::new(pb::GetHealthResponse {
            vip: Some(convert::vip_out(&spec)),
            check: info.health.as_ref().map(convert::health_check_out),
            fail_open: serving.fail_open,
            backends,
        }))
    }
}
