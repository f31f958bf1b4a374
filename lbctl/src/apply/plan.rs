//! The difference between a file of `[[vip]]` tables and a node's live VIPs,
//! as the steps that make the node match the file, and how it is printed.
//!
//! Pure: no I/O, so the diff is tested as a table of cases.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    net::IpAddr,
};

use lb_api::{
    CheckKind, HealthCheck, VipFlags, VipSpec,
    vipfile::{BackendConfig, VipConfig},
};

/// The change of one VIP that exists on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The VIP.
    pub vip: VipSpec,
    /// `(live, file)` flags when they differ.
    pub flags: Option<(VipFlags, VipFlags)>,
    /// Backends in the file only, by address.
    pub added: Vec<BackendConfig>,
    /// Backends live only, by address (with their live weight).
    pub removed: Vec<BackendConfig>,
    /// Backends on both sides with another weight: `(address, live, file)`.
    pub reweighted: Vec<(IpAddr, u32, u32)>,
    /// The file's whole backend set: what the one ReplaceBackends call sends.
    pub backends: Vec<BackendConfig>,
    /// `(live, file)` health checks when they differ (a SetHealthCheck
    /// after the ReplaceBackends, if any).
    pub health: Option<(Option<HealthCheck>, Option<HealthCheck>)>,
}

impl Change {
    /// Whether the backends or flags change (a ReplaceBackends is needed).
    pub fn members_change(&self) -> bool {
        self.flags.is_some()
            || !self.added.is_empty()
            || !self.removed.is_empty()
            || !self.reweighted.is_empty()
    }
}

/// A VIP's health check as the file (or the live VIP) says, in effect
/// (defaults filled in), so `interval = "1s"` and no interval compare equal.
/// A file was checked when parsed, and the daemon only reports valid checks.
pub fn check_of(v: &VipConfig) -> Option<HealthCheck> {
    v.health_check().ok().flatten()
}

/// One line describing a check: `http GET /healthz expect 200, port 80,
/// every 1000 ms, timeout 500 ms, rise 2, fall 3, jitter 10%`.
pub fn check_text(c: Option<&HealthCheck>) -> String {
    let Some(c) = c else {
        return "none".to_owned();
    };
    let kind = match &c.kind {
        CheckKind::Tcp => "tcp connect".to_owned(),
        CheckKind::Http { path, expect, host } => format!(
            "http GET {path} expect {expect}{}",
            host.as_ref()
                .map(|h| format!(" host {h}"))
                .unwrap_or_default()
        ),
        CheckKind::Udp { payload, expect } => format!(
            "udp {payload:?}{}",
            expect
                .as_ref()
                .map(|e| format!(" expect {e:?}"))
                .unwrap_or_default()
        ),
    };
    let mut text = format!(
        "{kind}{}, every {} ms, timeout {} ms, rise {}, fall {}, jitter {}%, initial {}{}",
        c.port.map(|p| format!(", port {p}")).unwrap_or_default(),
        c.interval_ms,
        c.timeout_ms,
        c.rise,
        c.fall,
        c.jitter_percent,
        c.initial,
        if c.mode == lb_api::ProbeMode::ViaVip {
            ", via-vip"
        } else {
            ""
        }
    );
    for (a, o) in &c.overrides {
        text.push_str(&format!("; {a}:"));
        if let Some(p) = o.port {
            text.push_str(&format!(" port {p}"));
        }
        if let Some(p) = &o.path {
            text.push_str(&format!(" path {p}"));
        }
        if let Some(h) = &o.host {
            text.push_str(&format!(" host {h}"));
        }
    }
    text
}

/// One step of a plan: one API call, atomic on the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delete a live VIP the file does not have (only with `--prune`).
    Delete(VipConfig),
    /// Change a VIP's flags and backends: one ReplaceBackends (with the flags
    /// when they change), so no reader sees it half changed.
    Change(Change),
    /// Create a VIP with its flags and backends: one CreateVip.
    Create(VipConfig),
}

impl Step {
    /// The VIP the step is about.
    pub fn vip(&self) -> VipSpec {
        match self {
            Step::Delete(v) | Step::Create(v) => v.address,
            Step::Change(c) => c.vip,
        }
    }
}

/// What it takes to make a node's VIPs match a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in the order they are applied: deletions, then changes,
    /// then creations, each by VIP. Deleting first frees VIP indices, slots
    /// and addresses that the rest may need; changing before creating lets a
    /// backend address leave its VIP before it becomes a VIP of its own.
    pub steps: Vec<Step>,
    /// Live VIPs the file does not have, left alone (no `--prune`).
    pub left: Vec<VipSpec>,
    /// VIPs that already match the file.
    pub unchanged: usize,
}

/// Backends by address.
fn by_address(backends: &[BackendConfig]) -> BTreeMap<IpAddr, u32> {
    backends.iter().map(|b| (b.address, b.weight)).collect()
}

/// The changes that turn `live` into `file`, if any.
fn change(live: &VipConfig, file: &VipConfig) -> Option<Change> {
    let (old, new) = (by_address(&live.backends), by_address(&file.backends));
    let added = new
        .iter()
        .filter(|(a, _)| !old.contains_key(a))
        .map(|(&address, &weight)| BackendConfig { address, weight })
        .collect::<Vec<_>>();
    let removed = old
        .iter()
        .filter(|(a, _)| !new.contains_key(a))
        .map(|(&address, &weight)| BackendConfig { address, weight })
        .collect::<Vec<_>>();
    let reweighted = new
        .iter()
        .filter_map(|(a, &w)| old.get(a).filter(|&&o| o != w).map(|&o| (*a, o, w)))
        .collect::<Vec<_>>();
    let flags = (live.flags != file.flags).then_some((live.flags, file.flags));
    let (lh, fh) = (check_of(live), check_of(file));
    let health = (lh != fh).then_some((lh, fh));
    if flags.is_none()
        && health.is_none()
        && added.is_empty()
        && removed.is_empty()
        && reweighted.is_empty()
    {
        return None;
    }
    Some(Change {
        vip: file.address,
        flags,
        added,
        removed,
        reweighted,
        backends: new
            .into_iter()
            .map(|(address, weight)| BackendConfig { address, weight })
            .collect(),
        health,
    })
}

impl Plan {
    /// The plan that makes `live` match `file`; with `prune`, live VIPs
    /// the file does not have are deleted, else they are left and listed.
    /// `file` has been checked (no VIP twice, no backend twice).
    pub fn new(file: &[VipConfig], live: &[VipConfig], prune: bool) -> Self {
        let live_by: BTreeMap<VipSpec, &VipConfig> = live.iter().map(|v| (v.address, v)).collect();
        let file_by: BTreeMap<VipSpec, &VipConfig> = file.iter().map(|v| (v.address, v)).collect();
        let mut plan = Plan::default();
        let (mut changes, mut creates) = (Vec::new(), Vec::new());
        for (spec, v) in &live_by {
            if !file_by.contains_key(spec) {
                if prune {
                    plan.steps.push(Step::Delete((*v).clone()));
                } else {
                    plan.left.push(*spec);
                }
            }
        }
        for (spec, f) in &file_by {
            match live_by.get(spec) {
                None => {
                    let mut v = (*f).clone();
                    v.backends.sort_by_key(|b| b.address);
                    creates.push(Step::Create(v));
                }
                Some(l) => match change(l, f) {
                    Some(c) => changes.push(Step::Change(c)),
                    None => plan.unchanged += 1,
                },
            }
        }
        plan.steps.extend(changes);
        plan.steps.extend(creates);
        plan
    }

    /// Whether applying the plan changes nothing (VIPs left alone are not
    /// a change: applying would not touch them).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Counts of (deletions, changes, creations).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in &self.steps {
            match s {
                Step::Delete(_) => c.0 += 1,
                Step::Change(_) => c.1 += 1,
                Step::Create(_) => c.2 += 1,
            }
        }
        c
    }

    /// The plan for people: one line per VIP step, indented lines for its
    /// backends and flags, the VIPs left alone, and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        for step in &self.steps {
            match step {
                Step::Delete(v) => {
                    let _ = writeln!(
                        out,
                        "- delete VIP {}{} ({} backends)",
                        v.address,
                        flags_suffix(v.flags),
                        v.backends.len()
                    );
                }
                Step::Create(v) => {
                    let _ = writeln!(out, "+ create VIP {}{}", v.address, flags_suffix(v.flags));
                    if let Some(c) = check_of(v) {
                        let _ = writeln!(out, "    + health {}", check_text(Some(&c)));
                    }
                    for b in &v.backends {
                        let _ = writeln!(out, "    + backend {} weight {}", b.address, b.weight);
                    }
                }
                Step::Change(c) => {
                    let _ = writeln!(out, "~ change VIP {}", c.vip);
                    if let Some((old, new)) = c.flags {
                        let _ = writeln!(
                            out,
                            "    ~ flags {} -> {} (with the backends, in one step)",
                            flag_list(old),
                            flag_list(new)
                        );
                    }
                    let mut lines: BTreeSet<(IpAddr, String)> = BTreeSet::new();
                    for b in &c.added {
                        lines.insert((
                            b.address,
                            format!("+ backend {} weight {}", b.address, b.weight),
                        ));
                    }
                    for b in &c.removed {
                        lines.insert((
                            b.address,
                            format!("- backend {} (weight {})", b.address, b.weight),
                        ));
                    }
                    for (a, old, new) in &c.reweighted {
                        let note = match (old, new) {
                            (_, 0) => " (drain)",
                            (0, _) => " (undrain)",
                            _ => "",
                        };
                        lines.insert((*a, format!("~ backend {a} weight {old} -> {new}{note}")));
                    }
                    for (_, l) in lines {
                        let _ = writeln!(out, "    {l}");
                    }
                    if let Some((old, new)) = &c.health {
                        let _ = writeln!(
                            out,
                            "    ~ health {} -> {}",
                            check_text(old.as_ref()),
                            check_text(new.as_ref())
                        );
                    }
                }
            }
        }
        for v in &self.left {
            let _ = writeln!(out, "  leave VIP {v}: not in the file (--prune deletes it)");
        }
        let (d, c, n) = self.counts();
        if self.is_empty() {
            let _ = write!(out, "in sync: {} VIPs match the file", self.unchanged);
        } else {
            let _ = write!(
                out,
                "plan: {n} to create, {c} to change, {d} to delete, {} unchanged",
                self.unchanged
            );
        }
        if !self.left.is_empty() {
            let _ = write!(out, ", {} left alone (not in the file)", self.left.len());
        }
        out.push('\n');
        out
    }
}

fn flag_list(f: VipFlags) -> String {
    if f == VipFlags::default() {
        "(none)".to_owned()
    } else {
        f.to_string()
    }
}

fn flags_suffix(f: VipFlags) -> String {
    if f == VipFlags::default() {
        String::new()
    } else {
        format!(" [{f}]")
    }
}

#[cfg(test)]
mod tests;
