//! `lb-daemon run`: open (or adopt) the pinned data plane, make the maps match
//! the persisted state, serve the API until SIGTERM/SIGINT. Exiting — cleanly
//! or not — leaves forwarding running; `lb-daemon teardown` removes it.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use lb_api::MacAddr;
use tokio::signal::unix::{SignalKind, signal};

use super::settings;
use crate::{
    announce::{Announcer, Attachment},
    config::{Config, Listen},
    dataplane::{BALANCER_OBJECT, Balancer, Dataplane, OpenOptions, Origin},
    grpc::{self, LbService, Listener, StatusInfo},
    health::{self, ProbeStats},
    metrics::{self, Metrics},
    netif,
    state::{LbState, Store},
};

/// The file in the state dir where daemons before the gateway became part
/// of `state.json` kept a gateway set over the API.
const LEGACY_GATEWAY_FILE: &str = "gateway";

/// Test only: the path of an `lb-xdp` object to load instead of the one
/// embedded in this binary. The upgrade tests need a daemon whose program
/// differs from the running one; a second object file (lb-ebpf built with
/// its `upgrade-test` feature, see lb-privileged-tests/build.rs) is that,
/// without a second daemon build. Unset in production.
pub const TEST_OBJECT_ENV: &str = "LB_TEST_XDP_OBJECT";

/// Everything up to serving: returns the service, where to listen, and the
/// metrics (the state reports its ring rebuilds to them).
pub fn prepare(cfg: &Config) -> anyhow::Result<(LbService<Balancer>, Listener, Arc<Metrics>)> {
    let dp = &cfg.dataplane;
    let iface = dp.interface.as_str();
    let pin = &dp.pin_path;
    let test_object = match std::env::var_os(TEST_OBJECT_ENV) {
        Some(p) => Some(std::fs::read(&p).with_context(|| format!("{TEST_OBJECT_ENV}={p:?}"))?),
        None => None,
    };
    let opts = OpenOptions {
        on_layout_change: settings::on_layout_change(dp.on_layout_change),
        object: test_object.as_deref().unwrap_or(BALANCER_OBJECT),
    };
    let (mut lb, origin) = Balancer::open_pinned_with(settings::sizes(dp), pin, &opts)
        .with_context(|| format!("opening the data plane pinned at {}", pin.display()))?;
    let embedded = lb.embedded_program();
    tracing::info!(
        pin_path = %pin.display(),
        origin = ?origin,
        program_tag = %embedded.tag_hex(),
        "data plane open"
    );
    let upgrade = lb.pending_upgrade().cloned();
    if let Some(up) = &upgrade {
        tracing::info!(
            old_id = up.from.id,
            old_tag = %up.from.tag_hex(),
            new_id = up.to.id,
            new_tag = %up.to.tag_hex(),
            recreated = ?up.recreated,
            "the running program differs from this build's: it is replaced in place once the maps hold the state"
        );
    }
    let if_mac = netif::mac(iface)
        .context("listing interfaces")?
        .with_context(|| format!("interface {iface} not found in this network namespace"))?;
    let node = settings::balancer_config(dp, if_mac).to_map()?;

    // Attached before the node settings are written: fresh maps hold no VIP,
    // so until the state is applied the program passes every packet, and
    // adopted maps keep the previous daemon's settings until the one write
    // below replaces them.
    let attached = lb
        .attach_pinned(iface, settings::attach_mode(dp.xdp_mode), pin)
        .with_context(|| format!("attaching to {iface}"))?;
    let info = lb.program().info().ok();
    let status = StatusInfo {
        interface: iface.to_string(),
        ifindex: netif::ifindex(iface).unwrap_or(0),
        attached: Some(attached),
        program_id: info.as_ref().map(|i| i.id()).unwrap_or(0),
        verified_insns: info
            .as_ref()
            .and_then(|i| i.verified_instruction_count())
            .unwrap_or(0),
        adopted: origin != Origin::Loaded,
        pin_path: pin.display().to_string(),
        conn_table_capacity: dp.conn_table_size as u64,
        embedded_tag: embedded.tag,
        program_tag: info.as_ref().map(|i| i.tag()).unwrap_or(0),
        upgraded_from: upgrade.as_ref().map(|u| u.from),
        live_pin_dir: Some(pin.clone()),
    };
    tracing::info!(interface = iface, mode = attached.as_str(), "XDP attached");
    // The egress hook that sends `via-vip` health probes to their backend.
    // Attached whether or not a VIP asks for such probes today (a check can
    // be set over the API at any time), at the cost of one compare per
    // packet this host itself sends on the interface. Without it a via-vip
    // probe would leave unencapsulated, come back through the router and be
    // balanced to whichever backend the ring picks: no verdict about the
    // one probed, so a failure to attach stops the start.
    lb.attach_probe_encap(iface)
        .with_context(|| format!("attaching the probe encapsulation (TC egress) to {iface}"))?;
    tracing::info!(
        interface = iface,
        "probe encapsulation attached (TC egress)"
    );

    // Desired state: persisted state wins; the configuration's VIPs only
    // seed the very first start. The node settings go in with the gateway
    // the state holds, if one was set over the API.
    std::fs::create_dir_all(&cfg.state.dir)
        .with_context(|| format!("creating state dir {}", cfg.state.dir.display()))?;
    let store = Store::new(&cfg.state.dir);
    let persisted = store.load()?;
    let first_start = persisted.is_none();
    let mut state = LbState::new(lb, persisted.unwrap_or_default(), Some(store))?;
    let probes = ProbeStats::default();
    let metrics = Arc::new(Metrics::new(&status).with_probe_stats(probes.clone()));
    state.set_ring_observer(metrics.clone());
    migrate_gateway_file(&mut state, &cfg.state.dir)?;
    state.set_node_config(node)?;
    let report = state.adopt()?;
    tracing::info!(report = ?report, "maps reconciled with the persisted state");
    // Only now, with the maps holding the state (recreated maps filled),
    // may the new program see packets.
    if let Some(up) = state
        .finish_upgrade(pin)
        .context("replacing the running XDP program")?
    {
        tracing::info!(
            old_id = up.from.id,
            old_tag = %up.from.tag_hex(),
            new_id = up.to.id,
            new_tag = %up.to.tag_hex(),
            link_id = crate::dataplane::link_id(pin).unwrap_or(0),
            "XDP program replaced in place on the pinned link (bpf link update)"
        );
    }
    if first_start {
        for v in &cfg.vips {
            let ctx = || format!("configuring vip {}", v.address);
            // Checked when the file was read (config::check_vips).
            // One change per VIP; its backends start in the check's
            // `initial` state.
            let check = v.health_check().with_context(ctx)?;
            state
                .create_vip_checked(v.address, v.flags, &v.backend_specs(), check)
                .with_context(ctx)?;
            tracing::info!(vip = %v.address, "vip created from the configuration");
        }
    }
    let listener = match &cfg.api.listen {
        Listen::Unix(p) => Listener::Unix(p.clone()),
        Listen::Tcp(addr) => {
            let tls = cfg
                .api
                .tls
                .as_ref()
                .context("[api] listen on TCP needs [api.tls]")?;
            Listener::Tls {
                addr: *addr,
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                client_ca: tls.client_ca.clone(),
            }
        }
    };
    Ok((
        LbService::new(state, status).with_probe_stats(probes),
        listener,
        metrics,
    ))
}

/// Moves a gateway an older daemon kept in a file of its own into the state
/// (persisted in `state.json` from then on), once; the state's own gateway,
/// if it has one, is newer and wins.
fn migrate_gateway_file<D: Dataplane>(state: &mut LbState<D>, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(LEGACY_GATEWAY_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    match text.trim().parse::<MacAddr>() {
        Ok(mac) if state.model().gateway().is_none() => {
            state.set_gateway(mac)?;
            tracing::info!(gateway = %mac, file = %path.display(), "gateway moved into the state");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), cause = %e, "ignoring an unreadable gateway file")
        }
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let cfg = settings::load(config_path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        // The handlers are installed first: tokio registers a signal when its
        // stream is created, and a SIGTERM that arrived before that (a
        // supervisor stopping a daemon that has just bound its socket)
        // would take the default action and kill the process mid-start.
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        // Bound before the data plane is touched: a taken port fails the
        // start with nothing changed.
        let metrics_listener = match cfg.metrics.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("[metrics] listen: binding {addr}"))?,
            ),
            None => None,
        };
        let health_probe = match cfg.api.health_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("[api] health_listen: binding {addr}"))?,
            ),
            None => None,
        };
        let (mut svc, listener, metrics) = prepare(&cfg)?;
        // Started once XDP is attached and the state applied (prepare): the
        // first reconciliation announces what this node can serve. Until
        // then the speaker keeps what a previous daemon left announced, so
        // a restart does not flap the routes.
        let mut announcer = None;
        if let Some(bgp) = &cfg.bgp {
            let a = Arc::new(
                Announcer::new(
                    bgp.clone(),
                    &cfg.state.dir,
                    Attachment::Pinned {
                        pin_path: cfg.dataplane.pin_path.clone(),
                        interface: cfg.dataplane.interface.to_string(),
                    },
                )
                .with_observer(metrics.clone()),
            );
            svc = svc.with_announcer(a.clone());
            tracing::info!(
                speaker = %bgp.speaker,
                socket = %bgp.control_socket.display(),
                file = %bgp.config_file.display(),
                peers = bgp.peers.len(),
                "announcing over BGP"
            );
            announcer = Some(tokio::spawn(a.run(svc.state())));
        }
        let metrics_server = metrics_listener.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "metrics listening (http, /metrics)");
            }
            tokio::spawn(metrics::serve(
                l,
                svc.state(),
                metrics.clone(),
                std::future::pending(),
            ))
        });
        // Probing starts at once, from the health the state kept: a
        // restart neither flaps a down backend up nor waits to check it.
        let monitor = tokio::spawn(health::monitor::run(svc.state(), svc.probe_stats()));
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            super::notify::notify("STOPPING=1");
            tracing::info!(
                "shutting down; XDP stays attached and BGP announcements stay \
                 (lbctl node drain withdraws them, lb-daemon teardown removes both)"
            );
        };
        // READY=1 only now: the data plane is attached and reconciled
        // (prepare) and the API accepts connections, so `systemctl start`
        // returning means lbctl works.
        let served = grpc::serve_counted(
            svc,
            listener,
            health_probe,
            metrics.api_layer(),
            shutdown,
            || super::notify::notify("READY=1"),
        )
        .await;
        monitor.abort();
        if let Some(m) = metrics_server {
            m.abort();
        }
        // Exiting withdraws nothing: the pinned data plane keeps forwarding
        // and the speaker keeps announcing (docs/bgp.md, "SIGTERM").
        if let Some(a) = announcer {
            a.abort();
        }
        served?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dataplane::{FakeDataplane, Sizes},
        state::Model,
    };

    fn state(dir: &Path) -> LbState<FakeDataplane> {
        let store = Store::new(dir);
        let model = store.load().unwrap().unwrap_or_default();
        LbState::new(FakeDataplane::new(Sizes::default()), model, Some(store)).unwrap()
    }

    #[test]
    fn an_old_gateway_file_moves_into_the_state_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(LEGACY_GATEWAY_FILE);
        std::fs::write(&file, "02:AB:00:00:00:09\n").unwrap();
        let mut st = state(dir.path());
        migrate_gateway_file(&mut st, dir.path()).unwrap();
        let gw: MacAddr = "02:ab:00:00:00:09".parse().unwrap();
        assert_eq!(st.model().gateway(), Some(gw));
        assert!(!file.exists());
        // Persisted: the next start has it without the file.
        assert_eq!(state(dir.path()).model().gateway(), Some(gw));

        // The state's own gateway is newer than a stray file; a file that
        // does not parse is dropped, not fatal.
        for text in ["02:00:00:00:00:01\n", "garbage\n"] {
            std::fs::write(&file, text).unwrap();
            let mut st = state(dir.path());
            migrate_gateway_file(&mut st, dir.path()).unwrap();
            assert_eq!(st.model().gateway(), Some(gw));
            assert!(!file.exists());
        }
        // No file: nothing to do.
        let mut st =
            LbState::new(FakeDataplane::new(Sizes::default()), Model::default(), None).unwrap();
        migrate_gateway_file(&mut st, dir.path()).unwrap();
        assert_eq!(st.model().gateway(), None);
    }
}
