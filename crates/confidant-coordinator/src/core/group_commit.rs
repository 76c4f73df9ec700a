//! Group commit for activations: concurrent activations share one store transaction (and one
//! fsync). The first caller to find no commit in progress becomes the leader and commits
//! everything queued, in arrival order, until its own activation is committed; the others
//! wait for their result, and one of them leads next. Each activation's outcome is its own: one workload reaching its maximum does not
//! fail the others in the batch.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use super::error::{CoreError, CoreResult, ErrorCode};
use super::tables::ACTIVATIONS;
use super::{activation, audit};
use crate::store::{Store, Transaction};

/// One activation to count.
#[derive(Debug, Clone)]
pub(crate) struct CountRequest {
    pub workload: String,
    pub max: Option<u64>,
    pub time: String,
}

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, CountRequest)>,
    done: HashMap<u64, CoreResult<u64>>,
    leader: bool,
    next_ticket: u64,
}

/// The activation counter's group commit.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn poisoned() -> CoreError {
    CoreError::internal("activation queue lock poisoned")
}

fn count_one(tx: &mut dyn Transaction, r: &CountRequest) -> CoreResult<u64> {
    let w = &r.workload;
    let n = activation::read_count(tx.get(ACTIVATIONS, w)?)? + 1;
    if let Some(max) = r.max
        && n > max
    {
        return Err(CoreError::new(
            ErrorCode::ActivationsExhausted,
            Some("workload"),
            format!(
                "workload '{w}': expected fewer than workloads.{w}.max_activations = {max} activations so far, got {}",
                n - 1
            ),
        ));
    }
    tx.put(ACTIVATIONS, w, n.to_string().as_bytes())?;
    audit::append(tx, &r.time, &format!("workload:{w}/{n}"), "activate", w)?;
    Ok(n)
}

impl GroupCommit {
    /// Counts one activation durably; returns its number (from 1).
    pub(crate) fn count<S: Store>(&self, store: &S, request: CountRequest) -> CoreResult<u64> {
        let mut q = self.queue.lock().map_err(|_| poisoned())?;
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, request));
        if q.leader {
            loop {
                q = self.changed.wait(q).map_err(|_| poisoned())?;
                if let Some(r) = q.done.remove(&ticket) {
                    return r;
                }
                if !q.leader {
                    // The leader finished without our result: it left us queued; lead now.
                    break;
                }
            }
        }
        q.leader = true;
        loop {
            let batch = std::mem::take(&mut q.pending);
            if batch.is_empty() {
                q.leader = false;
                self.changed.notify_all();
                return q.done.remove(&ticket).unwrap_or_else(|| {
                    Err(CoreError::internal(
                        "activation result lost in the group commit",
                    ))
                });
            }
            drop(q);
            let outcome = store.transaction(|tx| {
                let mut results = Vec::with_capacity(batch.len());
                for (t, r) in &batch {
                    results.push((*t, count_one(tx, r)));
                }
                Ok::<_, CoreError>(results)
            });
            q = self.queue.lock().map_err(|_| poisoned())?;
            match outcome {
                Ok(results) => q.done.extend(results),
                Err(e) => {
                    for (t, _) in &batch {
                        q.done.insert(*t, Err(e.clone()));
                    }
                }
            }
            if let Some(mine) = q.done.remove(&ticket) {
                // Hand over: a waiting caller with queued work becomes the next leader, so no
                // caller waits for more than its own batch and the one before.
                q.leader = false;
                self.changed.notify_all();
                return mine;
            }
            self.changed.notify_all();
        }
    }
}
