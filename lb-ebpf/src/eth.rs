//! Ethernet (+ one 802.1Q tag) parsing.

use aya_ebpf::programs::XdpContext;

use crate::{
    hdr::{ETH_P_8021Q, EthHdr},
    ptr::ptr_at,
};

/// Length of an Ethernet header.
pub const ETH_LEN: usize = 14;
/// Length of an Ethernet header with one 802.1Q tag.
pub const ETH_VLAN_LEN: usize = 18;

/// The L2 facts the programs need: where L3 starts and what it is.
#[derive(Clone, Copy)]
pub struct L2 {
    /// EtherType of the L3 payload (host order).
    pub proto: u16,
    /// Byte offset of the L3 header (14, or 18 with a VLAN tag).
    pub l3_off: usize,
}

/// Parses the Ethernet header and at most one VLAN tag. `None`: the frame is
/// shorter than its L2 header.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Option<L2> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let proto = u16::from_be(unsafe { (*eth).proto });
    if proto != ETH_P_8021Q {
        return Some(L2 {
            proto,
            l3_off: ETH_LEN,
        });
    }
    // 802.1Q: TCI at 14, inner EtherType at 16.
    let inner: *const u16 = ptr_at(ctx, 16)?;
    Some(L2 {
        proto: u16::from_be(unsafe { *inner }),
        l3_off: ETH_VLAN_LEN,
    })
}

/// Rewrites the L2 header at offset 0 with `dst`/`src` and EtherType `proto`
/// (host order), keeping `vlan_tci` (raw) when the frame is tagged
/// (`l3_off == ETH_VLAN_LEN`). `None` if the frame is too short.
#[inline(always)]
pub fn write(
    ctx: &XdpContext,
    l3_off: usize,
    dst: &[u8; 6],
    src: &[u8; 6],
    vlan_tci: u16,
    proto: u16,
) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        (*eth).dst = *dst;
        (*eth).src = *src;
    }
    if l3_off == ETH_VLAN_LEN {
        let tag: *mut [u16; 3] = ptr_at(ctx, 12)?;
        unsafe { *tag = [ETH_P_8021Q.to_be(), vlan_tci, proto.to_be()] };
    } else {
        unsafe { (*eth).proto = proto.to_be() };
    }
    Some(())
}

/// Reads (dst, src, vlan tci) of an L2 header at byte offset `at`.
#[inline(always)]
pub fn read(ctx: &XdpContext, at: usize, l3_off: usize) -> Option<([u8; 6], [u8; 6], u16)> {
    let eth: *const EthHdr = ptr_at(ctx, at)?;
    let (dst, src) = unsafe { ((*eth).dst, (*eth).src) };
    let tci = if l3_off == ETH_VLAN_LEN {
        let t: *const u16 = ptr_at(ctx, at + ETH_LEN)?;
        unsafe { *t }
    } else {
        0
    };
    Some((dst, src, tci))
}
