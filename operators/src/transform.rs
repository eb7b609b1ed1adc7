//! Stateless record-at-a-time transforms: map, filter, flat_map.

use std::marker::PhantomData;

use weir_engine::{Context, Data, Operator, UserError};

/// Applies a function to every record.
pub struct Map<I, O, F> {
    f: F,
    _t: PhantomData<fn(I) -> O>,
}

impl<I, O, F> Map<I, O, F> {
    /// A map with `f`.
    pub fn new(f: F) -> Self {
        Map { f, _t: PhantomData }
    }
}

impl<I: Data, O: Data, F: FnMut(I) -> O + Send + 'static> Operator for Map<I, O, F> {
    type In = I;
    type Out = O;
    #[inline]
    fn process_element(&mut self, element: I, ctx: &mut Context<'_, O>) -> Result<(), UserError> {
        ctx.emit((self.f)(element));
        Ok(())
    }
}

/// Keeps the records for which a predicate holds.
pub struct Filter<T, F> {
    f: F,
    _t: PhantomData<fn(T)>,
}

impl<T, F> Filter<T, F> {
    /// A filter with predicate `f`.
    pub fn new(f: F) -> Self {
        Filter { f, _t: PhantomData }
    }
}

impl<T: Data, F: FnMut(&T) -> bool + Send + 'static> Operator for Filter<T, F> {
    type In = T;
    type Out = T;
    #[inline]
    fn process_element(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        if (self.f)(&element) {
            ctx.emit(element);
        }
        Ok(())
    }
}

/// Turns every record into zero or more records.
pub struct FlatMap<I, O, It, F> {
    f: F,
    _t: PhantomData<fn(I) -> (O, It)>,
}

impl<I, O, It, F> FlatMap<I, O, It, F> {
    /// A flat-map with `f`.
    pub fn new(f: F) -> Self {
        FlatMap { f, _t: PhantomData }
    }
}

impl<I, O, It, F> Operator for FlatMap<I, O, It, F>
where
    I: Data,
    O: Data,
    It: IntoIterator<Item = O> + 'static,
    F: FnMut(I) -> It + Send + 'static,
{
    type In = I;
    type Out = O;
    #[inline]
    fn process_element(&mut self, element: I, ctx: &mut Context<'_, O>) -> Result<(), UserError> {
        for o in (self.f)(element) {
            ctx.emit(o);
        }
        Ok(())
    }
}
