//! `lb_decap` (and `lb_pass`) for backends without ipip/ip6tnl devices.

use aya::{
    Ebpf, EbpfLoader,
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
    /// Loads `lb_decap` and `lb_pass` (verified, not attached), decapsulating
    /// GUE on [`lb_common::DEFAULT_GUE_PORT`] besides IP-in-IP.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with_gue_port(lb_common::DEFAULT_GUE_PORT)
    }

    /// Loads `lb_decap` and `lb_pass`, decapsulating GUE arriving on UDP
    /// port `gue_port` (0: IP-in-IP only). The port is a load-time constant
    /// of the program, not a map: it never changes while attached.
    pub fn load_with_gue_port(gue_port: u16) -> Result<Self, DataplaneError> {
        let raw = u32::from(gue_port.to_be());
        let mut ebpf = EbpfLoader::new()
            .override_global(lb_common::GLOBAL_DECAP_GUE_PORT, &raw, true)
            .load(DECAP_OBJECT)?;
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

    /// Attaches `lb_decap` (or, with `pass_only`, `lb_pass`) to `interface`
    /// and pins the link and the maps under `dir`, so it keeps running after
    /// this process exits and its counters stay readable
    /// ([`Decap::pinned_stats`]). Native mode when the driver has it.
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        pass_only: bool,
        dir: &std::path::Path,
    ) -> Result<(), DataplaneError> {
        use aya::maps::IterableMap as _;
        let err = |e: String| DataplaneError::Attach {
            interface: interface.to_string(),
            reason: e,
        };
        super::ensure_bpffs()?;
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let link_pin = dir.join("link");
        if link_pin.exists() {
            return Err(err(format!(
                "already attached ({} exists); detach first",
                link_pin.display()
            )));
        }
        let prog = if pass_only {
            self.pass_program()
        } else {
            self.decap_program()
        };
        super::attach::attach_and_pin(prog, interface, aya::programs::XdpMode::Driver, &link_pin)
            .or_else(|_| {
            super::attach::attach_and_pin(prog, interface, aya::programs::XdpMode::Skb, &link_pin)
        })?;
        for (map, name) in [
            (self.addrs.map(), lb_common::MAP_DECAP_ADDRS),
            (self.stats.map(), lb_common::MAP_DECAP_STATS),
        ] {
            map.pin(dir.join(name))
                .map_err(|e| DataplaneError::Pin(format!("{name}: {e}")))?;
        }
        Ok(())
    }

    /// Counters of a decap program pinned under `dir`.
    pub fn pinned_stats(
        dir: &std::path::Path,
    ) -> Result<[u64; DECAP_STAT_COUNT as usize], DataplaneError> {
        let name = lb_common::MAP_DECAP_STATS;
        let map_err = |source| DataplaneError::Map { name, source };
        let data = MapData::from_pin(dir.join(name)).map_err(map_err)?;
        let stats: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(aya::maps::Map::from_map_data(data).map_err(map_err)?)
                .map_err(map_err)?;
        let mut out = [0u64; DECAP_STAT_COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = stats.get(&(i as u32), 0).map_err(map_err)?.iter().sum();
        }
        Ok(out)
    }

    /// Detaches a decap program pinned under `dir` and removes its pins.
    pub fn detach_pinned(dir: &std::path::Path) -> Result<(), DataplaneError> {
        let link_pin = dir.join("link");
        if link_pin.exists() {
            let link = aya::programs::links::PinnedLink::from_pin(&link_pin)
                .map_err(|e| DataplaneError::Pin(e.to_string()))?;
            drop(
                link.unpin()
                    .map_err(|e| DataplaneError::Pin(e.to_string()))?,
            );
        }
        for name in [lb_common::MAP_DECAP_ADDRS, lb_common::MAP_DECAP_STATS] {
            let p = dir.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| DataplaneError::Pin(e.to_string()))?;
            }
        }
        let _ = std::fs::remove_dir(dir);
        Ok(())
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
