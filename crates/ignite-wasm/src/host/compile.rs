//! What an elected host compiles: the instrumented module for tiers 0 and 1, and for tier 2
//! a module specialized from the merged fleet profile.

use super::MODULE_METHOD;
use crate::rewrite::{self, Speculation};
use ignite_core::{Assumption, Counter, CounterKey, Tier};
use std::collections::BTreeMap;

/// The `call_indirect` sites whose merged profile is monomorphic: every observation of the
/// site (at least `min_samples` of them) went to one table slot below the instrumented
/// range. Sites whose speculation is `excluded` (known broken) are left generic.
pub fn monomorphic_sites(profile: &[(CounterKey, u64)], min_samples: u64, excluded: &[Assumption]) -> Vec<Speculation> {
    // site -> (total, slot -> count), summed over the tiers below the compile's.
    let mut sites: BTreeMap<u16, (u64, BTreeMap<u32, u64>)> = BTreeMap::new();
    for (k, v) in profile {
        if k.method != MODULE_METHOD || k.tier >= Tier(2) {
            continue;
        }
        match k.counter {
            Counter::ReceiverTotal { site } => sites.entry(site).or_default().0 += v,
            Counter::Receiver { site, type_id } => *sites.entry(site).or_default().1.entry(type_id).or_insert(0) += v,
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (site, (total, slots)) in sites {
        let mut seen = slots.iter().filter(|(_, n)| **n > 0);
        let (Some((slot, n)), None) = (seen.next(), seen.next()) else {
            continue;
        };
        if *n != total || total < min_samples || *slot >= rewrite::INSTRUMENT_SLOTS {
            continue;
        }
        let assumption = Assumption::MonomorphicCall { site, target: *slot };
        if excluded.contains(&assumption) {
            continue;
        }
        out.push(Speculation { site, slot: *slot });
    }
    out
}

/// The speculations of exactly these assumptions (for attestation, which must rebuild the
/// manifest's code): every `MonomorphicCall`.
pub fn required_sites(required: &[Assumption]) -> Vec<Speculation> {
    required
        .iter()
        .filter_map(|a| match a {
            Assumption::MonomorphicCall { site, target } => Some(Speculation {
                site: *site,
                slot: *target,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tier: u8, counter: Counter) -> CounterKey {
        CounterKey {
            method: MODULE_METHOD,
            tier: Tier(tier),
            counter,
        }
    }

    #[test]
    fn only_sites_with_one_slot_and_enough_samples_are_monomorphic() {
        let profile = vec![
            // Site 0: 150 calls to slot 2, over tiers 0 and 1.
            (key(0, Counter::ReceiverTotal { site: 0 }), 100),
            (key(0, Counter::Receiver { site: 0, type_id: 2 }), 100),
            (key(1, Counter::ReceiverTotal { site: 0 }), 50),
            (key(1, Counter::Receiver { site: 0, type_id: 2 }), 50),
            // Site 1: two slots.
            (key(0, Counter::ReceiverTotal { site: 1 }), 300),
            (key(0, Counter::Receiver { site: 1, type_id: 0 }), 299),
            (key(0, Counter::Receiver { site: 1, type_id: 1 }), 1),
            // Site 2: too few samples.
            (key(0, Counter::ReceiverTotal { site: 2 }), 10),
            (key(0, Counter::Receiver { site: 2, type_id: 0 }), 10),
            // Site 3: megamorphic marker only.
            (key(0, Counter::ReceiverTotal { site: 3 }), 500),
            (
                key(
                    0,
                    Counter::Receiver {
                        site: 3,
                        type_id: u32::MAX,
                    },
                ),
                500,
            ),
            // Site 4: total above the tracked slot (an untracked slot was seen).
            (key(0, Counter::ReceiverTotal { site: 4 }), 501),
            (key(0, Counter::Receiver { site: 4, type_id: 1 }), 500),
        ];
        let got = monomorphic_sites(&profile, 100, &[]);
        assert_eq!(got, vec![Speculation { site: 0, slot: 2 }]);
        let excluded = [Assumption::MonomorphicCall { site: 0, target: 2 }];
        assert!(monomorphic_sites(&profile, 100, &excluded).is_empty());
        assert_eq!(required_sites(&excluded), vec![Speculation { site: 0, slot: 2 }]);
    }
}
