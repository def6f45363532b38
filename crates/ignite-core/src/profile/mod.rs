//! Profiles: counters, per-lane CRDT state and the merged fleet-wide view.
//!
//! A *lane* is everything one (node, incarnation) signed for one (function, method group):
//! absolute, monotone counter values with sequence numbers. Merge is a per-counter maximum
//! within a lane (the `crdts::GCounter` rule, each lane being one actor); the merged view
//! of a counter is the sum over lanes.

pub mod counter;
pub(crate) mod lane;
mod state;
pub(crate) mod transition;
mod view;

pub use lane::{Evidence, LaneId, StoredDelta};
pub(crate) use state::LaneSummary;
pub use state::{Applied, CapConfig, FunctionState};
pub use view::ProfileView;
