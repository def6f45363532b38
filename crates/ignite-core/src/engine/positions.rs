//! Rank positions by difference: what changed between two strictly ascending member
//! lists, so that a cached rank position moves by the nodes added and removed.

use crate::ids::NodeKey;

/// Nodes added to and removed from a strictly ascending list.
pub(super) type Diff = (Vec<NodeKey>, Vec<NodeKey>);

/// What changed from `old` to `new` (both strictly ascending), or `None` when there is no
/// old list or so much changed that scoring every node again costs about the same.
pub(super) fn sorted_diff(old: Option<&[NodeKey]>, new: &[NodeKey]) -> Option<Diff> {
    let old = old?;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
        if 2 * (added.len() + removed.len()) > new.len() {
            return None;
        }
    }
    Some((added, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{ClassId, CodeKey, Election, rules};
    use crate::ids::Tier;
    use crate::ids::{FunctionId, MethodId};
    use crate::tenancy::TenantId;
    use proptest::prelude::*;

    fn set(bits: u64) -> Vec<NodeKey> {
        (0..64u8)
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| NodeKey([i; 32]))
            .collect()
    }

    proptest! {
        /// A position moved by the nodes added and removed equals the position computed
        /// from scratch, and the diff turns the old list into the new one.
        #[test]
        fn positions_move_by_the_diff(
            old in any::<u64>(),
            flips in proptest::collection::vec(0..64u8, 0..8),
            me in 0..64u8,
            g in 1..50u32,
        ) {
            let old = old | 0x5555_5555_5555_5555;
            let new = flips.iter().fold(old, |acc, f| acc ^ 1 << f);
            let (old, new) = (set(old | 1 << me), set(new | 1 << me));
            let me = NodeKey([me; 32]);
            let tenant = TenantId([3; 32]);
            let election = Election {
                key: CodeKey { function: FunctionId::from_deployment("f", b"c"), method: MethodId(g), tier: Tier(1) },
                class: ClassId([2; 16]),
                generation: g,
            };
            prop_assert_eq!(sorted_diff(None, &new), None);
            // At most 8 flips of at least 32 members: small enough to move by.
            let (added, removed) = sorted_diff(Some(&old), &new).expect("a small change");
            let mut rebuilt: Vec<NodeKey> = old.iter().copied().filter(|n| !removed.contains(n)).chain(added.iter().copied()).collect();
            rebuilt.sort();
            prop_assert_eq!(&rebuilt, &new);
            let before = rules::position(&tenant, &election, old.iter().copied(), &me).expect("me in old");
            let moved = before + rules::count_before(&tenant, &election, &me, &added)
                - rules::count_before(&tenant, &election, &me, &removed);
            prop_assert_eq!(Some(moved), rules::position(&tenant, &election, new.iter().copied(), &me));
            prop_assert_eq!(moved, rules::count_before(&tenant, &election, &me, &new));
        }
    }
}
