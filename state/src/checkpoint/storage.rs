//! Checkpoint storage: a trait, and the local-directory implementation.
//!
//! Layout of [`LocalCheckpointStorage`] under its root directory (`checkpoints.dir`):
//!
//! ```text
//! chk-<id>/<state files>        one directory per checkpoint
//! chk-<id>/_metadata            written last: its presence makes the checkpoint complete
//! savepoints/savepoint-<id>/…   savepoints, never deleted by retention
//! ```
//!
//! Every file is written to a temporary name, synced and renamed, so a crash leaves either the
//! old state or the new one, never half a file. Locations are strings, so that another storage
//! (an object store, or the HA storage of the session runtime) implements the same trait.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, FileKind};
use super::metadata::{CheckpointKind, CheckpointMetadata, StateHandle};
use crate::{Result, StateError};

/// A checkpoint whose metadata was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedCheckpoint {
    /// Where it is (for local storage: its directory).
    pub location: String,
    /// Its metadata.
    pub metadata: CheckpointMetadata,
}

/// Where checkpoints are written and read.
pub trait CheckpointStorage: Send + Sync {
    /// Writes one state file of checkpoint `id` and returns its handle.
    ///
    /// # Errors
    ///
    /// Implementations return an error when the file cannot be written. [`LocalCheckpointStorage`]
    /// returns [`StateError::InvalidName`] for a `name` that is empty, holds a path separator,
    /// starts with `.` or is `_metadata`, and [`StateError::Io`] when creating the directory or
    /// writing, syncing or renaming the file fails.
    fn write_state(
        &self,
        id: u64,
        kind: CheckpointKind,
        name: &str,
        file_kind: FileKind,
        payload: &[u8],
    ) -> Result<StateHandle>;
    /// Completes a checkpoint by writing its metadata, last and atomically.
    ///
    /// # Errors
    ///
    /// Implementations return an error when the checkpoint cannot be completed.
    /// [`LocalCheckpointStorage`] returns [`StateError::Encode`] when the metadata cannot be
    /// encoded and [`StateError::Io`] when writing it fails; a storage that records completion
    /// elsewhere (as the session runtime's HA storage does) returns [`StateError::Store`] when that
    /// fails.
    fn commit(&self, metadata: &CheckpointMetadata) -> Result<CompletedCheckpoint>;
    /// Reads and checks one state file of a completed checkpoint; returns its payload.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::Io`] when the file cannot be read, and
    /// [`StateError::CorruptFile`] or [`StateError::UnsupportedVersion`] when it fails its checks
    /// (see [`format::unframe`]), including when it holds another kind than `kind`.
    fn read_state(
        &self,
        checkpoint: &CompletedCheckpoint,
        handle: &StateHandle,
        kind: FileKind,
    ) -> Result<Vec<u8>>;
    /// Loads the checkpoint or savepoint at `location`, checking every file it references.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::NoSuchCheckpoint`] when `location` has no
    /// `_metadata` file; [`StateError::Io`], [`StateError::CorruptFile`] or
    /// [`StateError::UnsupportedVersion`] when the metadata or a file it references cannot be read
    /// or fails its checks; and [`StateError::Decode`] when the metadata does not decode.
    fn load(&self, location: &str) -> Result<CompletedCheckpoint>;
    /// The newest checkpoint (not savepoint) whose files all check out. Corrupt or incomplete
    /// ones are skipped; if checkpoints exist but none is valid, the error names each problem.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::NoValidCheckpoint`] when completed
    /// checkpoints exist but none is intact, and [`StateError::Io`] when the root directory exists
    /// but cannot be listed; a storage that keeps its pointers elsewhere (the session runtime's HA
    /// storage) returns [`StateError::Store`] when reading the newest pointer fails.
    fn latest(&self) -> Result<Option<CompletedCheckpoint>>;
    /// Keeps the newest `retain` completed checkpoints and deletes older ones (and abandoned,
    /// incomplete ones older than those). Savepoints are never deleted. Returns deleted ids.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::Io`] when the root directory exists but
    /// cannot be listed, or a directory cannot be deleted (those deleted before stay deleted).
    fn subsume(&self, retain: usize) -> Result<Vec<u64>>;
    /// Deletes what an unfinished checkpoint wrote.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::Io`] when the checkpoint's directory cannot
    /// be deleted.
    fn abort(&self, id: u64) -> Result<()>;
    /// The highest checkpoint or savepoint id present (complete or not), so that new ids never
    /// reuse a directory.
    ///
    /// # Errors
    ///
    /// [`LocalCheckpointStorage`] returns [`StateError::Io`] when the root directory exists but
    /// cannot be listed; a storage with a checkpoint-id counter elsewhere (the session runtime's HA
    /// storage) returns [`StateError::Store`] when reading it fails.
    fn highest_id(&self) -> Result<Option<u64>>;
}

/// Checkpoints in a local directory.
#[derive(Debug, Clone)]
pub struct LocalCheckpointStorage {
    root: PathBuf,
}

const METADATA: &str = "_metadata";

fn io(path: &Path, e: std::io::Error) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: temporary file, sync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io(path, std::io::Error::other("no parent directory")))?;
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl LocalCheckpointStorage {
    /// Storage under `root` (created when the first file is written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalCheckpointStorage { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: u64, kind: CheckpointKind) -> PathBuf {
        match kind {
            CheckpointKind::Checkpoint => self.root.join(format!("chk-{id}")),
            CheckpointKind::Savepoint => {
                self.root.join("savepoints").join(format!("savepoint-{id}"))
            }
        }
    }

    fn read_file(path: &Path, kind: FileKind) -> Result<Vec<u8>> {
        let bytes = fs::read(path).map_err(|e| io(path, e))?;
        Ok(format::unframe(path, kind, &bytes)?.to_vec())
    }

    fn read_metadata(dir: &Path) -> Result<CheckpointMetadata> {
        let path = dir.join(METADATA);
        let payload = Self::read_file(&path, FileKind::Metadata)?;
        format::decode(&path.display().to_string(), &payload)
    }

    /// Checks that every file the metadata references exists and passes its checksum.
    fn verify(dir: &Path, metadata: &CheckpointMetadata) -> Result<()> {
        for h in metadata.handles() {
            let path = dir.join(&h.file);
            let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
            // Any kind is accepted here; readers check the kind they expect.
            let kind = FileKind::from_header(&bytes).unwrap_or(FileKind::KeyedState);
            format::unframe(&path, kind, &bytes)?;
        }
        Ok(())
    }

    /// Checkpoint ids with a directory, newest first.
    fn checkpoint_dirs(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            out.push((id, entry.path()));
        }
        out.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(out)
    }
}

impl FileKind {
    /// The kind named in a file's header, if the header is readable.
    pub fn from_header(bytes: &[u8]) -> Option<FileKind> {
        match bytes.get(10)? {
            1 => Some(FileKind::Metadata),
            2 => Some(FileKind::KeyedState),
            3 => Some(FileKind::OperatorState),
            4 => Some(FileKind::ChannelState),
            _ => None,
        }
    }
}

impl CheckpointStorage for LocalCheckpointStorage {
    fn write_state(
        &self,
        id: u64,
        kind: CheckpointKind,
        name: &str,
        file_kind: FileKind,
        payload: &[u8],
    ) -> Result<StateHandle> {
        if name.is_empty()
            || name.contains(['/', '\\'])
            || name.starts_with('.')
            || name == METADATA
        {
            return Err(StateError::InvalidName(name.to_string()));
        }
        let bytes = format::frame(file_kind, payload);
        write_atomic(&self.dir(id, kind).join(name), &bytes)?;
        Ok(StateHandle {
            file: name.to_string(),
            size: bytes.len() as u64,
        })
    }

    fn commit(&self, metadata: &CheckpointMetadata) -> Result<CompletedCheckpoint> {
        let dir = self.dir(metadata.checkpoint_id, metadata.kind);
        let payload = format::encode(metadata)?;
        write_atomic(
            &dir.join(METADATA),
            &format::frame(FileKind::Metadata, &payload),
        )?;
        Ok(CompletedCheckpoint {
            location: dir.display().to_string(),
            metadata: metadata.clone(),
        })
    }

    fn read_state(
        &self,
        checkpoint: &CompletedCheckpoint,
        handle: &StateHandle,
        kind: FileKind,
    ) -> Result<Vec<u8>> {
        Self::read_file(&Path::new(&checkpoint.location).join(&handle.file), kind)
    }

    fn load(&self, location: &str) -> Result<CompletedCheckpoint> {
        let dir = Path::new(location);
        if !dir.join(METADATA).exists() {
            return Err(StateError::NoSuchCheckpoint {
                location: location.to_string(),
            });
        }
        let metadata = Self::read_metadata(dir)?;
        Self::verify(dir, &metadata)?;
        Ok(CompletedCheckpoint {
            location: location.to_string(),
            metadata,
        })
    }

    fn latest(&self) -> Result<Option<CompletedCheckpoint>> {
        let mut problems = Vec::new();
        for (id, dir) in self.checkpoint_dirs()? {
            if !dir.join(METADATA).exists() {
                continue; // in progress, or abandoned by a crash
            }
            match Self::read_metadata(&dir).and_then(|m| Self::verify(&dir, &m).map(|_| m)) {
                Ok(metadata) => {
                    return Ok(Some(CompletedCheckpoint {
                        location: dir.display().to_string(),
                        metadata,
                    }));
                }
                Err(e) => problems.push(format!("checkpoint {id}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(None)
        } else {
            Err(StateError::NoValidCheckpoint {
                root: self.root.clone(),
                problems,
            })
        }
    }

    fn subsume(&self, retain: usize) -> Result<Vec<u64>> {
        let dirs = self.checkpoint_dirs()?;
        let complete: Vec<u64> = dirs
            .iter()
            .filter(|(_, d)| d.join(METADATA).exists())
            .map(|(id, _)| *id)
            .take(retain.max(1))
            .collect();
        let Some(&oldest_kept) = complete.last() else {
            return Ok(Vec::new());
        };
        let mut deleted = Vec::new();
        for (id, dir) in dirs {
            if id < oldest_kept {
                fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    fn highest_id(&self) -> Result<Option<u64>> {
        let mut highest = self.checkpoint_dirs()?.first().map(|(id, _)| *id);
        if let Ok(entries) = fs::read_dir(self.root.join("savepoints")) {
            for e in entries.flatten() {
                let id = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("savepoint-"))
                    .and_then(|n| n.parse::<u64>().ok());
                highest = highest.max(id);
            }
        }
        Ok(highest)
    }

    fn abort(&self, id: u64) -> Result<()> {
        let dir = self.dir(id, CheckpointKind::Checkpoint);
        if dir.exists() && !dir.join(METADATA).exists() {
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{OperatorSnapshot, SubtaskSnapshot};
    use crate::KeyGroupRange;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn checkpoint(
        s: &LocalCheckpointStorage,
        id: u64,
        kind: CheckpointKind,
    ) -> CompletedCheckpoint {
        let keyed = s
            .write_state(
                id,
                kind,
                "op-0.keyed",
                FileKind::KeyedState,
                &format::encode(&vec![id; 100]).unwrap(),
            )
            .unwrap();
        let op = s
            .write_state(
                id,
                kind,
                "op-0.operator",
                FileKind::OperatorState,
                b"position",
            )
            .unwrap();
        s.commit(&CheckpointMetadata {
            job: "job".into(),
            checkpoint_id: id,
            kind,
            timestamp_ms: 0,
            unaligned: false,
            operators: vec![OperatorSnapshot {
                uid: "op".into(),
                name: "Op".into(),
                parallelism: 1,
                max_parallelism: 128,
                subtasks: vec![SubtaskSnapshot {
                    subtask: 0,
                    key_groups: Some(KeyGroupRange { start: 0, end: 127 }),
                    keyed: Some(keyed),
                    operator: Some(op),
                    channel: None,
                }],
            }],
            extra: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn latest_retention_and_savepoints() {
        let root = tempdir("retain");
        let s = LocalCheckpointStorage::new(&root);
        assert_eq!(s.latest().unwrap(), None);
        for id in 1..=4 {
            checkpoint(&s, id, CheckpointKind::Checkpoint);
        }
        let sp = checkpoint(&s, 5, CheckpointKind::Savepoint);
        // An incomplete checkpoint (no metadata) newer than all: ignored by latest, kept by subsume.
        s.write_state(
            6,
            CheckpointKind::Checkpoint,
            "partial",
            FileKind::KeyedState,
            b"x",
        )
        .unwrap();
        assert_eq!(s.latest().unwrap().unwrap().metadata.checkpoint_id, 4);
        assert_eq!(s.subsume(2).unwrap(), vec![2, 1]);
        assert!(
            root.join("chk-3").exists()
                && root.join("chk-4").exists()
                && root.join("chk-6").exists()
        );
        let loaded = s.load(&sp.location).unwrap();
        assert_eq!(loaded.metadata.kind, CheckpointKind::Savepoint);
        let payload = s
            .read_state(
                &loaded,
                &loaded.metadata.operators[0].subtasks[0]
                    .operator
                    .clone()
                    .unwrap(),
                FileKind::OperatorState,
            )
            .unwrap();
        assert_eq!(payload, b"position");
        s.abort(6).unwrap();
        assert!(!root.join("chk-6").exists());
        assert!(s.load(root.join("chk-99").to_str().unwrap()).is_err());
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_flipped_byte_falls_back_to_the_previous_checkpoint() {
        let root = tempdir("corrupt");
        let s = LocalCheckpointStorage::new(&root);
        checkpoint(&s, 1, CheckpointKind::Checkpoint);
        checkpoint(&s, 2, CheckpointKind::Checkpoint);
        let victim = root.join("chk-2").join("op-0.keyed");
        let mut bytes = fs::read(&victim).unwrap();
        let n = bytes.len();
        bytes[n - 7] ^= 0x01;
        fs::write(&victim, bytes).unwrap();
        assert_eq!(
            s.latest().unwrap().unwrap().metadata.checkpoint_id,
            1,
            "falls back"
        );
        let e = s.load(root.join("chk-2").to_str().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("checksum") && e.to_string().contains("op-0.keyed"),
            "{e}"
        );
        // With the only checkpoint corrupt, the error says what is wrong.
        fs::remove_dir_all(root.join("chk-1")).unwrap();
        let e = s.latest().unwrap_err();
        assert!(
            e.to_string().contains("checkpoint 2") && e.to_string().contains("checksum"),
            "{e}"
        );
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn state_file_names_are_checked() {
        let s = LocalCheckpointStorage::new(tempdir("names"));
        for bad in ["", "../x", "a/b", ".hidden", "_metadata"] {
            assert!(
                s.write_state(
                    1,
                    CheckpointKind::Checkpoint,
                    bad,
                    FileKind::KeyedState,
                    b""
                )
                .is_err(),
                "{bad}"
            );
        }
    }
}
