//! The contract between the daemon's `via-vip` health probes and `lb_probe`,
//! the TC egress program that encapsulates them: a probe socket carries a
//! socket mark (`SO_MARK`) that names the backend slot the probe is for, and
//! `lb_probe` wraps every packet with such a mark the way `lb_xdp` wraps a
//! client's packet for that backend.
//!
//! The mark is [`PROBE_MARK_TAG`] in the top byte and the slot in the low 24
//! bits. The tag keeps other users of the mark (kube-proxy's 0x4000 and
//! 0x8000 bits, firewall marks, Cilium's 0x0f00) out of the probe range; a
//! packet is only ever encapsulated when its destination is also a VIP
//! address of this node, so a stray mark alone changes nothing.

/// The top byte of a probe mark (`'L'`).
pub const PROBE_MARK_TAG: u32 = 0x4c00_0000;
/// The bits of a mark that must equal [`PROBE_MARK_TAG`].
pub const PROBE_MARK_MASK: u32 = 0xff00_0000;
/// Name of the TC egress program in the `lb-xdp` object.
pub const PROG_PROBE: &str = "lb_probe";

/// The mark of a probe for backend `slot` (`None`: the slot does not fit in
/// 24 bits).
pub const fn probe_mark(slot: u32) -> Option<u32> {
    if slot & PROBE_MARK_MASK != 0 {
        None
    } else {
        Some(PROBE_MARK_TAG | slot)
    }
}

/// The backend slot a mark names, if it is a probe mark.
#[inline(always)]
pub const fn probe_slot(mark: u32) -> Option<u32> {
    if mark & PROBE_MARK_MASK == PROBE_MARK_TAG {
        Some(mark & !PROBE_MARK_MASK)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_foreign_marks_are_not_probes() {
        for slot in [0, 1, 7, 16_383, 0x00ff_ffff] {
            assert_eq!(probe_slot(probe_mark(slot).unwrap()), Some(slot));
        }
        assert_eq!(probe_mark(0x0100_0000), None);
        for foreign in [
            0,
            0x4000,
            0x8000,
            0x0f00,
            0x4d00_0001,
            0xff00_0000,
            0x0c00_0000,
        ] {
            assert_eq!(probe_slot(foreign), None, "{foreign:#x}");
        }
    }
}
