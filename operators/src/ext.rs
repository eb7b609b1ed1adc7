//! Extension traits that give streams and environments their built-in operators.

use std::fmt::Debug;
use std::ops::Range;

use weir_engine::{Data, DataStream, DataStreamSink, Key, KeySelector, KeyedStream, StreamEnv};

use crate::keyed::{KeyedProcess, KeyedProcessFunction, Reduce};
use crate::sink::{CollectHandle, DiscardSink, PrintSink};
use crate::source::{Generator, IterSource, SequenceSource};
use crate::transform::{Filter, FlatMap, Map};

/// Built-in sources.
pub trait StreamEnvExt {
    /// The items of a collection or iterator, in order, from one (non-parallel) subtask.
    // Named after what it reads (Flink's `fromCollection`), not a `From` conversion of `self`.
    #[allow(clippy::wrong_self_convention)]
    fn from_iter<I>(&self, items: I) -> DataStream<I::Item>
    where
        I: IntoIterator + Clone + Send + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Data;

    /// The numbers `range`, generated in parallel (subtask `i` of `p`: `start + i`, `+ p`, ...).
    fn generate_sequence(&self, range: Range<u64>) -> DataStream<u64>;

    /// Records from a [`Generator`] (bounded or not, optionally rate-limited), in parallel.
    fn generate<T: Data>(&self, generator: Generator<T>) -> DataStream<T>;

    /// A split source: a [`SplitEnumerator`](crate::SplitEnumerator) coordinator hands
    /// `splits` out on request, each subtask reads them with a reader from `make_reader`.
    /// Every split is read exactly once in what checkpoints cover.
    fn split_source<R, M>(
        &self,
        name: &str,
        splits: Vec<R::Split>,
        make_reader: M,
    ) -> DataStream<R::Out>
    where
        R: crate::SplitReader,
        M: FnMut() -> R + Send + 'static;
}

impl StreamEnvExt for StreamEnv {
    fn from_iter<I>(&self, items: I) -> DataStream<I::Item>
    where
        I: IntoIterator + Clone + Send + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Data,
    {
        self.add_non_parallel_source("Collection Source", move |_| {
            IterSource::new(items.clone().into_iter())
        })
    }

    fn generate_sequence(&self, range: Range<u64>) -> DataStream<u64> {
        self.add_source("Sequence Source", move |info| {
            SequenceSource::new(range.clone(), info)
        })
    }

    fn generate<T: Data>(&self, generator: Generator<T>) -> DataStream<T> {
        self.add_source("Generator Source", move |info| generator.instance(info))
    }

    fn split_source<R, M>(
        &self,
        name: &str,
        splits: Vec<R::Split>,
        mut make_reader: M,
    ) -> DataStream<R::Out>
    where
        R: crate::SplitReader,
        M: FnMut() -> R + Send + 'static,
    {
        self.add_source(name, move |_| crate::SplitSource::new(make_reader()))
            .coordinated_by(move |_| crate::SplitEnumerator::new(splits))
    }
}

/// Built-in transforms and sinks.
pub trait DataStreamExt<T: Data> {
    /// Applies `f` to every record.
    fn map<U: Data, F: FnMut(T) -> U + Clone + Send + 'static>(&self, f: F) -> DataStream<U>;
    /// Keeps the records for which `f` holds.
    fn filter<F: FnMut(&T) -> bool + Clone + Send + 'static>(&self, f: F) -> DataStream<T>;
    /// Turns every record into zero or more.
    fn flat_map<U, I, F>(&self, f: F) -> DataStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        F: FnMut(T) -> I + Clone + Send + 'static;
    /// Collects every record; read them from the handle after the job ended.
    fn collect(&self) -> CollectHandle<T>;
    /// Prints every record to standard output.
    fn print(&self) -> DataStreamSink
    where
        T: Debug;
    /// Drops every record.
    fn discard(&self) -> DataStreamSink;
}

impl<T: Data> DataStreamExt<T> for DataStream<T> {
    fn map<U: Data, F: FnMut(T) -> U + Clone + Send + 'static>(&self, f: F) -> DataStream<U> {
        self.transform("Map", move |_| Map::new(f.clone()))
    }
    fn filter<F: FnMut(&T) -> bool + Clone + Send + 'static>(&self, f: F) -> DataStream<T> {
        self.transform("Filter", move |_| Filter::new(f.clone()))
    }
    fn flat_map<U, I, F>(&self, f: F) -> DataStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        F: FnMut(T) -> I + Clone + Send + 'static,
    {
        self.transform("Flat Map", move |_| FlatMap::new(f.clone()))
    }
    fn collect(&self) -> CollectHandle<T> {
        let handle = CollectHandle::default();
        let h = handle.clone();
        self.sink("Collect Sink", move |info| h.sink(info));
        handle
    }
    fn print(&self) -> DataStreamSink
    where
        T: Debug,
    {
        self.sink("Print Sink", |_| PrintSink::default())
    }
    fn discard(&self) -> DataStreamSink {
        self.sink("Discard Sink", |_| DiscardSink::default())
    }
}

/// Built-in keyed operators.
pub trait KeyedStreamExt<T: Data, K: Key> {
    /// Folds each key's records with `f(accumulated, new)` and emits every new value.
    fn reduce<F: FnMut(T, T) -> T + Clone + Send + 'static>(&self, f: F) -> DataStream<T>;
    /// Runs a keyed process function.
    fn process<O: Data, P: KeyedProcessFunction<K, T, O>>(&self, f: P) -> DataStream<O>;
}

impl<T: Data, K: Key, S: KeySelector<T, K>> KeyedStreamExt<T, K> for KeyedStream<T, K, S> {
    fn reduce<F: FnMut(T, T) -> T + Clone + Send + 'static>(&self, f: F) -> DataStream<T> {
        self.transform("Reduce", move |_| Reduce::new(f.clone()))
    }
    fn process<O: Data, P: KeyedProcessFunction<K, T, O>>(&self, f: P) -> DataStream<O> {
        self.transform("Keyed Process", move |_| KeyedProcess::new(f.clone()))
    }
}
