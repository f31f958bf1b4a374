//! `lb_xdp` and its maps: load with sizes, write VIPs/backends/rings/config,
//! read counters and the connection table.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TcAttachType, Xdp},
};
use lb_common::{
    AddrKey, Backend, CaptureFilter, ConnEntry, Counters, FlowKey, FlowKey4,
    LB_CFG_F_FORWARD_ICMP_ERRORS, LbConfig, PROG_PROBE, PktBytes, STAT_COUNT, VipKey, VipMeta,
    addr,
};

use super::{
    DataplaneError, RingMap,
    filter::VipFilter,
    layout::{self, OnLayoutChange},
    object::BALANCER_OBJECT,
    ring,
};

/// Map sizes fixed at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Maglev ring size M (prime).
    pub ring_size: u32,
    /// VIPs the maps hold.
    pub max_vips: u32,
    /// Backend slots (one per VIP/backend pair; slot 0 is reserved).
    pub max_backends: u32,
    /// Connection-table capacity, flows of each family (the IPv4 and the
    /// IPv6 table get this many entries each).
    pub conn_table: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            ring_size: lb_common::DEFAULT_RING_SIZE,
            max_vips: lb_common::DEFAULT_MAX_VIPS,
            max_backends: lb_common::DEFAULT_MAX_BACKENDS,
            conn_table: lb_common::DEFAULT_CONN_TABLE_SIZE,
        }
    }
}

impl Sizes {
    /// Checks the sizes are usable: prime ring, all non-zero, the ring array
    /// addressable with `u32` indices.
    pub fn validate(&self) -> Result<(), DataplaneError> {
        if !crate::maglev::is_prime(self.ring_size) {
            return Err(DataplaneError::Sizes(format!(
                "ring size {} is not prime",
                self.ring_size
            )));
        }
        if self.max_vips == 0 || self.max_backends < 2 || self.conn_table == 0 {
            return Err(DataplaneError::Sizes(
                "max_vips, conn_table must be > 0 and max_backends > 1".into(),
            ));
        }
        let positions = 2u64 * self.max_vips as u64 * self.ring_size as u64;
        if positions > u32::MAX as u64 {
            return Err(DataplaneError::Sizes(format!(
                "max_vips {} x 2 x ring size {} exceeds 2^32 ring positions",
                self.max_vips, self.ring_size
            )));
        }
        Ok(())
    }

    /// Elements of `LB_RING` (two positions each).
    pub fn ring_elements(&self) -> u32 {
        self.max_vips * self.ring_size
    }

    /// `slot` is a backend slot of these maps.
    pub fn check_slot(&self, slot: u32) -> Result<(), DataplaneError> {
        out_of_range("backend slot", slot, self.max_backends)
    }

    /// `index` is a VIP index of these maps.
    pub fn check_vip_index(&self, index: u32) -> Result<(), DataplaneError> {
        out_of_range("VIP index", index, self.max_vips)
    }
}

fn out_of_range(what: &'static str, index: u32, capacity: u32) -> Result<(), DataplaneError> {
    if index >= capacity {
        return Err(DataplaneError::OutOfRange {
            what,
            index,
            capacity,
        });
    }
    Ok(())
}

/// Node-wide data-plane settings in operator terms; [`Self::to_map`] turns
/// them into the kernel's [`LbConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerConfig {
    /// Next hop for encapsulated packets.
    pub gateway_mac: [u8; 6],
    /// Our interface's MAC; all zero = reuse the received destination MAC.
    pub if_mac: [u8; 6],
    /// Largest outer IP packet towards backends.
    pub mtu: u32,
    /// Fleet-wide flow hash seed.
    pub hash_seed: u32,
    /// Outer IPv4 source prefix.
    pub v4_src: Ipv4Addr,
    /// Its length: < 32 crafts per-flow sources inside it, 32 = fixed source.
    pub v4_src_len: u8,
    /// Outer IPv6 source prefix.
    pub v6_src: Ipv6Addr,
    /// Its length, 96..=128: < 128 crafts the low bits per flow, 128 = fixed.
    pub v6_src_len: u8,
    /// ICMP "too big" replies per second per CPU (0 = unlimited).
    pub icmp_too_big_rate: u32,
    /// New connection-table entries per second per CPU (0 = unlimited);
    /// past it new flows are forwarded unpinned ([`lb_common::Stat::NewFlowUnpinned`]).
    pub new_flow_rate: u32,
    /// Encapsulate ICMP errors about VIP flows to the flow's backend
    /// ([`lb_common::LB_CFG_F_FORWARD_ICMP_ERRORS`]).
    pub forward_icmp_errors: bool,
    /// How packets are wrapped for the backends.
    pub encap: Encapsulation,
}

/// The encapsulation `lb_xdp` puts around a packet for its backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encapsulation {
    /// IP-in-IP (protocol 4 / 41).
    #[default]
    Ipip,
    /// GUE variant 1: outer IP, UDP to `port` (source port per flow, zero
    /// checksum), then the packet.
    Gue {
        /// Outer UDP destination port, 1..=65535.
        port: u16,
    },
}

impl Encapsulation {
    /// [`lb_common::LbConfig::gue_port`]: 0 for IP-in-IP, else the port in
    /// network order.
    pub fn to_map(self) -> u16 {
        match self {
            Encapsulation::Ipip => 0,
            Encapsulation::Gue { port } => port.to_be(),
        }
    }

    /// Reads [`lb_common::LbConfig::gue_port`] back.
    pub fn from_map(gue_port: u16) -> Self {
        match gue_port {
            0 => Encapsulation::Ipip,
            p => Encapsulation::Gue {
                port: u16::from_be(p),
            },
        }
    }
}

impl std::fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encapsulation::Ipip => f.write_str("ipip"),
            Encapsulation::Gue { port } => write!(f, "gue:{port}"),
        }
    }
}

impl Default for BalancerConfig {
    fn default() -> Self {
        // Katran's defaults: 172.16.0.0/16 and a /96 in 100::/64 (RFC 6666
        // discard prefix), so crafted sources never collide with real hosts.
        Self {
            gateway_mac: [0; 6],
            if_mac: [0; 6],
            mtu: 1500,
            hash_seed: 0,
            v4_src: Ipv4Addr::new(172, 16, 0, 0),
            v4_src_len: 16,
            v6_src: Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            v6_src_len: 96,
            icmp_too_big_rate: DEFAULT_ICMP_TOO_BIG_RATE,
            new_flow_rate: DEFAULT_NEW_FLOW_RATE,
            forward_icmp_errors: true,
            encap: Encapsulation::Ipip,
        }
    }
}

/// Default limit of ICMP "too big" replies per second and CPU (the kernel's
/// own ICMP limit is in the same order: 1000/s).
pub const DEFAULT_ICMP_TOO_BIG_RATE: u32 = 1000;

/// Default limit of new connection-table entries per second and CPU:
/// Katran's `MAX_CONN_RATE`. High enough that no real client population
/// meets it on one CPU, low enough to bound how fast a SYN flood can churn
/// the table; see `max_new_flows_per_cpu` in config/production.toml for
/// sizing it to a table.
pub const DEFAULT_NEW_FLOW_RATE: u32 = 125_000;

impl BalancerConfig {
    /// The kernel representation. Fails on prefix lengths out of range.
    pub fn to_map(&self) -> Result<LbConfig, DataplaneError> {
        if self.encap == (Encapsulation::Gue { port: 0 }) {
            return Err(DataplaneError::Sizes("GUE port 0".into()));
        }
        if self.v4_src_len > 32 {
            return Err(DataplaneError::Sizes(format!(
                "IPv4 source prefix length {} > 32",
                self.v4_src_len
            )));
        }
        if !(96..=128).contains(&self.v6_src_len) {
            return Err(DataplaneError::Sizes(format!(
                "IPv6 source prefix length {} not in 96..=128",
                self.v6_src_len
            )));
        }
        let mask = |len: u8| -> u32 {
            let host = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            // Map layout: the mask's network-order bytes in a native word.
            u32::from_ne_bytes(host.to_be_bytes())
        };
        Ok(LbConfig {
            gateway_mac: self.gateway_mac,
            if_mac: self.if_mac,
            mtu: self.mtu,
            hash_seed: self.hash_seed,
            v4_src: addr::from_v4(self.v4_src.octets())[0],
            v4_src_mask: mask(self.v4_src_len),
            v6_src: addr::from_v6(self.v6_src.octets()),
            v6_src_mask: mask(self.v6_src_len - 96),
            icmp_too_big_rate: self.icmp_too_big_rate,
            new_flow_rate: self.new_flow_rate,
            flags: if self.forward_icmp_errors {
                LB_CFG_F_FORWARD_ICMP_ERRORS
            } else {
                0
            },
            gue_port: self.encap.to_map(),
            _pad: 0,
        })
    }
}

/// Where the program handle lives: in the object we loaded, or adopted from
/// its bpffs pin (a restarted daemon).
/// Either way the object also holds `lb_probe` (the `via-vip` probe
/// encapsulation, see [`Balancer::attach_probe_encap`]), loaded against the
/// same maps.
enum Prog {
    Object(Box<Ebpf>),
    /// The adopted `lb_xdp`, and the object we loaded for `lb_probe` (its own
    /// copy of `lb_xdp` unloaded again).
    Pinned(Box<Xdp>, Box<Ebpf>),
}

/// Every map of the balancer object (all are pinned together).
pub const MAP_NAMES: [&str; 16] = [
    lb_common::MAP_VIPS,
    lb_common::MAP_VIP_ADDRS,
    lb_common::MAP_VIP_FILTER,
    lb_common::MAP_RING,
    lb_common::MAP_BACKENDS,
    lb_common::MAP_CONN,
    lb_common::MAP_CONN4,
    lb_common::MAP_CONFIG,
    lb_common::MAP_STATS,
    lb_common::MAP_VIP_STATS,
    lb_common::MAP_BACKEND_STATS,
    lb_common::MAP_ICMP_RATE,
    lb_common::MAP_NEW_FLOW_RATE,
    lb_common::MAP_CAPTURE,
    lb_common::MAP_CAPTURE_RING,
    lb_common::MAP_CAPTURE_PENDING,
];

/// How [`Balancer::open_pinned`] got its program and maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the embedded object and pinned now.
    Loaded,
    /// Adopted from existing pins: program, maps and connection table as they
    /// were (a daemon restart with the same program).
    Adopted,
    /// The pinned maps are adopted (those whose layout changed recreated,
    /// see [`Upgrade::recreated`]) and the embedded program, which differs
    /// from the running one, is loaded against them; [`Balancer::finish_upgrade`]
    /// swaps it in on the pinned link.
    Upgraded,
}

/// A program as the kernel knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgId {
    /// Kernel program id (`bpftool prog show id N`).
    pub id: u32,
    /// The kernel's tag: a hash of the instructions with map references
    /// masked, so the same build has the same tag whatever maps and load-time
    /// sizes it was loaded with (`bpftool prog show` prints it as hex).
    pub tag: u64,
}

impl ProgId {
    /// The tag as `bpftool` prints it.
    pub fn tag_hex(&self) -> String {
        format!("{:016x}", self.tag)
    }
}

/// An upgrade of the running program in place, pending until
/// [`Balancer::finish_upgrade`] swaps it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The program running before.
    pub from: ProgId,
    /// The embedded program, loaded against the pinned maps.
    pub to: ProgId,
    /// Maps recreated empty because their layout changed.
    pub recreated: Vec<&'static str>,
}

/// How [`Balancer::open_pinned_with`] treats what it finds.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions<'a> {
    /// Pinned maps of another layout: refuse (default) or recreate.
    pub on_layout_change: OnLayoutChange,
    /// The `lb-xdp` object to load (the embedded one, or a test variant).
    pub object: &'a [u8],
}

impl Default for OpenOptions<'_> {
    fn default() -> Self {
        Self {
            on_layout_change: OnLayoutChange::Refuse,
            object: BALANCER_OBJECT,
        }
    }
}

/// The loaded balancer program and typed handles on its maps.
pub struct Balancer {
    prog: Prog,
    sizes: Sizes,
    vips: HashMap<MapData, VipKey, VipMeta>,
    vip_addrs: HashMap<MapData, AddrKey, u32>,
    backends: Array<MapData, Backend>,
    conn: HashMap<MapData, FlowKey, ConnEntry>,
    conn4: HashMap<MapData, FlowKey4, ConnEntry>,
    config: Array<MapData, LbConfig>,
    stats: PerCpuArray<MapData, Counters>,
    filter_map: Array<MapData, u64>,
    /// What `filter_map` holds, derived from the VIP and address entries.
    filter: VipFilter,
    vip_stats: PerCpuArray<MapData, PktBytes>,
    backend_stats: PerCpuArray<MapData, PktBytes>,
    ring: RingMap,
    /// Only the program uses it; held so that its fd stays open for
    /// programs of the same object loaded later ([`Balancer::load_variant`]).
    _icmp_rate: aya::maps::Map,
    /// The same, for the new-flow budget.
    _new_flow_rate: aya::maps::Map,
    /// The capture switch and filter.
    capture: Array<MapData, CaptureFilter>,
    /// Only the program uses it (see `_icmp_rate`).
    _capture_pending: aya::maps::Map,
    /// The capture ring, while no capture holds it.
    capture_ring: Option<RingBuf<MapData>>,
    /// The program this daemon loads (its tag is what `lbctl status`
    /// compares the running program's with).
    embedded: ProgId,
    /// Set by [`Self::open_pinned_with`] for [`Origin::Upgraded`].
    pending: Option<Upgrade>,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

impl Balancer {
    /// Loads `lb_xdp` into the kernel (verifier included) with fresh maps of
    /// the given sizes. Not attached anywhere yet.
    pub fn load(sizes: Sizes) -> Result<Self, DataplaneError> {
        Self::load_with(sizes, None, BALANCER_OBJECT, &[])
    }

    /// Like [`Balancer::load`], from another build of the `lb-xdp` object:
    /// the bench's, which also holds cut-down variants of the packet path
    /// (see [`Balancer::load_variant`]).
    pub fn load_object(sizes: Sizes, object: &[u8]) -> Result<Self, DataplaneError> {
        Self::load_with(sizes, None, object, &[])
    }

    /// Loads another XDP program of the same object, sharing the balancer's
    /// maps (the bench's `lb_xdp_upto_*` variants). Only for a balancer
    /// loaded from an object, not adopted from pins.
    pub fn load_variant(&mut self, name: &str) -> Result<&mut Xdp, DataplaneError> {
        let Prog::Object(ebpf) = &mut self.prog else {
            return Err(DataplaneError::MissingMap("variant of an adopted program"));
        };
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingMap("variant program"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: "variant",
                source,
            })?;
        if prog.fd().is_err() {
            prog.load().map_err(|source| DataplaneError::Program {
                name: "variant",
                source,
            })?;
        }
        Ok(prog)
    }

    /// Opens the balancer pinned under `dir` (e.g. /sys/fs/bpf/lb) with the
    /// default [`OpenOptions`]: see [`Self::open_pinned_with`].
    pub fn open_pinned(sizes: Sizes, dir: &Path) -> Result<(Self, Origin), DataplaneError> {
        Self::open_pinned_with(sizes, dir, &OpenOptions::default())
    }

    /// Opens the balancer pinned under `dir`. Nothing pinned: loads the
    /// object, pins program, maps and the layout record ([`Origin::Loaded`]).
    /// Pinned (a restart, or a crash, so forwarding and the connection table
    /// carry on): checks the sizes and the layout record first, then loads
    /// the object against the pinned maps;
    /// * the same program (same kernel tag) is adopted as it runs
    ///   ([`Origin::Adopted`]);
    /// * another program is kept loaded and swapped in on the pinned link
    ///   by [`Self::finish_upgrade`] ([`Origin::Upgraded`]).
    ///
    /// Maps of another layout are refused with [`DataplaneError::LayoutChanged`]
    /// and nothing touched, unless every changed map is one the daemon
    /// rewrites from its state (then they are recreated, losing nothing) or
    /// `opts.on_layout_change` is [`OnLayoutChange::Recreate`].
    pub fn open_pinned_with(
        sizes: Sizes,
        dir: &Path,
        opts: &OpenOptions<'_>,
    ) -> Result<(Self, Origin), DataplaneError> {
        super::ensure_bpffs()?;
        let pin_err = |e: std::io::Error| DataplaneError::Pin(format!("{}: {e}", dir.display()));
        let maps_dir = dir.join("maps");
        std::fs::create_dir_all(&maps_dir).map_err(pin_err)?;
        let prog_pin = dir.join("prog");
        // A pinned program means a data plane to adopt or upgrade, even if
        // some maps are not pinned: a build that added maps finds the older
        // build's set (the layout comparison names the new ones).
        let pinned = prog_pin.exists() && maps_dir.join(lb_common::MAP_CONN4).exists();
        if !pinned {
            let mut lb = Self::load_with(sizes, Some(dir), opts.object, &[])?;
            lb.program()
                .pin(&prog_pin)
                .map_err(|e| DataplaneError::Pin(format!("{}: {e}", prog_pin.display())))?;
            layout::write(dir)?;
            return Ok((lb, Origin::Loaded));
        }
        // Everything that can refuse is asked before anything is written.
        check_pinned_sizes(&maps_dir, sizes)?;
        let diff = layout::compare(&maps_dir, layout::read(dir)?.as_deref())?;
        let recreate: Vec<&'static str> = if diff.is_same() {
            Vec::new()
        } else if diff.lossless() || opts.on_layout_change == OnLayoutChange::Recreate {
            diff.changed.iter().map(|c| c.name).collect()
        } else {
            return Err(DataplaneError::LayoutChanged(diff.message(dir)));
        };
        let running = super::attach::running_program(dir)
            .or_else(|| prog_id_of(&prog_pin))
            .ok_or_else(|| DataplaneError::Pin(format!("{}: unreadable", prog_pin.display())))?;
        // Loaded against the pinned maps (those kept): the verifier checks
        // the new program against them before anything changes.
        let mut lb = Self::load_with(sizes, Some(dir), opts.object, &recreate)?;
        if recreate.is_empty() && lb.embedded.tag == running.tag {
            // The same program: adopt the running one, drop the copy.
            let embedded = lb.embedded;
            // `lb_probe` stays: it was loaded against these very maps (the
            // kernel holds them for it). Our copy of `lb_xdp` goes.
            let Balancer {
                prog: Prog::Object(mut object),
                ..
            } = lb
            else {
                unreachable!("load_with returns a loaded object");
            };
            if let Some(p) = object.program_mut("lb_xdp") {
                let x: &mut Xdp = p.try_into().map_err(|source| DataplaneError::Program {
                    name: "lb_xdp",
                    source,
                })?;
                x.unload().map_err(|source| DataplaneError::Program {
                    name: "lb_xdp",
                    source,
                })?;
            }
            let prog = Xdp::from_pin(&prog_pin, aya_obj::programs::XdpAttachType::Interface)
                .map_err(|source| DataplaneError::Program {
                    name: "lb_xdp",
                    source,
                })?;
            let mut lb = Self::from_maps(Prog::Pinned(Box::new(prog), object), sizes, |name| {
                let data = MapData::from_pin(maps_dir.join(name)).map_err(map_err(name))?;
                aya::maps::Map::from_map_data(data).map_err(map_err(name))
            })?;
            lb.embedded = embedded;
            lb.rebuild_filter()?;
            return Ok((lb, Origin::Adopted));
        }
        if !diff.is_same() {
            layout::write(dir)?;
        }
        lb.pending = Some(Upgrade {
            from: running,
            to: lb.embedded,
            recreated: recreate,
        });
        Ok((lb, Origin::Upgraded))
    }

    /// The program this daemon carries (loaded from its object), whether or
    /// not it is the one attached.
    pub fn embedded_program(&self) -> ProgId {
        self.embedded
    }

    /// The upgrade [`Self::open_pinned_with`] prepared, if any.
    pub fn pending_upgrade(&self) -> Option<&Upgrade> {
        self.pending.as_ref()
    }

    /// Completes an [`Origin::Upgraded`] open: swaps the loaded program in
    /// on the link pinned under `dir` with one BPF_LINK_UPDATE (the kernel
    /// replaces the program pointer atomically: every packet runs either the
    /// old or the new program, none is missed, the link keeps its id), then
    /// pins it as `prog`. Call it once the maps hold the state (so recreated
    /// maps are filled before the new program sees a packet). `None`: there
    /// was nothing to upgrade.
    pub fn finish_upgrade(&mut self, dir: &Path) -> Result<Option<Upgrade>, DataplaneError> {
        let Some(up) = self.pending.take() else {
            return Ok(None);
        };
        super::attach::swap_on_pinned_link(self.program(), dir)?;
        // Re-pinned after the swap: a crash in between leaves `prog` naming
        // the old program, and the next start swaps again.
        let prog_pin = dir.join("prog");
        if prog_pin.exists() {
            std::fs::remove_file(&prog_pin)
                .map_err(|e| DataplaneError::Pin(format!("{}: {e}", prog_pin.display())))?;
        }
        self.program()
            .pin(&prog_pin)
            .map_err(|e| DataplaneError::Pin(format!("{}: {e}", prog_pin.display())))?;
        Ok(Some(up))
    }

    /// Loads `object` with maps of `sizes`; with `pin_dir`, reuses the maps
    /// pinned there (creating and pinning missing ones), except those in
    /// `recreate`, which are created empty and pinned in place of the old
    /// ones once the program passed the verifier.
    fn load_with(
        sizes: Sizes,
        pin_dir: Option<&Path>,
        object: &[u8],
        recreate: &[&'static str],
    ) -> Result<Self, DataplaneError> {
        use lb_common::*;
        sizes.validate()?;
        let pins: Vec<(&'static str, std::path::PathBuf)> = pin_dir
            .map(|d| {
                MAP_NAMES
                    .iter()
                    .filter(|n| !recreate.contains(n))
                    .map(|n| (*n, d.join("maps").join(n)))
                    .collect()
            })
            .unwrap_or_default();
        let mut loader = EbpfLoader::new();
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let reciprocal = ring_reciprocal(sizes.ring_size);
        let mut ebpf = loader
            .override_global(GLOBAL_RING_SIZE, &sizes.ring_size, true)
            .override_global(GLOBAL_RING_RECIPROCAL, &reciprocal, true)
            .map_max_entries(MAP_VIPS, sizes.max_vips)
            .map_max_entries(MAP_VIP_ADDRS, sizes.max_vips)
            .map_max_entries(MAP_RING, sizes.ring_elements())
            .map_max_entries(MAP_BACKENDS, sizes.max_backends)
            .map_max_entries(MAP_CONN, sizes.conn_table)
            .map_max_entries(MAP_CONN4, sizes.conn_table)
            .map_max_entries(MAP_VIP_STATS, sizes.max_vips)
            .map_max_entries(MAP_BACKEND_STATS, sizes.max_backends)
            .load(object)?;
        let prog: &mut Xdp = ebpf
            .program_mut("lb_xdp")
            .ok_or(DataplaneError::MissingMap("lb_xdp program"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: "lb_xdp",
                source,
            })?;
        prog.load().map_err(|source| DataplaneError::Program {
            name: "lb_xdp",
            source,
        })?;
        // The probe encapsulation now, while the map descriptors its
        // instructions name are open (they move out of `ebpf` below).
        let probe: &mut SchedClassifier = ebpf
            .program_mut(PROG_PROBE)
            .ok_or(DataplaneError::MissingMap("lb_probe program"))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: PROG_PROBE,
                source,
            })?;
        probe.load().map_err(|source| DataplaneError::Program {
            name: PROG_PROBE,
            source,
        })?;
        let mut maps = std::collections::HashMap::new();
        for name in MAP_NAMES {
            maps.insert(name, take(&mut ebpf, name)?);
        }
        if let Some(dir) = pin_dir {
            for name in recreate {
                let path = dir.join("maps").join(name);
                let map = maps.get(name).ok_or(DataplaneError::MissingMap(name))?;
                if path.exists() {
                    std::fs::remove_file(&path)
                        .map_err(|e| DataplaneError::Pin(format!("{}: {e}", path.display())))?;
                }
                map.pin(&path)
                    .map_err(|e| DataplaneError::Pin(format!("{}: {e}", path.display())))?;
            }
        }
        let mut lb = Self::from_maps(Prog::Object(Box::new(ebpf)), sizes, |name| {
            maps.remove(name).ok_or(DataplaneError::MissingMap(name))
        })?;
        // Maps reused from pins may hold entries already: derive the filter
        // from what is there (empty maps give an all-zero filter).
        lb.rebuild_filter()?;
        lb.embedded = prog_id_of_xdp(lb.program_ref()).unwrap_or_default();
        Ok(lb)
    }

    fn from_maps(
        prog: Prog,
        sizes: Sizes,
        mut take: impl FnMut(&'static str) -> Result<aya::maps::Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        use lb_common::*;
        let ring = match take(MAP_RING)? {
            aya::maps::Map::Array(data) => RingMap::new(data, sizes.ring_elements())?,
            _ => return Err(DataplaneError::MissingMap(MAP_RING)),
        };
        Ok(Self {
            vips: HashMap::try_from(take(MAP_VIPS)?).map_err(map_err(MAP_VIPS))?,
            vip_addrs: HashMap::try_from(take(MAP_VIP_ADDRS)?).map_err(map_err(MAP_VIP_ADDRS))?,
            backends: Array::try_from(take(MAP_BACKENDS)?).map_err(map_err(MAP_BACKENDS))?,
            conn: HashMap::try_from(take(MAP_CONN)?).map_err(map_err(MAP_CONN))?,
            conn4: HashMap::try_from(take(MAP_CONN4)?).map_err(map_err(MAP_CONN4))?,
            config: Array::try_from(take(MAP_CONFIG)?).map_err(map_err(MAP_CONFIG))?,
            stats: PerCpuArray::try_from(take(MAP_STATS)?).map_err(map_err(MAP_STATS))?,
            filter_map: Array::try_from(take(MAP_VIP_FILTER)?).map_err(map_err(MAP_VIP_FILTER))?,
            filter: VipFilter::default(),
            vip_stats: PerCpuArray::try_from(take(MAP_VIP_STATS)?)
                .map_err(map_err(MAP_VIP_STATS))?,
            backend_stats: PerCpuArray::try_from(take(MAP_BACKEND_STATS)?)
                .map_err(map_err(MAP_BACKEND_STATS))?,
            ring,
            _icmp_rate: take(MAP_ICMP_RATE)?,
            _new_flow_rate: take(MAP_NEW_FLOW_RATE)?,
            capture: Array::try_from(take(MAP_CAPTURE)?).map_err(map_err(MAP_CAPTURE))?,
            _capture_pending: take(MAP_CAPTURE_PENDING)?,
            capture_ring: Some(
                RingBuf::try_from(take(MAP_CAPTURE_RING)?).map_err(map_err(MAP_CAPTURE_RING))?,
            ),
            prog,
            sizes,
            embedded: ProgId::default(),
            pending: None,
        })
    }

    /// The balancer program (for attaching or test runs).
    pub fn program(&mut self) -> &mut Xdp {
        match &mut self.prog {
            // Checked to exist and be XDP in `load_with`.
            Prog::Object(ebpf) => ebpf
                .program_mut("lb_xdp")
                .and_then(|p| <&mut Xdp>::try_from(p).ok())
                .expect("lb_xdp was loaded as an XDP program"),
            Prog::Pinned(p, _) => p.as_mut(),
        }
    }

    /// The balancer program, shared: enough for BPF_PROG_TEST_RUN (which
    /// takes the program by reference), e.g. while the state layer owns
    /// this balancer.
    pub fn program_ref(&self) -> &Xdp {
        match &self.prog {
            // Checked to exist and be XDP in `load_with`.
            Prog::Object(ebpf) => ebpf
                .program("lb_xdp")
                .and_then(|p| <&Xdp>::try_from(p).ok())
                .expect("lb_xdp was loaded as an XDP program"),
            Prog::Pinned(p, _) => p.as_ref(),
        }
    }

    /// `lb_probe`, the TC program that encapsulates `via-vip` health probes
    /// (loaded with the balancer, sharing its maps): for attaching, or for
    /// BPF_PROG_TEST_RUN in tests.
    pub fn probe_program(&mut self) -> &mut SchedClassifier {
        let object = match &mut self.prog {
            Prog::Object(e) | Prog::Pinned(_, e) => e,
        };
        object
            .program_mut(PROG_PROBE)
            .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
            .expect("lb_probe was loaded as a TC program")
    }

    /// Attaches `lb_probe` to the egress of `interface` (the one `lb_xdp`
    /// serves): packets this host sends with a probe mark
    /// ([`lb_common::probe_mark`]) to a VIP address leave encapsulated to
    /// the backend the mark names. The attachment (a TCX link on kernels
    /// from 6.6, a clsact filter before) lasts while this balancer lives and
    /// is not pinned: probes come from this daemon, so they stop with it.
    pub fn attach_probe_encap(&mut self, interface: &str) -> Result<(), DataplaneError> {
        let prog = self.probe_program();
        let attached = match prog.attach(interface, TcAttachType::Egress) {
            Ok(id) => Ok(id),
            // Kernels before 6.6 attach through a clsact qdisc, which may
            // have to be added first (adding one that exists is refused).
            Err(first) => {
                let _ = aya::programs::tc::qdisc_add_clsact(interface);
                prog.attach(interface, TcAttachType::Egress)
                    .map_err(|_| first)
            }
        };
        attached
            .map(drop)
            .map_err(|source| DataplaneError::Program {
                name: PROG_PROBE,
                source,
            })
    }

    /// Starts a capture: hands out the capture ring and writes `filter`
    /// (with [`lb_common::CAPTURE_F_ACTIVE`]), after which `lb_xdp` copies
    /// matching frames into the ring. [`DataplaneError::CaptureBusy`] while
    /// another capture holds the ring.
    pub fn start_capture(
        &mut self,
        filter: &CaptureFilter,
    ) -> Result<RingBuf<MapData>, DataplaneError> {
        let mut ring = self
            .capture_ring
            .take()
            .ok_or(DataplaneError::CaptureBusy)?;
        // Whatever an earlier capture left unread is not this capture's.
        while ring.next().is_some() {}
        let f = CaptureFilter {
            flags: filter.flags | lb_common::CAPTURE_F_ACTIVE,
            ..*filter
        };
        if let Err(e) = self.capture.set(0, f, 0) {
            self.capture_ring = Some(ring);
            return Err(map_err(lb_common::MAP_CAPTURE)(e));
        }
        Ok(ring)
    }

    /// Ends the capture that holds `ring`: the program stops copying (one
    /// map write), and the ring is kept for the next capture.
    pub fn stop_capture(&mut self, ring: RingBuf<MapData>) -> Result<(), DataplaneError> {
        self.capture_ring = Some(ring);
        self.capture
            .set(0, CaptureFilter::default(), 0)
            .map_err(map_err(lb_common::MAP_CAPTURE))
    }

    /// The sizes the maps were created with.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// Writes the node settings.
    pub fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        self.config
            .set(0, cfg, 0)
            .map_err(map_err(lb_common::MAP_CONFIG))
    }

    /// Reads the node settings.
    pub fn config(&self) -> Result<LbConfig, DataplaneError> {
        self.config
            .get(&0, 0)
            .map_err(map_err(lb_common::MAP_CONFIG))
    }

    /// Creates or replaces a VIP entry (one atomic map update).
    pub fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.vips
            .insert(key, meta, 0)
            .map_err(map_err(lb_common::MAP_VIPS))?;
        let w = self.filter.set_vip(key, meta.flags);
        self.write_filter(w)
    }

    /// Removes a VIP entry.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.vips
            .remove(key)
            .map_err(map_err(lb_common::MAP_VIPS))?;
        let w = self.filter.remove_vip(key);
        self.write_filter(w)
    }

    fn write_filter(&mut self, w: Option<(u32, u64)>) -> Result<(), DataplaneError> {
        let Some((index, word)) = w else {
            return Ok(());
        };
        self.filter_map
            .set(index, word, 0)
            .map_err(map_err(lb_common::MAP_VIP_FILTER))
    }

    /// Recomputes the VIP filter from the VIP and address maps and writes
    /// all of it (adopted maps: whatever wrote them before us).
    fn rebuild_filter(&mut self) -> Result<(), DataplaneError> {
        let addrs = self.vip_addr_entries()?.into_iter().map(|(k, _)| k);
        let vips = self.vip_entries()?.into_iter().map(|(k, m)| (k, m.flags));
        self.filter = VipFilter::from_entries(addrs, vips);
        for (i, w) in self.filter.words().to_vec().into_iter().enumerate() {
            self.filter_map
                .set(i as u32, w, 0)
                .map_err(map_err(lb_common::MAP_VIP_FILTER))?;
        }
        Ok(())
    }

    /// The VIP filter's two bits for an address (tests, diagnostics).
    pub fn filter_bits(&self, key: &AddrKey) -> u64 {
        self.filter.bits(key)
    }

    /// Reads a VIP entry.
    pub fn vip(&self, key: &VipKey) -> Option<VipMeta> {
        self.vips.get(key, 0).ok()
    }

    /// Every VIP entry in the map (for adoption after a restart).
    pub fn vip_entries(&self) -> Result<Vec<(VipKey, VipMeta)>, DataplaneError> {
        self.vips
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err(lb_common::MAP_VIPS))
    }

    /// Every VIP-address refcount in the map.
    pub fn vip_addr_entries(&self) -> Result<Vec<(AddrKey, u32)>, DataplaneError> {
        self.vip_addrs
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err(lb_common::MAP_VIP_ADDRS))
    }

    /// One ring position (no copy of the half).
    pub fn ring_slot(&self, vip_index: u32, half: u32, pos: u32) -> u32 {
        let i = lb_common::ring_index(vip_index, half, pos, self.sizes.ring_size) as usize;
        self.ring.get(i).unwrap_or(lb_common::SLOT_NONE)
    }

    /// Marks an address as carrying `count` VIPs (0 removes it).
    pub fn set_vip_addr(&mut self, key: &AddrKey, count: u32) -> Result<(), DataplaneError> {
        if count == 0 {
            match self.vip_addrs.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(lb_common::MAP_VIP_ADDRS)(e)),
            }
        } else {
            self.vip_addrs
                .insert(key, count, 0)
                .map_err(map_err(lb_common::MAP_VIP_ADDRS))?;
        }
        let w = self.filter.set_addr(key, count > 0);
        self.write_filter(w)
    }

    /// Writes a backend slot.
    pub fn set_backend(&mut self, slot: u32, b: &Backend) -> Result<(), DataplaneError> {
        self.sizes.check_slot(slot)?;
        self.backends
            .set(slot, b, 0)
            .map_err(map_err(lb_common::MAP_BACKENDS))
    }

    /// Reads a backend slot.
    pub fn backend(&self, slot: u32) -> Result<Backend, DataplaneError> {
        self.sizes.check_slot(slot)?;
        self.backends
            .get(&slot, 0)
            .map_err(map_err(lb_common::MAP_BACKENDS))
    }

    /// Makes half `half` of VIP `vip_index`'s ring equal `table` (backend slots,
    /// `ring_size` of them), storing only positions that differ. Returns how
    /// many changed. Publish it by flipping the VIP's `ring_half`.
    pub fn write_ring_half(
        &mut self,
        vip_index: u32,
        half: u32,
        table: &[u32],
    ) -> Result<usize, DataplaneError> {
        self.write_ring_changes(vip_index, half, table, &mut Vec::new())
    }

    /// [`Self::write_ring_half`], appending each changed position with the
    /// slot it held to `changed` (what undoes the write).
    pub fn write_ring_changes(
        &mut self,
        vip_index: u32,
        half: u32,
        table: &[u32],
        changed: &mut Vec<(u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let start = ring::half_start(&self.sizes, vip_index, half, table.len())?;
        let mut mem = self.ring.half(start, table.len())?;
        Ok(ring::write_diff(&mut mem, table, changed))
    }

    /// Whether half `half` of VIP `vip_index`'s ring holds `table`, compared
    /// in place.
    pub fn ring_half_equals(&self, vip_index: u32, half: u32, table: &[u32]) -> bool {
        ring::half_start(&self.sizes, vip_index, half, table.len())
            .is_ok_and(|start| self.ring.equals(start, table))
    }

    /// Reads one ring half back.
    pub fn ring_half(&self, vip_index: u32, half: u32) -> Vec<u32> {
        let m = self.sizes.ring_size;
        let base = lb_common::ring_index(vip_index, half, 0, m) as usize;
        (0..m as usize)
            .map(|p| self.ring.get(base + p).unwrap_or(0))
            .collect()
    }

    /// Global counters summed over CPUs, indexed by [`lb_common::Stat`].
    pub fn stats(&self) -> Result<[u64; STAT_COUNT as usize], DataplaneError> {
        let mut out = [0u64; STAT_COUNT as usize];
        let per_cpu = self
            .stats
            .get(&0, 0)
            .map_err(map_err(lb_common::MAP_STATS))?;
        for cpu in per_cpu.iter() {
            for (o, v) in out.iter_mut().zip(cpu.0.iter()) {
                *o += v;
            }
        }
        Ok(out)
    }

    /// Traffic of a VIP, summed over CPUs.
    pub fn vip_stats(&self, index: u32) -> Result<PktBytes, DataplaneError> {
        sum_pkt_bytes(&self.vip_stats, index, lb_common::MAP_VIP_STATS)
    }

    /// Traffic of a backend slot, summed over CPUs.
    pub fn backend_stats(&self, slot: u32) -> Result<PktBytes, DataplaneError> {
        sum_pkt_bytes(&self.backend_stats, slot, lb_common::MAP_BACKEND_STATS)
    }

    /// Zeroes a VIP's or slot's counters (when the index is reused).
    pub fn clear_stats(
        &mut self,
        vip_index: Option<u32>,
        slot: Option<u32>,
    ) -> Result<(), DataplaneError> {
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Mmap(e))?;
        let zero = || {
            aya::maps::PerCpuValues::try_from(vec![PktBytes::default(); ncpu])
                .map_err(DataplaneError::Mmap)
        };
        if let Some(i) = vip_index {
            self.vip_stats
                .set(i, zero()?, 0)
                .map_err(map_err(lb_common::MAP_VIP_STATS))?;
        }
        if let Some(s) = slot {
            self.backend_stats
                .set(s, zero()?, 0)
                .map_err(map_err(lb_common::MAP_BACKEND_STATS))?;
        }
        Ok(())
    }

    /// The connection entry of an IPv6 flow (`None`: not in the table).
    pub fn conn_entry(&self, key: &FlowKey) -> Option<ConnEntry> {
        self.conn.get(key, 0).ok()
    }

    /// The connection entry of an IPv4 flow (`None`: not in the table).
    pub fn conn_entry4(&self, key: &FlowKey4) -> Option<ConnEntry> {
        self.conn4.get(key, 0).ok()
    }

    /// The connection entry of an IPv4 flow: `Ok(None)` when there is none,
    /// an error when the map could not be read.
    pub fn lookup_conn4(&self, key: &FlowKey4) -> Result<Option<ConnEntry>, DataplaneError> {
        match self.conn4.get(key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(lb_common::MAP_CONN4)(e)),
        }
    }

    /// The connection entry of an IPv6 flow, as [`Self::lookup_conn4`].
    pub fn lookup_conn6(&self, key: &FlowKey) -> Result<Option<ConnEntry>, DataplaneError> {
        match self.conn.get(key, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(lb_common::MAP_CONN)(e)),
        }
    }
}

/// Pinned maps must have the sizes the configuration asks for: the program
/// indexes the ring with them. Resizing needs a teardown.
fn check_pinned_sizes(maps_dir: &Path, want: Sizes) -> Result<(), DataplaneError> {
    use lb_common::*;
    let max = |name: &'static str| {
        aya::maps::MapInfo::from_pin(maps_dir.join(name))
            .map(|i| i.max_entries())
            .map_err(map_err(name))
    };
    let got_ring = max(MAP_RING)?;
    let got_vips = max(MAP_VIPS)?;
    let got_backends = max(MAP_BACKENDS)?;
    let got_conn = max(MAP_CONN)?.min(max(MAP_CONN4)?);
    if got_ring != want.ring_elements()
        || got_vips != want.max_vips
        || got_backends != want.max_backends
        || got_conn != want.conn_table
    {
        return Err(DataplaneError::Sizes(format!(
            "pinned maps were created with max_vips={got_vips} max_backends={got_backends} \
             conn_table={got_conn} ring elements={got_ring}, the configuration asks for \
             max_vips={} max_backends={} conn_table={} ring elements={}; \
             run `lb-daemon teardown` to recreate them",
            want.max_vips,
            want.max_backends,
            want.conn_table,
            want.ring_elements()
        )));
    }
    Ok(())
}

/// Id and tag of a loaded program.
pub(crate) fn prog_id_of_xdp(prog: &Xdp) -> Option<ProgId> {
    let info = prog.info().ok()?;
    Some(ProgId {
        id: info.id(),
        tag: info.tag(),
    })
}

/// Id and tag of the program pinned at `path`.
fn prog_id_of(path: &Path) -> Option<ProgId> {
    let info = aya::programs::ProgramInfo::from_pin(path).ok()?;
    Some(ProgId {
        id: info.id(),
        tag: info.tag(),
    })
}

fn sum_pkt_bytes(
    map: &PerCpuArray<MapData, PktBytes>,
    index: u32,
    name: &'static str,
) -> Result<PktBytes, DataplaneError> {
    let v = map.get(&index, 0).map_err(map_err(name))?;
    Ok(v.iter().fold(PktBytes::default(), |a, b| PktBytes {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }))
}
