//! The agent's version, as the hub sees it (`Handshake.agent_version`) and as upgrades compare it.
//!
//! It is read at run time from a fixed-width slot in the binary (`OPSAGENT-VERSION-SLOT:` then the
//! version, NUL-padded to 64 bytes) rather than baked into the code as a constant, so that a test
//! can make a second, real and runnable build of another version by patching the slot in a copy
//! of the binary (`opsagent_testkit::agent_with_version`) instead of compiling the workspace twice.

/// What precedes the version in the slot.
pub const SLOT_PREFIX: &[u8] = b"OPSAGENT-VERSION-SLOT:";
const SLOT_LEN: usize = 64;

#[used]
static SLOT: [u8; SLOT_LEN] = slot(env!("CARGO_PKG_VERSION").as_bytes());

const fn slot(version: &[u8]) -> [u8; SLOT_LEN] {
    let mut out = [0u8; SLOT_LEN];
    let mut i = 0;
    while i < SLOT_PREFIX.len() {
        out[i] = SLOT_PREFIX[i];
        i += 1;
    }
    let mut j = 0;
    while j < version.len() && i < SLOT_LEN - 1 {
        out[i] = version[j];
        i += 1;
        j += 1;
    }
    out
}

/// This binary's version (`CARGO_PKG_VERSION` unless the slot was patched).
pub fn version() -> &'static str {
    // Read through an opaque reference: the compiler must not fold the slot's build-time contents.
    let slot: &'static [u8; SLOT_LEN] = std::hint::black_box(&SLOT);
    let rest = &slot[SLOT_PREFIX.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok().filter(|v| !v.is_empty()).unwrap_or(env!("CARGO_PKG_VERSION"))
}

/// Orders versions by their dot-separated parts, numerically where both parts are numbers
/// (the hub's `releases::compare_versions`).
pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| v.split(['.', '-', '+']).map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_slot_holds_the_package_version() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
        assert_eq!(super::compare("0.10.0", "0.9.0"), std::cmp::Ordering::Greater);
    }
}
