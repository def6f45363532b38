//! A loaded module with its warm instance: runs invocations through the byte ABI and reads
//! the profile and deopt counters the rewritten module exports.

use super::HostError;
use crate::rewrite::{self, INSTRUMENT_SLOTS, SiteMap};
use ignite_core::{Assumption, MethodProfiler};
use wasmtime::{Global, Instance, Memory, Module, Store, TypedFunc};

/// Wasm page size.
const PAGE: u64 = 65_536;

/// The profile counters of an instrumented instance, with the values already recorded.
pub(super) struct ProfileCounters {
    loops: Global,
    branches: Vec<(u16, bool, Global)>,
    /// (site, slot or `None` for "any slot from `INSTRUMENT_SLOTS` on", counter).
    calls: Vec<(u16, Option<u32>, Global)>,
    last: Vec<u64>,
}

/// The deopt counter of one guarded call site of specialized code.
pub(super) struct Guard {
    pub(super) assumption: Assumption,
    counter: Global,
    last: u64,
}

/// One instance kept warm across invocations, as a warm container keeps its runtime. It
/// runs the byte ABI (see [`workloads`](crate::workloads)).
pub struct Warm {
    store: Store<()>,
    memory: Memory,
    input_ptr: u32,
    output_ptr: u32,
    run: TypedFunc<i32, i32>,
    pub(super) profile: Option<ProfileCounters>,
    pub(super) guards: Vec<Guard>,
}

fn global_u32(store: &mut Store<()>, instance: &Instance, name: &str) -> Result<u32, HostError> {
    let g = instance
        .get_global(&mut *store, name)
        .ok_or_else(|| HostError::Abi(format!("no exported global `{name}`")))?;
    g.get(&mut *store)
        .i32()
        .map(|v| v as u32)
        .ok_or_else(|| HostError::Abi(format!("global `{name}` is not an i32")))
}

fn counter(store: &mut Store<()>, instance: &Instance, name: &str) -> Result<Global, HostError> {
    instance
        .get_global(&mut *store, name)
        .ok_or_else(|| HostError::Abi(format!("rewritten module lacks counter `{name}`")))
}

fn read(store: &mut Store<()>, g: &Global) -> u64 {
    g.get(&mut *store).i64().unwrap_or(0) as u64
}

impl Warm {
    /// Instantiates `module`: with its profile counters when `sites` is given (instrumented
    /// code), and a deopt counter per `MonomorphicCall` assumption (specialized code).
    pub fn new(module: &Module, sites: Option<&SiteMap>, assumptions: &[Assumption]) -> Result<Warm, HostError> {
        let mut store = Store::new(module.engine(), ());
        let instance = Instance::new(&mut store, module, &[])?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| HostError::Abi("no exported memory `memory`".into()))?;
        let input_ptr = global_u32(&mut store, &instance, "input_ptr")?;
        let output_ptr = global_u32(&mut store, &instance, "output_ptr")?;
        let run = instance
            .get_typed_func::<i32, i32>(&mut store, "run")
            .map_err(|e| HostError::Abi(format!("export `run(i32) -> i32`: {e}")))?;
        let profile = match sites {
            None => None,
            Some(s) => {
                let loops = counter(&mut store, &instance, rewrite::LOOPS_COUNTER)?;
                let mut branches = Vec::new();
                for site in 0..s.branch_sites {
                    for taken in [false, true] {
                        let g = counter(&mut store, &instance, &rewrite::branch_counter(site, taken))?;
                        branches.push((site, taken, g));
                    }
                }
                let mut calls = Vec::new();
                for site in 0..s.call_sites {
                    for slot in (0..INSTRUMENT_SLOTS).map(Some).chain([None]) {
                        let g = counter(&mut store, &instance, &rewrite::call_counter(site, slot))?;
                        calls.push((site, slot, g));
                    }
                }
                let last = vec![0; 1 + branches.len() + calls.len()];
                Some(ProfileCounters {
                    loops,
                    branches,
                    calls,
                    last,
                })
            }
        };
        let mut guards = Vec::new();
        for a in assumptions {
            if let Assumption::MonomorphicCall { site, .. } = a {
                let g = counter(&mut store, &instance, &rewrite::deopt_counter(*site))?;
                guards.push(Guard {
                    assumption: a.clone(),
                    counter: g,
                    last: 0,
                });
            }
        }
        Ok(Warm {
            store,
            memory,
            input_ptr,
            output_ptr,
            run,
            profile,
            guards,
        })
    }

    /// Runs one invocation: writes `input`, calls `run`, returns the output bytes.
    pub fn invoke(&mut self, input: &[u8]) -> Result<Vec<u8>, HostError> {
        let len = i32::try_from(input.len()).map_err(|_| HostError::Abi("input above 2 GiB".into()))?;
        let end = u64::from(self.input_ptr) + input.len() as u64;
        let size = self.memory.data_size(&self.store) as u64;
        if end > size {
            self.memory.grow(&mut self.store, (end - size).div_ceil(PAGE))?;
        }
        self.memory
            .write(&mut self.store, self.input_ptr as usize, input)
            .map_err(|e| HostError::Abi(format!("input does not fit in memory: {e}")))?;
        let n = self.run.call(&mut self.store, len)?;
        let n = usize::try_from(n).map_err(|_| HostError::Abi(format!("run returned {n}")))?;
        if self.output_ptr as usize + n > self.memory.data_size(&self.store) {
            return Err(HostError::Abi(format!("output of {n} bytes outside memory")));
        }
        let mut out = vec![0; n];
        self.memory
            .read(&self.store, self.output_ptr as usize, &mut out)
            .map_err(|e| HostError::Abi(format!("output of {n} bytes outside memory: {e}")))?;
        Ok(out)
    }

    /// Records what the profile counters counted since the last call into `profiler`.
    pub fn record_profile(&mut self, profiler: &MethodProfiler) {
        let Some(p) = self.profile.as_mut() else { return };
        let store = &mut self.store;
        let mut i = 0;
        let mut delta = |g: &Global, last: &mut Vec<u64>| {
            let v = read(store, g);
            let d = v.wrapping_sub(last[i]);
            last[i] = v;
            i += 1;
            d
        };
        profiler.record_backedges(delta(&p.loops, &mut p.last));
        for (site, taken, g) in &p.branches {
            let d = delta(g, &mut p.last);
            profiler.record_branches(*site, *taken, d);
        }
        for (site, slot, g) in &p.calls {
            let d = delta(g, &mut p.last);
            // Slots past the instrumented ones are one "megamorphic" receiver.
            profiler.record_receivers(*site, slot.unwrap_or(u32::MAX), d);
        }
    }

    /// Guard misses since the last call: (assumption, misses), misses > 0 only.
    pub fn take_deopts(&mut self) -> Vec<(Assumption, u64)> {
        let mut out = Vec::new();
        for g in &mut self.guards {
            let v = read(&mut self.store, &g.counter);
            if v != g.last {
                out.push((g.assumption.clone(), v.wrapping_sub(g.last)));
                g.last = v;
            }
        }
        out
    }
}
