//! Attaching `lb_xdp` to an interface through a pinned BPF link, so the
//! program keeps running when the daemon exits or crashes, and the explicit
//! teardown that removes it.

use std::path::Path;

use aya::programs::{
    XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};

use super::{Balancer, DataplaneError, ProgId};
use crate::netif;

/// XDP attach mode requested by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native if the driver supports it, else generic.
    Auto,
    /// Driver (native) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// The mode the program actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// Driver mode.
    Native,
    /// skb mode.
    Generic,
}

impl Attached {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        }
    }
}

/// The link pin is named `link_<mode>_<ifindex>`: bpffs holds only BPF
/// objects (no record files) and refuses names with dots (so no `eth0.100`),
/// hence the name itself records how and where, by interface index.
const LINK_PREFIX: &str = "link_";

/// The pinned link under `dir`, if any: (path, mode, interface).
fn find_link(dir: &Path) -> Option<(std::path::PathBuf, Attached, String)> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(LINK_PREFIX) else {
            continue;
        };
        let (mode, index) = rest.split_once('_')?;
        let index: u32 = index.parse().ok()?;
        let iface = netif::ifname(index).unwrap_or_else(|| format!("ifindex {index}"));
        let mode = if mode == "generic" {
            Attached::Generic
        } else {
            Attached::Native
        };
        return Some((e.path(), mode, iface));
    }
    None
}

/// Where and how the balancer pinned under `dir` is attached, if it is.
pub fn attached_to(dir: &Path) -> Option<(String, Attached)> {
    find_link(dir).map(|(_, mode, iface)| (iface, mode))
}

/// The program the link pinned under `dir` runs now (read from the kernel,
/// so it is true even if someone else replaced it), if there is a link.
pub fn running_program(dir: &Path) -> Option<ProgId> {
    let (link_pin, _, _) = find_link(dir)?;
    let link = FdLink::from(PinnedLink::from_pin(&link_pin).ok()?);
    let id = link.info().ok()?.program_id();
    // Usually the pinned `prog` is that program: its tag without needing
    // CAP_SYS_ADMIN (which walking every program's id needs).
    if let Ok(p) = aya::programs::ProgramInfo::from_pin(dir.join("prog"))
        && p.id() == id
    {
        return Some(ProgId { id, tag: p.tag() });
    }
    // No lookup by id in aya 0.14: walk the loaded programs (a status
    // query, not a packet path).
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .map(|p| ProgId { id, tag: p.tag() })
}

/// Id of the link pinned under `dir` (it stays the same across upgrades).
pub fn link_id(dir: &Path) -> Option<u32> {
    let (link_pin, _, _) = find_link(dir)?;
    let link = FdLink::from(PinnedLink::from_pin(&link_pin).ok()?);
    Some(link.info().ok()?.id())
}

/// Replaces the program of the link pinned under `dir` by `prog`
/// (BPF_LINK_UPDATE through aya's `attach_to_link`): atomic, the interface
/// is never without a program. No link pinned: nothing to do.
pub(crate) fn swap_on_pinned_link(
    prog: &mut aya::programs::Xdp,
    dir: &Path,
) -> Result<(), DataplaneError> {
    let Some((link_pin, _, iface)) = find_link(dir) else {
        return Ok(());
    };
    let pinned = PinnedLink::from_pin(&link_pin).map_err(|e| attach_err(&iface, e))?;
    let link = XdpLink::try_from(FdLink::from(pinned))
        .map_err(|e| attach_err(&iface, format!("pinned link: {e}")))?;
    prog.attach_to_link(link)
        .map_err(|e| attach_err(&iface, format!("bpf link update: {e}")))?;
    Ok(())
}

fn attach_err(interface: &str, reason: impl ToString) -> DataplaneError {
    DataplaneError::Attach {
        interface: interface.to_string(),
        reason: reason.to_string(),
    }
}

/// Attaches `prog` to `interface` in `mode` and pins the resulting link at
/// `link_pin`, so it outlives this process. Shared by the balancer and the
/// decap program.
pub(crate) fn attach_and_pin(
    prog: &mut aya::programs::Xdp,
    interface: &str,
    mode: XdpMode,
    link_pin: &Path,
) -> Result<(), DataplaneError> {
    let id = prog
        .attach(interface, mode)
        .map_err(|e| attach_err(interface, format!("{mode:?}: {e}")))?;
    let link = prog
        .take_link(id)
        .map_err(|e| attach_err(interface, format!("take link: {e}")))?;
    let fd_link =
        FdLink::try_from(link).map_err(|e| attach_err(interface, format!("link fd: {e}")))?;
    fd_link
        .pin(link_pin)
        .map_err(|e| attach_err(interface, format!("pin {}: {e}", link_pin.display())))?;
    Ok(())
}

impl Balancer {
    /// Makes sure `lb_xdp` runs on `interface`, with the link pinned under
    /// `dir`. If a pinned link is already there (restart), it is kept as is:
    /// no detach, not one packet missed. Returns the mode it runs in.
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        mode: AttachMode,
        dir: &Path,
    ) -> Result<Attached, DataplaneError> {
        if let Some((link_pin, attached, iface)) = find_link(dir) {
            if iface != interface {
                return Err(attach_err(
                    interface,
                    format!(
                        "the pinned program is attached to {iface:?}; run `lb-daemon teardown` first"
                    ),
                ));
            }
            // Keep the link open-able: proves the pin is a live link.
            PinnedLink::from_pin(&link_pin).map_err(|e| attach_err(interface, e))?;
            return Ok(attached);
        }
        let tries: &[(XdpMode, Attached)] = match mode {
            AttachMode::Native => &[(XdpMode::Driver, Attached::Native)],
            AttachMode::Generic => &[(XdpMode::Skb, Attached::Generic)],
            AttachMode::Auto => &[
                (XdpMode::Driver, Attached::Native),
                (XdpMode::Skb, Attached::Generic),
            ],
        };
        let index =
            netif::ifindex(interface).ok_or_else(|| attach_err(interface, "no such interface"))?;
        let mut last = None;
        for &(xdp_mode, attached) in tries {
            let link_pin = dir.join(format!("{LINK_PREFIX}{}_{index}", attached.as_str()));
            match attach_and_pin(self.program(), interface, xdp_mode, &link_pin) {
                Ok(()) => {
                    return Ok(attached);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| attach_err(interface, "no attach mode to try")))
    }
}

/// Removes the data plane pinned under `dir`: detaches the program from its
/// interface (unpinning the last reference to the link), then removes the
/// program and map pins. Forwarding stops. Idempotent.
pub fn teardown(dir: &Path) -> Result<(), DataplaneError> {
    if let Some((link_pin, _, _)) = find_link(dir) {
        let link =
            PinnedLink::from_pin(&link_pin).map_err(|e| DataplaneError::Pin(e.to_string()))?;
        let fd_link = link
            .unpin()
            .map_err(|e| DataplaneError::Pin(e.to_string()))?;
        // Dropping the last fd of an unpinned link detaches the program.
        drop(fd_link);
    }
    for entry in [dir.join("prog"), dir.join(super::layout::LAYOUT_PIN)] {
        if entry.exists() {
            std::fs::remove_file(&entry)
                .map_err(|e| DataplaneError::Pin(format!("{}: {e}", entry.display())))?;
        }
    }
    let maps = dir.join("maps");
    if maps.exists() {
        for name in super::balancer::MAP_NAMES {
            let p = maps.join(name);
            if p.exists() {
                std::fs::remove_file(&p)
                    .map_err(|e| DataplaneError::Pin(format!("{}: {e}", p.display())))?;
            }
        }
        let _ = std::fs::remove_dir(&maps);
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
