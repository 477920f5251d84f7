//! Read-only lists the kernels take from the host — channel index lists of index-select
//! and its backward, the broadcast shapes and strides of the elementwise kernels — uploaded
//! once per content and reused: a training step issues the same lists every time, so
//! after the first step no op copies anything from the host for them.
//!
//! The cache is keyed by the list's content (equal lists share one device buffer) and
//! bounded: at most [`MAX_LISTS`] lists per element type; when it is full it is emptied
//! and refilled by the next calls (a workload with more distinct lists than that uploads
//! as it did without a cache). Cached buffers are never written, so sharing them between
//! launches queued on the stream is safe; a buffer evicted while a queued launch still
//! reads it is freed in stream order, as any dropped buffer is.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::error::KernelError;
use crate::runtime::{Elem, Runtime};

/// Most lists kept per element type.
pub const MAX_LISTS: usize = 512;

type Lists<R, T> = Mutex<HashMap<Vec<T>, Arc<<R as Runtime>::Buf<T>>>>;

/// The uploaded lists of one device context.
pub(crate) struct ConstantLists<R: Runtime> {
    u32s: Lists<R, u32>,
    i64s: Lists<R, i64>,
}

impl<R: Runtime> Default for ConstantLists<R> {
    fn default() -> Self {
        Self {
            u32s: Mutex::new(HashMap::new()),
            i64s: Mutex::new(HashMap::new()),
        }
    }
}

/// The device copy of `data` from `lists`, uploaded on `stream` when it is not there.
fn get_or_upload<R: Runtime, T: Elem + Hash + Eq>(
    lists: &Lists<R, T>,
    stream: &R::Stream,
    data: &[T],
) -> Result<Arc<R::Buf<T>>, KernelError> {
    let mut map = lists.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = map.get(data) {
        return Ok(b.clone());
    }
    if map.len() >= MAX_LISTS {
        map.clear();
    }
    let b = Arc::new(R::upload(stream, data)?);
    map.insert(data.to_vec(), b.clone());
    Ok(b)
}

impl<R: Runtime> ConstantLists<R> {
    /// The device copy of an index list.
    pub(crate) fn u32s(
        &self,
        stream: &R::Stream,
        data: &[u32],
    ) -> Result<Arc<R::Buf<u32>>, KernelError> {
        get_or_upload::<R, u32>(&self.u32s, stream, data)
    }

    /// The device copy of a list of shapes and strides.
    pub(crate) fn i64s(
        &self,
        stream: &R::Stream,
        data: &[i64],
    ) -> Result<Arc<R::Buf<i64>>, KernelError> {
        get_or_upload::<R, i64>(&self.i64s, stream, data)
    }

    /// Number of lists held.
    pub(crate) fn len(&self) -> usize {
        let a = self.u32s.lock().unwrap_or_else(|p| p.into_inner()).len();
        a + self.i64s.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
