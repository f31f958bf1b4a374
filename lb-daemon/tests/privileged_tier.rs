//! Plain `cargo test` runs the unprivileged tiers only. The privileged tier
//! (the real XDP programs in the kernel, network namespaces, a real
//! `lb-daemon`, the end-to-end lab) is the crate `lb-privileged-tests`, which
//! is not a default member and whose tests fail without root. This ignored
//! test exists so that `cargo test` says so in its own output, and counts it
//! as not run rather than passed.

#[test]
#[ignore = "the privileged tier (lb-privileged-tests) is not part of `cargo test`: \
            run scripts/test.sh as root, or as root \
            `cargo build --bins && cargo test -p lb-privileged-tests`"]
fn privileged_tier_was_not_run() {
    panic!(
        "a pointer, not a test: the privileged tier is `cargo test -p lb-privileged-tests` \
         (as root, after `cargo build --bins`), or scripts/test.sh"
    );
}
