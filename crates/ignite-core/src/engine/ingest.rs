//! Receiving signed deltas: certificate checks, batch verification, merge, thresholds.

use super::{Accepted, Engine, Event, Output, Rejection, tier_threshold};
use crate::crypto::{self, BatchItem};
use crate::ids::{FunctionId, GroupId, MethodId, MethodKey, TenantTag, Tier, Timestamp};
use crate::profile::counter::CounterKey;
use crate::profile::transition::MergeContext;
use crate::profile::{Evidence, LaneId, StoredDelta};
use crate::tenancy::{CertError, Roles, SignedCert};
use crate::wire::{self, DeltaBatch};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Engine {
    /// Checks one certificate for use at `now`; signature checks are cached by hash.
    fn check_cert(&mut self, tag: TenantTag, cert: &SignedCert, now: Timestamp) -> Result<(), Rejection> {
        let t = &self.tenants[&tag];
        if cert.cert.tenant != t.tenant {
            return Err(CertError::WrongRoot.into());
        }
        if t.revocations.contains(&cert.cert.node) {
            return Err(CertError::Revoked.into());
        }
        if t.banned.contains(&cert.cert.node) {
            return Err(Rejection::Banned);
        }
        cert.check_time(now)?;
        if !cert.cert.roles.contains(Roles::PROFILE) {
            return Err(CertError::MissingRole.into());
        }
        let h = cert.hash();
        if !self.verified_certs.contains(&h) {
            let key = super::shared_key(b"cert", &h);
            if self.config.shared.as_ref().is_some_and(|s| s.is_verified(&key)) {
                self.stats.signatures_shared += 1;
            } else {
                cert.verify_signature(&t.tenant)?;
                self.stats.signatures_verified += 1;
                if let Some(s) = &self.config.shared {
                    s.verified(key);
                }
            }
            self.verified_certs.insert(h);
        }
        Ok(())
    }

    /// Ingests the delta batches of several messages at once: every new signature among
    /// them is checked in one batch verification, then deltas are applied in order.
    /// Returns one result per batch.
    pub(super) fn ingest_batches(
        &mut self,
        now: Timestamp,
        batches: &[(TenantTag, DeltaBatch<'_>)],
    ) -> Vec<Result<Accepted, Rejection>> {
        let mut first_err: Vec<Option<Rejection>> = vec![None; batches.len()];
        let mut accepted = vec![Accepted::default(); batches.len()];
        // (batch, delta, hash) of every new delta whose certificate is fine.
        let mut pending: Vec<(usize, usize, [u8; 32])> = Vec::new();
        for (b, (tag, batch)) in batches.iter().enumerate() {
            let cert_ok: Vec<Result<(), Rejection>> =
                batch.certs.iter().map(|c| self.check_cert(*tag, c, now)).collect();
            let tenant = self.tenants[tag].tenant;
            for (i, d) in batch.deltas.iter().enumerate() {
                if let Err(e) = &cert_ok[d.signer as usize] {
                    first_err[b].get_or_insert(e.clone());
                    continue;
                }
                let cert = &batch.certs[d.signer as usize].cert;
                let hash = d.hash(&tenant.0, &cert.node.0, &batch.functions[d.function as usize]);
                if self.seen_deltas.contains(&hash) {
                    accepted[b].deltas_duplicate += 1;
                    self.stats.deltas_duplicate += 1;
                    continue;
                }
                pending.push((b, i, hash));
            }
        }
        // Signatures another engine of this process verified are not checked again.
        let shared: Vec<bool> = pending
            .iter()
            .map(|(_, _, hash)| {
                self.config
                    .shared
                    .as_ref()
                    .is_some_and(|s| s.is_verified(&super::shared_key(b"delta", hash)))
            })
            .collect();
        self.stats.signatures_shared += shared.iter().filter(|s| **s).count() as u64;
        // The signed bytes are built only for the signatures checked here.
        let signed: Vec<(Vec<u8>, &crate::wire::DeltaWire<'_>, [u8; 32])> = pending
            .iter()
            .zip(&shared)
            .filter(|(_, s)| !**s)
            .map(|((b, i, _), _)| {
                let (tag, batch) = &batches[*b];
                let d = &batch.deltas[*i];
                let node = batch.certs[d.signer as usize].cert.node.0;
                let tenant = self.tenants[tag].tenant;
                (
                    d.signed_bytes(&tenant.0, &node, &batch.functions[d.function as usize]),
                    d,
                    node,
                )
            })
            .collect();
        let items: Vec<BatchItem<'_>> = signed
            .iter()
            .map(|(bytes, d, node)| BatchItem {
                key: *node,
                signed: bytes,
                sig: d.signature,
            })
            .collect();
        let mut checked = crypto::verify_many(&items).into_iter();
        self.stats.signatures_verified += items.len() as u64;
        drop(items);
        drop(signed);
        let results: Vec<Result<(), crypto::SigError>> = shared
            .iter()
            .map(|s| {
                if *s {
                    Ok(())
                } else {
                    checked.next().expect("one result per item")
                }
            })
            .collect();
        if let Some(s) = &self.config.shared {
            for (((_, _, hash), r), reused) in pending.iter().zip(&results).zip(&shared) {
                if r.is_ok() && !reused {
                    s.verified(super::shared_key(b"delta", hash));
                }
            }
        }
        let mut touched: BTreeMap<TenantTag, Vec<(FunctionId, MethodId)>> = BTreeMap::new();
        for ((b, i, hash), res) in pending.into_iter().zip(results) {
            if let Err(e) = res {
                first_err[b].get_or_insert(e.into());
                continue;
            }
            let (tag, batch) = &batches[b];
            let d = &batch.deltas[i];
            let signer = batch.certs[d.signer as usize];
            let function = batch.functions[d.function as usize];
            let lane = LaneId {
                function,
                node: signer.cert.node,
                incarnation: d.incarnation,
                group: d.group,
            };
            let make = || StoredDelta {
                seq: d.seq,
                issued_at: d.issued_at,
                full: d.full,
                entries: d.entries.into(),
                signature: d.signature,
            };
            let stored = match &self.config.shared {
                Some(s) => s.intern_delta(&hash, make),
                None => Arc::new(make()),
            };
            match self.apply_delta(
                now,
                *tag,
                &signer,
                &lane,
                stored,
                Some(&hash),
                touched.entry(*tag).or_default(),
            ) {
                Ok(dup) => {
                    self.seen_deltas.insert(hash);
                    if dup {
                        accepted[b].deltas_duplicate += 1;
                        self.stats.deltas_duplicate += 1;
                    } else {
                        accepted[b].deltas_applied += 1;
                        self.stats.deltas_applied += 1;
                    }
                }
                Err(e) => {
                    first_err[b].get_or_insert(e);
                }
            }
        }
        for (tag, t) in &mut touched {
            self.check_thresholds(*tag, t);
        }
        first_err
            .into_iter()
            .zip(accepted)
            .map(|(e, a)| e.map_or(Ok(a), Err))
            .collect()
    }

    /// Applies one verified delta; `hash` is its delta hash when it came from the network.
    /// Returns whether it was already held.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_delta(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        signer: &SignedCert,
        lane: &LaneId,
        stored: Arc<StoredDelta>,
        hash: Option<&[u8; 32]>,
        touched: &mut Vec<(FunctionId, MethodId)>,
    ) -> Result<bool, Rejection> {
        let limits = self.config.limits;
        let cap_cfg = self.config.cap;
        let max_skew = self.config.max_clock_skew_ms;
        let max_functions = self.config.max_functions_per_tenant;
        let max_counters = self.config.max_counters_per_function;
        let max_lanes = self.config.max_incarnations_per_node * self.config.groups as usize;
        let default_policy = self.default_policy();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if stored.issued_at > now.as_millis().saturating_add(max_skew) {
            return Err(Rejection::FromTheFuture);
        }
        if lane.group.0 >= self.config.groups {
            return Err(Rejection::Limit("group out of range"));
        }
        if let Some(code) = t.deployments.get(&lane.function.name)
            && *code != lane.function.code
        {
            return Err(Rejection::OtherDeployment);
        }
        if let Some(dropped_at) = t.tombstones.get(&lane.function).copied()
            && stored.issued_at <= dropped_at
        {
            return Err(Rejection::ExpiredFunction);
        }
        if t.revocations.contains(&lane.node) {
            return Err(CertError::Revoked.into());
        }
        if t.banned.contains(&lane.node) {
            return Err(Rejection::Banned);
        }
        if stored.seq == 0 || stored.seq == u32::MAX {
            return Err(crate::wire::WireError::Malformed("seq out of range".into()).into());
        }
        // Entries another engine of this process decoded are not decoded again; the count
        // is still checked against this engine's limits.
        let shared_entries = match (hash, &self.config.shared) {
            (Some(h), Some(s)) => Some(s.decoded(h, || wire::decode_entries(&stored.entries, &limits))?),
            _ => None,
        };
        let decoded;
        let entries: &[(CounterKey, u64)] = match &shared_entries {
            Some(e) => {
                wire::check_entry_count(e.len(), &limits)?;
                e
            }
            None => {
                decoded = wire::decode_entries(&stored.entries, &limits)?;
                &decoded
            }
        };
        // Publishers send only counters that rose, so never an empty delta or a zero value.
        if entries.is_empty() || entries.iter().any(|(_, v)| *v == 0) {
            return Err(crate::wire::WireError::Malformed("empty delta or zero value".into()).into());
        }
        let groups = self.config.groups;
        if entries.iter().any(|(k, _)| GroupId::of(k.method, groups) != lane.group) {
            return Err(crate::wire::WireError::Malformed("entry outside its method group".into()).into());
        }
        // Every bound is checked before anything is created, so a refused delta leaves no trace.
        match t.functions.get(&lane.function) {
            None if t.functions.len() >= max_functions => return Err(Rejection::Limit("functions per tenant")),
            None if entries.len() > max_counters => return Err(Rejection::Limit("counters per function")),
            None => {}
            Some(state) => {
                if state.lane(lane.node, lane.incarnation, lane.group).is_none()
                    && state.lanes_of_node(&lane.node) >= max_lanes
                {
                    return Err(Rejection::Limit("incarnations per node"));
                }
                // Bounded on the key table, which holds every key ever interned for the function.
                let fits_anyway = state.ids.len() + entries.len() <= max_counters;
                if !fits_anyway
                    && state.ids.len() + entries.iter().filter(|(k, _)| !state.ids.contains_key(k)).count()
                        > max_counters
                {
                    return Err(Rejection::Limit("counters per function"));
                }
            }
        }
        // Every check passed: a newer delta revives a tombstoned function.
        if t.tombstones.remove(&lane.function).is_some() {
            t.tombstone_order.retain(|f| *f != lane.function);
        }
        let state = t.functions.entry(lane.function).or_default();
        let lifetime_ms = stored.issued_at.saturating_sub(signer.cert.not_before.as_millis());
        let shared = self.config.shared.as_ref();
        let policy = t.code.policies.get(&lane.function).copied().unwrap_or(default_policy);
        let watch: Vec<(Tier, u64)> = (1..=Tier::MAX.0)
            .filter_map(|tier| tier_threshold(&policy.thresholds, Tier(tier)).map(|limit| (Tier(tier), limit)))
            .collect();
        // A delta from the network merges the same way in every engine of the process
        // that holds the same lane state: the merge is shared (see `profile::transition`).
        let merge = hash.map(|h| MergeContext {
            delta: *h,
            cap: cap_cfg,
            lifetime_ms,
            limits,
        });
        let out = state.apply_watched(
            lane,
            &stored,
            entries,
            &limits,
            shared,
            merge.as_ref(),
            &watch,
            |_, held, proposed, interval_ms| cap_cfg.allowed(held, proposed, interval_ms, lifetime_ms),
        );
        // Idle time is judged on signing times, so old deltas replayed by anti-entropy do not
        // keep an idle function alive.
        state.last_seen = state.last_seen.max(Timestamp(stored.issued_at));
        if let Some(conflict) = out.conflict {
            let evidence = Evidence {
                tenant: t.tenant,
                lane: *lane,
                first: conflict,
                second: StoredDelta::clone(&stored),
            };
            self.ban(tag, evidence, true);
            return Err(Rejection::Equivocation);
        }
        if out.duplicate {
            return Ok(true);
        }
        t.certs
            .entry(lane.node)
            .and_modify(|c| {
                if c.cert.not_after < signer.cert.not_after {
                    *c = *signer;
                }
            })
            .or_insert(*signer);
        t.activity.insert(lane.node, now);
        touched.extend(out.crossed.iter().map(|m| (lane.function, *m)));
        if out.clamped > 0 {
            self.stats.clamped_increments += out.clamped;
            self.outputs.push_back(Output::Event(Event::IncrementCapped {
                tenant: t.tenant,
                node: lane.node,
                function: lane.function,
                excess: out.clamped,
            }));
        }
        Ok(false)
    }

    /// Stops accepting an equivocating node: removes its counts (as a revocation does, so
    /// every engine that learns of it ends in the same state), keeps the evidence, tells the
    /// host, and — when this engine found it — publishes the evidence to the tenant.
    pub(super) fn ban(&mut self, tag: TenantTag, evidence: Evidence, publish: bool) {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let node = evidence.lane.node;
        if !t.banned.insert(node) {
            return;
        }
        for f in t.functions.values_mut() {
            f.remove_node(&node);
        }
        // One record per banned node (bans need a certified member, so this is bounded by
        // the tenant's membership); anti-entropy forwards them to peers that lack the ban.
        t.evidence.push(evidence.clone());
        tracing::warn!(node = ?node, "equivocation detected");
        if publish {
            let bytes = t
                .sealer
                .seal(&crate::wire::Body::Evidence(Box::new(evidence.clone())).encode());
            let topic = t.sealer.topic().clone();
            self.push_publish(topic, bytes);
        }
        self.outputs
            .push_back(Output::Event(Event::Equivocation(Box::new(evidence))));
    }

    /// Evidence of equivocation received from a peer: verified, then acted on like our own.
    pub(super) fn on_evidence(&mut self, tag: TenantTag, evidence: Evidence) -> Result<(), Rejection> {
        let t = &self.tenants[&tag];
        if evidence.tenant != t.tenant {
            return Err(CertError::WrongRoot.into());
        }
        if t.banned.contains(&evidence.lane.node) {
            return Ok(());
        }
        // Only evidence about a known member counts (keys nobody certified cannot fill the
        // ban list); an engine that learns of the member later gets the evidence again from
        // anti-entropy, which compares ban lists.
        if !t.certs.contains_key(&evidence.lane.node) {
            return Ok(());
        }
        if !evidence.verify(&self.config.limits) {
            return Err(crate::wire::WireError::Malformed("evidence does not prove equivocation".into()).into());
        }
        self.stats.signatures_verified += 2;
        self.ban(tag, evidence, false);
        Ok(())
    }

    /// The policy of a function the host set none for.
    pub(super) fn default_policy(&self) -> super::FunctionPolicy {
        super::FunctionPolicy {
            thresholds: self.config.thresholds,
            min_contributors: self.config.code.min_contributors,
            unit: super::CompileUnit::Method,
        }
    }

    /// Emits a threshold event for each touched method that crossed a tier threshold with
    /// enough distinct contributors, and opens its elections at the next code pass. A
    /// threshold reached by too few nodes is reported once and re-checked on later deltas.
    pub(super) fn check_thresholds(&mut self, tag: TenantTag, touched: &mut Vec<(FunctionId, MethodId)>) {
        touched.sort_unstable();
        touched.dedup();
        let default_policy = self.default_policy();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        // Every tier with a threshold: a method whose bits all fired needs no look-up.
        let all_tiers: u8 = (1..=Tier::MAX.0).fold(0, |acc, tier| acc | 1 << tier);
        let mut current: Option<(FunctionId, super::FunctionPolicy)> = None;
        for (f, m) in touched.iter() {
            let policy = match current {
                Some((cf, p)) if cf == *f => p,
                _ => {
                    let p = t.code.policies.get(f).copied().unwrap_or(default_policy);
                    current = Some((*f, p));
                    p
                }
            };
            if matches!(policy.unit, super::CompileUnit::Whole(unit) if unit != *m) {
                continue;
            }
            if t.functions
                .get(f)
                .is_some_and(|s| s.fired_bits(*m) & all_tiers == all_tiers)
            {
                continue;
            }
            for tier in 1..=Tier::MAX.0 {
                let tier = Tier(tier);
                let Some(state) = t.functions.get(f) else { break };
                let Some(limit) = tier_threshold(&policy.thresholds, tier) else {
                    continue;
                };
                let bit = 1u8 << tier.0;
                let fired = state.fired_bits(*m);
                if fired & bit != 0 {
                    continue;
                }
                let n = state.invocations_below(*m, tier);
                if n < limit {
                    continue;
                }
                let contributors = state.contributors_up_to(*m, tier, policy.min_contributors);
                let method = MethodKey {
                    function: *f,
                    method: *m,
                };
                if contributors < policy.min_contributors {
                    if t.code.withheld.insert((*f, *m, tier)) {
                        self.outputs.push_back(Output::Event(Event::ThresholdPending {
                            tenant: t.tenant,
                            method,
                            tier,
                            invocations: n,
                            contributors,
                            required: policy.min_contributors,
                        }));
                    }
                    continue;
                }
                fire(t, &mut self.outputs, (*f, *m, tier), n, contributors, false);
            }
        }
    }
}

/// Marks the threshold of `tier` reached for a method and announces it (on the signed
/// counts, or `predicted` by [`Engine::predict`]).
pub(super) fn fire(
    t: &mut super::tenant::TenantState,
    outputs: &mut std::collections::VecDeque<Output>,
    (f, m, tier): (FunctionId, MethodId, Tier),
    invocations: u64,
    contributors: usize,
    predicted: bool,
) {
    let Some(state) = t.functions.get_mut(&f) else { return };
    state.set_fired(m, tier);
    t.code.wake_key(
        crate::code::CodeKey {
            function: f,
            method: m,
            tier,
        },
        Timestamp(0),
    );
    outputs.push_back(Output::Event(Event::ThresholdReached {
        tenant: t.tenant,
        method: MethodKey { function: f, method: m },
        tier,
        invocations,
        contributors,
        predicted,
    }));
}
