//! Compiler election across many engines: exactly one compile per (key, class), installs
//! only where the class runs, takeover after a claimant dies, partitions.

mod common;

use common::code::{Fleet, NodeSpec, classes};
use ignite::{Roles, Tier};

/// 50 nodes: 20 run [v3, v2], 15 run [v2], 10 run [aarch64], 5 run nothing compiled;
/// every third node lacks the compile role.
fn mixed_fleet(seed: u64) -> Fleet {
    let (v2, v3, arm) = classes();
    let specs = (0..50)
        .map(|i| NodeSpec {
            hardware: match i {
                0..20 => vec![v3.clone(), v2.clone()],
                20..35 => vec![v2.clone()],
                35..45 => vec![arm.clone()],
                _ => vec![],
            },
            roles: if i % 3 == 2 { Roles::PROFILE } else { Roles::ALL },
        })
        .collect();
    Fleet::new(seed, specs, 200, |_| {})
}

#[test]
fn fault_free_fleet_compiles_each_key_once_per_class_and_installs_where_it_runs() {
    let mut f = mixed_fleet(7);
    let (v2, v3, arm) = classes();
    f.run_for(3_000);
    // 50 nodes x 10 invocations = 500 > tier-1 threshold 200; not enough for tier 2.
    for i in 0..50 {
        f.invoke(i, 1, 10, 4);
    }
    f.run_for(20_000);
    let compiles = f.publish_compiles();
    let key = f.key(1, 1);
    // One compile per class needed: v3 (preferred by the v3 nodes), v2 (v2-only nodes),
    // aarch64; each by exactly one node.
    assert_eq!(compiles.len(), 3, "{compiles:?}");
    for class in [v2.id(), v3.id(), arm.id()] {
        let who = &compiles[&(key, class, 1)];
        assert_eq!(who.len(), 1, "class {class:?} compiled by {who:?}");
        assert!(f.specs[who[0]].roles.contains(Roles::COMPILE));
        assert!(f.specs[who[0]].hardware.iter().any(|c| c.id() == class));
    }
    for i in 0..50 {
        let want = f.specs[i].hardware.first().map(|c| c.id());
        assert_eq!(f.installed(i, &key).map(|(c, _)| c), want, "engine {i}");
    }
    // Every install event is for a class the engine runs. A [v3, v2] node may install the
    // v2 code first and switch when the v3 code arrives; nothing else installs twice.
    let installs = f.installs();
    for (i, _, class, _) in &installs {
        assert!(f.specs[*i].hardware.iter().any(|c| c.id() == *class), "engine {i}");
    }
    for i in 0..50 {
        let n = installs.iter().filter(|(j, ..)| *j == i).count();
        let max = if f.specs[i].hardware.len() > 1 { 2 } else { 1 };
        let min = usize::from(!f.specs[i].hardware.is_empty());
        assert!((min..=max).contains(&n), "engine {i} installed {n} times");
    }
    assert!(!f.installs().iter().any(|(_, k, _, _)| k.tier == Tier(2)));
}
