//! Engines of one process sharing their check results (`Config::shared`) behave exactly as
//! engines checking everything themselves, while each unique signature is verified and each
//! unique message decrypted once.

mod common;

use common::code::{Fleet, NodeSpec, classes};
use ignite::{Roles, SharedChecks};

fn fleet(seed: u64, shared: Option<SharedChecks>) -> Fleet {
    let (v2, _, _) = classes();
    let specs = (0..12)
        .map(|_| NodeSpec {
            hardware: vec![v2.clone()],
            roles: Roles::ALL,
        })
        .collect();
    let mut f = Fleet::new(seed, specs, 200, move |c| c.shared = shared.clone());
    f.run_for(2_000);
    for i in 0..12 {
        f.invoke(i, 1, 30, 4);
        f.invoke(i, 2, 5, 4);
    }
    f.run_for(20_000);
    f
}

#[test]
fn shared_checks_change_no_output_and_verify_each_signature_once() {
    let alone = fleet(21, None);
    let cache = SharedChecks::new(1 << 16);
    let shared = fleet(21, Some(cache.clone()));
    assert_eq!(
        alone.cluster.trace_digest(),
        shared.cluster.trace_digest(),
        "identical outputs"
    );
    assert!(!shared.installs().is_empty());
    let sum = |f: &Fleet, g: fn(&ignite::Stats) -> u64| f.cluster.engines.iter().map(|e| g(e.stats())).sum::<u64>();
    let verified_alone = sum(&alone, |s| s.signatures_verified);
    let verified_shared = sum(&shared, |s| s.signatures_verified);
    let reused = sum(&shared, |s| s.signatures_shared);
    // Every check is done or reused: the totals match.
    assert_eq!(verified_shared + reused, verified_alone);
    assert!(
        verified_shared * 4 < verified_alone,
        "{verified_shared} of {verified_alone} verified"
    );
    // Stored signed deltas: one copy per unique delta, referenced by every engine holding it.
    // So are presences, fetched blobs, manifests and the lanes' values.
    let kinds = ["signed deltas", "presences", "blobs", "manifests", "lane values"];
    for (what, (copies, holders)) in kinds.iter().zip(cache.interned()) {
        assert!(copies > 0, "{what}");
        assert!(holders > 4 * copies, "{what}: {holders} references to {copies} copies");
    }
    let (work, opens) = cache.work();
    assert_eq!(work, verified_shared);
    assert!(opens > 0 && sum(&shared, |s| s.opens_shared) > opens);
    // Each received delta's entries are decoded by the first engine applying it.
    let (decoded, reused) = cache.decodes();
    assert!(
        decoded > 0 && reused > 4 * decoded,
        "{decoded} decoded, {reused} reused"
    );
    // And merged by it: the engines after it hold the lane in the same state and take
    // the result.
    let (merged, reused) = cache.merges();
    assert!(merged > 0 && reused > 4 * merged, "{merged} merged, {reused} reused");
}

/// A lane merge recorded by one engine is taken only by an engine that holds the lane in
/// the same state and merges under the same caps; the others merge themselves and end as
/// an engine alone would.
#[test]
fn a_shared_merge_is_taken_only_from_the_same_lane_state_under_the_same_caps() {
    use common::DeltaSpec;
    use common::rx::Rx;
    use ignite::profile::CapConfig;
    use ignite::{Config, Counter, CounterKey, GroupId, MethodId, Tier};

    let cache = SharedChecks::new(1 << 10);
    let tight = CapConfig {
        max_increments_per_s: 10,
        burst: 5,
    };
    let with = |shared: bool, cap: CapConfig| {
        Rx::with_config(Config {
            seed: 1,
            shared: shared.then(|| cache.clone()),
            cap,
            ..Config::default()
        })
    };
    let mut first = with(true, CapConfig::default());
    let groups = first.engine.config().groups;
    // Two methods of one group, so both deltas are of one lane.
    let other = (8..)
        .find(|m| GroupId::of(MethodId(*m), groups) == GroupId::of(MethodId(7), groups))
        .unwrap();
    let key = |m: u32| CounterKey {
        method: MethodId(m),
        tier: Tier(0),
        counter: Counter::Invocations,
    };
    let sender = first.sender(2);
    let d1 = DeltaSpec::new(first.f, 1, vec![(key(7), 10)]);
    let d2 = DeltaSpec::new(first.f, 2, vec![(key(other), 1_000)]);
    let (b1, b2) = (first.message(&sender, &d1), first.message(&sender, &d2));
    let counts = |rx: &Rx| {
        let view = rx.engine.profile(&rx.tenant, &rx.f).unwrap();
        [7, other].map(|m| view.count(MethodId(m), Tier(0), Counter::Invocations))
    };
    for b in [&b1, &b2] {
        assert!(first.deliver(b).is_ok());
    }
    assert_eq!(counts(&first), [10, 1_000]);
    assert_eq!(cache.merges(), (2, 0));

    // The same state, the same caps: both merges are taken.
    let mut same = with(true, CapConfig::default());
    for b in [&b1, &b2] {
        assert!(same.deliver(b).is_ok());
    }
    assert_eq!(counts(&same), [10, 1_000]);
    assert_eq!(cache.merges(), (2, 2));

    // An engine that missed the first delta merges the second itself: taking the recorded
    // result would give it method 7's count.
    let mut missed = with(true, CapConfig::default());
    assert!(missed.deliver(&b2).is_ok());
    assert_eq!(counts(&missed), [0, 1_000]);
    assert_eq!(cache.merges(), (2, 2));

    // Tighter caps clamp the second delta as they do for an engine alone.
    let mut alone = with(false, tight);
    let mut capped = with(true, tight);
    for b in [&b1, &b2] {
        assert_eq!(capped.deliver(b), alone.deliver(b));
    }
    assert_eq!(counts(&capped), counts(&alone));
    assert!(counts(&capped)[1] < 1_000, "the cap binds: {:?}", counts(&capped));
    assert_eq!(cache.merges(), (2, 2));
    assert_eq!(capped.observe(), alone.observe());

    // Other counters take key ids in the order an engine meets them. `first` met a third
    // node's back-edge key before sender 2's, `fresh` meets sender 2's first: their ids
    // differ, so `fresh` merges sender 2's delta itself.
    let backedges = |m: u32| CounterKey {
        counter: Counter::Backedges,
        ..key(m)
    };
    let third = first.sender(3);
    let b3 = first.message(&third, &DeltaSpec::new(first.f, 1, vec![(backedges(other), 4)]));
    let b4 = first.message(&sender, &DeltaSpec::new(first.f, 3, vec![(backedges(7), 6)]));
    for b in [&b3, &b4] {
        assert!(first.deliver(b).is_ok());
    }
    assert_eq!(cache.merges(), (4, 2));
    let mut fresh = with(true, CapConfig::default());
    let mut reference = with(false, CapConfig::default());
    for b in [&b1, &b2, &b4, &b3] {
        assert_eq!(fresh.deliver(b), reference.deliver(b));
    }
    assert_eq!(cache.merges(), (4, 4), "the merges of b1 and b2 only are taken");
    assert_eq!(fresh.observe(), reference.observe());
    let view = fresh.engine.profile(&fresh.tenant, &fresh.f).unwrap();
    assert_eq!(view.count(MethodId(7), Tier(0), Counter::Backedges), 6);
    assert_eq!(view.count(MethodId(other), Tier(0), Counter::Backedges), 4);
}

/// Entries another engine decoded are still held to this engine's own limits.
#[test]
fn shared_decoded_entries_are_checked_against_each_engines_limits() {
    use common::DeltaSpec;
    use common::rx::Rx;
    use ignite::{Config, Counter, CounterKey, MethodId, Tier};

    let cache = SharedChecks::new(1 << 10);
    let with = |max_entries: Option<usize>| {
        let mut config = Config {
            seed: 1,
            shared: Some(cache.clone()),
            ..Config::default()
        };
        if let Some(max) = max_entries {
            config.limits.max_entries_per_delta = max;
        }
        Rx::with_config(config)
    };
    let (mut roomy, mut strict) = (with(None), with(Some(2)));
    let key = |counter| CounterKey {
        method: MethodId(7),
        tier: Tier(0),
        counter,
    };
    let spec = DeltaSpec::new(
        roomy.f,
        1,
        vec![
            (key(Counter::Invocations), 5),
            (key(Counter::Backedges), 9),
            (key(Counter::Deopts), 1),
        ],
    );
    let sender = roomy.sender(2);
    let bytes = roomy.message(&sender, &spec);
    roomy.accept(&sender, &spec);
    assert_eq!(cache.decodes().0, 1);
    // The strict engine refuses it as an engine deciding alone does.
    let mut alone = Rx::with_config(Config {
        seed: 1,
        limits: strict.engine.config().limits,
        ..Config::default()
    });
    let refused = alone.deliver(&bytes);
    assert!(refused.is_err());
    assert_eq!(strict.deliver(&bytes), refused);
    assert_eq!(cache.decodes(), (1, 1), "the strict engine took the shared entries");
    assert_eq!(strict.count_of(&strict.f), 0);
}

/// A presence's statement hash is taken from another engine's stored copy only when the
/// received presence equals that copy: a presence altered under a copied signature is still
/// checked, and refused, by every engine of the process.
#[test]
fn a_presence_altered_under_a_copied_signature_is_refused_by_every_engine() {
    use common::artifacts::{CodeRx, NOW, RELAY};
    use ignite::code::{Presence, Refusal, Signed};
    use ignite::crypto::SigError;
    use ignite::wire::Body;
    use ignite::{Rejection, Tier};

    let cache = SharedChecks::new(1 << 10);
    let mut first = CodeRx::new(|c| c.shared = Some(cache.clone()));
    let mut second = CodeRx::new(|c| c.shared = Some(cache.clone()));
    let node3 = first.compiler(3);
    let presence = Signed::sign(
        Presence {
            tenant: first.tenant,
            node: node3.cert().cert.node,
            seq: 5,
            issued_at: NOW,
            valid_ms: 16_000,
            classes: vec![(first.class.id(), first.class.tiers)],
            load: 300,
            installed_digest: [9; 32],
            functions: vec![common::function("hot")],
            installed: vec![(0, first.key(1).method, Tier(2))],
            truncated: false,
        },
        &node3,
    );
    let mut altered = presence.clone();
    altered.statement.load = 0;
    let seal = |rx: &CodeRx, p: &Signed<Presence>| rx.sealer.seal(&Body::Presence(Box::new(p.clone())).encode());

    let genuine = seal(&first, &presence);
    assert!(first.deliver(RELAY, &genuine).is_ok());
    assert_eq!(first.engine.stats().signatures_verified, 2, "certificate and presence");
    // The altered copy reaches the second engine after the first stored the genuine one.
    let unauthentic = Err(Rejection::Code(Refusal::Unauthentic(SigError::Invalid.to_string())));
    assert_eq!(second.deliver(RELAY, &seal(&second, &altered)), unauthentic);
    assert_eq!(first.deliver(RELAY, &seal(&first, &altered)), unauthentic);
    // The genuine one is accepted by the second engine, whose checks reuse the first's.
    assert!(second.deliver(RELAY, &genuine).is_ok());
    assert_eq!(second.engine.stats().signatures_verified, 0);
    assert_eq!(second.engine.stats().signatures_shared, 2, "certificate and presence");
}
