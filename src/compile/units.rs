//! Rules with `units:`: a key field holding the cgroup ids of the running
//! units the rule names, looked up once per level a unit can be at.
//!
//! nftables' `socket cgroupv2 level N` yields the id of the ancestor at depth
//! N of the cgroup of the packet's local socket (outbound the sender's,
//! inbound the listener's; integration/scenarios/units-facts.sh shows both).
//! A set of ids does not care at which depth an id is, so one set serves
//! units at any level, and is looked up at levels 1 to [`MAX_LEVEL`]: an id
//! can only equal the ancestor at its own depth. The sets' elements follow
//! the units as they start and stop (`Compiled::unit_updates`); the chains do
//! not change. nft's JSON cannot say the lookup, so such a table goes to nft
//! in its text syntax (`nft::Table::needs_text`).

use crate::nft::{Expr, KeyType};
use crate::policy::Direction;
use crate::units::MAX_LEVEL;

use super::{Field, Group};

/// The keys of a group's lookups: one, or one per level for unit rules.
pub fn keys(group: &Group, direction: Direction) -> Vec<Expr> {
    let key = |level: u8| {
        let parts = group.fields.iter().map(|f| match f {
            Field::Unit => Expr::SocketCgroup(level),
            f => f.expr(direction),
        });
        Expr::Concat(parts.collect())
    };
    if group.fields.contains(&Field::Unit) {
        (1..=MAX_LEVEL).map(key).collect()
    } else {
        vec![key(0)]
    }
}

/// Whether a set of this key holds cgroup ids; such a set exists even when
/// none of its units runs, so that the chains never change.
pub fn has_units(key: &[KeyType]) -> bool {
    key.contains(&KeyType::Cgroup)
}
