//! A channel whose messages cross a pipe as bytes: the second implementation of
//! [`ChannelSend`], and the shape of a channel between processes.
//!
//! The sending half ([`EncodedSender`]) encodes every buffer and event into a *frame*; the
//! receiving half ([`FrameReceiver`]) checks and decodes each frame and hands the message to
//! the receiver's input gate through the in-process channel below it. Both halves live in one
//! process here and the pipe is a call, so the gate's credit decides synchronously what moves:
//! a message the gate does not take (no credit) goes back to the writer's `pending` queue, as
//! a remote sender keeps buffers it has no credit for.
//!
//! A frame:
//!
//! ```text
//! offset  size  field
//!      0     2  wire format version (little endian), currently 1
//!      2     1  kind (1 records, 2 event, 3 priority event)
//!      3     …  payload (bincode 1.3, serde): a Vec<T> or an Event
//! ```
//!
//! A frame of another version or kind, or whose payload does not decode, is refused with a
//! [`ChannelError`] naming what was wrong; nothing of it reaches the gate.

use std::collections::VecDeque;

use serde::{de::DeserializeOwned, Serialize};

use super::gate::ChannelSender;
use super::{ChannelError, ChannelSend, Event, Message, SendOutcome};

/// The version of the frames this build writes and reads.
pub(crate) const WIRE_VERSION: u16 = 1;

const RECORDS: u8 = 1;
const EVENT: u8 = 2;
const PRIORITY: u8 = 3;

fn frame<P: Serialize + ?Sized>(kind: u8, payload: &P) -> Result<Vec<u8>, String> {
    let mut out = WIRE_VERSION.to_le_bytes().to_vec();
    out.push(kind);
    let body = weir_state::checkpoint::format::encode(payload).map_err(|e| e.to_string())?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Encodes a message into a frame.
pub(crate) fn encode_message<T: Serialize>(message: &Message<T>) -> Result<Vec<u8>, String> {
    match message {
        Message::Records(records) => frame(RECORDS, records),
        Message::Event(event) => frame(EVENT, event),
    }
}

/// Encodes an event for the priority lane into a frame.
pub(crate) fn encode_priority(event: &Event) -> Result<Vec<u8>, String> {
    frame(PRIORITY, event)
}

fn decode<P: DeserializeOwned>(what: &str, payload: &[u8]) -> Result<P, String> {
    weir_state::checkpoint::format::decode(what, payload).map_err(|e| e.to_string())
}

/// What a frame carries, decoded.
#[derive(Debug)]
pub(crate) enum Decoded<T> {
    /// A message of the channel's normal lane.
    Message(Message<T>),
    /// An event of the priority lane.
    Priority(Event),
}

/// Checks and decodes a frame.
///
/// # Errors
/// A frame too short, of another wire version or of an unknown kind, or whose payload does not
/// decode: the error names which.
pub(crate) fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<Decoded<T>, String> {
    let Some((head, payload)) = bytes.split_at_checked(3) else {
        return Err(format!(
            "a frame of {} bytes is shorter than its header",
            bytes.len()
        ));
    };
    let version = u16::from_le_bytes([head[0], head[1]]);
    if version != WIRE_VERSION {
        return Err(format!(
            "a frame of wire version {version}; this build reads version {WIRE_VERSION}"
        ));
    }
    match head[2] {
        RECORDS => Ok(Decoded::Message(Message::Records(decode(
            "a buffer of records",
            payload,
        )?))),
        EVENT => Ok(Decoded::Message(Message::Event(decode(
            "an event", payload,
        )?))),
        PRIORITY => Ok(Decoded::Priority(decode("a priority event", payload)?)),
        kind => Err(format!("a frame of unknown kind {kind}")),
    }
}

/// The receiving half: decodes frames into the receiver's gate (through the in-process channel
/// that ends there), under the gate's credit.
pub(crate) struct FrameReceiver<T> {
    gate: ChannelSender<T>,
    channel: usize,
}

impl<T: Clone + Send + DeserializeOwned> FrameReceiver<T> {
    /// Delivers the frames at the front of `frames` while the gate has credit for them; the
    /// first `forced` go without credit. Frames the gate does not take stay in `frames`.
    fn deliver(
        &self,
        frames: &mut VecDeque<Vec<u8>>,
        spare: &mut Option<VecDeque<T>>,
        forced: usize,
    ) -> Result<SendOutcome, ChannelError> {
        let mut decoded = VecDeque::with_capacity(frames.len());
        for f in frames.iter() {
            match decode_frame::<T>(f).map_err(|reason| self.error(reason))? {
                Decoded::Message(m) => decoded.push_back(m),
                Decoded::Priority(_) => {
                    return Err(self.error("a priority event in the normal lane".into()))
                }
            }
        }
        let outcome = self.gate.send(&mut decoded, spare, forced);
        // What the gate took left the front of `decoded`; the same number of frames went.
        let taken = frames.len() - decoded.len();
        frames.drain(..taken);
        Ok(outcome)
    }

    fn deliver_priority(&self, frame: &[u8]) -> Result<(), ChannelError> {
        match decode_frame::<T>(frame).map_err(|reason| self.error(reason))? {
            Decoded::Priority(event) => {
                self.gate.send_priority(event);
                Ok(())
            }
            Decoded::Message(_) => Err(self.error("a normal message in the priority lane".into())),
        }
    }

    fn error(&self, reason: String) -> ChannelError {
        ChannelError {
            channel: self.channel,
            reason,
        }
    }
}

/// The sending half: every message leaves as a frame.
pub(crate) struct EncodedSender<T> {
    far: FrameReceiver<T>,
}

impl<T> EncodedSender<T> {
    /// A channel into the gate that `gate` (channel `channel` of it) sends to, through frames.
    pub(crate) fn new(gate: ChannelSender<T>, channel: usize) -> Self {
        EncodedSender {
            far: FrameReceiver { gate, channel },
        }
    }
}

impl<T: Clone + Send + Serialize + DeserializeOwned> ChannelSend<T> for EncodedSender<T> {
    fn send(
        &self,
        pending: &mut VecDeque<Message<T>>,
        spare: &mut Option<VecDeque<T>>,
        forced: usize,
    ) -> Result<SendOutcome, ChannelError> {
        if pending.is_empty() {
            return Ok(SendOutcome::default());
        }
        let mut frames = VecDeque::with_capacity(pending.len());
        for m in pending.iter() {
            frames.push_back(encode_message(m).map_err(|reason| self.far.error(reason))?);
        }
        let outcome = self.far.deliver(&mut frames, spare, forced)?;
        // The messages whose frames the far side took are sent; the rest stay pending.
        let sent = pending.len() - frames.len();
        pending.drain(..sent);
        Ok(outcome)
    }

    fn send_priority(&self, event: Event) -> Result<(), ChannelError> {
        let frame = encode_priority(&event).map_err(|reason| self.far.error(reason))?;
        self.far.deliver_priority(&frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Barrier;
    use crate::time::Watermark;
    use weir_state::checkpoint::CheckpointKind;

    #[test]
    fn frames_round_trip_and_bad_frames_are_named() {
        let records: Message<u64> = Message::Records(VecDeque::from(vec![1, 2, 3]));
        let f = encode_message(&records).unwrap();
        assert_eq!(&f[..2], &WIRE_VERSION.to_le_bytes());
        match decode_frame::<u64>(&f).unwrap() {
            Decoded::Message(Message::Records(r)) => assert_eq!(r, VecDeque::from(vec![1, 2, 3])),
            other => panic!("{other:?}"),
        }
        let barrier = Event::Barrier(Barrier {
            id: 7,
            timestamp_ms: 1,
            kind: CheckpointKind::Checkpoint,
            unaligned: true,
        });
        match decode_frame::<u64>(&encode_priority(&barrier).unwrap()).unwrap() {
            Decoded::Priority(e) => assert_eq!(e, barrier),
            other => panic!("{other:?}"),
        }
        let wm = encode_message::<u64>(&Message::Event(Event::Watermark(Watermark(5)))).unwrap();
        assert!(matches!(
            decode_frame::<u64>(&wm).unwrap(),
            Decoded::Message(Message::Event(Event::Watermark(Watermark(5))))
        ));

        let mut newer = f.clone();
        newer[0] = 9;
        let e = decode_frame::<u64>(&newer).unwrap_err();
        assert!(e.contains("wire version 9"), "{e}");
        let mut kind = f.clone();
        kind[2] = 42;
        assert!(decode_frame::<u64>(&kind)
            .unwrap_err()
            .contains("unknown kind 42"));
        assert!(decode_frame::<u64>(&f[..2])
            .unwrap_err()
            .contains("shorter than its header"));
        let e = decode_frame::<u64>(&f[..f.len() - 3]).unwrap_err();
        assert!(e.contains("a buffer of records"), "{e}");
    }
}
