//! The diff as a table: a file, a live state (both written as `[[vip]]`
//! tables), `--prune` or not, and the exact plan printed.

use lb_api::vipfile::VipFile;

use super::*;

fn vips(text: &str) -> Vec<VipConfig> {
    VipFile::parse(text, "case.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .vips
}

/// `[[vip]]` with backends written `addr` or `addr=weight`.
fn vip(addr: &str, flags: &[&str], backends: &[&str]) -> String {
    let flags: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    let backends: Vec<String> = backends
        .iter()
        .map(|b| match b.split_once('=') {
            Some((a, w)) => format!("{{ address = \"{a}\", weight = {w} }}"),
            None => format!("{{ address = \"{b}\" }}"),
        })
        .collect();
    format!(
        "[[vip]]\naddress = \"{addr}\"\nflags = [{}]\nbackends = [{}]\n",
        flags.join(", "),
        backends.join(", ")
    )
}

const A: &str = "198.18.100.10:80/tcp";
const B: &str = "198.18.100.20:53/udp";
const C6: &str = "[fd00:100::10]:443/tcp";

struct Case {
    name: &'static str,
    file: String,
    live: String,
    prune: bool,
    want: &'static str,
}

fn cases() -> Vec<Case> {
    let a = vip(A, &[], &["198.19.0.11", "198.19.0.12"]);
    let b = vip(B, &["no-conntrack"], &["198.19.0.21=7"]);
    let c6 = vip(C6, &["no-sport"], &["fd00:19::11", "198.19.0.31=0"]);
    vec![
        Case {
            name: "identical",
            file: format!("{a}{b}{c6}"),
            live: format!("{c6}{a}{b}"),
            prune: true,
            want: "in sync: 3 VIPs match the file\n",
        },
        Case {
            name: "backend order and default weight spelled out do not matter",
            file: vip(A, &[], &["198.19.0.12", "198.19.0.11=100"]),
            live: a.clone(),
            prune: false,
            want: "in sync: 1 VIPs match the file\n",
        },
        Case {
            name: "both empty",
            file: String::new(),
            live: String::new(),
            prune: true,
            want: "in sync: 0 VIPs match the file\n",
        },
        Case {
            name: "a new VIP is created with its backends, sorted",
            file: format!(
                "{a}{}",
                vip(C6, &["no-sport"], &["fd00:19::12", "198.19.0.31=5"])
            ),
            live: a.clone(),
            prune: false,
            want: "+ create VIP [fd00:100::10]:443/tcp [no-sport]\n    \
                   + backend 198.19.0.31 weight 5\n    \
                   + backend fd00:19::12 weight 100\n\
                   plan: 1 to create, 0 to change, 0 to delete, 1 unchanged\n",
        },
        Case {
            name: "a VIP not in the file is left without --prune",
            file: a.clone(),
            live: format!("{a}{b}"),
            prune: false,
            want: "  leave VIP 198.18.100.20:53/udp: not in the file (--prune deletes it)\n\
                   in sync: 1 VIPs match the file, 1 left alone (not in the file)\n",
        },
        Case {
            name: "and deleted with --prune",
            file: a.clone(),
            live: format!("{a}{b}"),
            prune: true,
            want: "- delete VIP 198.18.100.20:53/udp [no-conntrack] (1 backends)\n\
                   plan: 0 to create, 0 to change, 1 to delete, 1 unchanged\n",
        },
        Case {
            name: "an empty file with --prune deletes everything",
            file: String::new(),
            live: format!("{a}{c6}"),
            prune: true,
            want: "- delete VIP 198.18.100.10:80/tcp (2 backends)\n\
                   - delete VIP [fd00:100::10]:443/tcp [no-sport] (2 backends)\n\
                   plan: 0 to create, 0 to change, 2 to delete, 0 unchanged\n",
        },
        Case {
            name: "backends added, removed, reweighted, drained and undrained, by address",
            file: vip(
                A,
                &[],
                &[
                    "198.19.0.14",
                    "198.19.0.12=50",
                    "198.19.0.13=0",
                    "198.19.0.15=3",
                ],
            ),
            live: vip(
                A,
                &[],
                &["198.19.0.11", "198.19.0.12", "198.19.0.13", "198.19.0.15=0"],
            ),
            prune: false,
            want: "~ change VIP 198.18.100.10:80/tcp\n    \
                   - backend 198.19.0.11 (weight 100)\n    \
                   ~ backend 198.19.0.12 weight 100 -> 50\n    \
                   ~ backend 198.19.0.13 weight 100 -> 0 (drain)\n    \
                   + backend 198.19.0.14 weight 100\n    \
                   ~ backend 198.19.0.15 weight 0 -> 3 (undrain)\n\
                   plan: 0 to create, 1 to change, 0 to delete, 0 unchanged\n",
        },
        Case {
            name: "a flag change alone is a change of the VIP, not a re-creation",
            file: vip(
                A,
                &["no-sport", "no-conntrack"],
                &["198.19.0.11", "198.19.0.12"],
            ),
            live: a.clone(),
            prune: false,
            want: "~ change VIP 198.18.100.10:80/tcp\n    \
                   ~ flags (none) -> no-sport,no-conntrack (with the backends, in one step)\n\
                   plan: 0 to create, 1 to change, 0 to delete, 0 unchanged\n",
        },
        Case {
            name: "flags cleared and all backends removed",
            file: vip(C6, &[], &[]),
            live: c6.clone(),
            prune: false,
            want: "~ change VIP [fd00:100::10]:443/tcp\n    \
                   ~ flags no-sport -> (none) (with the backends, in one step)\n    \
                   - backend 198.19.0.31 (weight 0)\n    \
                   - backend fd00:19::11 (weight 100)\n\
                   plan: 0 to create, 1 to change, 0 to delete, 0 unchanged\n",
        },
        Case {
            name: "same address, another port or protocol, is another VIP",
            file: vip("198.18.100.10:80/udp", &[], &["198.19.0.11"]),
            live: vip("198.18.100.10:80/tcp", &[], &["198.19.0.11"]),
            prune: true,
            want: "- delete VIP 198.18.100.10:80/tcp (1 backends)\n\
                   + create VIP 198.18.100.10:80/udp\n    \
                   + backend 198.19.0.11 weight 100\n\
                   plan: 1 to create, 0 to change, 1 to delete, 0 unchanged\n",
        },
        Case {
            name: "deletions, then changes, then creations",
            file: format!(
                "{}{}",
                vip(C6, &[], &[]),
                vip(B, &["no-conntrack"], &["198.19.0.21=8"])
            ),
            live: format!("{a}{b}"),
            prune: true,
            want: "- delete VIP 198.18.100.10:80/tcp (2 backends)\n\
                   ~ change VIP 198.18.100.20:53/udp\n    \
                   ~ backend 198.19.0.21 weight 7 -> 8\n\
                   + create VIP [fd00:100::10]:443/tcp\n\
                   plan: 1 to create, 1 to change, 1 to delete, 0 unchanged\n",
        },
    ]
}

#[test]
fn diff_table() {
    for c in cases() {
        let plan = Plan::new(&vips(&c.file), &vips(&c.live), c.prune);
        assert_eq!(plan.render(), c.want, "case: {}", c.name);
        assert_eq!(
            plan.is_empty(),
            c.want.starts_with("in sync") || c.want.starts_with("  leave"),
            "case: {}",
            c.name
        );
    }
}

/// What a daemon would hold after the plan's steps, computed from the
/// steps alone: applying a plan to the live state must give the file.
fn apply_steps(live: &[VipConfig], plan: &Plan) -> Vec<VipConfig> {
    let mut state: BTreeMap<VipSpec, VipConfig> =
        live.iter().map(|v| (v.address, v.clone())).collect();
    for s in &plan.steps {
        match s {
            Step::Delete(v) => {
                assert!(state.remove(&v.address).is_some());
            }
            Step::Create(v) => {
                assert!(state.insert(v.address, v.clone()).is_none());
            }
            Step::Change(c) => {
                let v = state.get_mut(&c.vip).expect("changed VIP exists");
                if let Some((old, new)) = c.flags {
                    assert_eq!(v.flags, old);
                    v.flags = new;
                }
                v.backends = c.backends.clone();
            }
        }
    }
    state.into_values().collect()
}

fn normalised(vips: &[VipConfig]) -> Vec<VipConfig> {
    let mut out: Vec<VipConfig> = vips.to_vec();
    out.sort_by_key(|v| v.address);
    for v in &mut out {
        v.backends.sort_by_key(|b| b.address);
    }
    out
}

#[test]
fn applying_a_plan_gives_the_file_and_then_nothing_is_left_to_do() {
    for c in cases() {
        let (file, live) = (vips(&c.file), vips(&c.live));
        let plan = Plan::new(&file, &live, true);
        let after = apply_steps(&live, &plan);
        assert_eq!(normalised(&after), normalised(&file), "case: {}", c.name);
        let again = Plan::new(&file, &after, true);
        assert!(again.is_empty(), "case {}: {}", c.name, again.render());
        assert_eq!(again.unchanged, file.len());
    }
}

#[test]
fn health_checks_are_compared_in_effect_and_changed_alone() {
    let with = |h: &str| {
        format!(
            "[[vip]]\naddress = \"{A}\"\nhealth = {{ {h} }}\nbackends = [{{ address = \"198.19.0.11\" }}]\n"
        )
    };
    let bare = vip(A, &[], &["198.19.0.11"]);
    // Defaults spelled out or not: the same check.
    let p = Plan::new(
        &vips(&with(
            r#"kind = "http", path = "/h", interval = "1s", rise = 2"#,
        )),
        &vips(&with(r#"kind = "http", path = "/h""#)),
        false,
    );
    assert!(p.is_empty(), "{}", p.render());
    // A check added: one change, no backend call.
    let p = Plan::new(&vips(&with(r#"kind = "tcp""#)), &vips(&bare), false);
    let Step::Change(c) = &p.steps[0] else {
        panic!("{p:?}")
    };
    assert!(!c.members_change());
    assert_eq!(
        p.render(),
        "~ change VIP 198.18.100.10:80/tcp\n    ~ health none -> tcp connect, every 1000 ms, \
         timeout 500 ms, rise 2, fall 3, jitter 10%, initial up\n\
         plan: 0 to create, 1 to change, 0 to delete, 0 unchanged\n"
    );
    // Removed.
    let p = Plan::new(&vips(&bare), &vips(&with(r#"kind = "tcp""#)), false);
    assert!(
        p.render().contains("~ health tcp connect"),
        "{}",
        p.render()
    );
    assert!(p.render().contains("-> none"), "{}", p.render());
    // Created with one.
    let p = Plan::new(
        &vips(&with(r#"kind = "udp", payload = "x", port = 53"#)),
        &[],
        false,
    );
    assert!(
        p.render().contains("    + health udp \"x\", port 53"),
        "{}",
        p.render()
    );
}
