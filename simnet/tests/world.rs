//! The world's promise behind not queueing frames a receiver would drop: a peer may not
//! restart, with empty gossip state, inside the window in which such frames are skipped.

use ignite_core::code::CompiledCode;
use ignite_core::{Config, Incarnation};
use ignite_simnet::gossip::GossipConfig;
use ignite_simnet::net::NetConfig;
use ignite_simnet::world::World;

fn world(peers: usize) -> World {
    let compiler = Box::new(|_: &ignite_core::code::CompileRequest| {
        (
            CompiledCode {
                bytes: vec![1],
                assumptions: Vec::new(),
            },
            1_000,
        )
    });
    World::new(
        1,
        vec![Config::default(); peers],
        NetConfig::default(),
        GossipConfig::default(),
        compiler,
    )
    .expect("world")
}

#[test]
fn a_restart_inside_the_skip_window_is_refused() {
    let mut w = world(3);
    w.skip_seen_within_us = 5_000_000;
    w.now_us = 1_000_000;
    w.crash(1);
    w.now_us += 4_999_999;
    let err = w.restart(1, None, Incarnation(2)).unwrap_err();
    assert!(err.contains("within the 5000000 µs"), "{err}");
    assert!(!w.up[1], "a refused restart leaves the peer down");
    w.now_us += 1;
    w.restart(1, None, Incarnation(2))
        .expect("restarts once the window has passed");
    assert!(w.up[1]);
    // Without skipping, any restart goes.
    let mut w = world(3);
    w.crash(2);
    w.restart(2, None, Incarnation(2)).expect("restarts at once");
}
