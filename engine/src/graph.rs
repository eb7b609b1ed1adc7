//! The job graph as the stream API builds it: nodes (operators) and the edges between them.
//!
//! Nodes are type-erased so one graph holds operators of any record types; each node keeps the
//! typed factories that build its per-subtask instances, its chain links and its channels when
//! the job starts. Nothing here runs: `job` plans and executes the graph.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::channel::debloat::{BufferDebloater, DebloatSettings};
use crate::channel::encoded::EncodedSender;
use crate::channel::gate::{GateShared, InputGate};
use crate::channel::writer::{
    BroadcastPartitioner, ForwardPartitioner, KeyGroupPartitioner, RebalancePartitioner,
    RecordWriter, WriterSettings,
};
use crate::channel::ChannelSend;
use crate::checkpoint::RestoreState;
use crate::config::ChannelTransport;
use crate::config::Config;
use crate::coordination::gateway::ToCoordinator;
use crate::coordination::runner::CoordinatorHandle;
use crate::coordination::CoordinatorContext;
use crate::data::{Data, Key, KeySelector};
use crate::error::ValidationError;
use crate::mailbox::signal::Signal;
use crate::mailbox::Mailbox;
use crate::metrics::UsageProbe;
use crate::operator::output::Output;
use crate::operator::OperatorInfo;
use crate::task::chain::{FanOut, NoOutput};
use crate::task::network_output::NetworkOutput;
use crate::task::run::{InputTask, TaskBody};

/// How records of an edge are distributed over the downstream subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartitionKind {
    /// Forward when parallelisms are equal, else rebalance (Flink's default).
    Default,
    Forward,
    Rebalance,
    Broadcast,
    KeyGroups,
}

/// Builds the key-group writer of a keyed edge (captures the key selector's type).
pub(crate) trait KeyRouter<T>: Send + 'static {
    fn clone_box(&self) -> Box<dyn KeyRouter<T>>;
    fn writer(
        &self,
        senders: Vec<Box<dyn ChannelSend<T>>>,
        settings: WriterSettings,
        max_parallelism: usize,
        key: String,
        replay: Option<Vec<u8>>,
    ) -> Box<dyn Output<T>>;
}

pub(crate) struct KeyRouterImpl<K, F> {
    pub key_fn: F,
    pub _k: PhantomData<fn() -> K>,
}

impl<T: Data, K: Key, F: KeySelector<T, K>> KeyRouter<T> for KeyRouterImpl<K, F> {
    fn clone_box(&self) -> Box<dyn KeyRouter<T>> {
        Box::new(KeyRouterImpl {
            key_fn: self.key_fn.clone(),
            _k: PhantomData,
        })
    }
    fn writer(
        &self,
        senders: Vec<Box<dyn ChannelSend<T>>>,
        settings: WriterSettings,
        max_parallelism: usize,
        key: String,
        replay: Option<Vec<u8>>,
    ) -> Box<dyn Output<T>> {
        let p = KeyGroupPartitioner::new(self.key_fn.clone(), max_parallelism, senders.len());
        Box::new(NetworkOutput::new(
            RecordWriter::new(senders, p, settings).with_channel_state(key, replay),
        ))
    }
}

/// A typed partitioning of a stream (virtual: it becomes an edge's writer).
pub(crate) enum Partition<T> {
    Default,
    Forward,
    Rebalance,
    Broadcast,
    KeyGroups(Box<dyn KeyRouter<T>>),
}

impl<T: 'static> Clone for Partition<T> {
    fn clone(&self) -> Self {
        match self {
            Partition::Default => Partition::Default,
            Partition::Forward => Partition::Forward,
            Partition::Rebalance => Partition::Rebalance,
            Partition::Broadcast => Partition::Broadcast,
            Partition::KeyGroups(r) => Partition::KeyGroups(r.clone_box()),
        }
    }
}

impl<T> Partition<T> {
    pub(crate) fn kind(&self) -> PartitionKind {
        match self {
            Partition::Default => PartitionKind::Default,
            Partition::Forward => PartitionKind::Forward,
            Partition::Rebalance => PartitionKind::Rebalance,
            Partition::Broadcast => PartitionKind::Broadcast,
            Partition::KeyGroups(_) => PartitionKind::KeyGroups,
        }
    }
}

/// Where one sender's channels of an edge go.
pub(crate) struct EdgeWiring<'a> {
    /// The receiving operator's gates (erased `Arc<GateShared<T>>`), one per subtask.
    pub gates: &'a [Box<dyn Any>],
    /// This edge's first channel index in each receiver's gate.
    pub offsets: &'a [usize],
    pub sender: usize,
    pub pointwise: bool,
    pub signal: Signal,
    pub settings: WriterSettings,
    /// How the edge's channels carry their messages.
    pub transport: ChannelTransport,
    pub max_parallelism: usize,
    /// The edge's name in channel state.
    pub key: String,
    /// Output records to send again first (restore of an unaligned checkpoint).
    pub replay: Option<Vec<u8>>,
}

/// The type-erased edge: builds the record writer of one sending subtask.
pub(crate) trait EdgeConnector: Send {
    fn writer(&self, w: EdgeWiring<'_>) -> Box<dyn Any>;
}

pub(crate) struct TypedEdge<T> {
    pub partition: Partition<T>,
}

fn gate<T: Data>(g: &dyn Any) -> &Arc<GateShared<T>> {
    g.downcast_ref::<Arc<GateShared<T>>>()
        .expect("internal: gate type mismatch")
}

impl<T: Data> EdgeConnector for TypedEdge<T> {
    fn writer(&self, w: EdgeWiring<'_>) -> Box<dyn Any> {
        let transport = w.transport;
        let sender = |j: usize, channel: usize| -> Box<dyn ChannelSend<T>> {
            let local = gate::<T>(&*w.gates[j]).sender(channel, w.signal.clone());
            match transport {
                ChannelTransport::Local => Box::new(local),
                ChannelTransport::Encoded => Box::new(EncodedSender::new(local, channel)),
            }
        };
        let senders: Vec<Box<dyn ChannelSend<T>>> = if w.pointwise {
            vec![sender(w.sender, w.offsets[w.sender])]
        } else {
            (0..w.gates.len())
                .map(|j| sender(j, w.offsets[j] + w.sender))
                .collect()
        };
        let n = senders.len();
        let (key, replay, settings) = (w.key, w.replay, w.settings);
        let writer: Box<dyn Output<T>> = match &self.partition {
            _ if w.pointwise => Box::new(NetworkOutput::new(
                RecordWriter::new(senders, ForwardPartitioner, settings)
                    .with_channel_state(key, replay),
            )),
            Partition::Default | Partition::Rebalance | Partition::Forward => {
                Box::new(NetworkOutput::new(
                    RecordWriter::new(
                        senders,
                        RebalancePartitioner { next: w.sender % n },
                        settings,
                    )
                    .with_channel_state(key, replay),
                ))
            }
            Partition::Broadcast => Box::new(NetworkOutput::new(
                RecordWriter::new(senders, BroadcastPartitioner, settings)
                    .with_channel_state(key, replay),
            )),
            Partition::KeyGroups(r) => r.writer(senders, settings, w.max_parallelism, key, replay),
        };
        Box::new(writer)
    }
}

/// Type-erased operations on a record type `T` (the output or input type of a node).
pub(crate) trait StreamType: Send {
    fn fanout(&self, outs: Vec<Box<dyn Any>>) -> Box<dyn Any>;
    fn no_output(&self) -> Box<dyn Any>;
    fn new_gate(
        &self,
        channels: usize,
        config: &Config,
        receiver: Signal,
        mailbox: Arc<Mailbox>,
    ) -> (Box<dyn Any>, Arc<dyn UsageProbe>);
    fn input_task(
        &self,
        gate: &dyn Any,
        chain: Box<dyn Any>,
        head: &OperatorInfo,
        replay: Option<Vec<u8>>,
        config: &Config,
    ) -> Box<dyn TaskBody>;
    fn writer_settings(&self, config: &Config) -> WriterSettings;
}

pub(crate) struct TypeOps<T>(pub PhantomData<fn() -> T>);

impl<T> TypeOps<T> {
    pub(crate) fn boxed() -> Box<dyn StreamType>
    where
        T: Data,
    {
        Box::new(TypeOps::<T>(PhantomData))
    }
}

/// Unwraps an erased chain.
pub(crate) fn chain<T: 'static>(b: Box<dyn Any>) -> Box<dyn Output<T>> {
    *b.downcast::<Box<dyn Output<T>>>()
        .expect("internal: chain type mismatch")
}

impl<T: Data> StreamType for TypeOps<T> {
    fn fanout(&self, outs: Vec<Box<dyn Any>>) -> Box<dyn Any> {
        let outs: Vec<Box<dyn Output<T>>> = outs.into_iter().map(chain::<T>).collect();
        Box::new(Box::new(FanOut { outs }) as Box<dyn Output<T>>)
    }
    fn no_output(&self) -> Box<dyn Any> {
        Box::new(Box::new(NoOutput) as Box<dyn Output<T>>)
    }
    fn new_gate(
        &self,
        channels: usize,
        config: &Config,
        receiver: Signal,
        mailbox: Arc<Mailbox>,
    ) -> (Box<dyn Any>, Arc<dyn UsageProbe>) {
        let g = GateShared::<T>::with_mailbox(
            channels,
            config.buffers_per_channel,
            config.floating_buffers_per_gate,
            receiver,
            Some(mailbox),
        );
        (Box::new(g.clone()), g)
    }
    fn input_task(
        &self,
        gate: &dyn Any,
        chain_box: Box<dyn Any>,
        head: &OperatorInfo,
        replay: Option<Vec<u8>>,
        config: &Config,
    ) -> Box<dyn TaskBody> {
        let g = self::gate::<T>(gate).clone();
        let debloat = debloat_settings(config, std::mem::size_of::<T>()).map(|settings| {
            let (exclusive, floating) = g.credit_config();
            BufferDebloater::new(settings, g.channels(), exclusive, floating)
        });
        Box::new(InputTask {
            debloat,
            gate: InputGate::new(g),
            chain: chain::<T>(chain_box),
            head_uid: head.uid.clone(),
            subtask: head.subtask,
            replay,
        })
    }
    fn writer_settings(&self, config: &Config) -> WriterSettings {
        let record_size = std::mem::size_of::<T>();
        let max_records_per_buffer = config.records_per_buffer(record_size);
        WriterSettings {
            // Buffer debloating starts at the smallest buffer (see `channel::debloat`).
            records_per_buffer: if config.buffer_debloat_enabled {
                config.min_records_per_buffer(record_size)
            } else {
                max_records_per_buffer
            },
            max_records_per_buffer,
            record_size,
            flush_every_record: config.buffer_timeout.is_zero(),
            max_overdraft: config.max_overdraft_buffers.max(1),
            alignment_timeout: config.unaligned && !config.aligned_checkpoint_timeout.is_zero(),
        }
    }
}

/// Builds the task body of a source subtask.
pub(crate) trait SourceFactory: Send {
    fn build(
        &mut self,
        info: OperatorInfo,
        chain: Box<dyn Any>,
        restore: RestoreState,
        coordinator: Option<ToCoordinator>,
    ) -> Box<dyn TaskBody>;
}

/// Starts the coordinator of an operator (once per job).
pub(crate) trait CoordinatorFactory: Send {
    fn spawn(
        &mut self,
        ctx: CoordinatorContext,
        fail: Arc<dyn Fn(crate::error::JobError) + Send + Sync>,
    ) -> std::io::Result<Arc<CoordinatorHandle>>;
}

/// Builds the chain link of an operator or sink subtask.
pub(crate) trait LinkFactory: Send {
    /// `next` is the erased `Box<dyn Output<Out>>`; returns the erased `Box<dyn Output<In>>`.
    fn build(
        &mut self,
        info: OperatorInfo,
        index: usize,
        next: Box<dyn Any>,
        restore: RestoreState,
        coordinator: Option<ToCoordinator>,
    ) -> Box<dyn Any>;
}

pub(crate) enum NodeKind {
    Source(Box<dyn SourceFactory>),
    Operator(Box<dyn LinkFactory>),
}

/// An input edge of a node.
pub(crate) struct EdgeSpec {
    pub from: usize,
    pub kind: PartitionKind,
    pub connector: Box<dyn EdgeConnector>,
}

/// One operator of the graph.
pub(crate) struct Node {
    pub name: String,
    pub uid: Option<String>,
    pub parallelism: Option<usize>,
    pub max_parallelism: Option<usize>,
    pub chainable: bool,
    pub non_parallel: bool,
    pub inputs: Vec<EdgeSpec>,
    pub kind: NodeKind,
    pub in_type: Option<Box<dyn StreamType>>,
    pub out_type: Option<Box<dyn StreamType>>,
    /// The operator's coordinator, if it has one.
    pub coordinator: Option<Box<dyn CoordinatorFactory>>,
    /// Whether a coordinator may be attached (sources and one-input operators).
    pub coordinatable: bool,
}

/// The graph under construction.
pub(crate) struct Graph {
    pub id: usize,
    /// The job's id, when set by the environment (else a fresh one when the job starts).
    pub job_id: Option<String>,
    pub config: Config,
    /// Checkpoint storage set in code (instead of the local directory of the configuration).
    pub storage: Option<Arc<dyn weir_state::checkpoint::CheckpointStorage>>,
    /// The job's commit fence (see [`crate::fence`]).
    pub commit_fence: crate::fence::CommitFence,
    pub nodes: Vec<Node>,
    pub errors: Vec<ValidationError>,
    /// The job has async I/O operators: it gets a runtime for their futures.
    pub async_io: bool,
    /// That runtime, created when the job starts and shut down when it ends.
    pub runtime: Option<tokio::runtime::Runtime>,
    /// The running coordinators (node index, handle), created when the job starts.
    pub coordinators: Vec<(usize, Arc<CoordinatorHandle>)>,
}

/// The buffer debloating settings of a gate of records of `record_size` bytes, if on.
fn debloat_settings(config: &Config, record_size: usize) -> Option<DebloatSettings> {
    config.buffer_debloat_enabled.then(|| DebloatSettings {
        target: config.buffer_debloat_target,
        period: config.buffer_debloat_period,
        samples: config.buffer_debloat_samples.max(1),
        threshold: config.buffer_debloat_threshold_percentages as f64 / 100.0,
        min_bytes: config.min_records_per_buffer(record_size) * record_size.max(1),
        max_bytes: config.records_per_buffer(record_size) * record_size.max(1),
    })
}
