//! Fallible allocations, from flow-core (shared with the engine's windowed values).

pub(crate) use flow_core::alloc::{array2, array4, filled, AllocError};
