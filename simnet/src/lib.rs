//! simnet: a deterministic discrete-event simulation of thousands of Ignite peers, each
//! running the real `ignite-core` engine and exchanging real sealed and signed messages
//! over a modelled network and a gossipsub-like mesh.
//!
//! Time is virtual (microseconds) and every random draw comes from one seed: the same seed
//! and configuration give byte-identical results.

pub mod churn;
pub mod gossip;
pub mod net;
pub mod paper;
pub mod queue;
pub mod report;
pub mod rng;
pub mod scale;
pub mod sweep;
pub mod trace;
pub mod world;
