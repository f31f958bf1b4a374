//! The kernel side as seen from userspace: loading the embedded XDP objects,
//! sizing and writing their maps, reading counters, attaching to interfaces.
//! Everything here needs root (CAP_BPF/CAP_NET_ADMIN); the logic above it talks
//! to it through plain method calls so it can be tested with a fake.

mod attach;
mod balancer;
mod decap;
mod error;
#[cfg(any(test, feature = "fake-dataplane"))]
mod fake;
mod filter;
mod layout;
mod object;
mod port;
mod ring;

pub use attach::{AttachMode, Attached, attached_to, link_id, running_program, teardown};
pub use balancer::{
    Balancer, BalancerConfig, DEFAULT_ICMP_TOO_BIG_RATE, DEFAULT_NEW_FLOW_RATE, Encapsulation,
    MAP_NAMES, OpenOptions, Origin, ProgId, Sizes, Upgrade,
};
pub use decap::Decap;
pub use error::DataplaneError;
#[cfg(any(test, feature = "fake-dataplane"))]
pub use fake::{FakeDataplane, FakeMaps};
pub use filter::VipFilter;
pub use layout::{LAYOUT_PIN, LayoutDiff, OnLayoutChange};
pub use object::{BALANCER_OBJECT, DECAP_OBJECT};
pub use port::Dataplane;
pub use ring::RingMap;

/// The capture ring a running capture reads (see `Balancer::start_capture`).
pub type CaptureRing = aya::maps::RingBuf<aya::maps::MapData>;

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there yet (as bpftool
/// does): pins need it, and fresh machines do not always have it.
pub fn ensure_bpffs() -> Result<(), DataplaneError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
    {
        return Ok(());
    }
    std::fs::create_dir_all("/sys/fs/bpf").map_err(|e| DataplaneError::Bpffs(e.to_string()))?;
    let src = c"bpf";
    let target = c"/sys/fs/bpf";
    // SAFETY: every pointer is a NUL-terminated static string or null (no
    // mount data), as mount(2) takes them; it reads them only.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(DataplaneError::Bpffs(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(())
}
