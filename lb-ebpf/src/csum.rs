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

/// True when a received 20-byte IPv4 header (checksum field included) sums
/// to all ones, i.e. its checksum is right (RFC 1071 section 4.1: the
/// receiver sums everything, checksum included). Five 32-bit loads added in
/// 64 bits, then folded: cheaper than ten 16-bit adds, and the one's-complement
/// sum does not care where the words are cut.
#[inline(always)]
pub fn ipv4_header_valid(words: &[u32; 5]) -> bool {
    let mut s = 0u64;
    let mut i = 0;
    while i < 5 {
        s += words[i] as u64;
        i += 1;
    }
    // Under 2^35: one 32-bit fold leaves at most 33 bits, then 16-bit folds.
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

/// RFC 1624 incremental update of `check` when one 16-bit word changes.
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let s = (!check as u32) + (!old as u32) + new as u32;
    !fold(s)
}
