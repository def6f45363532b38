//! The sans-IO protocol engine.

mod code_state;
mod config;
mod election;
mod events;
mod incoming;
mod ingest;
mod install;
mod positions;
mod predict;
mod publish;
mod shared;
mod snapshot;
mod statements;
mod stats;
mod sync;
mod tenant;

pub use code_state::{CompileUnit, FunctionPolicy};
pub use config::{Config, ConfigError, Thresholds};
pub use events::{DropReason, Event};
pub use incoming::{Incoming, MessageHash};
pub use shared::SharedChecks;
pub(crate) use shared::shared_key;
pub use snapshot::SnapshotError;
pub use stats::{Accepted, Stats};
pub use sync::CATCH_UP_ROUNDS;

use crate::code::Refusal;
use crate::crypto::{SeenCache, SigError};
use crate::ids::{FunctionId, MethodKey, NodeKey, Peer, TenantTag, Tier, Timestamp, TopicId};
use crate::profile::{Evidence, ProfileView};
use crate::recorder::Recorder;
use crate::rng::SplitMix64;
use crate::tenancy::{CertError, SignedRevocation, TenantCredentials, TenantId};
use crate::wire::{Body, Envelope, WireError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tenant::TenantState;

/// Something the driver must do or the host should know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Publish `bytes` on gossip topic `topic`.
    Publish {
        /// The tenant's topic.
        topic: TopicId,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Send `bytes` to one peer, point to point (anti-entropy).
    Send {
        /// The peer handle the driver gave the engine.
        peer: Peer,
        /// The message.
        bytes: Vec<u8>,
    },
    /// An event for the host.
    Event(Event),
}

/// Why a message (or part of it) was not accepted. The engine's state is unchanged by the
/// rejected part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Undecodable, oversize, not for a tenant here, wrong topic, unauthentic ciphertext...
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Certificate problem (wrong root, expired, revoked, missing role).
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Signature problem (forged, weak key, small-order R).
    #[error(transparent)]
    Signature(#[from] SigError),
    /// The signer was caught equivocating and is no longer accepted.
    #[error("signer is banned for equivocation")]
    Banned,
    /// The delta was signed too far in the future.
    #[error("delta signed in the future")]
    FromTheFuture,
    /// The delta is about another deployment of a function whose current deployment is known.
    #[error("delta for another deployment of the function")]
    OtherDeployment,
    /// A state bound would be exceeded (functions per tenant, incarnations per node).
    #[error("state limit reached: {0}")]
    Limit(&'static str),
    /// The delta is about a function dropped as idle, and is not newer than what the
    /// function held when it was dropped.
    #[error("delta for an expired function")]
    ExpiredFunction,
    /// The delta conflicts with one already held (the signer equivocated).
    #[error("equivocation detected")]
    Equivocation,
    /// A code statement (presence, claim) was refused.
    #[error("code statement refused: {0}")]
    Code(Refusal),
}

impl Rejection {
    /// A short stable name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Wire(WireError::Oversize { .. }) => "oversize",
            Rejection::Wire(WireError::UnknownVersion(_)) => "unknown_version",
            Rejection::Wire(WireError::UnknownTenant) => "unknown_tenant",
            Rejection::Wire(WireError::WrongTopic) => "wrong_topic",
            Rejection::Wire(WireError::Unauthentic) => "unauthentic",
            Rejection::Wire(WireError::UnknownEpoch(_)) => "unknown_epoch",
            Rejection::Wire(_) => "malformed",
            Rejection::Cert(CertError::WrongRoot) => "wrong_root",
            Rejection::Cert(CertError::Expired) => "cert_expired",
            Rejection::Cert(CertError::Revoked) => "revoked",
            Rejection::Cert(CertError::MissingRole) => "missing_role",
            Rejection::Cert(_) => "cert_signature",
            Rejection::Signature(SigError::WeakKey) => "weak_key",
            Rejection::Signature(SigError::SmallOrderR) => "small_order_r",
            Rejection::Signature(_) => "bad_signature",
            Rejection::Banned => "banned",
            Rejection::FromTheFuture => "from_future",
            Rejection::OtherDeployment => "other_deployment",
            Rejection::Limit(_) => "limit",
            Rejection::ExpiredFunction => "expired_function",
            Rejection::Equivocation => "equivocation",
            Rejection::Code(r) => r.kind(),
        }
    }
}

/// A message opened by [`Engine::open`]: its tenant, plaintext (shared with the engines
/// of the process that opened the same message) and hash.
type Opened = (TenantTag, Arc<[u8]>, [u8; 32]);

/// The Ignite protocol engine of one node, sans-IO.
///
/// It holds the node's profile state for every tenant it serves, signs and seals its own
/// counters, verifies and merges those of others, and runs anti-entropy. It never reads a
/// clock, a socket or a global RNG: time is passed in, randomness comes from
/// [`Config::seed`], and everything it wants done is returned by [`Engine::poll_output`].
/// Same inputs in the same order give the same outputs.
///
/// # Calling order
/// 1. [`Engine::new`], then [`Engine::join_tenant`] for each tenant; record through the
///    returned [`Recorder`] from any thread.
/// 2. Feed inputs as they happen: [`Engine::handle_message`] for every message received
///    on a tenant topic or point to point, [`Engine::peer_joined`]/[`Engine::peer_left`]
///    when a peer subscribes to or leaves a tenant topic.
/// 3. After any input, drain [`Engine::poll_output`] until it returns `None`.
/// 4. Arm a timer for [`Engine::poll_timeout`]; when it fires call
///    [`Engine::handle_timeout`] with the current time and drain outputs again.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    incarnation: crate::ids::Incarnation,
    tenants: BTreeMap<TenantTag, TenantState>,
    by_topic: BTreeMap<TopicId, TenantTag>,
    outputs: VecDeque<Output>,
    seen_messages: SeenCache,
    /// Ids of `config.code.hardware`, in the same order (computed once).
    class_ids: Vec<crate::code::ClassId>,
    seen_deltas: SeenCache,
    verified_certs: SeenCache,
    rng: SplitMix64,
    stats: Stats,
    next_compile_id: u64,
    load: u16,
    /// Restored from a snapshot and not yet given the time: the first input sets each
    /// tenant's join time (no claims before the members' presences are heard again).
    restored: bool,
}

/// Errors of the engine's host-facing API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tenant is not served by this engine.
    #[error("tenant not served by this engine")]
    UnknownTenant,
    /// The tenant is already served.
    #[error("tenant already joined")]
    AlreadyJoined,
    /// The node's own certificate is not valid.
    #[error("own certificate invalid: {0}")]
    OwnCert(CertError),
    /// New credentials change the topic secret, which would move the tenant to another
    /// topic: leave and join instead.
    #[error("credentials change the topic secret")]
    TopicSecretChanged,
    /// The recorder could not be created.
    #[error(transparent)]
    Recorder(#[from] crate::recorder::RecorderError),
    /// A tier above [`Tier::MAX`](crate::ids::Tier::MAX).
    #[error("tier {0} is above the highest tier")]
    TierOutOfRange(u8),
}

impl Engine {
    /// A copy of the code configuration without its class list (cheap: hot paths need the
    /// settings, and the classes through [`Engine::own_class`]).
    pub(crate) fn code_settings(&self) -> crate::code::CodeConfig {
        crate::code::CodeConfig::clone_settings(&self.config.code)
    }

    /// This node's class with id `id` (one of `config.code.hardware`).
    pub(crate) fn own_class(&self, id: &crate::code::ClassId) -> Option<&crate::code::HardwareClass> {
        let i = self.class_ids.iter().position(|c| c == id)?;
        self.config.code.hardware.get(i)
    }

    /// A new engine for a node in `incarnation`. Use a new incarnation whenever the node
    /// starts without its previous state (e.g. the current time in ms, or a random number).
    pub fn new(config: Config, incarnation: crate::ids::Incarnation) -> Result<Engine, EngineError> {
        config.validate()?;
        Ok(Engine {
            rng: SplitMix64::new(config.seed ^ incarnation.0.rotate_left(17)),
            seen_messages: SeenCache::new(config.seen_cache),
            class_ids: config.code.hardware.iter().map(|c| c.id()).collect(),
            seen_deltas: SeenCache::new(config.seen_cache),
            verified_certs: SeenCache::new(config.seen_cache),
            config,
            incarnation,
            tenants: BTreeMap::new(),
            by_topic: BTreeMap::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            next_compile_id: 0,
            load: 0,
            restored: false,
        })
    }

    /// After a restore, the first input with a time counts as (re)joining every tenant.
    fn settle_restore(&mut self, now: Timestamp) {
        if std::mem::take(&mut self.restored) {
            for t in self.tenants.values_mut() {
                t.code.joined_at = now;
                t.code.roster_known = false;
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> crate::ids::Incarnation {
        self.incarnation
    }

    /// Starts serving a tenant. Returns the recorder the host records this tenant's
    /// counters through, and the topic to subscribe to.
    pub fn join_tenant(
        &mut self,
        now: Timestamp,
        creds: TenantCredentials,
    ) -> Result<(Recorder, TopicId), EngineError> {
        creds
            .cert()
            .verify(&creds.tenant(), now)
            .map_err(EngineError::OwnCert)?;
        let state = TenantState::new(&self.config, creds, now)?;
        let tag = state.sealer.tag();
        if self.tenants.contains_key(&tag) {
            return Err(EngineError::AlreadyJoined);
        }
        let topic = state.sealer.topic().clone();
        let recorder = state.recorder.clone();
        self.by_topic.insert(topic.clone(), tag);
        self.tenants.insert(tag, state);
        Ok((recorder, topic))
    }

    /// Replaces a tenant's credentials (certificate renewal, group-key rotation). The tenant
    /// must be the same; the node key may change only with a new incarnation, so it must not.
    /// Messages are sealed under the new current epoch from now on; older epochs still held
    /// by the credentials keep opening.
    pub fn update_credentials(&mut self, now: Timestamp, creds: TenantCredentials) -> Result<(), EngineError> {
        creds
            .cert()
            .verify(&creds.tenant(), now)
            .map_err(EngineError::OwnCert)?;
        let t = self.tenant_mut(&creds.tenant())?;
        if t.node != creds.node() {
            return Err(EngineError::OwnCert(CertError::WrongRoot));
        }
        let sealer = crate::wire::Sealer::new(creds.secrets());
        if sealer.tag() != t.sealer.tag() {
            return Err(EngineError::TopicSecretChanged);
        }
        t.certs.insert(creds.node(), *creds.cert());
        t.sealer = sealer;
        t.creds = creds;
        Ok(())
    }

    /// Stops serving a tenant and forgets its state.
    pub fn leave_tenant(&mut self, tenant: &TenantId) -> Result<(), EngineError> {
        let tag = self.tag_of(tenant).ok_or(EngineError::UnknownTenant)?;
        if let Some(t) = self.tenants.remove(&tag) {
            self.by_topic.remove(t.sealer.topic());
        }
        Ok(())
    }

    /// Tenants served, with their topics.
    pub fn tenants(&self) -> impl Iterator<Item = (TenantId, &TopicId)> {
        self.tenants.values().map(|t| (t.tenant, t.sealer.topic()))
    }

    fn tag_of(&self, tenant: &TenantId) -> Option<TenantTag> {
        self.tenants
            .iter()
            .find(|(_, t)| t.tenant == *tenant)
            .map(|(tag, _)| *tag)
    }

    fn tenant_mut(&mut self, tenant: &TenantId) -> Result<&mut TenantState, EngineError> {
        let tag = self.tag_of(tenant).ok_or(EngineError::UnknownTenant)?;
        Ok(self.tenants.get_mut(&tag).expect("tag present"))
    }

    fn tenant(&self, tenant: &TenantId) -> Option<&TenantState> {
        self.tenants.values().find(|t| t.tenant == *tenant)
    }

    /// The recorder of a tenant.
    pub fn recorder(&self, tenant: &TenantId) -> Option<Recorder> {
        self.tenant(tenant).map(|t| t.recorder.clone())
    }

    /// The merged profile of a function, if any counts are known for it.
    pub fn profile(&self, tenant: &TenantId, function: &FunctionId) -> Option<ProfileView<'_>> {
        let t = self.tenant(tenant)?;
        t.functions.get(function).map(|s| ProfileView::new(*function, s))
    }

    /// Functions with state in a tenant.
    pub fn functions(&self, tenant: &TenantId) -> Vec<FunctionId> {
        self.tenant(tenant)
            .map(|t| t.functions.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Evidence of equivocation collected in a tenant.
    pub fn evidence(&self, tenant: &TenantId) -> &[Evidence] {
        self.tenant(tenant).map(|t| t.evidence.as_slice()).unwrap_or(&[])
    }

    /// Nodes no longer accepted in a tenant because they equivocated.
    pub fn banned(&self, tenant: &TenantId) -> Vec<NodeKey> {
        self.tenant(tenant)
            .map(|t| t.banned.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Work counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Approximate heap bytes of the profile state of every tenant.
    pub fn state_bytes(&self) -> usize {
        self.tenants.values().map(|t| t.state_bytes()).sum()
    }

    /// Declares that code of `tier` is now current for a method (code the host compiled
    /// or loaded itself): counters of lower tiers of the method are published one last time
    /// at the next publication, which carries what was counted until then, and no longer
    /// after it (feedback counters continue).
    pub fn set_code_current(&mut self, tenant: &TenantId, method: MethodKey, tier: Tier) -> Result<(), EngineError> {
        let t = self.tenant_mut(tenant)?;
        t.compiled_pending
            .push((method.function, method.method, tier, tenant::Declared::Host));
        Ok(())
    }

    /// Declares the current deployment of a function name: state of every other deployment
    /// of that name is dropped, and deltas about them are refused from now on.
    pub fn set_deployment(&mut self, tenant: &TenantId, function: FunctionId) -> Result<(), EngineError> {
        let max_tombstones = self.config.max_functions_per_tenant;
        let t = self.tenant_mut(tenant)?;
        t.deployments.insert(function.name, function.code);
        let stale: Vec<FunctionId> = t
            .functions
            .keys()
            .filter(|f| f.name == function.name && f.code != function.code)
            .copied()
            .collect();
        let tenant_id = t.tenant;
        let mut events = Vec::new();
        for f in stale {
            t.drop_function(&f, DropReason::Superseded, max_tombstones);
            events.push(Event::FunctionDropped {
                tenant: tenant_id,
                function: f,
                reason: DropReason::Superseded,
            });
        }
        self.outputs.extend(events.into_iter().map(Output::Event));
        Ok(())
    }

    /// Applies a root-signed revocation (from the tenant's administrator) and forwards it.
    pub fn revoke(&mut self, now: Timestamp, rev: SignedRevocation) -> Result<(), Rejection> {
        let tag = self
            .tag_of(&rev.revocation.tenant)
            .ok_or(Rejection::Wire(WireError::UnknownTenant))?;
        self.apply_revocations(tag, &[rev])?;
        let t = &self.tenants[&tag];
        let body = Body::Revocations(vec![rev]);
        let bytes = t.sealer.seal(&body.encode());
        let topic = t.sealer.topic().clone();
        tracing::info!(at = now.as_millis(), node = ?rev.revocation.node, "revocation applied");
        self.push_publish(topic, bytes);
        Ok(())
    }

    /// A peer subscribed to a tenant topic: it becomes a candidate for anti-entropy.
    pub fn peer_joined(&mut self, peer: Peer, topic: &TopicId) {
        if let Some(tag) = self.by_topic.get(topic)
            && let Some(t) = self.tenants.get_mut(tag)
        {
            t.peers.insert(peer);
        }
    }

    /// A peer left a tenant topic (or disconnected).
    pub fn peer_left(&mut self, peer: Peer, topic: &TopicId) {
        if let Some(tag) = self.by_topic.get(topic)
            && let Some(t) = self.tenants.get_mut(tag)
        {
            t.peers.remove(&peer);
        }
    }

    /// Handles bytes received from `from`, on gossip `topic` or point to point (`None`).
    ///
    /// Returns what was applied, or why (part of) the message was rejected. Valid signed
    /// deltas inside a message that also holds invalid ones are applied: each is signed on
    /// its own. Untrusted input never panics and never changes state unless valid.
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        from: Peer,
        topic: Option<&TopicId>,
        bytes: &[u8],
    ) -> Result<Accepted, Rejection> {
        self.handle_messages(now, &[Incoming::new(from, topic, bytes)])
            .pop()
            .expect("one result per message")
    }

    /// Handles several messages that arrived together. Equivalent to calling
    /// [`Engine::handle_message`] for each in order, except that the signatures of all their
    /// new deltas are checked in one batch verification. Returns one result per message.
    pub fn handle_messages(&mut self, now: Timestamp, messages: &[Incoming<'_>]) -> Vec<Result<Accepted, Rejection>> {
        if messages.len() < 2 {
            return self.handle_batch(now, messages);
        }
        // A message repeated within the batch starts the next batch, so that it is handled
        // after its first copy took effect, as a call for it alone would be.
        let hashed: Vec<Incoming<'_>> = messages
            .iter()
            .map(|m| Incoming {
                hash: Some(m.hash.unwrap_or_else(|| MessageHash::of(m.bytes))),
                ..*m
            })
            .collect();
        let mut results = Vec::with_capacity(messages.len());
        let mut start = 0;
        while start < hashed.len() {
            let mut seen = std::collections::BTreeSet::new();
            let end = start + hashed[start..].iter().take_while(|m| seen.insert(m.hash)).count();
            results.extend(self.handle_batch(now, &hashed[start..end]));
            start = end;
        }
        results
    }

    /// [`Self::handle_messages`] for a batch in which no message is repeated.
    fn handle_batch(&mut self, now: Timestamp, messages: &[Incoming<'_>]) -> Vec<Result<Accepted, Rejection>> {
        let _span = tracing::debug_span!("handle_messages", count = messages.len()).entered();
        self.settle_restore(now);
        self.stats.messages_in += messages.len() as u64;
        let mut results: Vec<Option<Result<Accepted, Rejection>>> = Vec::with_capacity(messages.len());
        let mut opened: Vec<(usize, TenantTag, Arc<[u8]>)> = Vec::new();
        let mut hashes: Vec<Option<[u8; 32]>> = vec![None; messages.len()];
        for (i, m) in messages.iter().enumerate() {
            match self.open(m) {
                Ok(Some((tag, plain, hash))) => {
                    opened.push((i, tag, plain));
                    hashes[i] = Some(hash);
                    results.push(None);
                }
                Ok(None) => results.push(Some(Ok(Accepted {
                    duplicate_message: true,
                    ..Accepted::default()
                }))),
                Err(e) => results.push(Some(Err(e))),
            }
        }
        // Consecutive delta batches are verified together; a control message (revocation,
        // anti-entropy) first flushes the batches before it, so the order of effects is the
        // order of the messages.
        // Every body is decoded before any is handled, as a malformed one is refused
        // without effect; a sender whose message decodes becomes an anti-entropy partner.
        let mut bodies = Vec::with_capacity(opened.len());
        for (i, tag, plain) in &opened {
            match Body::decode(plain, &self.config.limits) {
                Ok(body) => {
                    if let Some(t) = self.tenants.get_mut(tag) {
                        t.peers.insert(messages[*i].from);
                    }
                    bodies.push((*i, *tag, body));
                }
                Err(e) => results[*i] = Some(Err(e.into())),
            }
        }
        let mut batches = Vec::new();
        let mut batch_of = Vec::new();
        for (i, tag, body) in bodies {
            let from = messages[i].from;
            match body {
                Body::Deltas(batch) => {
                    batches.push((tag, batch));
                    batch_of.push(i);
                }
                other => {
                    // Blob transfer messages answer one request of one peer (the request id
                    // makes each unique): never remembered, so an answer ignored from the
                    // wrong peer does not shadow the same bytes from the right one.
                    if matches!(
                        other,
                        Body::BlobWant { .. } | Body::BlobChunk { .. } | Body::BlobMissing { .. }
                    ) {
                        hashes[i] = None;
                    }
                    let applied = self.ingest_batches(now, &batches);
                    for (j, r) in batch_of.drain(..).zip(applied) {
                        results[j] = Some(r);
                    }
                    batches.clear();
                    results[i] = Some(self.handle_control(now, tag, from, other));
                }
            }
        }
        let applied = self.ingest_batches(now, &batches);
        for (i, r) in batch_of.into_iter().zip(applied) {
            results[i] = Some(r);
        }
        let results: Vec<Result<Accepted, Rejection>> = results
            .into_iter()
            .map(|r| r.expect("every message has a result"))
            .collect();
        // Only a message processed without any rejection is remembered as done: a message
        // with a part refused for a reason that may pass later is processed again if resent.
        for (hash, r) in hashes.iter().zip(&results) {
            if let (Some(h), Ok(_)) = (hash, r) {
                self.seen_messages.insert(*h);
            }
        }
        for (m, r) in messages.iter().zip(&results) {
            if let Err(e) = r {
                *self.stats.rejected.entry(e.kind()).or_insert(0) += 1;
                tracing::debug!(peer = m.from.0, reason = %e, "message rejected");
            }
        }
        results
    }

    /// Checks, deduplicates and opens one message: its tenant, plaintext and hash, or `None`
    /// for an exact duplicate of a message already processed successfully.
    fn open(&mut self, m: &Incoming<'_>) -> Result<Option<Opened>, Rejection> {
        let env = Envelope::decode(m.bytes, &self.config.limits)?;
        let tag = env.tenant;
        let t = self.tenants.get(&tag).ok_or(WireError::UnknownTenant)?;
        if let Some(topic) = m.topic
            && t.sealer.topic() != topic
        {
            return Err(WireError::WrongTopic.into());
        }
        debug_assert!(
            m.hash.is_none_or(|h| h == MessageHash::of(m.bytes)),
            "Incoming::hash is not the hash of the bytes"
        );
        let msg_hash = *m.hash.unwrap_or_else(|| MessageHash::of(m.bytes)).as_bytes();
        if self.seen_messages.contains(&msg_hash) {
            self.stats.duplicate_messages += 1;
            return Ok(None);
        }
        let plain: Arc<[u8]> = match &self.config.shared {
            None => t.sealer.open(&env)?.into(),
            Some(shared) => {
                let key = shared_key(b"open", &msg_hash);
                match shared.opened(&key) {
                    Some(p) => {
                        self.stats.opens_shared += 1;
                        p
                    }
                    None => shared.open_done(key, t.sealer.open(&env)?),
                }
            }
        };
        Ok(Some((tag, plain, msg_hash)))
    }

    /// Handles a message that is not a delta batch.
    fn handle_control(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        from: Peer,
        body: Body<'_>,
    ) -> Result<Accepted, Rejection> {
        match body {
            Body::Deltas(_) => unreachable!("delta batches are ingested together"),
            Body::Revocations(revs) => self.apply_revocations(tag, &revs)?,
            Body::Evidence(evidence) => self.on_evidence(tag, *evidence)?,
            Body::SyncDigest {
                round,
                lanes_root,
                revocations,
                banned,
                code,
            } => self.on_sync_digest(tag, from, round, lanes_root, revocations, banned, code),
            Body::SyncPage {
                round,
                start,
                last,
                lanes,
            } => self.on_sync_page(now, tag, from, round, start, last, &lanes),
            Body::SyncWant { round, lanes } => self.on_sync_want(tag, from, round, &lanes),
            Body::SyncMore { round, start } => self.on_sync_more(tag, from, round, start),
            Body::Presence(p) => self.on_presence(now, tag, *p).map_err(Rejection::Code)?,
            Body::Claim(c) => self.on_claim(now, tag, *c).map_err(Rejection::Code)?,
            Body::Code {
                round,
                manifests,
                attestations,
            } => self.on_code(now, tag, from, round, manifests, attestations),
            Body::BlobWant { request, hash, chunk } => self.on_blob_want(tag, from, request, hash, chunk),
            Body::BlobChunk {
                request,
                hash,
                chunk,
                size,
                data,
            } => self.on_blob_chunk(now, tag, from, request, hash, chunk, size, data),
            Body::BlobMissing { request, hash } => self.on_blob_missing(now, tag, from, request, hash),
        }
        Ok(Accepted::default())
    }

    fn apply_revocations(&mut self, tag: TenantTag, revs: &[SignedRevocation]) -> Result<(), Rejection> {
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let mut first_err = None;
        for rev in revs {
            if let Err(e) = rev.verify(&t.tenant) {
                first_err.get_or_insert(Rejection::Cert(e));
                continue;
            }
            self.stats.signatures_verified += 1;
            if t.revocations.insert(*rev) {
                let node = rev.revocation.node;
                for f in t.functions.values_mut() {
                    f.remove_node(&node);
                }
                t.certs.remove(&node);
                self.outputs
                    .push_back(Output::Event(Event::NodeRevoked { tenant: t.tenant, node }));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Handles a timer expiry: publishes due deltas, runs anti-entropy, collects garbage.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let _span = tracing::debug_span!("handle_timeout", now = now.as_millis()).entered();
        self.settle_restore(now);
        let tags: Vec<TenantTag> = self.tenants.keys().copied().collect();
        for tag in tags {
            self.gc(now, tag);
            if self.tenants[&tag].next_publish <= now {
                self.publish(now, tag, false);
            }
            if self.tenants[&tag].next_predict <= now {
                self.predict(now, tag);
            }
            if self.tenants[&tag].next_sync <= now {
                self.start_sync(now, tag);
            }
            let code = &self.tenants[&tag].code;
            if code.next_tick <= now || code.next_presence <= now {
                self.code_pass(now, tag);
            }
        }
    }

    /// Publishes every tenant's changed counters now, settled ones included, whatever the
    /// schedule (e.g. before a graceful shutdown or a snapshot).
    pub fn flush(&mut self, now: Timestamp) {
        let tags: Vec<TenantTag> = self.tenants.keys().copied().collect();
        for tag in tags {
            self.publish(now, tag, true);
        }
    }

    /// The next time [`Engine::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.tenants
            .values()
            .map(|t| {
                t.next_publish
                    .min(t.next_predict)
                    .min(t.next_sync)
                    .min(t.next_gc)
                    .min(t.code.next_tick)
                    .min(t.code.next_presence)
            })
            .min()
    }

    /// The next thing to do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn push_publish(&mut self, topic: TopicId, bytes: Vec<u8>) {
        self.stats.published_messages += 1;
        self.stats.published_bytes += bytes.len() as u64;
        self.outputs.push_back(Output::Publish { topic, bytes });
    }

    fn push_send(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.stats.sent_messages += 1;
        self.stats.sent_bytes += bytes.len() as u64;
        self.outputs.push_back(Output::Send { peer, bytes });
    }

    fn gc(&mut self, now: Timestamp, tag: TenantTag) {
        let ttl = self.config.function_ttl_ms;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if t.next_gc > now {
            return;
        }
        t.next_gc = now.plus_ms((ttl / 4).max(1_000));
        let expired: Vec<FunctionId> = t
            .functions
            .iter()
            .filter(|(_, s)| now.millis_since(s.last_seen) > ttl)
            .map(|(f, _)| *f)
            .collect();
        let tenant = t.tenant;
        let max_tombstones = self.config.max_functions_per_tenant;
        for f in expired {
            t.drop_function(&f, DropReason::Expired, max_tombstones);
            self.outputs.push_back(Output::Event(Event::FunctionDropped {
                tenant,
                function: f,
                reason: DropReason::Expired,
            }));
        }
        let window = self.config.member_window_ms;
        t.activity.retain(|_, seen| now.millis_since(*seen) <= window);
    }
}

/// Re-exported for the thresholds check.
pub(crate) fn tier_threshold(th: &Thresholds, tier: Tier) -> Option<u64> {
    match tier.0 {
        1 => Some(th.tier1),
        2 => Some(th.tier2),
        _ => None,
    }
}
