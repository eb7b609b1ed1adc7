//! Runs one coordinator on its own thread: every call (events, checkpoints, lifecycle) is a
//! message in one queue, so calls never overlap and keep their order; the job and the
//! checkpoint coordinator talk to it through a [`CoordinatorHandle`].

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::event::RunnerMsg;
use super::gateway::{Deliveries, SubtaskChannel, SubtaskGateway};
use super::{Coordinator, CoordinatorContext};
use crate::error::{JobError, UserError};

/// A coordinator with its event types erased.
trait Erased: Send {
    fn call(&mut self, msg: RunnerMsg, ctx: &CoordinatorContext) -> Result<(), UserError>;
}

struct Typed<C: Coordinator> {
    c: C,
    /// Gateways of the current attempt, by subtask (for holding at checkpoints).
    channels: Vec<Option<Arc<SubtaskChannel>>>,
}

impl<C: Coordinator> Erased for Typed<C> {
    fn call(&mut self, msg: RunnerMsg, ctx: &CoordinatorContext) -> Result<(), UserError> {
        match msg {
            RunnerMsg::Start { reply } => {
                let _ = reply.send(answered(|| self.c.start(ctx)));
                // Reported through the reply alone.
                Ok(())
            }
            RunnerMsg::Event {
                subtask,
                attempt,
                event,
            } => {
                let type_name = event.type_name();
                let event = event.downcast::<C::FromSubtask>().map_err(|_| {
                    format!(
                        "subtask {subtask} sent a {type_name}; the coordinator takes {}",
                        std::any::type_name::<C::FromSubtask>()
                    )
                })?;
                self.c.handle_event(subtask, attempt, event, ctx)
            }
            RunnerMsg::Checkpoint { id, reply } => {
                let r = self.c.checkpoint(id, ctx);
                if r.is_ok() {
                    // From now on, events wait until their subtask took checkpoint `id`.
                    for ch in self.channels.iter().flatten() {
                        ch.hold(id);
                    }
                }
                let _ = reply.send(r.as_ref().map(|b| b.clone()).map_err(|e| e.to_string()));
                r.map(|_| ())
            }
            RunnerMsg::Complete(id) => self.c.checkpoint_complete(id, ctx),
            RunnerMsg::Aborted(id) => {
                for ch in self.channels.iter().flatten() {
                    ch.release(id);
                }
                self.c.checkpoint_aborted(id, ctx)
            }
            RunnerMsg::Reset { id, state, reply } => {
                let r = answered(|| self.c.reset_to_checkpoint(id, state.as_deref(), ctx));
                let _ = reply.send(r);
                // Reported through the reply alone: the restart that asked fails with it (a
                // second report would fail the next attempt too).
                Ok(())
            }
            RunnerMsg::SubtaskReset { subtask, id } => self.c.subtask_reset(subtask, id, ctx),
            RunnerMsg::AttemptFailed {
                subtask,
                attempt,
                reason,
            } => {
                if let Some(slot) = self.channels.get_mut(subtask) {
                    *slot = None;
                }
                self.c.attempt_failed(subtask, attempt, &reason, ctx)
            }
            RunnerMsg::AttemptReady(ch) => {
                let (subtask, attempt) = (ch.subtask, ch.attempt);
                if self.channels.len() <= subtask {
                    self.channels.resize(subtask + 1, None);
                }
                self.channels[subtask] = Some(ch.clone());
                self.c
                    .attempt_ready(subtask, attempt, SubtaskGateway::new(ch), ctx)
            }
            RunnerMsg::Flush(reply) => {
                let _ = reply.send(());
                Ok(())
            }
            RunnerMsg::Close => self.c.close(ctx),
        }
    }
}

/// Runs a call whose result is answered to a waiting caller: its error or panic as a message.
fn answered(call: impl FnOnce() -> Result<(), UserError>) -> Result<(), String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(p) => Err(crate::error::panic_message(&*p)),
    }
}

/// The job's handle of one running coordinator.
pub(crate) struct CoordinatorHandle {
    /// The operator's uid (its state's key in checkpoints).
    pub uid: String,
    /// The operator's name.
    pub name: String,
    pub tx: Sender<RunnerMsg>,
    pub deliveries: Arc<Deliveries>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl CoordinatorHandle {
    /// Starts `coordinator` on its own thread. Its errors go to `fail`.
    pub(crate) fn spawn<C: Coordinator>(
        coordinator: C,
        ctx: CoordinatorContext,
        fail: Arc<dyn Fn(JobError) + Send + Sync>,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = channel();
        let (uid, name) = (ctx.info.uid.clone(), ctx.info.name.clone());
        let erased: Box<dyn Erased> = Box::new(Typed {
            c: coordinator,
            channels: Vec::new(),
        });
        let thread = std::thread::Builder::new()
            .name(format!("weir-coordinator-{name}"))
            .spawn(move || serve(erased, ctx, rx, fail))?;
        Ok(Arc::new(CoordinatorHandle {
            uid,
            name,
            tx,
            deliveries: Arc::new(Deliveries::default()),
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub(crate) fn post(&self, msg: RunnerMsg) {
        let _ = self.tx.send(msg);
    }

    /// The coordinator's state for checkpoint `id`, once every event it sent before is
    /// handled by its subtask (or `timeout` passed: an error).
    pub(crate) fn checkpoint(&self, id: u64, timeout: Duration) -> Result<Vec<u8>, String> {
        let (reply, answer) = channel();
        self.post(RunnerMsg::Checkpoint { id, reply });
        let bytes = answer
            .recv_timeout(timeout)
            .map_err(|_| format!("the coordinator of '{}' did not answer", self.name))??;
        if !self.deliveries.wait_delivered(id, timeout) {
            return Err(format!(
                "events of the coordinator of '{}' were not delivered in time",
                self.name
            ));
        }
        Ok(bytes)
    }

    /// Resets the coordinator to a checkpoint's state (or to no state) and waits for it.
    pub(crate) fn reset(&self, id: Option<u64>, state: Option<Vec<u8>>) -> Result<(), String> {
        let (reply, answer) = channel();
        self.post(RunnerMsg::Reset { id, state, reply });
        answer
            .recv()
            .map_err(|_| format!("the coordinator of '{}' is gone", self.name))?
    }

    /// Starts the coordinator and waits for `start` to return.
    pub(crate) fn start(&self) -> Result<(), String> {
        let (reply, answer) = channel();
        self.post(RunnerMsg::Start { reply });
        answer
            .recv()
            .map_err(|_| format!("the coordinator of '{}' is gone", self.name))?
    }

    /// Waits until every call queued so far was made and its failure (if any) reported.
    pub(crate) fn flush(&self) {
        let (reply, answer) = channel();
        self.post(RunnerMsg::Flush(reply));
        // An error: the coordinator's thread is gone, with nothing left to report.
        let _ = answer.recv();
    }

    /// Closes the coordinator and waits for its thread.
    pub(crate) fn close(&self) {
        self.post(RunnerMsg::Close);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut c: Box<dyn Erased>,
    ctx: CoordinatorContext,
    rx: Receiver<RunnerMsg>,
    fail: Arc<dyn Fn(JobError) + Send + Sync>,
) {
    while let Ok(msg) = rx.recv() {
        let closing = matches!(msg, RunnerMsg::Close);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.call(msg, &ctx)));
        let message = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(p) => Some(crate::error::panic_message(&*p)),
        };
        if let Some(message) = message {
            if !closing {
                fail(JobError::CoordinatorFailed {
                    operator: ctx.info.name.clone(),
                    message,
                });
            }
        }
        if closing {
            return;
        }
    }
}
