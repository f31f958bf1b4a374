//! The `[[vip]]` tables of a TOML file: the VIPs, their flags, backends and
//! weights, as the daemon's configuration file seeds them and as `lbctl
//! export` writes and `lbctl apply` reads them. One parser for all three, so
//! a file the daemon accepts is one `lbctl apply` accepts, and the other way
//! round.
//!
//! ```toml
//! [[vip]]
//! address = "198.18.100.10:80/tcp"
//! flags = ["no-sport"]          # optional; "no-sport", "no-conntrack"
//! backends = [
//!   { address = "198.19.0.11" },              # weight 100
//!   { address = "198.19.0.12", weight = 50 }, # 0..=65535, 0 drains
//! ]
//! ```
//!
//! Every error names the file, the line and the dotted key
//! (`vip[1].backends[0].weight`): values are parsed by their types' own
//! `Deserialize` impls, so the toml crate reports where they sit, and the
//! checks across values ([`check_vips`]) look the key's position up in the
//! parsed document ([`Source`]). Unknown keys are errors. What depends on a
//! node (map sizes, what else the node serves) is not checked here: the
//! daemon checks its sizes at start-up, and a daemon refuses a call that
//! does not fit.

mod health;
mod render;
mod span;

use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned, de::IgnoredAny};
use toml::de::DeTable;

use crate::{BackendSpec, DEFAULT_WEIGHT, MAX_WEIGHT, VipFlags, VipInfo, VipSpec, address_problem};

pub use health::{Expect, HealthConfig, KindName, Millis};
pub use render::to_toml;
pub use span::{Seg, Source, k};

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or its values are not valid.
    #[error("{origin}:{}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default())]
    Invalid {
        /// The file name (or a placeholder such as `<config>` for a string).
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key, e.g. `vip[1].backends[0].weight`.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

/// One `[[vip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// `ADDR:PORT/PROTO`.
    pub address: VipSpec,
    /// Flag names: `no-sport`, `no-conntrack`.
    #[serde(default)]
    pub flags: VipFlags,
    /// Backends.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Health check (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
}

impl VipConfig {
    /// The backends as requests name them.
    pub fn backend_specs(&self) -> Vec<BackendSpec> {
        self.backends
            .iter()
            .map(|b| BackendSpec::weighted(b.address, b.weight))
            .collect()
    }

    /// The health check (`None`: none). The file was checked when parsed
    /// ([`check_vips`]), so this does not fail for a parsed file.
    pub fn health_check(
        &self,
    ) -> Result<Option<crate::HealthCheck>, crate::health::HealthCheckError> {
        match &self.health {
            Some(h) => h.check(&self.address),
            None => Ok(None),
        }
    }
}

impl From<&VipInfo> for VipConfig {
    /// A VIP as the daemon holds it, as a file writes it (without what the
    /// daemon assigns: index and slots).
    fn from(v: &VipInfo) -> Self {
        Self {
            address: v.spec,
            flags: v.flags,
            backends: v
                .backends
                .iter()
                .map(|b| BackendConfig {
                    address: b.address,
                    weight: b.weight,
                })
                .collect(),
            health: v.health.as_ref().map(HealthConfig::from),
        }
    }
}

/// One backend of a `[[vip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Backend address.
    pub address: IpAddr,
    /// Relative weight, 0..=65535; 0 drains.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// The key path of a value of the `i`th `[[vip]]`, e.g. `vip[1].address`.
pub fn vip_key(i: usize) -> impl Fn(&str) -> Vec<Seg> {
    move |key| vec![k("vip"), Seg::Index(i), k(key)]
}

/// The key path of a value of backend `j` of the `i`th `[[vip]]`, e.g.
/// `vip[1].backends[0].weight`.
pub fn backend_key(i: usize, j: usize) -> impl Fn(&str) -> Vec<Seg> {
    move |key| {
        vec![
            k("vip"),
            Seg::Index(i),
            k("backends"),
            Seg::Index(j),
            k(key),
        ]
    }
}

/// Parses `text` as a `T` (the whole document); errors name `origin` as the
/// file, and the line and key of the offending value.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<(T, Source), FileError> {
    let source = Source::new(text, origin);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if let Some(e) = syntax.into_iter().next() {
        let message = e.message().trim_end().to_owned();
        return Err(source.syntax_error_at(doc.get_ref(), e.span(), message));
    }
    let value: T = toml::from_str(text)
        .map_err(|e| source.error_at(doc.get_ref(), e.span(), e.message().to_owned()))?;
    Ok((value, source))
}

/// The checks of `[[vip]]` tables that need no node: every address one a
/// VIP or backend can have, weights in range, no VIP twice, no backend twice
/// in a VIP, no backend that is also a VIP address of the file. The first
/// failure, in file order.
pub fn check_vips(vips: &[VipConfig], c: &Source) -> Result<(), FileError> {
    let mut seen = HashSet::new();
    for (i, v) in vips.iter().enumerate() {
        let at = vip_key(i);
        let spec = v.address;
        if let Some(p) = address_problem(spec.address) {
            return Err(c.error(
                &at("address"),
                format!("VIP {spec}: address {} {p}", spec.address),
            ));
        }
        if !seen.insert(spec) {
            return Err(c.error(&at("address"), format!("VIP {spec} is defined twice")));
        }
        if let Err(e) = v.health_check() {
            let path = [k("vip"), Seg::Index(i), k("health"), k(e.key)];
            // A key the table lacks (a required `path`) is placed at the
            // `health` table itself.
            let found = c.error(&path, format!("VIP {spec}: {}", e.why));
            let err = match found {
                FileError::Invalid { line: None, .. } => c.error(
                    &at("health"),
                    format!("VIP {spec}: health.{}: {}", e.key, e.why),
                ),
                f => f,
            };
            return Err(err);
        }
        let mut backends = HashSet::new();
        for (j, b) in v.backends.iter().enumerate() {
            let bk = backend_key(i, j);
            let ip = b.address;
            if let Some(p) = address_problem(ip) {
                return Err(c.error(
                    &bk("address"),
                    format!("backend {ip} of VIP {spec}: address {p}"),
                ));
            }
            if ip == spec.address {
                // The encapsulated packet would be addressed to the VIP
                // itself and come straight back to the balancer.
                return Err(c.error(
                    &bk("address"),
                    format!(
                        "backend {ip} of VIP {spec}: a backend cannot be the VIP's own address"
                    ),
                ));
            }
            if b.weight > MAX_WEIGHT {
                return Err(c.error(
                    &bk("weight"),
                    format!(
                        "backend {ip} of VIP {spec}: weight {} out of range 0..={MAX_WEIGHT}",
                        b.weight
                    ),
                ));
            }
            if !backends.insert(ip) {
                return Err(c.error(
                    &bk("address"),
                    format!("backend {ip} is listed twice for VIP {spec}"),
                ));
            }
            if vips.iter().any(|o| o.address.address == ip) {
                return Err(c.error(
                    &bk("address"),
                    format!("backend {ip} is also a VIP address"),
                ));
            }
        }
    }
    Ok(())
}

/// The top-level tables a VIP file may hold: `[[vip]]`, and the node
/// settings of a full daemon configuration, which are skipped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VipDoc {
    #[serde(default, rename = "vip")]
    vips: Vec<VipConfig>,
    // A daemon configuration file applies as it is: its node settings are
    // the daemon's (`lb-daemon check` validates them), not the fleet's
    // desired state.
    #[serde(default)]
    dataplane: Option<IgnoredAny>,
    #[serde(default)]
    api: Option<IgnoredAny>,
    #[serde(default)]
    state: Option<IgnoredAny>,
    #[serde(default)]
    metrics: Option<IgnoredAny>,
    #[serde(default)]
    bgp: Option<IgnoredAny>,
}

/// A file of `[[vip]]` tables: what `lbctl apply` reads. A full daemon
/// configuration file is one too: its `[dataplane]`, `[api]`, `[state]`,
/// `[metrics]` and `[bgp]` tables are skipped (and named in [`VipFile::skipped`]); any other
/// top-level key is an error.
#[derive(Clone, Debug)]
pub struct VipFile {
    /// The VIPs, in file order.
    pub vips: Vec<VipConfig>,
    /// The node-settings tables the file has and that were skipped, e.g.
    /// `["dataplane", "api"]`.
    pub skipped: Vec<&'static str>,
    /// Its text, to place errors.
    pub source: Source,
}

impl VipFile {
    /// Reads and parses a file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text` and checks its VIPs ([`check_vips`]); errors name
    /// `origin` as the file.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FileError> {
        let (doc, source): (VipDoc, Source) = parse_toml(text, origin)?;
        check_vips(&doc.vips, &source)?;
        let skipped = [
            ("dataplane", doc.dataplane.is_some()),
            ("api", doc.api.is_some()),
            ("state", doc.state.is_some()),
            ("metrics", doc.metrics.is_some()),
            ("bgp", doc.bgp.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        Ok(Self {
            vips: doc.vips,
            skipped,
            source,
        })
    }
}

#[cfg(test)]
mod tests;
