//! Rank positions: counted only as far as a claim needs, and moved by difference (what
//! changed between two strictly ascending member lists) when membership changes.
//!
//! A node at position `p` of an election claims `p` leases after its turns start, so
//! knowing that `p` is large is enough for a long time: a fresh count stops at
//! [`COUNT_FIRST`] nodes ranked before this one, and counts further only when the turn of
//! the lower bound comes. In a fleet of `N` eligible nodes a node then scores about
//! `COUNT_FIRST * (1 + ln(N / COUNT_FIRST))` of them per election instead of all `N`.

use crate::code::{Election, rules};
use crate::ids::NodeKey;
use crate::tenancy::TenantId;

/// How many nodes ranked before this one a fresh count looks for before it stops.
pub(super) const COUNT_FIRST: usize = 4;

/// This node's rank position in an election, as far as it was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// The position.
    Exact(usize),
    /// At least this many eligible nodes rank before this one.
    AtLeast(usize),
}

impl Position {
    /// Counts the position of `me` among `members` (which hold it) up to `cap`.
    pub(super) fn count(
        tenant: &TenantId,
        election: &Election,
        me: &NodeKey,
        members: &[NodeKey],
        cap: usize,
    ) -> Position {
        let n = rules::count_before_at_most(tenant, election, me, members, cap);
        if n < cap {
            Position::Exact(n)
        } else {
            Position::AtLeast(n)
        }
    }

    /// The position once `added` joined and `removed` left the members (neither holding
    /// `me`); `None` if the change contradicts an exact position.
    pub(super) fn moved(
        self,
        tenant: &TenantId,
        election: &Election,
        me: &NodeKey,
        (added, removed): &Diff,
    ) -> Option<Position> {
        let up = rules::count_before(tenant, election, me, added);
        let down = rules::count_before(tenant, election, me, removed);
        match self {
            Position::Exact(p) => (p + up).checked_sub(down).map(Position::Exact),
            // The true position moves by the same amount, so the bound stays a bound.
            Position::AtLeast(p) => Some(Position::AtLeast((p + up).saturating_sub(down))),
        }
    }

    /// Whether this node's turn has come `elapsed_ms` after its turns started (position
    /// `p`'s turn: `p == 0` or `elapsed_ms >= p * lease_ms`), with the position after
    /// counting further (through `count(cap)`) when the turn of a lower bound has come.
    pub(super) fn turn(
        self,
        elapsed_ms: u64,
        lease_ms: u64,
        count: impl FnOnce(usize) -> Position,
    ) -> (Position, bool) {
        let due = |p: usize| p == 0 || elapsed_ms >= lease_ms.saturating_mul(p as u64);
        match self {
            Position::Exact(p) => (self, due(p)),
            Position::AtLeast(p) if !due(p) => (self, false),
            Position::AtLeast(_) => {
                // Positions up to `last` have had their turn; anything further has not.
                let last = usize::try_from(elapsed_ms / lease_ms.max(1)).unwrap_or(usize::MAX);
                let counted = count(last.saturating_add(1).max(COUNT_FIRST));
                let due = matches!(counted, Position::Exact(p) if due(p));
                (counted, due)
            }
        }
    }
}

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

    /// An old member list of at least 32 nodes, the new one after `flips`, both holding
    /// `me`, and an election of method `g`.
    fn case(old: u64, flips: &[u8], me: u8, g: u32) -> (Vec<NodeKey>, Vec<NodeKey>, NodeKey, Election) {
        let old = old | 0x5555_5555_5555_5555;
        let new = flips.iter().fold(old, |acc, f| acc ^ 1 << f);
        let election = Election {
            key: CodeKey {
                function: FunctionId::from_deployment("f", b"c"),
                method: MethodId(g),
                tier: Tier(1),
            },
            class: ClassId([2; 16]),
            generation: g,
        };
        (set(old | 1 << me), set(new | 1 << me), NodeKey([me; 32]), election)
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
            let (old, new, me, election) = case(old, &flips, me, g);
            let tenant = TenantId([3; 32]);
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

        /// A position counted only up to a cap, then moved by a diff, decides every turn as
        /// the exact position would, and never claims to be more than it is.
        #[test]
        fn partly_counted_positions_decide_turns_like_exact_ones(
            old in any::<u64>(),
            flips in proptest::collection::vec(0..64u8, 0..8),
            me in 0..64u8,
            g in 1..50u32,
            leases in 0..80u64,
            extra in 0..1_000u64,
        ) {
            let (old, new, me, election) = case(old, &flips, me, g);
            let tenant = TenantId([9; 32]);
            let lease = 1_000;
            let exact_old = rules::count_before(&tenant, &election, &me, &old);
            let exact_new = rules::count_before(&tenant, &election, &me, &new);
            let consistent = |p: Position, exact: usize| match p {
                Position::Exact(x) => x == exact,
                Position::AtLeast(x) => x <= exact,
            };
            let first = Position::count(&tenant, &election, &me, &old, COUNT_FIRST);
            prop_assert_eq!(
                first,
                if exact_old < COUNT_FIRST { Position::Exact(exact_old) } else { Position::AtLeast(COUNT_FIRST) }
            );
            let diff = sorted_diff(Some(&old), &new).expect("a small change");
            let moved = first.moved(&tenant, &election, &me, &diff).expect("consistent with the old list");
            prop_assert!(consistent(moved, exact_new), "{:?} for position {}", moved, exact_new);
            let elapsed = leases * lease + extra;
            let (counted, due) = moved.turn(elapsed, lease, |cap| Position::count(&tenant, &election, &me, &new, cap));
            prop_assert!(consistent(counted, exact_new), "{:?} for position {}", counted, exact_new);
            prop_assert_eq!(due, exact_new == 0 || elapsed >= lease * exact_new as u64);
            if due {
                prop_assert_eq!(counted, Position::Exact(exact_new));
            }
        }
    }
}
