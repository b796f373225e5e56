//! A typed subset of the nftables JSON API (libnftables-json(5)), enough to build
//! Ringfence's one table, and the `nft` runner.
//!
//! Written here rather than taken from the `nftables` crate (0.6): its set types
//! cannot express `uid`, `icmp_type` or `icmpv6_type`, nor the set-level `counter`
//! statement, all of which the compiled ruleset needs. Large tables are streamed to
//! `nft` as they serialize, so the daemon never holds a second, JSON copy of a
//! 100,000-element ruleset.

mod exec;
mod model;
mod netlink;
mod text;

pub use exec::{apply, apply_text, list_set, list_table, NftError};
pub use model::*;
pub use netlink::{add_set_counters, table_exists, Counter};
pub use text::replace as replace_text;
