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
