//! [`FlowBuf`] on both sides: a producer turns a `Vec<u8>` into one, a consumer holds one in a
//! guard that calls `release` when dropped.

use std::ffi::c_void;

use crate::abi::FlowBuf;

/// Hands `bytes` over as a [`FlowBuf`] whose `release` frees them.
pub(crate) fn to_buf(bytes: Vec<u8>) -> FlowBuf {
    let boxed: Box<Vec<u8>> = Box::new(bytes);
    let ptr = boxed.as_ptr();
    let len = boxed.len();
    FlowBuf {
        ptr,
        len,
        private_data: Box::into_raw(boxed).cast::<c_void>(),
        release: Some(release_vec),
    }
}

/// Frees a buffer made by [`to_buf`].
///
/// # Safety
/// `buf` must be a buffer made by [`to_buf`] (in this same library) and not yet released.
unsafe extern "C" fn release_vec(buf: *mut FlowBuf) {
    if buf.is_null() {
        return;
    }
    // SAFETY: the caller passes a live buffer made by `to_buf`, whose private_data is the
    // `Box<Vec<u8>>` leaked there; taking it back once frees it exactly once.
    unsafe {
        let data = (*buf).private_data.cast::<Vec<u8>>();
        if !data.is_null() {
            drop(Box::from_raw(data));
        }
        *buf = FlowBuf::empty();
    }
}

/// Writes `bytes` into the out-parameter `out`, when it is not null.
///
/// # Safety
/// `out` is null or points to a writable [`FlowBuf`] that holds nothing to release.
pub(crate) unsafe fn put(out: *mut FlowBuf, bytes: Vec<u8>) {
    if !out.is_null() {
        // SAFETY: the caller guarantees `out` is writable.
        unsafe { out.write(to_buf(bytes)) };
    }
}

/// A buffer received from the other side; released when dropped.
pub(crate) struct Received(pub(crate) FlowBuf);

impl Received {
    /// An empty buffer to pass as an out-parameter.
    pub(crate) fn new() -> Self {
        Received(FlowBuf::empty())
    }

    /// The bytes (empty when the producer left the buffer unset or gave a null pointer).
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.0.ptr.is_null() || self.0.len == 0 {
            return &[];
        }
        // SAFETY: the producer promises `len` readable bytes at `ptr` until `release`, which
        // only our Drop calls, after every borrow of `self` has ended.
        unsafe { std::slice::from_raw_parts(self.0.ptr, self.0.len) }
    }

    /// The bytes as text, invalid UTF-8 replaced.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(release) = self.0.release.take() {
            // SAFETY: the producer gave us this buffer with this release callback; it is called
            // once (taken out of the struct first).
            unsafe { release(&mut self.0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_round_trips_and_is_released_once() {
        let mut r = Received::new();
        // SAFETY: `r.0` is a writable, empty buffer.
        unsafe { put(&mut r.0, b"hello".to_vec()) };
        assert_eq!(r.text(), "hello");
        drop(r);
        assert_eq!(Received::new().bytes(), b"");
    }
}
