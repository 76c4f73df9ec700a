//! The audit log: who did what, when. Entries are written inside the transaction of the change
//! they record, so every acknowledged change has its entry and no entry outlives a failed one.

use super::error::{CoreError, CoreResult};
use super::tables::{AUDIT, COORDINATOR};
use super::{Coordinator, Principal};
use crate::store::{Store, Transaction};

const KEY_NEXT: &str = "audit-next";
/// Most entries one `GET audit` returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// One audit entry, as stored and as `GET audit` serves it.
pub use confidant_api::AuditEntry;

/// Appends an entry inside `tx`.
pub(crate) fn append(
    tx: &mut dyn Transaction,
    time: &str,
    actor: &str,
    action: &str,
    target: &str,
) -> CoreResult<()> {
    let next = match tx.get(COORDINATOR, KEY_NEXT)? {
        None => 1,
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| CoreError::internal("stored audit counter is not a number"))?,
    };
    let entry = AuditEntry {
        seq: next,
        time: time.to_string(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
    };
    let bytes =
        serde_json::to_vec(&entry).map_err(|e| CoreError::internal(format!("audit entry: {e}")))?;
    tx.put(AUDIT, &format!("{next:020}"), &bytes)?;
    tx.put(COORDINATOR, KEY_NEXT, (next + 1).to_string().as_bytes())?;
    Ok(())
}

impl<S: Store> Coordinator<S> {
    /// Audit entries after `after`, at most `limit` (capped at [`MAX_AUDIT_PAGE`]); any
    /// manifest user may read them.
    pub fn audit(&self, who: &Principal, after: u64, limit: usize) -> CoreResult<Vec<AuditEntry>> {
        let current = self.running()?;
        super::auth::user_of(&current.users, who, "reading the audit log")?;
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let mut out = Vec::new();
        // Keys are zero-padded, so byte order is numeric order.
        for key in self.store.keys(AUDIT, "")? {
            let seq: u64 = key.parse().unwrap_or(0);
            if seq <= after {
                continue;
            }
            if let Some(bytes) = self.store.get(AUDIT, &key)? {
                let e: AuditEntry = serde_json::from_slice(&bytes)
                    .map_err(|e| CoreError::internal(format!("stored audit entry {key}: {e}")))?;
                out.push(e);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The audit name of a principal.
pub(crate) fn actor_name(user: Option<&str>) -> String {
    user.map_or_else(|| "anonymous".to_string(), str::to_string)
}
