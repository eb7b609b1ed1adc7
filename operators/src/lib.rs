//! # weir-operators: the built-in operators
//!
//! Everything here is written against the public operator API of `weir-engine` — the same
//! traits a user implements for a custom operator — and exposed as extension traits:
//!
//! - [`StreamEnvExt`]: sources — [`from_iter`](StreamEnvExt::from_iter),
//!   [`generate_sequence`](StreamEnvExt::generate_sequence), [`generate`](StreamEnvExt::generate)
//!   (bounded or unbounded, optionally rate-limited);
//! - [`DataStreamExt`]: `map`, `filter`, `flat_map`, and the sinks `collect`, `print`, `discard`;
//! - [`KeyedStreamExt`]: `reduce` and `process` (a [`KeyedProcessFunction`] with keyed state and
//!   timers).
//!
//! ```
//! use weir_engine::StreamEnv;
//! use weir_operators::{DataStreamExt, KeyedStreamExt, StreamEnvExt};
//!
//! let env = StreamEnv::new();
//! let words = env
//!     .from_iter(vec!["a b".to_string(), "b c".into(), "c".into()])
//!     .flat_map(|line: String| line.split(' ').map(|w| (w.to_string(), 1u64)).collect::<Vec<_>>())
//!     .key_by(|(w, _)| w.clone())
//!     .reduce(|(w, a), (_, b)| (w, a + b))
//!     .collect();
//! env.execute().unwrap();
//! let mut counts = words.take();
//! counts.sort();
//! assert_eq!(counts.last(), Some(&("c".to_string(), 2)));
//! ```
//!
//! Invariant: built-in operators hold no hidden state outside the engine's keyed state, so the
//! checkpointing issue can snapshot them without special cases.

pub mod keyed;
pub mod sink;
pub mod source;
pub mod transform;

mod ext;

pub use ext::{DataStreamExt, KeyedStreamExt, StreamEnvExt};
pub use keyed::{KeyedProcessFunction, Reduce};
pub use sink::two_phase::{FileTransactions, FileTxn, TransactionalSink, TwoPhaseCommit};
pub use sink::{CollectHandle, CollectSink, DiscardSink, PrintSink};
pub use source::split::{
    directory_splits, sequence_splits, LinesReader, RangeReader, SplitEnumerator, SplitReader,
    SplitSource,
};
pub use source::{Generator, GeneratorSource, IterSource};
pub use transform::{Filter, FlatMap, Map};
