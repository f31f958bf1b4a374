//! `state.json` in the state directory: the desired state including the VIP
//! indices and backend slots it holds, so a restarted daemon can adopt the
//! pinned maps without moving anything, and the gateway MAC set over the API.
//!
//! Written atomically after every accepted mutation: a temporary file in the
//! same directory (so the rename cannot cross filesystems), fsync, rename over
//! the old file, fsync the directory (so the rename itself survives a power
//! cut). A reader sees the old or the new state, never a torn one.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use lb_api::{BackendHealth, HealthCheck, MacAddr};
use serde::{Deserialize, Serialize};

use super::{
    StateError,
    model::{Member, Model, Vip},
    validate,
};
use crate::vip::{VipFlags, VipSpec};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";
const TMP_FILE: &str = ".state.json.tmp";
const VERSION: u32 = 1;

/// On-disk layout, version 1. Kept apart from the in-memory model so the
/// file format changes only on purpose.
#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    vips: Vec<VipV1>,
    /// Added within version 1: absent in older files (no gateway was set
    /// over the API, or it sat in a file of its own), and ignored by older
    /// daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<MacAddr>,
}

#[derive(Serialize, Deserialize)]
struct VipV1 {
    vip: VipSpec,
    #[serde(default)]
    flags: VipFlags,
    index: u32,
    #[serde(default)]
    backends: Vec<BackendV1>,
    /// Added within version 1: absent = no health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<HealthCheck>,
}

#[derive(Serialize, Deserialize)]
struct BackendV1 {
    address: IpAddr,
    weight: u32,
    slot: u32,
    /// Added within version 1: the weight before a drain that has not ended
    /// (absent: not draining; older daemons ignore it).
    #[serde(default, skip_serializing_if = "is_zero")]
    drain_weight: u32,
    /// Added within version 1: absent = up, never probed. Kept so a
    /// restarted daemon does not flap a down backend back into the ring.
    #[serde(default, skip_serializing_if = "is_default")]
    health: BackendHealth,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_default(h: &BackendHealth) -> bool {
    *h == BackendHealth::default()
}

/// Where the state is persisted.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state; `None` if there is no state file yet.
    pub fn load(&self) -> Result<Option<Model>, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StateError::Internal(format!(
                    "reading state file {}: {e}",
                    path.display()
                )));
            }
        };
        decode(&bytes).map(Some).map_err(|why| {
            StateError::FailedPrecondition(format!(
                "state file {} is corrupt: {why} (fix or move it away; the maps are untouched)",
                path.display()
            ))
        })
    }

    /// Writes the state atomically.
    pub fn save(&self, model: &Model) -> Result<(), StateError> {
        let fail = |what: &str, e: std::io::Error| {
            StateError::Internal(format!("{what} {}: {e}", self.dir.display()))
        };
        let mut json = serde_json::to_vec_pretty(&encode(model))
            .map_err(|e| StateError::Internal(format!("encoding the state: {e}")))?;
        json.push(b'\n');
        fs::create_dir_all(&self.dir).map_err(|e| fail("creating state directory", e))?;
        let tmp = self.dir.join(TMP_FILE);
        write_synced(&tmp, &json).map_err(|e| fail("writing the state file in", e))?;
        fs::rename(&tmp, self.path()).map_err(|e| fail("renaming the state file in", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("syncing state directory", e))
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn encode(model: &Model) -> FileV1 {
    FileV1 {
        version: VERSION,
        vips: model
            .vips
            .values()
            .map(|v| VipV1 {
                vip: v.spec,
                flags: v.flags,
                index: v.index,
                backends: v
                    .backends
                    .iter()
                    .map(|(a, m)| BackendV1 {
                        address: *a,
                        weight: m.weight,
                        slot: m.slot,
                        drain_weight: m.drain_weight,
                        health: m.health,
                    })
                    .collect(),
                health: v.health.clone(),
            })
            .collect(),
        gateway: model.gateway,
    }
}

/// Parses and checks a state file's contents. Index and slot ranges are
/// checked against the data plane's sizes when the state is opened.
fn decode(bytes: &[u8]) -> Result<Model, String> {
    let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!(
            "version {} (this daemon reads version {VERSION})",
            file.version
        ));
    }
    let mut vips = BTreeMap::new();
    for v in file.vips {
        validate::check_vip(&v.vip).map_err(|e| e.to_string())?;
        let mut backends = BTreeMap::new();
        for b in v.backends {
            validate::check_backend_address(&v.vip, b.address).map_err(|e| e.to_string())?;
            validate::check_weight(&v.vip, b.address, b.weight).map_err(|e| e.to_string())?;
            validate::check_weight(&v.vip, b.address, b.drain_weight).map_err(|e| e.to_string())?;
            let m = Member {
                weight: b.weight,
                slot: b.slot,
                // A weight above 0 ends any drain.
                drain_weight: if b.weight > 0 { 0 } else { b.drain_weight },
                health: b.health,
            };
            if backends.insert(b.address, m).is_some() {
                return Err(format!(
                    "backend {} listed twice in VIP {}",
                    b.address, v.vip
                ));
            }
        }
        if let Some(c) = &v.health {
            c.check(&v.vip).map_err(|e| format!("VIP {}: {e}", v.vip))?;
        }
        let vip = Vip {
            spec: v.vip,
            flags: v.flags,
            index: v.index,
            backends,
            health: v.health,
        };
        if vips.insert(v.vip, vip).is_some() {
            return Err(format!("VIP {} listed twice", v.vip));
        }
    }
    // A gateway that parsed is a unicast MAC: `MacAddr` refuses the rest.
    Ok(Model {
        vips,
        gateway: file.gateway,
    })
}
