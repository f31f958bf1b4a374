//! The network interfaces of this network namespace, through the C library:
//! names and indices, an interface's MAC, the host's own addresses. Every
//! system call about interfaces lives here.
//!
//! getifaddrs(3) rather than /sys: /sys shows the network namespace of
//! whoever mounted it, which under `nsenter --net` is not ours.

use std::{
    borrow::Cow,
    ffi::{CStr, CString},
    io,
    net::IpAddr,
};

/// Index of interface `name`, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call, which
    // only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Name of the interface with index `index`, if it exists.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into
    // `buf` (IF_NAMESIZE includes the NUL).
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The MAC address of `interface`, if it exists and has one.
pub fn mac(interface: &str) -> io::Result<Option<[u8; 6]>> {
    let list = IfAddrs::get()?;
    Ok(list
        .iter()
        .filter(|ifa| name(ifa) == interface)
        .find_map(|ifa| match address(ifa)? {
            Addr::Link(m) => Some(m),
            Addr::Ip(_) => None,
        }))
}

/// Every unicast address configured on any interface, loopback and
/// unspecified ones left out, sorted, without repeats.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let list = IfAddrs::get()?;
    let mut out: Vec<IpAddr> = list
        .iter()
        .filter_map(|ifa| match address(ifa)? {
            Addr::Ip(a) => Some(a),
            Addr::Link(_) => None,
        })
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The list getifaddrs(3) returns, freed when dropped.
struct IfAddrs(*mut libc::ifaddrs);

impl IfAddrs {
    fn get() -> io::Result<Self> {
        let mut head = std::ptr::null_mut();
        // SAFETY: `head` is a valid place for the pointer getifaddrs stores;
        // on failure it stores nothing.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(head))
    }

    /// The entries, borrowed from the list.
    fn iter(&self) -> impl Iterator<Item = &libc::ifaddrs> + '_ {
        let mut cur = self.0;
        std::iter::from_fn(move || {
            // SAFETY: `cur` is null or an entry of the list, which lives as
            // long as `self`, to which the returned borrow is tied.
            let ifa = unsafe { cur.as_ref() }?;
            cur = ifa.ifa_next;
            Some(ifa)
        })
    }
}

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the list came from getifaddrs, no borrow of it
            // outlives `self`, and it is freed once, here.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// An entry's interface name.
fn name(ifa: &libc::ifaddrs) -> Cow<'_, str> {
    // SAFETY: getifaddrs sets every entry's ifa_name to a NUL-terminated
    // string that lives as long as the list.
    unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy()
}

/// What an entry's address is.
enum Addr {
    /// An Ethernet (AF_PACKET) address.
    Link([u8; 6]),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// An entry's address, if it has one of the kinds this module reads.
fn address(ifa: &libc::ifaddrs) -> Option<Addr> {
    let sa = ifa.ifa_addr;
    // SAFETY: ifa_addr is null or points to a socket address of the list;
    // every socket address begins with its family.
    let family = i32::from(unsafe { sa.as_ref() }?.sa_family);
    match family {
        libc::AF_PACKET => {
            // SAFETY: getifaddrs gives AF_PACKET addresses as sockaddr_ll
            // (packet(7)).
            let ll = unsafe { &*sa.cast::<libc::sockaddr_ll>() };
            (ll.sll_halen == 6).then(|| {
                let mut m = [0u8; 6];
                m.copy_from_slice(&ll.sll_addr[..6]);
                Addr::Link(m)
            })
        }
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a sockaddr_in (ip(7)).
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(Addr::Ip(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a sockaddr_in6 (ipv6(7)).
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(Addr::Ip(IpAddr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_by_name_and_index() {
        // Every network namespace has `lo`, up or down.
        let i = ifindex("lo").expect("lo has an index");
        assert_eq!(ifname(i).as_deref(), Some("lo"));
        assert_eq!(ifindex("no-such-if0"), None);
        assert_eq!(ifindex("bad\0name"), None);
        // lo's link address is all zero but present.
        assert_eq!(mac("lo").unwrap(), Some([0; 6]));
        assert_eq!(mac("no-such-if0").unwrap(), None);
        assert!(local_addresses().unwrap().iter().all(|a| !a.is_loopback()));
    }
}
