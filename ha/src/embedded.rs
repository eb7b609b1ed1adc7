//! Embedded HA services: in-process, nothing persisted.
//!
//! [`EmbeddedLeaderElection`] makes its one contender the leader (token 1) for as long as the
//! process lives. [`EmbeddedPersistence`] keeps job graphs, results, checkpoint pointers and
//! blobs in memory; its writes are fenced by a [`LocalFence`] — the token under which this
//! process currently leads — so a runtime that lost leadership on a shared election cannot
//! write even to its in-memory stores. Clean job results are kept up to a bound
//! ([`EmbeddedPersistence::RETAINED_CLEAN_RESULTS`]): memory does not grow with the number of
//! short jobs a long-lived runtime ran.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use super::{
    BlobStore, CheckpointPointer, CompletedCheckpointStore, FencingToken, HaError, JobGraphRecord,
    JobGraphStore, JobResultEntry, JobResultRecord, JobResultStore, LeaderElection, LeaderInfo,
    LeaderRetrieval, Result,
};

/// The token under which this process leads (0 = it does not lead). A write holds the fence
/// (shared) from its check to its end, and a change of token waits for it (exclusive): the
/// check and the write are one step with respect to losing leadership.
#[derive(Debug, Default)]
pub struct LocalFence(parking_lot::RwLock<FencingToken>);

impl LocalFence {
    /// This process now leads under `token`.
    pub fn set(&self, token: FencingToken) {
        *self.0.write() = token;
    }
    /// This process no longer leads.
    pub fn clear(&self) {
        *self.0.write() = 0;
    }
    /// The current token (0 = not leading).
    pub fn current(&self) -> FencingToken {
        *self.0.read()
    }
    /// Refuses a write of `write` under `token` unless it is the current token; the returned
    /// guard keeps the token from changing until the write is done.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::Fenced`] when `token` is 0 or not the current token (this process does
    /// not lead under it).
    pub fn check(
        &self,
        token: FencingToken,
        write: impl FnOnce() -> String,
    ) -> Result<parking_lot::RwLockReadGuard<'_, FencingToken>> {
        let current = self.0.read();
        if token == 0 || token != *current {
            return Err(HaError::Fenced {
                write: write(),
                token,
                current: if *current == 0 {
                    "none".into()
                } else {
                    current.to_string()
                },
            });
        }
        Ok(current)
    }
}

/// Leader election of a single process: it always leads, with token 1.
pub struct EmbeddedLeaderElection {
    holder: String,
    address: Mutex<String>,
}

impl EmbeddedLeaderElection {
    /// The election of contender `holder`.
    pub fn new(holder: &str) -> Self {
        EmbeddedLeaderElection {
            holder: holder.to_string(),
            address: Mutex::new(String::new()),
        }
    }
}

impl LeaderElection for EmbeddedLeaderElection {
    fn try_lead(&self, address: &str) -> Result<Option<FencingToken>> {
        *self.address.lock() = address.to_string();
        Ok(Some(1))
    }
    fn resign(&self, _token: FencingToken) -> Result<()> {
        Ok(())
    }
    fn lease(&self) -> Duration {
        // Never expires: nothing else can take over.
        Duration::from_secs(3600)
    }
}

impl LeaderRetrieval for EmbeddedLeaderElection {
    fn leader(&self) -> Result<Option<LeaderInfo>> {
        Ok(Some(LeaderInfo {
            holder: self.holder.clone(),
            address: self.address.lock().clone(),
            token: 1,
        }))
    }
}

#[derive(Default)]
struct Stores {
    graphs: BTreeMap<String, JobGraphRecord>,
    results: HashMap<String, JobResultEntry>,
    clean_order: VecDeque<String>,
    checkpoints: HashMap<String, (Vec<CheckpointPointer>, u64)>,
    blobs: HashMap<String, BTreeMap<String, Vec<u8>>>,
}

/// In-memory persistence services, fenced by this process's [`LocalFence`].
pub struct EmbeddedPersistence {
    fence: std::sync::Arc<LocalFence>,
    stores: Mutex<Stores>,
}

impl EmbeddedPersistence {
    /// Clean results kept for status queries; older ones are forgotten.
    pub const RETAINED_CLEAN_RESULTS: usize = 10_000;

    /// Stores fenced by `fence`.
    pub fn new(fence: std::sync::Arc<LocalFence>) -> Self {
        EmbeddedPersistence {
            fence,
            stores: Mutex::new(Stores::default()),
        }
    }
}

impl JobGraphStore for EmbeddedPersistence {
    fn put(&self, token: FencingToken, graph: &JobGraphRecord) -> Result<()> {
        let _fenced = self
            .fence
            .check(token, || format!("job graph of '{}'", graph.job_id))?;
        self.stores
            .lock()
            .graphs
            .insert(graph.job_id.clone(), graph.clone());
        Ok(())
    }
    fn remove(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let _fenced = self
            .fence
            .check(token, || format!("removal of the job graph of '{job_id}'"))?;
        self.stores.lock().graphs.remove(job_id);
        Ok(())
    }
    fn job_ids(&self) -> Result<Vec<String>> {
        Ok(self.stores.lock().graphs.keys().cloned().collect())
    }
    fn get(&self, job_id: &str) -> Result<Option<JobGraphRecord>> {
        Ok(self.stores.lock().graphs.get(job_id).cloned())
    }
}

impl JobResultStore for EmbeddedPersistence {
    fn put_dirty(&self, token: FencingToken, result: &JobResultRecord) -> Result<()> {
        let _fenced = self
            .fence
            .check(token, || format!("job result of '{}'", result.job_id))?;
        self.stores.lock().results.insert(
            result.job_id.clone(),
            JobResultEntry {
                result: result.clone(),
                clean: false,
            },
        );
        Ok(())
    }
    fn mark_clean(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let _fenced = self.fence.check(token, || {
            format!("clean mark of the job result of '{job_id}'")
        })?;
        let mut s = self.stores.lock();
        let Some(e) = s.results.get_mut(job_id) else {
            return Err(HaError::NoSuchJob(job_id.to_string()));
        };
        if !e.clean {
            e.clean = true;
            s.clean_order.push_back(job_id.to_string());
            while s.clean_order.len() > Self::RETAINED_CLEAN_RESULTS {
                if let Some(old) = s.clean_order.pop_front() {
                    s.results.remove(&old);
                }
            }
        }
        Ok(())
    }
    fn get(&self, job_id: &str) -> Result<Option<JobResultEntry>> {
        Ok(self.stores.lock().results.get(job_id).cloned())
    }
    fn dirty(&self) -> Result<Vec<JobResultEntry>> {
        Ok(self
            .stores
            .lock()
            .results
            .values()
            .filter(|e| !e.clean)
            .cloned()
            .collect())
    }
}

impl CompletedCheckpointStore for EmbeddedPersistence {
    fn add(
        &self,
        token: FencingToken,
        job_id: &str,
        pointer: &CheckpointPointer,
        retain: usize,
    ) -> Result<()> {
        let _fenced = self.fence.check(token, || {
            format!("checkpoint {} of '{job_id}'", pointer.checkpoint_id)
        })?;
        let mut s = self.stores.lock();
        let (list, counter) = s.checkpoints.entry(job_id.to_string()).or_default();
        list.push(pointer.clone());
        list.sort_by_key(|p| p.checkpoint_id);
        let excess = list.len().saturating_sub(retain.max(1));
        list.drain(..excess);
        *counter = (*counter).max(pointer.checkpoint_id);
        Ok(())
    }
    fn latest(&self, job_id: &str) -> Result<Option<CheckpointPointer>> {
        Ok(self
            .stores
            .lock()
            .checkpoints
            .get(job_id)
            .and_then(|(l, _)| l.last().cloned()))
    }
    fn highest_id(&self, job_id: &str) -> Result<u64> {
        Ok(self
            .stores
            .lock()
            .checkpoints
            .get(job_id)
            .map_or(0, |(_, c)| *c))
    }
    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let _fenced = self.fence.check(token, || {
            format!("removal of the checkpoints of '{job_id}'")
        })?;
        self.stores.lock().checkpoints.remove(job_id);
        Ok(())
    }
}

impl BlobStore for EmbeddedPersistence {
    fn put(&self, token: FencingToken, job_id: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let _fenced = self
            .fence
            .check(token, || format!("blob '{name}' of '{job_id}'"))?;
        self.stores
            .lock()
            .blobs
            .entry(job_id.to_string())
            .or_default()
            .insert(name.to_string(), bytes.to_vec());
        Ok(())
    }
    fn get(&self, job_id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .stores
            .lock()
            .blobs
            .get(job_id)
            .and_then(|b| b.get(name).cloned()))
    }
    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let _fenced = self
            .fence
            .check(token, || format!("removal of the blobs of '{job_id}'"))?;
        self.stores.lock().blobs.remove(job_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn writes_need_the_current_token() {
        let fence = Arc::new(LocalFence::default());
        let p = EmbeddedPersistence::new(fence.clone());
        let g = JobGraphRecord {
            job_id: "a".into(),
            name: "wc".into(),
            version: 1,
            parameters: Default::default(),
            config: Default::default(),
            submitted_ms: 0,
        };
        let e = JobGraphStore::put(&p, 1, &g).unwrap_err();
        assert!(e.to_string().contains("stale fencing token 1"), "{e}");
        fence.set(2);
        JobGraphStore::put(&p, 2, &g).unwrap();
        fence.set(3);
        let e = JobGraphStore::remove(&p, 2, "a").unwrap_err();
        assert!(matches!(e, HaError::Fenced { token: 2, .. }), "{e}");
        assert_eq!(p.graphs().unwrap(), vec![g], "nothing was removed");
        p.add(
            3,
            "a",
            &CheckpointPointer {
                checkpoint_id: 4,
                location: "x".into(),
            },
            1,
        )
        .unwrap();
        p.add(
            3,
            "a",
            &CheckpointPointer {
                checkpoint_id: 5,
                location: "y".into(),
            },
            1,
        )
        .unwrap();
        assert_eq!(p.latest("a").unwrap().unwrap().location, "y");
        assert_eq!(p.highest_id("a").unwrap(), 5);
    }
}
