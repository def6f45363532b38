//! [`GossipConfig`]: the gossipsub parameters, with rust-libp2p's defaults.

/// Gossipsub parameters of the model.
///
/// Every protocol parameter defaults to the value of rust-libp2p's gossipsub (`libp2p-gossipsub`
/// 0.49, shipped with libp2p 0.57): `ConfigBuilder::default()` in
/// `protocols/gossipsub/src/config.rs` (the mesh sizes live in `TopicMeshConfig::default()` since
/// 0.49, with the same values). Durations are in microseconds of virtual time.
///
/// Two fields are model assumptions, not libp2p settings: [`connected_peers`](Self::connected_peers)
/// and (through it) the reach of flood publishing. Features of gossipsub that the model leaves out:
/// peer scoring (and so opportunistic grafting, `retain_scores` and every score threshold), peer
/// exchange, explicit peers, connection direction (so `mesh_outbound_min` is carried but not
/// enforced), the IDONTWANT of gossipsub v1.2, the per-heartbeat IHAVE spam limits
/// (`max_ihave_messages`) and `gossip_retransimission`.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// D: target mesh degree per topic. rust-libp2p `mesh_n`, default 6.
    pub mesh_n: usize,
    /// D_low: a heartbeat grafts up to D when the mesh is smaller than this. rust-libp2p
    /// `mesh_n_low`, default 5.
    pub mesh_n_low: usize,
    /// D_high: a heartbeat prunes down to D when the mesh is larger than this, and a GRAFT is
    /// refused (answered with PRUNE) when the mesh already has this many peers. rust-libp2p
    /// `mesh_n_high`, default 12.
    pub mesh_n_high: usize,
    /// D_out: minimum outbound mesh peers. rust-libp2p `mesh_outbound_min`, default 2. Carried for
    /// reference only: the model has no connection direction.
    pub mesh_outbound_min: usize,
    /// D_lazy: minimum number of non-mesh peers a heartbeat sends IHAVE to, per topic.
    /// rust-libp2p `gossip_lazy`, default 6.
    pub gossip_lazy: usize,
    /// IHAVE goes to `max(gossip_lazy, gossip_factor * non-mesh connected subscribers)` peers.
    /// rust-libp2p `gossip_factor`, default 0.25.
    pub gossip_factor: f64,
    /// Interval between a peer's heartbeats; the simulator schedules them, the model uses it for
    /// the backoff slack. rust-libp2p `heartbeat_interval`, default 1 s.
    pub heartbeat_interval_us: u64,
    /// Heartbeat windows kept in the message cache (answering IWANT). rust-libp2p
    /// `history_length`, default 5.
    pub history_length: usize,
    /// Most recent windows advertised in IHAVE. rust-libp2p `history_gossip`, default 3.
    pub history_gossip: usize,
    /// How long a message id counts as seen. rust-libp2p `duplicate_cache_time`, default 60 s.
    /// The model measures it from the message's publication (not from when each peer first saw
    /// it) and treats every older id as seen; see [`Gossip`](super::Gossip).
    pub duplicate_cache_time_us: u64,
    /// Most ids in one IHAVE, and in the IWANT answering it. rust-libp2p `max_ihave_length`,
    /// default 5000.
    pub max_ihave_length: usize,
    /// A fanout set (topic published to but not subscribed) is dropped after this long without a
    /// publication. rust-libp2p `fanout_ttl`, default 60 s.
    pub fanout_ttl_us: u64,
    /// After a PRUNE, neither side grafts the other on that topic for this long. rust-libp2p
    /// `prune_backoff`, default 60 s. The model's PRUNE carries no backoff value, so a receiver
    /// always applies this one.
    pub prune_backoff_us: u64,
    /// Backoff an unsubscribing peer keeps toward the mesh peers it pruned. rust-libp2p
    /// `unsubscribe_backoff`, default 10 s.
    pub unsubscribe_backoff_us: u64,
    /// Heartbeats of slack after a backoff expires before grafting again. rust-libp2p
    /// `backoff_slack`, default 1.
    pub backoff_slack: u32,
    /// An id asked for with IWANT is not asked for again (from any peer) for this long, unless it
    /// arrived. rust-libp2p `iwant_followup_time` (the gossip promise), default 3 s.
    pub iwant_followup_time_us: u64,
    /// A peer's own new messages go to every connected subscriber of the topic, not only to its
    /// mesh. rust-libp2p `flood_publish`, default `true`. In the model "connected" means
    /// [`connected_peers`](Self::connected_peers) subscribers chosen at random (plus the mesh).
    pub flood_publish: bool,
    /// Model assumption (no libp2p setting): how many other subscribers of a topic a peer is
    /// connected to. rust-libp2p computes gossip fan-out and flood publishing over its connected
    /// peers; the model knows every subscriber (full membership view) and samples this many
    /// instead of using all of them, which at 10,000 peers would mean 2,500 IHAVEs per peer and
    /// heartbeat. Default 50.
    pub connected_peers: usize,
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig {
            mesh_n: 6,
            mesh_n_low: 5,
            mesh_n_high: 12,
            mesh_outbound_min: 2,
            gossip_lazy: 6,
            gossip_factor: 0.25,
            heartbeat_interval_us: 1_000_000,
            history_length: 5,
            history_gossip: 3,
            duplicate_cache_time_us: 60_000_000,
            max_ihave_length: 5000,
            fanout_ttl_us: 60_000_000,
            prune_backoff_us: 60_000_000,
            unsubscribe_backoff_us: 10_000_000,
            backoff_slack: 1,
            iwant_followup_time_us: 3_000_000,
            flood_publish: true,
            connected_peers: 50,
        }
    }
}

impl GossipConfig {
    /// Checks the inequalities rust-libp2p's `ConfigBuilder::build` checks (as far as the model
    /// has the parameters), plus that the message cache is shorter than the duplicate window.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.history_length < self.history_gossip {
            return Err("history_length must be at least history_gossip");
        }
        if !(self.mesh_outbound_min <= self.mesh_n_low
            && self.mesh_n_low <= self.mesh_n
            && self.mesh_n <= self.mesh_n_high)
        {
            return Err("mesh_outbound_min <= mesh_n_low <= mesh_n <= mesh_n_high must hold");
        }
        if self.mesh_outbound_min * 2 > self.mesh_n {
            return Err("mesh_outbound_min <= mesh_n / 2 must hold");
        }
        if self.history_length as u64 * self.heartbeat_interval_us >= self.duplicate_cache_time_us {
            return Err("the message cache must expire before the duplicate cache");
        }
        Ok(())
    }
}
