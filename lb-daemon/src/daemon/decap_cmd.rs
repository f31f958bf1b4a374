//! `lb-daemon decap`: the backend host's half of lb.

use anyhow::Context as _;
use lb_common::DecapStat;

use super::DecapAction;
use crate::{dataplane::Decap, netif, vip::addr_key};

/// Runs a decap action.
pub fn run(action: DecapAction) -> anyhow::Result<()> {
    match action {
        DecapAction::Attach {
            interface,
            addresses,
            pass_only,
            gue_port,
            pin_path,
        } => {
            let addresses = if addresses.is_empty() && !pass_only {
                netif::local_addresses().context("listing this host's addresses")?
            } else {
                addresses
            };
            let mut d = Decap::load_with_gue_port(gue_port).context("loading lb_decap")?;
            for a in &addresses {
                d.add_address(&addr_key(*a))
                    .with_context(|| format!("adding {a}"))?;
            }
            d.attach_pinned(&interface, pass_only, &pin_path)?;
            tracing::info!(
                interface = %interface,
                pass_only,
                gue_port,
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
                    println!("{:<13} {}", k.name(), s[k as usize]);
                }
            }
            Ok(())
        }
    }
}
