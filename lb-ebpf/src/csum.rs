//! Internet checksum arithmetic (RFC 1071, RFC 1624). All values are raw words
//! as loaded from the packet; the one's-complement sum is byte-order
//! independent, so no swapping is needed as long as inputs and output are raw.

/// Folds a 32-bit accumulator to 16 bits (three folds cover any u32 input).
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Adds the two 16-bit halves of a raw 32-bit word to an accumulator.
#[inline(always)]
pub fn add32(acc: u32, w: u32) -> u32 {
    acc + (w & 0xffff) + (w >> 16)
}

/// Checksum of a 20-byte IPv4 header whose `check` field is zero.
#[inline(always)]
pub fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut s = 0u32;
    let mut i = 0;
    while i < 10 {
        s += words[i] as u32;
        i += 1;
    }
    !fold(s)
}

/// RFC 1624 incremental update of `check` when one 16-bit word changes.
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let s = (!check as u32) + (!old as u32) + new as u32;
    !fold(s)
}
