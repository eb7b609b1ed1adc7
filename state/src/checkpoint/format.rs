//! The framing of every persisted file, and the serde codec of its payload.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "WEIRSNAP"
//!      8     2  format version (little endian), currently 1
//!     10     1  kind (1 metadata, 2 keyed state, 3 operator state, 4 channel state,
//!                       5 HA record)
//!     11     1  reserved (0)
//!     12     8  payload length in bytes (little endian)
//!     20     4  CRC32 (IEEE) of the payload (little endian)
//!     24     …  payload (bincode 1.3, serde)
//! ```
//!
//! Readers check the magic, the version (newer versions are refused with a clear error), the
//! kind, the length and the checksum before decoding a single payload byte. Decoding is bounded:
//! no payload may claim more memory than a fixed multiple of its own size.

use std::path::Path;

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

use crate::{Result, StateError};

/// The magic number at the start of every file.
pub const MAGIC: &[u8; 8] = b"WEIRSNAP";
/// The format version this build writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header before the payload.
pub const HEADER_LEN: usize = 24;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// A checkpoint's metadata.
    Metadata = 1,
    /// Keyed state of one subtask.
    KeyedState = 2,
    /// Operator (non-keyed) state of one subtask.
    OperatorState = 3,
    /// In-flight records of one subtask (unaligned checkpoints).
    ChannelState = 4,
    /// A record of the high-availability stores (job graph, job result, checkpoint pointer).
    HaRecord = 5,
}

impl FileKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(FileKind::Metadata),
            2 => Some(FileKind::KeyedState),
            3 => Some(FileKind::OperatorState),
            4 => Some(FileKind::ChannelState),
            5 => Some(FileKind::HaRecord),
            _ => None,
        }
    }
}

/// Frames `payload` as a file of `kind`.
pub fn frame(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks the framing of `bytes` (read from `path`, named in errors) and returns the payload.
///
/// # Errors
///
/// Returns [`StateError::CorruptFile`] when `bytes` is shorter than the header, has a bad magic
/// number, a kind other than `expected`, a non-zero reserved byte, a payload length other than the
/// header's, or a checksum mismatch, and [`StateError::UnsupportedVersion`] when its format version
/// is not [`FORMAT_VERSION`].
pub fn unframe<'a>(path: &Path, expected: FileKind, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let corrupt = |reason: String| StateError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if &bytes[0..8] != MAGIC {
        return Err(corrupt(
            "not a weir snapshot file (bad magic number)".into(),
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(StateError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    match FileKind::from_u8(bytes[10]) {
        Some(k) if k == expected => {}
        Some(k) => return Err(corrupt(format!("holds {k:?}, expected {expected:?}"))),
        None => return Err(corrupt(format!("unknown file kind {}", bytes[10]))),
    }
    if bytes[11] != 0 {
        return Err(corrupt(format!(
            "reserved header byte is {}, expected 0",
            bytes[11]
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let len = u64::from_le_bytes(len);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        )));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[20..24]);
    let expected_crc = u32::from_le_bytes(crc);
    let actual = crc32fast::hash(payload);
    if actual != expected_crc {
        return Err(corrupt(format!(
            "checksum mismatch (stored {expected_crc:08x}, computed {actual:08x})"
        )));
    }
    Ok(payload)
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// Encodes a value with serde (bincode 1.3).
///
/// # Errors
///
/// Returns [`StateError::Encode`] when the value cannot be serialized (its `Serialize` fails, or it
/// serializes a sequence or map of unknown length).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    options()
        .serialize(value)
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// Decodes a value from a checked payload. `what` names the data in errors. The decoder may not
/// allocate more than 64 times the payload size plus 1 MiB, whatever lengths the bytes claim.
///
/// # Errors
///
/// Returns [`StateError::Decode`] when `payload` is not an encoding of a `T` or would need more
/// memory than the bound above.
pub fn decode<T: DeserializeOwned>(what: &str, payload: &[u8]) -> Result<T> {
    let limit = (payload.len() as u64)
        .saturating_mul(64)
        .saturating_add(1 << 20);
    options()
        .with_limit(limit)
        .deserialize(payload)
        .map_err(|e| StateError::Decode {
            what: what.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_flipped_byte_is_detected() {
        let payload = encode(&vec![(1u64, "a".to_string()), (2, "b".into())]).unwrap();
        let file = frame(FileKind::KeyedState, &payload);
        let p = Path::new("x.state");
        let back: Vec<(u64, String)> =
            decode("test", unframe(p, FileKind::KeyedState, &file).unwrap()).unwrap();
        assert_eq!(back, vec![(1, "a".to_string()), (2, "b".into())]);
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(
                unframe(p, FileKind::KeyedState, &bad).is_err(),
                "flip at byte {i} undetected"
            );
        }
        let e = unframe(p, FileKind::Metadata, &file).unwrap_err();
        assert!(e.to_string().contains("x.state"), "{e}");
        assert!(unframe(p, FileKind::KeyedState, &file[..10]).is_err());
    }

    #[test]
    fn newer_versions_are_refused() {
        let mut file = frame(FileKind::Metadata, b"{}");
        file[8] = 9;
        let e = unframe(Path::new("m"), FileKind::Metadata, &file).unwrap_err();
        assert!(
            matches!(e, StateError::UnsupportedVersion { version: 9, .. }),
            "{e}"
        );
    }

    #[test]
    fn decoding_is_bounded() {
        // A length prefix claiming 2^40 elements must not allocate.
        let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert!(decode::<Vec<u64>>("huge", &bytes).is_err());
    }
}
