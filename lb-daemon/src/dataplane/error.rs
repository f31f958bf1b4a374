use thiserror::Error;

/// Failures of the kernel data plane.
#[derive(Debug, Error)]
pub enum DataplaneError {
    /// The object could not be loaded or a program failed verification.
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program-level operation (load, attach, test run) failed.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map was missing from the object.
    #[error("map {0} missing from the XDP object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// An index was outside the map's size.
    #[error("{what} {index} out of range (capacity {capacity})")]
    OutOfRange {
        /// What was indexed.
        what: &'static str,
        /// The index.
        index: u32,
        /// The capacity.
        capacity: u32,
    },
    /// Mapping the ring into memory failed.
    #[error("mmap of the ring map: {0}")]
    Mmap(std::io::Error),
    /// bpffs could not be mounted.
    #[error("mounting bpffs at /sys/fs/bpf: {0}")]
    Bpffs(String),
    /// Pinning or unpinning under bpffs failed.
    #[error("bpffs pin: {0}")]
    Pin(String),
    /// Attaching to or detaching from an interface failed.
    #[error("interface {interface}: {reason}")]
    Attach {
        /// Interface name.
        interface: String,
        /// What went wrong.
        reason: String,
    },
    /// The pinned maps' layout differs from this build's and the operator
    /// did not opt in to recreating them: nothing was changed. The message
    /// names the maps and what recreating them would lose.
    #[error("{0}")]
    LayoutChanged(String),
    /// This data plane has no capture ring (the in-memory fake).
    #[error("this data plane cannot capture packets")]
    CaptureUnsupported,
    /// A capture runs already (one at a time: they share the ring).
    #[error("a packet capture is already running")]
    CaptureBusy,
    /// Sizes that the maps cannot be created with.
    #[error("invalid sizes: {0}")]
    Sizes(String),
}
