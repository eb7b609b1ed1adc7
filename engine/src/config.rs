//! One typed configuration with Flink-style dotted option names.
//!
//! Every option has a name, a type, a default and a doc line (see [`Config::options`]). Options
//! are set in code through the typed fields or by name ([`Config::set`]), or loaded from a TOML
//! file whose keys are the dotted names, written flat (`"pipeline.max-parallelism" = 256`) or as
//! nested tables (`[pipeline] max-parallelism = 256`). An unknown key or a bad value is an error
//! that names it; nothing is silently ignored.
//!
//! Durations are written as `100 ms`, `100ms`, `1s`, `2 min` (humantime syntax); memory sizes as
//! `32kb`, `1 mb`, or a plain number of bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// An error loading or setting configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The option name is not known.
    #[error("unknown configuration option '{key}'")]
    UnknownOption {
        /// The unknown name.
        key: String,
    },
    /// The value does not parse or is out of range for the option.
    #[error("invalid value '{value}' for option '{key}': expected {expected}")]
    InvalidValue {
        /// The option name.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// A memory size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemorySize(pub u64);

impl MemorySize {
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        MemorySize(n * 1024)
    }
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        MemorySize(n * 1024 * 1024)
    }
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// How an option's value is parsed from text and shown.
trait OptionValue: Sized {
    const EXPECTED: &'static str;
    fn parse(s: &str) -> Option<Self>;
    fn show(&self) -> String;
}

impl OptionValue for usize {
    const EXPECTED: &'static str = "a non-negative integer";
    fn parse(s: &str) -> Option<Self> {
        s.trim().replace('_', "").parse().ok()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for Option<u16> {
    const EXPECTED: &'static str = "a port number (0 to 65535) or empty for none";
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" => Some(None),
            n => n.parse().ok().map(Some),
        }
    }
    fn show(&self) -> String {
        self.map(|p| p.to_string()).unwrap_or_default()
    }
}

impl OptionValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for Duration {
    const EXPECTED: &'static str = "a duration such as '100 ms', '1s' or '2 min'";
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s == "0" {
            return Some(Duration::ZERO);
        }
        // Accept Flink's "100 ms" as well as humantime's "100ms".
        let compact: String = {
            let mut out = String::new();
            let mut prev_digit = false;
            for ch in s.chars() {
                if ch == ' ' && prev_digit {
                    continue;
                }
                prev_digit = ch.is_ascii_digit();
                out.push(ch);
            }
            out
        };
        humantime::parse_duration(&compact).ok()
    }
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl OptionValue for MemorySize {
    const EXPECTED: &'static str = "a memory size such as '32kb', '1 mb' or a number of bytes";
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "b" | "bytes" => 1,
            "k" | "kb" | "kib" | "kibibytes" => 1 << 10,
            "m" | "mb" | "mib" | "mebibytes" => 1 << 20,
            "g" | "gb" | "gib" | "gibibytes" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(mult).map(MemorySize)
    }
    fn show(&self) -> String {
        let b = self.0;
        if b != 0 && b % (1 << 20) == 0 {
            format!("{}mb", b >> 20)
        } else if b != 0 && b % (1 << 10) == 0 {
            format!("{}kb", b >> 10)
        } else {
            format!("{b}b")
        }
    }
}

/// Other names accepted for options: `(alias, option)`.
pub const ALIASES: &[(&str, &str)] = &[
    ("checkpoints.dir", "execution.checkpointing.dir"),
    ("state.checkpoints.dir", "execution.checkpointing.dir"),
    (
        "state.checkpoints.num-retained",
        "execution.checkpointing.num-retained",
    ),
];

/// Describes one option: its dotted name, its default (as text) and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionInfo {
    /// The dotted name, e.g. `pipeline.max-parallelism`.
    pub key: &'static str,
    /// The default value, as text.
    pub default: String,
    /// One line on what it does.
    pub description: &'static str,
}

macro_rules! options {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr, $key:literal; )*) => {
        /// The configuration of a weir job.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])+ #[doc = concat!("\n\nOption `", $key, "`.")] pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* }
            }
        }

        impl Config {
            /// Every option with its name, default and description.
            pub fn options() -> Vec<OptionInfo> {
                let d = Config::default();
                vec![ $( OptionInfo {
                    key: $key,
                    default: OptionValue::show(&d.$field),
                    description: concat!($($doc),+).trim_start(),
                }, )* ]
            }

            /// Sets an option by its dotted name from text (a few other common names are accepted
            /// as aliases, see [`ALIASES`]).
            ///
            /// # Errors
            ///
            /// Returns [`ConfigError::UnknownOption`] when `key` names no option (nor an alias),
            /// and [`ConfigError::InvalidValue`] when `value` does not parse as the option's type
            /// or is out of the option's range.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
                let key = ALIASES.iter().find(|(alias, _)| *alias == key).map_or(key, |(_, k)| *k);
                match key {
                    $( $key => {
                        self.$field = <$ty as OptionValue>::parse(value).ok_or_else(|| {
                            ConfigError::InvalidValue {
                                key: key.to_string(),
                                value: value.to_string(),
                                expected: <$ty as OptionValue>::EXPECTED,
                            }
                        })?;
                    } )*
                    _ => return Err(ConfigError::UnknownOption { key: key.to_string() }),
                }
                self.check(key)
            }

            /// The current value of an option by name, as text.
            ///
            /// # Errors
            ///
            /// Returns [`ConfigError::UnknownOption`] when `key` names no option (aliases are not
            /// accepted here).
            pub fn get(&self, key: &str) -> Result<String, ConfigError> {
                match key {
                    $( $key => Ok(OptionValue::show(&self.$field)), )*
                    _ => Err(ConfigError::UnknownOption { key: key.to_string() }),
                }
            }
        }
    };
}

options! {
    /// Parallelism of operators that do not set their own.
    default_parallelism: usize = 1, "parallelism.default";
    /// Number of key groups: the upper bound of parallelism for keyed state (rescaling unit).
    max_parallelism: usize = weir_state::DEFAULT_MAX_PARALLELISM, "pipeline.max-parallelism";
    /// Chain forward-connected operators of equal parallelism into one task.
    operator_chaining: bool = true, "pipeline.operator-chaining.enabled";
    /// Interval at which sources with a watermark strategy emit watermarks.
    auto_watermark_interval: Duration = Duration::from_millis(200), "pipeline.auto-watermark-interval";
    /// Maximum time a partially filled output buffer waits before it is sent (0 = after every record).
    buffer_timeout: Duration = Duration::from_millis(100), "execution.buffer-timeout.interval";
    /// Exclusive buffers (credits) each input channel owns.
    buffers_per_channel: usize = 2, "taskmanager.network.memory.buffers-per-channel";
    /// Floating buffers each input gate shares among its channels.
    floating_buffers_per_gate: usize = 8, "taskmanager.network.memory.floating-buffers-per-gate";
    /// Buffers a task may fill beyond its credit while finishing one record (overdraft).
    max_overdraft_buffers: usize = 5, "taskmanager.network.memory.max-overdraft-buffers-per-gate";
    /// Size of one network buffer: a buffer holds at most this many bytes of records.
    segment_size: MemorySize = MemorySize::kib(32), "taskmanager.memory.segment-size";
    /// Upper bound of records in one network buffer, whatever their size.
    max_records_per_buffer: usize = 4096, "taskmanager.network.memory.max-records-per-buffer";
    /// Buffer debloating: each input gate measures how fast its task consumes and announces a
    /// buffer size (and, below the smallest size, fewer credits) so that the data in flight
    /// towards it holds about `buffer-debloat.target` of processing (FLIP-183).
    buffer_debloat_enabled: bool = false, "taskmanager.network.memory.buffer-debloat.enabled";
    /// Buffer debloating: the processing time the data in flight towards a gate should hold.
    buffer_debloat_target: Duration = Duration::from_secs(1), "taskmanager.network.memory.buffer-debloat.target";
    /// Buffer debloating: how often a gate measures its throughput and recalculates.
    buffer_debloat_period: Duration = Duration::from_millis(200), "taskmanager.network.memory.buffer-debloat.period";
    /// Buffer debloating: the number of measurements the moving average of the buffer size spans.
    buffer_debloat_samples: usize = 20, "taskmanager.network.memory.buffer-debloat.samples";
    /// Buffer debloating: a new buffer size is announced only when it differs from the last
    /// announced one by at least this many percent.
    buffer_debloat_threshold_percentages: usize = 25, "taskmanager.network.memory.buffer-debloat.threshold-percentages";
    /// The smallest buffer that buffer debloating announces.
    min_segment_size: MemorySize = MemorySize(256), "taskmanager.memory.min-segment-size";
    /// The job's name (recorded in checkpoints).
    job_name: String = "weir-job".to_string(), "pipeline.name";
    /// Base interval of periodic checkpoints (0 = periodic checkpoints off).
    checkpoint_interval: Duration = Duration::ZERO, "execution.checkpointing.interval";
    /// Barrier handling: EXACTLY_ONCE (aligned) or AT_LEAST_ONCE (never blocks channels).
    checkpointing_mode: CheckpointingMode = CheckpointingMode::ExactlyOnce, "execution.checkpointing.mode";
    /// A pending checkpoint older than this expires.
    checkpoint_timeout: Duration = Duration::from_secs(600), "execution.checkpointing.timeout";
    /// Minimum time between the end of one checkpoint and the trigger of the next.
    checkpoint_min_pause: Duration = Duration::ZERO, "execution.checkpointing.min-pause";
    /// No trigger while this many checkpoints are pending.
    max_concurrent_checkpoints: usize = 1, "execution.checkpointing.max-concurrent-checkpoints";
    /// Unaligned checkpoints: barriers overtake in-flight data, which becomes part of the
    /// checkpoint (needs EXACTLY_ONCE and at most 1 concurrent checkpoint).
    unaligned: bool = false, "execution.checkpointing.unaligned.enabled";
    /// With unaligned checkpoints enabled: start aligned and switch a checkpoint to unaligned
    /// once its alignment (or its barrier's wait in an output queue) exceeds this (0 = always
    /// unaligned).
    aligned_checkpoint_timeout: Duration = Duration::ZERO, "execution.checkpointing.aligned-checkpoint-timeout";
    /// Consecutive failed checkpoints (declined, expired, or not written) the job survives;
    /// one more fails the job.
    tolerable_failed_checkpoints: usize = 0, "execution.checkpointing.tolerable-failed-checkpoints";
    /// What happens after a failure: default (exponential-delay with periodic checkpoints, none
    /// otherwise), none, fixed-delay, failure-rate or exponential-delay.
    restart_strategy: RestartStrategyKind = RestartStrategyKind::Default, "restart-strategy.type";
    /// fixed-delay: restarts allowed.
    restart_fixed_delay_attempts: usize = 1, "restart-strategy.fixed-delay.attempts";
    /// fixed-delay: wait before each restart.
    restart_fixed_delay: Duration = Duration::from_secs(1), "restart-strategy.fixed-delay.delay";
    /// failure-rate: failures allowed per interval.
    restart_failure_rate_max_failures: usize = 1, "restart-strategy.failure-rate.max-failures-per-interval";
    /// failure-rate: the interval.
    restart_failure_rate_interval: Duration = Duration::from_secs(60), "restart-strategy.failure-rate.failure-rate-interval";
    /// failure-rate: wait before each restart.
    restart_failure_rate_delay: Duration = Duration::from_secs(1), "restart-strategy.failure-rate.delay";
    /// exponential-delay: first wait.
    restart_exponential_initial_backoff: Duration = Duration::from_secs(1), "restart-strategy.exponential-delay.initial-backoff";
    /// exponential-delay: longest wait.
    restart_exponential_max_backoff: Duration = Duration::from_secs(60), "restart-strategy.exponential-delay.max-backoff";
    /// exponential-delay: growth of the wait per failure.
    restart_exponential_multiplier: f64 = 1.5, "restart-strategy.exponential-delay.backoff-multiplier";
    /// exponential-delay: a failure this long after the previous one starts from the first wait.
    restart_exponential_reset_threshold: Duration = Duration::from_secs(3600), "restart-strategy.exponential-delay.reset-backoff-threshold";
    /// exponential-delay: random spread of each wait (fraction).
    restart_exponential_jitter: f64 = 0.1, "restart-strategy.exponential-delay.jitter-factor";
    /// exponential-delay: attempts before giving up (between resets).
    restart_exponential_attempts: usize = usize::MAX, "restart-strategy.exponential-delay.attempts-before-reset-backoff";
    /// Threads of the runtime that runs the futures of a job's async I/O operators.
    async_io_worker_threads: usize = 2, "execution.async-io.worker-threads";
    /// Run tasks on the process's shared pool of task threads (reused across jobs) instead of
    /// spawning a thread per task per job.
    task_threads_pooled: bool = true, "execution.task-threads.pooled";
    /// How channels between tasks carry their messages: `local` (in-process buffers, no copy)
    /// or `encoded` (every buffer and event crosses a pipe as versioned bytes and is decoded on
    /// the far side, as a channel between processes would; for testing the transport seam).
    channel_transport: ChannelTransport = ChannelTransport::Local, "execution.channel-transport";
    /// Completed checkpoints kept in storage; older ones are deleted.
    retained_checkpoints: usize = 1, "execution.checkpointing.num-retained";
    /// Directory of checkpoints and savepoints (empty = no checkpoint storage).
    checkpoint_dir: String = String::new(), "execution.checkpointing.dir";
    /// Restore from this checkpoint or savepoint directory, or "latest" (the newest valid
    /// checkpoint in the checkpoint directory, if any). Empty = start fresh.
    restore_path: String = String::new(), "execution.state-recovery.path";
    /// Port of the REST API, metrics and web dashboard (0 = any free port). Empty = no server
    /// (the default of an embedded job; `weir session` serves on 8081).
    rest_port: Option<u16> = None, "rest.port";
    /// Address the REST server binds to. Outside loopback it needs
    /// `rest.authentication.token` (or a token file).
    rest_bind_address: String = "127.0.0.1".to_string(), "rest.bind-address";
    /// Bearer token required for every mutating REST call, and for every call when bound
    /// outside loopback. Empty = none.
    rest_token: String = String::new(), "rest.authentication.token";
    /// File holding that token (first line; read when the server starts). Empty = none.
    rest_token_file: String = String::new(), "rest.authentication.token-file";
    /// Largest REST request body (a job submission with its artifacts).
    rest_max_content_length: MemorySize = MemorySize::mib(64), "rest.server.max-content-length";
    /// Most REST connections served at once; further ones wait in the listen backlog.
    rest_max_connections: usize = 256, "rest.server.max-connections";
    /// Longest wait for a request's headers, and for its body, on a REST connection; a
    /// connection idle that long between requests is closed.
    rest_read_timeout: Duration = Duration::from_secs(10), "rest.server.read-timeout";
    /// Serve the REST API over TLS (rustls), with `rest.ssl.certificate` and `rest.ssl.key`.
    rest_ssl_enabled: bool = false, "rest.ssl.enabled";
    /// PEM file of the REST server's certificate chain.
    rest_ssl_certificate: String = String::new(), "rest.ssl.certificate";
    /// PEM file of the REST server's private key.
    rest_ssl_key: String = String::new(), "rest.ssl.key";
    /// How often the web dashboard's live stream sends an update.
    web_refresh_interval: Duration = Duration::from_secs(1), "web.refresh-interval";
}

/// How channels between tasks carry their messages (`execution.channel-transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelTransport {
    /// In-process buffers handed over without a copy.
    Local,
    /// Every buffer and event encoded into a versioned frame and decoded on the far side.
    Encoded,
}

impl OptionValue for ChannelTransport {
    const EXPECTED: &'static str = "local or encoded";
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Some(ChannelTransport::Local),
            "encoded" => Some(ChannelTransport::Encoded),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            ChannelTransport::Local => "local".into(),
            ChannelTransport::Encoded => "encoded".into(),
        }
    }
}

/// The kind of restart strategy (`restart-strategy.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategyKind {
    /// exponential-delay with periodic checkpoints, none otherwise (Flink's default).
    Default,
    /// Never restart.
    None,
    /// A number of attempts with a fixed delay.
    FixedDelay,
    /// At most N failures per interval.
    FailureRate,
    /// Growing delays.
    ExponentialDelay,
}

impl OptionValue for RestartStrategyKind {
    const EXPECTED: &'static str = "default, none, fixed-delay, failure-rate or exponential-delay";
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "default" => Some(RestartStrategyKind::Default),
            "none" | "off" | "disable" => Some(RestartStrategyKind::None),
            "fixed-delay" | "fixeddelay" => Some(RestartStrategyKind::FixedDelay),
            "failure-rate" | "failurerate" => Some(RestartStrategyKind::FailureRate),
            "exponential-delay" | "exponentialdelay" => Some(RestartStrategyKind::ExponentialDelay),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            RestartStrategyKind::Default => "default",
            RestartStrategyKind::None => "none",
            RestartStrategyKind::FixedDelay => "fixed-delay",
            RestartStrategyKind::FailureRate => "failure-rate",
            RestartStrategyKind::ExponentialDelay => "exponential-delay",
        }
        .into()
    }
}

impl OptionValue for f64 {
    const EXPECTED: &'static str = "a number";
    fn parse(s: &str) -> Option<Self> {
        s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// How barriers are handled at tasks with several input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointingMode {
    /// Aligned barriers: exactly-once state.
    ExactlyOnce,
    /// Unaligned counting of barriers: channels are never blocked; records may be replayed.
    AtLeastOnce,
}

impl OptionValue for CheckpointingMode {
    const EXPECTED: &'static str = "EXACTLY_ONCE or AT_LEAST_ONCE";
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "EXACTLY_ONCE" => Some(CheckpointingMode::ExactlyOnce),
            "AT_LEAST_ONCE" => Some(CheckpointingMode::AtLeastOnce),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            CheckpointingMode::ExactlyOnce => "EXACTLY_ONCE".into(),
            CheckpointingMode::AtLeastOnce => "AT_LEAST_ONCE".into(),
        }
    }
}

impl OptionValue for String {
    const EXPECTED: &'static str = "a string";
    fn parse(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl Config {
    fn check(&self, key: &str) -> Result<(), ConfigError> {
        let bad = |value: String, expected| {
            Err(ConfigError::InvalidValue {
                key: key.to_string(),
                value,
                expected,
            })
        };
        match key {
            "pipeline.max-parallelism"
                if self.max_parallelism == 0
                    || self.max_parallelism > weir_state::UPPER_BOUND_MAX_PARALLELISM =>
            {
                bad(self.max_parallelism.to_string(), "an integer in 1..=32768")
            }
            "parallelism.default" if self.default_parallelism == 0 => {
                bad("0".into(), "an integer of at least 1")
            }
            "taskmanager.network.memory.buffers-per-channel" if self.buffers_per_channel == 0 => {
                bad("0".into(), "an integer of at least 1")
            }
            "taskmanager.network.memory.max-records-per-buffer"
                if self.max_records_per_buffer == 0 =>
            {
                bad("0".into(), "an integer of at least 1")
            }
            "execution.checkpointing.max-concurrent-checkpoints"
                if self.max_concurrent_checkpoints == 0 =>
            {
                bad("0".into(), "an integer of at least 1")
            }
            "execution.checkpointing.num-retained" if self.retained_checkpoints == 0 => {
                bad("0".into(), "an integer of at least 1")
            }
            "rest.server.max-connections" if self.rest_max_connections == 0 => {
                bad("0".into(), "an integer of at least 1")
            }
            "rest.server.read-timeout" if self.rest_read_timeout.is_zero() => {
                bad("0".into(), "a positive duration")
            }
            "web.refresh-interval" if self.web_refresh_interval.is_zero() => {
                bad("0".into(), "a positive duration")
            }
            "execution.checkpointing.timeout" if self.checkpoint_timeout.is_zero() => {
                bad("0".into(), "a positive duration")
            }
            "restart-strategy.exponential-delay.backoff-multiplier"
                if self.restart_exponential_multiplier < 1.0 =>
            {
                bad(
                    self.restart_exponential_multiplier.to_string(),
                    "a number of at least 1",
                )
            }
            "restart-strategy.exponential-delay.jitter-factor"
                if !(0.0..=1.0).contains(&self.restart_exponential_jitter) =>
            {
                bad(
                    self.restart_exponential_jitter.to_string(),
                    "a number in 0..=1",
                )
            }
            "taskmanager.memory.segment-size" if self.segment_size.0 == 0 => {
                bad("0".into(), "a size of at least 1 byte")
            }
            "taskmanager.memory.min-segment-size"
                if self.min_segment_size.0 == 0 || self.min_segment_size > self.segment_size =>
            {
                bad(
                    self.min_segment_size.0.to_string(),
                    "a size of at least 1 byte and at most taskmanager.memory.segment-size",
                )
            }
            "taskmanager.network.memory.buffer-debloat.target"
                if self.buffer_debloat_target.is_zero() =>
            {
                bad("0".into(), "a positive duration")
            }
            "taskmanager.network.memory.buffer-debloat.period"
                if self.buffer_debloat_period.is_zero() =>
            {
                bad("0".into(), "a positive duration")
            }
            "taskmanager.network.memory.buffer-debloat.samples"
                if self.buffer_debloat_samples == 0 =>
            {
                bad("0".into(), "an integer of at least 1")
            }
            "taskmanager.network.memory.buffer-debloat.threshold-percentages"
                if self.buffer_debloat_threshold_percentages > 100 =>
            {
                bad(
                    self.buffer_debloat_threshold_percentages.to_string(),
                    "an integer in 0..=100",
                )
            }
            _ => Ok(()),
        }
    }

    /// Checks every option's range (used when a job starts: fields may have been set directly).
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::InvalidValue`] for the first option out of its range, or for options
    /// that do not go together: unaligned checkpoints with `AT_LEAST_ONCE` or more than one
    /// concurrent checkpoint, an aligned-checkpoint timeout without unaligned checkpoints, or no
    /// async I/O worker thread.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for o in Config::options() {
            self.check(o.key)?;
        }
        if self.unaligned && self.checkpointing_mode != CheckpointingMode::ExactlyOnce {
            return Err(ConfigError::InvalidValue {
                key: "execution.checkpointing.unaligned.enabled".into(),
                value: "true".into(),
                expected: "false with execution.checkpointing.mode = AT_LEAST_ONCE (unaligned checkpoints are exactly-once)",
            });
        }
        if !self.aligned_checkpoint_timeout.is_zero() && !self.unaligned {
            return Err(ConfigError::InvalidValue {
                key: "execution.checkpointing.aligned-checkpoint-timeout".into(),
                value: humantime::format_duration(self.aligned_checkpoint_timeout).to_string(),
                expected: "0 unless execution.checkpointing.unaligned.enabled is true (the timeout switches aligned checkpoints to unaligned)",
            });
        }
        if self.async_io_worker_threads == 0 {
            return Err(ConfigError::InvalidValue {
                key: "execution.async-io.worker-threads".into(),
                value: "0".into(),
                expected: "at least 1 thread",
            });
        }
        if self.unaligned && self.max_concurrent_checkpoints > 1 {
            return Err(ConfigError::InvalidValue {
                key: "execution.checkpointing.unaligned.enabled".into(),
                value: "true".into(),
                expected: "false with execution.checkpointing.max-concurrent-checkpoints > 1",
            });
        }
        Ok(())
    }

    /// Loads a TOML file over the defaults.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::Io`] when the file cannot be read, [`ConfigError::Toml`] when it is
    /// not valid TOML, and [`ConfigError::UnknownOption`] or [`ConfigError::InvalidValue`] for an
    /// option, as [`Config::set`] reports them.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        c.merge_toml_file(path)?;
        Ok(c)
    }

    /// Applies a TOML file's options over this configuration.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::Io`] when the file cannot be read, [`ConfigError::Toml`] when it is
    /// not valid TOML, and [`ConfigError::UnknownOption`] or [`ConfigError::InvalidValue`] for an
    /// option, as [`Config::set`] reports them; the options before a failing one stay applied.
    pub fn merge_toml_file(&mut self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.merge_toml_str(&text).map_err(|e| match e {
            ConfigError::Toml { message, .. } => ConfigError::Toml {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Applies TOML text's options over this configuration.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::Toml`] (with the path `<string>`) when `text` is not valid TOML, and
    /// [`ConfigError::UnknownOption`] or [`ConfigError::InvalidValue`] for an option, as
    /// [`Config::set`] reports them; the options before a failing one stay applied.
    pub fn merge_toml_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                path: PathBuf::from("<string>"),
                message: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Bytes-and-records bound of one buffer for records of `record_size` bytes.
    pub fn records_per_buffer(&self, record_size: usize) -> usize {
        let by_bytes = (self.segment_size.0 as usize)
            .checked_div(record_size)
            .map_or(usize::MAX, |n| n.max(1));
        by_bytes.min(self.max_records_per_buffer).max(1)
    }

    /// Records in the smallest buffer buffer debloating announces (`min-segment-size`), for
    /// records of `record_size` bytes.
    pub fn min_records_per_buffer(&self, record_size: usize) -> usize {
        let by_bytes = (self.min_segment_size.0 as usize)
            .checked_div(record_size)
            .map_or(usize::MAX, |n| n.max(1));
        by_bytes.min(self.records_per_buffer(record_size)).max(1)
    }
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Integer(i) => out.push((prefix.to_string(), i.to_string())),
        toml::Value::Boolean(b) => out.push((prefix.to_string(), b.to_string())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_flink() {
        let c = Config::default();
        assert_eq!(c.buffers_per_channel, 2);
        assert_eq!(c.floating_buffers_per_gate, 8);
        assert_eq!(c.max_parallelism, 128);
        assert_eq!(c.buffer_timeout, Duration::from_millis(100));
        assert_eq!(c.get("taskmanager.memory.segment-size").unwrap(), "32kb");
    }

    #[test]
    fn set_by_name_and_errors_name_the_key() {
        let mut c = Config::default();
        c.set("execution.buffer-timeout.interval", "10 ms").unwrap();
        assert_eq!(c.buffer_timeout, Duration::from_millis(10));
        c.set("execution.buffer-timeout.interval", "0").unwrap();
        assert_eq!(c.buffer_timeout, Duration::ZERO);
        c.set("taskmanager.memory.segment-size", "64 kb").unwrap();
        assert_eq!(c.segment_size.bytes(), 65536);
        let e = c.set("pipeline.max-paralelism", "4").unwrap_err();
        assert!(e.to_string().contains("'pipeline.max-paralelism'"), "{e}");
        let e = c.set("pipeline.max-parallelism", "lots").unwrap_err();
        assert!(
            e.to_string().contains("'lots'") && e.to_string().contains("pipeline.max-parallelism")
        );
        let e = c.set("pipeline.max-parallelism", "0").unwrap_err();
        assert!(matches!(e, ConfigError::InvalidValue { .. }), "{e}");
        assert!(c.set("pipeline.auto-watermark-interval", "soon").is_err());
    }

    #[test]
    fn toml_flat_and_nested() {
        let mut c = Config::default();
        c.merge_toml_str(
            r#"
            "parallelism.default" = 3
            [taskmanager.network.memory]
            buffers-per-channel = 4
            floating-buffers-per-gate = 16
            [pipeline]
            auto-watermark-interval = "50 ms"
            operator-chaining.enabled = false
            "#,
        )
        .unwrap();
        assert_eq!(c.default_parallelism, 3);
        assert_eq!(c.buffers_per_channel, 4);
        assert_eq!(c.floating_buffers_per_gate, 16);
        assert_eq!(c.auto_watermark_interval, Duration::from_millis(50));
        assert!(!c.operator_chaining);
        let e = c
            .merge_toml_str("[pipeline]\nmax-paralelism = 3")
            .unwrap_err();
        assert!(e.to_string().contains("pipeline.max-paralelism"));
        let e = c.merge_toml_str("parallelism.default = -1").unwrap_err();
        assert!(e.to_string().contains("parallelism.default"));
        assert!(matches!(
            c.merge_toml_str("= nope"),
            Err(ConfigError::Toml { .. })
        ));
    }

    #[test]
    fn aliases_set_the_option() {
        let mut c = Config::default();
        c.set("checkpoints.dir", "/tmp/x").unwrap();
        assert_eq!(c.checkpoint_dir, "/tmp/x");
        c.set("state.checkpoints.dir", "/tmp/y").unwrap();
        assert_eq!(c.get("execution.checkpointing.dir").unwrap(), "/tmp/y");
    }

    #[test]
    fn every_option_round_trips() {
        let c = Config::default();
        for o in Config::options() {
            let mut d = Config::default();
            d.set(o.key, &o.default).unwrap();
            assert_eq!(c, d, "{}", o.key);
        }
    }

    #[test]
    fn buffer_bounds() {
        let c = Config::default();
        assert_eq!(c.records_per_buffer(8), 4096);
        assert_eq!(c.records_per_buffer(64), 512);
        assert_eq!(c.records_per_buffer(0), 4096);
        assert_eq!(c.records_per_buffer(1 << 20), 1);
    }
}
