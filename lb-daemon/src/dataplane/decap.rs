//! `lb_decap` (and `lb_pass`) for backends without ipip/ip6tnl devices.

use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::Xdp,
};
use lb_common::{AddrKey, DECAP_STAT_COUNT};

use super::{DataplaneError, object::DECAP_OBJECT};

/// The loaded decap object.
pub struct Decap {
    ebpf: Ebpf,
    addrs: HashMap<MapData, AddrKey, u32>,
    stats: PerCpuArray<MapData, u64>,
}

impl Decap {
    /// Loads `lb_decap` and `lb_pass` (verified, not attached).
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = Ebpf::load(DECAP_OBJECT)?;
        for name in ["lb_decap", "lb_pass"] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingMap("lb_decap program"))?
                .try_into()
                .map_err(|source| DataplaneError::Program {
                    name: "lb_decap",
                    source,
                })?;
            prog.load().map_err(|source| DataplaneError::Program {
                name: "lb_decap",
                source,
            })?;
        }
        let addrs = HashMap::try_from(
            ebpf.take_map(lb_common::MAP_DECAP_ADDRS)
                .ok_or(DataplaneError::MissingMap(lb_common::MAP_DECAP_ADDRS))?,
        )
        .map_err(|source| DataplaneError::Map {
            name: lb_common::MAP_DECAP_ADDRS,
            source,
        })?;
        let stats = PerCpuArray::try_from(
            ebpf.take_map(lb_common::MAP_DECAP_STATS)
                .ok_or(DataplaneError::MissingMap(lb_common::MAP_DECAP_STATS))?,
        )
        .map_err(|source| DataplaneError::Map {
            name: lb_common::MAP_DECAP_STATS,
            source,
        })?;
        Ok(Self { ebpf, addrs, stats })
    }

    /// The decap program.
    pub fn decap_program(&mut self) -> &mut Xdp {
        self.prog("lb_decap")
    }

    /// The pass-only program.
    pub fn pass_program(&mut self) -> &mut Xdp {
        self.prog("lb_pass")
    }

    fn prog(&mut self, name: &str) -> &mut Xdp {
        self.ebpf
            .program_mut(name)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("loaded as an XDP program in Decap::load")
    }

    /// Accepts IP-in-IP packets addressed to `key`.
    pub fn add_address(&mut self, key: &AddrKey) -> Result<(), DataplaneError> {
        self.addrs
            .insert(key, 1, 0)
            .map_err(|source| DataplaneError::Map {
                name: lb_common::MAP_DECAP_ADDRS,
                source,
            })
    }

    /// Counters summed over CPUs, indexed by [`lb_common::DecapStat`].
    pub fn stats(&self) -> Result<[u64; DECAP_STAT_COUNT as usize], DataplaneError> {
        let mut out = [0u64; DECAP_STAT_COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            let v = self
                .stats
                .get(&(i as u32), 0)
                .map_err(|source| DataplaneError::Map {
                    name: lb_common::MAP_DECAP_STATS,
                    source,
                })?;
            *o = v.iter().sum();
        }
        Ok(out)
    }
}
