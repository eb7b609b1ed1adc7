//! Tasks: one thread per subtask of a chain, each running a mailbox loop.
//!
//! The loop (see [`run`]) repeats: serve mails (cancellation, due timers, buffer flushes,
//! checkpoint triggers, coordinator events, async-I/O completions); if an output channel lacks
//! credit, wait; otherwise take the next record (from the input gate or the source) and push it
//! through the chain. Between any two records the mailbox flag is checked, and every wait is a
//! wait on the task's one signal ([`crate::mailbox::signal`]), which input, credit and mail all
//! notify. So a task with no input, or with no credit, still serves its mailbox: timers fire,
//! barriers pass and completions are applied under full backpressure.

pub(crate) mod alignment;
pub(crate) mod chain;
pub(crate) mod debloating;
pub(crate) mod network_output;
pub(crate) mod run;
