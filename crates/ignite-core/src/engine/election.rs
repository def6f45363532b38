//! Election: which node compiles each hot (key, class, generation), claims with leases,
//! takeover, recompiles after retirement, re-promotion, attestation requests; and the
//! host's answer ([`Engine::compiled`]).

use super::code_state::{Pending, Scope, compile_profile, deopt_nodes, expired, latency_histogram, rank, retired_by};
use super::positions::{COUNT_FIRST, Diff, Position, sorted_diff};
use super::{Engine, EngineError, Event, Output};
use crate::code::{
    Assumption, Attestation, Claim, ClassId, CodeKey, CompileError, CompileId, CompileRequest, CompiledCode, Election,
    Manifest, Purpose, Signed, rules,
};
use crate::ids::{NodeKey, TenantTag, Tier, Timestamp};
use crate::tenancy::{Roles, TenantId};
use crate::wire::Body;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A code pass looks at every key at least every this many ticks (2 s at the default
/// `tick_ms` of 250 ms), whatever changed.
const SWEEP_TICKS: u64 = 8;

/// What an open election asks of this node.
enum Plan {
    /// Compile (or re-promote `from` generation's code) for this election.
    Compile { election: Election, repromote: Option<u32> },
}

impl Engine {
    /// The tenant's roster of eligible compilers and needed classes at `now`.
    fn roster(&mut self, now: Timestamp, tag: TenantTag) -> Arc<super::code_state::Roster> {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let excluded = (t.banned.len(), t.revocations.len());
        let (banned, revocations) = (&t.banned, &t.revocations);
        t.code.roster(now, excluded, &|n: &NodeKey| {
            banned.contains(n) || revocations.contains(n)
        })
    }

    /// Re-examines elections, attestations, installs and transfers of one tenant.
    pub(super) fn code_pass(&mut self, now: Timestamp, tag: TenantTag) {
        let _span = tracing::debug_span!("code_pass", now = now.as_millis()).entered();
        if self.tenants[&tag].code.next_presence <= now {
            if self.config.code.hardware.is_empty() {
                // A node that runs no compiled code has nothing to announce.
                let interval = self.config.code.presence_interval_ms;
                self.tenants.get_mut(&tag).expect("tenant present").code.next_presence = now.plus_ms(interval);
            } else {
                self.publish_presence(now, tag);
            }
        }
        self.prune_claims(now, tag);
        // Every key is looked at when something all keys depend on changed, and every
        // `SWEEP_TICKS` ticks for what changes with time alone; other ticks follow the open
        // elections and the keys something changed for.
        let (full, changed) = {
            let tick = self.config.code.tick_ms;
            let c = &mut self.tenants.get_mut(&tag).expect("tenant present").code;
            let full = c.dirty || now >= c.next_sweep;
            if full {
                c.dirty = false;
                c.next_sweep = now.plus_ms(tick.saturating_mul(SWEEP_TICKS));
            }
            (full, std::mem::take(&mut c.dirty_keys))
        };
        let scope = if full { Scope::All } else { Scope::Keys(&changed) };
        self.run_elections(now, tag, scope);
        self.run_attestations(now, tag);
        if full || !changed.is_empty() {
            self.run_installs(now, tag, scope);
        }
        self.run_transfers(now, tag);
        let tick = self.config.code.tick_ms;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let busy = !t.code.turns.is_empty() || !t.code.pending.is_empty() || !t.code.transfers.is_empty();
        t.code.next_tick = if busy { now.plus_ms(tick) } else { t.code.next_presence };
    }

    /// Whether this node may claim compiles yet (see `CodeConfig::claim_after_join_ms`).
    fn may_claim(&mut self, now: Timestamp, tag: TenantTag) -> bool {
        let cfg = &self.config.code;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if t.code.roster_known || now >= t.code.joined_at.plus_ms(cfg.presence_interval_ms) {
            return true;
        }
        if now < t.code.joined_at.plus_ms(cfg.claim_after_join_ms) {
            return false;
        }
        let (members, certs, me) = (&t.code.members, &t.certs, t.node);
        let complete = t.activity.keys().all(|n| {
            *n == me
                || t.banned.contains(n)
                || t.revocations.contains(n)
                || !certs.get(n).is_some_and(|c| c.cert.roles.contains(Roles::COMPILE))
                || members.get(n).is_some_and(|m| m.live_until > now)
        });
        // Once complete the roster follows presences as usual; the latch saves the walk.
        t.code.roster_known = complete;
        complete
    }

    fn prune_claims(&mut self, now: Timestamp, tag: TenantTag) {
        let keep_ms = self.claim_keep_ms();
        let c = &mut self.tenants.get_mut(&tag).expect("tenant present").code;
        if now < c.next_prune {
            return;
        }
        // Lapsed claims are kept a while: the next ranks' turns count from their lapse.
        c.claims.retain(|_, c| c.statement.lease_until.plus_ms(keep_ms) > now);
        c.failed.retain(|_, until| *until > now);
        c.next_prune = c
            .claims
            .values()
            .map(|c| c.statement.lease_until.plus_ms(keep_ms))
            .chain(c.failed.values().copied())
            .min()
            .unwrap_or(Timestamp(u64::MAX));
    }

    /// How long a claim is held after its lease lapsed.
    pub(super) fn claim_keep_ms(&self) -> u64 {
        self.config.code.lease_ms.saturating_mul(16)
    }

    /// The assumptions known broken for a key (any class, any generation held).
    fn broken_assumptions(&self, tag: TenantTag, key: &CodeKey) -> Vec<Assumption> {
        let t = &self.tenants[&tag];
        let min = self.config.code.retire_min_nodes;
        let state = t.functions.get(&key.function);
        let mut out: BTreeSet<Assumption> = BTreeSet::new();
        for ((k, _), gens) in t
            .code
            .manifests
            .range((*key, ClassId([0; 16]))..=(*key, ClassId([255; 16])))
        {
            debug_assert_eq!(k, key);
            for m in gens.values() {
                for a in &m.statement.assumptions {
                    if deopt_nodes(state, key.method, key.tier, a.id()) >= min {
                        out.insert(a.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// Hot keys of a tenant: every (function, method, tier) whose threshold fired, and
    /// every key the host asked for.
    fn hot_keys(&self, tag: TenantTag) -> Vec<CodeKey> {
        let t = &self.tenants[&tag];
        let mut out: Vec<CodeKey> = t.code.wanted.iter().copied().collect();
        for (f, s) in &t.functions {
            for (m, bits) in &s.fired {
                for tier in 1..=Tier::MAX.0 {
                    if bits & (1 << tier) != 0 {
                        out.push(CodeKey {
                            function: *f,
                            method: *m,
                            tier: Tier(tier),
                        });
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The election due for a key and class, if any: the first generation, the next one
    /// after retirement (after its backoff) or expiry, or a re-promotion.
    fn due_election(
        &self,
        now: Timestamp,
        tag: TenantTag,
        key: &CodeKey,
        class: &ClassId,
    ) -> Option<(Election, Option<u32>)> {
        let cfg = &self.config.code;
        let t = &self.tenants[&tag];
        let state = t.functions.get(&key.function);
        let next = |g: u32| Election {
            key: *key,
            class: *class,
            generation: g + 1,
        };
        let Some(gens) = t.code.manifests.get(&(*key, *class)) else {
            return Some((next(0), None));
        };
        let (&g, cur) = gens.last_key_value()?;
        if g >= cfg.limits.max_generations {
            return None;
        }
        if expired(&cur.statement, now, cfg.manifest_ttl_ms) {
            return Some((next(g), None));
        }
        if retired_by(&cur.statement, state, cfg.retire_min_nodes).is_some() {
            let ready = cur
                .statement
                .created_at
                .plus_ms(rules::backoff_ms(cfg.recompile_backoff_ms, g));
            return (now >= ready).then(|| (next(g), None));
        }
        let prev = gens.range(..g).next_back().map(|(_, m)| m)?;
        let due = rules::repromotion_due(
            &cur.statement,
            &prev.statement,
            &latency_histogram(state, key, g),
            &latency_histogram(state, key, prev.statement.generation),
            cfg.min_latency_samples,
        );
        due.then(|| (next(g), Some(prev.statement.generation)))
    }

    /// Whether a key's threshold fired here or the host asked for its code.
    fn is_hot(&self, tag: TenantTag, key: &CodeKey) -> bool {
        let t = &self.tenants[&tag];
        t.code.wanted.contains(key)
            || t.functions
                .get(&key.function)
                .is_some_and(|s| s.fired_bits(key.method) & (1 << key.tier.0) != 0)
    }

    /// Opens, follows and claims elections: over every hot key with [`Scope::All`],
    /// otherwise over the open ones and the hot keys of the scope.
    fn run_elections(&mut self, now: Timestamp, tag: TenantTag, scope: Scope<'_>) {
        let cfg = self.code_settings();
        let me = self.tenants[&tag].node;
        let tenant = self.tenants[&tag].tenant;
        let my_classes: BTreeSet<ClassId> = self.class_ids.iter().copied().collect();
        let roster = self.roster(now, tag);
        let may_claim = self.may_claim(now, tag);
        let (eligible, needed, digests) = (&roster.eligible, &roster.needed, &roster.digests);
        let mut open: BTreeSet<Election> = BTreeSet::new();
        let mut plans: Vec<Plan> = Vec::new();
        let base = self.tenants[&tag].code.ranked_at.clone();
        let mut diffs: BTreeMap<ClassId, Option<Diff>> = BTreeMap::new();
        let keys = match scope {
            Scope::All => self.hot_keys(tag),
            Scope::Keys(changed) => {
                let mut v: Vec<CodeKey> = self.tenants[&tag].code.turns.keys().map(|e| e.key).collect();
                v.extend(changed.iter().filter(|k| self.is_hot(tag, k)).copied());
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        for key in keys {
            for class in needed
                .iter()
                .filter(|(tier, c)| *tier == key.tier && my_classes.contains(c))
                .map(|(_, c)| c)
            {
                let Some((election, repromote)) = self.due_election(now, tag, &key, class) else {
                    continue;
                };
                open.insert(election);
                // This node's rank position, cached while the class's eligible set is the same.
                let members = eligible.get(class).map(Vec::as_slice).unwrap_or(&[]);
                let digest = digests.get(class).copied().unwrap_or([0; 32]);
                let t = self.tenants.get_mut(&tag).expect("tenant present");
                let pos = match t.code.positions.get(&election) {
                    Some((d, pos)) if *d == digest => *pos,
                    cached => {
                        // A position known for the last pass's eligible set moves by the
                        // nodes added and removed since (each scored once), unless this
                        // node itself came or went.
                        let moved = match (cached, &base) {
                            (Some((d, Some(old))), Some(b)) if b.digests.get(class) == Some(d) => diffs
                                .entry(*class)
                                .or_insert_with(|| sorted_diff(b.eligible.get(class).map(Vec::as_slice), members))
                                .as_ref()
                                .filter(|(added, removed)| !added.contains(&me) && !removed.contains(&me))
                                .and_then(|diff| old.moved(&tenant, &election, &me, diff)),
                            _ => None,
                        };
                        let pos = match moved {
                            Some(p) => Some(p),
                            None => members
                                .binary_search(&me)
                                .is_ok()
                                .then(|| Position::count(&tenant, &election, &me, members, COUNT_FIRST)),
                        };
                        t.code.positions.insert(election, (digest, pos));
                        pos
                    }
                };
                let Some(pos) = pos else {
                    continue;
                };
                let seen = *t.code.turns.entry(election).or_insert(now);
                if t.code.pending.values().any(|p| p.election == election) || t.code.failed.contains_key(&election) {
                    continue;
                }
                // Another node's claim holds until its lease lapses (even if its presence
                // expired: a claimant whose announcements are lost keeps its claim), and the
                // turns of the ranks below count from the latest lapse, so that exactly one
                // node (the best-ranked live one) claims next.
                let mut claimed = false;
                let mut base = seen;
                for ((e, n), c) in t
                    .code
                    .claims
                    .range((election, NodeKey([0; 32]))..=(election, NodeKey([255; 32])))
                {
                    debug_assert_eq!(*e, election);
                    if *n != me {
                        claimed |= c.statement.lease_until > now;
                        base = base.max(c.statement.lease_until);
                    }
                }
                if claimed || !may_claim {
                    continue;
                }
                let (counted, due) = pos.turn(now.millis_since(base), cfg.lease_ms, |cap| {
                    Position::count(&tenant, &election, &me, members, cap)
                });
                if counted != pos {
                    t.code.positions.insert(election, (digest, Some(counted)));
                }
                if due {
                    plans.push(Plan::Compile { election, repromote });
                }
            }
        }
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        t.code.turns.retain(|e, _| open.contains(e));
        t.code.positions.retain(|e, _| open.contains(e));
        t.code.ranked_at = Some(roster.clone());
        self.cancel_superseded(now, tag, &open);
        for plan in plans {
            match plan {
                Plan::Compile {
                    election,
                    repromote: Some(from),
                } => self.repromote(now, tag, election, from),
                Plan::Compile {
                    election,
                    repromote: None,
                } => self.request_compile(now, tag, election),
            }
        }
        self.renew_claims(now, tag);
    }

    /// Cancels pending publish compiles whose election closed (a manifest arrived) or that a
    /// better-ranked live claimant also claimed.
    fn cancel_superseded(&mut self, now: Timestamp, tag: TenantTag, open: &BTreeSet<Election>) {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let me = t.node;
        let tenant = t.tenant;
        let my_score = |e: &Election| rules::score(&tenant, e, &me);
        let cancel: Vec<CompileId> = t
            .code
            .pending
            .iter()
            .filter(|(_, p)| p.purpose == Purpose::Publish)
            .filter(|(_, p)| {
                !open.contains(&p.election)
                    || t.code.claims.iter().any(|((e, n), c)| {
                        *e == p.election
                            && *n != me
                            && c.statement.lease_until > now
                            && rules::score(&tenant, e, n) > my_score(e)
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in cancel {
            t.code.pending.remove(&id);
            self.outputs
                .push_back(Output::Event(Event::CompileCancelled { tenant, id }));
        }
    }

    fn renew_claims(&mut self, now: Timestamp, tag: TenantTag) {
        let lease = self.config.code.lease_ms;
        let due: Vec<CompileId> = self.tenants[&tag]
            .code
            .pending
            .iter()
            .filter(|(_, p)| p.purpose == Purpose::Publish && p.lease_until.millis_since(now) <= lease / 2)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let election = self.tenants[&tag].code.pending[&id].election;
            self.publish_claim(now, tag, election, now.plus_ms(lease));
            if let Some(p) = self.tenants.get_mut(&tag).expect("tenant").code.pending.get_mut(&id) {
                p.lease_until = now.plus_ms(lease);
            }
        }
    }

    fn publish_claim(&mut self, now: Timestamp, tag: TenantTag, election: Election, lease_until: Timestamp) {
        let keep_ms = self.claim_keep_ms();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let claim = Claim {
            tenant: t.tenant,
            node: t.node,
            key: election.key,
            class: election.class,
            generation: election.generation,
            lease_until,
            issued_at: now,
        };
        let signed = Signed::sign(claim, &t.creds);
        t.code.put_claim((election, t.node), signed.clone(), keep_ms);
        self.stats.claims_published += 1;
        self.publish_body(tag, &Body::Claim(Box::new(signed)));
    }

    fn next_compile_id(&mut self) -> CompileId {
        self.next_compile_id += 1;
        CompileId(self.next_compile_id)
    }

    /// Claims an election and asks the host to compile.
    fn request_compile(&mut self, now: Timestamp, tag: TenantTag, election: Election) {
        let lease = self.config.code.lease_ms;
        let Some(class) = self.own_class(&election.class).cloned() else {
            return;
        };
        let excluded = self.broken_assumptions(tag, &election.key);
        let t = &self.tenants[&tag];
        let profile = compile_profile(t.functions.get(&election.key.function), &election.key);
        let profile_digest = rules::profile_digest(&election.key, &election.class, &profile);
        let tenant = t.tenant;
        self.publish_claim(now, tag, election, now.plus_ms(lease));
        let id = self.next_compile_id();
        self.tenants.get_mut(&tag).expect("tenant present").code.pending.insert(
            id,
            Pending {
                election,
                purpose: Purpose::Publish,
                lease_until: now.plus_ms(lease),
                excluded: excluded.clone(),
                profile_digest,
            },
        );
        self.stats.compiles_requested += 1;
        tracing::info!(
            generation = election.generation,
            tier = election.key.tier.0,
            "elected to compile"
        );
        self.outputs
            .push_back(Output::Event(Event::Compile(Box::new(CompileRequest {
                id,
                tenant,
                key: election.key,
                class,
                generation: election.generation,
                purpose: Purpose::Publish,
                profile,
                profile_digest,
                excluded,
                required: None,
            }))));
    }

    /// Re-publishes the code of generation `from` as the election's generation.
    fn repromote(&mut self, now: Timestamp, tag: TenantTag, election: Election, from: u32) {
        let ttl = self.config.code.manifest_ttl_ms;
        let min = self.config.code.retire_min_nodes;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let Some(old) = t
            .code
            .manifests
            .get(&(election.key, election.class))
            .and_then(|g| g.get(&from))
            .cloned()
        else {
            return;
        };
        if !t.code.blobs.contains(&old.statement.blob_hash) {
            // The elected node needs the old code to re-publish it: fetch it first.
            t.code
                .transfers
                .entry(old.statement.blob_hash)
                .or_insert_with(|| crate::code::blobs::Transfer::new(old.statement.blob_size, now));
            return;
        }
        let state = t.functions.get(&election.key.function);
        let tolerated: Vec<u32> = old
            .statement
            .assumptions
            .iter()
            .map(Assumption::id)
            .filter(|id| deopt_nodes(state, election.key.method, election.key.tier, *id) >= min)
            .collect();
        let m = Manifest {
            tenant: t.tenant,
            key: election.key,
            class: election.class,
            generation: election.generation,
            assumptions: old.statement.assumptions.clone(),
            tolerated,
            repromotes: Some(from),
            profile_digest: old.statement.profile_digest,
            blob_hash: old.statement.blob_hash,
            blob_size: old.statement.blob_size,
            compiler: t.node,
            created_at: now,
            expires_at: now.plus_ms(ttl),
        };
        tracing::info!(generation = election.generation, from, "re-promoting faster code");
        self.sign_and_publish_manifest(now, tag, m);
    }

    fn sign_and_publish_manifest(&mut self, now: Timestamp, tag: TenantTag, m: Manifest) -> [u8; 32] {
        let signed = Signed::sign(m, &self.tenants[&tag].creds);
        let hash = signed.hash();
        if let Err(e) = self.accept_manifest(now, tag, signed.clone(), None) {
            tracing::error!(reason = %e, "own manifest not accepted");
        }
        self.stats.manifests_published += 1;
        self.publish_body(
            tag,
            &Body::Code {
                round: 0,
                manifests: vec![signed],
                attestations: Vec::new(),
            },
        );
        hash
    }

    /// Asks for attestation compiles of current manifests this node ranks among the first
    /// `min_attestations` attesters for (after the compiler), or whose turn came because
    /// better-ranked attesters did not answer within a lease each.
    fn run_attestations(&mut self, now: Timestamp, tag: TenantTag) {
        let need = self.config.code.min_attestations;
        if need == 0 {
            return;
        }
        let cfg = self.code_settings();
        let roster = self.roster(now, tag);
        let eligible = &roster.eligible;
        let t = &self.tenants[&tag];
        let me = t.node;
        let tenant = t.tenant;
        let mut todo = Vec::new();
        for gens in t.code.manifests.values() {
            let Some((_, m)) = gens.last_key_value() else { continue };
            let s = &m.statement;
            let h = m.hash();
            if s.compiler == me
                || t.code.attested.contains(&h)
                || s.repromotes.is_some()
                || expired(s, now, self.config.code.manifest_ttl_ms)
            {
                continue;
            }
            if t.code.agreeing_attestations(m) >= need {
                continue;
            }
            let election = rules::election_of(s);
            let ranking: Vec<NodeKey> = rank(
                &tenant,
                &election,
                eligible.get(&s.class).into_iter().flatten().copied(),
            )
            .into_iter()
            .filter(|n| *n != s.compiler)
            .collect();
            let Some(pos) = ranking.iter().position(|n| *n == me) else {
                continue;
            };
            let turn = s
                .created_at
                .plus_ms(cfg.lease_ms.saturating_mul((pos + 1).saturating_sub(need) as u64));
            if pos < need || now >= turn {
                todo.push((m.clone(), h));
            }
        }
        for (m, h) in todo {
            let Some(class) = self.own_class(&m.statement.class).cloned() else {
                continue;
            };
            let t = self.tenants.get_mut(&tag).expect("tenant present");
            t.code.attested.insert(h);
            let profile = compile_profile(t.functions.get(&m.statement.key.function), &m.statement.key);
            let id = self.next_compile_id();
            let election = rules::election_of(&m.statement);
            let t = self.tenants.get_mut(&tag).expect("tenant present");
            t.code.pending.insert(
                id,
                Pending {
                    election,
                    purpose: Purpose::Attest { manifest: h },
                    lease_until: now.plus_ms(cfg.lease_ms),
                    excluded: Vec::new(),
                    profile_digest: m.statement.profile_digest,
                },
            );
            self.stats.compiles_requested += 1;
            self.outputs
                .push_back(Output::Event(Event::Compile(Box::new(CompileRequest {
                    id,
                    tenant,
                    key: m.statement.key,
                    class,
                    generation: m.statement.generation,
                    purpose: Purpose::Attest { manifest: h },
                    profile,
                    profile_digest: m.statement.profile_digest,
                    excluded: Vec::new(),
                    required: Some(m.statement.assumptions.clone()),
                }))));
        }
    }

    /// The host's answer to a [`CompileRequest`]: the code it compiled.
    ///
    /// For [`Purpose::Publish`] the engine stores the code, signs its manifest (generation,
    /// class, assumptions, profile digest, blob hash and size, `now` as creation time) and
    /// publishes it; it returns the manifest's hash. For [`Purpose::Attest`] it signs and
    /// publishes the hash the compilation produced (equal or not to the manifest's) and
    /// returns that hash.
    pub fn compiled(
        &mut self,
        now: Timestamp,
        tenant: &TenantId,
        id: CompileId,
        code: CompiledCode,
    ) -> Result<[u8; 32], CompileError> {
        let tag = self.tag_of(tenant).ok_or(CompileError::UnknownRequest)?;
        let cfg = self.code_settings();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let pending = t.code.pending.remove(&id).ok_or(CompileError::UnknownRequest)?;
        let size = code.bytes.len() as u64;
        if size > cfg.max_blob_bytes {
            return Err(CompileError::Oversize {
                size,
                max: cfg.max_blob_bytes,
            });
        }
        if code.assumptions.len() > cfg.limits.max_assumptions || !code.assumptions.iter().all(Assumption::is_bounded) {
            return Err(CompileError::Bounds);
        }
        if let Some(a) = code.assumptions.iter().find(|a| pending.excluded.contains(a)) {
            t.code.put_failed(pending.election, now.plus_ms(cfg.lease_ms));
            return Err(CompileError::ExcludedAssumption(a.clone()));
        }
        let blob: Arc<[u8]> = code.bytes.into();
        let blob_hash = *blake3::hash(&blob).as_bytes();
        match pending.purpose {
            Purpose::Publish => {
                t.code.blobs.insert(blob);
                let m = Manifest {
                    tenant: t.tenant,
                    key: pending.election.key,
                    class: pending.election.class,
                    generation: pending.election.generation,
                    assumptions: code.assumptions,
                    tolerated: Vec::new(),
                    repromotes: None,
                    profile_digest: pending.profile_digest,
                    blob_hash,
                    blob_size: size,
                    compiler: t.node,
                    created_at: now,
                    expires_at: now.plus_ms(cfg.manifest_ttl_ms),
                };
                Ok(self.sign_and_publish_manifest(now, tag, m))
            }
            Purpose::Attest { manifest } => {
                let Some((key, class, generation)) = t.code.by_hash.get(&manifest).copied() else {
                    return Err(CompileError::UnknownRequest);
                };
                if t.code
                    .current(&key, &class)
                    .is_some_and(|m| m.statement.blob_hash == blob_hash)
                {
                    // Reproduced: this node can serve the code too.
                    t.code.blobs.insert(blob);
                }
                let a = Attestation {
                    tenant: t.tenant,
                    attester: t.node,
                    key,
                    class,
                    generation,
                    manifest,
                    blob_hash,
                    issued_at: now,
                };
                let signed = Signed::sign(a, &t.creds);
                if let Err(e) = self.accept_attestation(now, tag, signed.clone()) {
                    tracing::error!(reason = %e, "own attestation not accepted");
                }
                self.publish_body(
                    tag,
                    &Body::Code {
                        round: 0,
                        manifests: Vec::new(),
                        attestations: vec![signed],
                    },
                );
                Ok(blob_hash)
            }
        }
    }

    /// The host could not compile a request: the claim is released so that the next-ranked
    /// node takes over after its turn, and this node does not claim the election again for
    /// one lease.
    pub fn compile_failed(&mut self, now: Timestamp, tenant: &TenantId, id: CompileId) -> Result<(), EngineError> {
        let lease = self.config.code.lease_ms;
        let tag = self.tag_of(tenant).ok_or(EngineError::UnknownTenant)?;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let Some(p) = t.code.pending.remove(&id) else {
            return Ok(());
        };
        t.code.put_failed(p.election, now.plus_ms(lease));
        if p.purpose == Purpose::Publish {
            self.publish_claim(now, tag, p.election, now);
        }
        Ok(())
    }

    /// Compile requests not answered yet, by id.
    pub fn pending_compiles(&self, tenant: &TenantId) -> Vec<(CompileId, Election)> {
        self.tenant(tenant)
            .map(|t| t.code.pending.iter().map(|(id, p)| (*id, p.election)).collect())
            .unwrap_or_default()
    }

    /// The current manifests of a tenant, by (key, class).
    pub fn manifests(&self, tenant: &TenantId) -> BTreeMap<(CodeKey, ClassId), Signed<Manifest>> {
        self.tenant(tenant)
            .map(|t| {
                t.code
                    .manifests
                    .iter()
                    .filter_map(|(k, g)| g.last_key_value().map(|(_, m)| (*k, Signed::clone(m))))
                    .collect()
            })
            .unwrap_or_default()
    }
}
