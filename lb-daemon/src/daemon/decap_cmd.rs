//! `lb-daemon decap`: the backend host's half of lb.

use std::net::IpAddr;

use anyhow::Context as _;
use lb_common::DecapStat;

use super::DecapAction;
use crate::{dataplane::Decap, vip::addr_key};

/// Every unicast address configured in this network namespace.
fn local_addresses() -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut cur = ifap;
    while !cur.is_null() {
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            match unsafe { (*ifa.ifa_addr).sa_family } as i32 {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(ifap) };
    out.retain(|a| !a.is_loopback() && !a.is_unspecified());
    out.sort();
    out.dedup();
    Ok(out)
}

/// Runs a decap action.
pub fn run(action: DecapAction) -> anyhow::Result<()> {
    match action {
        DecapAction::Attach {
            interface,
            addresses,
            pass_only,
            pin_path,
        } => {
            let addresses = if addresses.is_empty() && !pass_only {
                local_addresses()?
            } else {
                addresses
            };
            let mut d = Decap::load().context("loading lb_decap")?;
            for a in &addresses {
                d.add_address(&addr_key(*a))
                    .with_context(|| format!("adding {a}"))?;
            }
            d.attach_pinned(&interface, pass_only, &pin_path)?;
            tracing::info!(
                interface = %interface,
                pass_only,
                addresses = ?addresses,
                pin_path = %pin_path.display(),
                "decap attached"
            );
            Ok(())
        }
        DecapAction::Detach { pin_path } => {
            Decap::detach_pinned(&pin_path)?;
            tracing::info!(pin_path = %pin_path.display(), "decap detached");
            Ok(())
        }
        DecapAction::Stats { pin_path, json } => {
            let s = Decap::pinned_stats(&pin_path)?;
            if json {
                let obj: serde_json::Map<String, serde_json::Value> = DecapStat::ALL
                    .iter()
                    .map(|k| (k.name().to_string(), s[*k as usize].into()))
                    .collect();
                println!("{}", serde_json::Value::Object(obj));
            } else {
                for k in DecapStat::ALL {
                    println!("{:<10} {}", k.name(), s[k as usize]);
                }
            }
            Ok(())
        }
    }
}
