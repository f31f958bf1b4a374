//! The flow hash and the ring arithmetic, shared by `lb_xdp` and by userspace
//! prediction (`lbctl route`, the agreement tests).
//!
//! The hash is MurmurHash3 (x86, 32-bit) over a fixed 40-byte message: source
//! address, destination address, the two ports and the protocol, each as the raw
//! words in the map layout (see the crate docs). A fixed-size input keeps the
//! eBPF side to straight-line code the verifier accepts without loops, and the
//! fleet-wide seed makes every LB node map a flow to the same ring position, so
//! ECMP may spread a flow's packets over several nodes without breaking it.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
const fn mix_block(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hashes a flow. `sport`/`dport` are the raw network-order ports; pass
/// `sport = 0` for VIPs hashed without the source port. Deterministic across
/// processes and machines (little-endian hosts, which is every BPF JIT we run on).
#[inline(always)]
pub const fn flow_hash(
    seed: u32,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport: u16,
    dport: u16,
    proto: u8,
) -> u32 {
    let mut h = seed;
    h = mix_block(h, src[0]);
    h = mix_block(h, src[1]);
    h = mix_block(h, src[2]);
    h = mix_block(h, src[3]);
    h = mix_block(h, dst[0]);
    h = mix_block(h, dst[1]);
    h = mix_block(h, dst[2]);
    h = mix_block(h, dst[3]);
    h = mix_block(h, (sport as u32) | ((dport as u32) << 16));
    h = mix_block(h, proto as u32);
    fmix(h ^ 40)
}

/// `ceil(2^64 / m)`: the constant that makes [`ring_pos`] equal `h % m`
/// without a division (for `m >= 2`; `m` need not be prime or a power of two).
pub const fn ring_reciprocal(m: u32) -> u64 {
    (u64::MAX / m as u64).wrapping_add(1)
}

/// `h % m`, computed as `h - floor(h * c / 2^64) * m` with `c =
/// ring_reciprocal(m)`: exact for every 32-bit `h` and `m` (Lemire, Kaser and
/// Kurz, "Faster remainder by direct computation", 2019, theorem 1 with N = 32,
/// F = 64). BPF has no 64x64->128 multiply, so the product is taken in two
/// 32-bit halves of `c`; neither partial product nor their sum can overflow
/// 64 bits. A hardware division costs some 25 cycles on every new flow; this
/// is three multiplications. The result is the position a plain `%` gives,
/// so nodes running older releases still agree on every flow.
#[inline(always)]
pub const fn ring_pos(h: u32, m: u32, c: u64) -> u32 {
    let h = h as u64;
    let hi = h * (c >> 32);
    let lo = (h * (c & 0xffff_ffff)) >> 32;
    let q = (hi + lo) >> 32;
    (h - q * m as u64) as u32
}

/// Index into the flat `LB_RING` array: each VIP owns two consecutive halves of
/// `ring_size` entries (the double buffer); `half` is the VIP's active half.
#[inline(always)]
pub const fn ring_index(vip_index: u32, half: u32, pos: u32, ring_size: u32) -> u32 {
    (vip_index * 2 + (half & 1)) * ring_size + pos
}

/// The per-flow part of a crafted outer source address, host order: the client
/// address folded to 32 bits, mixed with the source port so that flows from one
/// client still spread over a backend's RSS queues. The kernel masks it into the
/// configured prefix.
#[inline(always)]
pub const fn encap_src_suffix(src: &[u32; 4], sport: u16) -> u32 {
    let fold = u32::from_be(src[0] ^ src[1] ^ src[2] ^ src[3]);
    let port = u16::from_be(sport) as u32;
    fold ^ (port << 16) ^ port
}

/// The outer UDP source port of a GUE packet (host order), from the flow's
/// [`encap_src_suffix`]: NICs spread UDP over their queues by the ports, so
/// a per-flow source port is what makes the backend's RSS spread flows even
/// with a fixed outer source address. A multiplicative hash (Knuth) mixes
/// every bit of the suffix into the top 14 bits, which land in the dynamic
/// port range 49152..=65535 that RFC 8086 (GRE-in-UDP) and RFC 7510
/// (MPLS-in-UDP) ask tunnel sources to use. Every packet of a flow gets the
/// same port, so a flow stays on one backend queue and in order.
#[inline(always)]
pub const fn gue_src_port(suffix: u32) -> u16 {
    0xc000 | (suffix.wrapping_mul(0x9e37_79b1) >> 18) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer check against the reference MurmurHash3_x86_32 of the same
    /// 40 bytes, so an accidental change of the function is caught.
    #[test]
    fn matches_reference_murmur3() {
        fn reference(data: &[u8], seed: u32) -> u32 {
            let mut h = seed;
            for c in data.chunks(4) {
                let k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                h = mix_block(h, k);
            }
            fmix(h ^ data.len() as u32)
        }
        let src = [0x0100_12c6u32, 0, 0, 0];
        let dst = [0x0a64_12c6u32, 0, 0, 0];
        let mut bytes = [0u8; 40];
        let words = [src[0], 0, 0, 0, dst[0], 0, 0, 0, 0x5000_3930, 6];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        let got = flow_hash(7, &src, &dst, 0x3930, 0x5000, 6);
        assert_eq!(got, reference(&bytes, 7));
        assert_ne!(got, flow_hash(8, &src, &dst, 0x3930, 0x5000, 6));
        // Frozen value (cross-checked with the Python `mmh3` package): the fleet
        // relies on this never changing between releases.
        assert_eq!(flow_hash(0, &[0; 4], &[0; 4], 0, 0, 0), 0xc206_7ae9);
    }

    /// `ring_pos` must be exactly `%`: the fleet's flows depend on it.
    #[test]
    fn ring_pos_is_the_remainder() {
        let ms = [
            2u32,
            3,
            7,
            251,
            65521,
            65537,
            131071,
            655373,
            1 << 16,
            1 << 20,
            4_294_967_291,
            u32::MAX,
        ];
        let mut x = 0x1234_5678u32;
        for &m in &ms {
            let c = ring_reciprocal(m);
            for h in [
                0,
                1,
                m - 1,
                m,
                m.wrapping_add(1),
                u32::MAX,
                u32::MAX - 1,
                u32::MAX - m,
            ] {
                assert_eq!(ring_pos(h, m, c), h % m, "h={h} m={m}");
            }
            for _ in 0..200_000 {
                // xorshift32: cheap, deterministic spread over all of u32.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                assert_eq!(ring_pos(x, m, c), x % m, "h={x} m={m}");
            }
        }
    }

    #[test]
    fn ring_halves_do_not_overlap() {
        assert_eq!(ring_index(0, 0, 0, 7), 0);
        assert_eq!(ring_index(0, 1, 0, 7), 7);
        assert_eq!(ring_index(1, 0, 6, 7), 20);
    }
}
