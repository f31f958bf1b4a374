//! What the state tells observers about its own work, so that modules
//! driven by it (metrics) can time it without the state knowing them.

use std::time::Duration;

use crate::vip::VipSpec;

/// Told about every ring rebuild the state commits.
pub trait RingObserver: Send + Sync {
    /// The ring of `vip` was rebuilt and published: `took` runs from the
    /// start of the Maglev build (with the new backend slots written beside
    /// it) to the new table being live in the data plane. Called after the
    /// change is committed (persisted); a change that was refused or rolled
    /// back reports nothing.
    fn ring_rebuilt(&self, vip: &VipSpec, took: Duration);
}
