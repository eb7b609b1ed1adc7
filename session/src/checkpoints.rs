//! Checkpoint storage of a recoverable job: files in a directory, pointers in the
//! completed-checkpoint store.
//!
//! State files and metadata go to a local (or shared) directory as always; a checkpoint counts
//! as completed only once its pointer is in the HA [`CompletedCheckpointStore`], written under
//! the leader's fencing token. The pointer write is part of completion: if it is refused (a
//! deposed leader) or fails, the checkpoint fails, so no operator is told it completed and no
//! two-phase-commit sink commits it. A new leader restores the newest pointer, and the
//! checkpoint-id counter keeps it from reusing ids. Each leader term writes its own directory
//! (see `job_config`), so a deposed leader's last checkpoints never share files with the new
//! leader's, whatever ids they use.

use std::sync::Arc;

use weir_state::checkpoint::format::FileKind;
use weir_state::checkpoint::{
    CheckpointKind, CheckpointMetadata, CheckpointStorage, CompletedCheckpoint,
    LocalCheckpointStorage, StateHandle,
};
use weir_state::{Result, StateError};

use weir_ha::{CheckpointPointer, CompletedCheckpointStore, FencingToken};

use crate::error::report;

/// Checkpoints of job `job_id` in a directory, completed through the HA store.
pub struct HaCheckpointStorage {
    pub(crate) files: LocalCheckpointStorage,
    pub(crate) store: Arc<dyn CompletedCheckpointStore>,
    pub(crate) job_id: String,
    pub(crate) token: FencingToken,
    pub(crate) retain: usize,
}

impl CheckpointStorage for HaCheckpointStorage {
    fn write_state(
        &self,
        id: u64,
        kind: CheckpointKind,
        name: &str,
        file_kind: FileKind,
        payload: &[u8],
    ) -> Result<StateHandle> {
        self.files.write_state(id, kind, name, file_kind, payload)
    }

    fn commit(&self, metadata: &CheckpointMetadata) -> Result<CompletedCheckpoint> {
        let done = self.files.commit(metadata)?;
        if metadata.kind == CheckpointKind::Checkpoint {
            let pointer = CheckpointPointer {
                checkpoint_id: metadata.checkpoint_id,
                location: done.location.clone(),
            };
            if let Err(e) = self
                .store
                .add(self.token, &self.job_id, &pointer, self.retain)
            {
                if matches!(e, weir_ha::HaError::Fenced { .. }) {
                    // Certainly not recorded: remove it, so that it never counts as the newest
                    // checkpoint of this directory. (After other errors the pointer may have
                    // been written: the files stay.)
                    let _ = std::fs::remove_dir_all(&done.location);
                }
                return Err(StateError::Store(report(&e)));
            }
        }
        Ok(done)
    }

    fn read_state(
        &self,
        checkpoint: &CompletedCheckpoint,
        handle: &StateHandle,
        kind: FileKind,
    ) -> Result<Vec<u8>> {
        self.files.read_state(checkpoint, handle, kind)
    }

    fn load(&self, location: &str) -> Result<CompletedCheckpoint> {
        self.files.load(location)
    }

    fn latest(&self) -> Result<Option<CompletedCheckpoint>> {
        match self
            .store
            .latest(&self.job_id)
            .map_err(|e| StateError::Store(report(&e)))?
        {
            Some(p) => self.files.load(&p.location).map(Some),
            None => Ok(None),
        }
    }

    fn subsume(&self, retain: usize) -> Result<Vec<u64>> {
        self.files.subsume(retain)
    }

    fn abort(&self, id: u64) -> Result<()> {
        self.files.abort(id)
    }

    fn highest_id(&self) -> Result<Option<u64>> {
        let counter = self
            .store
            .highest_id(&self.job_id)
            .map_err(|e| StateError::Store(report(&e)))?;
        let files = self.files.highest_id()?;
        Ok(match (files, counter) {
            (f, 0) => f,
            (f, c) => Some(f.unwrap_or(0).max(c)),
        })
    }
}
