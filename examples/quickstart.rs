//! Three engines of one tenant record invocations of the same function, exchange real
//! signed and sealed deltas over an in-memory network, converge on one merged profile, elect
//! one node to compile each hot method, and install the signed code everywhere.
//!
//! Run: `cargo run --release --example quickstart`

use ignite::code::{CodeConfig, HardwareClass};
use ignite::harness::{Cluster, SimHost};
use ignite::{
    Config, Counter, Engine, FunctionId, Incarnation, MethodId, MethodShape, Roles, TenantCredentials, TenantRoot,
    TenantSecrets, Tier, Timestamp,
};

fn main() -> anyhow::Result<()> {
    let start = Timestamp(1_700_000_000_000);
    let day = 86_400_000;
    // The tenant administrator's root key and shared secrets (fixed seeds: reproducible).
    let root = TenantRoot::from_secret([7; 32]);
    let secrets = TenantSecrets::from_seed(&[9; 32]);
    let function = FunctionId::from_deployment("thumbnail", b"deployment v1 bytes");

    // Every node runs code compiled for x86-64-v2 by runtime "sim" 1.0 (a simulated compiler
    // stands in for the host's JIT here).
    let class = HardwareClass::new("x86_64", "x86-64-v2", "sim", "1.0", [0; 32])?;
    let mut engines = Vec::new();
    let mut recorders = Vec::new();
    for n in 0..3u8 {
        let creds = TenantCredentials::issue(
            &root,
            secrets.clone(),
            &[n; 32],
            Roles::ALL,
            start,
            start.plus_ms(day),
            u64::from(n),
        );
        let config = Config {
            seed: u64::from(n),
            code: CodeConfig {
                hardware: vec![class.clone()],
                ..CodeConfig::default()
            },
            ..Config::default()
        };
        let mut engine = Engine::new(config, Incarnation(1))?;
        let (recorder, topic) = engine.join_tenant(start, creds)?;
        if n == 0 {
            println!("tenant topic (opaque): {topic}");
        }
        engines.push(engine);
        recorders.push(recorder);
    }
    let mut cluster = Cluster::new(42, start, engines);
    cluster.host = Some(SimHost::new(50));

    // Each node runs a different share of the traffic: node n invokes method m (n+1)*(m+1)*40 times.
    for (n, rec) in recorders.iter().enumerate() {
        for m in 0..4u32 {
            let p = rec.method(
                function,
                MethodId(m),
                Tier(0),
                MethodShape {
                    branch_sites: 1,
                    call_sites: 1,
                },
            )?;
            for i in 0..(n as u32 + 1) * (m + 1) * 40 {
                p.record_invocation();
                p.record_backedges(10);
                p.record_branch(0, i % 4 != 0);
                p.record_receiver(0, if i % 10 == 0 { 2 } else { 1 });
            }
        }
    }
    cluster.run_until(start.plus_ms(10_000));

    println!("merged profile of {function:?} after 10 s (virtual):");
    println!(
        "{:>6} {:>8} {:>11} {:>10} {:>10} {:>8}",
        "method", "engine", "invocations", "backedges", "taken", "type 1"
    );
    let tenant = root.id();
    for m in 0..4u32 {
        for (i, e) in cluster.engines.iter().enumerate() {
            let view = e.profile(&tenant, &function).expect("profile present");
            let method = MethodId(m);
            println!(
                "{:>6} {:>8} {:>11} {:>10} {:>10.2} {:>8.2}",
                m,
                i,
                view.count(method, Tier(0), Counter::Invocations),
                view.count(method, Tier(0), Counter::Backedges),
                view.branch_taken_ratio(method, Tier(0), 0).unwrap_or(0.0),
                view.receiver_share(method, Tier(0), 0, 1).unwrap_or(0.0),
            );
        }
    }
    let same = cluster.engines.windows(2).all(|w| {
        w[0].profile(&tenant, &function).map(|v| v.counters().clone())
            == w[1].profile(&tenant, &function).map(|v| v.counters().clone())
    });
    println!("all engines agree: {same}");
    for (i, ev) in &cluster.events {
        match ev {
            ignite::Event::ThresholdReached {
                method,
                tier,
                invocations,
                contributors,
                ..
            } => println!(
                "engine {i}: method {} reached the tier-{} threshold ({invocations} invocations fleet-wide, from {contributors} node(s))",
                method.method.0, tier.0
            ),
            ignite::Event::Compile(req) => println!(
                "engine {i}: elected to compile method {} for tier {} ({})",
                req.key.method.0, req.key.tier.0, req.class.level
            ),
            ignite::Event::Install(ins) => println!(
                "engine {i}: installed method {} tier {} generation {} ({} bytes, assumptions {:?})",
                ins.manifest.statement.key.method.0,
                ins.manifest.statement.key.tier.0,
                ins.manifest.statement.generation,
                ins.blob.len(),
                ins.manifest.statement.assumptions
            ),
            other => println!("engine {i}: {other:?}"),
        }
    }
    let installed: Vec<usize> = cluster.engines.iter().map(|e| e.installed(&tenant).len()).collect();
    println!("code installed per engine: {installed:?}");
    println!(
        "network: {} messages delivered, {} bytes (sealed and signed)",
        cluster.delivered, cluster.delivered_bytes
    );
    anyhow::ensure!(same, "engines did not converge");
    anyhow::ensure!(
        installed.iter().all(|n| *n == installed[0] && *n > 0),
        "code did not reach every engine"
    );
    Ok(())
}
