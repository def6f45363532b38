//! Installing code: choosing the current manifest of the best runnable class, checking it,
//! fetching its blob by content hash, and telling the host. Also the host's feedback
//! (deopts, latencies) and the scheduler's query.

use super::code_state::{FunctionPolicy, Installed, Scope, expired, retired_by};
use super::{Engine, EngineError, Event, Output};
use crate::code::assumption::Checker;
use crate::code::blobs::{ChunkError, Transfer};
use crate::code::{
    Assumption, AssumptionCheck, ClassId, CodeKey, Install, Manifest, MemberCode, Refusal, Signed, rules,
};
use crate::ids::{FunctionId, MethodId, Peer, TenantTag, Tier, Timestamp};
use crate::profile::counter::{Counter, CounterKey};
use crate::tenancy::TenantId;
use crate::wire::Body;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Engine {
    /// Checks everything about a current manifest except its blob.
    fn install_check(&self, now: Timestamp, tag: TenantTag, m: &Signed<Manifest>) -> Result<(), Refusal> {
        let cfg = &self.config.code;
        let t = &self.tenants[&tag];
        let s = &m.statement;
        if !self.own_class(&s.class).is_some_and(|c| c.serves(s.key.tier)) {
            return Err(Refusal::ClassNotRunnable);
        }
        if expired(s, now, self.config.code.manifest_ttl_ms) {
            return Err(Refusal::Expired);
        }
        if t.revocations.contains(&s.compiler) || t.banned.contains(&s.compiler) {
            return Err(Refusal::Unauthentic("compiler revoked or banned".into()));
        }
        if let Some((assumption, nodes)) = retired_by(s, t.functions.get(&s.key.function), cfg.retire_min_nodes) {
            return Err(Refusal::Retired { assumption, nodes });
        }
        if cfg.min_attestations > 0 && s.repromotes.is_none() {
            let have = t.code.agreeing_attestations(m);
            if have < cfg.min_attestations {
                return Err(Refusal::Unattested {
                    have,
                    need: cfg.min_attestations,
                });
            }
        }
        for a in s.assumptions.iter().filter(|a| !s.tolerated.contains(&a.id())) {
            t.code
                .checker
                .0
                .check(&t.tenant, &s.key, a)
                .map_err(|reason| Refusal::AssumptionViolated {
                    assumption: a.clone(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// For every (function, method, tier) with manifests: installs the current code of the
    /// best class this node runs that passes every check, fetching blobs as needed, and
    /// removes installed code that no longer passes.
    pub(super) fn run_installs(&mut self, now: Timestamp, tag: TenantTag, scope: Scope<'_>) {
        self.run_installs_with(now, tag, scope, None);
    }

    /// [`Self::run_installs`] with a blob just fetched that the store may not have had room
    /// for: it is installed from these bytes, and stored once the code it replaces is
    /// unpinned.
    fn run_installs_with(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        scope: Scope<'_>,
        fresh: Option<(&[u8; 32], &Arc<[u8]>)>,
    ) {
        let prefs: Vec<ClassId> = self.class_ids.clone();
        let pref = |c: &ClassId| prefs.iter().position(|p| p == c).unwrap_or(usize::MAX);
        let pins_before = self.tenants[&tag].code.installs_version;
        // One ordered walk over the manifests (grouped by key), deciding without changing
        // anything; then the decisions are carried out in key order. Manifests are cloned
        // only when one is refused or installed.
        enum Action {
            Refuse(Box<Signed<Manifest>>, Refusal),
            Install(Box<Signed<Manifest>>),
            Uninstall(CodeKey, Installed),
        }
        let mut actions: Vec<Action> = Vec::new();
        let mut wanted: BTreeSet<[u8; 32]> = BTreeSet::new();
        {
            let t = &self.tenants[&tag];
            let manifests = &t.code.manifests;
            let walk: Box<dyn Iterator<Item = (&(CodeKey, ClassId), &_)>> = match scope {
                Scope::All => Box::new(manifests.iter()),
                Scope::Keys(keys) => Box::new(
                    keys.iter()
                        .flat_map(|k| manifests.range((*k, ClassId([0; 16]))..=(*k, ClassId([255; 16])))),
                ),
            };
            let mut iter = walk.peekable();
            let mut group: Vec<(usize, &Signed<Manifest>)> = Vec::new();
            while let Some(((key, class), gens)) = iter.next() {
                group.clear();
                if let Some((_, m)) = gens.last_key_value() {
                    group.push((pref(class), m));
                }
                while let Some(((k2, c2), g2)) = iter.peek() {
                    if k2 != key {
                        break;
                    }
                    if let Some((_, m)) = g2.last_key_value() {
                        group.push((pref(c2), m));
                    }
                    iter.next();
                }
                if group.len() > 1 {
                    group.sort_by_key(|(p, _)| *p);
                }
                let mut chosen: Option<&Signed<Manifest>> = None;
                for &(_, m) in &group {
                    match self.install_check(now, tag, m) {
                        Ok(()) if chosen.is_none() => chosen = Some(m),
                        Ok(()) => {}
                        Err(reason) => actions.push(Action::Refuse(Box::new(m.clone()), reason)),
                    }
                }
                let installed = t.code.installed.get(&(key.function, key.method, key.tier)).copied();
                match chosen {
                    Some(m) => {
                        // The installed manifest: same class, generation, code, compiler and
                        // signing time (cheaper than hashing the manifest on every pass).
                        let s = &m.statement;
                        if installed.is_some_and(|i| {
                            i.class == s.class
                                && i.generation == s.generation
                                && i.blob == s.blob_hash
                                && i.compiler == s.compiler
                                && i.created_at == s.created_at.0
                        }) {
                            continue;
                        }
                        wanted.insert(s.blob_hash);
                        actions.push(Action::Install(Box::new(m.clone())));
                    }
                    None => {
                        if let Some(i) = installed {
                            actions.push(Action::Uninstall(*key, i));
                        }
                    }
                }
            }
        }
        for a in actions {
            match a {
                Action::Refuse(m, reason) => self.refuse(tag, &m, reason),
                Action::Install(m) => self.install_or_fetch(now, tag, *m, fresh),
                Action::Uninstall(key, i) => self.uninstall(tag, key, i),
            }
        }
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let manifests = &t.code.manifests;
        let held = |h: &[u8; 32]| {
            manifests
                .values()
                .any(|g| g.values().any(|m| m.statement.blob_hash == *h))
        };
        if matches!(scope, Scope::All) && !t.code.transfers.is_empty() {
            // Transfers no current manifest wants are dropped, except those of any manifest
            // held (re-promotion fetches older generations).
            // One walk over the manifests looks for the few transfers not wanted now.
            let mut unwanted: Vec<([u8; 32], bool)> = t
                .code
                .transfers
                .keys()
                .filter(|h| !wanted.contains(*h))
                .map(|h| (*h, false))
                .collect();
            if !unwanted.is_empty() {
                for m in manifests.values().flat_map(|g| g.values()) {
                    if let Ok(i) = unwanted.binary_search_by(|(h, _)| h.cmp(&m.statement.blob_hash)) {
                        unwanted[i].1 = true;
                    }
                }
                for (h, held) in unwanted {
                    if !held {
                        t.code.transfers.remove(&h);
                    }
                }
            }
        }
        let fresh_unstored = fresh.filter(|(h, _)| !t.code.blobs.contains(h));
        if t.code.installs_version == pins_before && fresh_unstored.is_none() {
            // Nothing installed or removed: the pins are unchanged.
            return;
        }
        let mut pinned: Vec<[u8; 32]> = t.code.installed.values().map(|i| i.blob).collect();
        pinned.sort_unstable();
        t.code.blobs.set_pinned(&pinned);
        if let Some((hash, bytes)) = fresh_unstored {
            if t.code.blobs.insert(bytes.clone()).is_some() {
                t.code.blobs.set_pinned(&pinned);
            } else {
                // Neither installed nor storable (the store is full of installed code): do
                // not fetch it again before the recompile backoff.
                tracing::warn!("blob store full of installed code; fetched blob not kept");
                let mut tr = Transfer::new(bytes.len() as u64, now);
                tr.failed_until = Some(now.plus_ms(self.config.code.recompile_backoff_ms));
                if held(hash) {
                    t.code.transfers.insert(*hash, tr);
                }
            }
        }
    }

    fn install_or_fetch(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        m: Signed<Manifest>,
        fresh: Option<(&[u8; 32], &Arc<[u8]>)>,
    ) {
        let Some(class) = self.own_class(&m.statement.class).cloned() else {
            return;
        };
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let s = &m.statement;
        let held = t.code.blobs.get(&s.blob_hash);
        let Some(blob) = held.or_else(|| fresh.filter(|(h, _)| **h == s.blob_hash).map(|(_, b)| b.clone())) else {
            t.code
                .transfers
                .entry(s.blob_hash)
                .or_insert_with(|| Transfer::new(s.blob_size, now));
            return;
        };
        if blob.len() as u64 != s.blob_size {
            self.refuse(tag, &m, Refusal::BlobSizeMismatch);
            return;
        }
        let key = s.key;
        let slot = (key.function, key.method, key.tier);
        t.code.installs_version += 1;
        t.code.installed.insert(
            slot,
            Installed {
                manifest: m.hash(),
                class: s.class,
                generation: s.generation,
                blob: s.blob_hash,
                compiler: s.compiler,
                created_at: s.created_at.0,
            },
        );
        // Code of this tier is current: lower tiers' profile counters stop being published
        // after the next publication (which carries what was counted until then).
        t.compiled_pending
            .push((key.function, key.method, key.tier, super::tenant::Declared::Install));
        let tenant = t.tenant;
        // Announce the new installed set soon, for schedulers and attesters.
        // (At most one extra announcement per `install_announce_pct` of the presence
        // interval in force, which grows with the fleet: a burst of installs is announced
        // together, and at the default 25% the fleet's presence rate stays within about
        // `max_presences_per_s` times five.)
        let pct = u64::from(self.config.code.install_announce_pct);
        let soon = now.plus_ms(self.config.code.tick_ms).max(
            t.code
                .last_presence
                .plus_ms(t.code.presence_every.saturating_mul(pct) / 100),
        );
        t.code.next_presence = t.code.next_presence.min(soon);
        self.stats.installs += 1;
        tracing::info!(generation = m.statement.generation, tier = key.tier.0, "code installed");
        self.outputs.push_back(Output::Event(Event::Install(Box::new(Install {
            tenant,
            manifest: m,
            class,
            blob,
        }))));
    }

    fn uninstall(&mut self, tag: TenantTag, key: CodeKey, was: Installed) {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        t.code.installed.remove(&(key.function, key.method, key.tier));
        t.code.installs_version += 1;
        let top = t
            .code
            .installed
            .keys()
            .filter(|(f, m, _)| *f == key.function && *m == key.method)
            .map(|(_, _, tier)| *tier)
            .max();
        match top {
            Some(tier) => {
                t.compiled.insert((key.function, key.method), tier);
            }
            None => {
                t.compiled.remove(&(key.function, key.method));
            }
        }
        let tenant = t.tenant;
        self.stats.uninstalls += 1;
        self.outputs.push_back(Output::Event(Event::Uninstall {
            tenant,
            key,
            class: was.class,
            generation: was.generation,
        }));
    }

    /// Advances blob transfers: a request unanswered within the timeout moves to the next
    /// peer (relays of the manifest first, then the tenant's peers in a seeded order).
    pub(super) fn run_transfers(&mut self, now: Timestamp, tag: TenantTag) {
        let cfg = self.code_settings();
        let hashes: Vec<[u8; 32]> = self.tenants[&tag].code.transfers.keys().copied().collect();
        for hash in hashes {
            let t = &self.tenants[&tag];
            let tr = &t.code.transfers[&hash];
            if tr.failed_until.is_some_and(|u| u > now) || (tr.peer.is_some() && tr.deadline > now) {
                continue;
            }
            // Peers that relayed the manifest first, then a seeded draw among the other
            // peers not tried yet, so that fetchers spread over holders.
            let sources: &[Peer] = t.code.sources.get(&hash).map(Vec::as_slice).unwrap_or(&[]);
            let next = match sources.iter().find(|p| !tr.tried.contains(p)) {
                Some(p) => Some(*p),
                None => {
                    // The i-th of the other peers, counted twice instead of collected.
                    let mut sorted: Vec<Peer> = sources.to_vec();
                    sorted.sort_unstable();
                    let other = |p: &&Peer| sorted.binary_search(p).is_err() && !tr.tried.contains(p);
                    let n = t.peers.iter().filter(other).count();
                    (n > 0).then(|| {
                        let i = self.rng.below(n as u64) as usize;
                        *t.peers.iter().filter(other).nth(i).expect("i < n")
                    })
                }
            };
            let t = self.tenants.get_mut(&tag).expect("tenant present");
            let timeout = t.code.fetch_timeout(cfg.fetch_timeout_ms);
            let tr = t.code.transfers.get_mut(&hash).expect("transfer present");
            match next {
                Some(p) if tr.tried.len() < cfg.fetch_attempts => {
                    tr.tried.insert(p);
                    tr.peer = Some(p);
                    tr.failed_until = None;
                    tr.deadline = now.plus_ms(timeout);
                    tr.sent_at = now;
                    let chunk = tr.next_chunk;
                    let request = self.rng.next_u64();
                    let t = self.tenants.get_mut(&tag).expect("tenant present");
                    t.code.transfers.get_mut(&hash).expect("transfer present").request = request;
                    self.seal_body_to(tag, p, &Body::BlobWant { request, hash, chunk });
                }
                _ => {
                    tr.peer = None;
                    tr.tried.clear();
                    tr.restart();
                    // Holders of a new blob are few at first and the peers asked are often
                    // fetching it themselves: retry soon, then back off (1, 2, 4, 8 ×
                    // the timeout).
                    let backoff = 1u64 << tr.rounds.min(3);
                    tr.rounds += 1;
                    tr.failed_until = Some(now.plus_ms(timeout.saturating_mul(backoff)));
                    self.refuse_blob(tag, &hash, Refusal::BlobUnavailable);
                }
            }
        }
    }

    fn seal_body_to(&mut self, tag: TenantTag, peer: Peer, body: &Body<'_>) {
        let bytes = self.tenants[&tag].sealer.seal(&body.encode());
        self.push_send(peer, bytes);
    }

    /// Reports a refusal for every current manifest of a blob.
    fn refuse_blob(&mut self, tag: TenantTag, hash: &[u8; 32], reason: Refusal) {
        let ms: Vec<Arc<Signed<Manifest>>> = self.tenants[&tag]
            .code
            .manifests
            .values()
            .filter_map(|g| g.last_key_value().map(|(_, m)| m))
            .filter(|m| m.statement.blob_hash == *hash)
            .cloned()
            .collect();
        for m in ms {
            self.refuse(tag, &m, reason.clone());
        }
    }

    /// A peer asks for a chunk of a blob.
    pub(super) fn on_blob_want(&mut self, tag: TenantTag, from: Peer, request: u64, hash: [u8; 32], chunk: u32) {
        let chunk_bytes = self.config.code.blob_chunk_bytes;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let Some(blob) = t.code.blobs.get(&hash) else {
            self.seal_body_to(tag, from, &Body::BlobMissing { request, hash });
            return;
        };
        let start = chunk as usize * chunk_bytes;
        if start >= blob.len().max(1) {
            return;
        }
        let end = (start + chunk_bytes).min(blob.len());
        self.stats.blob_bytes_served += (end - start) as u64;
        self.seal_body_to(
            tag,
            from,
            &Body::BlobChunk {
                request,
                hash,
                chunk,
                size: blob.len() as u64,
                data: &blob[start..end],
            },
        );
    }

    /// A chunk of a blob being fetched from `from`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_blob_chunk(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        from: Peer,
        request: u64,
        hash: [u8; 32],
        chunk: u32,
        size: u64,
        data: &[u8],
    ) {
        let cfg = self.code_settings();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let Some(tr) = t.code.transfers.get_mut(&hash) else {
            self.stats.sync_ignored += 1;
            return;
        };
        // Only the answer to the request outstanding with that peer.
        if tr.peer != Some(from) || tr.request != request {
            self.stats.sync_ignored += 1;
            return;
        }
        let rtt = now.0.saturating_sub(tr.sent_at.0);
        match tr.accept(&hash, chunk, size, data, cfg.blob_chunk_bytes) {
            Ok(None) => {
                t.code.fetch_answered(rtt);
                let timeout = t.code.fetch_timeout(cfg.fetch_timeout_ms);
                let tr = t.code.transfers.get_mut(&hash).expect("transfer present");
                tr.deadline = now.plus_ms(timeout);
                tr.sent_at = now;
                let next = tr.next_chunk;
                let request = self.rng.next_u64();
                let t = self.tenants.get_mut(&tag).expect("tenant present");
                t.code.transfers.get_mut(&hash).expect("transfer present").request = request;
                self.seal_body_to(
                    tag,
                    from,
                    &Body::BlobWant {
                        request,
                        hash,
                        chunk: next,
                    },
                );
            }
            Ok(Some(blob)) => {
                t.code.transfers.remove(&hash);
                t.code.fetch_answered(rtt);
                self.stats.blobs_fetched += 1;
                // The transfer checked the bytes against `hash`.
                let blob: Arc<[u8]> = match &self.config.shared {
                    Some(s) => s.intern_blob(&hash, blob),
                    None => blob.into(),
                };
                // When the store has no room beside installed code, the bytes are handed to
                // the install step directly (it unpins the code they replace).
                let _ = t.code.blobs.insert(blob.clone());
                t.code.wake(now);
                // The keys whose manifests name the blob install now; the next pass looks
                // at every key.
                let keys: BTreeSet<CodeKey> = t
                    .code
                    .manifests
                    .iter()
                    .filter(|(_, gens)| gens.values().any(|m| m.statement.blob_hash == hash))
                    .map(|((key, _), _)| *key)
                    .collect();
                self.run_installs_with(now, tag, Scope::Keys(&keys), Some((&hash, &blob)));
            }
            Err(e) => {
                // Move on to the next peer at once; this one stays in the tried set.
                tr.peer = None;
                tr.restart();
                let reason = match e {
                    ChunkError::Hash => Refusal::BlobHashMismatch,
                    ChunkError::Size | ChunkError::Framing => Refusal::BlobSizeMismatch,
                };
                self.refuse_blob(tag, &hash, reason);
                self.run_transfers(now, tag);
            }
        }
    }

    /// A peer does not hold a blob asked for: ask the next one.
    pub(super) fn on_blob_missing(&mut self, now: Timestamp, tag: TenantTag, from: Peer, request: u64, hash: [u8; 32]) {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if let Some(tr) = t.code.transfers.get_mut(&hash)
            && tr.peer == Some(from)
            && tr.request == request
        {
            tr.peer = None;
            let rtt = now.0.saturating_sub(tr.sent_at.0);
            t.code.fetch_answered(rtt);
            self.run_transfers(now, tag);
        }
    }

    /// Records that installed code of `key` deoptimized because `assumption` broke (a
    /// feedback counter, signed and published like any other). When deopts of one
    /// assumption come from `retire_min_nodes` distinct nodes, the code is retired
    /// everywhere and recompiled without it.
    pub fn record_deopt(
        &mut self,
        tenant: &TenantId,
        key: CodeKey,
        assumption: &Assumption,
    ) -> Result<(), EngineError> {
        let t = self.tenant_mut(tenant)?;
        let ck = CounterKey {
            method: key.method,
            tier: key.tier,
            counter: Counter::AssumptionBroken { id: assumption.id() },
        };
        *t.base.entry((key.function, ck)).or_insert(0) += 1;
        Ok(())
    }

    /// Records `count` runs of generation `generation` of `key`'s code, each taking about
    /// `micros` (feedback: invocations and a power-of-two latency bucket per generation).
    pub fn record_code_runs(
        &mut self,
        tenant: &TenantId,
        key: CodeKey,
        generation: u32,
        micros: u64,
        count: u64,
    ) -> Result<(), EngineError> {
        let t = self.tenant_mut(tenant)?;
        let bucket = rules::latency_bucket(micros);
        for counter in [
            Counter::CodeInvocations { generation },
            Counter::CodeLatency { generation, bucket },
        ] {
            let ck = CounterKey {
                method: key.method,
                tier: key.tier,
                counter,
            };
            *t.base.entry((key.function, ck)).or_insert(0) += count;
        }
        Ok(())
    }

    /// Sets the host's check of assumptions for a tenant (default: every assumption holds).
    pub fn set_assumption_check(
        &mut self,
        tenant: &TenantId,
        check: Box<dyn AssumptionCheck>,
    ) -> Result<(), EngineError> {
        let t = self.tenant_mut(tenant)?;
        t.code.checker = Checker(check);
        // Installed code is re-checked at the next pass.
        t.code.wake(Timestamp(0));
        Ok(())
    }

    /// Sets the thresholds and contributor requirement of one function (default: the
    /// engine's [`Config::thresholds`](super::Config::thresholds) and
    /// [`CodeConfig::min_contributors`](crate::code::CodeConfig::min_contributors)).
    pub fn set_function_policy(
        &mut self,
        tenant: &TenantId,
        function: FunctionId,
        policy: FunctionPolicy,
    ) -> Result<(), EngineError> {
        let t = self.tenant_mut(tenant)?;
        t.code.policies.insert(function, policy);
        Ok(())
    }

    /// Asks for code of `key` whatever the thresholds: its election opens at the next code
    /// pass, like a key whose threshold fired. For code every node needs before it has run
    /// anything, such as a portable tier-0 artifact of a function just deployed. Every
    /// engine that should take part in the election declares it alike (a top-ranked member
    /// that never declares it delays the compile by one lease). Not kept in snapshots:
    /// declare it again after a restore.
    pub fn want_code(&mut self, now: Timestamp, tenant: &TenantId, key: CodeKey) -> Result<(), EngineError> {
        if key.tier > Tier::MAX {
            return Err(EngineError::TierOutOfRange(key.tier.0));
        }
        let t = self.tenant_mut(tenant)?;
        if t.code.wanted.insert(key) {
            t.code.wake_key(key, now);
        }
        Ok(())
    }

    /// Sets the load this node announces in its presence (thousandths of capacity).
    pub fn set_load(&mut self, load: u16) {
        self.load = load;
    }

    /// For a scheduler: the live members of a tenant and what code of `function` each has
    /// installed (from their presence), best tier per method; members with nothing of it
    /// installed are listed with an empty list. Ordered by node key.
    pub fn hot_members(&self, now: Timestamp, tenant: &TenantId, function: &FunctionId) -> Vec<MemberCode> {
        let Some(t) = self.tenant(tenant) else {
            return Vec::new();
        };
        t.code
            .live(now)
            .map(|(node, m)| {
                let p = &m.presence.statement;
                let mut best: BTreeMap<MethodId, Tier> = BTreeMap::new();
                for (fi, method, tier) in &p.installed {
                    if p.functions.get(*fi as usize) == Some(function) {
                        let e = best.entry(*method).or_insert(*tier);
                        *e = (*e).max(*tier);
                    }
                }
                MemberCode {
                    node: *node,
                    load: p.load,
                    heard_at: m.heard_at,
                    installed: best.into_iter().collect(),
                }
            })
            .collect()
    }

    /// Code installed here for a tenant: (function, method, tier) -> (class, generation).
    pub fn installed(&self, tenant: &TenantId) -> BTreeMap<(FunctionId, MethodId, Tier), (ClassId, u32)> {
        self.tenant(tenant)
            .map(|t| {
                t.code
                    .installed
                    .iter()
                    .map(|(k, i)| (*k, (i.class, i.generation)))
                    .collect()
            })
            .unwrap_or_default()
    }
}
