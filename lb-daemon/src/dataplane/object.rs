//! The XDP objects built by `build.rs` from `lb-ebpf`, embedded in the binary
//! so a deployment is one file.

/// ELF object with `lb_xdp` and the balancer maps.
pub static BALANCER_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// ELF object with `lb_decap`, `lb_pass` and the decap maps.
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap"));
