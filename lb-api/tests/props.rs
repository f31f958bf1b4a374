//! Property tests (proptest) of every parser and conversion at the API's
//! edge: the VIP, protocol and MAC parsers, and each lb.v1 request message
//! turned into domain types. Inputs are arbitrary strings, arbitrary message
//! fields, and mutations of the checked-in corpus of valid inputs
//! (`tests/corpus/`). Properties: nothing panics; whatever is accepted obeys
//! the domain's limits and survives a round trip through its text or message
//! form unchanged. `PROPTEST_CASES` scales a run (CI uses the default below).

use lb_api::{DEFAULT_WEIGHT, MAX_WEIGHT, MacAddr, Proto, VipSpec, convert};
use lb_proto::v1 as pb;
use proptest::prelude::*;

const CASES: u32 = 2000;

fn corpus(text: &'static str) -> Vec<&'static str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

/// A corpus entry with up to six byte-level edits: replace, insert or
/// delete at a position (positions wrap), kept as a (lossy) string.
fn mutated(entries: Vec<&'static str>) -> impl Strategy<Value = String> {
    (
        0..entries.len(),
        prop::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut b = entries[i].as_bytes().to_vec();
            for (op, at, v) in edits {
                let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
                match op {
                    0 if at < b.len() => b[at] = v,
                    1 => b.insert(at, v),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        })
}

fn vip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        mutated(corpus(include_str!("corpus/vips.txt"))),
        ".{0,40}",
        "[0-9a-f:.\\[\\]/]{0,40}(tcp|udp|TCP)?",
    ]
}

fn check_vip(s: &str) {
    if let Ok(v) = s.parse::<VipSpec>() {
        let again: VipSpec = v
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} parsed as {v}, which does not parse back: {e}"));
        assert_eq!(again, v, "{s:?}");
        // Its message form converts back to the same VIP.
        assert_eq!(convert::vip(Some(&convert::vip_out(&v))).unwrap(), v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn vip_text_never_panics_and_round_trips(s in vip_text()) {
        check_vip(&s);
    }

    #[test]
    fn mac_text_never_panics_and_round_trips(
        s in prop_oneof![mutated(corpus(include_str!("corpus/macs.txt"))), ".{0,24}"]
    ) {
        if let Ok(m) = s.parse::<MacAddr>() {
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
            prop_assert_eq!(convert::mac(&m.to_string()).unwrap(), m);
        }
        let _ = convert::mac(&s);
    }

    #[test]
    fn proto_text_never_panics(s in ".{0,8}") {
        if let Ok(p) = s.parse::<Proto>() {
            prop_assert_eq!(p.to_string().parse::<Proto>().unwrap(), p);
        }
    }

    #[test]
    fn vip_message_is_accepted_only_within_limits(
        address in prop_oneof![vip_text(), "[0-9.]{7,15}", ".{0,20}"],
        port in any::<u32>(),
        protocol in any::<i32>(),
    ) {
        let m = pb::Vip { address: address.clone(), port, protocol };
        if let Ok(v) = convert::vip(Some(&m)) {
            prop_assert!(port <= u32::from(u16::MAX));
            prop_assert_eq!(u32::from(v.port), port);
            prop_assert_eq!(convert::vip_out(&v), m.clone());
        }
        prop_assert!(convert::vip(None).is_err());
    }

    #[test]
    fn backend_message_keeps_its_weight_for_the_state_to_judge(
        address in prop_oneof!["[0-9.]{7,15}", "[0-9a-f:]{2,39}", ".{0,20}"],
        weight in prop_oneof![Just(None), any::<u32>().prop_map(Some), (0u32..=MAX_WEIGHT + 2).prop_map(Some)],
    ) {
        let m = pb::Backend { address, weight };
        if let Ok(b) = convert::backend(&m) {
            // The range is the state's to check (with the VIP in the
            // message), so the conversion must hand the weight over as sent.
            prop_assert_eq!(b.weight, weight.unwrap_or(DEFAULT_WEIGHT));
            prop_assert_eq!(convert::backend(&convert::backend_request(&b)).unwrap(), b);
        }
    }

    #[test]
    fn flag_lists_never_panic(raw in prop::collection::vec(any::<i32>(), 0..6)) {
        if let Ok(f) = convert::flags(&raw) {
            prop_assert_eq!(convert::flags(&convert::flags_out(&f)).unwrap(), f);
        }
        for r in raw {
            let _ = convert::flag_name(r);
            let _ = convert::proto(r);
        }
    }
}
