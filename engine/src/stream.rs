//! The typed job API: an environment, data streams and keyed streams, in the spirit of Flink's
//! DataStream API.
//!
//! Building a job only records operators and edges in the environment's graph; nothing runs
//! until [`StreamEnv::execute`] or [`StreamEnv::start`]. Mistakes found while building (a
//! property set on a union, streams of two environments combined) are kept and reported as a
//! [`ValidationError`] when the job starts, together with the checks
//! that need the whole graph (parallelism, uids, forward edges).
//!
//! The built-in transforms (`map`, `filter`, `reduce`, sources and sinks, ...) live in
//! `weir-operators` as extension traits over [`DataStream::transform`],
//! [`KeyedStream::transform`], [`DataStream::sink`] and [`StreamEnv::add_source`].

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::async_io::{AsyncIo, AsyncLink, AsyncResult};
use crate::checkpoint::RestoreState;
use crate::config::Config;
use crate::coordination::gateway::ToCoordinator;
use crate::coordination::runner::CoordinatorHandle;
use crate::coordination::{Coordinator, CoordinatorContext, CoordinatorInfo};
use crate::data::{Data, Key, KeySelector};
use crate::error::{Result, UserError, ValidationError};
use crate::graph::{
    chain, CoordinatorFactory, EdgeSpec, Graph, KeyRouterImpl, LinkFactory, Node, NodeKind,
    Partition, SourceFactory, TypeOps, TypedEdge,
};
use crate::job::{JobHandle, JobResult};
use crate::operator::output::Output;
use crate::operator::watermarks::{TimestampsAndWatermarks, WatermarkStrategy};
use crate::operator::{KeyedOperator, Operator, OperatorInfo, Sink, Source};
use crate::task::chain::{KeyedLink, OperatorLink, SinkLink};
use crate::task::run::{SourceTask, TaskBody};

static NEXT_ENV: AtomicUsize = AtomicUsize::new(1);

/// The environment a job is built in, and from which it runs.
pub struct StreamEnv {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

impl Default for StreamEnv {
    fn default() -> Self {
        StreamEnv::new()
    }
}

impl StreamEnv {
    /// An environment with the default configuration.
    pub fn new() -> Self {
        StreamEnv::with_config(Config::default())
    }

    /// An environment with `config`.
    pub fn with_config(config: Config) -> Self {
        StreamEnv {
            graph: Rc::new(RefCell::new(Graph {
                id: NEXT_ENV.fetch_add(1, Ordering::Relaxed),
                job_id: None,
                config,
                storage: None,
                commit_fence: Default::default(),
                nodes: Vec::new(),
                errors: Vec::new(),
                async_io: false,
                runtime: None,
                coordinators: Vec::new(),
            })),
        }
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.graph.borrow().config.clone()
    }

    /// Sets the job's id (as the REST API and metrics name it); by default a job gets 32
    /// fresh random hex digits when it starts. A session runtime sets its own ids.
    pub fn set_job_id(&self, id: &str) -> &Self {
        self.graph.borrow_mut().job_id = Some(id.to_string());
        self
    }

    /// Changes the configuration.
    pub fn configure(&self, f: impl FnOnce(&mut Config)) -> &Self {
        f(&mut self.graph.borrow_mut().config);
        self
    }

    /// Uses `storage` for checkpoints instead of the local directory `execution.checkpointing.dir`
    /// (for example an object store, or a storage that injects failures in tests).
    pub fn set_checkpoint_storage(
        &self,
        storage: std::sync::Arc<dyn weir_state::checkpoint::CheckpointStorage>,
    ) -> &Self {
        self.graph.borrow_mut().storage = Some(storage);
        self
    }

    /// Sets the job's commit fence, which two-phase-commit sinks ask before every external
    /// commit (see [`crate::fence`]); a runtime that can be deposed sets one per job. Without
    /// it every commit is allowed.
    pub fn set_commit_fence(&self, fence: crate::fence::CommitFence) -> &Self {
        self.graph.borrow_mut().commit_fence = fence;
        self
    }

    /// Sets the default parallelism (`parallelism.default`).
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.configure(|c| c.default_parallelism = parallelism)
    }

    /// Adds a parallel source: `make` builds one source per subtask.
    pub fn add_source<S, M>(&self, name: &str, make: M) -> DataStream<S::Out>
    where
        S: Source,
        M: FnMut(&OperatorInfo) -> S + Send + 'static,
    {
        self.source_node(name, make, false)
    }

    /// Adds a non-parallel source (parallelism 1; a larger one is a validation error).
    pub fn add_non_parallel_source<S, M>(&self, name: &str, make: M) -> DataStream<S::Out>
    where
        S: Source,
        M: FnMut(&OperatorInfo) -> S + Send + 'static,
    {
        self.source_node(name, make, true)
    }

    fn source_node<S, M>(&self, name: &str, make: M, non_parallel: bool) -> DataStream<S::Out>
    where
        S: Source,
        M: FnMut(&OperatorInfo) -> S + Send + 'static,
    {
        let id = {
            let mut g = self.graph.borrow_mut();
            g.nodes.push(Node {
                name: name.to_string(),
                uid: None,
                parallelism: None,
                max_parallelism: None,
                chainable: true,
                non_parallel,
                inputs: Vec::new(),
                kind: NodeKind::Source(Box::new(SourceNode {
                    make,
                    _s: PhantomData,
                })),
                in_type: None,
                out_type: Some(TypeOps::<S::Out>::boxed()),
                coordinator: None,
                coordinatable: true,
            });
            g.nodes.len() - 1
        };
        DataStream::of_node(self.graph.clone(), id)
    }

    /// Starts the job on its own threads and returns a handle to it. With `rest.port` set, the
    /// job also serves its REST API, metrics and dashboard ([`crate::rest`]) until the handle
    /// is dropped or joined ([`JobHandle::rest_url`](crate::JobHandle::rest_url)).
    ///
    /// # Errors
    ///
    /// Returns [`JobError::Validation`](crate::JobError::Validation) or
    /// [`JobError::Config`](crate::JobError::Config) when the job or its configuration is invalid,
    /// [`JobError::RestoreRead`](crate::JobError::RestoreRead) or
    /// [`JobError::Restore`](crate::JobError::Restore) when the checkpoint of
    /// `execution.state-recovery.path` cannot be read or does not fit the job,
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) when an operator
    /// coordinator fails to start, and [`JobError::Start`](crate::JobError::Start) (for an
    /// operator coordinator's thread, [`JobError::Internal`](crate::JobError::Internal)) when a
    /// thread cannot be started; [`JobError::Rest`](crate::JobError::Rest) when its REST server
    /// cannot start (the job is then cancelled).
    pub fn start(self) -> Result<JobHandle> {
        let graph = Rc::try_unwrap(self.graph)
            .map(RefCell::into_inner)
            .unwrap_or_else(|rc| {
                // Streams still refer to the graph: take its contents, leave an empty graph.
                let mut g = rc.borrow_mut();
                Graph {
                    id: g.id,
                    job_id: g.job_id.take(),
                    config: g.config.clone(),
                    storage: g.storage.take(),
                    commit_fence: g.commit_fence.clone(),
                    nodes: std::mem::take(&mut g.nodes),
                    errors: std::mem::take(&mut g.errors),
                    async_io: g.async_io,
                    runtime: None,
                    coordinators: Vec::new(),
                }
            });
        let rest = graph
            .config
            .rest_port
            .is_some()
            .then(|| crate::rest::RestOptions::from_config(&graph.config, 0));
        let rest = rest.transpose()?;
        let mut handle = crate::job::start(graph)?;
        if let Some(options) = rest {
            let directory = crate::rest::JobDirectory::new();
            directory.register(handle.observer());
            let server = crate::rest::RestServer::builder(options, directory).start()?;
            handle.rest_url = Some(server.url());
            handle.attachments.push(Box::new(server));
        }
        Ok(handle)
    }

    /// Runs the job to completion and returns its result.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`StreamEnv::start`] when the job cannot start, then those of
    /// [`JobHandle::join`] when it fails and is not restarted.
    pub fn execute(self) -> Result<JobResult> {
        self.start()?.join()
    }
}

struct SourceNode<S, M> {
    make: M,
    _s: PhantomData<fn() -> S>,
}

impl<S: Source, M: FnMut(&OperatorInfo) -> S + Send> SourceFactory for SourceNode<S, M> {
    fn build(
        &mut self,
        info: OperatorInfo,
        chain_box: Box<dyn Any>,
        restore: RestoreState,
        coordinator: Option<ToCoordinator>,
    ) -> Box<dyn TaskBody> {
        let source = (self.make)(&info);
        Box::new(SourceTask {
            source,
            info,
            coordinator,
            chain: chain::<S::Out>(chain_box),
            restore: restore.operator,
        })
    }
}

struct OperatorNode<O, M> {
    make: M,
    _o: PhantomData<fn() -> O>,
}

impl<O: Operator, M: FnMut(&OperatorInfo) -> O + Send> LinkFactory for OperatorNode<O, M> {
    fn build(
        &mut self,
        info: OperatorInfo,
        index: usize,
        next: Box<dyn Any>,
        restore: RestoreState,
        coordinator: Option<ToCoordinator>,
    ) -> Box<dyn Any> {
        let op = (self.make)(&info);
        let mut link = OperatorLink::new(op, chain::<O::Out>(next), index, info);
        link.restore = restore.operator;
        link.coordinator = coordinator;
        let link: Box<dyn Output<O::In>> = Box::new(link);
        Box::new(link)
    }
}

struct KeyedNode<O, M, F> {
    make: M,
    key_fn: F,
    _o: PhantomData<fn() -> O>,
}

impl<O, M, F> LinkFactory for KeyedNode<O, M, F>
where
    O: KeyedOperator,
    M: FnMut(&OperatorInfo) -> O + Send,
    F: KeySelector<O::In, O::Key>,
{
    fn build(
        &mut self,
        info: OperatorInfo,
        index: usize,
        next: Box<dyn Any>,
        restore: RestoreState,
        _coordinator: Option<ToCoordinator>,
    ) -> Box<dyn Any> {
        let op = (self.make)(&info);
        let mut link = KeyedLink::new(op, self.key_fn.clone(), chain::<O::Out>(next), index, info);
        link.restore = restore.keyed;
        let link: Box<dyn Output<O::In>> = Box::new(link);
        Box::new(link)
    }
}

struct SinkNode<S, M> {
    make: M,
    _s: PhantomData<fn() -> S>,
}

impl<S: Sink, M: FnMut(&OperatorInfo) -> S + Send> LinkFactory for SinkNode<S, M> {
    fn build(
        &mut self,
        info: OperatorInfo,
        index: usize,
        _next: Box<dyn Any>,
        restore: RestoreState,
        _coordinator: Option<ToCoordinator>,
    ) -> Box<dyn Any> {
        let sink = (self.make)(&info);
        let link: Box<dyn Output<S::In>> = Box::new(SinkLink {
            sink,
            index,
            info,
            restore: restore.operator,
        });
        Box::new(link)
    }
}

struct CoordinatorNode<C, M> {
    make: Option<M>,
    _c: PhantomData<fn() -> C>,
}

impl<C, M> CoordinatorFactory for CoordinatorNode<C, M>
where
    C: Coordinator,
    M: FnOnce(&CoordinatorInfo) -> C + Send,
{
    fn spawn(
        &mut self,
        ctx: CoordinatorContext,
        fail: std::sync::Arc<dyn Fn(crate::error::JobError) + Send + Sync>,
    ) -> std::io::Result<std::sync::Arc<CoordinatorHandle>> {
        let make = self.make.take().ok_or_else(|| {
            std::io::Error::other("a coordinator factory can start one coordinator")
        })?;
        let coordinator = make(&ctx.info);
        CoordinatorHandle::spawn(coordinator, ctx, fail)
    }
}

struct AsyncNode<In, Out, F> {
    function: F,
    settings: AsyncIo<In, Out>,
}

impl<In, Out, F, Fut> LinkFactory for AsyncNode<In, Out, F>
where
    In: Data + std::fmt::Debug,
    Out: Data,
    F: Fn(In) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::result::Result<Vec<Out>, UserError>> + Send + 'static,
{
    fn build(
        &mut self,
        info: OperatorInfo,
        index: usize,
        next: Box<dyn Any>,
        restore: RestoreState,
        _coordinator: Option<ToCoordinator>,
    ) -> Box<dyn Any> {
        let f = self.function.clone();
        let call: Box<dyn FnMut(In) -> AsyncResult<Out> + Send> =
            Box::new(move |x| Box::pin(f(x)) as AsyncResult<Out>);
        let mut link = AsyncLink::new(call, self.settings.clone(), chain::<Out>(next), index, info);
        link.restore = restore.operator;
        let link: Box<dyn Output<In>> = Box::new(link);
        Box::new(link)
    }
}

/// A stream of records of type `T`: the output of an operator, a union of streams, or a
/// repartitioned stream.
pub struct DataStream<T: Data> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    inputs: Vec<(usize, Partition<T>)>,
    node: Option<usize>,
    what: &'static str,
}

impl<T: Data> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            graph: self.graph.clone(),
            inputs: self.inputs.clone(),
            node: self.node,
            what: self.what,
        }
    }
}

impl<T: Data> DataStream<T> {
    fn of_node(graph: Rc<RefCell<Graph>>, id: usize) -> Self {
        DataStream {
            graph,
            inputs: vec![(id, Partition::Default)],
            node: Some(id),
            what: "operator",
        }
    }

    fn add_node(
        &self,
        name: &str,
        kind: NodeKind,
        out_type: Option<Box<dyn crate::graph::StreamType>>,
    ) -> usize {
        let mut g = self.graph.borrow_mut();
        let inputs = self
            .inputs
            .iter()
            .map(|(from, p)| EdgeSpec {
                from: *from,
                kind: p.kind(),
                connector: Box::new(TypedEdge {
                    partition: p.clone(),
                }),
            })
            .collect();
        g.nodes.push(Node {
            name: name.to_string(),
            uid: None,
            parallelism: None,
            max_parallelism: None,
            chainable: true,
            non_parallel: false,
            inputs,
            kind,
            in_type: Some(TypeOps::<T>::boxed()),
            out_type,
            coordinator: None,
            coordinatable: false,
        });
        g.nodes.len() - 1
    }

    /// Applies an operator: `make` builds one instance per subtask.
    pub fn transform<O, M>(&self, name: &str, make: M) -> DataStream<O::Out>
    where
        O: Operator<In = T>,
        M: FnMut(&OperatorInfo) -> O + Send + 'static,
    {
        let kind = NodeKind::Operator(Box::new(OperatorNode {
            make,
            _o: PhantomData,
        }));
        let id = self.add_node(name, kind, Some(TypeOps::<O::Out>::boxed()));
        self.graph.borrow_mut().nodes[id].coordinatable = true;
        DataStream::of_node(self.graph.clone(), id)
    }

    /// Attaches a coordinator to the operator (or source) that produces this stream: `make`
    /// builds it once when the job starts; it runs on the job side for the whole job and
    /// exchanges events with the operator's subtasks. See [`coordination`](crate::coordination).
    pub fn coordinated_by<C, M>(self, make: M) -> Self
    where
        C: Coordinator,
        M: FnOnce(&CoordinatorInfo) -> C + Send + 'static,
    {
        let factory: Box<dyn CoordinatorFactory> = Box::new(CoordinatorNode {
            make: Some(make),
            _c: PhantomData,
        });
        if let Some(id) = self.node {
            let mut g = self.graph.borrow_mut();
            if !g.nodes[id].coordinatable {
                let operator = g.nodes[id].name.clone();
                g.errors.push(ValidationError::InvalidSetting {
                    operator,
                    setting: "coordinator",
                    expected: "a source or a one-input operator (transform); keyed and async I/O operators and sinks take no coordinator",
                });
                drop(g);
                return self;
            }
        }
        self.with_node("coordinator", move |n| n.coordinator = Some(factory))
    }

    /// Calls an external service for every record without waiting for it: `function` returns
    /// a future (run on the job's tokio runtime) with the results for one record. `settings`
    /// bounds the requests in flight per subtask and sets the output order, the timeout and
    /// retries; see [`async_io`](crate::async_io) for the guarantees (bounded, exactly once,
    /// never blocks a checkpoint).
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_engine::async_io::AsyncIo;
    /// # use weir_engine::{StreamEnv, Source, SourceContext, SourceStatus, UserError};
    /// # struct Two(u64);
    /// # impl Source for Two {
    /// #     type Out = u64;
    /// #     fn poll_next(&mut self, ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
    /// #         if self.0 == 2 { return Ok(SourceStatus::Finished); }
    /// #         ctx.emit(self.0); self.0 += 1; Ok(SourceStatus::MoreAvailable)
    /// #     }
    /// # }
    /// let env = StreamEnv::new();
    /// env.add_source("ids", |_| Two(0))
    ///     .async_io(
    ///         "lookup",
    ///         |id: u64| async move {
    ///             tokio::time::sleep(Duration::from_millis(5)).await; // the remote call
    ///             Ok(vec![format!("user-{id}")])
    ///         },
    ///         AsyncIo::ordered(100).timeout(Duration::from_secs(5)),
    ///     );
    /// env.execute().unwrap();
    /// ```
    pub fn async_io<Out, F, Fut>(
        &self,
        name: &str,
        function: F,
        settings: AsyncIo<T, Out>,
    ) -> DataStream<Out>
    where
        T: std::fmt::Debug,
        Out: Data,
        F: Fn(T) -> Fut + Clone + Send + 'static,
        Fut:
            std::future::Future<Output = std::result::Result<Vec<Out>, UserError>> + Send + 'static,
    {
        if settings.capacity == 0 {
            self.graph
                .borrow_mut()
                .errors
                .push(ValidationError::InvalidSetting {
                    operator: name.to_string(),
                    setting: "capacity",
                    expected: "at least 1 (the bound on queued requests per subtask)",
                });
        }
        self.graph.borrow_mut().async_io = true;
        let kind = NodeKind::Operator(Box::new(AsyncNode { function, settings }));
        let id = self.add_node(name, kind, Some(TypeOps::<Out>::boxed()));
        DataStream::of_node(self.graph.clone(), id)
    }

    /// Ends the stream in a sink: `make` builds one sink per subtask.
    pub fn sink<S, M>(&self, name: &str, make: M) -> DataStreamSink
    where
        S: Sink<In = T>,
        M: FnMut(&OperatorInfo) -> S + Send + 'static,
    {
        let kind = NodeKind::Operator(Box::new(SinkNode {
            make,
            _s: PhantomData,
        }));
        let id = self.add_node(name, kind, None);
        DataStreamSink {
            graph: self.graph.clone(),
            node: id,
        }
    }

    /// Partitions the stream by key: every record of a key goes to the subtask owning the key's
    /// key group.
    pub fn key_by<K: Key, F: KeySelector<T, K>>(&self, key_fn: F) -> KeyedStream<T, K, F> {
        let router = Box::new(KeyRouterImpl {
            key_fn: key_fn.clone(),
            _k: PhantomData::<fn() -> K>,
        });
        KeyedStream {
            stream: self.repartition(Partition::KeyGroups(router)),
            key_fn,
            _k: PhantomData,
        }
    }

    fn repartition(&self, p: Partition<T>) -> DataStream<T> {
        DataStream {
            graph: self.graph.clone(),
            inputs: self.inputs.iter().map(|(n, _)| (*n, p.clone())).collect(),
            node: None,
            what: "partitioned",
        }
    }

    /// Sends each record to the downstream subtask of the same index (needs equal parallelism).
    pub fn forward(&self) -> DataStream<T> {
        self.repartition(Partition::Forward)
    }

    /// Distributes records round-robin over the downstream subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.repartition(Partition::Rebalance)
    }

    /// Sends every record to every downstream subtask.
    pub fn broadcast(&self) -> DataStream<T> {
        self.repartition(Partition::Broadcast)
    }

    /// Merges this stream with others of the same type.
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        let mut inputs = self.inputs.clone();
        for o in others {
            if !Rc::ptr_eq(&o.graph, &self.graph) {
                let name = self.describe();
                self.graph
                    .borrow_mut()
                    .errors
                    .push(ValidationError::ForeignStream { operator: name });
                continue;
            }
            inputs.extend(o.inputs.iter().cloned());
        }
        DataStream {
            graph: self.graph.clone(),
            inputs,
            node: None,
            what: "union",
        }
    }

    /// Assigns timestamps and emits watermarks (and idleness) as `strategy` says; chained right
    /// after the source this is the source's watermark generator.
    pub fn assign_timestamps_and_watermarks(
        &self,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        let interval = self.graph.borrow().config.auto_watermark_interval;
        self.transform("Timestamps/Watermarks", move |_info| {
            TimestampsAndWatermarks::new(strategy.clone(), interval)
        })
    }

    fn describe(&self) -> String {
        let g = self.graph.borrow();
        self.inputs
            .first()
            .map(|(n, _)| g.nodes[*n].name.clone())
            .unwrap_or_default()
    }

    fn with_node(self, property: &'static str, f: impl FnOnce(&mut Node)) -> Self {
        match self.node {
            Some(id) => f(&mut self.graph.borrow_mut().nodes[id]),
            None => self
                .graph
                .borrow_mut()
                .errors
                .push(ValidationError::NotAnOperator {
                    property,
                    stream: self.what,
                }),
        }
        self
    }

    /// Names the operator that produces this stream.
    pub fn name(self, name: &str) -> Self {
        let name = name.to_string();
        self.with_node("name", |n| n.name = name)
    }

    /// Gives the operator a stable uid (state is matched by uid on restore).
    pub fn uid(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.with_node("uid", |n| n.uid = Some(uid))
    }

    /// Sets the operator's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.with_node("parallelism", |n| n.parallelism = Some(parallelism))
    }

    /// Sets the operator's max parallelism (number of key groups of keyed state).
    pub fn set_max_parallelism(self, max_parallelism: usize) -> Self {
        self.with_node("max parallelism", |n| {
            n.max_parallelism = Some(max_parallelism)
        })
    }

    /// Starts a new chain at this operator: it never runs in its predecessor's task.
    pub fn disable_chaining(self) -> Self {
        self.with_node("chaining", |n| n.chainable = false)
    }
}

/// A stream partitioned by key; keyed operators apply to it.
pub struct KeyedStream<T: Data, K: Key, F: KeySelector<T, K>> {
    stream: DataStream<T>,
    key_fn: F,
    _k: PhantomData<fn() -> K>,
}

impl<T: Data, K: Key, F: KeySelector<T, K>> KeyedStream<T, K, F> {
    /// Applies a keyed operator: `make` builds one instance per subtask.
    pub fn transform<O, M>(&self, name: &str, make: M) -> DataStream<O::Out>
    where
        O: KeyedOperator<Key = K, In = T>,
        M: FnMut(&OperatorInfo) -> O + Send + 'static,
    {
        let kind = NodeKind::Operator(Box::new(KeyedNode {
            make,
            key_fn: self.key_fn.clone(),
            _o: PhantomData,
        }));
        let id = self
            .stream
            .add_node(name, kind, Some(TypeOps::<O::Out>::boxed()));
        DataStream::of_node(self.stream.graph.clone(), id)
    }

    /// The key selector.
    pub fn key_selector(&self) -> &F {
        &self.key_fn
    }

    /// The underlying (key-partitioned) stream, e.g. to end it in a sink.
    pub fn as_stream(&self) -> &DataStream<T> {
        &self.stream
    }
}

/// The handle of a sink node, to name it or set its parallelism.
pub struct DataStreamSink {
    pub(crate) graph: Rc<RefCell<Graph>>,
    node: usize,
}

impl DataStreamSink {
    fn with_node(self, f: impl FnOnce(&mut Node)) -> Self {
        f(&mut self.graph.borrow_mut().nodes[self.node]);
        self
    }
    /// Names the sink.
    pub fn name(self, name: &str) -> Self {
        let name = name.to_string();
        self.with_node(|n| n.name = name)
    }
    /// Gives the sink a stable uid.
    pub fn uid(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.with_node(|n| n.uid = Some(uid))
    }
    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.with_node(|n| n.parallelism = Some(parallelism))
    }
    /// Starts a new chain at the sink.
    pub fn disable_chaining(self) -> Self {
        self.with_node(|n| n.chainable = false)
    }
}
