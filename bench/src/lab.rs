//! The real `lb_xdp` loaded with the daemon's production map sizes and a
//! small service configuration, written the way the daemon writes it
//! (backend slots, a Maglev table per VIP published by a ring-half flip).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::Context as _;
use lb_common::{AddrKey, Backend, STAT_COUNT, Stat, VipKey, VipMeta};
use lb_daemon::{
    dataplane::{Balancer, BalancerConfig, Sizes},
    maglev,
};

use crate::frames::{GW_MAC, LB_MAC};

/// IPv4 VIP address of the TCP and UDP services.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 10);
/// IPv4 VIP whose backends are IPv6 (IPv4-in-IPv6).
pub const VIP4_TO6: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 11);
/// IPv6 VIP address.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x10);
/// Backends per VIP: a realistic ring, not a one-backend shortcut.
pub const BACKENDS_PER_VIP: u16 = 100;

pub use lb_daemon::vip::map_addr;

/// VIP key of `addr:port/proto`.
pub fn vip_key(a: IpAddr, port: u16, proto: u8) -> VipKey {
    let proto = lb_daemon::vip::Proto::from_number(proto).expect("tcp or udp");
    lb_daemon::vip::VipSpec::new(a, port, proto).key()
}

/// The balancer under test.
pub struct Lab {
    /// The loaded program and its maps.
    pub lb: Balancer,
    next_vip: u32,
    next_slot: u32,
    addr_counts: HashMap<AddrKey, u32>,
}

impl Lab {
    /// Loads `lb_xdp` with the daemon's default sizes (ring 65537, 64 VIPs,
    /// 16384 backend slots) and a `conn_table`-flow connection table, and
    /// configures the services every benchmark uses.
    pub fn new(conn_table: u32) -> anyhow::Result<Self> {
        let sizes = Sizes {
            conn_table,
            ..Sizes::default()
        };
        let mut lb = Balancer::load_object(sizes, crate::objects::BALANCER)
            .context("loading lb_xdp (the bench build, with its variants)")?;
        let cfg = BalancerConfig {
            gateway_mac: GW_MAC,
            if_mac: LB_MAC,
            mtu: 1500,
            hash_seed: 0x5eed,
            v4_src: "198.19.128.0".parse()?,
            v4_src_len: 17,
            v6_src: "fd00:5::".parse()?,
            v6_src_len: 96,
            // The new-flow budget is asked on every insert (as in
            // production), but never runs out: the SYN cases send millions
            // of new flows per second, far past any real limit, and must
            // time the insert, not the unpinned path.
            new_flow_rate: u32::MAX,
            ..BalancerConfig::default()
        };
        lb.set_config(&cfg.to_map()?)?;
        let mut lab = Self {
            lb,
            next_vip: 0,
            next_slot: 1,
            addr_counts: HashMap::new(),
        };
        let n = BACKENDS_PER_VIP;
        let v4 = |third: u8| -> Vec<IpAddr> {
            (1..=n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(198, 19, third, i as u8)))
                .collect()
        };
        let v6 = |group: u16| -> Vec<IpAddr> {
            (1..=n)
                .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x19, group, 0, 0, 0, 0, i)))
                .collect()
        };
        lab.vip(VIP4.into(), 80, lb_common::PROTO_TCP, &v4(1))?;
        lab.vip(VIP4.into(), 53, lb_common::PROTO_UDP, &v4(2))?;
        lab.vip(VIP6.into(), 80, lb_common::PROTO_TCP, &v6(0))?;
        lab.vip(VIP4_TO6.into(), 80, lb_common::PROTO_TCP, &v6(1))?;
        Ok(lab)
    }

    /// Adds a VIP with `backends` (weight 100 each): slots, Maglev table in
    /// the inactive half, then the VIP entry naming that half.
    pub fn vip(
        &mut self,
        a: IpAddr,
        port: u16,
        proto: u8,
        backends: &[IpAddr],
    ) -> anyhow::Result<u32> {
        let index = self.next_vip;
        self.next_vip += 1;
        let mut slots = Vec::with_capacity(backends.len());
        for &b in backends {
            let (addr, family) = map_addr(b);
            let slot = self.next_slot;
            self.next_slot += 1;
            self.lb
                .set_backend(slot, &Backend::valid(addr, family, 1, index))?;
            slots.push(slot);
        }
        let members: Vec<maglev::SlotMember> = backends
            .iter()
            .zip(&slots)
            .map(|(&address, &slot)| maglev::SlotMember {
                address,
                weight: 100,
                slot,
            })
            .collect();
        let table = maglev::slot_table(self.lb.sizes().ring_size, &members)?;
        self.lb.write_ring_half(index, 1, &table)?;
        self.lb.set_vip(
            &vip_key(a, port, proto),
            &VipMeta {
                index,
                flags: 0,
                ring_half: 1,
                _pad: 0,
            },
        )?;
        let ak = lb_daemon::vip::addr_key(a);
        let n = self.addr_counts.entry(ak).or_default();
        *n += 1;
        self.lb.set_vip_addr(&ak, *n)?;
        Ok(index)
    }

    /// The global counters, summed over CPUs.
    pub fn stats(&self) -> anyhow::Result<[u64; STAT_COUNT as usize]> {
        Ok(self.lb.stats()?)
    }
}

/// Per-counter difference `after - before`, named.
pub fn delta(
    before: &[u64; STAT_COUNT as usize],
    after: &[u64; STAT_COUNT as usize],
) -> Vec<(Stat, u64)> {
    Stat::ALL
        .iter()
        .map(|&s| {
            let i = s as usize;
            (s, after[i].wrapping_sub(before[i]))
        })
        .collect()
}
