//! Attestation of published code, end to end on real engines: attested code installs only
//! after enough other compilers reproduced it; a missing attester is replaced; attesters
//! that get different code block the install and report a mismatch; attestation is off by
//! default.

mod common;

use common::code::{Fleet, code_config};
use common::feedback::*;
use ignite::code::Purpose;
use ignite::harness::{SimHost, sim_compile};
use ignite::{CompileRequest, CompiledCode, Event, Refusal, Roles, Timestamp};

/// Attestation compile requests of the manifest `hash`, with engine and time.
fn attest_requests(f: &Fleet, hash: [u8; 32]) -> Vec<(usize, Timestamp, CompileRequest)> {
    f.cluster
        .compiles
        .iter()
        .filter(|(_, _, r)| r.purpose == Purpose::Attest { manifest: hash })
        .cloned()
        .collect()
}

fn any_attest_request(f: &Fleet) -> bool {
    f.cluster
        .compiles
        .iter()
        .any(|(_, _, r)| matches!(r.purpose, Purpose::Attest { .. }))
}

/// Index in `f.cluster.events` of engine `i`'s first event matching `p`.
fn first_event(f: &Fleet, i: usize, p: impl Fn(&Event) -> bool) -> Option<usize> {
    f.cluster.events.iter().position(|(j, e)| *j == i && p(e))
}

fn is_install(e: &Event, generation: u32) -> bool {
    matches!(e, Event::Install(ins) if ins.manifest.statement.generation == generation)
}

fn is_unattested(e: &Event) -> bool {
    matches!(
        e,
        Event::Refused {
            generation: 1,
            reason: Refusal::Unattested { need: 2, .. },
            ..
        }
    )
}

/// Six compile-capable nodes and two profile-only ones, all on one class.
fn attesting_fleet(seed: u64) -> Fleet {
    v2_fleet(seed, 8, &[6, 7], |c| c.code.min_attestations = 2)
}

#[test]
fn attested_code_installs_only_after_two_other_compilers_reproduced_it() {
    let mut f = attesting_fleet(14);
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    let mut times = Vec::new();
    let m = install_generation_1_timed(&mut f, &mut times);
    let publishers = publish_requests(&f, &key, 1);
    assert_eq!(publishers.len(), 1);
    let compiler = publishers[0].0;

    let attests = attest_requests(&f, m.hash());
    let mut attesters: Vec<usize> = attests.iter().map(|(i, _, _)| *i).collect();
    attesters.sort_unstable();
    attesters.dedup();
    assert_eq!(attesters.len(), 2, "attesters {attesters:?}");
    assert_eq!(attests.len(), 2, "one request per attester");
    for (i, _, r) in &attests {
        assert_ne!(*i, compiler, "the compiler attested its own code");
        assert!(f.specs[*i].roles.contains(Roles::COMPILE), "engine {i} cannot compile");
        assert_eq!(r.required.as_ref(), Some(&m.statement.assumptions), "engine {i}");
        assert_eq!((r.key, r.generation, r.class.id()), (key, 1, m.statement.class));
        assert!(r.excluded.is_empty());
    }
    // No other attestation of anything was asked for.
    assert_eq!(
        f.cluster
            .compiles
            .iter()
            .filter(|(_, _, r)| matches!(r.purpose, Purpose::Attest { .. }))
            .count(),
        2
    );
    for i in 0..n {
        let refused = first_event(&f, i, is_unattested);
        let installed = first_event(&f, i, |e| is_install(e, 1));
        assert!(refused.is_some(), "engine {i}: no Unattested refusal");
        assert!(installed.is_some(), "engine {i}: no install");
        assert!(
            refused < installed,
            "engine {i}: installed before it was refused as unattested"
        );
        let installs = f.installs().iter().filter(|(j, ..)| *j == i).count();
        assert_eq!(installs, 1, "engine {i}");
    }
    // Nothing was installed before the later of the two attestations was signed (the
    // attesters answer `COMPILE_MS` after their request).
    let last_attestation = attests.iter().map(|(_, t, _)| t.plus_ms(COMPILE_MS)).max().unwrap();
    for (k, (i, e)) in f.cluster.events.iter().enumerate() {
        if is_install(e, 1) {
            assert!(
                times[k] >= last_attestation,
                "engine {i} installed by {:?}, before the last attestation at {last_attestation:?}",
                times[k]
            );
        }
    }
    assert!(
        f.cluster
            .events
            .iter()
            .all(|(_, e)| !matches!(e, Event::AttestationMismatch { .. }))
    );
}

#[test]
fn one_attestation_is_not_enough_and_a_missing_attester_is_replaced() {
    let mut f = attesting_fleet(15);
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    f.run_for(3_000);
    for i in 0..n {
        f.invoke(i, 1, 51, TARGET);
    }
    // Until the first attestation compile is requested; its node dies before answering.
    assert!(
        run_until(&mut f, 20, 20_000, any_attest_request),
        "no attestation requested"
    );
    let (dead, _, req) = f
        .cluster
        .compiles
        .iter()
        .find(|(_, _, r)| matches!(r.purpose, Purpose::Attest { .. }))
        .cloned()
        .unwrap();
    f.cluster.down.insert(dead);
    let Purpose::Attest { manifest } = req.purpose else {
        unreachable!()
    };
    let live: Vec<usize> = (0..n).filter(|i| *i != dead).collect();

    // The other first-ranked attester answers; one attestation of two installs nothing, for
    // as long as the dead node still counts as a live member (presence TTL 3.5 s).
    f.run_for(2_500);
    let answered: Vec<usize> = attest_requests(&f, manifest)
        .iter()
        .map(|(i, _, _)| *i)
        .filter(|i| *i != dead)
        .collect();
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(
        f.cluster.engines[answered[0]].pending_compiles(&f.tenant).is_empty(),
        "attester did not answer"
    );
    assert!(
        f.installs().is_empty(),
        "installed with one attestation: {:?}",
        f.installs()
    );
    for &i in &live {
        assert!(first_event(&f, i, is_unattested).is_some(), "engine {i}");
        assert!(current(&f, i, &key).is_some_and(|m| m.hash() == manifest), "engine {i}");
    }

    // Another compile-capable node takes the dead attester's turn; then everyone installs.
    assert!(
        run_until(&mut f, 100, 15_000, |f| live
            .iter()
            .all(|&i| f.installed(i, &key).is_some())),
        "not installed after a replacement attester: {:?}",
        (0..n).map(|i| f.installed(i, &key)).collect::<Vec<_>>()
    );
    let attests = attest_requests(&f, manifest);
    let m = current(&f, live[0], &key).unwrap();
    let compiler = publish_requests(&f, &key, 1)[0].0;
    let mut attesters: Vec<usize> = attests.iter().map(|(i, _, _)| *i).collect();
    attesters.sort_unstable();
    attesters.dedup();
    assert_eq!(attesters.len(), 3, "{attesters:?}");
    for (i, _, r) in &attests {
        assert_ne!(*i, compiler);
        assert!(f.specs[*i].roles.contains(Roles::COMPILE), "engine {i}");
        assert_eq!(r.required.as_ref(), Some(&m.statement.assumptions));
    }
    assert_eq!(f.installed(dead, &key), None);
}

/// An `Event::AttestationMismatch` seen by an engine: (engine, attester, expected, got,
/// generation).
type Mismatch = (usize, ignite::NodeKey, [u8; 32], [u8; 32], u32);

/// A host whose attestation compiles produce other bytes than its publish compiles (as a
/// non-reproducible compiler would).
fn non_reproducible(req: &CompileRequest) -> CompiledCode {
    let mut code = sim_compile(req);
    if matches!(req.purpose, Purpose::Attest { .. }) {
        code.bytes[0] ^= 0xff;
    }
    code
}

#[test]
fn attesters_that_get_different_code_block_the_install_and_report_a_mismatch() {
    let mut f = attesting_fleet(16);
    f.cluster.host = Some(SimHost {
        compile_ms: COMPILE_MS,
        compiler: non_reproducible,
    });
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    f.run_for(3_000);
    for i in 0..n {
        f.invoke(i, 1, 51, TARGET);
    }
    // Long enough for every compile-capable node to take its attestation turn.
    f.run_for(40_000);
    let m = current(&f, 0, &key).expect("manifest published");
    for i in 0..n {
        assert_eq!(current(&f, i, &key).map(|c| c.hash()), Some(m.hash()), "engine {i}");
        assert!(first_event(&f, i, is_unattested).is_some(), "engine {i}");
        assert_eq!(f.installed(i, &key), None, "engine {i}");
    }
    assert!(f.installs().is_empty(), "{:?}", f.installs());
    // While too few agree, every other compile-capable node takes its turn (a lease apart),
    // once each; profile-only nodes never attest.
    let compiler = publish_requests(&f, &key, 1)[0].0;
    let attests = attest_requests(&f, m.hash());
    let attesters: Vec<usize> = attests.iter().map(|(i, _, _)| *i).collect();
    let expected: Vec<usize> = (0..n)
        .filter(|i| *i != compiler && f.specs[*i].roles.contains(Roles::COMPILE))
        .collect();
    let mut sorted = attesters.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "attesters in request order: {attesters:?}");
    for (i, _, r) in &attests {
        assert_eq!(r.required.as_ref(), Some(&m.statement.assumptions), "engine {i}");
    }
    let mismatches: Vec<Mismatch> = f
        .cluster
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::AttestationMismatch {
                key: k,
                attester,
                expected,
                got,
                generation,
                ..
            } if *k == key => Some((*i, *attester, *expected, *got, *generation)),
            _ => None,
        })
        .collect();
    let mut attesting_nodes: Vec<ignite::NodeKey> = mismatches.iter().map(|(_, a, ..)| *a).collect();
    attesting_nodes.sort_unstable();
    attesting_nodes.dedup();
    assert!(
        attesting_nodes.len() >= 2,
        "{} distinct dissenting attesters",
        attesting_nodes.len()
    );
    for (i, attester, expected, got, generation) in &mismatches {
        assert_eq!(*expected, m.statement.blob_hash, "engine {i}");
        assert_ne!(got, expected, "engine {i}");
        assert_ne!(*attester, m.statement.compiler, "engine {i}");
        assert_eq!(*generation, 1);
    }
    // Every engine (the compiler included) learnt of the mismatch.
    for i in 0..n {
        assert!(mismatches.iter().any(|(j, ..)| *j == i), "engine {i} saw no mismatch");
    }
}

#[test]
fn attestation_is_off_by_default() {
    assert_eq!(code_config(Vec::new()).min_attestations, 0);
    let mut f = v2_fleet(17, 8, &[6, 7], |_| {});
    let n = f.cluster.engines.len();
    let key = f.key(1, 1);
    install_generation_1(&mut f);
    f.run_for(10_000);
    assert!(
        !any_attest_request(&f),
        "attestation requested with min_attestations = 0"
    );
    assert!(f.cluster.compiles.iter().all(|(_, _, r)| r.required.is_none()));
    assert!(
        !f.refusals()
            .iter()
            .any(|(_, _, _, r)| matches!(r, Refusal::Unattested { .. })),
        "{:?}",
        f.refusals()
    );
    for i in 0..n {
        assert_eq!(f.installed(i, &key).map(|(_, g)| g), Some(1), "engine {i}");
    }
    assert_eq!(publish_requests(&f, &key, 1).len(), 1);
}
