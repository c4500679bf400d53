//! JSON shapes of the admin API. These are contracts (DESIGN.md): add fields
//! freely, never rename or remove one. One file per resource under `dto/`.

use serde::{Deserialize, Serialize};
use uptime_raft_store::quorum::QuorumRule;
use uptime_raft_store::{Monitor, Verdict};

mod channels;
mod cluster;
mod errors;
mod incidents;
mod maintenance;
mod monitors;
mod settings;
mod time;

pub use channels::*;
pub use cluster::*;
pub use errors::*;
pub use incidents::*;
pub use maintenance::*;
pub use monitors::*;
pub use settings::*;
pub use time::*;
