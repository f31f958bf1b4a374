//! The layout record kept beside the pins ([`lb_common::layout`]): written
//! whenever this build creates or recreates maps, read back and compared
//! before a restart adopts anything, so that a program is never loaded
//! against maps whose keys or values have another shape.

use std::path::Path;

use aya::maps::{Array, MapData, MapInfo};
use lb_common::layout::{
    LAYOUT_ENTRIES, LAYOUT_FORMAT, LAYOUT_HEADER_NAME, MAP_LAYOUTS, MapLayout,
};

use super::DataplaneError;

/// Pin name of the record (bpffs names cannot hold dots).
pub const LAYOUT_PIN: &str = "layout";

/// What `lb-daemon run` does when the pinned maps' layout differs from this
/// build's (`[dataplane] on_layout_change`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnLayoutChange {
    /// Refuse to start, change nothing, and say what recreating would lose.
    #[default]
    Refuse,
    /// Recreate the maps whose layout changed (empty), keep the others.
    Recreate,
}

/// What recreating a map empty costs the operator.
pub fn loss_of(name: &str) -> &'static str {
    use lb_common::*;
    match name {
        MAP_CONN | MAP_CONN4 => {
            "every established flow in it: flows are re-hashed through the ring, so those of \
             drained or changed backends move to another server (their connections reset)"
        }
        MAP_BACKENDS => {
            "the pinning of established flows: slots are rewritten under new generations, so \
             every flow is re-hashed (those of drained or changed backends reset)"
        }
        MAP_STATS => "the global counters (rx, pass, forwarded, drops by reason...)",
        MAP_VIP_STATS => "the per-VIP packet and byte counters",
        MAP_BACKEND_STATS => "the per-backend packet and byte counters",
        MAP_ICMP_RATE | MAP_NEW_FLOW_RATE => "nothing (a rate-limit bucket starts full again)",
        MAP_CAPTURE | MAP_CAPTURE_RING | MAP_CAPTURE_PENDING => "nothing (a running capture stops)",
        _ => "nothing (rewritten from the daemon's state)",
    }
}

/// Whether recreating `name` empty loses nothing the state cannot rebuild.
pub fn lossless(name: &str) -> bool {
    loss_of(name).starts_with("nothing")
}

/// One map whose pinned layout is not this build's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapChange {
    /// Map name.
    pub name: &'static str,
    /// What differs, for the operator.
    pub why: String,
    /// Not pinned at all: new in this build, nothing to lose.
    pub missing: bool,
}

/// The comparison of the pinned maps with this build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutDiff {
    /// The pins carry no record (made by a build before layout records):
    /// every map counts as changed.
    pub unknown: bool,
    /// Maps that differ (all of them when `unknown`).
    pub changed: Vec<MapChange>,
}

impl LayoutDiff {
    /// Nothing differs.
    pub fn is_same(&self) -> bool {
        !self.unknown && self.changed.is_empty()
    }

    /// Whether every changed map can be recreated without loss.
    pub fn lossless(&self) -> bool {
        !self.unknown && self.changed.iter().all(|c| c.missing || lossless(c.name))
    }

    /// The operator's message: which maps differ and what recreating them
    /// would lose, and how to proceed.
    pub fn message(&self, dir: &Path) -> String {
        let mut s = if self.unknown {
            format!(
                "the maps pinned at {} carry no layout record (made by an older lb-daemon), so \
                 their layout cannot be trusted to match this build's;",
                dir.display()
            )
        } else {
            format!(
                "the maps pinned at {} have another layout than this build's;",
                dir.display()
            )
        };
        for c in &self.changed {
            let loses = if c.missing {
                "nothing"
            } else {
                loss_of(c.name)
            };
            s.push_str(&format!(
                "\n  {}: {}; recreating it loses {loses}",
                c.name, c.why
            ));
        }
        s.push_str(
            "\nnothing was changed: the running program keeps forwarding on its maps. To \
             accept the loss, set `[dataplane] on_layout_change = \"recreate\"` (only the \
             maps listed are recreated) or run `lb-daemon teardown` (forwarding stops) \
             before starting this version.",
        );
        s
    }
}

fn pin_err(path: &Path, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Pin(format!("{}: {e}", path.display()))
}

/// Reads the record pinned under `dir`: `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<Vec<MapLayout>>, DataplaneError> {
    let path = dir.join(LAYOUT_PIN);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(|e| pin_err(&path, e))?;
    let map = aya::maps::Map::Array(data);
    let arr: Array<MapData, MapLayout> = Array::try_from(map).map_err(|e| pin_err(&path, e))?;
    let header = arr.get(&0, 0).map_err(|e| pin_err(&path, e))?;
    if header.name_str() != LAYOUT_HEADER_NAME || header.kind != LAYOUT_FORMAT {
        return Err(pin_err(
            &path,
            format!(
                "not a layout record of a known format ({:?}, format {})",
                header.name_str(),
                header.kind
            ),
        ));
    }
    let n = header.key_size.min(LAYOUT_ENTRIES - 1);
    let mut out = vec![header];
    for i in 1..=n {
        out.push(arr.get(&i, 0).map_err(|e| pin_err(&path, e))?);
    }
    Ok(Some(out))
}

/// Writes this build's record under `dir`, replacing any other.
pub fn write(dir: &Path) -> Result<(), DataplaneError> {
    let path = dir.join(LAYOUT_PIN);
    let mut arr =
        Array::<MapData, MapLayout>::create(LAYOUT_ENTRIES, 0).map_err(|e| pin_err(&path, e))?;
    arr.set(0, MapLayout::header(MAP_LAYOUTS.len() as u32), 0)
        .map_err(|e| pin_err(&path, e))?;
    for (i, m) in MAP_LAYOUTS.iter().enumerate() {
        arr.set(i as u32 + 1, *m, 0)
            .map_err(|e| pin_err(&path, e))?;
    }
    // Pinned under a temporary name and renamed over the old record, so a
    // crash leaves either record whole, never none.
    let tmp = dir.join(format!("{LAYOUT_PIN}_new"));
    let _ = std::fs::remove_file(&tmp);
    arr.pin(&tmp).map_err(|e| pin_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| pin_err(&path, e))
}

/// Compares the maps pinned in `maps_dir` (and the record, if any) with
/// this build. The kernel's own view of each map (type, key and value
/// size, flags) is checked too, so even without a record a map that
/// visibly changed is named as such.
pub fn compare(
    maps_dir: &Path,
    recorded: Option<&[MapLayout]>,
) -> Result<LayoutDiff, DataplaneError> {
    let mut diff = LayoutDiff {
        unknown: recorded.is_none(),
        changed: Vec::new(),
    };
    for (i, want) in MAP_LAYOUTS.iter().enumerate() {
        let name = super::balancer::MAP_NAMES[i];
        debug_assert_eq!(name, want.name_str());
        let path = maps_dir.join(name);
        if !path.exists() {
            // A map this build added: created, nothing to compare or lose.
            diff.changed.push(MapChange {
                name,
                why: "not pinned (new in this build)".into(),
                missing: true,
            });
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|e| pin_err(&path, e))?;
        let kernel = kernel_diff(want, &info);
        let why = match (kernel, recorded) {
            (Some(k), _) => Some(k),
            (None, None) => Some("layout unknown (sizes match, fields unverifiable)".into()),
            (None, Some(rec)) => match rec.iter().skip(1).find(|r| r.name_str() == name) {
                None => Some("not in the layout record".into()),
                Some(r) if r != want => Some(format!(
                    "its key/value fields changed (layout fingerprint {:016x} -> {:016x})",
                    r.fingerprint, want.fingerprint
                )),
                Some(_) => None,
            },
        };
        if let Some(why) = why {
            diff.changed.push(MapChange {
                name,
                why,
                missing: false,
            });
        }
    }
    Ok(diff)
}

fn kernel_diff(want: &MapLayout, info: &MapInfo) -> Option<String> {
    let mut parts = Vec::new();
    let ty = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
    if ty != want.kind {
        parts.push(format!("map type {ty} -> {}", want.kind));
    }
    if info.key_size() != want.key_size {
        parts.push(format!(
            "key size {} -> {} bytes",
            info.key_size(),
            want.key_size
        ));
    }
    if info.value_size() != want.value_size {
        parts.push(format!(
            "value size {} -> {} bytes",
            info.value_size(),
            want.value_size
        ));
    }
    if info.map_flags() & want.flags != want.flags {
        parts.push(format!(
            "flags {:#x} -> {:#x}",
            info.map_flags(),
            want.flags
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_describes_every_map_in_order() {
        assert_eq!(MAP_LAYOUTS.len(), super::super::MAP_NAMES.len());
        for (l, n) in MAP_LAYOUTS.iter().zip(super::super::MAP_NAMES) {
            assert_eq!(l.name_str(), n);
        }
    }

    #[test]
    fn the_message_names_maps_losses_and_the_way_out() {
        let diff = LayoutDiff {
            unknown: false,
            changed: vec![
                MapChange {
                    name: lb_common::MAP_STATS,
                    why: "value size 144 -> 192 bytes".into(),
                    missing: false,
                },
                MapChange {
                    name: lb_common::MAP_CONFIG,
                    why: "value size 56 -> 64 bytes".into(),
                    missing: false,
                },
            ],
        };
        let m = diff.message(Path::new("/sys/fs/bpf/lb"));
        assert!(m.contains("LB_STATS: value size 144 -> 192 bytes"), "{m}");
        assert!(m.contains("the global counters"), "{m}");
        assert!(m.contains("LB_CONFIG"), "{m}");
        assert!(m.contains("on_layout_change = \"recreate\""), "{m}");
        assert!(m.contains("nothing was changed"), "{m}");
        assert!(!diff.lossless(), "counters are lost");
        let config_only = LayoutDiff {
            unknown: false,
            changed: vec![diff.changed[1].clone()],
        };
        assert!(config_only.lossless());
        let new_map = LayoutDiff {
            unknown: false,
            changed: vec![MapChange {
                name: lb_common::MAP_CONN4,
                why: "not pinned (new in this build)".into(),
                missing: true,
            }],
        };
        assert!(new_map.lossless(), "a map that is not there loses nothing");
        assert!(new_map.message(Path::new("/x")).contains("loses nothing"));
        assert!(
            !LayoutDiff {
                unknown: true,
                changed: vec![]
            }
            .lossless()
        );
        assert!(!lossless(lb_common::MAP_CONN4));
        assert!(!lossless(lb_common::MAP_BACKENDS));
    }
}
