//! Keyed processing: a running reduce per key, and user keyed process functions with state and
//! timers.

use std::marker::PhantomData;

use weir_engine::{
    Data, Key, KeyedContext, KeyedOpenContext, KeyedOperator, Timer, UserError, ValueStateHandle,
};

/// Folds the records of each key with a function and emits every new value (Flink's `reduce`).
/// The running value is keyed state named `reduce`.
pub struct Reduce<K, T, F> {
    f: F,
    state: Option<ValueStateHandle<T>>,
    _k: PhantomData<fn() -> K>,
}

impl<K, T, F> Reduce<K, T, F> {
    /// A reduce with `f(accumulated, new) -> accumulated`.
    pub fn new(f: F) -> Self {
        Reduce {
            f,
            state: None,
            _k: PhantomData,
        }
    }
}

impl<K: Key, T: Data, F: FnMut(T, T) -> T + Send + 'static> KeyedOperator for Reduce<K, T, F> {
    type Key = K;
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, K>) -> Result<(), UserError> {
        self.state = Some(ctx.value_state("reduce")?);
        Ok(())
    }

    #[inline]
    fn process_element(
        &mut self,
        element: T,
        ctx: &mut KeyedContext<'_, K, T>,
    ) -> Result<(), UserError> {
        let Some(h) = self.state else {
            return Err("reduce used before open".into());
        };
        let out = match ctx.value_mut(&h) {
            Some(acc) => {
                let next = (self.f)(acc.clone(), element);
                *acc = next.clone();
                next
            }
            None => {
                ctx.set_value(&h, element.clone());
                element
            }
        };
        ctx.emit(out);
        Ok(())
    }
}

/// A user function on a keyed stream, with keyed state (registered in `open`) and timers in
/// both time domains (Flink's `KeyedProcessFunction`). Cloned once per subtask.
pub trait KeyedProcessFunction<K: Key, I: Data, O: Data>: Clone + Send + 'static {
    /// Registers states; called once per subtask before any record.
    ///
    /// # Errors
    ///
    /// An error (such as the [`StateError`](weir_state::StateError) of registering a name that
    /// holds another kind or type of state) fails the task before it processes any record, as
    /// one from [`process_element`](Self::process_element) does.
    fn open(&mut self, _ctx: &mut KeyedOpenContext<'_, K>) -> Result<(), UserError> {
        Ok(())
    }
    /// Handles one record of the current key.
    ///
    /// # Errors
    ///
    /// An error fails the task: the job restarts (from its latest completed checkpoint, or from
    /// the start without one) as its restart strategy allows, or else ends with
    /// [`JobError::TaskFailed`](weir_engine::JobError::TaskFailed) carrying the error's message.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<(), UserError>;
    /// Handles a timer of the current key.
    ///
    /// # Errors
    ///
    /// An error fails the task, as one from [`process_element`](Self::process_element) does.
    fn on_timer(
        &mut self,
        _timer: Timer,
        _ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`] as a keyed operator.
pub struct KeyedProcess<K, I, O, P> {
    f: P,
    _t: PhantomData<fn(K, I) -> O>,
}

impl<K, I, O, P> KeyedProcess<K, I, O, P> {
    /// Wraps `f`.
    pub fn new(f: P) -> Self {
        KeyedProcess { f, _t: PhantomData }
    }
}

impl<K: Key, I: Data, O: Data, P: KeyedProcessFunction<K, I, O>> KeyedOperator
    for KeyedProcess<K, I, O, P>
{
    type Key = K;
    type In = I;
    type Out = O;
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, K>) -> Result<(), UserError> {
        self.f.open(ctx)
    }
    #[inline]
    fn process_element(
        &mut self,
        element: I,
        ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<(), UserError> {
        self.f.process_element(element, ctx)
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<(), UserError> {
        self.f.on_timer(timer, ctx)
    }
}
