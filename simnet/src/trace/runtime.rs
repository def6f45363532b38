//! The container runtime model of the trace scenario: per peer, one container per function
//! with a keep-alive, per-container tier state, and the code the peer's engine installed.
//!
//! A container lives while invocations keep arriving within its keep-alive (idle time is
//! measured between arrivals); an invocation after a longer idle time finds it evicted and
//! starts a new one (a cold start). The engine and the code it installed outlive
//! containers: a new container runs installed code from its first invocation.
//!
//! Each container carries the state of both strategies, driven by the same arrivals:
//! - IGN: per method, the tier of the code the container runs: the best tier the peer's
//!   engine has installed, lowered for a method whose code deoptimized in this container.
//! - NS (no sharing): per method, the container's own call count; its tier comes from the
//!   thresholds applied to that count alone (its own JIT, compile time not modelled).

use crate::rng::Rng;
use ignite_core::{Assumption, ClassId, MethodProfiler, Thresholds};

/// Code installed on a peer for one (function, method, tier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Code {
    pub(crate) class: ClassId,
    pub(crate) generation: u32,
    pub(crate) assumptions: Vec<Assumption>,
}

/// One container of a function on a peer.
#[derive(Clone, Debug)]
pub(crate) struct Container {
    /// Arrival time of the last invocation, µs.
    pub(crate) last_us: u64,
    /// Keep-alive of this container, µs.
    pub(crate) keep_alive_us: u64,
    /// IGN: tier run per method.
    pub(crate) tiers: Vec<u8>,
    /// NS: calls per method in this container.
    pub(crate) ns_calls: Vec<u64>,
}

impl Container {
    /// NS: the tier its own counts reached for `method`.
    pub(crate) fn ns_tier(&self, method: usize, t: &Thresholds) -> u8 {
        match self.ns_calls[method] {
            c if c >= t.tier2 => 2,
            c if c >= t.tier1 => 1,
            _ => 0,
        }
    }
}

/// The runtime state of one function on one peer.
pub(crate) struct FnRt {
    /// Profilers per method and tier (0, 1, 2), created at the function's first
    /// invocation on the peer.
    pub(crate) profilers: Option<Vec<[MethodProfiler; 3]>>,
    /// Installed code per method and tier.
    pub(crate) installed: Vec<[Option<Code>; 3]>,
    /// The live (or not yet evicted) container.
    pub(crate) container: Option<Container>,
}

impl FnRt {
    /// No code installed, no container, no profilers yet.
    pub(crate) fn new(methods: u32) -> FnRt {
        FnRt {
            profilers: None,
            installed: vec![[None, None, None]; methods as usize],
            container: None,
        }
    }

    /// The best installed tier of `method` below `below` (0 when none).
    pub(crate) fn best_tier_below(&self, method: usize, below: u8) -> u8 {
        (1..below.min(3))
            .rev()
            .find(|t| self.installed[method][usize::from(*t)].is_some())
            .unwrap_or(0)
    }

    /// The best installed tier of `method`.
    pub(crate) fn best_tier(&self, method: usize) -> u8 {
        self.best_tier_below(method, 3)
    }

    /// Sets the live container's tier of `method` to the best installed one.
    pub(crate) fn refresh(&mut self, method: usize) {
        let best = self.best_tier(method);
        if let Some(c) = &mut self.container {
            c.tiers[method] = best;
        }
    }
}

/// The runtime state of one peer.
pub(crate) struct PeerRt {
    /// Classes this peer's engine runs (its `CodeConfig::hardware`).
    pub(crate) classes: Vec<ClassId>,
    /// Per function.
    pub(crate) functions: Vec<FnRt>,
    /// Keep-alive draws.
    pub(crate) rng: Rng,
    /// Whether invocations here break the chosen function's speculation after the break.
    pub(crate) breaking: bool,
    /// When this peer first observed the break (its first deopt), µs.
    pub(crate) observed_break_us: Option<u64>,
}

/// What starting an invocation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start {
    /// A new container was started.
    pub(crate) cold: bool,
    /// An idle container was evicted first.
    pub(crate) evicted: bool,
}

impl PeerRt {
    /// Finds or starts the container of `function` at `now_us`, with a keep-alive drawn
    /// uniformly in `keep_alive_us`.
    pub(crate) fn start(&mut self, function: usize, now_us: u64, keep_alive_us: (u64, u64), methods: usize) -> Start {
        let f = &mut self.functions[function];
        let mut evicted = false;
        if let Some(c) = &f.container {
            if now_us.saturating_sub(c.last_us) <= c.keep_alive_us {
                f.container.as_mut().expect("present").last_us = now_us;
                return Start {
                    cold: false,
                    evicted: false,
                };
            }
            evicted = true;
        }
        let keep_alive_us = keep_alive_us.0 + self.rng.below(keep_alive_us.1 - keep_alive_us.0 + 1);
        let tiers = (0..methods).map(|m| f.best_tier(m)).collect();
        f.container = Some(Container {
            last_us: now_us,
            keep_alive_us,
            tiers,
            ns_calls: vec![0; methods],
        });
        Start { cold: true, evicted }
    }

    /// Containers idle past their keep-alive at `now_us` (evicted by then).
    pub(crate) fn idle_past_keep_alive(&self, now_us: u64) -> u64 {
        self.functions
            .iter()
            .filter_map(|f| f.container.as_ref())
            .filter(|c| now_us.saturating_sub(c.last_us) > c.keep_alive_us)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerRt {
        PeerRt {
            classes: Vec::new(),
            functions: vec![FnRt::new(2)],
            rng: Rng::new(1),
            breaking: false,
            observed_break_us: None,
        }
    }

    fn code() -> Code {
        Code {
            class: ClassId([0; 16]),
            generation: 1,
            assumptions: Vec::new(),
        }
    }

    #[test]
    fn keep_alive_evicts_and_installed_code_outlives_containers() {
        let mut p = peer();
        let ka = (10, 20);
        assert_eq!(
            p.start(0, 0, ka, 2),
            Start {
                cold: true,
                evicted: false
            }
        );
        assert!(!p.start(0, 10, ka, 2).cold, "within the keep-alive");
        assert!(!p.start(0, 20, ka, 2).cold);
        // Install tier 2 for method 1: the live container switches; a new one starts with it.
        let f = &mut p.functions[0];
        f.installed[1][2] = Some(code());
        f.refresh(1);
        assert_eq!(f.container.as_ref().unwrap().tiers, vec![0, 2]);
        f.container.as_mut().unwrap().ns_calls[1] = 7;
        assert_eq!(
            p.start(0, 41, ka, 2),
            Start {
                cold: true,
                evicted: true
            }
        );
        let c = &p.functions[0].container.as_ref().unwrap();
        assert_eq!(c.tiers, vec![0, 2], "hot start");
        assert_eq!(c.ns_calls, vec![0, 0], "NS starts over");
        assert!((10..=20).contains(&c.keep_alive_us));
        assert_eq!(p.idle_past_keep_alive(41), 0);
        assert_eq!(p.idle_past_keep_alive(62), 1);
    }

    #[test]
    fn tiers_below_and_ns_thresholds() {
        let mut p = peer();
        let f = &mut p.functions[0];
        f.installed[0][1] = Some(code());
        f.installed[0][2] = Some(code());
        assert_eq!(f.best_tier(0), 2);
        assert_eq!(f.best_tier_below(0, 2), 1);
        assert_eq!(f.best_tier_below(1, 2), 0);
        let mut c = Container {
            last_us: 0,
            keep_alive_us: 1,
            tiers: vec![0],
            ns_calls: vec![0],
        };
        let t = Thresholds { tier1: 2, tier2: 5 };
        assert_eq!(c.ns_tier(0, &t), 0);
        c.ns_calls[0] = 2;
        assert_eq!(c.ns_tier(0, &t), 1);
        c.ns_calls[0] = 5;
        assert_eq!(c.ns_tier(0, &t), 2);
    }
}
