//! Receiving and publishing signed code statements: presence, claims, manifests,
//! attestations; and their anti-entropy.

use super::code_state::{Member, expired};
use super::{Engine, Event, Output};
use crate::code::{Attestation, Claim, Manifest, Presence, Refusal, Signed, Statement, rules};
use crate::ids::{Peer, TenantTag, Timestamp};
use crate::tenancy::{CertError, Roles, SignedCert};
use crate::wire::Body;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Encoded size reserved for framing when packing statements into one message.
const CODE_OVERHEAD: usize = 512;

impl Engine {
    /// Checks the certificate of a statement's signer: this tenant's root, not revoked or
    /// banned, valid at `at`, holding `role`. Signature checks are cached.
    fn check_statement_cert(
        &mut self,
        tag: TenantTag,
        cert: &SignedCert,
        at: Timestamp,
        role: Roles,
    ) -> Result<(), Refusal> {
        let t = &self.tenants[&tag];
        if cert.cert.tenant != t.tenant {
            return Err(Refusal::WrongTenant);
        }
        if t.revocations.contains(&cert.cert.node) {
            return Err(Refusal::Unauthentic(CertError::Revoked.to_string()));
        }
        if t.banned.contains(&cert.cert.node) {
            return Err(Refusal::Unauthentic("signer banned for equivocation".into()));
        }
        cert.check_time(at).map_err(|e| Refusal::Unauthentic(e.to_string()))?;
        if !cert.cert.roles.contains(role) {
            return Err(Refusal::Unauthentic(CertError::MissingRole.to_string()));
        }
        let h = cert.hash();
        if !self.verified_certs.contains(&h) {
            let key = super::shared_key(b"cert", &h);
            if self.config.shared.as_ref().is_some_and(|s| s.is_verified(&key)) {
                self.stats.signatures_shared += 1;
            } else {
                cert.verify_signature(&t.tenant)
                    .map_err(|e| Refusal::Unauthentic(e.to_string()))?;
                self.stats.signatures_verified += 1;
                if let Some(s) = &self.config.shared {
                    s.verified(key);
                }
            }
            self.verified_certs.insert(h);
        }
        Ok(())
    }

    /// Checks tenant, bounds, certificate and signature of a statement (cached by hash);
    /// returns its hash.
    fn check_statement<T: Statement>(
        &mut self,
        tag: TenantTag,
        s: &Signed<T>,
        at: Timestamp,
        role: Roles,
    ) -> Result<[u8; 32], Refusal> {
        self.check_statement_hashed(tag, s, None, at, role)
    }

    /// [`Self::check_statement`] with the statement's hash when it is known already.
    fn check_statement_hashed<T: Statement>(
        &mut self,
        tag: TenantTag,
        s: &Signed<T>,
        hash: Option<[u8; 32]>,
        at: Timestamp,
        role: Roles,
    ) -> Result<[u8; 32], Refusal> {
        if *s.statement.tenant() != self.tenants[&tag].tenant {
            return Err(Refusal::WrongTenant);
        }
        s.statement
            .check_bounds(&self.config.code.limits)
            .map_err(Refusal::Invalid)?;
        self.check_statement_cert(tag, &s.cert, at, role)?;
        let h = hash.unwrap_or_else(|| s.hash());
        if !self.seen_deltas.contains(&h) {
            let key = super::shared_key(b"statement", &h);
            if self.config.shared.as_ref().is_some_and(|c| c.is_verified(&key)) {
                self.stats.signatures_shared += 1;
            } else {
                s.verify_signature().map_err(|e| Refusal::Unauthentic(e.to_string()))?;
                self.stats.signatures_verified += 1;
                if let Some(c) = &self.config.shared {
                    c.verified(key);
                }
            }
            self.seen_deltas.insert(h);
        }
        Ok(h)
    }

    /// A presence from a member: the newest (by seq) of each node is kept.
    pub(super) fn on_presence(&mut self, now: Timestamp, tag: TenantTag, p: Signed<Presence>) -> Result<(), Refusal> {
        // Another engine of the process may have hashed the same presence already.
        let known = self.config.shared.as_ref().and_then(|c| c.presence_hash(&p));
        let hash = self.check_statement_hashed(tag, &p, known, now, Roles(0))?;
        let max_members = self.config.code.max_members;
        // A sender may announce a longer validity in a large fleet; capped so that a dead
        // node leaves the ranking within 64 TTLs whatever it claimed.
        let valid_ms = p
            .statement
            .valid_ms
            .min(self.config.code.presence_ttl_ms.saturating_mul(64));
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let node = p.statement.node;
        match t.code.members.get(&node) {
            Some(m) if m.presence.statement.seq >= p.statement.seq => return Ok(()),
            None if t.code.members.len() >= max_members => return Err(Refusal::Invalid("members per tenant")),
            _ => {}
        }
        if t.code
            .members
            .get(&node)
            .is_none_or(|m| m.presence.statement.classes != p.statement.classes)
        {
            // A new member or new classes: elections may be due for other classes.
            t.code.dirty = true;
        }
        let presence = match &self.config.shared {
            Some(c) => c.intern_presence(&hash, p),
            None => Arc::new(p),
        };
        t.code.put_member(
            node,
            Member {
                presence,
                heard_at: now,
                live_until: now.plus_ms(valid_ms),
            },
            now,
        );
        Ok(())
    }

    /// A compile claim (or release) from a member with the compile role.
    pub(super) fn on_claim(&mut self, now: Timestamp, tag: TenantTag, c: Signed<Claim>) -> Result<(), Refusal> {
        self.check_statement(tag, &c, now, Roles::COMPILE)?;
        let keep_ms = self.claim_keep_ms();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let election = crate::code::Election {
            key: c.statement.key,
            class: c.statement.class,
            generation: c.statement.generation,
        };
        let slot = (election, c.statement.node);
        if t.code
            .claims
            .get(&slot)
            .is_some_and(|old| old.statement.issued_at >= c.statement.issued_at)
        {
            return Ok(());
        }
        // Claims are bounded by members times open elections; expired ones are pruned
        // every pass, and a flood beyond this bound is refused.
        if !t.code.claims.contains_key(&slot) && t.code.claims.len() >= 4 * self.config.code.max_members {
            return Err(Refusal::Invalid("claims per tenant"));
        }
        t.code.put_claim(slot, c, keep_ms);
        t.code.wake_key(election.key, now);
        Ok(())
    }

    /// Reports a refusal about a manifest once.
    pub(super) fn refuse(&mut self, tag: TenantTag, m: &Signed<Manifest>, reason: Refusal) {
        let kind = reason.kind();
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        if t.code.reported.len() > 1 << 16 {
            t.code.reported.clear();
        }
        if !t.code.reported.insert((m.hash(), kind)) {
            return;
        }
        *self.stats.refused.entry(kind).or_insert(0) += 1;
        tracing::info!(reason = %reason, generation = m.statement.generation, "code refused");
        self.outputs.push_back(Output::Event(Event::Refused {
            tenant: t.tenant,
            key: m.statement.key,
            class: m.statement.class,
            generation: m.statement.generation,
            reason,
        }));
    }

    /// Takes in one manifest. Returns whether it became the current one of its key and class.
    pub(super) fn accept_manifest(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        m: Signed<Manifest>,
        from: Option<Peer>,
    ) -> Result<bool, Refusal> {
        let skew = self.config.max_clock_skew_ms;
        if m.statement.created_at > now.plus_ms(skew) {
            return Err(Refusal::Invalid("manifest created in the future"));
        }
        // The certificate must have been valid when the manifest was signed (so that code
        // outlives a renewed certificate); revocation applies whenever it comes.
        let hash = self.check_statement(tag, &m, m.statement.created_at, Roles::COMPILE)?;
        let cfg = &self.config.code;
        let (max_blob, max_keys) = (cfg.max_blob_bytes, cfg.max_manifest_keys);
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let s = &m.statement;
        if let Some(code) = t.deployments.get(&s.key.function.name)
            && *code != s.key.function.code
        {
            return Err(Refusal::OtherDeployment);
        }
        if s.blob_size > max_blob {
            return Err(Refusal::Oversize {
                size: s.blob_size,
                max: max_blob,
            });
        }
        if expired(s, now, self.config.code.manifest_ttl_ms) {
            return Err(Refusal::Expired);
        }
        let slot = (s.key, s.class);
        if let Some(cur) = t.code.current(&s.key, &s.class) {
            if cur.statement.generation > s.generation {
                return Err(Refusal::OlderGeneration {
                    got: s.generation,
                    current: cur.statement.generation,
                });
            }
        } else if !t.code.manifests.contains_key(&slot) && t.code.manifests.len() >= max_keys {
            return Err(Refusal::Invalid("manifest keys per tenant"));
        }
        if let Some(p) = from {
            let hints = t.code.sources.entry(s.blob_hash).or_default();
            if !hints.contains(&p) && hints.len() < 8 {
                hints.push(p);
            }
        }
        let gens = t.code.manifests.entry(slot).or_default();
        if let Some(held) = gens.get(&s.generation)
            && rules::compare(&m, held) != std::cmp::Ordering::Greater
        {
            return Ok(false);
        }
        t.code.digest_memo = None;
        let generation = s.generation;
        let m = match &self.config.shared {
            Some(c) => c.intern_manifest(&hash, m),
            None => Arc::new(m),
        };
        if let Some(old) = gens.insert(generation, m) {
            t.code.by_hash.remove(&old.hash());
        }
        t.code.by_hash.insert(hash, (slot.0, slot.1, generation));
        // Keep the current generation and the one before it (for re-promotion).
        let stale: Vec<u32> = gens.keys().copied().filter(|g| *g + 1 < generation).collect();
        for g in stale {
            if let Some(old) = gens.remove(&g) {
                let h = old.hash();
                t.code.by_hash.remove(&h);
                t.code.attestations.remove(&h);
            }
        }
        let is_current = gens.last_key_value().is_some_and(|(g, _)| *g == generation);
        t.code.wake_key(slot.0, now);
        Ok(is_current)
    }

    /// An attestation from a compile-capable member.
    pub(super) fn accept_attestation(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        a: Signed<Attestation>,
    ) -> Result<(), Refusal> {
        self.check_statement(tag, &a, now, Roles::COMPILE)?;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        let s = &a.statement;
        // Only attestations of a held manifest are kept (bounded by manifests x members).
        let Some((key, class, generation)) = t.code.by_hash.get(&s.manifest).copied() else {
            return Ok(());
        };
        if (key, class, generation) != (s.key, s.class, s.generation) {
            return Err(Refusal::Invalid("attestation does not match its manifest"));
        }
        if t.code
            .attestations
            .get(&s.manifest)
            .is_some_and(|e| e.contains_key(&s.attester))
        {
            return Ok(());
        }
        let expected = t
            .code
            .by_hash
            .get(&s.manifest)
            .and_then(|(k, c, g)| t.code.manifests.get(&(*k, *c)).and_then(|gens| gens.get(g)))
            .map(|m| m.statement.blob_hash);
        if let Some(expected) = expected
            && expected != s.blob_hash
        {
            self.outputs.push_back(Output::Event(Event::AttestationMismatch {
                tenant: t.tenant,
                key,
                class,
                generation,
                attester: s.attester,
                expected,
                got: s.blob_hash,
            }));
        }
        t.code.digest_memo = None;
        t.code.attestations.entry(s.manifest).or_default().insert(s.attester, a);
        t.code.wake_key(key, now);
        Ok(())
    }

    /// A batch of manifests and attestations (published, or served by anti-entropy).
    pub(super) fn on_code(
        &mut self,
        now: Timestamp,
        tag: TenantTag,
        from: Peer,
        round: u64,
        manifests: Vec<Signed<Manifest>>,
        attestations: Vec<Signed<Attestation>>,
    ) {
        // The answer of a round this node opened: send back what the peer did not have.
        let answer = round != 0 && self.tenants[&tag].opened_rounds.contains(from, round);
        let received: BTreeSet<[u8; 32]> = if answer {
            manifests.iter().map(|m| m.hash()).collect()
        } else {
            BTreeSet::new()
        };
        for m in manifests {
            if let Err(reason) = self.accept_manifest(now, tag, m.clone(), Some(from)) {
                self.refuse(tag, &m, reason);
            }
        }
        for a in attestations {
            if let Err(e) = self.accept_attestation(now, tag, a) {
                *self.stats.refused.entry(e.kind()).or_insert(0) += 1;
            }
        }
        if answer {
            self.send_code(tag, from, round, &received);
        }
    }

    /// Sends the current manifests (except `skip`) and their attestations to a peer.
    pub(super) fn send_code(&mut self, tag: TenantTag, to: Peer, round: u64, skip: &BTreeSet<[u8; 32]>) {
        let t = &self.tenants[&tag];
        let mut items: Vec<(Signed<Manifest>, Vec<Signed<Attestation>>)> = Vec::new();
        for g in t.code.manifests.values() {
            if let Some((_, m)) = g.last_key_value() {
                let h = m.hash();
                if skip.contains(&h) {
                    continue;
                }
                let atts = t
                    .code
                    .attestations
                    .get(&h)
                    .map(|a| a.values().cloned().collect())
                    .unwrap_or_default();
                items.push((Signed::clone(m), atts));
            }
        }
        let budget = self.config.limits.max_message_bytes.saturating_sub(CODE_OVERHEAD);
        let max_items = self.config.limits.max_refs_per_message.max(1);
        let mut manifests = Vec::new();
        let mut attestations = Vec::new();
        let mut size = 0;
        let mut bodies = Vec::new();
        for (m, atts) in items {
            let add = postcard::to_allocvec(&m).map_or(0, |b| b.len())
                + atts
                    .iter()
                    .map(|a| postcard::to_allocvec(a).map_or(0, |b| b.len()))
                    .sum::<usize>();
            if !manifests.is_empty()
                && (size + add > budget || manifests.len() >= max_items || attestations.len() + atts.len() > max_items)
            {
                bodies.push(Body::Code {
                    round,
                    manifests: std::mem::take(&mut manifests),
                    attestations: std::mem::take(&mut attestations),
                });
                size = 0;
            }
            size += add;
            manifests.push(m);
            attestations.extend(atts.into_iter().take(max_items));
        }
        if !manifests.is_empty() {
            bodies.push(Body::Code {
                round,
                manifests,
                attestations,
            });
        }
        for body in bodies {
            let bytes = self.tenants[&tag].sealer.seal(&body.encode());
            self.push_send(to, bytes);
        }
    }

    /// Publishes a body on the tenant topic.
    pub(super) fn publish_body(&mut self, tag: TenantTag, body: &Body<'_>) {
        let t = &self.tenants[&tag];
        let bytes = t.sealer.seal(&body.encode());
        let topic = t.sealer.topic().clone();
        self.push_publish(topic, bytes);
    }

    /// Signs and publishes this node's presence.
    pub(super) fn publish_presence(&mut self, now: Timestamp, tag: TenantTag) {
        let limits = self.config.code.limits;
        let classes: Vec<_> = self
            .class_ids
            .iter()
            .zip(&self.config.code.hardware)
            .take(limits.max_classes)
            .map(|(id, c)| (*id, c.tiers))
            .collect();
        let load = self.load;
        let cfg = &self.config.code;
        let t = self.tenants.get_mut(&tag).expect("tenant present");
        // Adaptive interval: members receive at most about `max_presences_per_s` presences
        // per second whatever the fleet size; the validity scales with it.
        let members = t.code.live(now).count().max(1) as u64;
        let interval = cfg
            .presence_interval_ms
            .max(members * 1000 / u64::from(cfg.max_presences_per_s.max(1)));
        let valid_ms = interval.saturating_mul(cfg.presence_ttl_ms) / cfg.presence_interval_ms;
        let mut digest = blake3::Hasher::new_derive_key("ignite v1 installed digest");
        let mut functions = Vec::new();
        let mut installed = Vec::new();
        let mut truncated = false;
        for ((f, m, tier), i) in &t.code.installed {
            // Fixed-width fields: the digest input is injective without a length prefix.
            digest.update(&f.name);
            digest.update(&f.code);
            digest.update(&m.0.to_le_bytes());
            digest.update(&[tier.0]);
            digest.update(&i.manifest);
            let idx = match functions.iter().position(|g| g == f) {
                Some(i) => i,
                None if functions.len() < limits.max_presence_functions => {
                    functions.push(*f);
                    functions.len() - 1
                }
                None => {
                    truncated = true;
                    continue;
                }
            };
            if installed.len() < limits.max_presence_installed {
                installed.push((idx as u16, *m, *tier));
            } else {
                truncated = true;
            }
        }
        // Seq from the clock, so that a restarted node's presence still supersedes its old one.
        t.code.presence_seq = (t.code.presence_seq + 1).max(now.as_millis());
        let p = Presence {
            tenant: t.tenant,
            node: t.node,
            seq: t.code.presence_seq,
            issued_at: now,
            valid_ms,
            classes,
            load,
            installed_digest: *digest.finalize().as_bytes(),
            functions,
            installed,
            truncated,
        };
        let signed = Signed::sign(p, &t.creds);
        t.code.put_member(
            t.node,
            Member {
                presence: Arc::new(signed.clone()),
                heard_at: now,
                live_until: now.plus_ms(valid_ms),
            },
            now,
        );
        t.code.next_presence = now.plus_ms(interval);
        t.code.last_presence = now;
        t.code.presence_every = interval;
        self.stats.presences_published += 1;
        self.publish_body(tag, &Body::Presence(Box::new(signed)));
    }
}
