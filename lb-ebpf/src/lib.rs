//! Pieces shared by the `lb` XDP programs: wire header layouts, the one
//! bounds-checked packet accessor, Ethernet parsing and checksum arithmetic.
//! The programs themselves are the binaries under `src/bin/`.
#![no_std]

pub mod csum;
pub mod eth;
pub mod hdr;
pub mod ptr;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: every panic path must be optimised
    // away, otherwise the verifier rejects the loop below.
    loop {}
}
