//! The mount table of this process's mount namespace: [`confidant_shield::mountinfo`] (the
//! workspace's one reader of `/proc/self/mountinfo`), with read errors as [`AgentError`]s.

pub use confidant_shield::mountinfo::{Mount, parse, under};

use crate::error::{AgentError, Result};

/// Reads this process's mount table.
pub fn read() -> Result<Vec<Mount>> {
    confidant_shield::mountinfo::read()
        .map_err(|e| AgentError::io("reading /proc/self/mountinfo", e))
}
